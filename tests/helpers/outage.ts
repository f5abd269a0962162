/**
 * The outage test every backend runs: `watch` replicates through a TCP proxy in front of the real
 * server; the proxy drops every connection for `seconds` while a long-lived writer commits every
 * 100 ms, and watch is killed -9 halfway through and started again (its local queue carries the
 * unsent files over); then the proxy serves again, the replica catches up, and a restore taken
 * directly from the server equals the source, every commit in it.
 */
import assert from "node:assert/strict";
import { walrust, WalrustProcess } from "./walrust.ts";
import { cliSql } from "./apps.ts";
import { dumpContent, SqliteWriter } from "./sqlite_writer.ts";
import { TcpProxy } from "./tcp_proxy.ts";
import { waitCaughtUp } from "./replica.ts";

/** One backend's outage run. */
export interface OutageCase {
  /** The server the proxy stands in front of. */
  target: { hostname: string; port: number };
  /** `--bucket ...` (and `--endpoint ...`) flags that reach the server through the proxy. */
  viaProxy(proxyPort: number): string[];
  /** The same replica reached directly, for the restore afterwards. */
  direct: string[];
  /** Credentials and settings for every walrust run. */
  env: Record<string, string>;
  /** Secrets that must not appear in watch's log. */
  secrets?: string[];
  /** How long the server is unreachable (s). */
  seconds: number;
  /** Delete what the run left on the server. */
  cleanup(): Promise<void>;
}

/** Run the outage scenario of `c`; throws (an assertion) when anything is lost. */
export async function outageLosesNothing(c: OutageCase): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-outage-" });
  const proxy = TcpProxy.start(c.target);
  const db = `${dir}/app.db`;
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[sync]\nwal_sync_interval = 0.1\n[retry]\nmax_retries = 2\nbase_delay_ms = 50\n` +
      `max_delay_ms = 500\ncircuit_breaker_cooldown_ms = 1000\n`,
  );
  const args = [
    "--config",
    `${dir}/walrust.toml`,
    "watch",
    db,
    ...c.viaProxy(proxy.port),
    "--no-metrics",
  ];
  const w = await SqliteWriter.start(db);
  let watch = new WalrustProcess(args, { env: c.env });
  let committed = 0;
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)");
    await watch.waitFor("replicating", 60_000);
    proxy.block();
    const end = Date.now() + c.seconds * 1000;
    let killed = false;
    while (Date.now() < end) {
      await w.exec(`INSERT INTO t (v, n) VALUES ('o${committed}', ${committed})`);
      committed++;
      if (!killed && Date.now() > end - c.seconds * 500) {
        watch.kill("SIGKILL");
        await watch.wait();
        watch = new WalrustProcess(args, { env: c.env });
        killed = true;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(watch.stderr, /replica unreachable|upload failed/);
    proxy.unblock();
    await watch.waitFor("replicating", 120_000);
    await waitCaughtUp(db, undefined, "app.db", 120_000).catch((e) => {
      throw new Error(`${e.message}; watch's log ends:\n${watch.stderr.slice(-3000)}`);
    });
    const source = await dumpContent(db);
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, watch.stderr);
    const out = `${dir}/out.db`;
    const r = await walrust(["restore", "app.db", "-o", out, ...c.direct], { env: c.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal(await dumpContent(out), source);
    assert.equal((await cliSql(out, "SELECT count(*) FROM t")).trim(), String(committed));
    for (const s of c.secrets ?? []) assert.ok(!watch.stderr.includes(s), "a secret in the log");
  } finally {
    proxy.unblock();
    watch.kill("SIGKILL");
    await watch.wait();
    await w.close();
    proxy.close();
    await c.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}
