/**
 * /metrics and /health of a read replica (`walrust replicate SOURCE --local PATH`): where the
 * local copy is and how far behind it may be. Lag is the time since a poll last found nothing
 * newer than the copy: at most about one interval while it keeps up, growing when the replica
 * cannot be read or the follower stopped.
 */
import type { Logger } from "./log.ts";

/** What one follower reports (FollowerStatus). */
export interface FollowerView {
  path: string;
  txid: number;
  caughtUpAt: number;
  lastPollAt: number;
  applied: number;
  rebootstraps: number;
  bytesDownloaded: number;
}

/** Where and what to serve. */
export interface FollowerMetricsOptions {
  host: string;
  port: number;
  /** Lag past which /health answers 503 (ms). */
  maxLagMs: number;
  version: string;
  log: Logger;
}

/** Serve /metrics and /health for followers; a busy port is one WARN and no server. */
export async function serveFollowerMetrics(
  status: () => FollowerView[],
  o: FollowerMetricsOptions,
): Promise<{ url: string; close(): Promise<void> } | undefined> {
  const prom = (await import("prom-client")).default;
  const reg = new prom.Registry();
  const startedAt = Math.round(performance.timeOrigin);
  const lag = (f: FollowerView, now: number) => f.caughtUpAt > 0 ? (now - f.caughtUpAt) / 1000 : -1;
  const gauge = (name: string, help: string, read: (f: FollowerView, now: number) => number) =>
    new prom.Gauge({
      name,
      help,
      labelNames: ["database"],
      registers: [reg],
      collect() {
        this.reset();
        const now = Date.now();
        for (const f of status()) this.set({ database: f.path }, read(f, now));
      },
    });
  gauge(
    "walrust_follower_lag_seconds",
    "Seconds since a poll found nothing newer than the local copy (-1 before the first)",
    lag,
  );
  gauge("walrust_follower_txid", "TXID the local copy is at", (f) => f.txid);
  gauge("walrust_follower_batches_applied", "Batches applied since the start", (f) => f.applied);
  gauge(
    "walrust_follower_rebootstraps",
    "Re-bootstraps since the start",
    (f) => f.rebootstraps,
  );
  gauge(
    "walrust_follower_downloaded_bytes",
    "Bytes read from the replica since the start",
    (f) => f.bytesDownloaded,
  );
  new prom.Gauge({
    name: "walrust_uptime_seconds",
    help: "Seconds since the process started",
    registers: [reg],
    collect() {
      this.set((Date.now() - startedAt) / 1000);
    },
  });
  new prom.Gauge({
    name: "walrust_build_info",
    help: "Always 1; the version as a label",
    labelNames: ["version"],
    registers: [reg],
  }).set({ version: o.version }, 1);

  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(await reg.metrics(), { headers: { "content-type": reg.contentType } });
    }
    if (path === "/health") {
      const now = Date.now();
      const dbs: Record<string, unknown> = {};
      let unhealthy = false;
      for (const f of status()) {
        const l = lag(f, now);
        const bad = l < 0 || l * 1000 > o.maxLagMs;
        unhealthy ||= bad;
        dbs[f.path] = {
          status: bad ? "unhealthy" : "healthy",
          txid: f.txid,
          lag_seconds: l,
          last_poll: f.lastPollAt ? new Date(f.lastPollAt).toISOString() : null,
        };
      }
      const body = {
        status: unhealthy ? "unhealthy" : "healthy",
        uptime_seconds: Math.round((now - startedAt) / 1000),
        followers: dbs,
      };
      return Response.json(body, { status: unhealthy ? 503 : 200 });
    }
    return new Response("not found: try /metrics or /health\n", { status: 404 });
  };
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname: o.host, port: o.port, onListen: () => {} }, handler);
  } catch (e) {
    if (!(e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.PermissionDenied)) throw e;
    o.log.warn("metrics server not started; following goes on without it", {
      addr: `${o.host}:${o.port}`,
      error: e.message,
    });
    return undefined;
  }
  const addr = server.addr as Deno.NetAddr;
  const url = `http://${addr.hostname}:${addr.port}`;
  o.log.info("serving metrics and health", { url: `${url}/metrics`, health: `${url}/health` });
  return { url, close: () => server.shutdown() };
}
