/**
 * Reading SQLite's write-ahead log without SQLite: header, frames, salts and the rolling
 * checksum, validated exactly like SQLite's WAL recovery so we stop where SQLite would.
 * Format: https://www.sqlite.org/fileformat2.html#walformat (all header fields big-endian).
 */

import { DatabaseError } from "../errors.ts";
import { readAt } from "./pagefile.ts";

/** Bytes in the WAL header. */
export const WAL_HEADER_SIZE = 32;
/** Bytes in each frame header (the page follows). */
export const WAL_FRAME_HEADER_SIZE = 24;

/** Magic with bit 0 clear: checksum words are read little-endian. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic with bit 0 set: checksum words are read big-endian. */
export const WAL_MAGIC_BE = 0x377f0683;
/** The only WAL format version. */
export const WAL_VERSION = 3007000;

/** The decoded 32-byte WAL header. */
export interface WalHeader {
  bigEndianChecksum: boolean;
  version: number;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  checksum1: number;
  checksum2: number;
}

/** A decoded frame header. */
export interface WalFrameHeader {
  pgno: number;
  /** Database size in pages after this commit; 0 for a frame that is not a commit. */
  commit: number;
  salt1: number;
  salt2: number;
  /** Cumulative checksum through this frame. */
  checksum1: number;
  checksum2: number;
}

/** Why a scan stopped. */
export type WalScanStop =
  /** Clean end of file at a frame boundary. */
  | "end"
  /** The file ends inside a frame (a torn or in-progress write). */
  | "partial"
  /** A frame's salts differ: typically frames left from before a WAL restart. */
  | "salt"
  /** A frame's checksum (or page number) is invalid: torn write or stale frame. */
  | "checksum"
  /** maxBytes reached at a commit boundary; call again from endOffset. */
  | "limit"
  /** The resume position belongs to another WAL generation (salts differ); nothing was read. */
  | "stale";

/** The result of scanWal. */
export interface WalScan {
  header: WalHeader;
  /** Where scanning started (frame aligned, >= 32). */
  startOffset: number;
  /** End of the last COMMITTED frame read (== startOffset if none). */
  endOffset: number;
  /** Database size in pages from the last commit frame; 0 if no commit seen. */
  commit: number;
  /** pgno -> offset of the frame holding its newest committed version; pages > commit dropped. */
  pages: Map<number, number>;
  /** Running checksum at endOffset (so the next scan can resume). */
  checksum: [number, number];
  /** Commit frames (transactions) read. */
  commitFrames: number;
  /** Stopped early because of maxBytes (call again from endOffset). */
  limited: boolean;
  /** Why the scan stopped (beyond the spec'd fields; for logs, metrics and tests). */
  stop: WalScanStop;
}

/** Where and how to scan. */
export interface ScanOptions {
  /** Frame-aligned offset to start at (32 = first frame). */
  offset: number;
  /** Expected salts; default the header's. If they differ from the header's, the scan is "stale". */
  salt1?: number;
  salt2?: number;
  /** Running checksum at `offset`; default: the header's at 32, else the previous frame's. */
  checksum?: [number, number];
  /** Stop at the first commit boundary at or past this many bytes from `offset`. */
  maxBytes?: number;
}

/** Bytes in one frame for a page size. */
export function walFrameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Decode a WAL header; undefined when short, bad magic, bad version, bad page size or checksum. */
export function parseWalHeader(b: Uint8Array): WalHeader | undefined {
  if (b.length < WAL_HEADER_SIZE) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, WAL_HEADER_SIZE);
  const magic = v.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return undefined;
  const bigEndianChecksum = (magic & 1) === 1;
  const version = v.getUint32(4);
  if (version !== WAL_VERSION) return undefined;
  const pageSize = v.getUint32(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  const state = [0, 0];
  checksumView(v, 0, 24, bigEndianChecksum, state);
  const checksum1 = v.getUint32(24), checksum2 = v.getUint32(28);
  if (state[0] !== checksum1 || state[1] !== checksum2) return undefined;
  return {
    bigEndianChecksum,
    version,
    pageSize,
    checkpointSeq: v.getUint32(12),
    salt1: v.getUint32(16),
    salt2: v.getUint32(20),
    checksum1,
    checksum2,
  };
}

/** Decode a 24-byte frame header. */
export function parseFrameHeader(b: Uint8Array): WalFrameHeader {
  const v = new DataView(b.buffer, b.byteOffset, WAL_FRAME_HEADER_SIZE);
  return {
    pgno: v.getUint32(0),
    commit: v.getUint32(4),
    salt1: v.getUint32(8),
    salt2: v.getUint32(12),
    checksum1: v.getUint32(16),
    checksum2: v.getUint32(20),
  };
}

/** One DataView per buffer, so repeated checksums over the same buffer allocate nothing. */
const views = new WeakMap<ArrayBufferLike, DataView>();

/**
 * SQLite's WAL checksum over `b` (length a multiple of 8), continuing from (s0, s1). Words are
 * read in the byte order the WAL magic selects. No copying; one cached DataView per buffer.
 */
export function walChecksum(
  b: Uint8Array,
  bigEndian: boolean,
  s0: number,
  s1: number,
): [number, number] {
  if (b.length % 8 !== 0) {
    throw new RangeError(`WAL checksum input must be a multiple of 8 bytes, got ${b.length}`);
  }
  let view = views.get(b.buffer);
  if (!view) {
    view = new DataView(b.buffer);
    views.set(b.buffer, view);
  }
  const state = [s0 >>> 0, s1 >>> 0];
  checksumView(view, b.byteOffset, b.byteOffset + b.length, bigEndian, state);
  return [state[0], state[1]];
}

/** The checksum loop: units [start, end) of `v`, state updated in place. */
function checksumView(
  v: DataView,
  start: number,
  end: number,
  bigEndian: boolean,
  state: number[],
): void {
  const le = !bigEndian;
  let s0 = state[0], s1 = state[1];
  for (let i = start; i < end; i += 8) {
    s0 = (s0 + v.getUint32(i, le) + s1) | 0;
    s1 = (s1 + v.getUint32(i + 4, le) + s0) | 0;
  }
  state[0] = s0 >>> 0;
  state[1] = s1 >>> 0;
}

/** Read and decode the WAL header; undefined when the WAL is short or invalid. */
export async function readWalHeader(file: Deno.FsFile): Promise<WalHeader | undefined> {
  const b = new Uint8Array(WAL_HEADER_SIZE);
  if (await readAt(file, 0, b) < WAL_HEADER_SIZE) return undefined;
  return parseWalHeader(b);
}

/** Read the frame header at `offset`; undefined when the file is too short. No validation. */
export async function readFrameHeader(
  file: Deno.FsFile,
  offset: number,
): Promise<WalFrameHeader | undefined> {
  const b = new Uint8Array(WAL_FRAME_HEADER_SIZE);
  if (await readAt(file, offset, b) < WAL_FRAME_HEADER_SIZE) return undefined;
  return parseFrameHeader(b);
}

/** Read the page bytes of the frame at `frameOffset` into `into` (at least pageSize bytes). */
export async function readWalPage(
  file: Deno.FsFile,
  frameOffset: number,
  pageSize: number,
  into: Uint8Array,
): Promise<void> {
  const n = await readAt(file, frameOffset + WAL_FRAME_HEADER_SIZE, into.subarray(0, pageSize));
  if (n < pageSize) {
    throw new DatabaseError(
      `WAL frame at offset ${frameOffset} is incomplete (read ${n} of ${pageSize} page bytes)`,
    );
  }
}

/** Scan reads this much at a time (rounded down to whole frames, at least one frame). */
const CHUNK_BYTES = 256 * 1024;
/** Idle chunk buffers kept for reuse; a few cover concurrent scans of several databases. */
const POOL_LIMIT = 4;
const pool: Uint8Array[] = [];

function takeBuffer(size: number): Uint8Array {
  for (let i = 0; i < pool.length; i++) {
    if (pool[i].length >= size) return pool.splice(i, 1)[0];
  }
  return new Uint8Array(Math.max(size, CHUNK_BYTES));
}

function giveBuffer(b: Uint8Array): void {
  if (pool.length < POOL_LIMIT) pool.push(b);
}

/**
 * Scan committed frames from `opts.offset`. Stops at EOF, a short read, a salt mismatch, a
 * checksum mismatch (a torn tail is not an error), or after maxBytes at a commit boundary.
 * When offset > 32 and no checksum is given, the running checksum is loaded from the previous
 * frame's header (bytes 16..23), whose salts must match. Reads in chunks through one reusable
 * buffer, never the whole WAL. The offsets in `pages` stay valid only while the WAL cannot be
 * restarted, i.e. while our read lock is held.
 */
export async function scanWal(
  file: Deno.FsFile,
  header: WalHeader,
  opts: ScanOptions,
): Promise<WalScan> {
  const pageSize = header.pageSize;
  const frameSize = walFrameSize(pageSize);
  const start = opts.offset;
  if (
    !Number.isInteger(start) || start < WAL_HEADER_SIZE ||
    (start - WAL_HEADER_SIZE) % frameSize !== 0
  ) {
    throw new DatabaseError(`WAL offset ${start} is not frame aligned (frame size ${frameSize})`);
  }
  const salt1 = opts.salt1 ?? header.salt1;
  const salt2 = opts.salt2 ?? header.salt2;
  const scan: WalScan = {
    header,
    startOffset: start,
    endOffset: start,
    commit: 0,
    pages: new Map(),
    checksum: [header.checksum1, header.checksum2],
    commitFrames: 0,
    limited: false,
    stop: "end",
  };
  if (salt1 !== header.salt1 || salt2 !== header.salt2) {
    scan.stop = "stale";
    return scan;
  }
  if (opts.checksum) {
    scan.checksum = [opts.checksum[0] >>> 0, opts.checksum[1] >>> 0];
  } else if (start > WAL_HEADER_SIZE) {
    const prev = await readFrameHeader(file, start - frameSize);
    if (!prev || prev.salt1 !== salt1 || prev.salt2 !== salt2) {
      scan.stop = "stale";
      return scan;
    }
    scan.checksum = [prev.checksum1, prev.checksum2];
  }

  const framesPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / frameSize));
  const buf = takeBuffer(framesPerChunk * frameSize);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const state = [scan.checksum[0], scan.checksum[1]];
  const be = header.bigEndianChecksum;
  // Frames of the transaction in progress, merged into `pages` at its commit frame.
  const txPgnos: number[] = [];
  const txOffsets: number[] = [];
  let pos = start;
  try {
    outer: for (;;) {
      const n = await readAt(file, pos, buf.subarray(0, framesPerChunk * frameSize));
      const whole = Math.floor(n / frameSize);
      for (let f = 0; f < whole; f++) {
        const at = f * frameSize;
        const pgno = view.getUint32(at);
        const commit = view.getUint32(at + 4);
        if (view.getUint32(at + 8) !== salt1 || view.getUint32(at + 12) !== salt2) {
          scan.stop = "salt";
          break outer;
        }
        checksumView(view, at, at + 8, be, state);
        checksumView(view, at + WAL_FRAME_HEADER_SIZE, at + frameSize, be, state);
        if (
          pgno === 0 || state[0] !== view.getUint32(at + 16) ||
          state[1] !== view.getUint32(at + 20)
        ) {
          scan.stop = "checksum";
          break outer;
        }
        txPgnos.push(pgno);
        txOffsets.push(pos + at);
        if (commit === 0) continue;
        for (let i = 0; i < txPgnos.length; i++) scan.pages.set(txPgnos[i], txOffsets[i]);
        txPgnos.length = 0;
        txOffsets.length = 0;
        scan.commit = commit;
        scan.commitFrames++;
        scan.endOffset = pos + at + frameSize;
        scan.checksum = [state[0], state[1]];
        if (opts.maxBytes !== undefined && scan.endOffset - start >= opts.maxBytes) {
          scan.limited = true;
          scan.stop = "limit";
          break outer;
        }
      }
      pos += whole * frameSize;
      if (n < framesPerChunk * frameSize) {
        scan.stop = n % frameSize === 0 ? "end" : "partial";
        break;
      }
    }
  } finally {
    giveBuffer(buf);
  }
  if (scan.commit > 0) {
    for (const pgno of scan.pages.keys()) if (pgno > scan.commit) scan.pages.delete(pgno);
  }
  return scan;
}
