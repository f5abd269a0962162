/**
 * Reads database pages as of the replicated position: the newest WAL frame at or before the
 * synced offset when there is one, otherwise the database file. Snapshots read the database file
 * sequentially through a read-ahead buffer that exists only while the snapshot runs, so an idle
 * database costs no buffer at all.
 */
import { type DbFileReader, readAt } from "../sqlite/pagefile.ts";
import { DatabaseError } from "../errors.ts";

const CHUNK_PAGES = 64;

/** A page reader over the held database and WAL file handles. */
export class PageSource {
  #chunk: Uint8Array | undefined;
  #chunkFirst = 0; // first pgno held in #chunk, 0 = empty
  #chunkPages = 0;
  #page: Uint8Array | undefined;

  constructor(
    readonly dbPath: string,
    readonly db: DbFileReader,
    readonly pageSize: number,
  ) {}

  /** Start a sequential pass (a snapshot): database-file reads go through a read-ahead buffer. */
  beginSequential(): void {
    this.#chunk ??= new Uint8Array(this.pageSize * CHUNK_PAGES);
    this.#chunkFirst = 0;
  }

  /** Drop buffered pages and the buffers themselves (after a pass, or when the file changed). */
  invalidate(): void {
    this.#chunk = undefined;
    this.#page = undefined;
    this.#chunkFirst = 0;
    this.#chunkPages = 0;
  }

  /** The page bytes of `pgno` from the WAL frame at `frameOffset`. Valid until the next call. */
  async fromWal(wal: Deno.FsFile, frameOffset: number, pgno: number): Promise<Uint8Array> {
    const page = this.#page ??= new Uint8Array(this.pageSize);
    const n = await readAt(wal, frameOffset + 24, page);
    if (n < this.pageSize) {
      throw new DatabaseError(
        `${this.dbPath}-wal: frame for page ${pgno} at ${frameOffset} is short`,
      );
    }
    return page;
  }

  /** The page bytes of `pgno` from the database file. Valid until the next call. */
  fromDb(pgno: number): Uint8Array {
    // Synchronous on purpose: Deno's async calls close a duplicate descriptor afterwards, which
    // would drop the POSIX locks SQLite holds on the database file.
    const chunk = this.#chunk;
    if (!chunk) {
      const page = this.#page ??= new Uint8Array(this.pageSize);
      if (this.db.readAt((pgno - 1) * this.pageSize, page) < this.pageSize) this.#beyondEnd(pgno);
      return page;
    }
    if (
      this.#chunkFirst === 0 || pgno < this.#chunkFirst ||
      pgno >= this.#chunkFirst + this.#chunkPages
    ) {
      const n = this.db.readAt((pgno - 1) * this.pageSize, chunk);
      this.#chunkFirst = pgno;
      this.#chunkPages = Math.floor(n / this.pageSize);
      if (this.#chunkPages === 0) {
        this.#chunkFirst = 0;
        this.#beyondEnd(pgno);
      }
    }
    const off = (pgno - this.#chunkFirst) * this.pageSize;
    return chunk.subarray(off, off + this.pageSize);
  }

  #beyondEnd(pgno: number): never {
    throw new DatabaseError(
      `${this.dbPath}: page ${pgno} is beyond the end of the database file and not in the WAL`,
    );
  }
}
