/**
 * The follower's local copy: a rollback-journal SQLite file that readers open, written only by
 * walrust, one batch at a time, inside SQLite's own EXCLUSIVE lock and behind a rollback journal
 * (journal.ts), so a reader sees the state before a batch or after it, never a mix, even when
 * walrust is killed mid-batch. Its descriptor and connection are held for the life of the process
 * (closing either would drop this process's POSIX locks on the file).
 */
import { DatabaseError, IntegrityError } from "../errors.ts";
import { lockPgno } from "../ltx/header.ts";
import { LocalCopyLock } from "../sqlite/handle.ts";
import { readAtSync } from "../sqlite/pagefile.ts";
import { finishJournal, RollbackJournal, writeAllSync } from "./journal.ts";

/** A page image to write: `data` holds pageSize bytes. */
export interface PageImage {
  pgno: number;
  data: Uint8Array;
}

/** One batch: the database as of `commit` pages, given as the pages that changed. */
export interface Batch {
  pageSize: number;
  /** Database size in pages after the batch. */
  commit: number;
  /** The page numbers the batch writes (each at most once), to journal their old images first. */
  pgnos: readonly number[];
  /** The new images, in any order; every page of `pgnos`, nothing else. */
  pages(): AsyncIterable<PageImage>;
}

/** Where the header fields walrust maintains live (sqlite.org/fileformat.html §1.3). */
const WRITE_VERSION = 18, READ_VERSION = 19, CHANGE_COUNTER = 24, DB_SIZE = 28, VALID_FOR = 92;

/** The held local copy. */
export class LocalCopy {
  private constructor(
    readonly path: string,
    readonly lock: LocalCopyLock,
    readonly file: Deno.FsFile,
    /** The file change counter walrust wrote last: another value means someone else wrote. */
    public counter: number,
  ) {}

  /**
   * Open the copy at `path` (a complete SQLite database): rolls back a batch a crash left
   * (SQLite plays its hot journal), switches to rollback-journal mode, holds the file.
   */
  static open(path: string, busyTimeoutMs = 5000): LocalCopy {
    const lock = LocalCopyLock.open(path, busyTimeoutMs);
    const file = Deno.openSync(path, { read: true, write: true });
    const copy = new LocalCopy(path, lock, file, 0);
    copy.counter = copy.#header().getUint32(CHANGE_COUNTER);
    return copy;
  }

  /** The page size and database size in pages, as the file says. */
  geometry(): { pageSize: number; commit: number } {
    const h = this.#header();
    const raw = h.getUint16(16);
    const pageSize = raw === 1 ? 65536 : raw;
    return { pageSize, commit: Math.floor(this.file.statSync().size / pageSize) };
  }

  /**
   * Refuse a copy someone else wrote to (its change counter moved): walrust's batches would
   * silently mix with the other writer's pages. IntegrityError, exit 5.
   */
  checkUntouched(): void {
    const now = this.#header().getUint32(CHANGE_COUNTER);
    if (now !== this.counter) {
      throw new IntegrityError(
        `${this.path} was written by something other than walrust (its change counter moved ` +
          `from ${this.counter} to ${now}); the local copy is read-only: open it read-only, ` +
          "delete it to re-bootstrap, or restore elsewhere to write",
      );
    }
  }

  /**
   * Apply one batch atomically for readers: under SQLite's EXCLUSIVE lock, journal the old
   * pages, make the journal hot, write the new ones as they stream in, fsync, delete the journal.
   */
  async apply(b: Batch): Promise<void> {
    const { pageSize, commit } = b;
    await this.lock.withExclusive(async () => {
      this.checkUntouched();
      const before = this.geometry();
      if (before.pageSize !== pageSize) {
        throw new DatabaseError(
          `${this.path}: the source's page size changed (${before.pageSize} -> ${pageSize}); ` +
            `delete ${this.path} and ${this.path}-walrust-replica.json, then start again to ` +
            "re-bootstrap (readers must re-open the new file)",
        );
      }
      const journal = RollbackJournal.create(this.path, pageSize, before.commit);
      const buf = new Uint8Array(pageSize);
      const journaled = new Set<number>();
      const keep = (pgno: number) => {
        if (pgno > before.commit || journaled.has(pgno)) return;
        readAtSync(this.file, (pgno - 1) * pageSize, buf);
        journal.add(pgno, buf);
        journaled.add(pgno);
      };
      try {
        keep(1);
        for (const pgno of b.pgnos) keep(pgno);
        // Pages a shrink cuts off come back on a rollback too.
        for (let pgno = commit + 1; pgno <= before.commit; pgno++) keep(pgno);
      } catch (e) {
        journal.abandon();
        throw e;
      }
      journal.commit();
      // From here a crash leaves a hot journal: the next opener rolls the batch back.
      const lock = lockPgno(pageSize);
      for await (const p of b.pages()) {
        if (p.pgno === lock || p.pgno > commit) continue;
        this.#writePage(p.pgno, p.data, pageSize);
      }
      if (commit >= lock && before.commit < lock) {
        this.#writePage(lock, new Uint8Array(pageSize), pageSize);
      }
      this.file.truncateSync(commit * pageSize);
      this.#stampHeader(commit);
      this.file.syncSync();
      finishJournal(this.path);
    });
  }

  /** Page 1's header as walrust keeps it: rollback mode, a new change counter, the size. */
  #stampHeader(commit: number): void {
    const page = new Uint8Array(100);
    readAtSync(this.file, 0, page);
    const v = new DataView(page.buffer);
    const counter = (this.counter + 1) >>> 0;
    page[WRITE_VERSION] = 1;
    page[READ_VERSION] = 1;
    v.setUint32(CHANGE_COUNTER, counter);
    v.setUint32(DB_SIZE, commit);
    v.setUint32(VALID_FOR, counter);
    this.file.seekSync(0, Deno.SeekMode.Start);
    writeAllSync(this.file, page);
    this.counter = counter;
  }

  #writePage(pgno: number, data: Uint8Array, pageSize: number): void {
    this.file.seekSync((pgno - 1) * pageSize, Deno.SeekMode.Start);
    writeAllSync(this.file, data.subarray(0, pageSize));
  }

  #header(): DataView {
    const h = new Uint8Array(100);
    const n = readAtSync(this.file, 0, h);
    if (n < 100) throw new DatabaseError(`${this.path}: not a SQLite database (too short)`);
    return new DataView(h.buffer);
  }
}
