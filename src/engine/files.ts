/**
 * The files of one watched database, each opened once and closed only after its path stopped
 * naming it (DESIGN.md §3; docs/decisions.md "Files replaced under a running watcher"): the
 * single-watcher lock, the two SQLite connections (holding the read lock), walrust's own read
 * descriptors on the database and the `-wal`, and the identity (device, inode) of each path, so
 * that a file deleted or replaced under us is noticed instead of read stale.
 */
import { SqliteHandle } from "../sqlite/handle.ts";
import { DbFileReader, sameFile } from "../sqlite/pagefile.ts";
import { lockWatched, type WatchLock } from "../sqlite/watchlock.ts";
import { DatabaseError } from "../errors.ts";

/** What changed under a path since the files were opened. */
export type FileChange =
  | "database-gone"
  | "database-replaced"
  | "wal-replaced"
  | "shm-replaced";

/**
 * Every set this process opened and has not closed, in use or not: kept reachable (a collected
 * connection would close itself). Only {@link WatchedFiles.sweep} closes any.
 */
const all = new Set<WatchedFiles>();
/** Sets released by a stopped replication, by `dev:ino`: reused by the next one of that file. */
const idle = new Map<string, WatchedFiles>();

/** The held files of one database. */
export class WatchedFiles {
  private constructor(
    readonly dbPath: string,
    readonly h: SqliteHandle,
    readonly db: DbFileReader,
    readonly wal: Deno.FsFile,
    public lock: WatchLock,
    readonly pageSize: number,
    /** The `-shm` as SQLite opened it (walrust never opens it: see pagefile.ts). */
    readonly shm: Deno.FileInfo,
  ) {
    this.#dbId = db.file.statSync();
    this.#walId = wal.statSync();
    all.add(this);
  }

  #dbId: Deno.FileInfo;
  #walId: Deno.FileInfo;
  /** A replication uses the set (opened or reused, not yet released, retired or disposed). */
  #inUse = true;

  /**
   * Lock the database, open the SQLite connections (WAL mode required), create Litestream's
   * tables if missing and take the read lock, then open the `-wal` and note every identity.
   */
  static open(dbPath: string, busyTimeoutMs: number): WatchedFiles {
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(dbPath);
    } catch {
      throw new DatabaseError(`database file not found: ${dbPath}`);
    }
    if (!st.isFile) throw new DatabaseError(`not a database file: ${dbPath}`);
    const reused = idle.get(`${st.dev}:${st.ino}`);
    if (reused && reused.dbPath === dbPath && reused.check() === undefined) {
      const lock = lockWatched(reused.db, dbPath);
      idle.delete(lock.key);
      reused.lock = lock;
      reused.h.beginReadLock();
      reused.#inUse = true;
      return reused;
    }
    const db = DbFileReader.openSync(dbPath);
    const lock = lockWatched(db, dbPath);
    try {
      const h = SqliteHandle.open(dbPath, { busyTimeoutMs });
      const pageSize = h.pageSize();
      h.ensureLitestreamTables();
      h.beginReadLock();
      // The read transaction made SQLite open (or create) both files.
      const wal = Deno.openSync(`${dbPath}-wal`, { read: true });
      const shm = Deno.statSync(`${dbPath}-shm`);
      return new WatchedFiles(dbPath, h, db, wal, lock, pageSize, shm);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** Compare every path with the file held (stat vs fstat: device, inode, link count). */
  check(): FileChange | undefined {
    const path = statOrUndefined(this.dbPath);
    if (!path) return "database-gone";
    const held = this.db.file.statSync();
    if (!sameFile(path, held) || held.nlink === 0) return "database-replaced";
    const wal = statOrUndefined(`${this.dbPath}-wal`);
    const heldWal = this.wal.statSync();
    if (!wal || !sameFile(wal, heldWal) || heldWal.nlink === 0) return "wal-replaced";
    const shm = statOrUndefined(`${this.dbPath}-shm`);
    if (!shm || !sameFile(shm, this.shm)) return "shm-replaced";
    return undefined;
  }

  /** The cheap part of check(), for the idle poll: path stats only, no descriptor touched. */
  pathsMoved(): boolean {
    const db = statOrUndefined(this.dbPath);
    const wal = statOrUndefined(`${this.dbPath}-wal`);
    const shm = statOrUndefined(`${this.dbPath}-shm`);
    return !db || !wal || !shm || !sameFile(db, this.#dbId) || !sameFile(wal, this.#walId) ||
      !sameFile(shm, this.shm);
  }

  /**
   * A replication of this file stopped: give up the read lock and the watcher lock, keep the
   * connections and descriptors open (closing them could drop SQLite's locks or delete the WAL)
   * for the next replication of the same file in this process to reuse.
   */
  release(): void {
    this.h.releaseReadLock();
    this.lock.release();
    this.#inUse = false;
    idle.set(this.lock.key, this);
  }

  /**
   * Stop using this set (its paths name other files now): release the lock and keep every
   * descriptor and connection open. Closing a connection on a replaced database would make SQLite
   * checkpoint the OLD WAL and delete the `-wal` BY PATH, i.e. the new database's.
   */
  retire(): void {
    this.lock.release();
    this.#inUse = false;
  }

  /**
   * The replication of this set ended for good (its database was deleted, or it failed): give
   * the locks up, then close whatever {@link sweep} finds safe to close.
   */
  dispose(): void {
    this.lock.release();
    try {
      this.h.releaseReadLock();
    } catch {
      // A failed set may not answer; the sweep closes it or keeps it, as its files say.
    }
    this.#inUse = false;
    WatchedFiles.sweep();
  }

  /**
   * Close the sets nothing uses whose database path is gone or names another file now, unless a
   * set in use holds the same database or `-wal` inode: closing our descriptors would drop this
   * process's POSIX locks on that inode, the ones SQLite's connections of the set in use rely on.
   * SQLite closes a moved database's connections without a checkpoint and without deleting the
   * `-wal` by path (see SqliteHandle.closeMoved), so the file at the path now is untouched.
   * A deleted tenant database thereby gives its 7 descriptors back. Returns how many closed.
   */
  static sweep(): number {
    const inUse = [...all].filter((s) => s.#inUse);
    const shares = (a: WatchedFiles, b: WatchedFiles) =>
      sameFile(a.#dbId, b.#dbId) || sameFile(a.#walId, b.#walId);
    const closed = new Set<DbFileReader>();
    let n = 0;
    for (const s of all) {
      if (s.#inUse || !s.#moved() || inUse.some((u) => shares(u, s))) continue;
      all.delete(s);
      if (idle.get(s.lock.key) === s) idle.delete(s.lock.key);
      s.lock.release();
      s.h.closeMoved();
      s.wal.close();
      // Sets of one inode share its reader: it closes once, after the last of them.
      if (![...all].some((o) => o.db === s.db) && !closed.has(s.db)) {
        closed.add(s.db);
        s.db.closeMoved();
      }
      n++;
    }
    return n;
  }

  /** The database path is gone or names another file than the one held. */
  #moved(): boolean {
    const path = statOrUndefined(this.dbPath);
    return !path || !sameFile(path, this.#dbId);
  }
}

function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}
