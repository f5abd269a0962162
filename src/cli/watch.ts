/** `walrust watch` (Litestream's `replicate`): replicate databases continuously. */
import type { CliContext } from "./context.ts";
import { num, parseFlags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import {
  type AgeSettings,
  type FileConfig,
  resolveCache,
  resolveMetrics,
  resolveSync,
  type SyncSettings,
} from "../config/schema.ts";
import { type DatabaseSpec, expandDatabases, literalDatabases } from "../config/globs.ts";
import { isReplicaUrl, replicaFromFlags, splitReplicaUrl, webhookSender } from "./replica_flags.ts";
import { METRICS_OPTIONS, metricsFlags } from "./metrics_flags.ts";
import { checkFdLimit } from "./fd_limit.ts";
import { ExecChild } from "./exec.ts";
import { replicate } from "../api.ts";
import { ageKeysOf } from "../config/age.ts";
import { type AgeKeys, canRead } from "../storage/age.ts";
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
  "force-snapshot": { type: "boolean" },
  "enforce-retention": { type: "boolean" },
  "restore-if-db-not-exists": { type: "boolean" },
  "shutdown-drain": { type: "string" },
  ...METRICS_OPTIONS,
  exec: { type: "string" },
} as const;

/** How long a child gets between SIGTERM and SIGKILL when replication fails under it. */
const EXEC_KILL_GRACE_MS = 10_000;

/** The `-exec` child, shared by the signal handler and the command once it starts one. */
interface ExecSlot {
  child?: ExecChild;
  /** Its exit code, once it exited. */
  code?: number;
}

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
 * Run `walrust watch` (or `replicate`, its Litestream name: `command` names it in messages).
 * Signals are handled from the first moment: one arriving during start-up (loading the config,
 * a long first snapshot) lets the start finish, then syncs what is committed, drains the uploads
 * and exits 0; a second signal exits at once (the queue is on disk). With `--exec CMD`, signals
 * go to the child while it runs; when it exits, replication stops the same way and walrust exits
 * with the child's code.
 */
export async function runWatch(
  args: string[],
  ctx: CliContext,
  command = "watch",
): Promise<number> {
  const stopping = new AbortController();
  const exec: ExecSlot = {};
  let signals = 0;
  const onSignal = (sig: Deno.Signal) => {
    if (exec.child?.running) {
      log.info("forwarding the signal to the exec process", { signal: sig, pid: exec.child.pid });
      exec.child.signal(sig);
      return;
    }
    signals++;
    if (signals > 1) {
      log.warn("second signal; exiting now", { signal: sig });
      Deno.exit(exec.code ?? 130);
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
    return await watchUntilStopped(args, ctx, stopping.signal, command, exec);
  } finally {
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    // Never leave the application running behind us (a failure before it could exit).
    if (exec.child?.running) await exec.child.terminate(EXEC_KILL_GRACE_MS);
  }
}

async function watchUntilStopped(
  args: string[],
  ctx: CliContext,
  stopped: AbortSignal,
  command: string,
  exec: ExecSlot,
): Promise<number> {
  const { flags, positionals } = parseFlags(command, args, OPTIONS);
  const flagSync = syncFlags(flags); // validate flags before touching anything
  const flagMetrics = metricsFlags(flags);
  const execFlag = str(flags, "exec");
  if (execFlag !== undefined && execFlag.trim() === "") {
    throw new ConfigError(`${command}: --exec needs a command (e.g. --exec "python3 app.py")`);
  }
  const config = await loadConfig(ctx.configPath, { expandEnv: !ctx.noExpandEnv });
  const execCmd = execFlag ?? ((config as FileConfig & { exec?: string }).exec || undefined);
  if (execCmd !== undefined && flags.once) {
    throw new ConfigError(`${command}: --once cannot be used with --exec`);
  }
  for (const f of ["force-snapshot", "enforce-retention"] as const) {
    if (flags[f] && !flags.once) {
      throw new ConfigError(`${command}: --${f} needs --once (fix: ${command} --once --${f})`);
    }
  }
  let bucket = str(flags, "bucket") ?? config.s3.bucket;
  let entries: DatabaseSpec[] = positionals.length > 0
    ? positionals.map((path) => ({ path, sync: {} }))
    : config.databases;
  // Litestream's `replicate DB_PATH REPLICA_URL`: the URL's last segment names the database.
  if (positionals.length === 2 && isReplicaUrl(positionals[1])) {
    if (str(flags, "bucket") !== undefined) {
      throw new ConfigError(`${command}: give a replica URL or --bucket, not both`);
    }
    const split = splitReplicaUrl(positionals[1]);
    bucket = split.bucket;
    entries = [{ path: positionals[0], prefix: split.name, sync: {} }];
  } else if (positionals.some(isReplicaUrl)) {
    throw new ConfigError(
      `${command}: a replica URL goes after exactly one database (${command} DB_PATH REPLICA_URL), ` +
        "or use --bucket URL",
    );
  }
  if (!bucket) {
    throw new ConfigError(
      `${command}: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix, or [s3] bucket in walrust.toml)`,
    );
  }
  if (entries.length === 0) {
    throw new ConfigError(
      `${command}: no databases given (fix: walrust ${command} app.db, or [[databases]] in walrust.toml)`,
    );
  }
  const expandOpts = {
    allowEmptyGlobs: config.allowEmptyGlobs,
    configPath: positionals.length > 0 ? undefined : config.path,
  };
  if (flags["restore-if-db-not-exists"]) {
    const { restoreMissing } = await import("./restore_missing.ts");
    const replica = await replicaFromFlags(command, flags, ctx, config, undefined, bucket);
    try {
      await restoreMissing(replica, literalDatabases(entries, expandOpts));
    } finally {
      await replica.storage.close?.();
    }
  }
  const dbs = await expandDatabases(entries, expandOpts);
  checkFdLimit(dbs.length);
  // Directory watching: globs with `watch = true` are scanned again while running.
  const watched = entries.filter((e) => e.watch);
  const noKeys = { recipients: [], identities: [] };
  // One read of an entry's identity files, however often directory watching rescans it.
  const keysOf = new Map<AgeSettings, Promise<AgeKeys | undefined>>();
  const ownKeys = (a: AgeSettings) => {
    let k = keysOf.get(a);
    if (!k) keysOf.set(a, k = ageKeysOf(config.age, a));
    return k;
  };
  const asOptions = async (d: (typeof dbs)[number]) => ({
    path: d.path,
    name: d.prefix,
    sync: resolveSync(config.sync, d.sync, flagSync),
    retention: d.retention,
    // A database's own `age` replaces [age]; an empty one means a plain replica.
    ...(d.age ? { age: (await ownKeys(d.age)) ?? noKeys } : {}),
  });
  const discover = watched.length > 0
    ? async () =>
      await Promise.all(
        (await expandDatabases(watched, { ...expandOpts, allowEmptyGlobs: true })).map(asOptions),
      )
    : undefined;
  if (dbs.length === 0 && !discover) {
    log.warn("no database matched the configured globs; nothing to replicate");
    return 0;
  }
  refuseOrWarnUnimplemented(config);
  const drainFlag = num("watch", flags, "shutdown-drain", { min: 0 });
  const drainMs = drainFlag !== undefined ? drainFlag * 1000 : config.shutdownDrainMs ?? 10_000;
  const hooks = webhookSender(config);
  try {
    const replica = await replicaFromFlags(command, flags, ctx, config, hooks, bucket);
    if (!canRead(replica.storage)) {
      log.warn(
        "age: recipients only, no identity: this host writes backups it cannot read; " +
          "compaction and validation are off (restore and verify run where the identity is)",
      );
    }
    const r = await replicate({
      bucket: replica,
      databases: await Promise.all(dbs.map(asOptions)),
      discover,
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
      // Litestream's -once extras: a snapshot of every database, then the retention policy.
      if (flags["force-snapshot"]) { for (const path of r.databases) await r.snapshot(path); }
      if (flags["enforce-retention"]) await r.enforceRetention();
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
    // The app starts only once replication runs, so its first commit is already watched.
    if (execCmd !== undefined && !stopped.aborted) {
      exec.child = ExecChild.start(execCmd);
      log.info("started the exec process", { pid: exec.child.pid, command: execCmd });
    }
    let fatal: unknown;
    const ends: Promise<unknown>[] = [
      new Promise<void>((resolve) => {
        if (stopped.aborted) resolve();
        else stopped.addEventListener("abort", () => resolve(), { once: true });
      }),
      r.failed.catch((e) => (fatal = e)),
    ];
    // Only a real child may end the race: Promise.race settles at once on a non-promise.
    if (exec.child) ends.push(exec.child.exited.then((code) => (exec.code = code)));
    await Promise.race(ends);
    if (exec.child?.running && fatal !== undefined) {
      log.error("replication failed; stopping the exec process", { pid: exec.child.pid });
      exec.code = await exec.child.terminate(EXEC_KILL_GRACE_MS);
    } else if (exec.code !== undefined) {
      log.info("the exec process exited; stopping replication", { exit_code: exec.code });
    }
    await server?.close();
    if (!(await r.stop())) {
      log.warn(
        "uploads still pending at exit; they stay in the local queue and go up on the next start",
      );
    }
    await hooks.flush(5_000);
    if (fatal !== undefined) throw fatal;
    return exec.code ?? 0;
  } catch (e) {
    // Alerts raised on the way out (auth failure, ...) must still reach their receivers.
    await hooks.flush(5_000);
    throw e;
  }
}

/** Settings this version parses but does not act on: say so rather than ignore them silently. */
function refuseOrWarnUnimplemented(config: FileConfig): void {
  if (config.cache.path !== undefined) {
    throw new ConfigError(
      "cache.path is not supported yet: local state lives in .<dbfile>-walrust/ beside each database (fix: remove cache.path)",
    );
  }
}
