/**
 * End to end: a real SQLite writer in another process, `walrust watch` as a subprocess, a
 * filesystem replica, and `walrust restore`. Every restore is integrity-checked and compared
 * with the source's content.
 */
import assert from "node:assert/strict";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess, watchArgs } from "../helpers/walrust.ts";
import { replicaFiles, restoreAndDump, waitCaughtUp } from "../helpers/replica.ts";

const SLOW = Deno.env.get("WALRUST_SLOW") === "1";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "walrust-e2e-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  return { dir, db, root, bucket: `file://${root}` };
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);
CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, payload BLOB);`;

Deno.test("round trip: mixed writes, a large transaction and VACUUM restore exactly, at latest and at recorded moments", async () => {
  const { dir, db, root, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await w.exec(SCHEMA);
    await watch.waitFor("replicating");
    const moments: { t: string; content: string }[] = [];
    const record = async () => {
      await waitCaughtUp(db, root, "app.db");
      await new Promise((r) => setTimeout(r, 5));
      moments.push({ t: new Date().toISOString(), content: await dumpContent(db) });
      await new Promise((r) => setTimeout(r, 5));
    };
    for (let i = 0; i < 60; i++) {
      await w.exec(`INSERT INTO t (v, n) VALUES ('row ${i}', ${i})`);
      if (i % 7 === 0) await w.exec(`UPDATE t SET n = n * 2 WHERE id % 3 = 0`);
      if (i % 11 === 0) await w.exec(`DELETE FROM t WHERE id % 5 = 0`);
    }
    await record();
    // Grows the database by hundreds of pages in one transaction.
    await w.exec(
      `BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 600)
       INSERT INTO big (payload) SELECT randomblob(3000) FROM c; COMMIT;`,
    );
    await record();
    await w.exec(`DELETE FROM big WHERE id % 2 = 0`);
    await w.exec(`VACUUM`);
    await w.exec(`INSERT INTO t (v, n) VALUES ('after vacuum', -1)`);
    await record();

    const final = await dumpContent(db);
    assert.deepStrictEqual(await restoreAndDump(bucket, "app.db", `${dir}/latest.db`), final);
    for (const [i, m] of moments.entries()) {
      const got = await restoreAndDump(bucket, "app.db", `${dir}/at-${i}.db`, [
        "--point-in-time",
        m.t,
      ]);
      assert.deepStrictEqual(got, m.content, `restore at moment ${i} (${m.t})`);
    }
    // Every file in the replica is valid LTX and sits where Litestream's file backend puts it.
    const files = await replicaFiles(root, "app.db");
    assert(files.some((f) => f.level === 9 && f.minTXID === 1), "a level-9 snapshot exists");
    const l0 = files.filter((f) => f.level === 0).map((f) => f.maxTXID);
    // Contiguous from the snapshot on (retention may drop level-0 files a snapshot covers).
    const snap = Math.max(...files.filter((f) => f.level === 9).map((f) => f.maxTXID));
    assert.ok(l0[0] <= snap + 1, `the level-0 chain starts at or before ${snap + 1}: ${l0[0]}`);
    assert.deepStrictEqual(l0, l0.map((_, i) => l0[0] + i), "level-0 TXIDs are contiguous");
    const v = await walrust(["ltx", "verify", ...files.map((f) => f.path)]);
    assert.deepStrictEqual(v.code, 0, v.stdout + v.stderr);
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the app's own TRUNCATE checkpoint while walrust runs loses nothing", async () => {
  const { dir, db, root, bucket } = await setup();
  // A short busy timeout: the app's TRUNCATE waits for our read lock until it gives up.
  const w = await SqliteWriter.start(db, { busyTimeoutMs: 100 });
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await w.exec(SCHEMA);
    await watch.waitFor("replicating");
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 20; i++) {
        await w.exec(`INSERT INTO t (v, n) VALUES ('r${round}-${i}', ${i})`);
      }
      const ck = await w.checkpoint("TRUNCATE");
      // Our read lock pins the WAL: the app's TRUNCATE cannot reset it under us.
      assert.deepStrictEqual(ck.busy, 1, "walrust's read lock keeps the WAL from being truncated");
    }
    await waitCaughtUp(db, root, "app.db");
    assert.deepStrictEqual(
      await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
      await dumpContent(db),
    );
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the app checkpoints and restarts the WAL while walrust is stopped: a new snapshot, nothing lost", async () => {
  const { dir, db, root, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  try {
    await w.exec(SCHEMA);
    for (let i = 0; i < 30; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('a${i}', ${i})`);
    let watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    const snapsBefore = (await replicaFiles(root, "app.db")).filter((f) => f.level === 9).length;

    for (let i = 0; i < 30; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('b${i}', ${i})`);
    const ck = await w.checkpoint("TRUNCATE");
    assert.deepStrictEqual(ck.busy, 0, "nothing pins the WAL while walrust is stopped");
    for (let i = 0; i < 10; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('c${i}', ${i})`);

    watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    assert(watch.stderr.includes("snapshot"), "a snapshot was logged:\n" + watch.stderr);
    const snapsAfter = (await replicaFiles(root, "app.db")).filter((f) => f.level === 9).length;
    assert.deepStrictEqual(snapsAfter, snapsBefore + 1, "one new level-9 snapshot");
    assert.deepStrictEqual(
      await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
      await dumpContent(db),
    );
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restart without changes resumes from the position record: no new snapshot, no full re-upload", async () => {
  const { dir, db, root, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  try {
    await w.exec(SCHEMA);
    for (let i = 0; i < 50; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('x${i}', ${i})`);
    let watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    const before = await replicaFiles(root, "app.db");

    watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    const after = await replicaFiles(root, "app.db");
    const added = after.filter((a) => !before.some((b) => b.path === a.path));
    assert.deepStrictEqual(added.filter((f) => f.level === 9), [], "no new snapshot");
    // The restart seals the WAL with one sequence bump: at most one small level-0 file.
    assert(added.length <= 1, `objects written on restart: ${added.map((f) => f.path).join(", ")}`);
    for (const f of added) assert((await Deno.stat(f.path)).size < 4096, `${f.path} is small`);
    assert.deepStrictEqual(
      await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
      await dumpContent(db),
    );
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(`kill -9 of watch at random points (${SLOW ? 20 : 3} times): after restart and catch-up, restore equals the source`, async () => {
  const { dir, db, root, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  let stop = false;
  let n = 0;
  const writer = (async () => {
    await w.exec(SCHEMA);
    while (!stop) {
      await w.exec(
        `INSERT INTO t (v, n) VALUES ('k${n}', ${n}); UPDATE t SET n = n + 1 WHERE id = 1`,
      );
      if (n % 50 === 0) {
        await w.exec(
          `INSERT INTO big (payload) SELECT randomblob(5000) FROM (SELECT 1 UNION SELECT 2)`,
        );
      }
      n++;
    }
  })();
  try {
    for (let i = 0; i < (SLOW ? 20 : 3); i++) {
      const watch = new WalrustProcess(watchArgs(db, bucket, ["--min-checkpoint-pages", "50"]));
      await watch.waitFor("replicating");
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 900));
      watch.kill("SIGKILL");
      await watch.wait();
    }
    stop = true;
    await writer;
    const watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    assert(n > 10, "the writer made progress");
    assert.deepStrictEqual(
      await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
      await dumpContent(db),
    );
    const files = await replicaFiles(root, "app.db");
    const v = await walrust(["ltx", "verify", ...files.map((f) => f.path)]);
    assert.deepStrictEqual(v.code, 0, v.stdout + v.stderr);
  } finally {
    stop = true;
    await writer.catch(() => {});
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("50 databases in one process from a glob in walrust.toml all restore exactly", async () => {
  const { dir, bucket } = await setup();
  await Deno.mkdir(`${dir}/data`);
  const names = Array.from({ length: 50 }, (_, i) => `db${String(i).padStart(2, "0")}.db`);
  for (const name of names) {
    const w = await SqliteWriter.start(`${dir}/data/${name}`);
    await w.exec(`${SCHEMA} INSERT INTO t (v, n) VALUES ('${name}', 1);`);
    await w.kill(); // leave the WAL in place, as a crashed app would
  }
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[s3]\nbucket = "${bucket}"\n[sync]\nwal_sync_interval = 0.1\n[[databases]]\npath = "data/*.db"\n`,
  );
  try {
    const r = await walrust(["--config", `${dir}/walrust.toml`, "watch", "--once"]);
    assert.deepStrictEqual(r.code, 0, r.stderr);
    for (const name of names) {
      const got = await restoreAndDump(bucket, name, `${dir}/restored-${name}`);
      assert.deepStrictEqual(got, await dumpContent(`${dir}/data/${name}`), name);
    }
    const list = await walrust(["list", "--bucket", bucket, "--json"]);
    assert.deepStrictEqual(list.code, 0, list.stderr);
    assert.deepStrictEqual(JSON.parse(list.stdout).length, 50);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second watcher on the same database fails fast with exit 2", async () => {
  const { dir, db, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  await w.exec(SCHEMA);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    const second = await walrust(watchArgs(db, bucket));
    assert.deepStrictEqual(second.code, 2, second.stderr);
    assert(second.stderr.includes("already replicating"), second.stderr);
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database not in WAL mode is exit 3 with the fix; a missing one is exit 3", async () => {
  const { dir, db, bucket } = await setup();
  const w = await SqliteWriter.start(db, { journalMode: "delete" });
  await w.exec(SCHEMA);
  await w.close();
  try {
    const r = await walrust(watchArgs(db, bucket, ["--once"]));
    assert.deepStrictEqual(r.code, 3, r.stderr);
    assert(r.stderr.includes("journal_mode=WAL"), r.stderr);
    const m = await walrust(watchArgs(`${dir}/missing.db`, bucket, ["--once"]));
    assert.deepStrictEqual(m.code, 3, m.stderr);
    assert(m.stderr.includes("missing.db"), m.stderr);
    assert.deepStrictEqual(m.stderr.trim().split("\n").length, 1, "one line, no stack trace");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const mode of ["PASSIVE", "TRUNCATE"] as const) {
  Deno.test(`walrust's own ${mode} checkpoints under a concurrent writer run and lose nothing`, async () => {
    const { dir, db, root, bucket } = await setup();
    // The app must not checkpoint on its own here: we are testing ours.
    const w = await SqliteWriter.start(db, { autocheckpoint: 0 });
    const flags = mode === "PASSIVE"
      ? ["--min-checkpoint-pages", "20"]
      : ["--min-checkpoint-pages", "100000", "--wal-truncate-threshold", "40"];
    const watch = new WalrustProcess(watchArgs(db, bucket, flags), {
      env: { WALRUST_LOG: "debug" },
    });
    try {
      await w.exec(SCHEMA);
      await watch.waitFor("replicating");
      // Six batches, each past both thresholds and each caught up before the next, so that
      // several checkpoint cycles run however fast or slow the machine is.
      for (let batch = 0; batch < 6; batch++) {
        for (let i = 0; i < 60; i++) {
          await w.exec(`INSERT INTO t (v, n) VALUES (printf('%.500c', 'x'), ${batch * 60 + i})`);
        }
        await waitCaughtUp(db, root, "app.db", 60_000);
      }
      const ours = new RegExp(`checkpoint .*mode=${mode}`, "g");
      // 360 transactions are 360+ frames: without our checkpoints there would be none.
      await watch.waitFor(new RegExp(`(checkpoint .*mode=${mode}[\\s\\S]*){2}`), 90_000);
      assert((watch.stderr.match(ours) ?? []).length >= 2, watch.stderr);
      if (mode === "TRUNCATE") {
        const deadline = Date.now() + 90_000;
        let size = Infinity;
        while (Date.now() < deadline && size > 41 * 4120) {
          size = (await Deno.stat(`${db}-wal`)).size;
          await new Promise((r) => setTimeout(r, 50));
        }
        assert(size <= 41 * 4120, `the WAL was truncated back below the threshold (${size} bytes)`);
        await waitCaughtUp(db, root, "app.db");
      }
      assert.deepStrictEqual(
        await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
        await dumpContent(db),
      );
    } finally {
      watch.kill("SIGTERM");
      await watch.wait();
      await w.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("SIGTERM drains: every committed transaction is in the replica when watch exits 0", async () => {
  const { dir, db, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(watchArgs(db, bucket, ["--wal-sync-interval", "5"]));
  try {
    await w.exec(SCHEMA);
    await watch.waitFor("replicating");
    for (let i = 0; i < 20; i++) await w.exec(`INSERT INTO t (v, n) VALUES ('d${i}', ${i})`);
    // Within the 5 s batching window: only the shutdown sync can have copied these.
    watch.kill("SIGTERM");
    assert.deepStrictEqual(await watch.wait(), 0);
    assert.deepStrictEqual(
      await restoreAndDump(bucket, "app.db", `${dir}/r.db`),
      await dumpContent(db),
    );
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
