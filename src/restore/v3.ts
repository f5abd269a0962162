/**
 * Litestream v0.3 backups (the "generations" layout): find them, plan a restore (latest, a moment,
 * or the end of a WAL index), and rebuild the database from a snapshot plus WAL segments.
 *
 * Layout below a database's prefix (Litestream v0.3.13, litestream.go FormatSnapshotPath and
 * FormatWALSegmentPath):
 *
 *     generations/<16 hex>/snapshots/<index %08x>.snapshot.lz4         the database file
 *     generations/<16 hex>/wal/<index %08x>_<offset %08x>.wal.lz4        WAL bytes from offset
 *
 * Every object is an LZ4 frame. A WAL index is one life of the WAL file between restarts: its
 * segments, concatenated in offset order, are that WAL (32-byte header first) as far as Litestream
 * copied it. Object times (file mtime, S3 LastModified) are the only clock v0.3 has.
 *
 * Memory: one LZ4 block (up to 4 MiB compressed plus 4 MiB decoded) and one map entry per page a
 * WAL index touches. Each index's WAL is decoded into a local spool file beside the output, then
 * checked and applied from there, so no transaction has to fit in memory.
 */

import { dirname } from "node:path";
import { ConfigError, DatabaseError, IntegrityError, RestoreError } from "../errors.ts";
import { ByteReader } from "../ltx/byte_reader.ts";
import { decompressBlockInto, LZ4_FRAME_MAGIC, xxh32 } from "../ltx/lz4.ts";
import { readAt } from "../sqlite/pagefile.ts";
import { readWalHeader, scanWal, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { ObjectInfo, Storage } from "../storage/port.ts";
import { fsyncDir, writeAll } from "../fsutil.ts";
import {
  checkIntegrity,
  checkRestoreOutput,
  placeRestored,
  removeQuietly,
  removeSidecars,
} from "./apply.ts";

// ---------------------------------------------------------------------------------------------
// Layout

/** One snapshot object: the whole database file when WAL index `index` was current. */
export interface V3Snapshot {
  /** Generation id (16 hex digits). */
  generation: string;
  /** WAL index current when the snapshot was taken. */
  index: number;
  /** The object's full key. */
  key: string;
  /** Compressed size in bytes. */
  size: number;
  /** Object time (mtime or LastModified). */
  createdAt: Date;
}

/** One WAL segment object: WAL bytes of index `index` starting at byte `offset`. */
export interface V3Segment {
  /** Generation id (16 hex digits). */
  generation: string;
  /** WAL index. */
  index: number;
  /** Byte offset of the segment's first byte within that index's WAL. */
  offset: number;
  /** The object's full key. */
  key: string;
  /** Compressed size in bytes. */
  size: number;
  /** Object time (mtime or LastModified). */
  createdAt: Date;
}

/** One generation: an unbroken history of the database, from a snapshot onwards. */
export interface V3Generation {
  /** 16 lower-case hex digits. */
  id: string;
  /** Ascending by index, then time. */
  snapshots: V3Snapshot[];
  /** Ascending by index, then offset. */
  segments: V3Segment[];
  /** Time of the oldest object. */
  createdAt: Date;
  /** Time of the newest object. */
  updatedAt: Date;
}

/** What a key below `generations/` names. */
export type V3Key =
  | { kind: "snapshot"; generation: string; index: number }
  | { kind: "segment"; generation: string; index: number; offset: number };

const SNAPSHOT_KEY = /^([0-9a-f]{16})\/snapshots\/([0-9a-f]{8})\.snapshot\.lz4$/;
// %08x is a minimum width: offsets past 4 GiB have more digits (Litestream v0.5's v3.go reads 8-16).
const SEGMENT_KEY = /^([0-9a-f]{16})\/wal\/([0-9a-f]{8})_([0-9a-f]{8,16})\.wal\.lz4$/;
const GENERATION_ID = /^[0-9a-f]{16}$/;
/** Litestream v0.3's MaxIndex: WAL indexes are 0..0x7FFFFFFF. */
export const V3_MAX_INDEX = 0x7fffffff;

/** The directory (ending in "/") that holds a database's generations, below its prefix. */
export function generationsDir(prefix: string): string {
  const p = prefix.replace(/\/+$/, "");
  return p === "" ? "generations/" : `${p}/generations/`;
}

/** Parse a key relative to `generations/`; undefined for anything that is not a v0.3 object. */
export function parseV3Key(rest: string): V3Key | undefined {
  let m = SNAPSHOT_KEY.exec(rest);
  if (m) return { kind: "snapshot", generation: m[1], index: parseInt(m[2], 16) };
  m = SEGMENT_KEY.exec(rest);
  if (!m) return undefined;
  const offset = parseInt(m[3], 16);
  if (!Number.isSafeInteger(offset)) return undefined;
  return { kind: "segment", generation: m[1], index: parseInt(m[2], 16), offset };
}

/** True when `id` has the form of a generation id. */
export function isGenerationId(id: string): boolean {
  return GENERATION_ID.test(id);
}

/** Groups listed v0.3 objects into generations (one database's, or several with one each). */
export class V3Collector {
  readonly #gens = new Map<string, { snapshots: V3Snapshot[]; segments: V3Segment[] }>();

  /** Add the object `o`, whose key relative to `generations/` is `rest`; false if not v0.3. */
  add(rest: string, o: ObjectInfo): boolean {
    const k = parseV3Key(rest);
    if (!k) return false;
    let g = this.#gens.get(k.generation);
    if (!g) this.#gens.set(k.generation, g = { snapshots: [], segments: [] });
    const base = { generation: k.generation, index: k.index, key: o.key, size: o.size };
    if (k.kind === "snapshot") g.snapshots.push({ ...base, createdAt: o.lastModified });
    else g.segments.push({ ...base, offset: k.offset, createdAt: o.lastModified });
    return true;
  }

  /** True when nothing was added. */
  get empty(): boolean {
    return this.#gens.size === 0;
  }

  /** The generations, oldest first (by first object time, then id). */
  generations(): V3Generation[] {
    const out: V3Generation[] = [];
    for (const [id, g] of this.#gens) {
      g.snapshots.sort((a, b) => a.index - b.index || ms(a) - ms(b));
      g.segments.sort((a, b) => a.index - b.index || a.offset - b.offset);
      let lo = Infinity, hi = -Infinity;
      for (const o of [g.snapshots, g.segments].flat()) {
        lo = Math.min(lo, ms(o));
        hi = Math.max(hi, ms(o));
      }
      out.push({ id, ...g, createdAt: new Date(lo), updatedAt: new Date(hi) });
    }
    return out.sort((a, b) => ms(a) - ms(b) || cmp(a.id, b.id));
  }
}

/** Every generation below the database prefix `prefix`, oldest first (one paginated listing). */
export async function listV3(storage: Storage, prefix: string): Promise<V3Generation[]> {
  const dir = generationsDir(prefix);
  const c = new V3Collector();
  for await (const o of storage.list(dir)) c.add(o.key.slice(dir.length), o);
  return c.generations();
}

/** True when the prefix holds at least one v0.3 snapshot or WAL segment (stops at the first). */
export async function hasV3Layout(storage: Storage, prefix: string): Promise<boolean> {
  const dir = generationsDir(prefix);
  for await (const o of storage.list(dir)) {
    if (parseV3Key(o.key.slice(dir.length))) return true;
  }
  return false;
}

/**
 * A database prefix holds a Litestream v0.3 backup and no LTX files. A RestoreError (exit 6) for
 * operations that need LTX files; `restore()` and `list()` read this layout instead.
 */
export class V3ReplicaError extends RestoreError {
  /** The replica and prefix, for messages. */
  readonly where: string;
  /** `where` names the replica and database prefix. */
  constructor(where: string) {
    super(
      `${where} holds a Litestream v0.3 backup (generations/), not LTX files: ` +
        "'walrust restore' and 'walrust list' read it; this operation needs the v0.5 LTX layout",
    );
    this.where = where;
  }
}

// ---------------------------------------------------------------------------------------------
// Planning

/** What a v0.3 restore aims at: the newest state, the state at a moment, or an index's end. */
export type V3Target =
  | { kind: "latest" }
  | { kind: "time"; ms: number }
  | { kind: "index"; index: number };

/** The objects a v0.3 restore applies, and where it ends. */
export interface V3Plan {
  /** The generation restored from. */
  generation: string;
  /** The base: its database file is written first. */
  snapshot: V3Snapshot;
  /** Segments applied after the snapshot, by index then offset; every index starts at offset 0. */
  segments: V3Segment[];
  /** The WAL index the restored state is in (the snapshot's when no segment follows). */
  index: number;
  /** Newest object time the restore uses. */
  timestamp: Date;
  /** The requested time was after the newest backup: the latest state is restored. */
  clampedToLatest: boolean;
}

/**
 * Choose generation, snapshot and segments for `target` (optionally within one generation).
 * Follows Litestream v0.3.13 (Replica.CalcRestoreTarget, SnapshotIndexAt, walSegmentMap): latest
 * is the generation written last and its newest snapshot; a moment picks the generation holding
 * it, the newest snapshot not after it, and segments up to the first one written after it; an
 * index picks the newest snapshot at or below it and every segment up to its end. Indexes must be
 * complete from the snapshot on: a missing index or missing first segment is a RestoreError.
 *
 * One refinement: a snapshot is the database file after the checkpoints so far, which may already
 * hold frames of its index that no segment written before it carries, when the replica lagged.
 * The listing shows that lag: segments of the snapshot's index written after it. A plan that ends
 * inside that index and cuts off all of those (a moment just after the snapshot) would roll some
 * pages back and not others; an older snapshot of the generation that avoids this is used
 * instead when there is one (the same state, consistently).
 */
export function planV3(
  where: string,
  generations: V3Generation[],
  target: V3Target,
  generation?: string,
): V3Plan {
  if (generations.length === 0) throw new RestoreError(`no Litestream v0.3 backup at ${where}`);
  let pool = generations;
  if (generation !== undefined) {
    pool = generations.filter((g) => g.id === generation);
    if (pool.length === 0) {
      throw new RestoreError(
        `generation ${generation} not found at ${where} (generations: ${
          generations.map((g) => g.id).join(", ")
        })`,
      );
    }
  }
  const usable = pool.filter((g) => g.snapshots.length > 0);
  if (usable.length === 0) {
    const which = generation === undefined ? "any generation" : `generation ${generation}`;
    throw new RestoreError(`no snapshot in ${which} at ${where}: nothing to restore from`);
  }
  if (target.kind === "index" && usable.length > 1) {
    throw new RestoreError(
      `restoring WAL index ${hex8(target.index)} needs a generation: ${where} holds ${
        usable.map((g) => g.id).join(", ")
      }`,
    );
  }
  const newest = usable.reduce((a, b) => later(b, a) ? b : a);
  if (target.kind !== "time") return planIn(where, newest, target, false);

  const T = target.ms;
  const cands = usable.filter((g) => g.snapshots.some((s) => ms(s) <= T));
  if (cands.length === 0) {
    let oldest = Infinity;
    for (const g of usable) for (const s of g.snapshots) oldest = Math.min(oldest, ms(s));
    throw new RestoreError(
      `no backup at or before ${iso(T)} at ${where}; the oldest snapshot is from ${iso(oldest)}`,
    );
  }
  // The generation holding T (latest written if several), else the last one to end before T.
  const reach = (g: V3Generation) => Math.min(g.updatedAt.getTime(), T);
  const g = cands.reduce((a, b) =>
    reach(b) > reach(a) || (reach(b) === reach(a) && later(b, a)) ? b : a
  );
  const clamped = g === newest && T > g.updatedAt.getTime();
  return planIn(where, g, target, clamped);
}

/** The plan within one generation (see planV3). */
function planIn(where: string, g: V3Generation, target: V3Target, clamped: boolean): V3Plan {
  const T = target.kind === "time" ? target.ms : Infinity;
  const N = target.kind === "index" ? target.index : Infinity;
  const at = `generation ${g.id} at ${where}`;
  let maxIndex = -1;
  for (const o of [g.snapshots, g.segments].flat()) maxIndex = Math.max(maxIndex, o.index);
  if (N !== Infinity && N > maxIndex) {
    throw new RestoreError(
      `WAL index ${hex8(N)} is not in ${at}: its latest index is ${hex8(maxIndex)}`,
    );
  }
  // Newest first: by time for latest and moments (SnapshotIndexAt), by index for index targets.
  const snaps = g.snapshots
    .filter((s) => ms(s) <= T && s.index <= N)
    .sort((a, b) =>
      N === Infinity ? ms(b) - ms(a) || b.index - a.index : b.index - a.index || ms(b) - ms(a)
    );
  if (snaps.length === 0) {
    const lowest = g.snapshots[0];
    throw new RestoreError(
      target.kind === "index"
        ? `no snapshot at or below WAL index ${hex8(N)} in ${at}; the lowest is at ${
          hex8(lowest.index)
        }`
        : `no snapshot at or before ${iso(T)} in ${at}`,
    );
  }
  let first: V3Plan | undefined;
  let firstError: RestoreError | undefined;
  for (const snapshot of snaps) {
    const segments: V3Segment[] = [];
    let ts = ms(snapshot);
    for (const s of g.segments) {
      if (s.index < snapshot.index) continue;
      if (s.index > N) break;
      if (ms(s) > T) break; // walSegmentMap: stop at the first segment written after T
      segments.push(s);
      ts = Math.max(ts, ms(s));
    }
    try {
      checkComplete(at, snapshot, segments, N);
    } catch (e) {
      if (!(e instanceof RestoreError)) throw e;
      firstError ??= e;
      continue;
    }
    const last = segments.length ? segments[segments.length - 1].index : snapshot.index;
    const plan: V3Plan = {
      generation: g.id,
      snapshot,
      segments,
      index: last,
      timestamp: new Date(ts),
      clampedToLatest: clamped,
    };
    if (last > snapshot.index || !cutsLag(g, snapshot, segments)) return plan;
    first ??= plan;
  }
  if (first) return first;
  throw firstError!;
}

/**
 * True when the generation holds segments of the snapshot's index written at or after it (the
 * replica was catching up) and the plan includes none of them.
 */
function cutsLag(g: V3Generation, snapshot: V3Snapshot, planned: V3Segment[]): boolean {
  const after = (s: V3Segment) => s.index === snapshot.index && ms(s) >= ms(snapshot);
  return g.segments.some(after) && !planned.some(after);
}

/** Every index from the snapshot's to the last planned one starts at offset 0; the target's exists. */
function checkComplete(at: string, snapshot: V3Snapshot, segments: V3Segment[], N: number): void {
  let want = snapshot.index;
  let prev: V3Segment | undefined;
  for (const s of segments) {
    if (prev && s.index === prev.index) {
      prev = s;
      continue;
    }
    if (s.index !== want) {
      throw new RestoreError(
        `WAL index ${hex8(want)} is missing from ${at} (snapshot ${hex8(snapshot.index)}, next ` +
          `segment ${s.key}): the backup has a gap`,
      );
    }
    if (s.offset !== 0) {
      throw new RestoreError(
        `WAL index ${hex8(s.index)} of ${at} lacks its first segment (the first starts at offset ` +
          `${s.offset}): the backup has a gap`,
      );
    }
    prev = s;
    want = s.index + 1;
  }
  const last = prev ? prev.index : snapshot.index;
  if (N !== Infinity && last !== N) {
    throw new RestoreError(`WAL index ${hex8(N)} of ${at} has no segments: the backup has a gap`);
  }
}

/** a was written after b (ties: the larger id, so the choice does not depend on order). */
function later(a: V3Generation, b: V3Generation): boolean {
  const ta = a.updatedAt.getTime(), tb = b.updatedAt.getTime();
  return ta > tb || (ta === tb && cmp(a.id, b.id) > 0);
}

// ---------------------------------------------------------------------------------------------
// LZ4 frames, streamed

const FRAME_SKIPPABLE_MASK = 0xfffffff0;
const FRAME_SKIPPABLE = 0x184d2a50;
const UNCOMPRESSED_BIT = 0x80000000;
/** Linked blocks may refer this far back into the previous block's output. */
const LZ4_WINDOW = 64 * 1024;

function corrupt(msg: string): never {
  throw new IntegrityError(msg);
}

function u32le(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

/** "age-" read as a little-endian u32: an age-encrypted object (Litestream v0.3 `age:`). */
const AGE_START = 0x2d656761;

/**
 * Decode LZ4 frames (LZ4 frame format 1.6: any block size, linked or independent blocks, block
 * and content checksums, content size; skippable frames skipped) from a chunk stream. Yields the
 * decoded content a block at a time as views of one reused buffer: consume each before pulling
 * the next. Throws IntegrityError on anything malformed, a failed checksum, or trailing bytes.
 */
export async function* lz4FrameStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const r = new ByteReader(src);
  let out = new Uint8Array(0);
  try {
    for (let frames = 0;; frames++) {
      const m = await r.read(4);
      if (m === undefined) {
        if (r.available > 0) corrupt(`${r.available} stray byte(s) after the last LZ4 frame`);
        if (frames === 0) corrupt("empty object: no LZ4 frame");
        return;
      }
      const magic = u32le(m, 0);
      if (((magic & FRAME_SKIPPABLE_MASK) >>> 0) === FRAME_SKIPPABLE) {
        const n = await r.read(4);
        if (n === undefined || (await r.read(u32le(n, 0))) === undefined) {
          corrupt("skippable LZ4 frame cut short");
        }
        continue;
      }
      if (frames === 0 && magic === AGE_START) {
        throw new ConfigError(
          "age-encrypted (Litestream v0.3 `age:`), and no age identity is given (fix: set " +
            "age.identities or identity_file in the config, or LITESTREAM_AGE_SECRET_KEY)",
        );
      }
      if (magic !== LZ4_FRAME_MAGIC) {
        corrupt(`LZ4 frame magic 0x${magic.toString(16).padStart(8, "0")}: want 0x184d2204`);
      }
      const d = await readDescriptor(r);
      const need = d.blockMaxSize + (d.independent ? 0 : LZ4_WINDOW);
      if (out.length < need) out = new Uint8Array(need);
      const hash = d.contentChecksum ? new Xxh32() : undefined;
      let total = 0;
      let hist = 0; // bytes of previous output kept at the front of `out` (linked blocks)
      for (let block = 0;; block++) {
        const w = await r.read(4);
        if (w === undefined) corrupt(`LZ4 frame cut short before block ${block}`);
        const word = u32le(w, 0);
        if (word === 0) break;
        const len = (word & ~UNCOMPRESSED_BIT) >>> 0;
        if (len > d.blockMaxSize) {
          corrupt(`LZ4 block ${block} of ${len} bytes exceeds the frame's ${d.blockMaxSize}`);
        }
        const raw = await r.read(len + (d.blockChecksum ? 4 : 0));
        if (raw === undefined) corrupt(`LZ4 frame cut short in block ${block}`);
        const data = raw.subarray(0, len);
        if (d.blockChecksum && u32le(raw, len) !== xxh32(data)) {
          corrupt(`LZ4 block ${block} fails its checksum`);
        }
        const start = d.independent ? 0 : hist;
        let end = start + len;
        if ((word & UNCOMPRESSED_BIT) !== 0) out.set(data, start);
        else end = decompressBlockInto(data, out, start, start + d.blockMaxSize, 0);
        const chunk = out.subarray(start, end);
        hash?.update(chunk);
        total += chunk.length;
        yield chunk;
        if (!d.independent) {
          hist = Math.min(LZ4_WINDOW, end);
          out.copyWithin(0, end - hist, end);
        }
      }
      if (d.contentSize !== undefined && d.contentSize !== total) {
        corrupt(`LZ4 frame declares ${d.contentSize} bytes of content, holds ${total}`);
      }
      if (hash) {
        const c = await r.read(4);
        if (c === undefined) corrupt("LZ4 frame cut short before its content checksum");
        if (u32le(c, 0) !== hash.digest()) corrupt("LZ4 frame fails its content checksum");
      }
    }
  } finally {
    await r.close();
  }
}

interface Descriptor {
  independent: boolean;
  blockChecksum: boolean;
  contentChecksum: boolean;
  contentSize?: number;
  blockMaxSize: number;
}

async function readDescriptor(r: ByteReader): Promise<Descriptor> {
  const fb = await r.read(2);
  if (fb === undefined) corrupt("LZ4 frame header cut short");
  const flg = fb[0], bd = fb[1];
  const hasSize = (flg & 0x08) !== 0;
  if (flg >>> 6 !== 1) corrupt(`LZ4 frame version ${flg >>> 6}: want 1`);
  if ((flg & 0x03) !== 0) corrupt("LZ4 frame sets a reserved bit or a dictionary (unsupported)");
  const idx = (bd >>> 4) & 7;
  if ((bd & 0x8f) !== 0 || idx < 4) corrupt(`LZ4 frame BD byte 0x${bd.toString(16)} is invalid`);
  const rest = await r.read(hasSize ? 9 : 1);
  if (rest === undefined) corrupt("LZ4 frame header cut short");
  const desc = new Uint8Array(hasSize ? 10 : 2);
  desc[0] = flg;
  desc[1] = bd;
  let contentSize: number | undefined;
  if (hasSize) {
    desc.set(rest.subarray(0, 8), 2);
    const lo = u32le(rest, 0), hi = u32le(rest, 4);
    contentSize = hi * 2 ** 32 + lo;
  }
  if (rest[rest.length - 1] !== ((xxh32(desc) >>> 8) & 0xff)) {
    corrupt("LZ4 frame header fails its checksum");
  }
  return {
    independent: (flg & 0x20) !== 0,
    blockChecksum: (flg & 0x10) !== 0,
    contentChecksum: (flg & 0x04) !== 0,
    contentSize,
    blockMaxSize: 1 << (8 + 2 * idx),
  };
}

const P1 = 0x9e3779b1 | 0, P2 = 0x85ebca77 | 0, P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0, P5 = 0x165667b1 | 0;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(v: number, word: number): number {
  return Math.imul(rotl((v + Math.imul(word, P2)) | 0, 13), P1);
}

/** Incremental xxHash32 (seed 0), for LZ4 content checksums over many blocks. */
export class Xxh32 {
  #v1 = (P1 + P2) | 0;
  #v2 = P2;
  #v3 = 0;
  #v4 = -P1 | 0;
  #tail = new Uint8Array(16);
  #tailLen = 0;
  #total = 0;

  /** Feed more bytes. */
  update(b: Uint8Array): void {
    const n = b.length;
    this.#total += n;
    let i = 0;
    if (this.#tailLen > 0) {
      const take = Math.min(16 - this.#tailLen, n);
      this.#tail.set(b.subarray(0, take), this.#tailLen);
      this.#tailLen += take;
      i = take;
      if (this.#tailLen < 16) return;
      this.#stripes(this.#tail, 0, 16);
      this.#tailLen = 0;
    }
    const whole = i + ((n - i) & ~15);
    this.#stripes(b, i, whole);
    if (whole < n) {
      this.#tail.set(b.subarray(whole), 0);
      this.#tailLen = n - whole;
    }
  }

  #stripes(b: Uint8Array, from: number, to: number): void {
    let v1 = this.#v1, v2 = this.#v2, v3 = this.#v3, v4 = this.#v4;
    for (let i = from; i < to; i += 16) {
      v1 = round(v1, u32le(b, i));
      v2 = round(v2, u32le(b, i + 4));
      v3 = round(v3, u32le(b, i + 8));
      v4 = round(v4, u32le(b, i + 12));
    }
    this.#v1 = v1, this.#v2 = v2, this.#v3 = v3, this.#v4 = v4;
  }

  /** The hash of everything fed so far, unsigned. */
  digest(): number {
    let h = this.#total >= 16
      ? (rotl(this.#v1, 1) + rotl(this.#v2, 7) + rotl(this.#v3, 12) + rotl(this.#v4, 18)) | 0
      : P5;
    h = (h + (this.#total % 2 ** 32)) | 0;
    const t = this.#tail;
    let i = 0;
    for (; i + 4 <= this.#tailLen; i += 4) {
      h = Math.imul(rotl((h + Math.imul(u32le(t, i) | 0, P3)) | 0, 17), P4);
    }
    for (; i < this.#tailLen; i++) h = Math.imul(rotl((h + Math.imul(t[i], P5)) | 0, 11), P1);
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    return h >>> 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Applying a plan

/** Options for applyV3Plan. */
export interface V3ApplyOptions {
  /** Replace an existing output (and drop its -wal/-shm/-journal). */
  force?: boolean;
  /** Check run on the result before it is renamed into place; default "full". */
  integrity?: "full" | "quick" | "none";
  /** A file replica's root directory: an output inside it is refused. */
  replicaRoot?: string;
  /** Called as compressed bytes are read: (bytes so far, total bytes of the plan's objects). */
  onProgress?(done: number, total: number): void;
}

/** What a finished v0.3 restore produced. */
export interface V3RestoreResult {
  /** The generation restored from. */
  generation: string;
  /** The snapshot's WAL index. */
  snapshotIndex: number;
  /** The WAL index the restored state is in. */
  index: number;
  /** End of the last commit applied within that index's WAL (0 when no WAL was applied). */
  offset: number;
  /** Page size in bytes. */
  pageSize: number;
  /** Size of the restored database in pages. */
  commit: number;
  /** Size of the restored database in bytes. */
  bytes: number;
  /** Objects applied: the snapshot and every segment. */
  files: number;
  /** Where the database was written. */
  outPath: string;
}

const SQLITE_MAGIC = "SQLite format 3\0";
const RUN_BYTES = 1 << 20;

/**
 * Rebuild the database of `plan` at `outPath`: the snapshot streams into
 * `<outPath>.tmp-<random>`, each WAL index is decoded into a spool file, checked frame by frame
 * (header, salts, checksum chain, as SQLite's recovery does) and its committed pages written;
 * then the result is checked, fsynced and renamed, never over an existing file without `force`.
 * Corrupt objects are IntegrityErrors (exit 5) naming the key; missing WAL bytes RestoreErrors.
 */
export async function applyV3Plan(
  storage: Storage,
  plan: V3Plan,
  outPath: string,
  opts: V3ApplyOptions = {},
): Promise<V3RestoreResult> {
  await checkRestoreOutput(outPath, opts);
  const objects = [plan.snapshot, ...plan.segments];
  const total = objects.reduce((n, o) => n + o.size, 0);
  let done = 0;
  const open = async function* (key: string) {
    for await (const chunk of await storage.get(key)) {
      done += chunk.length;
      opts.onProgress?.(done, total);
      yield chunk;
    }
  };

  const tmp = `${outPath}.tmp-${randomHex(8)}`;
  const spoolPath = `${tmp}.v3-wal`;
  let db: Deno.FsFile | undefined;
  let spool: Deno.FsFile | undefined;
  try {
    db = await Deno.open(tmp, { createNew: true, read: true, write: true });
    const size = await inflateInto(open, plan.snapshot.key, db);
    const pageSize = await checkSnapshot(db, size, plan.snapshot.key);
    let commit = size / pageSize;
    let offset = 0;
    for (const group of byIndex(plan.segments)) {
      spool = await Deno.open(spoolPath, { create: true, truncate: true, read: true, write: true });
      const applied = await applyIndex(open, group, spool, db, pageSize);
      spool.close();
      spool = undefined;
      if (applied.commit > 0) commit = applied.commit;
      offset = applied.offset;
    }
    await db.sync();
    db.close();
    db = undefined;
    checkIntegrity(tmp, opts.integrity ?? "full");
    await removeSidecars(tmp);
    await placeRestored(tmp, outPath, opts.force ?? false);
    await fsyncDir(dirname(outPath));
    return {
      generation: plan.generation,
      snapshotIndex: plan.snapshot.index,
      index: plan.index,
      offset,
      pageSize,
      commit,
      bytes: commit * pageSize,
      files: objects.length,
      outPath,
    };
  } catch (e) {
    for (const f of [db, spool]) {
      try {
        f?.close();
      } catch { /* already closed */ }
    }
    await removeQuietly(tmp);
    await removeSidecars(tmp);
    throw e;
  } finally {
    await removeQuietly(spoolPath);
  }
}

type Opener = (key: string) => AsyncGenerator<Uint8Array>;

/** Decode the object `key` and append its content to `file`; returns the bytes written. */
async function inflateInto(open: Opener, key: string, file: Deno.FsFile): Promise<number> {
  let n = 0;
  try {
    for await (const chunk of lz4FrameStream(open(key))) {
      await writeAll(file, chunk);
      n += chunk.length;
    }
  } catch (e) {
    if (e instanceof IntegrityError) throw new IntegrityError(`${key}: ${e.message}`, { cause: e });
    if (e instanceof ConfigError && e.cause === undefined) {
      throw new ConfigError(`${key}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  return n;
}

/** The snapshot must be a whole SQLite database; returns its page size. */
async function checkSnapshot(db: Deno.FsFile, size: number, key: string): Promise<number> {
  const head = new Uint8Array(100);
  const n = await readAt(db, 0, head);
  if (n < 100 || new TextDecoder().decode(head.subarray(0, 16)) !== SQLITE_MAGIC) {
    throw new IntegrityError(`${key}: not a SQLite database (no "SQLite format 3" header)`);
  }
  const raw = (head[16] << 8) | head[17];
  const pageSize = raw === 1 ? 65536 : raw;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new IntegrityError(`${key}: database header has an invalid page size ${raw}`);
  }
  if (size % pageSize !== 0) {
    throw new IntegrityError(
      `${key}: ${size} bytes is not a whole number of ${pageSize}-byte pages`,
    );
  }
  return pageSize;
}

/** Segments grouped by WAL index, in order. */
function byIndex(segments: V3Segment[]): V3Segment[][] {
  const out: V3Segment[][] = [];
  for (const s of segments) {
    const g = out[out.length - 1];
    if (g && g[0].index === s.index) g.push(s);
    else out.push([s]);
  }
  return out;
}

/**
 * Rebuild one WAL index in the spool, validate it as SQLite's recovery would, and write the
 * newest committed version of each page it holds into the database. Frames after the last commit
 * (a segment can end inside a transaction) are left out, as SQLite leaves them out.
 */
async function applyIndex(
  open: Opener,
  group: V3Segment[],
  spool: Deno.FsFile,
  db: Deno.FsFile,
  pageSize: number,
): Promise<{ commit: number; offset: number }> {
  const starts: number[] = [];
  let end = 0;
  for (const seg of group) {
    if (seg.offset > end) {
      throw new RestoreError(
        `WAL index ${
          hex8(seg.index)
        } of generation ${seg.generation}: bytes ${end}..${seg.offset} ` +
          `are missing (no segment starts at ${end}; the next is ${seg.key}): the backup has a gap`,
      );
    }
    if (seg.offset < end) {
      throw new IntegrityError(
        `${seg.key}: starts at WAL offset ${seg.offset}, inside the ${end} bytes before it`,
      );
    }
    starts.push(end);
    end += await inflateInto(open, seg.key, spool);
  }
  const keyAt = (off: number) => {
    let i = 0;
    while (i + 1 < starts.length && starts[i + 1] <= off) i++;
    return group[i].key;
  };
  const header = await readWalHeader(spool);
  if (!header) {
    throw new IntegrityError(`${group[0].key}: does not start with a valid SQLite WAL header`);
  }
  if (header.pageSize !== pageSize) {
    throw new IntegrityError(
      `${group[0].key}: WAL page size ${header.pageSize} differs from the database's ${pageSize}`,
    );
  }
  let scan;
  try {
    scan = await scanWal(spool, header, { offset: WAL_HEADER_SIZE });
  } catch (e) {
    if (e instanceof DatabaseError) {
      throw new IntegrityError(`${group[0].key}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  if (scan.stop !== "end") {
    const why = scan.stop === "partial"
      ? "the WAL ends inside a frame"
      : scan.stop === "salt"
      ? "a frame's salts differ from the WAL header's"
      : "a frame fails the WAL checksum chain";
    throw new IntegrityError(`${keyAt(scan.endOffset)}: ${why} (WAL offset ${scan.endOffset})`);
  }
  await writeFrames(spool, db, [...scan.pages].sort((a, b) => a[0] - b[0]), pageSize);
  if (scan.commit > 0) await db.truncate(scan.commit * pageSize);
  return { commit: scan.commit, offset: scan.commitFrames > 0 ? scan.endOffset : 0 };
}

/** Copy each (pgno, frame offset) page from the spool into the database, ascending runs batched. */
async function writeFrames(
  spool: Deno.FsFile,
  db: Deno.FsFile,
  pages: [number, number][],
  pageSize: number,
): Promise<void> {
  const buf = new Uint8Array(Math.max(pageSize, RUN_BYTES - (RUN_BYTES % pageSize)));
  let first = 0, n = 0;
  const flush = async () => {
    if (n === 0) return;
    await db.seek((first - 1) * pageSize, Deno.SeekMode.Start);
    await writeAll(db, buf.subarray(0, n * pageSize));
    n = 0;
  };
  for (const [pgno, off] of pages) {
    if (n > 0 && (pgno !== first + n || (n + 1) * pageSize > buf.length)) await flush();
    if (n === 0) first = pgno;
    const page = buf.subarray(n * pageSize, (n + 1) * pageSize);
    if (await readAt(spool, off + WAL_FRAME_HEADER_SIZE, page) < pageSize) {
      throw new IntegrityError(`WAL frame at offset ${off} is cut short`);
    }
    n++;
  }
  await flush();
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Parse a generation id given by a user; ConfigError (exit 2) unless 16 lower-case hex digits. */
export function parseGenerationId(s: string): string {
  const v = s.trim().toLowerCase();
  if (!isGenerationId(v)) {
    throw new ConfigError(`invalid generation ${JSON.stringify(s)}: want 16 hex digits`);
  }
  return v;
}

/** Check a WAL index given by a user; ConfigError unless an integer 0..0x7FFFFFFF. */
export function checkIndex(index: number): number {
  if (!Number.isSafeInteger(index) || index < 0 || index > V3_MAX_INDEX) {
    throw new ConfigError(`invalid WAL index ${index}: want an integer 0..${V3_MAX_INDEX}`);
  }
  return index;
}

/** An index as Litestream prints it: 8 hex digits. */
export function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function ms(o: { createdAt: Date }): number {
  return o.createdAt.getTime();
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
