/**
 * The SQLite connections walrust holds on a watched database (node:sqlite; the only module that
 * imports it). Litestream's technique: `_litestream_seq`/`_litestream_lock` tables, a read
 * transaction held open so no other process can restart the WAL past what we copied, and
 * checkpoints run by us with that read lock briefly released.
 *
 * Two connections per database, both with wal_autocheckpoint=0: `reader` holds the read lock and
 * runs checkpoints (a checkpoint must not run inside a transaction); `writer` bumps the seq row,
 * creates the tables and holds the optional write barrier, so those never need the read lock
 * released.
 *
 * Never close a watched connection: node:sqlite cannot set SQLITE_FCNTL_PERSIST_WAL, so closing
 * the last connection checkpoints and DELETES the WAL. A DatabaseSync that is garbage-collected
 * closes itself, so every open handle is kept reachable in `live` for the life of the process;
 * a process that exits without closing leaves the WAL for SQLite's recovery, which is the plan.
 * The one exception is a database whose file is no longer at its path (closeMoved).
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { DatabaseError } from "../errors.ts";

/** wal_checkpoint modes. */
export type CheckpointMode = "PASSIVE" | "FULL" | "RESTART" | "TRUNCATE";

/** The row PRAGMA wal_checkpoint returns. */
export interface CheckpointResult {
  /** 1 when the checkpoint could not finish (readers or writers in the way), else 0. */
  busy: number;
  /** Frames in the WAL (-1 when not in WAL mode). */
  log: number;
  /** Frames copied back into the database file. */
  checkpointed: number;
}

/** Options for SqliteHandle.open. */
export interface OpenOptions {
  /** How long SQLite waits on a lock before SQLITE_BUSY; default 1000 ms (Litestream's). */
  busyTimeoutMs?: number;
}

const MODES: ReadonlySet<string> = new Set(["PASSIVE", "FULL", "RESTART", "TRUNCATE"]);

/** Keeps every watched connection reachable: a collected DatabaseSync would close itself. */
const live = new Set<SqliteHandle>();

/** The long-lived connections on one watched WAL-mode database. */
export class SqliteHandle {
  #readLock = false;
  #barrier = false;
  readonly #reader: DatabaseSync;
  readonly #writer: DatabaseSync;
  #countSeq?: StatementSync;
  #bumpSeq?: StatementSync;

  private constructor(
    /** The database path as given to open(). */
    readonly path: string,
    reader: DatabaseSync,
    writer: DatabaseSync,
  ) {
    this.#reader = reader;
    this.#writer = writer;
  }

  /**
   * Open a WAL-mode database (never creating it) with a busy timeout and wal_autocheckpoint=0.
   * Throws DatabaseError when the file is missing, unreadable or not in WAL mode (walrust never
   * converts: the user runs `PRAGMA journal_mode=WAL`).
   */
  static open(path: string, opts: OpenOptions = {}): SqliteHandle {
    const timeout = opts.busyTimeoutMs ?? 1000;
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new DatabaseError(`database ${path} does not exist`, { cause: err });
      }
      throw new DatabaseError(`database ${path}: ${messageOf(err)}`, { cause: err });
    }
    if (!info.isFile) throw new DatabaseError(`database ${path} is not a regular file`);

    const writer = sqlite(path, "open", () => new DatabaseSync(path, { timeout }));
    let mode: string;
    try {
      mode = String(sqlite(path, "read journal_mode", () => pragma(writer, "journal_mode")));
    } catch (err) {
      writer.close(); // not known to be in WAL mode, nothing to lose
      throw err;
    }
    if (mode.toLowerCase() !== "wal") {
      writer.close(); // not in WAL mode: closing cannot delete a WAL
      throw new DatabaseError(
        `database ${path} is in journal_mode=${mode}, not WAL; walrust needs WAL mode. ` +
          `Fix: sqlite3 ${JSON.stringify(path)} "PRAGMA journal_mode=WAL;"`,
      );
    }
    const reader = sqlite(path, "open", () => new DatabaseSync(path, { timeout }));
    const handle = new SqliteHandle(path, reader, writer);
    live.add(handle);
    sqlite(path, "set wal_autocheckpoint", () => {
      writer.exec("PRAGMA wal_autocheckpoint=0");
      reader.exec("PRAGMA wal_autocheckpoint=0");
      // Our connections read one tiny table: a small page cache is plenty per database.
      writer.exec("PRAGMA cache_size=-64");
      reader.exec("PRAGMA cache_size=-64");
    });
    return handle;
  }

  /** The current journal mode, lower case ("wal"). */
  journalMode(): string {
    return String(
      sqlite(this.path, "read journal_mode", () => pragma(this.#writer, "journal_mode")),
    )
      .toLowerCase();
  }

  /** The database page size in bytes. */
  pageSize(): number {
    return Number(sqlite(this.path, "read page_size", () => pragma(this.#writer, "page_size")));
  }

  /** Create `_litestream_seq` and `_litestream_lock` if missing (Litestream's schema). */
  ensureLitestreamTables(): void {
    this.#noBarrier("create the _litestream tables");
    sqlite(this.path, "create _litestream tables", () =>
      this.#writer.exec(
        "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);" +
          "CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
      ));
  }

  /** Commit one row change (seq + 1) so the WAL gets a new frame; does not touch the read lock. */
  bumpSeq(): void {
    this.#noBarrier("bump _litestream_seq");
    sqlite(this.path, "bump _litestream_seq", () => this.#bumpStatement().run());
  }

  #bumpStatement(): StatementSync {
    return this.#bumpSeq ??= this.#writer.prepare(
      "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) " +
        "ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
    );
  }

  /**
   * `PRAGMA data_version` of the writer connection. It changes when another connection (another
   * process, or our reader) commits, and also after a RESTART or TRUNCATE checkpoint (the WAL
   * index header changes); our own bumps through the writer do not change it.
   */
  dataVersion(): number {
    return Number(
      sqlite(this.path, "read data_version", () => pragma(this.#writer, "data_version")),
    );
  }

  /**
   * Begin a read transaction and read `_litestream_seq`, pinning a WAL read mark so no other
   * connection can restart or truncate the WAL past it. No-op when already held.
   * Needs ensureLitestreamTables() first.
   */
  beginReadLock(): void {
    if (this.#readLock) return;
    sqlite(this.path, "take read lock", () => {
      this.#reader.exec("BEGIN");
      try {
        this.#countSeq ??= this.#reader.prepare("SELECT COUNT(1) FROM _litestream_seq");
        this.#countSeq.get();
      } catch (err) {
        this.#reader.exec("ROLLBACK");
        throw err;
      }
    });
    this.#readLock = true;
  }

  /** End the read transaction (ROLLBACK). No-op when not held. */
  releaseReadLock(): void {
    if (!this.#readLock) return;
    this.#readLock = false;
    sqlite(this.path, "release read lock", () => this.#reader.exec("ROLLBACK"));
  }

  /** True while the read transaction is open. */
  holdsReadLock(): boolean {
    return this.#readLock;
  }

  /**
   * Run `PRAGMA wal_checkpoint(mode)`: releases the read lock, checkpoints, and re-takes the read
   * lock afterwards (always, also when the checkpoint fails). SQLITE_BUSY shows as busy=1.
   */
  checkpoint(mode: CheckpointMode): CheckpointResult {
    if (!MODES.has(mode)) throw new DatabaseError(`invalid checkpoint mode ${String(mode)}`);
    this.releaseReadLock();
    let result: CheckpointResult | undefined;
    let failure: unknown;
    try {
      result = sqlite(this.path, `checkpoint ${mode}`, () => {
        const row = this.#reader.prepare(`PRAGMA wal_checkpoint(${mode})`).get();
        return {
          busy: Number(row?.busy),
          log: Number(row?.log),
          checkpointed: Number(row?.checkpointed),
        };
      });
    } catch (err) {
      failure = err;
    }
    try {
      this.beginReadLock();
    } catch (err) {
      failure ??= err;
    }
    if (failure !== undefined || result === undefined) throw failure;
    return result;
  }

  /**
   * `PRAGMA wal_checkpoint(TRUNCATE)` on the writer connection, not waiting for any lock (busy
   * timeout 0 for the call). Safe while the reader holds its read lock: SQLite truncates only a
   * WAL that is wholly backfilled with no reader inside it, and a read lock taken when every
   * frame was copied blocks the backfill of anything newer. Call outside the write barrier.
   */
  truncateWalIfIdle(timeoutMs: number): CheckpointResult {
    this.#noBarrier("truncate the WAL");
    return sqlite(this.path, "checkpoint TRUNCATE", () => {
      this.#writer.exec("PRAGMA busy_timeout=0");
      try {
        const row = this.#writer.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
        return {
          busy: Number(row?.busy),
          log: Number(row?.log),
          checkpointed: Number(row?.checkpointed),
        };
      } finally {
        this.#writer.exec(`PRAGMA busy_timeout=${Math.max(0, Math.floor(timeoutMs))}`);
      }
    });
  }

  /**
   * Take the database write lock (BEGIN IMMEDIATE on the writer connection; Litestream inserts an
   * uncommitted `_litestream_lock` row for the same effect), so no application commit can land
   * until releaseWriteBarrier() or commitWriteBarrier(). Blocks writers: keep it short. Use with
   * PASSIVE checkpoints only (RESTART and TRUNCATE wait for the write lock).
   */
  beginWriteBarrier(): void {
    if (this.#barrier) return;
    sqlite(this.path, "take write barrier", () => this.#writer.exec("BEGIN IMMEDIATE"));
    this.#barrier = true;
  }

  /** Roll back the write barrier. No-op when not held. */
  releaseWriteBarrier(): void {
    if (!this.#barrier) return;
    this.#barrier = false;
    sqlite(this.path, "release write barrier", () => this.#writer.exec("ROLLBACK"));
  }

  /**
   * Bump `_litestream_seq` inside the barrier and COMMIT: one commit frame written while nobody
   * else could write (if it restarts the WAL, every older frame was seen under the barrier).
   * The barrier is released either way; on failure it is rolled back and the error thrown.
   */
  commitWriteBarrier(): void {
    if (!this.#barrier) {
      throw new DatabaseError(`database ${this.path}: commitWriteBarrier without a barrier`);
    }
    this.#barrier = false;
    sqlite(this.path, "commit write barrier", () => {
      try {
        this.#bumpStatement().run();
        this.#writer.exec("COMMIT");
      } catch (err) {
        if (this.#writer.isTransaction) this.#writer.exec("ROLLBACK");
        throw err;
      }
    });
  }

  /** True while the write barrier is held. */
  holdsWriteBarrier(): boolean {
    return this.#barrier;
  }

  /** Writes on the writer connection while the barrier is open would be rolled back with it. */
  #noBarrier(what: string): void {
    if (this.#barrier) {
      throw new DatabaseError(
        `database ${this.path}: cannot ${what} while the write barrier is held`,
      );
    }
  }

  /**
   * Close both connections of a database whose file was deleted or replaced under its path (the
   * caller checks: WatchedFiles.sweep). SQLite then neither checkpoints nor deletes the `-wal`:
   * on close it asks the VFS whether the database file moved (SQLITE_FCNTL_HAS_MOVED: the path
   * is gone or names another inode) and skips both, so whatever now lives at the path is left
   * alone (tests/engine/files_close_test.ts proves it with a new database there).
   */
  closeMoved(): void {
    live.delete(this);
    for (const db of [this.#reader, this.#writer]) {
      try {
        db.close();
      } catch {
        // Closing is all that is left to do with it; a failure changes nothing on disk.
      }
    }
    this.#readLock = false;
    this.#barrier = false;
  }

  /**
   * Close both connections. UNSAFE for a watched database: if they are the last connections,
   * SQLite checkpoints and deletes the WAL. Tests only.
   */
  closeUnsafeForTests(): void {
    live.delete(this);
    this.#readLock = false;
    this.#barrier = false;
    this.#reader.close();
    this.#writer.close();
  }
}

/** A read-only connection for a file nobody else writes (a restore's temp file, a copy). */
export class ReadOnlyDatabase {
  readonly #db: DatabaseSync;
  private constructor(readonly path: string, db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Open `path` read-only and immutable: no locks, no -wal/-shm files created, any -wal file
   * ignored. Never use it on a live or watched database.
   */
  static open(path: string): ReadOnlyDatabase {
    try {
      Deno.statSync(path);
    } catch (err) {
      throw new DatabaseError(`database ${path}: ${messageOf(err)}`, { cause: err });
    }
    const url = pathToFileURL(path);
    url.search = "?immutable=1";
    const db = sqlite(path, "open read-only", () => new DatabaseSync(url, { readOnly: true }));
    return new ReadOnlyDatabase(path, db);
  }

  /** `PRAGMA integrity_check` rows; ["ok"] when the database is sound. */
  integrityCheck(): string[] {
    return sqlite(
      this.path,
      "integrity_check",
      () => this.#db.prepare("PRAGMA integrity_check").all().map((r) => String(r.integrity_check)),
    );
  }

  /** The page size and page count SQLite sees. */
  stats(): { pageSize: number; pageCount: number } {
    return sqlite(this.path, "read page_count", () => ({
      pageSize: Number(pragma(this.#db, "page_size")),
      pageCount: Number(pragma(this.#db, "page_count")),
    }));
  }

  /** Close the connection (safe: nothing else uses this file). */
  close(): void {
    this.#db.close();
  }
}

/** Open a file nobody else writes read-only (see ReadOnlyDatabase.open). */
export function openReadOnly(path: string): ReadOnlyDatabase {
  return ReadOnlyDatabase.open(path);
}

/** Run `PRAGMA integrity_check` on a file nobody else writes; ["ok"] when fine. */
export function integrityCheck(path: string): string[] {
  const db = ReadOnlyDatabase.open(path);
  try {
    return db.integrityCheck();
  } finally {
    db.close();
  }
}

function pragma(db: DatabaseSync, name: string): unknown {
  const row = db.prepare(`PRAGMA ${name}`).get();
  return row?.[name];
}

/** Run a SQLite call, wrapping any failure in DatabaseError naming the path and the step. */
function sqlite<T>(path: string, step: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof DatabaseError) throw err;
    throw new DatabaseError(`database ${path}: ${step}: ${messageOf(err)}`, { cause: err });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The follower's connection on its local copy (a rollback-journal database that readers open):
 * held for the life of the process (closing it, or any other descriptor of ours on the file,
 * would drop this process's POSIX locks), used only to take SQLite's own EXCLUSIVE lock around
 * each batch walrust writes into the file.
 */
export class LocalCopyLock {
  readonly #db: DatabaseSync;
  private constructor(readonly path: string, db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Open `path`, switching it to rollback-journal mode (`journal_mode=DELETE`) and rolling back a
   * hot journal a crash left (SQLite does that on the first read).
   */
  static open(path: string, busyTimeoutMs: number): LocalCopyLock {
    const db = sqlite(path, "open", () => new DatabaseSync(path, { timeout: busyTimeoutMs }));
    const mode = sqlite(
      path,
      "set journal_mode=DELETE",
      () => db.prepare("PRAGMA journal_mode=DELETE").get()?.journal_mode,
    );
    if (String(mode).toLowerCase() !== "delete") {
      throw new DatabaseError(`database ${path}: could not switch to rollback-journal mode`);
    }
    sqlite(path, "read", () => db.prepare("SELECT count(*) FROM sqlite_master").get());
    const lock = new LocalCopyLock(path, db);
    liveLocks.add(lock);
    return lock;
  }

  /**
   * Run `fn` holding SQLite's EXCLUSIVE lock on the file (readers wait in their busy handler),
   * then release it. `fn` writes through walrust's own descriptor; nothing is written through
   * this connection, so the release leaves no journal of its own.
   */
  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    sqlite(this.path, "BEGIN EXCLUSIVE", () => this.#db.exec("BEGIN EXCLUSIVE"));
    try {
      return await fn();
    } finally {
      sqlite(this.path, "release the exclusive lock", () => this.#db.exec("ROLLBACK"));
    }
  }

  /** `PRAGMA integrity_check` through this connection (between batches). */
  integrityCheck(): string[] {
    return sqlite(
      this.path,
      "integrity_check",
      () => this.#db.prepare("PRAGMA integrity_check").all().map((r) => String(r.integrity_check)),
    );
  }
}

/**
 * Switch a database file nobody else has open (a fresh restore) to rollback-journal mode and
 * close it again: safe, as no other connection exists and leaving WAL mode removes the WAL.
 */
export function toRollbackMode(path: string): void {
  const db = sqlite(path, "open", () => new DatabaseSync(path));
  try {
    const mode = sqlite(
      path,
      "set journal_mode=DELETE",
      () => db.prepare("PRAGMA journal_mode=DELETE").get()?.journal_mode,
    );
    if (String(mode).toLowerCase() !== "delete") {
      throw new DatabaseError(`database ${path}: could not switch to rollback-journal mode`);
    }
  } finally {
    db.close();
  }
}

/** Keeps every local-copy connection reachable: a collected DatabaseSync would close itself. */
const liveLocks = new Set<LocalCopyLock>();
