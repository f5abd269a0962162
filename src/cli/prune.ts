/** `walrust prune NAME`: apply [retention] to a database's replica; a dry run unless --force. */
import { type CliContext, configOf } from "./context.ts";
import { parseFlags } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags } from "./replica_flags.ts";
import { ConfigError } from "../errors.ts";
import { formatTXID } from "../ltx/names.ts";
import { prune } from "../api.ts";
import { Progress } from "./progress.ts";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  force: { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
} as const;

/** Run `walrust prune NAME`. */
export async function runPrune(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("prune", args, OPTIONS);
  if (positionals.length !== 1) {
    throw new ConfigError("prune: expected one database NAME (its prefix in the replica)");
  }
  const name = positionals[0];
  const config = await configOf(ctx);
  const replica = await replicaFromFlags("prune", flags, ctx, config);
  const entry = config.databases.find((d) => (d.prefix ?? "") === name);
  const progress = Progress.start(`prune ${name}: reading snapshot headers`, {
    quiet: Boolean(flags.quiet),
    unit: "files",
  });
  const r = await prune({
    bucket: replica,
    name,
    retention: { ...config.retention, ...entry?.retention },
    force: Boolean(flags.force),
    onProgress: progress && ((phase, done, total) => {
      progress.phase(
        phase === "read" ? `prune ${name}: reading snapshot headers` : `prune ${name}`,
      );
      progress.update(done, total);
    }),
  }).finally(() => progress?.done());
  if (flags.json) {
    ctx.out(JSON.stringify({
      name,
      dry_run: r.dryRun,
      deleted: r.deleted.map((f) => ({
        key: f.key,
        level: f.level,
        min_txid: formatTXID(f.minTXID),
        max_txid: formatTXID(f.maxTXID),
        size: f.size,
      })),
      bytes_freed: r.bytesFreed,
      kept: r.kept,
      earliest_txid: r.earliest ? formatTXID(r.earliest.txid) : null,
      earliest_time: r.earliest?.time.toISOString() ?? null,
      pitr_from_txid: r.pitrFromTXID !== undefined ? formatTXID(r.pitrFromTXID) : null,
    }));
    return 0;
  }
  const verb = r.dryRun ? "would delete" : "deleted";
  for (const f of r.deleted) ctx.out(`${verb} ${f.key} (${f.size} bytes)`);
  ctx.out(
    `${name}: ${verb} ${r.deleted.length} file(s), ${r.bytesFreed} bytes; ${r.kept} kept` +
      (r.earliest
        ? `; earliest restorable point: TXID ${
          formatTXID(r.earliest.txid)
        } at ${r.earliest.time.toISOString()}`
        : "") +
      (r.pitrFromTXID !== undefined ? `; every TXID from ${formatTXID(r.pitrFromTXID)} on` : ""),
  );
  if (r.dryRun && r.deleted.length > 0) ctx.out("(dry run: run again with --force to delete)");
  return 0;
}
