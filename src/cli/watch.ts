/** `walrust watch`: replicate databases continuously. */
import type { CliContext } from "./context.ts";
import { type Flags, num, parseFlags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import {
  type FileConfig,
  type MetricsSettings,
  resolveCache,
  resolveMetrics,
  resolveSync,
  type SyncSettings,
} from "../config/schema.ts";
import { expandDatabases } from "../config/globs.ts";
import { replicaFromFlags, webhookSender } from "./replica_flags.ts";
import { replicate } from "../api.ts";
import { log } from "../observe/log.ts";
import { VERSION } from "../version.ts";

const OPTIONS = {
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
  "wal-sync-interval": { type: "string" },
  "snapshot-interval": { type: "string" },
  "checkpoint-interval": { type: "string" },
  "min-checkpoint-pages": { type: "string" },
  "wal-truncate-threshold": { type: "string" },
  format: { type: "string" },
  "no-startup-snapshot": { type: "boolean" },
  once: { type: "boolean" },
  "shutdown-drain": { type: "string" },
  "metrics-addr": { type: "string" },
  "no-metrics": { type: "boolean" },
  "metrics-process": { type: "boolean" },
} as const;

/** Flags that override [sync] settings; unset flags stay undefined so the file wins. */
function syncFlags(flags: Record<string, unknown>): Partial<SyncSettings> {
  const f = flags as Record<string, string | boolean | undefined>;
  const out: Partial<SyncSettings> = {};
  const secs = (name: string, min: number) => {
    const v = num("watch", f, name, { min });
    return v === undefined ? undefined : Math.round(v * 1000);
  };
  const wsi = secs("wal-sync-interval", 0.001);
  if (wsi !== undefined) out.walSyncIntervalMs = wsi;
  const si = secs("snapshot-interval", 0);
  if (si !== undefined) out.snapshotIntervalMs = si;
  const ci = secs("checkpoint-interval", 0);
  if (ci !== undefined) out.checkpointIntervalMs = ci;
  const mcp = num("watch", f, "min-checkpoint-pages", { min: 1, integer: true });
  if (mcp !== undefined) out.minCheckpointPageCount = mcp;
  const wtt = num("watch", f, "wal-truncate-threshold", { min: 0, integer: true });
  if (wtt !== undefined) out.walTruncateThresholdPages = wtt;
  const fmt = str(f, "format");
  if (fmt !== undefined) {
    if (fmt !== "legacy" && fmt !== "block") {
      throw new ConfigError(`watch: --format expects legacy or block, got "${fmt}"`);
    }
    out.format = fmt;
  }
  if (f["no-startup-snapshot"]) out.onStartup = false;
  return out;
}

/**
 * Run `walrust watch`. Signals are handled from the first moment: one arriving during start-up
 * (loading the config, a long first snapshot) lets the start finish, then syncs what is committed,
 * drains the uploads and exits 0; a second signal exits at once (the queue is on disk).
 */
export async function runWatch(args: string[], ctx: CliContext): Promise<number> {
  const stopping = new AbortController();
  let signals = 0;
  const onSignal = (sig: Deno.Signal) => {
    signals++;
    if (signals > 1) {
      log.warn("second signal; exiting now", { signal: sig });
      Deno.exit(130);
    }
    log.info("shutting down; finishing the current sync and draining uploads", { signal: sig });
    stopping.abort();
  };
  const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const fn = () => onSignal(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  try {
    return await watchUntilStopped(args, ctx, stopping.signal);
  } finally {
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  }
}

async function watchUntilStopped(
  args: string[],
  ctx: CliContext,
  stopped: AbortSignal,
): Promise<number> {
  const { flags, positionals } = parseFlags("watch", args, OPTIONS);
  const flagSync = syncFlags(flags); // validate flags before touching anything
  const flagMetrics = metricsFlags(flags);
  const config = await loadConfig(ctx.configPath);
  const bucket = str(flags, "bucket") ?? config.s3.bucket;
  if (!bucket) {
    throw new ConfigError(
      "watch: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix, or [s3] bucket in walrust.toml)",
    );
  }
  const entries = positionals.length > 0
    ? positionals.map((path) => ({ path, sync: {} }))
    : config.databases;
  if (entries.length === 0) {
    throw new ConfigError(
      "watch: no databases given (fix: walrust watch app.db, or [[databases]] in walrust.toml)",
    );
  }
  const dbs = await expandDatabases(entries, {
    allowEmptyGlobs: config.allowEmptyGlobs,
    configPath: positionals.length > 0 ? undefined : config.path,
  });
  if (dbs.length === 0) {
    log.warn("no database matched the configured globs; nothing to replicate");
    return 0;
  }
  refuseOrWarnUnimplemented(config);
  const drainFlag = num("watch", flags, "shutdown-drain", { min: 0 });
  const drainMs = drainFlag !== undefined ? drainFlag * 1000 : config.shutdownDrainMs ?? 10_000;
  const hooks = webhookSender(config);
  try {
    const replica = await replicaFromFlags("watch", flags, ctx, config, hooks);
    const r = await replicate({
      bucket: replica,
      databases: dbs.map((d) => ({
        path: d.path,
        name: d.prefix,
        sync: resolveSync(config.sync, d.sync, flagSync),
        retention: d.retention,
      })),
      maintenance: config.maintenance,
      retention: config.retention,
      cacheMaxBytes: resolveCache(config.cache).maxSize,
      uploadConcurrency: config.uploadConcurrency,
      log,
      drainMs,
      notify: (event, p) => hooks.send(event, p),
    });
    if (flags.once) {
      await r.syncNow();
      const drained = await r.stop({ drainMs: Math.max(drainMs, 30_000) });
      await hooks.flush(5_000);
      return drained ? 0 : 4;
    }
    const m = resolveMetrics(config.metrics, flagMetrics);
    const server = m.enabled
      ? await (await import("../observe/metrics.ts")).serveMetrics({
        status: () => r.status(),
        storage: () => r.storage(),
        onSync: (fn) => r.on("sync", fn),
        onCheckpoint: (fn) => r.on("checkpoint", fn),
      }, {
        host: m.host,
        port: m.port,
        processMetrics: m.process,
        maxLagMs: m.maxLagMs,
        version: VERSION,
        log,
      })
      : undefined;
    if (!stopped.aborted) log.info("watching", { databases: dbs.length, replica: replica.url });
    let fatal: unknown;
    await Promise.race([
      new Promise<void>((resolve) => {
        if (stopped.aborted) resolve();
        else stopped.addEventListener("abort", () => resolve(), { once: true });
      }),
      r.failed.catch((e) => (fatal = e)),
    ]);
    await server?.close();
    if (!(await r.stop())) {
      log.warn(
        "uploads still pending at exit; they stay in the local queue and go up on the next start",
      );
    }
    await hooks.flush(5_000);
    if (fatal !== undefined) throw fatal;
    return 0;
  } catch (e) {
    // Alerts raised on the way out (auth failure, ...) must still reach their receivers.
    await hooks.flush(5_000);
    throw e;
  }
}

/** `--metrics-addr HOST:PORT`, `--no-metrics`, `--metrics-process` over [metrics]. */
function metricsFlags(flags: Flags): Partial<MetricsSettings> {
  const out: Partial<MetricsSettings> = {};
  const addr = str(flags, "metrics-addr");
  if (addr !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) {
      throw new ConfigError(
        `watch: --metrics-addr expects HOST:PORT (e.g. 127.0.0.1:16767 or :9090), got "${addr}"`,
      );
    }
    out.host = m[1] ?? (m[2] || "0.0.0.0");
    out.port = port;
    out.enabled = true;
  }
  if (flags["no-metrics"]) out.enabled = false;
  if (flags["metrics-process"]) out.process = true;
  return out;
}

/** Settings this version parses but does not act on: say so rather than ignore them silently. */
function refuseOrWarnUnimplemented(config: FileConfig): void {
  if (config.cache.path !== undefined) {
    throw new ConfigError(
      "cache.path is not supported yet: local state lives in .<dbfile>-walrust/ beside each database (fix: remove cache.path)",
    );
  }
}
