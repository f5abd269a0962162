/**
 * Replication against a real S3 server (Ceph RGW started by scripts/s3-test-server.sh): the
 * round trip and kill -9 tests on S3, outages (the S3 port blocked for a minute while a writer
 * commits every 100 ms, with and without killing walrust during it), and multipart memory.
 */
import assert from "node:assert/strict";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess } from "../helpers/walrust.ts";
import { restoreAndDump, waitCaughtUp } from "../helpers/replica.ts";
import { requireS3OrSkip, s3Options, type S3TestConfig, uniquePrefix } from "../helpers/s3env.ts";
import { openS3Storage } from "../../src/storage/s3.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { startFaultServer } from "../helpers/http_fault_server.ts";

const cfg = await requireS3OrSkip();
const OUTAGE_S = Number(Deno.env.get("WALRUST_OUTAGE_SECONDS") ?? 60);
const SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);";

function env(c: S3TestConfig, endpoint = c.endpoint): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: c.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
    AWS_REGION: c.region,
    AWS_ENDPOINT_URL_S3: endpoint,
  };
}

async function setup(c: S3TestConfig) {
  const dir = await Deno.makeTempDir({ prefix: "walrust-s3e2e-" });
  const bucket = `s3://${c.bucket}/${uniquePrefix().replace(/\/$/, "")}`;
  // Fast breaker recovery so the tests need not wait a full minute after an outage.
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[retry]\nmax_retries = 2\nbase_delay_ms = 50\nmax_delay_ms = 500\ncircuit_breaker_cooldown_ms = 2000\n`,
  );
  const prefix = bucket.slice(`s3://${c.bucket}/`.length);
  /** Delete everything the test wrote (RGW keeps objects in RAM) and the temp dir. */
  const cleanup = async () => {
    const s3 = await openS3Storage(s3Options(c));
    try {
      const keys: string[] = [];
      for await (const o of s3.list(`${prefix}/`)) keys.push(o.key);
      await s3.delete(keys);
    } finally {
      await s3.close();
    }
    await Deno.remove(dir, { recursive: true });
  };
  return { dir, db: `${dir}/app.db`, bucket, config: `${dir}/walrust.toml`, cleanup };
}

function watchArgs(config: string, db: string, bucket: string, extra: string[] = []) {
  return [
    "--config",
    config,
    "watch",
    db,
    "--bucket",
    bucket,
    "--wal-sync-interval",
    "0.1",
    ...extra,
  ];
}

async function vmRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

Deno.test({
  name: "s3: round trip with mixed writes, growth and VACUUM restores exactly from RGW",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const { dir, db, bucket, config, cleanup } = await setup(c);
    const w = await SqliteWriter.start(db);
    const watch = new WalrustProcess(watchArgs(config, db, bucket), { env: env(c) });
    try {
      await w.exec(`${SCHEMA} CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB);`);
      await watch.waitFor("replicating");
      for (let i = 0; i < 50; i++) {
        await w.exec(
          `INSERT INTO t (v, n) VALUES ('r${i}', ${i}); UPDATE t SET n = n + 1 WHERE id % 4 = 0`,
        );
      }
      await w.exec(
        `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300)
         INSERT INTO big (b) SELECT randomblob(2000) FROM c`,
      );
      await w.exec("DELETE FROM big WHERE id % 2 = 0; VACUUM;");
      await waitCaughtUp(db, undefined, "app.db", 60_000);
      assert.equal(
        await restoreAndDump(bucket, "app.db", `${dir}/r.db`, [], env(c)),
        await dumpContent(db),
      );
      const list = await walrust(["list", "--bucket", bucket, "--json"], { env: env(c) });
      assert.equal(list.code, 0, list.stderr);
      assert.equal(JSON.parse(list.stdout)[0].name, "app.db");
    } finally {
      watch.kill("SIGTERM");
      await watch.wait();
      await w.close();
      await cleanup();
    }
  },
});

Deno.test({
  name: "s3: kill -9 of watch at random points (3 times), restore equals the source",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const { dir, db, bucket, config, cleanup } = await setup(c);
    const w = await SqliteWriter.start(db);
    let stop = false;
    let n = 0;
    const writer = (async () => {
      await w.exec(SCHEMA);
      while (!stop) await w.exec(`INSERT INTO t (v, n) VALUES ('k${n}', ${n++})`);
    })();
    try {
      for (let i = 0; i < 3; i++) {
        const watch = new WalrustProcess(watchArgs(config, db, bucket), { env: env(c) });
        await watch.waitFor("replicating", 60_000);
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
        watch.kill("SIGKILL");
        await watch.wait();
      }
      stop = true;
      await writer;
      const watch = new WalrustProcess(watchArgs(config, db, bucket), { env: env(c) });
      await watch.waitFor("replicating", 60_000);
      await waitCaughtUp(db, undefined, "app.db", 60_000);
      watch.kill("SIGTERM");
      assert.equal(await watch.wait(), 0);
      assert.equal(
        await restoreAndDump(bucket, "app.db", `${dir}/r.db`, [], env(c)),
        await dumpContent(db),
      );
    } finally {
      stop = true;
      await writer.catch(() => {});
      await w.close();
      await cleanup();
    }
  },
});

for (const killDuringOutage of [false, true]) {
  Deno.test({
    name: `s3: a ${OUTAGE_S} s outage while a writer commits every 100 ms loses nothing${
      killDuringOutage ? " (walrust killed and restarted during the outage)" : ""
    }`,
    ignore: !cfg,
    async fn() {
      const c = cfg!;
      const { dir, db, bucket, config, cleanup } = await setup(c);
      const receiver = await startFaultServer();
      await Deno.writeTextFile(
        config,
        `\n[[webhooks]]\nurl = "${receiver.url}/hook"\nevents = ["upload_failed"]\nsecret = "s3cret"\n`,
        { append: true },
      );
      const target = new URL(c.endpoint);
      const proxy = TcpProxy.start({ hostname: target.hostname, port: Number(target.port || 80) });
      const w = await SqliteWriter.start(db);
      const args = watchArgs(config, db, bucket, ["--endpoint", proxy.url]);
      let watch = new WalrustProcess(args, { env: env(c, proxy.url) });
      let committed = 0;
      try {
        await w.exec(SCHEMA);
        await watch.waitFor("replicating", 60_000);
        proxy.block();
        const end = Date.now() + OUTAGE_S * 1000;
        let killed = false;
        while (Date.now() < end) {
          await w.exec(`INSERT INTO t (v, n) VALUES ('o${committed}', ${committed})`);
          committed++;
          if (killDuringOutage && !killed && Date.now() > end - OUTAGE_S * 500) {
            // Killed mid-outage: the local queue on disk must carry the unsent files over.
            watch.kill("SIGKILL");
            await watch.wait();
            watch = new WalrustProcess(args, { env: env(c, proxy.url) });
            killed = true;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        // A watcher restarted during the outage cannot list the replica: it says so and queues.
        assert.ok(
          watch.stderr.includes(killDuringOutage ? "replica unreachable" : "upload failed"),
          "the outage was noticed:\n" + watch.stderr,
        );
        // One line per state change, not one per attempt.
        assert.ok((watch.stderr.match(/upload failed/g) ?? []).length <= 2, watch.stderr);
        proxy.unblock();
        await watch.waitFor(killDuringOutage ? "replicating" : "uploads resumed", 120_000);
        await waitCaughtUp(db, undefined, "app.db", 120_000);
        // The outage was reported once to the webhook receiver, signed with the secret.
        const hooks = receiver.requests.filter((r) => r.path === "/hook");
        assert.ok(hooks.length >= 1, "an upload_failed webhook arrived");
        const payload = JSON.parse(new TextDecoder().decode(hooks[0].body));
        assert.equal(payload.event, "upload_failed");
        assert.equal(payload.database, "app.db");
        const key = await crypto.subtle.importKey(
          "raw",
          new TextEncoder().encode("s3cret"),
          { name: "HMAC", hash: "SHA-256" },
          false,
          ["sign"],
        );
        const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, hooks[0].body));
        const hex = [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
        assert.equal(hooks[0].headers.get("x-walrust-signature"), `sha256=${hex}`);
        const restored = `${dir}/r.db`;
        assert.equal(
          await restoreAndDump(bucket, "app.db", restored, [], env(c)),
          await dumpContent(db),
        );
        const rows = await SqliteWriter.start(restored);
        try {
          const [[count]] = await rows.query("SELECT count(*) FROM t");
          assert.equal(count, committed, "every transaction committed during the outage is there");
        } finally {
          await rows.close();
        }
      } finally {
        watch.kill("SIGTERM");
        await watch.wait();
        proxy.close();
        await receiver.close();
        await w.close();
        await cleanup();
      }
    },
  });
}

Deno.test({
  name:
    "s3: a 100 MB snapshot goes up as multipart and watch's RSS stays below steady state + 32 MB",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const { dir, bucket, config, cleanup } = await setup(c);
    try {
      const big = `${dir}/big.db`;
      const bw = await SqliteWriter.start(big);
      await bw.exec(
        `CREATE TABLE b (id INTEGER PRIMARY KEY, x BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 25600)
         INSERT INTO b (x) SELECT randomblob(4000) FROM c;`,
      );
      await bw.checkpoint("TRUNCATE");
      // The first start's full upload happens in a separate run, so the watcher below starts
      // from its position record and reaches a steady state first.
      const once = await walrust(["--config", config, "watch", big, "--bucket", bucket, "--once"], {
        env: env(c),
      });
      assert.equal(once.code, 0, once.stderr);
      const watch = new WalrustProcess(watchArgs(config, big, bucket), { env: env(c) });
      let peak = 0;
      let steady = 0;
      try {
        await watch.waitFor("replicating", 60_000);
        for (let i = 0; i < 20; i++) {
          await bw.exec(`UPDATE b SET x = randomblob(4000) WHERE id = ${i + 1}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        await waitCaughtUp(big, undefined, "big.db", 60_000);
        steady = await vmRss(watch.pid);
        const sampler = setInterval(async () => {
          try {
            peak = Math.max(peak, await vmRss(watch.pid));
          } catch { /* exited */ }
        }, 25);
        try {
          const snap = await walrust(["--config", config, "snapshot", big, "--bucket", bucket], {
            env: env(c),
          });
          assert.equal(snap.code, 0, snap.stderr);
          await waitCaughtUp(big, undefined, "big.db", 120_000);
          await new Promise((r) => setTimeout(r, 500));
        } finally {
          clearInterval(sampler);
        }
      } finally {
        watch.kill("SIGTERM");
        await watch.wait();
        await bw.kill();
      }
      const mb = (n: number) => (n / 1048576).toFixed(1);
      console.log(`steady ${mb(steady)} MB, peak during the 100 MB snapshot ${mb(peak)} MB`);
      assert.ok(peak > 0 && steady > 0);
      assert.ok(
        peak <= steady + 32 * 1048576,
        `peak ${mb(peak)} MB > steady ${mb(steady)} MB + 32 MB`,
      );

      // The snapshot objects are multipart uploads: their ETags end in -<parts>.
      const { S3Client, ListObjectsV2Command, HeadObjectCommand } = await import(
        "@aws-sdk/client-s3"
      );
      const client = new S3Client({
        region: c.region,
        endpoint: c.endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
      });
      try {
        const prefix = bucket.slice(`s3://${c.bucket}/`.length);
        const listed = await client.send(
          new ListObjectsV2Command({ Bucket: c.bucket, Prefix: `${prefix}/big.db/0009/` }),
        );
        const keys = (listed.Contents ?? []).map((o) => o.Key!);
        assert.ok(keys.length >= 2, `level-9 snapshots: ${keys.join(", ")}`);
        const head = await client.send(
          new HeadObjectCommand({ Bucket: c.bucket, Key: keys.at(-1) }),
        );
        assert.ok((head.ContentLength ?? 0) > 100_000_000, `snapshot size ${head.ContentLength}`);
        assert.match(head.ETag ?? "", /-\d+"?$/, `multipart ETag, got ${head.ETag}`);
      } finally {
        client.destroy();
      }
    } finally {
      await cleanup();
    }
  },
});

Deno.test({
  name:
    "s3: wrong credentials are exit 4 naming the bucket, never the secret, and fire auth_failure",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const { db, bucket, config, cleanup } = await setup(c);
    const receiver = await startFaultServer();
    try {
      await Deno.writeTextFile(
        config,
        `\n[[webhooks]]\nurl = "${receiver.url}/hook"\nevents = ["auth_failure"]\n`,
        { append: true },
      );
      const w = await SqliteWriter.start(db);
      await w.exec(SCHEMA);
      await w.kill();
      const wrong = "definitely-not-the-secret-42";
      const r = await walrust(watchArgs(config, db, bucket, ["--once"]), {
        env: { ...env(c), AWS_SECRET_ACCESS_KEY: wrong },
      });
      assert.equal(r.code, 4, r.stderr);
      assert.ok(r.stderr.includes(c.bucket), r.stderr);
      assert.ok(!r.stderr.includes(wrong), "the secret never appears in output");
      const hooks = receiver.requests.filter((q) => q.path === "/hook");
      assert.ok(hooks.length >= 1, "auth_failure webhook delivered");
      const payload = JSON.parse(new TextDecoder().decode(hooks[0].body));
      assert.equal(payload.event, "auth_failure");
      assert.ok(!JSON.stringify(payload).includes(wrong));
    } finally {
      await receiver.close();
      await cleanup();
    }
  },
});

Deno.test({
  name:
    "s3: a first start while the storage is unreachable starts, replicates locally, and uploads when it returns",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const { dir, db, bucket, config, cleanup } = await setup(c);
    const target = new URL(c.endpoint);
    const proxy = TcpProxy.start({ hostname: target.hostname, port: Number(target.port || 80) });
    proxy.block();
    const w = await SqliteWriter.start(db);
    const watch = new WalrustProcess(watchArgs(config, db, bucket, ["--endpoint", proxy.url]), {
      env: env(c, proxy.url),
    });
    try {
      await w.exec(SCHEMA);
      await watch.waitFor("replica unreachable; replicating locally", 60_000);
      await watch.waitFor("replicating", 60_000);
      for (let i = 0; i < 20; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('down ${i}', ${i})`);
      proxy.unblock();
      await watch.waitFor("replica reachable again", 60_000);
      await waitCaughtUp(db, undefined, "app.db", 60_000);
      assert.equal(
        await restoreAndDump(bucket, "app.db", `${dir}/r.db`, [], env(c)),
        await dumpContent(db),
      );
    } finally {
      watch.kill("SIGTERM");
      assert.equal(await watch.wait(), 0, watch.stderr);
      proxy.close();
      await w.close();
      await cleanup();
    }
  },
});
