/**
 * The replica is the truth at start: compare what this database's replica holds with the local
 * position and upload queue, and decide whether the queue continues the replica's chain or a new
 * snapshot (under a TXID above everything in the replica) is needed. Pure: the caller lists.
 */
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";

/** One LTX file, in the replica or in the local queue. */
export interface ChainFile {
  level: number;
  minTXID: number;
  maxTXID: number;
  size: number;
}

/** What walrust knows locally. */
export interface LocalView {
  /** TXID of the newest local level-0 file (the position). */
  txid: number;
  /** Files waiting for upload. */
  queue: readonly ChainFile[];
  /** The newest level-0 file already uploaded, when still kept locally. */
  lastUploaded?: ChainFile;
  /**
   * A level-0 file whose upload finished while the replica was being listed: in the replica,
   * though the listing may not show it.
   */
  uploadedWhileListing?: ChainFile;
}

/** The decision. */
export type Reconciliation =
  /** Upload the queue as it is; `replicaTXID` is where the replica's chain ends. */
  | { kind: "continue"; replicaTXID: number }
  /** Drop the queue and snapshot as TXID `afterTXID + 1`; `why` is for the log. */
  | { kind: "snapshot"; afterTXID: number; why: string; alarming: boolean };

/**
 * Where a restore of the latest state would end: the newest snapshot (or a file starting at
 * TXID 1), extended greedily over levels 8..0 like Litestream's plan; 0 when nothing restores.
 */
export function chainEnd(files: readonly ChainFile[]): number {
  let cur = 0;
  for (const f of files) {
    if (f.level === SNAPSHOT_LEVEL && f.minTXID === 1 && f.maxTXID > cur) cur = f.maxTXID;
  }
  const rest = files.filter((f) => f.level < SNAPSHOT_LEVEL);
  for (;;) {
    let best = cur;
    for (const f of rest) if (f.minTXID <= cur + 1 && f.maxTXID > best) best = f.maxTXID;
    if (best === cur) return cur;
    cur = best;
  }
}

/** Decide from the replica's files (all levels of this database) and the local view. */
export function reconcile(remote: readonly ChainFile[], local: LocalView): Reconciliation {
  let remoteMax = 0;
  for (const f of remote) if (f.maxTXID > remoteMax) remoteMax = f.maxTXID;
  const top = Math.max(remoteMax, local.txid);
  if (remoteMax > local.txid) {
    return {
      kind: "snapshot",
      afterTXID: remoteMax,
      alarming: local.txid > 0,
      why: local.txid > 0
        ? "the replica is ahead of local state (another writer, or the database was restored to an older point)"
        : "no local state; the replica has data",
    };
  }
  // A level-0 file the replica holds at a TXID we hold locally must be ours, byte for byte.
  const ours = new Map<number, number>();
  for (const f of [...local.queue, ...(local.lastUploaded ? [local.lastUploaded] : [])]) {
    if (f.level === 0) ours.set(f.maxTXID, f.size);
  }
  for (const f of remote) {
    if (f.level !== 0) continue;
    const size = ours.get(f.maxTXID);
    if (size !== undefined && size !== f.size) {
      return {
        kind: "snapshot",
        afterTXID: top,
        alarming: true,
        why: `the replica diverged from local state (level-0 TXID ${f.maxTXID} differs)`,
      };
    }
  }
  const remoteEnd = chainEnd(remote);
  if (remoteEnd < remoteMax) {
    return {
      kind: "snapshot",
      afterTXID: top,
      alarming: true,
      why: `the replica has a gap after TXID ${remoteEnd} (files were lost)`,
    };
  }
  // An upload that finished during the listing is in the replica even if the listing missed it.
  const late = local.uploadedWhileListing;
  const confirmed = late ? [...remote, late] : remote;
  if (chainEnd([...confirmed, ...local.queue]) >= local.txid) {
    return { kind: "continue", replicaTXID: Math.max(remoteEnd, chainEnd(confirmed)) };
  }
  return {
    kind: "snapshot",
    afterTXID: top,
    alarming: remoteMax > 0 || local.lastUploaded !== undefined,
    why: remoteMax === 0
      ? "the replica is empty"
      : `the replica ends at TXID ${remoteEnd} and the local queue does not continue it`,
  };
}
