/** `walrust restore`: rebuild a database from the replica. */
import { resolve } from "node:path";
import { type CliContext, configOf, note } from "./context.ts";
import { type Flags, num, parseFlags, str } from "./args.ts";
import {
  type DatabaseArg,
  REPLICA_OPTIONS,
  replicaFromFlags,
  resolveDatabaseArg,
  webhookSender,
} from "./replica_flags.ts";
import { Progress } from "./progress.ts";
import { hasObjects } from "./restore_missing.ts";
import { ConfigError, IntegrityError, RestoreError } from "../errors.ts";
import { type FileConfig, resolveMetrics } from "../config/schema.ts";
import { parseDurationMs } from "../config/duration.ts";
import { formatTXID } from "../ltx/names.ts";
import { parseTxid } from "../restore/time.ts";
import type { FallbackInfo } from "../restore/run.ts";
import type { Replica } from "../storage/open.ts";
import { restore, restorePlan, targetOf, type TargetOptions } from "../api.ts";
import { pathExists } from "../fsutil.ts";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  output: { type: "string", short: "o" },
  txid: { type: "string" },
  "point-in-time": { type: "string" },
  timestamp: { type: "string" }, // Litestream's spelling
  force: { type: "boolean" },
  "no-checksum-record": { type: "boolean" },
  "dry-run": { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  "if-db-not-exists": { type: "boolean" },
  "if-replica-exists": { type: "boolean" },
  parallelism: { type: "string" }, // Litestream's; accepted, no effect on LTX restores
  "integrity-check": { type: "string" }, // Litestream's; we always run the full check
  generation: { type: "string" }, // a Litestream v0.3 backup's generation
  index: { type: "string" }, // and WAL index within it
  follow: { type: "boolean", short: "f" }, // Litestream's follow mode: a read replica
  "follow-interval": { type: "string" },
} as const;

/** Run `walrust restore NAME|DB_PATH|REPLICA_URL [-o OUT]`. */
export async function runRestore(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("restore", args, OPTIONS);
  if (positionals.length !== 1) {
    throw new ConfigError(
      "restore: expected one database: its NAME in the replica (e.g. app.db), its path as " +
        "listed in the config, or a replica URL (s3://bucket/path/app.db)",
    );
  }
  const txid = str(flags, "txid");
  const pit = str(flags, "point-in-time");
  const ts = str(flags, "timestamp");
  if (pit !== undefined && ts !== undefined) {
    throw new ConfigError("restore: give --point-in-time or --timestamp, not both");
  }
  const target: TargetOptions = {
    txid: txid === undefined ? undefined : parseTxid(txid),
    at: pit ?? ts,
  };
  targetOf(target); // a bad target is a usage error before anything is read
  num("restore", flags, "parallelism", { min: 1, integer: true });
  const check = str(flags, "integrity-check");
  if (check !== undefined && !["none", "quick", "full"].includes(check)) {
    throw new ConfigError(`restore: --integrity-check expects none, quick or full, got "${check}"`);
  }
  const config = await configOf(ctx);
  const db = await resolveDatabaseArg("restore", positionals[0], flags, config);
  // Litestream's rule: a database found through the config restores to its own path by default.
  const out = str(flags, "output") ?? db.dbPath;
  if (!out && !flags["dry-run"]) {
    throw new ConfigError(
      db.fromUrl
        ? `restore: -o OUT is required with a replica URL (fix: walrust restore -o /path/to/db ${
          positionals[0]
        })`
        : "restore: -o OUT is required (where to write the database)",
    );
  }
  if (flags.follow) return await restoreAndFollow(db, out!, target, flags, ctx, config);
  if (out && flags["if-db-not-exists"] && (await pathExists(out))) {
    note(ctx, `${out} already exists; nothing restored (-if-db-not-exists)`);
    if (flags.json) {
      ctx.out(JSON.stringify({ db_path: resolve(out), name: db.name, skipped: "db_exists" }));
    }
    return 0;
  }
  const hooks = webhookSender(config);
  const name = db.name;
  try {
    const code = await restoreWith(db, out, target, flags, ctx, config, hooks);
    await hooks.flush(5_000); // corruption planned around is reported even when the restore succeeds
    return code;
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    if (e instanceof IntegrityError) hooks.send("corruption_detected", { database: name, error });
    hooks.send("restore_failed", { database: name, error });
    await hooks.flush(5_000);
    throw e;
  }
}

/**
 * `restore -f` (Litestream's follow mode): restore the latest state into OUT, then keep applying
 * what is new, until SIGINT or SIGTERM; walrust's read replica (docs/replicas.md) does it, so OUT
 * is a rollback-journal copy readers open read-only, and a later `restore -f` continues it.
 */
async function restoreAndFollow(
  db: DatabaseArg,
  out: string,
  target: TargetOptions,
  flags: Flags,
  ctx: CliContext,
  config: FileConfig,
): Promise<number> {
  if (target.txid !== undefined || target.at !== undefined || flags["dry-run"]) {
    throw new ConfigError(
      "restore: -f follows the latest state; it takes no --txid, time or --dry-run",
    );
  }
  const every = str(flags, "follow-interval");
  const intervalMs = every === undefined ? 1000 : parseDurationMs(every, "--follow-interval");
  if (!(intervalMs > 0)) throw new ConfigError("restore: --follow-interval must be positive");
  const replica = await replicaFromFlags(
    "restore",
    flags,
    ctx,
    config,
    undefined,
    db.bucketUrl,
    db.age,
  );
  const { followUntilStopped } = await import("./follow.ts");
  return await followUntilStopped(
    [{ replica, name: db.name, local: out, intervalMs }],
    { ...resolveMetrics(config.metrics), enabled: false },
  );
}

async function restoreWith(
  db: DatabaseArg,
  out: string | undefined,
  target: TargetOptions,
  flags: Flags,
  ctx: CliContext,
  config: FileConfig,
  hooks: ReturnType<typeof webhookSender>,
): Promise<number> {
  const name = db.name;
  const replica = await replicaFromFlags(
    "restore",
    flags,
    ctx,
    config,
    hooks,
    db.bucketUrl,
    db.age,
  );
  try {
    return await restoreFrom(replica, name, out, target, flags, ctx, hooks);
  } catch (e) {
    // -if-replica-exists: "no backup at all" is a first start, not a failure. Decided by what
    // the replica holds under the database's prefix, not by the error's text.
    if (
      flags["if-replica-exists"] && e instanceof RestoreError && !(await hasObjects(replica, name))
    ) {
      note(ctx, `no backup of ${name} at ${replica.url}; nothing restored (-if-replica-exists)`);
      if (flags.json) {
        ctx.out(JSON.stringify({ db_path: out && resolve(out), name, skipped: "no_backup" }));
      }
      return 0;
    }
    throw e;
  }
}

async function restoreFrom(
  replica: Replica,
  name: string,
  out: string | undefined,
  target: TargetOptions,
  flags: Flags,
  ctx: CliContext,
  hooks: ReturnType<typeof webhookSender>,
): Promise<number> {
  if (flags["dry-run"]) {
    const plan = await restorePlan({ bucket: replica, name, ...target });
    if (flags.json) {
      ctx.out(JSON.stringify({
        name,
        txid: formatTXID(plan.txid),
        files: plan.files.map((f) => ({
          level: f.level,
          min_txid: formatTXID(f.minTXID),
          max_txid: formatTXID(f.maxTXID),
          size: f.size,
          key: f.key,
        })),
      }));
    } else {
      ctx.out(`restore plan for ${name}: TXID ${plan.txid}, ${plan.files.length} file(s)`);
      for (const f of plan.files) ctx.out(`  L${f.level} ${f.key} (${f.size} bytes)`);
    }
    return 0;
  }
  const progress = Progress.start(`restore ${name}`, { quiet: Boolean(flags.quiet) });
  let result;
  try {
    result = await restore({
      bucket: replica,
      name,
      output: resolve(out!),
      ...target,
      force: Boolean(flags.force),
      checkRecordedChecksum: !flags["no-checksum-record"],
      generation: str(flags, "generation"),
      index: v3Index(str(flags, "index")),
      onFallback: (f) => {
        progress?.done();
        note(ctx, `${f.key} is corrupt (${f.reason}); restoring without it from ${describe(f)}`);
        hooks.send("corruption_detected", { database: name, error: `${f.key}: ${f.reason}` });
      },
      onProgress: progress && ((done, total) => progress.update(done, total)),
    });
  } finally {
    progress?.done();
  }
  if (result.clampedToLatest) {
    note(
      ctx,
      `the requested time is after the newest backup; restored the latest state (TXID ${result.txid})`,
    );
  }
  const ms = result.durationMs;
  if (flags.json) {
    ctx.out(JSON.stringify({
      db_path: result.outPath,
      replica: result.replica,
      name,
      txid: formatTXID(result.txid),
      files: result.files,
      bytes: result.bytes,
      restore_seconds: ms / 1000,
      duration_ms: ms,
      integrity_check: "ok",
      clamped_to_latest: result.clampedToLatest,
      ...(result.v3
        ? {
          v3: {
            generation: result.v3.generation,
            index: result.v3.index,
            offset: result.v3.offset,
            segments: result.v3.segments,
            timestamp: result.v3.timestamp.toISOString(),
          },
        }
        : {}),
    }));
  } else if (result.v3) {
    const v = result.v3;
    ctx.out(
      `restored ${name} to ${result.outPath} from Litestream v0.3 generation ${v.generation} ` +
        `at WAL index ${v.index} (${v.segments} segment(s), ${result.bytes} bytes, ${ms} ms, ` +
        "integrity ok)",
    );
  } else {
    ctx.out(
      `restored ${name} to ${result.outPath} at TXID ${result.txid} (${result.files} file(s), ${result.bytes} bytes, ${ms} ms, integrity ok)`,
    );
  }
  return 0;
}

/** `--index N` of a v0.3 restore: decimal or 8 hex digits as in its file names. */
function v3Index(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = /^[0-9a-f]{8}$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new ConfigError(
      `restore: --index expects a WAL index (decimal or 8 hex digits), got "${s}"`,
    );
  }
  return n;
}

/** The fallback plan in a few words: its base and how many files follow it. */
function describe(f: FallbackInfo): string {
  const [first, ...rest] = f.plan.files;
  const base = first.level === 9 ? `snapshot ${first.key}` : first.key;
  return rest.length === 0 ? base : `${base} and ${rest.length} later file(s)`;
}
