/** `walrust restore`: rebuild a database from the replica. */
import type { CliContext } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags, webhookSender } from "./replica_flags.ts";
import { ConfigError, IntegrityError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
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
  const config = await loadConfig(ctx.configPath);
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
  config: Awaited<ReturnType<typeof loadConfig>>,
  hooks: ReturnType<typeof webhookSender>,
): Promise<number> {
  const replica = await replicaFromFlags("restore", flags, ctx, config, hooks);
  if (flags["dry-run"]) {
    const plan = await restorePlan({ bucket: replica, name, ...target });
    if (flags.json) ctx.out(JSON.stringify({ txid: plan.txid, files: plan.files }, null, 2));
    else {
      ctx.out(`restore plan for ${name}: TXID ${plan.txid}, ${plan.files.length} file(s)`);
      for (const f of plan.files) ctx.out(`  L${f.level} ${f.key} (${f.size} bytes)`);
    }
    return 0;
  }
  const result = await restore({
    bucket: replica,
    name,
    output: resolve(out!),
    ...target,
    force: Boolean(flags.force),
    checkRecordedChecksum: !flags["no-checksum-record"],
    onFallback: (f) => {
      ctx.err(`note: ${f.key} is corrupt (${f.reason}); restoring without it from ${describe(f)}`);
      hooks.send("corruption_detected", { database: name, error: `${f.key}: ${f.reason}` });
    },
  });
  if (result.clampedToLatest) {
    ctx.err(
      `note: the requested time is after the newest backup; restored the latest state (TXID ${result.txid})`,
    );
  }
  const ms = result.durationMs;
  if (flags.json) {
    ctx.out(JSON.stringify({
      db_path: result.outPath,
      replica: result.replica,
      name,
      txid: result.txid,
      files: result.files,
      bytes: result.bytes,
      duration_ms: ms,
      integrity_check: "ok",
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
