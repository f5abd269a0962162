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
}

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
  for (const f of listed) {
    present.add(f.key);
    // Only snapshots need their time (GFS buckets, the PITR base).
    let timestamp = 0;
    if (f.level === SNAPSHOT_LEVEL) {
      timestamp = times.get(f.key) ?? await headerTimestamp(db, f);
      times.set(f.key, timestamp);
    }
    files.push({ ...f, timestamp });
  }
  for (const k of times.keys()) if (!present.has(k)) times.delete(k);
  const plan = planRetention(files, policy, o.now);
  if (o.delete && plan.delete.length > 0) await db.deleteLtx(plan.delete);
  return plan;
}
