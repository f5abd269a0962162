/**
 * The metrics and health server of a real `walrust watch`: every documented name is scraped
 * with plausible values under writes (file backend); on RGW behind a proxy that is cut, the
 * upload queue grows, retries count, /health turns unhealthy (503) and back to healthy once
 * the proxy lets traffic through; a port already in use leaves replication running.
 */
import assert from "node:assert/strict";
import { SqliteWriter } from "../helpers/sqlite_writer.ts";
import { WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { requireS3OrSkip, uniquePrefix } from "../helpers/s3env.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { METRIC_FAMILIES } from "../helpers/metric_names.ts";

const cfg = await requireS3OrSkip();

/** Histograms show up as their _bucket/_sum/_count series. */
const NAMES = METRIC_FAMILIES.map((n) =>
  n === "walrust_sync_latency_seconds" || n === "walrust_checkpoint_duration_seconds"
    ? `${n}_bucket`
    : n
).filter((n) => n !== "walrust_retry_total" && n !== "walrust_storage_failures_total");

/** Parsed samples: "name{labels}" -> value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

function value(samples: Map<string, number>, name: string): number | undefined {
  for (const [k, v] of samples) if (k === name || k.startsWith(`${name}{`)) return v;
  return undefined;
}

async function health(url: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/health`);
  return { code: res.status, body: await res.json() };
}

async function serverUrl(watch: WalrustProcess): Promise<string> {
  await watch.waitFor(/serving metrics and health url=(\S+)\/metrics/);
  return /serving metrics and health url=(\S+)\/metrics/.exec(watch.stderr)![1];
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("metrics: every documented name is served with plausible values under writes; /health is healthy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-metrics-" });
  const db = `${dir}/app.db`;
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[sync]\nwal_sync_interval = 0.1\ncheckpoint_interval = 1\n[compaction]\nlevels = ["1s"]\n`,
  );
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess([
    "--config",
    `${dir}/walrust.toml`,
    "watch",
    db,
    "--bucket",
    `file://${dir}/replica`,
    "--metrics-addr",
    "127.0.0.1:0",
  ]);
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const url = await serverUrl(watch);
    let first: number | undefined;
    const samples = await until("every name", async () => {
      await w.exec(`INSERT INTO t (v) VALUES ('${"x".repeat(200)}')`);
      const s = await scrape(url);
      first ??= value(s, "walrust_current_txid");
      return NAMES.every((n) => value(s, n) !== undefined) ? s : undefined;
    });
    const txid = value(samples, "walrust_current_txid")!;
    assert.ok(txid > first!, `the TXID grows: ${first} -> ${txid}`);
    assert.ok(value(samples, "walrust_replication_lag_seconds")! < 5, "lag stays small");
    assert.equal(value(samples, "walrust_databases_total"), 1);
    assert.equal(value(samples, "walrust_circuit_breaker_state"), 0);
    assert.ok(samples.has('walrust_build_info{version="0.1.0"}'));
    assert.ok(samples.has(`litestream_txid{db="${db}"}`), "Litestream's db label is the path");
    assert.ok(value(samples, "walrust_wal_size_bytes")! > 0);
    const h = await health(url);
    assert.equal(h.code, 200);
    assert.equal(h.body.status, "healthy");
    const dbs = h.body.databases as Record<string, { status: string; txid: number }>;
    assert.equal(dbs["app.db"].status, "healthy");
    assert.ok(dbs["app.db"].txid >= txid);
    assert.equal(
      await fetch(`${url}/nope`).then(async (r) => (await r.body?.cancel(), r.status)),
      404,
    );
  } finally {
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, watch.stderr);
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: a port already in use is one WARN and replication goes on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-metrics-busy-" });
  const db = `${dir}/app.db`;
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess([
    "watch",
    db,
    "--bucket",
    `file://${dir}/replica`,
    "--wal-sync-interval",
    "0.1",
    "--metrics-addr",
    `127.0.0.1:${port}`,
  ]);
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    await watch.waitFor("watching");
    assert.equal((watch.stderr.match(/WARN +metrics server not started/g) ?? []).length, 1);
    await w.exec("INSERT INTO t (v) VALUES ('after')");
    await waitCaughtUp(db, `${dir}/replica`, "app.db");
  } finally {
    taken.close();
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, watch.stderr);
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "s3: with RGW cut off the queue grows, retries count and /health turns 503; healthy again after",
  ignore: !cfg,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-metrics-s3-" });
    const db = `${dir}/app.db`;
    const target = new URL(c.endpoint);
    const proxy = TcpProxy.start({ hostname: target.hostname, port: Number(target.port || 80) });
    const bucket = `s3://${c.bucket}/${uniquePrefix().replace(/\/$/, "")}`;
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[sync]\nwal_sync_interval = 0.1\n[metrics]\nmax_lag = 3\n` +
        `[retry]\nmax_retries = 1\nbase_delay_ms = 50\nmax_delay_ms = 200\n` +
        `circuit_breaker_cooldown_ms = 1000\n`,
    );
    const w = await SqliteWriter.start(db);
    const watch = new WalrustProcess(
      [
        "--config",
        `${dir}/walrust.toml`,
        "watch",
        db,
        "--bucket",
        bucket,
        "--metrics-addr",
        "127.0.0.1:0",
      ],
      {
        env: {
          AWS_ACCESS_KEY_ID: c.accessKeyId,
          AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
          AWS_REGION: c.region,
          AWS_ENDPOINT_URL_S3: proxy.url,
        },
      },
    );
    try {
      await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
      const url = await serverUrl(watch);
      await until(
        "healthy",
        async () => ((await health(url)).body.status === "healthy" ? true : undefined),
      );
      proxy.block();
      let i = 0;
      const down = await until("503", async () => {
        await w.exec(`INSERT INTO t (v) VALUES ('down ${i++}')`);
        const h = await health(url);
        return h.code === 503 ? h : undefined;
      });
      assert.equal(down.body.status, "unhealthy");
      assert.equal((down.body.storage as { reachable: boolean }).reachable, false);
      const s = await scrape(url);
      assert.ok(
        value(s, "walrust_upload_queue_files")! > 0,
        "the queue grows while storage is down",
      );
      // Unhealthy comes from whichever passes max_lag first, the lag or the storage outage: the
      // lag passes it too while nothing reaches the replica.
      await until("the lag past max_lag", async () => {
        const now = await scrape(url);
        return value(now, "walrust_replication_lag_seconds")! > 3 ? true : undefined;
      });
      let retries = 0;
      for (const [k, v] of s) if (k.startsWith("walrust_retry_total")) retries += v;
      assert.ok(retries > 0, "retries are counted");
      proxy.unblock();
      await until("healthy again", async () => {
        const h = await health(url);
        return h.code === 200 && h.body.status === "healthy" ? true : undefined;
      }, 120_000);
      await until("the queue to drain", async () => {
        const after = await scrape(url);
        return value(after, "walrust_upload_queue_files") === 0 ? true : undefined;
      }, 120_000);
      assert.equal((await health(url)).body.status, "healthy");
    } finally {
      proxy.unblock();
      watch.kill("SIGTERM");
      await watch.wait();
      await w.close();
      proxy.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
