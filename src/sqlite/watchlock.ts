/**
 * The single-watcher lock: one walrust replicates a database file at a time, keyed by the file
 * itself (device and inode), not by the path it was reached through, so a symlink or a hard link
 * to a watched database is refused too.
 *
 * The lock is a BSD `flock` on walrust's long-lived read descriptor of the database (DbFileReader).
 * On Linux's local filesystems flock locks and the POSIX record locks SQLite uses are independent,
 * so it never disturbs SQLite; the kernel drops it when the process dies, even on kill -9. Only
 * synchronous calls are used: Deno's async FsFile calls run on a duplicate descriptor and close it,
 * which would drop SQLite's POSIX locks (pagefile.ts).
 */

import { ConfigError } from "../errors.ts";
import type { DbFileReader } from "./pagefile.ts";

/** `dev:ino` of a file: what the lock is keyed by. */
export function fileKey(st: Deno.FileInfo): string {
  return `${st.dev}:${st.ino}`;
}

/** Files this process holds the watcher lock on (flock does not conflict within one descriptor). */
const held = new Map<string, DbFileReader>();

/** A held watcher lock. */
export interface WatchLock {
  /** `dev:ino` of the locked database file. */
  readonly key: string;
  /** Give the lock up (the descriptor stays open: closing it would drop SQLite's locks). */
  release(): void;
}

/**
 * Take the watcher lock on the database behind `reader` (exclusive, non-blocking). Throws
 * ConfigError (exit 2) when another walrust process, or another replication in this one, holds it.
 */
export function lockWatched(reader: DbFileReader, dbPath: string): WatchLock {
  const key = fileKey(reader.file.statSync());
  if (held.has(key) || !reader.file.tryLockSync(true)) {
    throw new ConfigError(
      `another walrust process is already replicating ${dbPath} (the same file, perhaps under ` +
        "another name); stop it first",
    );
  }
  held.set(key, reader);
  let released = false;
  return {
    key,
    release() {
      if (released) return;
      released = true;
      held.delete(key);
      reader.file.unlockSync();
    },
  };
}

/**
 * True when a walrust process (this one included) holds the watcher lock on the file at `path`;
 * false when nothing is there. It opens the file for a moment when another process might hold
 * the lock: never call it on a database this process itself has open through SQLite (closing
 * that descriptor would drop SQLite's locks); a database this process replicates is answered
 * from memory without opening it.
 */
export function isWatched(path: string): boolean {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (!st.isFile) return false;
  if (held.has(fileKey(st))) return true;
  const f = Deno.openSync(path, { read: true });
  try {
    if (!f.tryLockSync(false)) return true;
    f.unlockSync();
    return false;
  } finally {
    f.close();
  }
}
