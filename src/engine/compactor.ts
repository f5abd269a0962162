/**
 * Compaction of one database's replica, as Litestream v0.5 does it: level N merges the files of
 * level N-1 that end after level N's newest file, every `levelsMs[N-1]`; level-0 files an L1 file
 * covers are deleted once older than `l0_retention` (never the newest one). Inputs are read from
 * the local state folder where they still are, else from the replica; the merged file is written
 * locally, decoded back in full, then uploaded with its timestamp and checksum record.
 */
import { type CompactInput, compactLtx } from "../ltx/compactor.ts";
import { readLtxFile, verifyLtx } from "../ltx/decoder.ts";
import type { LtxFormat } from "../ltx/encoder.ts";
import { formatTXID } from "../ltx/names.ts";
import { IntegrityError, LtxError, WalrustError } from "../errors.ts";
import { POST_APPLY_CHECKSUM_META, timestampMeta } from "../storage/layout.ts";
import type { DbReplica, ReplicaFile } from "../storage/replica.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import { removeIfExists, writeAll } from "../fsutil.ts";
import type { Logger } from "../observe/log.ts";
import type { LocalState } from "./localstate.ts";
import { putLocalFile } from "./uploader.ts";

/** Most files merged into one output: each open input holds a read buffer and one page. */
export const MAX_INPUTS = 64;

/** What the compactor needs from its database. */
export interface CompactorOptions {
  replica: DbReplica;
  state: LocalState;
  /** Intervals of levels 1..n. */
  levelsMs: readonly number[];
  /** Delete level-0 files covered by L1 once older than this; 0 = never. */
  l0RetentionMs: number;
  format: LtxFormat;
  log: Logger;
  dbPath: string;
  /** Level-0 files up to this TXID are in an uploaded L1 file: the local copies may go. */
  onL1Covered?: (txid: number) => Promise<void>;
  /** A level that takes longer than this logs its progress this often (default 10 000 ms). */
  progressLogMs?: number;
}

/**
 * Progress of one level's merges in the log: a watcher's stderr is a log stream, not a terminal
 * line, so a long level says every `everyMs` how far it got (bytes of input read).
 */
class LevelProgress {
  #done = 0;
  readonly #started = performance.now();
  #lastLog = this.#started;

  constructor(
    readonly log: Logger,
    readonly fields: { db: string; level: number },
    readonly total: number,
    readonly everyMs: number,
  ) {}

  add(n: number): void {
    this.#done += n;
    const now = performance.now();
    if (now - this.#lastLog < this.everyMs || this.#done >= this.total) return;
    this.#lastLog = now;
    const secs = (now - this.#started) / 1000;
    const rate = this.#done / secs;
    this.log.info("compaction progress", {
      ...this.fields,
      done_bytes: this.#done,
      total_bytes: this.total,
      percent: Math.floor((100 * this.#done) / this.total),
      mb_per_s: Math.round(rate / 1e4) / 100,
      eta_seconds: Math.ceil((this.total - this.#done) / rate),
    });
  }
}

/** `it`, telling `add` the size of each chunk read. */
async function* counted(
  it: AsyncIterable<Uint8Array>,
  add: (n: number) => void,
): AsyncIterable<Uint8Array> {
  for await (const c of it) {
    add(c.length);
    yield c;
  }
}

/** One merged file written. */
export interface Compacted {
  level: number;
  minTXID: number;
  maxTXID: number;
  inputs: number;
  size: number;
}

/** What one round did. */
export interface CompactionRound {
  compacted: Compacted[];
  /** Level-0 files deleted from the replica. */
  l0Deleted: number;
}

/** Merges each level into the next on its interval; one round at a time (the caller serialises). */
export class LevelCompactor {
  #o: CompactorOptions;
  /** Newest TXID known in each level 0..n; undefined until listed or seeded. */
  #through: (number | undefined)[];
  /** When each level 1..n is next due (index = level). */
  #nextAt: number[];
  /** Per level: its inputs up to this TXID failed to merge (damaged); they are not retried. */
  #badThrough: number[];
  /** The newest snapshot's TXID: level-0 files at or below it are not merged into level 1. */
  #snapshotThrough = 0;

  constructor(o: CompactorOptions, now = Date.now()) {
    this.#o = o;
    const n = o.levelsMs.length;
    this.#through = new Array(n + 1).fill(undefined);
    this.#nextAt = [0, ...o.levelsMs.map((ms) => now + ms)];
    this.#badThrough = new Array(n + 1).fill(0);
  }

  /** Highest compaction level. */
  get maxLevel(): number {
    return this.#o.levelsMs.length;
  }

  /**
   * Learn where each level ends from a listing of the replica (the start-up reconcile's), and
   * schedule each level one interval after its newest file was written.
   */
  seed(files: readonly ReplicaFile[], now = Date.now()): void {
    for (const f of files) {
      if (f.level === SNAPSHOT_LEVEL && f.minTXID === 1) this.noteSnapshot(f.maxTXID);
    }
    for (let level = 0; level <= this.maxLevel; level++) {
      let max = 0;
      let at = 0;
      for (const f of files) {
        if (f.level !== level) continue;
        max = Math.max(max, f.maxTXID);
        at = Math.max(at, f.lastModified?.getTime() ?? 0);
      }
      this.#through[level] = max;
      if (level > 0 && at > 0) {
        this.#nextAt[level] = Math.min(
          this.#nextAt[level],
          Math.max(now, at + this.#interval(level)),
        );
      }
    }
  }

  /**
   * A snapshot 1..`txid` reached the replica. Level-0 files it covers are not merged into level 1
   * (a restore starts from the snapshot; merging them would copy the whole database up every
   * level at each start), and they expire after `l0_retention` like covered ones.
   */
  noteSnapshot(txid: number): void {
    this.#snapshotThrough = Math.max(this.#snapshotThrough, txid);
  }

  /** A level-0 file ending at `txid` reached the replica. */
  noteUploaded(txid: number): void {
    const t = this.#through[0];
    if (t === undefined || txid > t) this.#through[0] = txid;
  }

  /** Whether some level has new input and its interval has passed. */
  due(now: number): boolean {
    for (let level = 1; level <= this.maxLevel; level++) {
      if (this.#levelDue(level, now)) return true;
    }
    return false;
  }

  #interval(level: number): number {
    return this.#o.levelsMs[level - 1];
  }

  #levelDue(level: number, now: number): boolean {
    if (now < this.#nextAt[level]) return false;
    const src = this.#through[level - 1];
    const dst = this.#through[level];
    // Unknown (not listed yet) counts as "maybe": the listing decides.
    return src === undefined || dst === undefined || src > dst;
  }

  /** Run every due level, lowest first; `signal` aborts between and inside merges. */
  async run(now: number, signal?: AbortSignal): Promise<CompactionRound> {
    const round: CompactionRound = { compacted: [], l0Deleted: 0 };
    for (let level = 1; level <= this.maxLevel; level++) {
      if (signal?.aborted) break;
      if (!this.#levelDue(level, now)) continue;
      this.#nextAt[level] = now + this.#interval(level);
      await this.#compactLevel(level, round, now, signal);
    }
    return round;
  }

  async #compactLevel(
    level: number,
    round: CompactionRound,
    now: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const { replica, log, dbPath } = this.#o;
    const src = await replica.ltxFiles(level - 1);
    const dst = await replica.ltxFiles(level);
    let dstMax = 0;
    for (const f of dst) dstMax = Math.max(dstMax, f.maxTXID);
    this.#through[level - 1] = src.reduce((m, f) => Math.max(m, f.maxTXID), 0);
    const floor = Math.max(
      dstMax,
      this.#badThrough[level],
      level === 1 ? this.#snapshotThrough : 0,
    );
    const runs = contiguousRuns(src.filter((f) => f.maxTXID > floor));
    const progress = new LevelProgress(
      log,
      { db: dbPath, level },
      runs.flat().reduce((n, f) => n + f.size, 0),
      this.#o.progressLogMs ?? 10_000,
    );
    for (const run of runs) {
      for (let i = 0; i < run.length; i += MAX_INPUTS) {
        if (signal?.aborted) return;
        const inputs = run.slice(i, i + MAX_INPUTS);
        let out: Compacted;
        try {
          out = await this.#merge(level, inputs, progress, signal);
        } catch (e) {
          if (!(e instanceof IntegrityError || e instanceof LtxError)) throw e;
          // A damaged input would stop this level for good: skip past it and say so. The
          // replicator's validation (and verify) report the damage itself.
          const last = inputs[inputs.length - 1].maxTXID;
          this.#badThrough[level] = Math.max(this.#badThrough[level], last);
          log.error("compaction skipped damaged files", {
            db: dbPath,
            level,
            txids: `${formatTXID(inputs[0].minTXID)}-${formatTXID(last)}`,
            error: e.message,
          });
          continue;
        }
        round.compacted.push(out);
        dst.push({ ...out, key: replica.key(level, out.minTXID, out.maxTXID) });
        dstMax = Math.max(dstMax, out.maxTXID);
        if (level === 1) await this.#o.onL1Covered?.(out.maxTXID);
      }
    }
    // Everything of the level below was merged or deliberately skipped (covered by a snapshot,
    // damaged): the level is not due again until the level below grows.
    this.#through[level] = Math.max(dstMax, this.#through[level - 1] ?? 0);
    if (level === 1) round.l0Deleted += await this.#expireL0(src, dst, now);
  }

  /** Merge `inputs` (contiguous, oldest first) into one file of `level` and upload it. */
  async #merge(
    level: number,
    inputs: ReplicaFile[],
    progress: LevelProgress,
    signal?: AbortSignal,
  ): Promise<Compacted> {
    const { replica, state } = this.#o;
    const first = inputs[0];
    const last = inputs[inputs.length - 1];
    const id = { level, minTXID: first.minTXID, maxTXID: last.maxTXID };
    const path = await state.compactionPath(level, id.minTXID, id.maxTXID);
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    let result;
    try {
      result = await compactLtx(
        inputs.map((f) => this.#input(f, (n) => progress.add(n))),
        (chunk) => {
          if (signal?.aborted) throw new WalrustError("compaction stopped: shutting down");
          return writeAll(file, chunk);
        },
        { format: this.#o.format },
      );
      await file.sync();
    } catch (e) {
      file.close();
      await removeIfExists(path);
      throw e;
    }
    file.close();
    try {
      // Read back what goes up: an encoder fault must not replace good files with a bad one.
      await verifyLtx(readLtxFile(path), { name: path });
      const meta = timestampMeta(result.header.timestamp);
      const record = (await replica.headLtx(last))?.meta?.[POST_APPLY_CHECKSUM_META];
      if (record !== undefined) meta[POST_APPLY_CHECKSUM_META] = record;
      await putLocalFile(replica, id, path, result.size, meta);
    } finally {
      await removeIfExists(path);
    }
    return { ...id, inputs: inputs.length, size: result.size };
  }

  /** The local copy of a level-0 file when it is the same file, else the replica's. */
  #input(f: ReplicaFile, onBytes: (n: number) => void): CompactInput {
    const { replica, state } = this.#o;
    return {
      name: f.key,
      open: async () => {
        if (f.level === 0) {
          const path = state.path(0, f.minTXID, f.maxTXID);
          const st = await Deno.stat(path).catch(() => undefined);
          if (st?.isFile && st.size === f.size) return counted(readLtxFile(path), onBytes);
        }
        return counted(await replica.openLtx(f), onBytes);
      },
    };
  }

  /**
   * Delete level-0 files that an L1 file covers and that are older than `l0_retention`, except
   * the newest level-0 file (a running watcher's proof that the replica still holds its chain).
   */
  async #expireL0(l0: ReplicaFile[], l1: ReplicaFile[], now: number): Promise<number> {
    const keep = this.#o.l0RetentionMs;
    if (keep <= 0 || l0.length === 0 || l1.length === 0) return 0;
    const newest = l0.reduce((a, b) => (b.maxTXID > a.maxTXID ? b : a));
    const snap = this.#snapshotThrough;
    const covered = (f: ReplicaFile) =>
      f.maxTXID <= snap || l1.some((c) => c.minTXID <= f.minTXID && f.maxTXID <= c.maxTXID);
    const old = (f: ReplicaFile) => (f.lastModified?.getTime() ?? now) <= now - keep;
    const gone = l0.filter((f) => f !== newest && old(f) && covered(f));
    if (gone.length > 0) await this.#o.replica.deleteLtx(gone);
    return gone.length;
  }
}

/**
 * Split files (ascending) into runs a merge accepts: each file starts at or before the end of
 * the one before it plus one, and ends after it. A file wholly inside the previous one is
 * skipped; a gap starts a new run (a snapshot after lost files, another writer's history).
 */
export function contiguousRuns<T extends { minTXID: number; maxTXID: number }>(
  files: readonly T[],
): T[][] {
  const sorted = [...files].sort((a, b) => a.minTXID - b.minTXID || b.maxTXID - a.maxTXID);
  const runs: T[][] = [];
  let cur: T[] = [];
  let end = 0;
  for (const f of sorted) {
    if (cur.length > 0 && f.maxTXID <= end) continue;
    if (cur.length > 0 && f.minTXID > end + 1) {
      runs.push(cur);
      cur = [];
    }
    cur.push(f);
    end = f.maxTXID;
  }
  if (cur.length > 0) runs.push(cur);
  return runs;
}
