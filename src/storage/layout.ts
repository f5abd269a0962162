/**
 * Object keys per backend kind (spec litestream-ltx.md §2.1) and the `litestream-timestamp`
 * metadata format (§2.3). Self-contained on purpose: no imports from src/ltx.
 */

import { posix } from "node:path";

/** Key layout: "s3" (S3 and OSS) or "file" (file and every other backend). */
export type LayoutKind = "s3" | "file";

/** Level that holds full snapshots. */
export const SNAPSHOT_LEVEL = 9;
/** Object metadata: the database checksum after applying the object (walrust's addition). */
export const POST_APPLY_CHECKSUM_META = "walrust-post-apply-checksum";

/** Highest level number that appears in keys. */
const MAX_LEVEL = SNAPSHOT_LEVEL;

/** Metadata key Litestream writes on every LTX object. */
export const TIMESTAMP_META_KEY = "litestream-timestamp";

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > MAX_LEVEL) {
    throw new RangeError(`LTX level must be an integer 0..${MAX_LEVEL}, got ${level}`);
  }
}

function hex16(txid: number): string {
  if (!Number.isSafeInteger(txid) || txid < 0) {
    throw new RangeError(`TXID must be a non-negative safe integer, got ${txid}`);
  }
  return txid.toString(16).padStart(16, "0");
}

/**
 * Directory (ending in "/") of one level. S3 concatenates without cleaning, as Litestream does,
 * so prefix "" gives "/0000/" and "." gives "./0000/"; the file layout joins and cleans paths
 * like Go's path.Join, so "" and "." both give "ltx/0/".
 */
export function levelDir(kind: LayoutKind, prefix: string, level: number): string {
  checkLevel(level);
  if (kind === "s3") return `${prefix}/${level.toString(16).padStart(4, "0")}/`;
  return `${fileBase(prefix)}${level}/`;
}

/** Key of one LTX file: `<levelDir><min %016x>-<max %016x>.ltx`. */
export function ltxKey(
  kind: LayoutKind,
  prefix: string,
  level: number,
  minTXID: number,
  maxTXID: number,
): string {
  return `${levelDir(kind, prefix, level)}${hex16(minTXID)}-${hex16(maxTXID)}.ltx`;
}

// "<path>/ltx/" for the path.Join layouts; a leading "./" never survives Go's Clean.
function fileBase(prefix: string): string {
  return `${posix.join(prefix, "ltx")}/`;
}

const S3_REST = /^([0-9a-f]{4})\/([0-9a-f]{16})-([0-9a-f]{16})\.ltx$/;
const FILE_REST = /^(0|[1-9][0-9]*)\/([0-9a-f]{16})-([0-9a-f]{16})\.ltx$/;

/**
 * Parse an LTX key written under `prefix` in the given layout. Strict like Litestream: exactly
 * 16 lower-case hex digits per TXID, the canonical level directory, level 0..9. Any other key
 * (and a TXID above 2^53-1, which a number cannot hold) gives undefined.
 */
export function parseLtxKey(
  kind: LayoutKind,
  prefix: string,
  key: string,
): { level: number; minTXID: number; maxTXID: number } | undefined {
  const base = kind === "s3" ? `${prefix}/` : fileBase(prefix);
  if (!key.startsWith(base)) return undefined;
  const m = (kind === "s3" ? S3_REST : FILE_REST).exec(key.slice(base.length));
  if (m === null) return undefined;
  const level = parseInt(m[1], kind === "s3" ? 16 : 10);
  if (level > MAX_LEVEL) return undefined;
  const minTXID = parseInt(m[2], 16);
  const maxTXID = parseInt(m[3], 16);
  if (!Number.isSafeInteger(minTXID) || !Number.isSafeInteger(maxTXID)) return undefined;
  return { level, minTXID, maxTXID };
}

/**
 * Split any LTX key of the given layout into its database prefix and file fields, when the
 * prefix is not known in advance (listing a whole bucket). Same strictness as parseLtxKey.
 */
export function splitLtxKey(
  kind: LayoutKind,
  key: string,
): { prefix: string; level: number; minTXID: number; maxTXID: number } | undefined {
  const parts = key.split("/");
  const tail = kind === "s3" ? 2 : 3;
  if (parts.length < tail || (kind === "file" && parts[parts.length - 3] !== "ltx")) {
    return undefined;
  }
  const prefix = parts.slice(0, parts.length - tail).join("/");
  const parsed = parseLtxKey(kind, prefix, key);
  return parsed && { prefix, ...parsed };
}

/**
 * `{"litestream-timestamp": ...}` for a Unix time in ms, formatted like Go's RFC3339Nano in UTC:
 * trailing zero fractions dropped ("2023-11-14T22:13:20Z", "2023-11-14T22:13:20.12Z").
 */
export function timestampMeta(ms: number): Record<string, string> {
  return { [TIMESTAMP_META_KEY]: formatTimestamp(ms) };
}

/** Format a Unix time in ms as Go's RFC3339Nano in UTC (years 0000..9999 only). */
export function formatTimestamp(ms: number): string {
  const d = new Date(ms);
  if (!Number.isInteger(ms) || isNaN(d.getTime())) {
    throw new RangeError(`timestamp must be an integer number of ms, got ${ms}`);
  }
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) throw new RangeError(`timestamp year ${y} is outside 0000..9999`);
  const iso = d.toISOString(); // "YYYY-MM-DDTHH:MM:SS.mmmZ" for years 0..9999
  const frac = iso.slice(20, 23).replace(/0+$/, "");
  return `${iso.slice(0, 19)}${frac === "" ? "" : "." + frac}Z`;
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-](\d{2}):(\d{2}))$/;

/**
 * Parse an RFC 3339 timestamp (fraction up to nanoseconds, "Z" or a numeric offset) into Unix
 * ms, truncating sub-millisecond digits like Go's UnixMilli. Undefined when absent or invalid.
 */
export function parseTimestampMeta(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = RFC3339.exec(v);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return undefined;
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate(); // leap year for Feb
  if (day < 1 || day > daysInMonth) return undefined;
  if (month === 2 && day === 29 && !isLeap(year)) return undefined;
  let offsetMin = 0;
  if (m[8] !== "Z") {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (m[8][0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // Date.UTC would map years 0..99 to 1900..1999
  d.setUTCHours(hour, minute, second, 0);
  const fracMs = m[7] === undefined ? 0 : Math.floor(Number(m[7].padEnd(9, "0")) / 1e6);
  return d.getTime() + fracMs - offsetMin * 60_000;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}
