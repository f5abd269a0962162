/**
 * Read-replica figures: lag from a primary commit to the row being visible to a reader of the
 * follower's local copy (P50/P95), with `watch --wal-sync-interval 0.2` on the primary and
 * `replicate SOURCE --local PATH --interval 200ms`, on a file replica and on RGW; and the bytes a
 * follower downloads per one-row update of a 50 MB database (through a counting storage wrapper).
 */
import { DatabaseSync } from "node:sqlite";
import { printTable } from "./replication.ts";
import { follow } from "../../mod.ts";
import { openReplica } from "../../src/storage/open.ts";
import { Logger } from "../../src/observe/log.ts";
import { CountingStorage } from "../../tests/helpers/counting_storage.ts";
import { SqliteWriter } from "../../tests/helpers/sqlite_writer.ts";
import { waitCaughtUp } from "../../tests/helpers/replica.ts";
import { s3TestConfig, uniquePrefix } from "../../tests/helpers/s3env.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

function spawn(args: string[], env?: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--config", CONFIG, MAIN, ...args],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function until(fn: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Commit → visible lag (ms) of `n` rows, one every 250 ms. */
async function lagRun(
  kind: string,
  n: number,
  target: { bucket: string; source: string; env?: Record<string, string> },
): Promise<number[]> {
  const dir = await Deno.makeTempDir({ prefix: `walrust-bench-follow-${kind}-` });
  const db = `${dir}/primary.db`;
  const local = `${dir}/local.db`;
  const app = await SqliteWriter.start(db);
  await app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, at INTEGER)");
  await app.exec("INSERT INTO t VALUES (0, 0)");
  const watch = spawn(
    ["watch", db, "--bucket", target.bucket, "--wal-sync-interval", "0.2", "--no-metrics"],
    target.env,
  );
  let f: Deno.ChildProcess | undefined;
  try {
    f = spawn(
      ["replicate", target.source, "--local", local, "--interval", "200ms", "--no-metrics"],
      target.env,
    );
    await until(async () =>
      await Deno.stat(`${local}-walrust-replica.json`).then(() => true, () => false)
    );
    const reader = new DatabaseSync(local, { readOnly: true, timeout: 5000 });
    const committed = new Map<number, number>();
    const lags: number[] = [];
    let seen = 0;
    const poll = setInterval(() => {
      try {
        const row = reader.prepare("SELECT max(id) AS m FROM t").get() as { m: number };
        const now = performance.now();
        for (let id = seen + 1; id <= row.m; id++) {
          const at = committed.get(id);
          if (at !== undefined) lags.push(now - at);
        }
        seen = Math.max(seen, row.m);
      } catch { /* busy for a moment: next tick */ }
    }, 5);
    for (let id = 1; id <= n; id++) {
      await app.exec(`INSERT INTO t VALUES (${id}, 0)`);
      committed.set(id, performance.now());
      await new Promise((r) => setTimeout(r, 250));
    }
    await until(() => seen >= n, 30_000);
    clearInterval(poll);
    reader.close();
    return lags.sort((a, b) => a - b);
  } finally {
    await app.close();
    for (const p of [f, watch]) {
      try {
        p?.kill("SIGTERM");
      } catch { /* gone */ }
      await p?.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

/** Bytes downloaded per one-row update of a 50 MB database (median of `updates`). */
async function bytesPerUpdate(updates: number): Promise<{ boot: number; per: number[] }> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-follow-bytes-" });
  const db = `${dir}/app.db`;
  const app = await SqliteWriter.start(db);
  const bucket = `file://${dir}/replica`;
  const watch = spawn([
    "watch",
    db,
    "--bucket",
    bucket,
    "--wal-sync-interval",
    "0.05",
    "--no-metrics",
  ]);
  try {
    await app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
    await app.exec(
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50000) " +
        "INSERT INTO t (v, n) SELECT randomblob(1000), 0 FROM s",
    );
    await until(async () =>
      await waitCaughtUp(db, `${dir}/replica`, "app.db").then(() => true, () => false)
    );
    const replica = await openReplica(bucket);
    const storage = new CountingStorage(replica.storage);
    const f = await follow({
      bucket: { ...replica, storage },
      name: "app.db",
      local: `${dir}/local.db`,
      intervalMs: 3_600_000,
      log: new Logger({ level: "warn" }),
    });
    const boot = storage.bytes;
    const per: number[] = [];
    for (let i = 1; i <= updates; i++) {
      await app.exec(`UPDATE t SET n = ${i} WHERE id = ${i * 4999}`);
      await waitCaughtUp(db, `${dir}/replica`, "app.db");
      const before = storage.bytes;
      await f.pollNow();
      per.push(storage.bytes - before);
    }
    await f.stop();
    return { boot, per: per.sort((a, b) => a - b) };
  } finally {
    await app.close();
    watch.kill("SIGTERM");
    await watch.status;
    await Deno.remove(dir, { recursive: true });
  }
}

/** Print the follower's lag and bytes figures. */
export async function benchFollower(opts: { quick: boolean }): Promise<void> {
  const n = opts.quick ? 20 : 60;
  console.log(`\n## read replica: commit -> visible to a reader (${n} commits, 1 every 250 ms)`);
  const rows: string[][] = [];
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-follow-file-" });
  try {
    const lags = await lagRun("file", n, {
      bucket: `file://${dir}/replica`,
      source: `file://${dir}/replica/primary.db`,
    });
    rows.push(["file", String(lags.length), pct(lags, 50).toFixed(0), pct(lags, 95).toFixed(0)]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const s3 = s3TestConfig();
  if (s3) {
    const prefix = uniquePrefix().replace(/\/$/, "");
    const lags = await lagRun("s3", n, {
      bucket: `s3://${s3.bucket}/${prefix}`,
      source: `s3://${s3.bucket}/${prefix}/primary.db`,
      env: {
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
        AWS_REGION: s3.region,
        AWS_ENDPOINT_URL_S3: s3.endpoint,
      },
    });
    rows.push(["RGW", String(lags.length), pct(lags, 50).toFixed(0), pct(lags, 95).toFixed(0)]);
  } else {
    rows.push(["RGW", "skipped (no S3 test server: scripts/s3-test-server.sh start)", "", ""]);
  }
  printTable(["backend", "commits", "P50 ms", "P95 ms"], rows);

  const { boot, per } = await bytesPerUpdate(opts.quick ? 5 : 10);
  console.log("\n## read replica: bytes downloaded, 50 MB database");
  printTable(["what", "bytes"], [
    ["bootstrap", String(boot)],
    ["per one-row update (median)", String(pct(per, 50))],
    ["per one-row update (max)", String(per[per.length - 1])],
  ]);
}
