/** TXID text forms and LTX file names (spec §1.14): `%016x-%016x.ltx`, lower-case hex. */

const NAME_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$/;
const TXID_RE = /^[0-9a-fA-F]{16}$/;

/** A 64-bit value as 16 lower-case hex digits (TXIDs, checksums, node IDs; negatives wrap). */
export function formatHex64(v: bigint | number): string {
  return BigInt.asUintN(64, BigInt(v)).toString(16).padStart(16, "0");
}

/** A TXID as 16 lower-case hex digits. */
export function formatTXID(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`TXID ${n}: not a safe u64`);
  return formatHex64(n);
}

/**
 * Parse 16 hex digits (either case, like Litestream's ParseTXID) into a TXID.
 * Throws RangeError for anything else or a value beyond 2^53-1.
 */
export function parseTXID(s: string): number {
  if (!TXID_RE.test(s)) throw new RangeError(`TXID ${JSON.stringify(s)}: want 16 hex digits`);
  const v = BigInt("0x" + s);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`TXID ${s}: beyond 2^53-1`);
  return Number(v);
}

/** The file name Litestream gives an LTX file covering `min..max`. */
export function formatLtxName(min: number, max: number): string {
  return `${formatTXID(min)}-${formatTXID(max)}.ltx`;
}

/**
 * Parse an LTX file name; undefined unless it matches Litestream's exact lower-case pattern
 * and both TXIDs are safe integers.
 */
export function parseLtxName(name: string): { minTXID: number; maxTXID: number } | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const min = BigInt("0x" + m[1]);
  const max = BigInt("0x" + m[2]);
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (min > limit || max > limit) return undefined;
  return { minTXID: Number(min), maxTXID: Number(max) };
}
