/** `walrust restore`: rebuild a database from the replica. */
import { type CliContext, configOf, note } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags, webhookSender } from "./replica_flags.ts";
import { Progress } from "./progress.ts";
import { ConfigError, IntegrityError } from "../errors.ts";
import type { FileConfig } from "../config/schema.ts";
import { formatTXID } from "../ltx/names.ts";
import { parseTxid } from "../restore/time.ts";
import type { FallbackInfo } from "../restore/run.ts";
import { restore, restorePlan, targetOf, type TargetOptions } from "../api.ts";
import { resolve } from "node:path";

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
} as const;

/** Run `walrust restore NAME -o OUT`. */
export async function runRestore(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("restore", args, OPTIONS);
  if (positionals.length !== 1) {
    throw new ConfigError(
      "restore: expected one database NAME (its prefix in the replica, e.g. app.db)",
    );
  }
  const name = positionals[0];
  const out = str(flags, "output");
  if (!out && !flags["dry-run"]) {
    throw new ConfigError("restore: -o OUT is required (where to write the database)");
  }
  const txid = str(flags, "txid");
  const target: TargetOptions = {
    txid: txid === undefined ? undefined : parseTxid(txid),
    at: str(flags, "point-in-time") ?? str(flags, "timestamp"),
  };
  targetOf(target); // a bad target is a usage error before anything is read
  const config = await configOf(ctx);
  const hooks = webhookSender(config);
  try {
    const code = await restoreWith(name, out, target, flags, ctx, config, hooks);
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

async function restoreWith(
  name: string,
  out: string | undefined,
  target: TargetOptions,
  flags: Parameters<typeof str>[0],
  ctx: CliContext,
  config: FileConfig,
  hooks: ReturnType<typeof webhookSender>,
): Promise<number> {
  const replica = await replicaFromFlags("restore", flags, ctx, config, hooks);
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
    }));
  } else {
    ctx.out(
      `restored ${name} to ${result.outPath} at TXID ${result.txid} (${result.files} file(s), ${result.bytes} bytes, ${ms} ms, integrity ok)`,
    );
  }
  return 0;
}

/** The fallback plan in a few words: its base and how many files follow it. */
function describe(f: FallbackInfo): string {
  const [first, ...rest] = f.plan.files;
  const base = first.level === 9 ? `snapshot ${first.key}` : first.key;
  return rest.length === 0 ? base : `${base} and ${rest.length} later file(s)`;
}
