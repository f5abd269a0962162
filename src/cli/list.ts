/** `walrust list`: databases in a replica, or one database's files per level. */
import type { CliContext } from "./context.ts";
import { parseFlags } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags } from "./replica_flags.ts";
import { ConfigError } from "../errors.ts";
import { splitLtxKey } from "../storage/layout.ts";
import { formatTXID } from "../ltx/names.ts";

const OPTIONS = { ...REPLICA_OPTIONS, json: { type: "boolean" } } as const;

interface FileRow {
  name: string;
  level: number;
  minTXID: number;
  maxTXID: number;
  size: number;
  time: Date;
  key: string;
}

/** Run `walrust list [NAME]`. */
export async function runList(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("list", args, OPTIONS);
  if (positionals.length > 1) throw new ConfigError("list: expected at most one database NAME");
  const replica = await replicaFromFlags("list", flags, ctx);
  const base = replica.basePrefix.replace(/\/+$/, "");
  const want = positionals[0];
  const scan = want !== undefined
    ? (base ? `${base}/${want}/` : `${want}/`)
    : (base ? `${base}/` : "");
  const rows: FileRow[] = [];
  for await (const o of replica.storage.list(scan)) {
    const k = splitLtxKey(replica.kind, o.key);
    if (!k) continue;
    const name = base && k.prefix.startsWith(base + "/")
      ? k.prefix.slice(base.length + 1)
      : k.prefix;
    if (want !== undefined && name !== want) continue;
    rows.push({
      name,
      level: k.level,
      minTXID: k.minTXID,
      maxTXID: k.maxTXID,
      size: o.size,
      time: o.lastModified,
      key: o.key,
    });
  }
  if (want !== undefined) return printFiles(want, rows, Boolean(flags.json), ctx);
  const byDb = new Map<string, FileRow[]>();
  for (const r of rows) byDb.set(r.name, [...(byDb.get(r.name) ?? []), r]);
  const dbs = [...byDb.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([name, fs]) => {
    const count = (l: number) => fs.filter((f) => f.level === l).length;
    const snaps = fs.filter((f) => f.level === 9);
    const times = fs.map((f) => f.time.getTime());
    const oldestBase = snaps.length
      ? Math.min(...snaps.map((f) => f.time.getTime()))
      : Math.min(...times);
    return {
      name,
      txid: Math.max(...fs.map((f) => f.maxTXID)),
      snapshots: snaps.length,
      l0: count(0),
      l1: count(1),
      l2: count(2),
      l3: count(3),
      oldest: new Date(oldestBase).toISOString(),
      newest: new Date(Math.max(...times)).toISOString(),
      bytes: fs.reduce((n, f) => n + f.size, 0),
    };
  });
  if (flags.json) {
    ctx.out(JSON.stringify(dbs.map((d) => ({ ...d, txid: formatTXID(d.txid) })), null, 2));
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
    d.oldest,
    d.newest,
    String(d.bytes),
  ]);
  printTable([header, ...table], ctx);
  return 0;
}

function printFiles(name: string, rows: FileRow[], json: boolean, ctx: CliContext): number {
  rows.sort((a, b) => a.level - b.level || a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
  if (json) {
    ctx.out(JSON.stringify(
      rows.map((r) => ({
        level: r.level,
        min_txid: formatTXID(r.minTXID),
        max_txid: formatTXID(r.maxTXID),
        size: r.size,
        created: r.time.toISOString(),
        key: r.key,
      })),
      null,
      2,
    ));
    return 0;
  }
  if (rows.length === 0) throw new ConfigError(`list: no files for database "${name}"`);
  printTable([
    ["level", "min_txid", "max_txid", "size", "created"],
    ...rows.map((r) => [
      String(r.level),
      formatTXID(r.minTXID),
      formatTXID(r.maxTXID),
      String(r.size),
      r.time.toISOString(),
    ]),
  ], ctx);
  return 0;
}

function printTable(rows: string[][], ctx: CliContext): void {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) ctx.out(r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd());
}
