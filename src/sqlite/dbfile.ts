/**
 * The SQLite database file: its 100-byte header, its pages, and the lock page. Pure file reads;
 * pass the long-lived descriptor from DbFileReader (pagefile.ts) for a database SQLite has open.
 */

import { DatabaseError } from "../errors.ts";
import { readAtSync } from "./pagefile.ts";

/** Size of the database file header. */
export const DB_HEADER_SIZE = 100;

/** What walrust needs from the database file header. */
export interface DbHeader {
  /** Page size in bytes (the header's 1 means 65536). */
  pageSize: number;
  /**
   * Pages in the database FILE: the header's "in-header database size" when it is valid, else
   * file size / page size. In WAL mode the WAL's last commit frame may say more.
   */
  pageCount: number;
  /** File change counter (offset 24). */
  changeCounter: number;
  /** Read and write format versions are both 2 (offsets 18, 19). */
  walMode: boolean;
}

const MAGIC = new TextEncoder().encode("SQLite format 3\0");

/** Decode a database header from its first 100 bytes; undefined when short or bad magic. */
export function parseDbHeader(b: Uint8Array, fileSize: number): DbHeader | undefined {
  if (b.length < DB_HEADER_SIZE) return undefined;
  for (let i = 0; i < MAGIC.length; i++) if (b[i] !== MAGIC[i]) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, DB_HEADER_SIZE);
  const raw = v.getUint16(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  const changeCounter = v.getUint32(24);
  const inHeader = v.getUint32(28);
  // The in-header size is trusted only when "version-valid-for" matches the change counter
  // (older writers did not maintain it).
  const pageCount = inHeader !== 0 && v.getUint32(92) === changeCounter
    ? inHeader
    : Math.floor(fileSize / pageSize);
  return { pageSize, pageCount, changeCounter, walMode: b[18] === 2 && b[19] === 2 };
}

/**
 * Read and decode the header of a database file; undefined when short or not SQLite.
 * Synchronous I/O underneath, so it is safe on the watched database (see pagefile.ts).
 */
export function readDbHeader(file: Deno.FsFile): Promise<DbHeader | undefined> {
  const b = new Uint8Array(DB_HEADER_SIZE);
  try {
    if (readAtSync(file, 0, b) < DB_HEADER_SIZE) return Promise.resolve(undefined);
    return Promise.resolve(parseDbHeader(b, file.statSync().size));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Read page `pgno` (1-based) of the database file into `into` (at least pageSize bytes). */
export function readDbPage(
  file: Deno.FsFile,
  pgno: number,
  pageSize: number,
  into: Uint8Array,
): Promise<void> {
  try {
    readDbPageSync(file, pgno, pageSize, into);
    return Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}

/** readDbPage without the promise, for tight loops (snapshots). */
export function readDbPageSync(
  file: Deno.FsFile,
  pgno: number,
  pageSize: number,
  into: Uint8Array,
): void {
  if (!Number.isInteger(pgno) || pgno < 1) {
    throw new DatabaseError(`invalid page number ${pgno}`);
  }
  const n = readAtSync(file, (pgno - 1) * pageSize, into.subarray(0, pageSize));
  if (n < pageSize) {
    throw new DatabaseError(
      `page ${pgno} is beyond the end of the database file (read ${n} of ${pageSize} bytes)`,
    );
  }
}

/** The page holding the 1 GiB lock byte range; it never holds data. */
export function lockPgno(pageSize: number): number {
  return Math.floor(0x40000000 / pageSize) + 1;
}
