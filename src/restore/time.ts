/** Restore targets: parse `--txid` and `--point-in-time` into one Target. */

import { ConfigError } from "../errors.ts";

/** What a restore aims at: the newest state, an exact TXID, or the state just before a time. */
export type Target =
  | { kind: "latest" }
  | { kind: "txid"; txid: number }
  | { kind: "time"; ms: number };

/** Parse the restore flags into a Target; `now` (ms) anchors relative times like `-15m`. */
export function parseTarget(
  opts: { txid?: string; pointInTime?: string },
  now: number = Date.now(),
): Target {
  if (opts.txid !== undefined && opts.pointInTime !== undefined) {
    throw new ConfigError("--txid and --point-in-time cannot be used together");
  }
  if (opts.txid !== undefined) return { kind: "txid", txid: parseTxid(opts.txid) };
  if (opts.pointInTime !== undefined) {
    return { kind: "time", ms: parsePointInTime(opts.pointInTime, now) };
  }
  return { kind: "latest" };
}

/**
 * Parse a TXID: exactly 16 hex digits (Litestream's `-txid` form, checked first so that
 * `0000000000000010` means 16, as in key names), `0x`-prefixed hex, or decimal.
 */
export function parseTxid(s: string): number {
  const v = s.trim();
  let n: bigint | undefined;
  if (/^[0-9a-fA-F]{16}$/.test(v)) n = BigInt("0x" + v);
  else if (/^0[xX][0-9a-fA-F]{1,16}$/.test(v)) n = BigInt(v.toLowerCase());
  else if (/^[0-9]{1,20}$/.test(v)) n = BigInt(v);
  if (n === undefined) {
    throw new ConfigError(
      `invalid TXID ${JSON.stringify(s)}: use decimal, 0x-prefixed hex, or 16 hex digits`,
    );
  }
  if (n < 1n || n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConfigError(
      `invalid TXID ${JSON.stringify(s)}: must be between 1 and ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  return Number(n);
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;
const RELATIVE = /^-(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Parse an RFC 3339 time or a relative `-1h30m` into epoch ms (see roundUpMs for fractions). */
export function parsePointInTime(s: string, now: number = Date.now()): number {
  const v = s.trim();
  const rel = RELATIVE.exec(v);
  if (rel && v !== "-") {
    const [d, h, m, sec] = rel.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
    return now - (((d * 24 + h) * 60 + m) * 60 + sec) * 1000;
  }
  const ms = parseRfc3339(v);
  if (ms === undefined) {
    throw new ConfigError(
      `invalid point in time ${
        JSON.stringify(s)
      }: use RFC 3339 (2024-01-02T03:04:05Z) or a relative time like -15m, -2h, -1d, -1h30m`,
    );
  }
  return ms;
}

/** Parse RFC 3339 into epoch ms, or undefined if malformed or out of range. */
function parseRfc3339(v: string): number | undefined {
  const m = RFC3339.exec(v);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) {
    return undefined;
  }
  // setUTCFullYear, unlike Date.UTC, keeps years 0..99 literal.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // 31 Feb rolls into March; a real calendar day survives the round trip.
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month - 1) return undefined;
  const base = date.getTime() + ((hour * 60 + minute) * 60 + second) * 1000;
  let offsetMin = 0;
  const zone = m[8];
  if (zone !== "Z" && zone !== "z") {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (zone[0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  return base - offsetMin * 60_000 + roundUpMs(m[7]);
}

/**
 * Fraction digits to whole ms, rounding up: LTX timestamps are whole ms and a file counts only
 * if `ts < T`, which for integer ts is exactly `ts < ceil(T)`; so nanosecond targets stay exact.
 */
function roundUpMs(frac: string | undefined): number {
  if (!frac) return 0;
  const ms = Number(frac.slice(0, 3).padEnd(3, "0"));
  return /[1-9]/.test(frac.slice(3)) ? ms + 1 : ms;
}
