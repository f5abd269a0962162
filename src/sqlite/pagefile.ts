/**
 * Positional reads on Deno files, and the one long-lived read handle on each database file.
 *
 * Why DbFileReader exists (DESIGN.md §3, "the fd trap"): POSIX record locks belong to the
 * process, not to the descriptor. Closing ANY descriptor on the database file drops every lock
 * this process holds on it, including the SHARED lock SQLite (node:sqlite) keeps through its own
 * descriptor for as long as a WAL-mode connection is open. Without that lock, the next
 * application connection to close believes it is the last one, checkpoints and deletes the WAL
 * behind our back. So walrust opens the database file exactly once per process (here), reads
 * pages through that descriptor for the life of the process, and never closes it.
 *
 * Deno adds a second trap: the ASYNC FsFile methods (read, seek, stat, ...) work on a duplicate
 * of the descriptor and close it afterwards, which drops the locks just the same. On the database
 * file use only synchronous calls (readAtSync, statSync); readAt and DbFileReader do. Async calls
 * on the `-wal` file are harmless (SQLite puts no POSIX locks on it); never open `-shm` at all.
 * Path-based calls that open nothing (Deno.stat, Deno.realPath) are safe. Deno.watchFs is NOT:
 * its watcher thread opens and closes the files in the folders it watches (seen with strace), so
 * never watch a folder holding a replicated database (docs/decisions.md). Deno.readFile,
 * Deno.copyFile or Deno.open(...).close() on the database file are not.
 */

import { DatabaseError } from "../errors.ts";

/**
 * Read into `buf` from `offset`, looping until `buf` is full or EOF. Returns the bytes read
 * (less than `buf.length` only at EOF). Synchronous underneath: see readAtSync.
 */
export function readAt(file: Deno.FsFile, offset: number, buf: Uint8Array): Promise<number> {
  try {
    return Promise.resolve(readAtSync(file, offset, buf));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * Synchronous positional read (seekSync + readSync until full or EOF). Deliberately not the async
 * FsFile methods: Deno runs those on a duplicated descriptor (fcntl F_DUPFD) that it closes
 * afterwards, and that close drops every POSIX lock this process holds on the file. Sync calls
 * also make seek+read atomic with respect to other callers, so no per-file queue is needed.
 */
export function readAtSync(file: Deno.FsFile, offset: number, buf: Uint8Array): number {
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < buf.length) {
    const n = file.readSync(done === 0 ? buf : buf.subarray(done));
    if (n === null || n === 0) break;
    done += n;
  }
  return done;
}

/** Keeps the readers alive (and unclosed) for the life of the process, keyed by real path. */
const readers = new Map<string, DbFileReader>();
/** Readers of files that were replaced under their path: kept open, never used again. */
const retired: DbFileReader[] = [];

/** True when two stats describe the same file (device and inode). */
export function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * The process-wide read handle on one database file. Opened once, closed only after the file left
 * its path and nothing uses it (closeMoved; see the module comment); every read from the database file goes through `file`, with
 * synchronous calls only.
 */
export class DbFileReader {
  private constructor(
    /** The real (symlink-resolved) path of the database file. */
    readonly path: string,
    /**
     * The long-lived descriptor. Never close it and never call its async methods; pass it to
     * readAt / readAtSync / readDbPage / readDbHeader, which read synchronously.
     */
    readonly file: Deno.FsFile,
  ) {}

  /** The reader for `path`, opening the file on first use; the same instance for every caller. */
  static open(path: string): Promise<DbFileReader> {
    try {
      return Promise.resolve(DbFileReader.openSync(path));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Synchronous open(): the same shared instance. */
  static openSync(path: string): DbFileReader {
    try {
      const real = Deno.realPathSync(path);
      let reader = readers.get(real);
      if (reader && !sameFile(reader.file.statSync(), Deno.statSync(real))) {
        // The path names a new file now (a restore or deploy replaced it): the old descriptor
        // stays open (closing it would drop locks on the old inode) and a new one is opened.
        retired.push(reader);
        reader = undefined;
      }
      if (!reader) {
        reader = new DbFileReader(real, Deno.openSync(real, { read: true }));
        readers.set(real, reader);
      }
      return reader;
    } catch (err) {
      throw new DatabaseError(`database file ${path}: ${errorText(err)}`, { cause: err });
    }
  }

  /**
   * Close the descriptor of a file that is no longer at its path, once nothing of this process
   * uses that inode any more (WatchedFiles.sweep decides); forgets the reader everywhere.
   */
  closeMoved(): void {
    if (readers.get(this.path) === this) readers.delete(this.path);
    const i = retired.indexOf(this);
    if (i >= 0) retired.splice(i, 1);
    this.file.close();
  }

  /** Read into `buf` at `offset` in the database file (see readAtSync). */
  readAt(offset: number, buf: Uint8Array): number {
    return readAtSync(this.file, offset, buf);
  }

  /** Current size of the database file in bytes (fstat on the kept descriptor, synchronously). */
  size(): number {
    return this.file.statSync().size;
  }

  /**
   * Close the descriptor. UNSAFE while any SQLite connection in this process has this database
   * open (it drops that connection's locks); only for tests and for files SQLite never opened.
   */
  closeUnsafeForTests(): void {
    if (readers.get(this.path) === this) readers.delete(this.path);
    this.file.close();
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
