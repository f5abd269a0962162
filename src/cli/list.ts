/** `walrust list`: databases in a replica, or one database's files per level. */
import { type CliContext, configOf } from "./context.ts";
import { parseFlags } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags } from "./replica_flags.ts";
import { ConfigError, RestoreError } from "../errors.ts";
import { list, listFiles } from "../api.ts";
import { formatTXID } from "../ltx/names.ts";

const OPTIONS = { ...REPLICA_OPTIONS, json: { type: "boolean" } } as const;

/** Run `walrust list [NAME]`. */
export async function runList(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("list", args, OPTIONS);
  if (positionals.length > 1) throw new ConfigError("list: expected at most one database NAME");
  const replica = await replicaFromFlags("list", flags, ctx, await configOf(ctx));
  const want = positionals[0];
  if (want !== undefined) {
    const rows = await listFiles({ bucket: replica, name: want });
    // The same answer as restore gives for a name with no backup, in text and JSON alike.
    if (rows.length === 0) {
      throw new RestoreError(
        `no backup of ${want} at ${replica.url} ('walrust list' without NAME shows the databases there)`,
      );
    }
    if (flags.json) {
      ctx.out(JSON.stringify(
        rows.map((r) => ({
          level: r.level,
          min_txid: formatTXID(r.minTXID),
          max_txid: formatTXID(r.maxTXID),
          size: r.size,
          created: r.created.toISOString(),
          key: r.key,
        })),
        null,
        2,
      ));
      return 0;
    }
    printTable([
      ["level", "min_txid", "max_txid", "size", "created"],
      ...rows.map((r) => [
        String(r.level),
        formatTXID(r.minTXID),
        formatTXID(r.maxTXID),
        String(r.size),
        r.created.toISOString(),
      ]),
    ], ctx);
    return 0;
  }
  const dbs = await list({ bucket: replica });
  if (flags.json) {
    ctx.out(JSON.stringify(
      dbs.map((d) => ({
        ...d,
        txid: formatTXID(d.txid),
        oldest: d.oldest.toISOString(),
        newest: d.newest.toISOString(),
      })),
      null,
      2,
    ));
    return 0;
  }
  if (dbs.length === 0) {
    ctx.out(`no databases in ${replica.url}`);
    return 0;
  }
  const header = ["name", "txid", "snapshots", "L0", "L1", "L2", "L3", "oldest", "newest", "bytes"];
  const table = dbs.map((d) => [
    d.name,
    formatTXID(d.txid),
    String(d.snapshots),
    String(d.l0),
    String(d.l1),
    String(d.l2),
    String(d.l3),
    d.oldest.toISOString(),
    d.newest.toISOString(),
    String(d.bytes),
  ]);
  printTable([header, ...table], ctx);
  return 0;
}

function printTable(rows: string[][], ctx: CliContext): void {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) ctx.out(r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd());
}
