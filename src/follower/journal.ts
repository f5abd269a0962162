/**
 * A SQLite rollback journal (`<db>-journal`), written by walrust before it overwrites pages of
 * the follower's local copy, in the format SQLite itself plays back: if walrust dies mid-batch,
 * the next connection to open the file (a reader, or the restarted follower) finds a hot journal
 * and restores the pages as they were, so nobody ever reads a half-applied batch.
 *
 * Format (sqlite.org/fileformat.html §4): a header sector (magic, record count, checksum nonce,
 * the database size in pages before the batch, sector size, page size), then one record per page:
 * its number, the original image, and a checksum of the nonce plus every 200th byte.
 */

const MAGIC = new Uint8Array([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
const SECTOR = 512;

/** Journals the original image of each page before a batch overwrites it. */
export class RollbackJournal {
  readonly #file: Deno.FsFile;
  readonly #nonce = crypto.getRandomValues(new Uint32Array(1))[0];
  readonly #record: Uint8Array;
  #count = 0;

  private constructor(
    readonly path: string,
    file: Deno.FsFile,
    readonly pageSize: number,
    readonly originalPages: number,
  ) {
    this.#file = file;
    this.#record = new Uint8Array(4 + pageSize + 4);
  }

  /** Start `<dbPath>-journal` for a database of `originalPages` pages of `pageSize`. */
  static create(dbPath: string, pageSize: number, originalPages: number): RollbackJournal {
    const path = `${dbPath}-journal`;
    const file = Deno.openSync(path, { write: true, create: true, truncate: true });
    const j = new RollbackJournal(path, file, pageSize, originalPages);
    j.#writeHeader(0); // the count is written last: a torn journal plays back nothing
    return j;
  }

  /** Record page `pgno`'s original image (`data`, pageSize bytes). */
  add(pgno: number, data: Uint8Array): void {
    const r = this.#record;
    const v = new DataView(r.buffer);
    v.setUint32(0, pgno);
    r.set(data.subarray(0, this.pageSize), 4);
    v.setUint32(4 + this.pageSize, this.#checksum(data));
    writeAllSync(this.#file, r);
    this.#count++;
  }

  /** Make the journal hot: records on disk, then the header with their count, on disk. */
  commit(): void {
    this.#file.syncSync();
    this.#writeHeader(this.#count);
    this.#file.syncSync();
    this.#file.close(); // its own file: no lock of the database's is tied to it
  }

  /** Give up before anything was overwritten (the journal plays back nothing). */
  abandon(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
    removeSync(this.path);
  }

  #writeHeader(count: number): void {
    const h = new Uint8Array(SECTOR);
    const v = new DataView(h.buffer);
    h.set(MAGIC, 0);
    v.setUint32(8, count);
    v.setUint32(12, this.#nonce);
    v.setUint32(16, this.originalPages);
    v.setUint32(20, SECTOR);
    v.setUint32(24, this.pageSize);
    this.#file.seekSync(0, Deno.SeekMode.Start);
    writeAllSync(this.#file, h);
  }

  #checksum(data: Uint8Array): number {
    let sum = this.#nonce;
    for (let i = this.pageSize - 200; i > 0; i -= 200) sum = (sum + data[i]) >>> 0;
    return sum;
  }
}

/** Delete the journal: the batch is committed (SQLite's DELETE journal mode does the same). */
export function finishJournal(dbPath: string): void {
  removeSync(`${dbPath}-journal`);
}

/** Write all of `buf` at the file's position, synchronously. */
export function writeAllSync(file: Deno.FsFile, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += file.writeSync(buf.subarray(done));
}

function removeSync(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
