/**
 * walrust's checkpoints: when (Litestream's policy: by WAL size, by time, TRUNCATE past a cap)
 * and the window that runs them without losing a frame.
 */
import type { SyncSettings } from "../config/schema.ts";
import type { CheckpointResult, SqliteHandle } from "../sqlite/handle.ts";

/** What the policy looks at. */
export interface CheckpointInputs {
  /** Frames in the WAL before the replicated position. */
  frames: number;
  sinceCheckpointMs: number;
  /** Something was copied since the last checkpoint. */
  syncedSinceCheckpoint: boolean;
}

/**
 * The checkpoint due now, if any: TRUNCATE past `wal_truncate_threshold_pages`, PASSIVE past
 * `min_checkpoint_page_count` or after `checkpoint_interval` when something was written.
 */
export function checkpointDue(
  s: SyncSettings,
  i: CheckpointInputs,
): "PASSIVE" | "TRUNCATE" | undefined {
  if (s.walTruncateThresholdPages > 0 && i.frames >= s.walTruncateThresholdPages) return "TRUNCATE";
  if (i.frames >= s.minCheckpointPageCount) return "PASSIVE";
  if (
    s.checkpointIntervalMs > 0 && i.sinceCheckpointMs >= s.checkpointIntervalMs &&
    i.syncedSinceCheckpoint && i.frames > 1
  ) return "PASSIVE";
  return undefined;
}

/** What a checkpoint window did. */
export interface CheckpointWindow {
  /** False when the write barrier could not be had (the app holds the write lock). */
  ran: boolean;
  result?: CheckpointResult;
  error?: string;
}

/**
 * The checkpoint window. Under the write barrier (no application commit can land): `syncAll`
 * copies every committed frame, then a PASSIVE checkpoint, which releases and re-takes the read
 * lock, so everything it backfills was copied and the new read mark covers only copied frames
 * (the read lock is pinned again). For TRUNCATE, SQLite is then asked to truncate the WAL without
 * waiting: it does so only when the WAL is wholly backfilled and nothing was appended since (the
 * read lock stops the backfill of anything newer), so nothing uncopied is lost and no
 * re-snapshot is needed.
 */
export async function checkpointWindow(
  h: SqliteHandle,
  mode: "PASSIVE" | "TRUNCATE",
  syncAll: () => Promise<unknown>,
  o: { busyTimeoutMs: number; warn: (msg: string, error: string) => void },
): Promise<CheckpointWindow> {
  try {
    h.beginWriteBarrier();
  } catch (e) {
    return { ran: false, error: messageOf(e) };
  }
  let result: CheckpointResult | undefined;
  try {
    await syncAll();
    try {
      result = h.checkpoint("PASSIVE");
    } catch (e) {
      o.warn("checkpoint failed", messageOf(e));
    }
  } finally {
    h.releaseWriteBarrier();
  }
  if (mode === "TRUNCATE" && result && result.busy === 0 && result.log === result.checkpointed) {
    try {
      result = h.truncateWalIfIdle(o.busyTimeoutMs);
    } catch (e) {
      o.warn("WAL truncation failed", messageOf(e));
    }
  }
  return { ran: true, result };
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
