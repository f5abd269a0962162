/** Durations and byte sizes as written in walrust.toml and on the command line. */

import { ConfigError } from "../errors.ts";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)/y;
const PLAIN_NUMBER = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*$/;

/**
 * Milliseconds for a duration, or undefined when `s` is not one. Numbers (and numeric strings,
 * which env expansion produces) are seconds; strings may chain units: "500ms", "1h30m", "0.5s".
 */
export function durationMs(s: string | number): number | undefined {
  if (typeof s === "number") return Number.isFinite(s) && s >= 0 ? Math.round(s * 1000) : undefined;
  const plain = PLAIN_NUMBER.exec(s);
  if (plain) return Math.round(Number(plain[1]) * 1000);
  const text = s.trim();
  if (text === "") return undefined;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
    pos = DURATION_PART.lastIndex;
    while (text[pos] === " ") pos++;
  }
  return Number.isSafeInteger(Math.round(total)) ? Math.round(total) : undefined;
}

/** Parse a duration (numbers are seconds) to milliseconds; ConfigError naming `what` if invalid. */
export function parseDurationMs(s: string | number, what: string): number {
  const ms = durationMs(s);
  if (ms === undefined) {
    throw new ConfigError(
      `${what}: expected a duration, got ${
        JSON.stringify(s)
      } (use seconds like 0.5, or "500ms", "5s", "1m", "2h", "1d", "1h30m")`,
    );
  }
  return ms;
}

// Decimal units are powers of 1000 and binary units powers of 1024, as their names say. Bare
// "K"/"M"/"G" are rejected because tools disagree on what they mean.
const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};
const BYTE_SIZE = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** Bytes for a size, or undefined when `s` is not one: 5368709120, "5GiB", "500MB", "1KB". */
export function byteSize(s: string | number): number | undefined {
  if (typeof s === "number") return Number.isSafeInteger(s) && s >= 0 ? s : undefined;
  const m = BYTE_SIZE.exec(s);
  if (!m) return undefined;
  const unit = BYTE_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Parse a byte size to a number of bytes; ConfigError naming `what` if invalid. */
export function parseByteSize(s: string | number, what: string): number {
  const n = byteSize(s);
  if (n === undefined) {
    throw new ConfigError(
      `${what}: expected a size in bytes, got ${
        JSON.stringify(s)
      } (use a whole number of bytes, or "64MiB", "500MB", "5GiB")`,
    );
  }
  return n;
}
