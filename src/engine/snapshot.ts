/**
 * Full passes over a database as of the replicated position: every page 1..commit (except the
 * lock page) from its newest copied WAL frame or the database file, streamed into LTX writers
 * and summed into the LTX database checksum. Never the whole database in memory.
 */
import { lockPgno } from "../ltx/header.ts";
import { DatabaseChecksum } from "../ltx/checksum.ts";
import type { LtxFileWriter } from "./localstate.ts";
import type { PageSource } from "./pagesource.ts";

/** Stream pages 1..commit into every writer; returns the database checksum of what was read. */
export async function streamAllPages(
  pages: PageSource,
  wal: Deno.FsFile,
  index: ReadonlyMap<number, number>,
  commit: number,
  writers: LtxFileWriter[],
): Promise<DatabaseChecksum> {
  const lock = lockPgno(pages.pageSize);
  const sum = new DatabaseChecksum(pages.pageSize);
  pages.invalidate();
  pages.beginSequential();
  try {
    for (let pgno = 1; pgno <= commit; pgno++) {
      if (pgno === lock) continue;
      const off = index.get(pgno);
      const data = off !== undefined ? await pages.fromWal(wal, off, pgno) : pages.fromDb(pgno);
      sum.add(pgno, data);
      for (const w of writers) await w.encodePage(pgno, data);
    }
  } finally {
    pages.invalidate();
  }
  return sum;
}
