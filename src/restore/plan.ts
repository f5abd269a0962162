/** Restore planning: choose the LTX files that rebuild the latest state, a TXID, or a time. */

import { ConfigError, LtxError, RestoreError } from "../errors.ts";
import { decodeHeader, HEADER_SIZE } from "../ltx/header.ts";
import { formatTXID as txidHex } from "../ltx/names.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import { readAll, type Storage } from "../storage/port.ts";
import type { DbReplica } from "../storage/replica.ts";
import type { Target } from "./time.ts";
import { hasV3Layout, V3ReplicaError } from "./v3.ts";

export type { Target } from "./time.ts";

/** One LTX object in the replica. */
export interface LtxFileRef {
  /** Compaction level 0..9 (9 holds snapshots). */
  level: number;
  /** First TXID the file covers. */
  minTXID: number;
  /** Last TXID the file covers. */
  maxTXID: number;
  /** The object's full key in the replica. */
  key: string;
  /** Object size in bytes. */
  size: number;
  /** header timestamp, ms, filled lazily */
  timestamp?: number;
}

/** The files to apply, in order, and the state they produce. */
export interface RestorePlan {
  /** LTX files to apply, oldest first. */
  files: LtxFileRef[];
  /** The TXID the restored database will be at. */
  txid: number;
  /** Database page size, when a header read while planning revealed it. */
  pageSize?: number;
  /** true when the target time was after the newest file */
  clampedToLatest: boolean;
}

/**
 * A gap in the chain: no file covers TXIDs `last + 1` .. `next - 1`, though a later file exists.
 * A RestoreError (exit 6) like any unrestorable target; `walrust verify` tells it apart.
 */
export class GapError extends RestoreError {
  /** The newest TXID the chain reaches before the gap. */
  readonly last: number;
  /** The first TXID a file covers after the gap. */
  readonly next: number;
  /** `last` and `next` bound the missing TXIDs. */
  constructor(message: string, last: number, next: number) {
    super(message);
    this.last = last;
    this.next = next;
  }
}

const DEFAULT_CONCURRENCY = 16;
/** Page sizes seen while reading headers for timestamps; lets the plan report one for free. */
const pageSizes = new WeakMap<LtxFileRef, number>();

/** List every LTX file in levels 0..9, sorted by (level, minTXID, maxTXID); other keys are ignored. */
export async function listLtxFiles(db: DbReplica): Promise<LtxFileRef[]> {
  const levels = Array.from({ length: SNAPSHOT_LEVEL + 1 }, (_, i) => i);
  const perLevel = await Promise.all(levels.map((level) => db.ltxFiles(level)));
  return perLevel.flat();
}

/** The file's LTX header timestamp (ms), read with a ranged get of the header and cached on ref. */
export async function fileTimestamp(storage: Storage, ref: LtxFileRef): Promise<number> {
  if (ref.timestamp !== undefined) return ref.timestamp;
  const head = await readAll(await storage.get(ref.key, { offset: 0, length: HEADER_SIZE }));
  let h;
  try {
    h = decodeHeader(head.subarray(0, HEADER_SIZE));
  } catch (e) {
    if (e instanceof LtxError) throw new LtxError(e.kind, `${ref.key}: ${e.message}`, { cause: e });
    if (e instanceof ConfigError) throw new ConfigError(`${ref.key}: ${e.message}`, { cause: e });
    throw e;
  }
  ref.timestamp = h.timestamp;
  pageSizes.set(ref, h.pageSize);
  return h.timestamp;
}

/** Fill timestamps for refs that lack one, `concurrency` requests at a time. */
async function fetchTimestamps(
  storage: Storage,
  refs: LtxFileRef[],
  concurrency: number,
): Promise<void> {
  const todo = refs.filter((r) => r.timestamp === undefined);
  for (let i = 0; i < todo.length; i += concurrency) {
    await Promise.all(todo.slice(i, i + concurrency).map((r) => fileTimestamp(storage, r)));
  }
}

/** Litestream's preference: larger max, then smaller min, then higher level, then older. */
function better(a: LtxFileRef, b: LtxFileRef): number {
  return b.maxTXID - a.maxTXID || a.minTXID - b.minTXID || b.level - a.level ||
    (a.timestamp ?? 0) - (b.timestamp ?? 0);
}

/** Options for planRestore. */
export interface PlanOptions {
  /** Header reads in flight at once (time targets); default 16. */
  concurrency?: number;
  /** Keys the plan must not use (files found corrupt); they still count as present for messages. */
  exclude?: ReadonlySet<string>;
}

/**
 * Choose the files for `target` (Litestream's CalcRestorePlan, spec §4.1): the newest usable
 * level-9 snapshot, then greedy extension over levels 8..0. Header timestamps are read only
 * for time targets and only for files the plan could use.
 */
export async function planRestore(
  db: DbReplica,
  target: Target,
  opts: PlanOptions = {},
): Promise<RestorePlan> {
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  const storage = db.storage;
  const all = await listLtxFiles(db);
  if (all.length === 0) await failNoFiles(db);

  const T = target.kind === "time" ? target.ms : undefined;
  const limit = target.kind === "txid" ? target.txid : Number.POSITIVE_INFINITY;
  const usable = async (refs: LtxFileRef[]): Promise<LtxFileRef[]> => {
    if (T === undefined) return refs;
    await fetchTimestamps(storage, refs, concurrency);
    return refs.filter((r) => r.timestamp! < T);
  };

  const levels: LtxFileRef[][] = Array.from({ length: SNAPSHOT_LEVEL + 1 }, () => []);
  for (const f of all) if (!opts.exclude?.has(f.key)) levels[f.level].push(f);

  // Base: the newest snapshot within the target. Scan newest first, a batch at a time.
  const snapshots = levels[SNAPSHOT_LEVEL]
    .filter((f) => f.minTXID === 1 && f.maxTXID <= limit)
    .sort((a, b) => b.maxTXID - a.maxTXID);
  let base: LtxFileRef | undefined;
  for (let i = 0; i < snapshots.length && !base; i += concurrency) {
    base = (await usable(snapshots.slice(i, i + concurrency)))[0];
  }

  const files: LtxFileRef[] = base ? [base] : [];
  let cur = base ? base.maxTXID : 0;
  // Per-level cursor past files that can never be eligible again (max <= cur).
  const lo = new Array<number>(SNAPSHOT_LEVEL).fill(0);
  while (cur < limit) {
    const cands: LtxFileRef[] = [];
    for (let level = SNAPSHOT_LEVEL - 1; level >= 0; level--) {
      const fs = levels[level];
      while (lo[level] < fs.length && fs[lo[level]].maxTXID <= cur) lo[level]++;
      for (let i = lo[level]; i < fs.length && fs[i].minTXID <= cur + 1; i++) {
        if (fs[i].maxTXID > cur && fs[i].maxTXID <= limit) cands.push(fs[i]);
      }
    }
    const ok = await usable(cands);
    if (ok.length === 0) break;
    const best = ok.sort(better)[0];
    files.push(best);
    cur = best.maxTXID;
  }

  const gap = await findGap(levels, cur, target, usable);
  if (gap !== undefined && target.kind !== "txid") {
    throw new GapError(
      `gap in the backup at ${db.where}: TXIDs ${txidHex(cur + 1)}-${
        txidHex(gap - 1)
      } are missing (no LTX file covers them)`,
      cur,
      gap,
    );
  }

  const plan: RestorePlan = { files, txid: cur, clampedToLatest: false };
  for (const f of files) plan.pageSize ??= pageSizes.get(f);

  if (target.kind === "latest" && files.length === 0) {
    throw new RestoreError(
      `no restorable state at ${db.where}: no snapshot and no file starting at TXID 1`,
    );
  }
  if (target.kind === "txid" && (files.length === 0 || cur !== target.txid)) {
    const msg = txidMessage(db.where, target.txid, cur, gap, all);
    throw gap === undefined ? new RestoreError(msg) : new GapError(msg, cur, gap);
  }
  if (T !== undefined) {
    if (files.length === 0) {
      const seen = all.filter((f) => f.timestamp !== undefined).map((f) => f.timestamp!);
      throw new RestoreError(
        `no backup before ${iso(T)} at ${db.where}; oldest is ${iso(min(seen))}`,
      );
    }
    const globalMax = max(all.map((f) => f.maxTXID));
    if (cur === globalMax) {
      const newest = all.filter((f) => f.maxTXID === globalMax);
      await fetchTimestamps(storage, newest, concurrency);
      plan.clampedToLatest = T > max(newest.map((f) => f.timestamp!));
    }
  }
  return plan;
}

/**
 * The first TXID after the gap that stops the plan at `cur`, if a later file exists that the
 * target wanted and nothing covers TXID `cur + 1`: any later file for latest restores, one stamped before T for time targets
 * (the state at T would lack transactions), one starting at or before the TXID for TXID targets.
 */
async function findGap(
  levels: LtxFileRef[][],
  cur: number,
  target: Target,
  usable: (refs: LtxFileRef[]) => Promise<LtxFileRef[]>,
): Promise<number | undefined> {
  // A time target stopped by a file that continues the chain but was written at or after T (a
  // compacted file spanning T) is not a gap: the nearest restorable state before T is `cur`.
  if (
    target.kind === "time" &&
    levels.some((l) => l.some((f) => f.minTXID <= cur + 1 && f.maxTXID > cur))
  ) return undefined;
  let next: LtxFileRef[] = [];
  for (let level = 0; level < SNAPSHOT_LEVEL; level++) {
    const f = levels[level].find((f) => f.minTXID > cur + 1);
    if (f) next.push(f);
  }
  if (target.kind === "txid") next = next.filter((f) => f.minTXID <= target.txid);
  if (target.kind === "time") next = await usable(next);
  return next.length === 0 ? undefined : min(next.map((f) => f.minTXID));
}

/** Explain why a TXID cannot be restored, naming the restorable TXIDs around it. */
function txidMessage(
  where: string,
  txid: number,
  cur: number,
  gap: number | undefined,
  all: LtxFileRef[],
): string {
  const parts = [`TXID ${txidHex(txid)} cannot be restored from ${where}`];
  if (gap !== undefined) {
    parts.push(`TXIDs ${txidHex(cur + 1)}-${txidHex(gap - 1)} are missing`);
  }
  const latest = max(all.map((f) => f.maxTXID));
  const above = all.filter((f) => f.maxTXID > txid).map((f) => f.maxTXID);
  const nearby: string[] = [];
  if (cur > 0) nearby.push(`${txidHex(cur)} (below)`);
  if (above.length > 0) nearby.push(`${txidHex(min(above))} (above)`);
  parts.push(
    nearby.length > 0
      ? `nearest restorable: ${nearby.join(", ")}; latest is ${txidHex(latest)}`
      : `latest is ${txidHex(latest)}`,
  );
  return parts.join("; ");
}

/**
 * Raise the right error for a prefix without LTX files: V3ReplicaError for a Litestream v0.3
 * backup (restore() catches it and takes the v0.3 path), else "no backup".
 */
async function failNoFiles(db: DbReplica): Promise<never> {
  if (await hasV3Layout(db.storage, db.prefix)) throw new V3ReplicaError(db.where);
  throw new RestoreError(`no backup found at ${db.where}`);
}

// Loops, not Math.max(...xs): a spread of 100k+ listed files overflows the call stack.
function max(xs: number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  return m;
}

function min(xs: number[]): number {
  let m = Infinity;
  for (const x of xs) if (x < m) m = x;
  return m;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
