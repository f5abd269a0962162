/** When walrust checkpoints (Litestream's policy): by WAL size, by time, TRUNCATE past a cap. */
import type { SyncSettings } from "../config/schema.ts";

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
