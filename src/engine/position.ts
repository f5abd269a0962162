/**
 * The replicated position of one database (everything in the WAL before `offset`, in the WAL
 * generation named by the salts, is in local LTX files up to `txid`) and how it is resumed from
 * the local state directory after a restart.
 */
import { readWalHeader, scanWal, walFrameSize, type WalHeader } from "../sqlite/wal.ts";
import { DatabaseChecksum } from "../ltx/checksum.ts";
import type { LocalMeta, LocalState } from "./localstate.ts";

/** Byte offset of the first WAL frame. */
export const WAL_HEADER_SIZE = 32;

/** Where replication stands. */
export class Position {
  txid = 0;
  offset = WAL_HEADER_SIZE;
  salt1 = 0;
  salt2 = 0;
  /** SQLite's running WAL checksum at `offset` (undefined: the header's). */
  walChecksum: [number, number] | undefined;
  /** Database size in pages at `txid`. */
  commit = 0;
  /** pgno -> offset of its newest frame before `offset` in the current WAL generation. */
  walIndex = new Map<number, number>();
  /** The LTX database checksum at `txid`, when known (undefined: no record is written). */
  dbChecksum: DatabaseChecksum | undefined;

  /** True when a WAL with this header is the generation right after ours (one restart). */
  isNextGeneration(hdr: WalHeader): boolean {
    if (this.salt1 === 0 && this.salt2 === 0) return true; // no generation seen yet
    // SQLite's restart increments salt-1 and draws a new salt-2.
    return hdr.salt1 === ((this.salt1 + 1) >>> 0);
  }

  /** Continue at the start of a new WAL generation whose predecessor was fully copied. */
  newGeneration(hdr: WalHeader): void {
    this.offset = WAL_HEADER_SIZE;
    this.salt1 = hdr.salt1;
    this.salt2 = hdr.salt2;
    this.walChecksum = undefined;
    this.walIndex.clear();
  }

  /** WAL frames before the position. */
  frames(pageSize: number): number {
    return (this.offset - WAL_HEADER_SIZE) / walFrameSize(pageSize);
  }
}

/** Why continuity from the local state cannot be proven (a snapshot is needed), or none. */
export type ResumeResult = { position: Position; snapshotReason?: string };

/**
 * Resume from the newest local level-0 file (its header is the position record) when the WAL
 * still holds the frames it was made from. Called with the read lock held.
 */
export async function resumePosition(
  state: LocalState,
  meta: LocalMeta,
  wal: Deno.FsFile,
  pageSize: number,
): Promise<ResumeResult> {
  const p = new Position();
  const newest = (await state.list(0)).at(-1);
  if (!newest) return { position: p, snapshotReason: "first start" };
  const h = await state.readHeader(newest.path);
  p.txid = newest.maxTXID;
  p.commit = h.commit;
  if (h.pageSize !== pageSize) {
    return { position: p, snapshotReason: `page size changed from ${h.pageSize} to ${pageSize}` };
  }
  const hdr = await readWalHeader(wal);
  if (!hdr) {
    return {
      position: p,
      snapshotReason: "WAL is gone (checkpointed while walrust was not running)",
    };
  }
  if (hdr.salt1 !== h.walSalt1 || hdr.salt2 !== h.walSalt2) {
    return { position: p, snapshotReason: "WAL was restarted while walrust was not running" };
  }
  // Re-read the WAL up to the position: proves the frames are the ones we copied (salts and
  // checksum chain) and rebuilds the page index needed for snapshots and growth pages.
  const end = h.walOffset + h.walSize;
  // (A position at the very start of the WAL has no frames to re-read.)
  const scan = end > WAL_HEADER_SIZE
    ? await scanWal(wal, hdr, { offset: WAL_HEADER_SIZE, maxBytes: end - WAL_HEADER_SIZE })
    : { endOffset: end, checksum: undefined, pages: new Map<number, number>() };
  if (scan.endOffset !== end) {
    return { position: p, snapshotReason: `WAL no longer holds the frames up to offset ${end}` };
  }
  p.offset = end;
  p.salt1 = hdr.salt1;
  p.salt2 = hdr.salt2;
  p.walChecksum = scan.checksum;
  p.walIndex = scan.pages;
  // The tracked checksum survives only if nothing was committed while walrust was away: frames
  // committed then may have been checkpointed into the database file already, and the previous
  // version of such a page (which the running checksum needs) is gone from the file.
  const tail = await scanWal(wal, hdr, {
    offset: end,
    checksum: scan.checksum,
    maxBytes: walFrameSize(pageSize),
  });
  if (tail.endOffset === end && meta.checksum && meta.checksumTXID === p.txid) {
    p.dbChecksum = new DatabaseChecksum(pageSize);
    p.dbChecksum.xor(BigInt(`0x${meta.checksum}`));
  }
  return { position: p };
}
