/**
 * Descriptors a watch needs, checked against the soft `ulimit -n` at start: running out later
 * fails databases one by one, long after the start looked fine.
 */
import { ConfigError } from "../errors.ts";

/** Descriptors one replicated database holds (measured: /proc/<pid>/fd grows by 7 per database). */
export const FDS_PER_DATABASE = 7;
/** The runtime, the replica, the metrics server and uploads in flight. */
const BASE_FDS = 64;

/** The soft and hard open-file limits of this process, from /proc/self/limits; undefined if unknown. */
export function openFileLimits(text?: string): { soft: number; hard: number } | undefined {
  try {
    text ??= Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (!m) return undefined;
  const n = (s: string) => (s === "unlimited" ? Infinity : Number(s));
  return { soft: n(m[1]), hard: n(m[2]) };
}

/** Refuse (exit 2, with the fix) a start whose databases cannot all be held open. */
export function checkFdLimit(databases: number, limits = openFileLimits()): void {
  if (!limits) return;
  const need = BASE_FDS + databases * FDS_PER_DATABASE;
  if (limits.soft >= need) return;
  const raise = limits.hard >= need
    ? `run 'ulimit -n ${need}' first (the hard limit allows ${limits.hard})`
    : `raise the hard limit too (LimitNOFILE=${need} in the systemd unit, or limits.conf)`;
  throw new ConfigError(
    `${databases} databases need about ${need} open files (${FDS_PER_DATABASE} each), but ` +
      `'ulimit -n' is ${limits.soft}: ${raise}`,
  );
}
