/** `prune()`: apply the retention policy to one database's replica (a dry run unless `force`). */
import { resolveRetention, type RetentionSettings } from "../config/schema.ts";
import { DbReplica } from "../storage/replica.ts";
import { applyRetention } from "../engine/prune.ts";
import { RestoreError } from "../errors.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";

/** Options for {@link prune}. */
export interface PruneOptions extends ReplicaOptions {
  /** The database's name in the replica. */
  name: string;
  /** The policy over the defaults (24 h PITR window, 24 hourly, 7 daily, 12 weekly, 12 monthly). */
  retention?: Partial<RetentionSettings>;
  /** Delete (default: only report what would be deleted). */
  force?: boolean;
  /** The time the policy is evaluated at (ms; default now). */
  now?: number;
  /** Hears files done of the total: snapshot headers read, then (with `force`) files deleted. */
  onProgress?: (phase: "read" | "delete", done: number, total: number) => void;
}

/** What prune did, or would do. */
export interface PruneReport {
  /** The database's name in the replica. */
  name: string;
  /** True when nothing was deleted (no `force`). */
  dryRun: boolean;
  /** Files deleted (or that would be). */
  deleted: { key: string; level: number; minTXID: number; maxTXID: number; size: number }[];
  /** Bytes of the deleted files. */
  bytesFreed: number;
  /** Files kept. */
  kept: number;
  /** The earliest restorable point afterwards (the oldest snapshot kept). */
  earliest?: { txid: number; time: Date };
  /** Every TXID from this one on stays restorable (the PITR window's base). */
  pitrFromTXID?: number;
}

/**
 * Apply the retention policy to database `name`: a dry run unless `force`. Never deletes a file
 * a kept restore point needs; refuses (ConfigError, exit 2) a policy that keeps nothing.
 *
 * ```ts
 * import { prune } from "./mod.ts";
 * const r = await prune({ name: "app.db", bucket: "file:///backups", force: true });
 * console.log(`freed ${r.bytesFreed} bytes`);
 * ```
 */
export async function prune(o: PruneOptions): Promise<PruneReport> {
  const policy = resolveRetention(o.retention);
  const replica = await replicaOf(o);
  const db = DbReplica.of(replica, o.name);
  if ((await db.files()).length === 0) {
    throw new RestoreError(`no backup of ${o.name} at ${replica.url}: nothing to prune`);
  }
  const plan = await applyRetention(db, policy, {
    now: o.now ?? Date.now(),
    delete: !!o.force,
    onProgress: o.onProgress,
  });
  return {
    name: o.name,
    dryRun: !o.force,
    deleted: plan.delete.map(({ key, level, minTXID, maxTXID, size }) => ({
      key,
      level,
      minTXID,
      maxTXID,
      size,
    })),
    bytesFreed: plan.bytesFreed,
    kept: plan.keep.length,
    earliest: plan.earliest &&
      { txid: plan.earliest.txid, time: new Date(plan.earliest.timestamp) },
    pitrFromTXID: plan.pitrFromTXID,
  };
}
