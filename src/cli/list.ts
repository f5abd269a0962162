/**
 * `walrust list`: databases in a replica, or one database's files per level; and Litestream's
 * listings: `walrust ltx DB_PATH|REPLICA_URL` (one database's LTX files) and `walrust databases`
 * (the databases the config lists).
 */
import { type CliContext, configOf } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import {
  configuredDatabases,
  REPLICA_OPTIONS,
  replicaFromFlags,
  resolveDatabaseArg,
} from "./replica_flags.ts";
import { ConfigError, RestoreError } from "../errors.ts";
import { parseBucketUrl, redactBucketUrl } from "../storage/url.ts";
import { type DatabaseSummary, type FileSummary, list, listFiles } from "../api.ts";
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
    if (rows.length === 0) {
      // A Litestream v0.3 backup has no LTX files: show its generations instead.
      const v3 = (await list({ bucket: replica })).find((d) =>
        d.name === want && d.format === "v0.3"
      );
      if (v3) {
        if (flags.json) {
          ctx.out(
            JSON.stringify({ name: want, format: "v0.3", generations: v3.generations }, null, 2),
          );
        } else {
          printGenerations([v3], ctx);
        }
        return 0;
      }
    }
    // The same answer as restore gives for a name with no backup, in text and JSON alike.
    if (rows.length === 0) {
      throw new RestoreError(
        `no backup of ${want} at ${replica.url} ('walrust list' without NAME shows the databases there)`,
      );
    }
    printFiles(rows, ctx, { json: Boolean(flags.json), timeKey: "created" });
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
  // Litestream v0.3 backups are listed for what they are: generations, not LTX levels.
  const v3 = dbs.filter((d) => d.format === "v0.3");
  if (v3.length > 0) {
    ctx.out("\nLitestream v0.3 backups (generations layout; walrust restore reads them):");
    printGenerations(v3, ctx);
  }
  return 0;
}

/** The generations of Litestream v0.3 backups, one row each. */
function printGenerations(v3: DatabaseSummary[], ctx: CliContext): void {
  printTable([
    ["name", "generation", "snapshots", "wal_segments", "indexes", "oldest", "newest", "bytes"],
    ...v3.flatMap((d) =>
      d.generations.map((g) => [
        d.name,
        g.id,
        String(g.snapshots),
        String(g.segments),
        `${g.firstIndex}-${g.latestIndex}`,
        g.oldest.toISOString(),
        g.newest.toISOString(),
        String(g.bytes),
      ])
    ),
  ], ctx);
}

const LTX_OPTIONS = {
  ...REPLICA_OPTIONS,
  json: { type: "boolean" },
  level: { type: "string" },
} as const;

/**
 * Run `walrust ltx [--level N|all] DB_PATH|REPLICA_URL|NAME` (Litestream's `ltx`): the LTX files
 * of one level (default 0) or of all, as level, min_txid, max_txid, size, created. No files is
 * an empty table and exit 0, as in Litestream (level 0 may be empty after compaction).
 */
export async function runLtxFiles(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("ltx", args, LTX_OPTIONS);
  if (positionals.length !== 1) {
    throw new ConfigError(
      "ltx: expected one database (DB_PATH, replica URL or NAME), or a subcommand: verify, dump, list, apply",
    );
  }
  const level = str(flags, "level") ?? "0";
  if (level !== "all" && !/^[0-9]$/.test(level)) {
    throw new ConfigError(`ltx: --level expects 0-9 or all, got "${level}"`);
  }
  const config = await configOf(ctx);
  const db = await resolveDatabaseArg("ltx", positionals[0], flags, config);
  const replica = await replicaFromFlags(
    "ltx",
    flags,
    ctx,
    config,
    undefined,
    db.bucketUrl,
    db.age,
  );
  const rows = (await listFiles({ bucket: replica, name: db.name }))
    .filter((r) => level === "all" || r.level === Number(level));
  // Litestream's `ltx -json` names the time "timestamp".
  printFiles(rows, ctx, { json: Boolean(flags.json), timeKey: "timestamp" });
  return 0;
}

/** One database's LTX files: a table, or JSON with 16-hex TXIDs. */
function printFiles(
  rows: FileSummary[],
  ctx: CliContext,
  o: { json: boolean; timeKey: "created" | "timestamp" },
): void {
  if (o.json) {
    ctx.out(JSON.stringify(
      rows.map((r) => ({
        level: r.level,
        min_txid: formatTXID(r.minTXID),
        max_txid: formatTXID(r.maxTXID),
        size: r.size,
        [o.timeKey]: r.created.toISOString(),
        key: r.key,
      })),
      null,
      2,
    ));
    return;
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
}

/**
 * Run `walrust databases` (Litestream's): every database the config lists (globs expanded),
 * with its replica type, its name there and the replica URL. Reads no storage.
 */
export async function runDatabases(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("databases", args, {
    bucket: REPLICA_OPTIONS.bucket,
    json: { type: "boolean" },
  });
  if (positionals.length > 0) throw new ConfigError("databases: takes no arguments");
  const config = await configOf(ctx);
  const bucket = str(flags, "bucket") ?? config.s3.bucket;
  const loc = bucket === undefined ? undefined : parseBucketUrl(bucket);
  const rows = (await configuredDatabases(config)).map((d) => ({
    path: d.path,
    replica: loc?.kind ?? "",
    name: d.name,
    url: loc === undefined
      ? ""
      : loc.kind === "file"
      ? `file://${loc.root.replace(/\/+$/, "")}/${d.name}`
      : joinUrl(redactBucketUrl(bucket!), d.name),
  }));
  if (flags.json) {
    ctx.out(JSON.stringify(rows, null, 2));
    return 0;
  }
  printTable([
    ["path", "replica", "name", "url"],
    ...rows.map((r) => [r.path, r.replica, r.name, r.url]),
  ], ctx);
  return 0;
}

/** The replica URL of database `name` under `bucket` (the form `restore` and `ltx` accept). */
function joinUrl(bucket: string, name: string): string {
  const q = bucket.search(/[?#]/);
  const base = (q < 0 ? bucket : bucket.slice(0, q)).replace(/\/+$/, "");
  return `${base}/${name}${q < 0 ? "" : bucket.slice(q)}`;
}

function printTable(rows: string[][], ctx: CliContext): void {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) ctx.out(r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd());
}
