/**
 * `walrust explain`: the configuration each database gets after globs, defaults and overrides,
 * what happens when, and a monthly storage and request estimate from the database's size and
 * the write rate seen in its replica over the last hour.
 */
import type { CliContext } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import { ConfigError, StorageError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import {
  type MaintenanceSettings,
  resolveMaintenance,
  resolveRetention,
  resolveSync,
  type RetentionSettings,
  type SyncSettings,
} from "../config/schema.ts";
import { expandDatabases } from "../config/globs.ts";
import { listFiles } from "../api.ts";
import { replicaFromFlags } from "./replica_flags.ts";

const OPTIONS = {
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
  json: { type: "boolean" },
} as const;

const HOUR_MS = 3_600_000;
/** Hours in an average month. */
const MONTH_H = 730;

/** What was measured of one database. */
export interface Observed {
  /** Database file size in bytes. */
  dbBytes: number;
  /** Level-0 files and their bytes written in the last hour, when the replica could be read. */
  l0PerHour?: number;
  l0BytesPerHour?: number;
}

/** A month of one database in the replica, by the rules of the configuration. */
export interface MonthlyEstimate {
  /** Bytes held in steady state (snapshots kept plus incremental files, an upper bound). */
  storageBytes: number;
  /** Snapshots kept by retention. */
  snapshotsKept: number;
  puts: number;
  gets: number;
  heads: number;
  lists: number;
  deletes: number;
}

/**
 * Estimate a month. Assumptions (printed with the figures): every sync uploads one level-0 file;
 * each compaction level runs at its interval while there are writes and reads its inputs from
 * the replica above level 1; snapshots are the database size (no compression); incremental bytes
 * kept are the level-0 rate over the PITR window once per level (an upper bound: merging keeps
 * only the newest copy of each page).
 */
export function estimateMonth(
  sync: SyncSettings,
  maintenance: MaintenanceSettings,
  retention: RetentionSettings,
  o: Observed,
): MonthlyEstimate {
  const syncsH = o.l0PerHour ?? 0;
  const active = syncsH > 0;
  const perHour = (ms: number) => (ms > 0 ? HOUR_MS / ms : 0);
  const levels = maintenance.compactionLevelsMs;
  // Level 1 runs at most once per upload; higher levels at most once per run below them.
  const runs: number[] = [];
  let below = syncsH;
  for (const ms of levels) {
    const r = active ? Math.min(perHour(ms), below) : 0;
    runs.push(r);
    below = r;
  }
  const snapshotsH = active ? perHour(sync.snapshotIntervalMs) : 0;
  const pruneH = maintenance.retentionEnabled
    ? perHour(maintenance.pruneIntervalMs) + snapshotsH
    : 0;
  const compactRuns = runs.reduce((a, b) => a + b, 0);
  // Inputs read from the replica: level 1 reads local copies; level n>1 reads level n-1's outputs.
  const remoteInputs = runs.slice(1).reduce((a, _r, i) => a + runs[i], 0);
  const snapMs = sync.snapshotIntervalMs;
  const pitrSnaps = snapMs > 0 ? Math.ceil(retention.pitrWindowMs / snapMs) + 1 : 1;
  const tier = (count: number, bucketMs: number) =>
    snapMs > 0 ? Math.min(count, Math.max(1, Math.floor((count * bucketMs) / snapMs))) : 0;
  // The newest snapshot of each coarser tier is already kept by a finer one.
  const coarser = (count: number, bucketMs: number) => Math.max(0, tier(count, bucketMs) - 1);
  const snapshotsKept = Math.max(
    1,
    Math.max(pitrSnaps, tier(retention.hourly, HOUR_MS)) + coarser(retention.daily, 24 * HOUR_MS) +
      coarser(retention.weekly, 7 * 24 * HOUR_MS) + coarser(retention.monthly, 30 * 24 * HOUR_MS),
  );
  const incrementalBytes = (o.l0BytesPerHour ?? 0) *
    ((retention.pitrWindowMs / HOUR_MS) * (1 + levels.length));
  return {
    storageBytes: Math.round(snapshotsKept * o.dbBytes + incrementalBytes),
    snapshotsKept,
    puts: Math.round(MONTH_H * (syncsH + compactRuns + snapshotsH)),
    gets: Math.round(MONTH_H * remoteInputs),
    heads: Math.round(MONTH_H * compactRuns),
    lists: Math.round(MONTH_H * (2 * compactRuns + 2 * pruneH + snapshotsH)),
    deletes: Math.round(MONTH_H * ((runs[0] ?? 0) + pruneH)),
  };
}

function dur(ms: number): string {
  if (ms <= 0) return "off";
  const units: [number, string][] = [[86_400_000, "d"], [HOUR_MS, "h"], [60_000, "m"], [1000, "s"]];
  for (const [u, n] of units) if (ms >= u && ms % u === 0) return `${ms / u}${n}`;
  return `${ms / 1000}s`;
}

function size(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Run `walrust explain`. */
export async function runExplain(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("explain", args, OPTIONS);
  const config = await loadConfig(ctx.configPath, { expandEnv: !ctx.noExpandEnv });
  const entries = positionals.length > 0
    ? positionals.map((path) => ({ path, sync: {} }))
    : config.databases;
  if (entries.length === 0) {
    throw new ConfigError(
      "explain: no databases given (fix: walrust explain app.db, or [[databases]] in walrust.toml)",
    );
  }
  const dbs = await expandDatabases(entries, {
    allowEmptyGlobs: config.allowEmptyGlobs,
    configPath: positionals.length > 0 ? undefined : config.path,
  });
  const maintenance = resolveMaintenance(config.maintenance);
  const bucket = str(flags, "bucket") ?? config.s3.bucket;
  const replica = bucket ? await replicaFromFlags("explain", flags, ctx, config) : undefined;
  const now = Date.now();
  const out = [];
  for (const d of dbs) {
    const sync = resolveSync(config.sync, d.sync);
    const retention = resolveRetention(config.retention, d.retention);
    const observed: Observed = {
      dbBytes: (await Deno.stat(d.path).catch(() => undefined))?.size ?? 0,
    };
    let rateNote = "no replica given (--bucket): write rate unknown";
    if (replica) {
      try {
        const files = await listFiles({ bucket: replica, name: d.prefix });
        const recent = files.filter((f) => f.level === 0 && now - f.created.getTime() <= HOUR_MS);
        observed.l0PerHour = recent.length;
        observed.l0BytesPerHour = recent.reduce((n, f) => n + f.size, 0);
        rateNote = `from the replica's last hour (${files.length} files in it now)`;
      } catch (e) {
        if (!(e instanceof StorageError)) throw e;
        rateNote = `the replica could not be read (${e.message}): write rate unknown`;
      }
    }
    const est = estimateMonth(sync, maintenance, retention, observed);
    out.push({ d, sync, retention, observed, est, rateNote });
  }
  if (flags.json) {
    ctx.out(JSON.stringify(out.map(({ d, sync, retention, observed, est, rateNote }) => ({
      path: d.path,
      name: d.prefix,
      sync,
      maintenance,
      retention,
      observed: { ...observed, note: rateNote },
      monthly_estimate: est,
    }))));
    return 0;
  }
  for (const { d, sync, retention, observed, est, rateNote } of out) {
    const m = maintenance;
    const lines = [
      `${d.prefix}  ${d.path}${replica ? `  -> ${replica.url}` : ""}`,
      `  sync         WAL copied every ${dur(sync.walSyncIntervalMs)} (batching window); ` +
      `at most ${size(sync.maxSyncWalBytes)} per level-0 file; format ${sync.format}`,
      `  checkpoint   PASSIVE every ${dur(sync.checkpointIntervalMs)} or past ` +
      `${sync.minCheckpointPageCount} WAL pages; TRUNCATE past ` +
      `${sync.walTruncateThresholdPages || "never"} pages`,
      `  snapshot     every ${dur(sync.snapshotIntervalMs)}${
        sync.onStartup ? ", and at first start" : ""
      }`,
      `  compaction   ${
        m.compactionLevelsMs.length === 0
          ? "off"
          : m.compactionLevelsMs.map((ms, i) => `L${i + 1} every ${dur(ms)}`).join(", ")
      }; level-0 files kept ${dur(sync.l0RetentionMs)} after L1 covers them`,
      `  retention    ${
        m.retentionEnabled
          ? `every transaction for ${dur(retention.pitrWindowMs)}, then snapshots: ` +
            `hourly ${retention.hourly}, daily ${retention.daily}, weekly ${retention.weekly}, ` +
            `monthly ${retention.monthly}; applied after each snapshot and every ` +
            dur(m.pruneIntervalMs)
          : "off (walrust prune --force applies it by hand)"
      }`,
      `  validation   ${
        sync.validationIntervalMs > 0
          ? `every ${dur(sync.validationIntervalMs)} (restore at a TXID, compare with the live db)`
          : "off"
      }`,
      `  measured     database ${size(observed.dbBytes)}; ${
        observed.l0PerHour !== undefined
          ? `${observed.l0PerHour} syncs and ${size(observed.l0BytesPerHour ?? 0)} of level-0 ` +
            "files per hour"
          : "write rate unknown"
      } (${rateNote})`,
      `  per month    ~${size(est.storageBytes)} stored (${est.snapshotsKept} snapshots kept + ` +
      `incremental files, upper bound); requests: ${est.puts} PUT, ${est.gets} GET, ` +
      `${est.heads} HEAD, ${est.lists} LIST, ${est.deletes} DELETE`,
    ];
    ctx.out(lines.join("\n"));
  }
  ctx.out(
    "\nEstimates assume the last hour's write rate all month, one upload per sync, snapshots " +
      "the size of the database, and incremental files kept for the whole PITR window at every " +
      "level (an upper bound).",
  );
  return 0;
}
