/** The 100-byte LTX header (spec §1.1): layout, validation, encode and decode. */

import { ConfigError, LtxError } from "../errors.ts";

export const HEADER_SIZE = 100, TRAILER_SIZE = 16, PAGE_HEADER_SIZE = 6;
/** Header flag: database checksums are not tracked (pre/post-apply are zero). */
export const HEADER_FLAG_NO_CHECKSUM = 0x2;
/** Page header flag: a 4-byte compressed size and one raw LZ4 block follow. */
export const PAGE_FLAG_SIZE = 0x1;
/** "age-" read as a big-endian u32: the start of an age file (an encrypted replica's object). */
const AGE_MAGIC_PREFIX = 0x6167652d;

/** "LTX1" read as a big-endian u32. */
export const HEADER_MAGIC = 0x4c545831;
export const MIN_PAGE_SIZE = 512, MAX_PAGE_SIZE = 65536;

/** Decoded header fields; 64-bit TXIDs, offsets and times are plain numbers (safe integers). */
export interface LtxHeader {
  /** Header flags; only 0x2 (database checksums not tracked) is valid. */
  flags: number;
  /** Database page size in bytes: a power of two from 512 to 65536. */
  pageSize: number;
  /** Database size in pages after the file is applied. */
  commit: number;
  /** First TXID the file covers (1 for a snapshot). */
  minTXID: number;
  /** Last TXID the file covers. */
  maxTXID: number;
  /** When the file was written, ms since the Unix epoch (newest input's time when compacted). */
  timestamp: number;
  /** Database checksum before applying the file (0 for snapshots and untracked checksums). */
  preApplyChecksum: bigint;
  /** Byte offset in the source WAL of the first covered frame; 0 for compacted files. */
  walOffset: number;
  /** Bytes of WAL covered, starting at walOffset. */
  walSize: number;
  /** WAL header salt-1 when the file was made; 0 for compacted files. */
  walSalt1: number;
  /** WAL header salt-2 when the file was made; 0 for compacted files. */
  walSalt2: number;
  /** Writer node ID; 0 in Litestream files. */
  nodeID: bigint;
}

const U64_MAX = (1n << 64n) - 1n;
const FLAG_BIT = 1n << 63n;

function bad(msg: string): never {
  throw new LtxError("header", msg);
}

function hex(v: bigint | number, digits: number): string {
  return "0x" + v.toString(16).padStart(digits, "0");
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) bad(`${name} ${v}: must be a u32`);
}

function checkSafe(name: string, v: number): void {
  if (!Number.isSafeInteger(v)) bad(`${name} ${v}: must be a safe integer`);
}

function checkU64(name: string, v: bigint): void {
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) bad(`${name} ${v}: must be a u64`);
}

/** True for the page sizes LTX and SQLite allow: powers of two from 512 to 65536. */
export function isValidPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_PAGE_SIZE && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}

/** Enforce every `Header.Validate` rule of spec §1.1; throws LtxError("header"). */
export function validateHeader(h: LtxHeader): void {
  checkU32("flags", h.flags);
  if ((h.flags & ~HEADER_FLAG_NO_CHECKSUM) !== 0) {
    bad(`invalid flags ${hex(h.flags, 8)}: only 0x00000002 (NoChecksum) is defined`);
  }
  if (!isValidPageSize(h.pageSize)) {
    bad(`invalid page size ${h.pageSize}: must be a power of two from 512 to 65536`);
  }
  checkU32("commit", h.commit);
  checkSafe("minTXID", h.minTXID);
  checkSafe("maxTXID", h.maxTXID);
  if (h.minTXID < 1) bad(`minTXID ${h.minTXID}: must be at least 1`);
  if (h.maxTXID < 1) bad(`maxTXID ${h.maxTXID}: must be at least 1`);
  if (h.minTXID > h.maxTXID) {
    bad(`minTXID ${h.minTXID} > maxTXID ${h.maxTXID}: transaction ids out of order`);
  }
  checkSafe("timestamp", h.timestamp);
  checkU64("preApplyChecksum", h.preApplyChecksum);
  checkSafe("walOffset", h.walOffset);
  checkSafe("walSize", h.walSize);
  if (h.walOffset < 0) bad(`walOffset ${h.walOffset}: must not be negative`);
  if (h.walSize < 0) bad(`walSize ${h.walSize}: must not be negative`);
  checkU32("walSalt1", h.walSalt1);
  checkU32("walSalt2", h.walSalt2);
  if ((h.walSalt1 !== 0 || h.walSalt2 !== 0) && h.walOffset === 0) {
    bad(
      `WAL salts ${hex(h.walSalt1, 8)}/${
        hex(h.walSalt2, 8)
      } set with walOffset 0: salts need an offset`,
    );
  }
  if (h.walOffset === 0 && h.walSize !== 0) bad(`walSize ${h.walSize} with walOffset 0: must be 0`);
  checkU64("nodeID", h.nodeID);
  const pre = h.preApplyChecksum;
  if (isSnapshot(h)) {
    if (pre !== 0n) bad(`preApplyChecksum ${hex(pre, 16)} on a snapshot: must be 0`);
  } else if ((h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0) {
    if (pre !== 0n) bad(`preApplyChecksum ${hex(pre, 16)} with NoChecksum flag: must be 0`);
  } else if ((pre & FLAG_BIT) === 0n) {
    bad(`preApplyChecksum ${hex(pre, 16)}: must be non-zero with bit 63 set`);
  }
}

/** Serialize a header (validated first) into 100 bytes. */
export function encodeHeader(h: LtxHeader): Uint8Array {
  validateHeader(h);
  const b = new Uint8Array(HEADER_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, HEADER_MAGIC);
  v.setUint32(4, h.flags);
  v.setUint32(8, h.pageSize);
  v.setUint32(12, h.commit);
  v.setBigUint64(16, BigInt(h.minTXID));
  v.setBigUint64(24, BigInt(h.maxTXID));
  v.setBigInt64(32, BigInt(h.timestamp));
  v.setBigUint64(40, h.preApplyChecksum);
  v.setBigInt64(48, BigInt(h.walOffset));
  v.setBigInt64(56, BigInt(h.walSize));
  v.setUint32(64, h.walSalt1);
  v.setUint32(68, h.walSalt2);
  v.setBigUint64(72, h.nodeID);
  return b;
}

function safeNumber(name: string, v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    bad(`${name} ${v}: beyond 2^53-1, not supported`);
  }
  return Number(v);
}

/** Parse and validate the first 100 bytes of an LTX file; throws LtxError("header"). */
export function decodeHeader(b: Uint8Array): LtxHeader {
  if (b.length < HEADER_SIZE) {
    throw new LtxError("truncated", `header: ${b.length} bytes, need ${HEADER_SIZE}`);
  }
  const v = new DataView(b.buffer, b.byteOffset, HEADER_SIZE);
  const magic = v.getUint32(0);
  if (magic === AGE_MAGIC_PREFIX) {
    throw new ConfigError(
      "age-encrypted, not plain LTX: the replica is age-encrypted (fix: give its age identities: " +
        "age.identities in the config, or LITESTREAM_AGE_SECRET_KEY)",
    );
  }
  if (magic !== HEADER_MAGIC) {
    bad(`magic ${hex(magic, 8)}: not an LTX file (want "LTX1")`);
  }
  const h: LtxHeader = {
    flags: v.getUint32(4),
    pageSize: v.getUint32(8),
    commit: v.getUint32(12),
    minTXID: safeNumber("minTXID", v.getBigUint64(16)),
    maxTXID: safeNumber("maxTXID", v.getBigUint64(24)),
    timestamp: safeNumber("timestamp", v.getBigInt64(32)),
    preApplyChecksum: v.getBigUint64(40),
    walOffset: safeNumber("walOffset", v.getBigInt64(48)),
    walSize: safeNumber("walSize", v.getBigInt64(56)),
    walSalt1: v.getUint32(64),
    walSalt2: v.getUint32(68),
    nodeID: v.getBigUint64(72),
  };
  validateHeader(h);
  return h;
}

/** A snapshot holds the whole database: minTXID is 1. */
export function isSnapshot(h: LtxHeader): boolean {
  return h.minTXID === 1;
}

/** True when the file tracks database checksums (NoChecksum flag clear). */
export function tracksChecksums(h: LtxHeader): boolean {
  return (h.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
}

/** The page holding byte offset 1 GiB (SQLite's PENDING_BYTE); never stored in LTX. */
export function lockPgno(pageSize: number): number {
  return Math.floor(0x40000000 / pageSize) + 1;
}
