/**
 * Reads database pages as of the replicated position: the newest WAL frame at or before the
 * synced offset when there is one, otherwise the database file. Sequential database-file reads
 * are batched so a snapshot costs few syscalls.
 */
import { type DbFileReader, readAt } from "../sqlite/pagefile.ts";
import { DatabaseError } from "../errors.ts";

const CHUNK_PAGES = 64;

/** A page reader over the held database and WAL file handles. */
export class PageSource {
  #chunk: Uint8Array;
  #chunkFirst = 0; // first pgno held in #chunk, 0 = empty
  #chunkPages = 0;
  #page: Uint8Array;

  constructor(
    readonly dbPath: string,
    readonly db: DbFileReader,
    readonly pageSize: number,
  ) {
    this.#chunk = new Uint8Array(pageSize * CHUNK_PAGES);
    this.#page = new Uint8Array(pageSize);
  }

  /** Forget buffered database-file pages (call after a checkpoint changed the file). */
  invalidate(): void {
    this.#chunkFirst = 0;
    this.#chunkPages = 0;
  }

  /** The page bytes of `pgno` from the WAL frame at `frameOffset`. Valid until the next call. */
  async fromWal(wal: Deno.FsFile, frameOffset: number, pgno: number): Promise<Uint8Array> {
    const n = await readAt(wal, frameOffset + 24, this.#page);
    if (n < this.pageSize) {
      throw new DatabaseError(
        `${this.dbPath}-wal: frame for page ${pgno} at ${frameOffset} is short`,
      );
    }
    return this.#page;
  }

  /** The page bytes of `pgno` from the database file. Valid until the next call. */
  fromDb(pgno: number): Uint8Array {
    if (
      this.#chunkFirst === 0 || pgno < this.#chunkFirst ||
      pgno >= this.#chunkFirst + this.#chunkPages
    ) {
      // Synchronous on purpose: Deno's async calls close a duplicate descriptor afterwards, which
      // would drop the POSIX locks SQLite holds on the database file.
      const n = this.db.readAt((pgno - 1) * this.pageSize, this.#chunk);
      this.#chunkFirst = pgno;
      this.#chunkPages = Math.floor(n / this.pageSize);
      if (this.#chunkPages === 0) {
        this.invalidate();
        throw new DatabaseError(
          `${this.dbPath}: page ${pgno} is beyond the end of the database file and not in the WAL`,
        );
      }
    }
    const off = (pgno - this.#chunkFirst) * this.pageSize;
    return this.#chunk.subarray(off, off + this.pageSize);
  }
}
