/**
 * Which replica files a retention policy keeps: every transaction inside the PITR window stays
 * restorable, and beyond it the grandfather-father-son snapshot points (hourly, daily, weekly,
 * monthly). Pure: the caller lists, reads snapshot timestamps, and deletes.
 *
 * The rule (README has a worked example):
 * 1. GFS: for each tier, walk the snapshots newest first and keep the newest one of each UTC
 *    bucket (hour, day, ISO week, month) until the tier has its count of buckets.
 * 2. PITR: the base is the newest snapshot taken at or before `now - pitr_window` (the oldest
 *    snapshot when none is that old); it, every newer snapshot and every other file ending after
 *    the base's TXID are kept, so any TXID from the base on restores.
 * 3. The newest snapshot, and the newest file of every level, are always kept.
 * Everything else is deleted: snapshots no rule keeps, and non-snapshot files wholly at or below
 * the base's TXID (a kept GFS snapshot restores its own TXID alone).
 */
import type { RetentionSettings } from "../config/schema.ts";
import { ConfigError } from "../errors.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";

/** One replica file as retention sees it. */
export interface RetentionFile {
  level: number;
  minTXID: number;
  maxTXID: number;
  key: string;
  size: number;
  /** When it was written (ms): the LTX header timestamp for snapshots. */
  timestamp: number;
}

/** What a policy decides. */
export interface RetentionPlan {
  keep: RetentionFile[];
  delete: RetentionFile[];
  bytesFreed: number;
  /** The earliest restorable point left: the oldest kept snapshot. */
  earliest?: { txid: number; timestamp: number };
  /** TXIDs from this one on stay restorable one by one (the PITR base). */
  pitrFromTXID?: number;
}

/** Refuse a policy under which retention would keep nothing but the newest snapshot. */
export function checkPolicy(p: RetentionSettings): void {
  if (p.pitrWindowMs <= 0 && p.hourly + p.daily + p.weekly + p.monthly <= 0) {
    throw new ConfigError(
      "retention keeps nothing (pitr_window = 0 and every GFS count is 0); set pitr_window or a count",
    );
  }
  for (const [k, v] of Object.entries({ ...p })) {
    if (!Number.isFinite(v) || v < 0) {
      throw new ConfigError(`retention: ${k} must be >= 0, got ${v}`);
    }
  }
}

type Bucket = (ms: number) => string;

const BUCKETS: { tier: keyof RetentionSettings; bucket: Bucket }[] = [
  { tier: "hourly", bucket: (ms) => new Date(ms).toISOString().slice(0, 13) },
  { tier: "daily", bucket: (ms) => new Date(ms).toISOString().slice(0, 10) },
  { tier: "weekly", bucket: isoWeek },
  { tier: "monthly", bucket: (ms) => new Date(ms).toISOString().slice(0, 7) },
];

/** ISO 8601 week of a UTC time, e.g. "2026-W49" (weeks start on Monday; week 1 holds Jan 4). */
export function isoWeek(ms: number): string {
  const d = new Date(ms);
  const day = (d.getUTCDay() + 6) % 7; // Monday = 0
  // The week's Thursday decides its year.
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const year = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * 86_400_000));
  return `${year}-W${String(week).padStart(2, "0")}`;
}

/** Decide what `policy` keeps of `files` at time `now` (ms). */
export function planRetention(
  files: readonly RetentionFile[],
  policy: RetentionSettings,
  now: number,
): RetentionPlan {
  checkPolicy(policy);
  const snaps = files.filter((f) => f.level === SNAPSHOT_LEVEL && f.minTXID === 1)
    .sort((a, b) => b.maxTXID - a.maxTXID || b.timestamp - a.timestamp); // newest first
  const kept = new Set<RetentionFile>();
  if (snaps.length > 0) kept.add(snaps[0]);
  for (const { tier, bucket } of BUCKETS) {
    const want = policy[tier];
    const seen = new Set<string>();
    for (const s of snaps) {
      if (seen.size >= want) break;
      const b = bucket(s.timestamp);
      if (seen.has(b)) continue;
      seen.add(b);
      kept.add(s);
    }
  }
  // The PITR base: the newest snapshot at or before the window's start, else the oldest.
  let base: RetentionFile | undefined;
  if (policy.pitrWindowMs > 0 && snaps.length > 0) {
    const start = now - policy.pitrWindowMs;
    base = snaps.find((s) => s.timestamp <= start) ?? snaps[snaps.length - 1];
    for (const s of snaps) if (s.maxTXID >= base.maxTXID) kept.add(s);
  }
  // Each level's newest file stays, as in Litestream: a running watcher checks that the level-0
  // file it uploaded last is still there, and its absence would mean "the replica lost files".
  const newestOfLevel = new Map<number, RetentionFile>();
  for (const f of files) {
    const n = newestOfLevel.get(f.level);
    if (!n || f.maxTXID > n.maxTXID) newestOfLevel.set(f.level, f);
  }
  const keep: RetentionFile[] = [];
  const del: RetentionFile[] = [];
  for (const f of files) {
    const isSnap = f.level === SNAPSHOT_LEVEL && f.minTXID === 1;
    let needed: boolean;
    if (newestOfLevel.get(f.level) === f) needed = true;
    else if (isSnap) needed = kept.has(f);
    else if (snaps.length === 0) needed = true; // no snapshot yet: the chain from TXID 1 is all there is
    else if (base) needed = f.maxTXID > base.maxTXID;
    else needed = f.maxTXID > snaps[0].maxTXID; // no PITR: only what extends the newest snapshot
    (needed ? keep : del).push(f);
  }
  const keptSnaps = snaps.filter((s) => kept.has(s));
  const oldest = keptSnaps.at(-1);
  return {
    keep,
    delete: del,
    bytesFreed: del.reduce((n, f) => n + f.size, 0),
    earliest: oldest && { txid: oldest.maxTXID, timestamp: oldest.timestamp },
    pitrFromTXID: base?.maxTXID,
  };
}
