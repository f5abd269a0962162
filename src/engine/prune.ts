/**
 * Retention applied to one database's replica: list it, read each snapshot's header time (once
 * per file: they never change), plan with retention.ts, and delete what the plan drops.
 */
import type { RetentionSettings } from "../config/schema.ts";
import { decodeHeader, HEADER_SIZE } from "../ltx/header.ts";
import { LtxError } from "../errors.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import { readAll } from "../storage/port.ts";
import type { DbReplica, LtxId } from "../storage/replica.ts";
import { planRetention, type RetentionFile, type RetentionPlan } from "./retention.ts";

/** The header timestamp (ms) of one LTX file in the replica, with a ranged read of its header. */
export async function headerTimestamp(db: DbReplica, f: LtxId & { key: string }): Promise<number> {
  const b = await readAll(await db.openLtx(f, { offset: 0, length: HEADER_SIZE }));
  try {
    return decodeHeader(b.subarray(0, HEADER_SIZE)).timestamp;
  } catch (e) {
    if (e instanceof LtxError) throw new LtxError(e.kind, `${f.key}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** Options for applyRetention. */
export interface ApplyRetentionOptions {
  /** Evaluate the policy at this time (ms). */
  now: number;
  /** Delete what the plan drops (otherwise only plan). */
  delete: boolean;
  /** Snapshot header times by key, reused across calls (filled as read). */
  times?: Map<string, number>;
  /** Hears files done of the total: snapshot headers read, then files deleted. */
  onProgress?: (phase: "read" | "delete", done: number, total: number) => void;
}

/** Files per delete call, so progress moves on a large prune (S3 deletes 1,000 per request). */
const DELETE_CHUNK = 1000;

/** Plan retention for `db` and, with `delete`, apply it. Returns the plan. */
export async function applyRetention(
  db: DbReplica,
  policy: RetentionSettings,
  o: ApplyRetentionOptions,
): Promise<RetentionPlan> {
  const times = o.times ?? new Map<string, number>();
  const listed = await db.files();
  const files: RetentionFile[] = [];
  const present = new Set<string>();
  const unread = listed.filter((f) => f.level === SNAPSHOT_LEVEL && !times.has(f.key)).length;
  let read = 0;
  for (const f of listed) {
    present.add(f.key);
    // Only snapshots need their time (GFS buckets, the PITR base).
    let timestamp = 0;
    if (f.level === SNAPSHOT_LEVEL) {
      const known = times.get(f.key);
      if (known === undefined) {
        timestamp = await headerTimestamp(db, f);
        o.onProgress?.("read", ++read, unread);
      } else timestamp = known;
      times.set(f.key, timestamp);
    }
    files.push({ ...f, timestamp });
  }
  for (const k of times.keys()) if (!present.has(k)) times.delete(k);
  const plan = planRetention(files, policy, o.now);
  if (o.delete) {
    const gone = plan.delete;
    for (let i = 0; i < gone.length; i += DELETE_CHUNK) {
      await db.deleteLtx(gone.slice(i, i + DELETE_CHUNK));
      o.onProgress?.("delete", Math.min(i + DELETE_CHUNK, gone.length), gone.length);
    }
  }
  return plan;
}
