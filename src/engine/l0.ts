/**
 * Level-0 files from WAL frames: the pages one sync batch changed plus growth pages, written
 * durably into the local state directory, with the running database checksum carried through.
 */
import type { WalHeader } from "../sqlite/wal.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../ltx/header.ts";
import type { LtxFormat } from "../ltx/encoder.ts";
import { type LocalLtx, type LocalState, LtxFileWriter } from "./localstate.ts";
import type { PageSource } from "./pagesource.ts";
import type { Position } from "./position.ts";

/** The LTX header walrust writes (no database checksum in the file: flag 0x2). */
export function ltxHeader(
  pageSize: number,
  range: { min: number; max: number; commit: number },
  walOffset: number,
  walSize: number,
  hdr: WalHeader | undefined,
): LtxHeader {
  return {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize,
    commit: range.commit,
    minTXID: range.min,
    maxTXID: range.max,
    timestamp: Date.now(),
    preApplyChecksum: 0n,
    walOffset,
    walSize,
    walSalt1: hdr?.salt1 ?? 0,
    walSalt2: hdr?.salt2 ?? 0,
    nodeID: 0n,
  };
}

/** One sync batch: the frames between the position and `end`. */
export interface L0Batch {
  wal: Deno.FsFile;
  hdr: WalHeader;
  /** pgno -> offset of its newest frame in the batch. */
  changed: Map<number, number>;
  /** Database size in pages after the batch. */
  commit: number;
  end: number;
}

/**
 * Write level-0 file `pos.txid + 1` for `batch`. `pos.dbChecksum`, when known, is updated in
 * place: each page's previous version (its newest copied frame, else the database file, which
 * holds nothing newer than the position while the read lock is pinned) goes out, the new one in.
 * The position itself is left for the caller to advance.
 */
export async function writeL0(
  state: LocalState,
  pages: PageSource,
  pos: Position,
  batch: L0Batch,
  format: LtxFormat,
): Promise<LocalLtx> {
  const { wal, changed, commit, end } = batch;
  const txid = pos.txid + 1;
  const pgnos = new Set<number>();
  for (const p of changed.keys()) if (p <= commit) pgnos.add(p);
  // Growth pages: a page added since the previous file that this batch did not write must still
  // reach the replica, or a restore would miss it.
  const lock = lockPgno(pages.pageSize);
  for (let p = pos.commit + 1; p <= commit; p++) if (p !== lock) pgnos.add(p);
  const sorted = [...pgnos].sort((a, b) => a - b);
  const header = ltxHeader(
    pages.pageSize,
    { min: txid, max: txid, commit },
    pos.offset,
    end - pos.offset,
    batch.hdr,
  );
  const path = state.path(0, txid, txid);
  const w = await LtxFileWriter.create(path, header, format);
  const previous = (pgno: number) => {
    const off = pos.walIndex.get(pgno);
    return off !== undefined ? pages.fromWal(wal, off, pgno) : pages.fromDb(pgno);
  };
  pages.invalidate();
  const sum = pos.dbChecksum;
  try {
    for (const pgno of sorted) {
      if (sum && pgno <= pos.commit) sum.add(pgno, await previous(pgno)); // XOR takes it out
      const off = changed.get(pgno) ?? pos.walIndex.get(pgno);
      const data = off !== undefined ? await pages.fromWal(wal, off, pgno) : pages.fromDb(pgno);
      sum?.add(pgno, data);
      await w.encodePage(pgno, data);
    }
    // Pages cut off by a shrink leave the database too.
    if (sum) {
      for (let p = commit + 1; p <= pos.commit; p++) if (p !== lock) sum.add(p, await previous(p));
    }
    const size = await w.commit();
    return {
      level: 0,
      minTXID: txid,
      maxTXID: txid,
      path,
      size,
      postApplyChecksum: sum?.value(),
      timestamp: header.timestamp,
    };
  } catch (e) {
    await w.abort();
    throw e;
  } finally {
    pages.invalidate();
  }
}
