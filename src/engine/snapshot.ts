/**
 * Full passes over a database as of the replicated position: every page 1..commit (except the
 * lock page) from its newest copied WAL frame or the database file, streamed into LTX writers
 * and summed into the LTX database checksum. Never the whole database in memory.
 */
import { walFrameSize, type WalHeader } from "../sqlite/wal.ts";
import { lockPgno } from "../ltx/header.ts";
import { DatabaseChecksum } from "../ltx/checksum.ts";
import type { LtxFormat } from "../ltx/encoder.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import { type LocalLtx, type LocalState, LtxFileWriter } from "./localstate.ts";
import type { PageSource } from "./pagesource.ts";
import { ltxHeader } from "./l0.ts";
import { WAL_HEADER_SIZE } from "./position.ts";

/** Hears the bytes of the database read so far, of the total. */
export type PagesRead = (done: number, total: number) => void;

/** Stream pages 1..commit into every writer; returns the database checksum of what was read. */
export async function streamAllPages(
  pages: PageSource,
  wal: Deno.FsFile,
  index: ReadonlyMap<number, number>,
  commit: number,
  writers: LtxFileWriter[],
  onRead?: PagesRead,
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
      onRead?.(pgno * pages.pageSize, commit * pages.pageSize);
    }
  } finally {
    pages.invalidate();
  }
  return sum;
}

/** The database as of a WAL offset: what a full pass reads. */
export interface FullState {
  wal: Deno.FsFile;
  hdr: WalHeader | undefined;
  /** pgno -> offset of its newest frame before `end`. */
  index: ReadonlyMap<number, number>;
  end: number;
  commit: number;
  txid: number;
}

/**
 * Write the whole database as the given level-0 TXID and/or the level-9 snapshot `1..txid`, in
 * one pass. Returns the files (level 0 first) and the database checksum.
 */
export async function writeFullCopies(
  state: LocalState,
  pages: PageSource,
  s: FullState,
  want: { l0: boolean; snapshot: boolean },
  format: LtxFormat,
  onRead?: PagesRead,
): Promise<{ files: LocalLtx[]; sum: DatabaseChecksum }> {
  const { txid, commit, end, hdr } = s;
  const plans: { level: number; min: number; offset: number }[] = [];
  if (want.l0) plans.push({ level: 0, min: txid, offset: WAL_HEADER_SIZE });
  // A snapshot's WAL fields name the last frame it includes, as Litestream's do.
  const last = Math.max(end - walFrameSize(pages.pageSize), WAL_HEADER_SIZE);
  if (want.snapshot) plans.push({ level: SNAPSHOT_LEVEL, min: 1, offset: last });
  const writers: LtxFileWriter[] = [];
  const files: LocalLtx[] = [];
  try {
    for (const p of plans) {
      const header = ltxHeader(
        pages.pageSize,
        { min: p.min, max: txid, commit },
        p.offset,
        end - p.offset,
        hdr,
      );
      const path = state.path(p.level, p.min, txid);
      writers.push(await LtxFileWriter.create(path, header, format));
      files.push({
        level: p.level,
        minTXID: p.min,
        maxTXID: txid,
        path,
        size: 0,
        timestamp: header.timestamp,
      });
    }
    const sum = await streamAllPages(pages, s.wal, s.index, commit, writers, onRead);
    for (let i = 0; i < writers.length; i++) {
      files[i].size = await writers[i].commit();
      files[i].postApplyChecksum = sum.value();
    }
    return { files, sum };
  } catch (e) {
    for (const w of writers) await w.abort();
    throw e;
  }
}
