/**
 * LZ4 for LTX page payloads (spec §1.4): raw blocks (current format), one-frame-per-page
 * legacy frames, and a frame reader for every LZ4 frame option. Compression is lz4-wasm.
 * Decompression uses lz4-wasm for ordinary compressed pages (measured ~30% faster on SQLite
 * pages) and our own block decoder for literal-only blocks (faster), linked frame blocks
 * (which lz4-wasm cannot do) and precise error messages.
 */

import { compress, decompress } from "lz4-wasm/lz4_wasm.js";
import { LtxError } from "../errors.ts";

/** LZ4 frame magic 0x184D2204 (little-endian on disk). */
export const LZ4_FRAME_MAGIC = 0x184d2204;
/** FLG written in legacy LTX frames: version 01, independent blocks, content checksum. */
export const LEGACY_FLG = 0x64;
/** BD written in legacy LTX frames: 64 KiB maximum block size. */
export const LEGACY_BD = 0x40;
/** Bytes a legacy frame adds around its single block: header 7, size 4, EndMark 4, checksum 4. */
export const LEGACY_FRAME_OVERHEAD = 19;

const UNCOMPRESSED_BIT = 0x80000000;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function hex(v: number, digits: number): string {
  return "0x" + v.toString(16).padStart(digits, "0");
}

function pageData(msg: string): never {
  throw new LtxError("page-data", msg);
}

// ---------------------------------------------------------------------------------------------
// xxHash32

const P1 = 0x9e3779b1 | 0, P2 = 0x85ebca77 | 0, P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0, P5 = 0x165667b1 | 0;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function readU32le(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}

/** xxHash32 of `b` with `seed` (0 in LZ4 frames), as an unsigned number. */
export function xxh32(b: Uint8Array, seed = 0): number {
  const n = b.length;
  let i = 0;
  let h: number;
  if (n >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = n - 16;
    if (LITTLE_ENDIAN && (b.byteOffset & 3) === 0) {
      // Aligned: read the lanes as 32-bit words (pages always are; about twice as fast).
      const w = new Int32Array(b.buffer, b.byteOffset, n >>> 2);
      const stripes = (n >>> 4) << 2;
      for (let j = 0; j < stripes; j += 4) {
        v1 = Math.imul(rotl((v1 + Math.imul(w[j], P2)) | 0, 13), P1);
        v2 = Math.imul(rotl((v2 + Math.imul(w[j + 1], P2)) | 0, 13), P1);
        v3 = Math.imul(rotl((v3 + Math.imul(w[j + 2], P2)) | 0, 13), P1);
        v4 = Math.imul(rotl((v4 + Math.imul(w[j + 3], P2)) | 0, 13), P1);
      }
      i = stripes << 2;
    }
    while (i <= limit) {
      v1 = Math.imul(rotl((v1 + Math.imul(readU32le(b, i), P2)) | 0, 13), P1);
      v2 = Math.imul(rotl((v2 + Math.imul(readU32le(b, i + 4), P2)) | 0, 13), P1);
      v3 = Math.imul(rotl((v3 + Math.imul(readU32le(b, i + 8), P2)) | 0, 13), P1);
      v4 = Math.imul(rotl((v4 + Math.imul(readU32le(b, i + 12), P2)) | 0, 13), P1);
      i += 16;
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + n) | 0;
  for (; i + 4 <= n; i += 4) {
    h = Math.imul(rotl((h + Math.imul(readU32le(b, i), P3)) | 0, 17), P4);
  }
  for (; i < n; i++) {
    h = Math.imul(rotl((h + Math.imul(b[i], P5)) | 0, 11), P1);
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Blocks

/** Compress one buffer into a raw LZ4 block (lz4-wasm, its 4-byte size prefix stripped). */
export function compressBlock(data: Uint8Array): Uint8Array {
  return compress(data).subarray(4);
}

/** Worst-case size of an LZ4 block for `n` input bytes. */
export function compressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

/**
 * Decode the raw LZ4 block `src` into `dst` starting at `dstPos`, never writing at or past
 * `dstEnd`. Matches may reach back to `lowLimit` (the block start for independent blocks, 0 for
 * linked ones). Returns the end position of the output. Throws LtxError("page-data").
 */
export function decompressBlockInto(
  src: Uint8Array,
  dst: Uint8Array,
  dstPos: number,
  dstEnd: number,
  lowLimit: number,
): number {
  const sEnd = src.length;
  let s = 0;
  let d = dstPos;
  // Fast path for short sequences far from both ends: copy 4 bytes at a time and let the copy
  // overrun (by under 20 bytes, later overwritten), so no per-sequence bounds checks are needed.
  const sv = new DataView(src.buffer, src.byteOffset, src.length);
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.length);
  const sFast = sEnd - 24;
  const dFast = dstEnd - 48;
  for (;;) {
    if (s < sFast && d < dFast) {
      const t = src[s];
      const lit = t >>> 4;
      const ml4 = t & 15;
      if (lit !== 15 && ml4 !== 15) {
        s++;
        if (lit !== 0) {
          dv.setUint32(d, sv.getUint32(s, true), true);
          dv.setUint32(d + 4, sv.getUint32(s + 4, true), true);
          if (lit > 8) {
            dv.setUint32(d + 8, sv.getUint32(s + 8, true), true);
            dv.setUint32(d + 12, sv.getUint32(s + 12, true), true);
          }
          s += lit;
          d += lit;
        }
        const off = src[s] | (src[s + 1] << 8);
        s += 2;
        let m = d - off;
        if (off === 0 || m < lowLimit) {
          pageData(badOffset(off, s - 2));
        }
        const ml = ml4 + 4;
        if (off >= 8) {
          dv.setUint32(d, dv.getUint32(m, true), true);
          dv.setUint32(d + 4, dv.getUint32(m + 4, true), true);
          if (ml > 8) {
            dv.setUint32(d + 8, dv.getUint32(m + 8, true), true);
            dv.setUint32(d + 12, dv.getUint32(m + 12, true), true);
            if (ml > 16) {
              dv.setUint16(d + 16, dv.getUint16(m + 16, true), true);
              dst[d + 18] = dst[m + 18];
            }
          }
          d += ml;
        } else {
          const e = d + ml;
          while (d < e) dst[d++] = dst[m++];
        }
        continue;
      }
    }
    if (s >= sEnd) pageData(`LZ4 block ends inside a sequence at byte ${s}`);
    const token = src[s++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= sEnd) pageData(`LZ4 block ends inside a literal length at byte ${s}`);
        b = src[s++];
        lit += b;
      } while (b === 255);
    }
    if (lit > 0) {
      if (s + lit > sEnd) pageData(`LZ4 literals run ${s + lit - sEnd} bytes past the block end`);
      if (d + lit > dstEnd) pageData(`LZ4 block decodes to more than ${dstEnd - dstPos} bytes`);
      if (lit < 16) {
        for (let k = 0; k < lit; k++) dst[d + k] = src[s + k];
      } else {
        dst.set(src.subarray(s, s + lit), d);
      }
      s += lit;
      d += lit;
    }
    if (s === sEnd) return d; // the last sequence has literals only
    if (s + 2 > sEnd) pageData(`LZ4 block ends inside a match offset at byte ${s}`);
    const off = src[s] | (src[s + 1] << 8);
    s += 2;
    let m = d - off;
    if (off === 0 || m < lowLimit) {
      pageData(badOffset(off, s - 2));
    }
    let ml = token & 15;
    if (ml === 15) {
      let b: number;
      do {
        if (s >= sEnd) pageData(`LZ4 block ends inside a match length at byte ${s}`);
        b = src[s++];
        ml += b;
      } while (b === 255);
    }
    ml += 4;
    if (d + ml > dstEnd) pageData(`LZ4 block decodes to more than ${dstEnd - dstPos} bytes`);
    if (ml <= 32) {
      // Byte copy also handles overlapping matches (offset < length) correctly.
      const e = d + ml;
      while (d < e) dst[d++] = dst[m++];
    } else if (off >= ml) {
      dst.copyWithin(d, m, m + ml);
      d += ml;
    } else {
      // Overlapping run: replicate the period with growing non-overlapping copies from m.
      let written = 0;
      while (written < ml) {
        const n = Math.min(ml - written, off + written);
        dst.copyWithin(d + written, m, m + n);
        written += n;
      }
      d += ml;
    }
  }
}

function badOffset(off: number, at: number): string {
  return off === 0
    ? `LZ4 match offset 0 at byte ${at}: invalid`
    : `LZ4 match offset ${off} at byte ${at} reaches before the start of the output`;
}

/** Decompress with our decoder into a fresh buffer; the length must be exactly `size`. */
function decompressOurs(block: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  const end = decompressBlockInto(block, out, 0, size, 0);
  if (end !== size) pageData(`LZ4 block decodes to ${end} bytes, want ${size}`);
  return out;
}

// lz4-wasm wants a u32 LE size prefix before the block; built here to avoid an allocation.
let prefixed = new Uint8Array(65536 + 1024);

/** Decompress a raw LZ4 block that must decode to exactly `size` bytes (a fresh buffer). */
export function decompressBlock(block: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  // A block at least a page long is (nearly) all literals: plain copies, ours is faster.
  if (block.length >= size) return decompressOurs(block, size);
  if (prefixed.length < block.length + 4) prefixed = new Uint8Array(block.length + 4);
  const input = prefixed.subarray(0, block.length + 4);
  input[0] = size & 0xff;
  input[1] = (size >>> 8) & 0xff;
  input[2] = (size >>> 16) & 0xff;
  input[3] = size >>> 24;
  input.set(block, 4);
  let out: Uint8Array;
  try {
    // lz4_flex checks bounds and that the output is exactly `size` bytes. It does accept a
    // match offset of 0 (invalid per the LZ4 spec); the page then fails the file checksum.
    out = decompress(input);
  } catch (e) {
    // Our decoder names the defect (fuzzing finds it rejects everything lz4-wasm rejects).
    decompressOurs(block, size);
    pageData(`LZ4 block rejected: ${typeof e === "string" ? e : String(e)}`);
  }
  if (out.length !== size) pageData(`LZ4 block decodes to ${out.length} bytes, want ${size}`);
  return out as Uint8Array<ArrayBuffer>;
}

// ---------------------------------------------------------------------------------------------
// Frames

/** The shape of one LZ4 frame, as a reader saw it. */
export interface Lz4FrameInfo {
  flg: number;
  bd: number;
  independentBlocks: boolean;
  blockChecksum: boolean;
  contentChecksum: boolean;
  contentSize: number | null;
  blockMaxSize: number;
  blocks: { stored: "compressed" | "uncompressed"; size: number }[];
  /** Total frame length in bytes, magic to content checksum. */
  length: number;
}

const LEGACY_HC = (xxh32(new Uint8Array([LEGACY_FLG, LEGACY_BD])) >>> 8) & 0xff;

/** Length of the legacy frame for a page of `pageLen` bytes whose LZ4 block is `blockLen`. */
export function legacyFrameLength(pageLen: number, blockLen: number): number {
  return LEGACY_FRAME_OVERHEAD + (blockLen >= pageLen ? pageLen : blockLen);
}

/**
 * Write the legacy LTX frame for `page` (spec §1.4.2) into `out` at `pos`, given the page's
 * LZ4 `block`: FLG 0x64, BD 0x40, one block (stored raw with bit 31 when compression does not
 * shrink it, as pierrec/lz4 does), EndMark, xxh32 content checksum. Returns the bytes written.
 */
export function writeLz4Frame(
  page: Uint8Array,
  block: Uint8Array,
  out: Uint8Array,
  pos: number,
): number {
  if (page.length > 65536) throw new RangeError(`LZ4 frame of ${page.length} bytes: max 65536`);
  const stored = block.length >= page.length;
  const payload = stored ? page : block;
  const n = LEGACY_FRAME_OVERHEAD + payload.length;
  const v = new DataView(out.buffer, out.byteOffset + pos, n);
  v.setUint32(0, LZ4_FRAME_MAGIC, true);
  v.setUint8(4, LEGACY_FLG);
  v.setUint8(5, LEGACY_BD);
  v.setUint8(6, LEGACY_HC);
  v.setUint32(7, stored ? (payload.length | UNCOMPRESSED_BIT) >>> 0 : payload.length, true);
  out.set(payload, pos + 11);
  v.setUint32(11 + payload.length, 0, true);
  v.setUint32(15 + payload.length, xxh32(page), true);
  return n;
}

/** One legacy LTX frame holding `page` (see writeLz4Frame), as a new buffer. */
export function encodeLz4Frame(page: Uint8Array): Uint8Array {
  const block = compressBlock(page);
  const out = new Uint8Array(legacyFrameLength(page.length, block.length));
  writeLz4Frame(page, block, out, 0);
  return out;
}

interface Descriptor {
  flg: number;
  bd: number;
  headerLength: number;
  blockMaxSize: number;
  contentSize: number | null;
}

/** Parse the frame descriptor; returns a negative "need this many bytes" when incomplete. */
function parseDescriptor(src: Uint8Array): Descriptor | number {
  if (src.length < 7) return -7;
  const magic = readU32le(src, 0) >>> 0;
  if (magic !== LZ4_FRAME_MAGIC) {
    pageData(`LZ4 frame magic ${hex(magic, 8)}: want 0x184d2204`);
  }
  const flg = src[4];
  const bd = src[5];
  if (flg >>> 6 !== 1) pageData(`LZ4 frame FLG ${hex(flg, 2)}: version must be 01`);
  if ((flg & 0x02) !== 0) pageData(`LZ4 frame FLG ${hex(flg, 2)}: reserved bit 1 set`);
  if ((flg & 0x01) !== 0) {
    pageData(`LZ4 frame FLG ${hex(flg, 2)}: dictionary ID set, dictionaries unsupported`);
  }
  if ((bd & 0x8f) !== 0) pageData(`LZ4 frame BD ${hex(bd, 2)}: reserved bits set`);
  const sizeIdx = (bd >>> 4) & 7;
  if (sizeIdx < 4) pageData(`LZ4 frame BD ${hex(bd, 2)}: block max size index ${sizeIdx}`);
  const hasSize = (flg & 0x08) !== 0;
  const headerLength = 7 + (hasSize ? 8 : 0);
  if (src.length < headerLength) return -headerLength;
  let contentSize: number | null = null;
  if (hasSize) {
    const v = new DataView(src.buffer, src.byteOffset + 6, 8);
    const cs = v.getBigUint64(0, true);
    contentSize = cs > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cs);
  }
  const hc = src[headerLength - 1];
  const want = (xxh32(src.subarray(4, headerLength - 1)) >>> 8) & 0xff;
  if (hc !== want) {
    pageData(`LZ4 frame header checksum ${hex(hc, 2)}: want ${hex(want, 2)}`);
  }
  return { flg, bd, headerLength, blockMaxSize: 1 << (8 + 2 * sizeIdx), contentSize };
}

/**
 * Length of the LZ4 frame at the start of `src` once all of it is present; while it is not,
 * a negative number whose magnitude is the total length needed to learn more (always more than
 * `src.length`). Frames longer than `maxLength` are rejected. Throws LtxError("page-data").
 */
export function scanLz4Frame(src: Uint8Array, maxLength: number): number {
  const d = parseDescriptor(src);
  if (typeof d === "number") return d;
  const blockChecksum = (d.flg & 0x10) !== 0;
  const contentChecksum = (d.flg & 0x04) !== 0;
  let p = d.headerLength;
  for (;;) {
    if (p + 4 > maxLength) pageData(`LZ4 frame longer than ${maxLength} bytes`);
    if (src.length < p + 4) return -(p + 4);
    const word = readU32le(src, p) >>> 0;
    p += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    if (size > d.blockMaxSize) {
      pageData(`LZ4 frame block of ${size} bytes exceeds the maximum ${d.blockMaxSize}`);
    }
    p += size + (blockChecksum ? 4 : 0);
    if (p > maxLength) pageData(`LZ4 frame longer than ${maxLength} bytes`);
  }
  if (contentChecksum) p += 4;
  if (p > maxLength) pageData(`LZ4 frame longer than ${maxLength} bytes`);
  if (src.length < p) return -p;
  return p;
}

/**
 * Decode the complete LZ4 frame at the start of `frame` (as measured by scanLz4Frame), which
 * must hold exactly `size` bytes of content. Verifies the header, block and content checksums.
 * Throws LtxError("page-data").
 */
export function decodeLz4Frame(
  frame: Uint8Array,
  size: number,
): { data: Uint8Array<ArrayBuffer>; info: Lz4FrameInfo } {
  const d = parseDescriptor(frame);
  if (typeof d === "number") pageData(`LZ4 frame cut short: ${frame.length} bytes`);
  const independent = (d.flg & 0x20) !== 0;
  const blockChecksum = (d.flg & 0x10) !== 0;
  const contentChecksum = (d.flg & 0x04) !== 0;
  if (d.contentSize !== null && d.contentSize !== size) {
    pageData(`LZ4 frame declares content size ${d.contentSize}, want ${size}`);
  }
  let out: Uint8Array<ArrayBuffer> | undefined;
  const blocks: Lz4FrameInfo["blocks"] = [];
  let p = d.headerLength;
  let o = 0;
  for (;;) {
    if (p + 4 > frame.length) pageData(`LZ4 frame cut short at byte ${p}`);
    const word = readU32le(frame, p) >>> 0;
    p += 4;
    if (word === 0) break;
    const len = word & 0x7fffffff;
    const stored = (word & UNCOMPRESSED_BIT) !== 0;
    if (len > d.blockMaxSize) pageData(`LZ4 frame block of ${len} bytes exceeds the maximum`);
    if (p + len + (blockChecksum ? 4 : 0) > frame.length) {
      pageData(`LZ4 frame cut short in block ${blocks.length}`);
    }
    const data = frame.subarray(p, p + len);
    p += len;
    if (blockChecksum) {
      const got = readU32le(frame, p) >>> 0;
      p += 4;
      const want = xxh32(data);
      if (got !== want) {
        pageData(
          `LZ4 block ${blocks.length} checksum ${hex(got, 8)}: want ${hex(want, 8)}`,
        );
      }
    }
    const limit = Math.min(size, o + d.blockMaxSize);
    const afterBlock = p + (blockChecksum ? 4 : 0);
    if (
      !stored && o === 0 && size <= d.blockMaxSize && afterBlock + 4 <= frame.length &&
      readU32le(frame, afterBlock) === 0
    ) {
      // The usual legacy LTX page: one compressed block holding the whole content.
      out = decompressBlock(data, size);
      o = size;
    } else if (stored) {
      if (o + len > limit) pageData(`LZ4 frame content exceeds ${size} bytes`);
      out ??= new Uint8Array(size);
      out.set(data, o);
      o += len;
    } else {
      const lowLimit = independent ? o : 0;
      out ??= new Uint8Array(size);
      o = decompressBlockInto(data, out, o, limit, lowLimit);
    }
    blocks.push({ stored: stored ? "uncompressed" : "compressed", size: len });
  }
  if (o !== size) pageData(`LZ4 frame decodes to ${o} bytes, want ${size}`);
  out ??= new Uint8Array(size);
  if (contentChecksum) {
    if (p + 4 > frame.length) pageData(`LZ4 frame cut short before its content checksum`);
    const got = readU32le(frame, p) >>> 0;
    p += 4;
    const want = xxh32(out);
    if (got !== want) {
      pageData(`LZ4 frame content checksum ${hex(got, 8)}: want ${hex(want, 8)}`);
    }
  }
  return {
    data: out,
    info: {
      flg: d.flg,
      bd: d.bd,
      independentBlocks: independent,
      blockChecksum,
      contentChecksum,
      contentSize: d.contentSize,
      blockMaxSize: d.blockMaxSize,
      blocks,
      length: p,
    },
  };
}
