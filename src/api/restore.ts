/** `restore()` and `restorePlan()`: rebuild a database from its replica. */
import { resolve } from "node:path";
import { DbReplica } from "../storage/replica.ts";
import { planRestore, type RestorePlan } from "../restore/plan.ts";
import { type FallbackInfo, restoreWithFallback } from "../restore/run.ts";
import type { RunResult } from "../restore/run.ts";
import { parseTarget, type Target } from "../restore/time.ts";
import { ConfigError } from "../errors.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";

/** Which state to restore: the latest (default), a TXID, or the state at a moment. */
export interface TargetOptions {
  /** Exactly this TXID. */
  txid?: number;
  /** The state at this moment: a Date, Unix ms, RFC 3339, or relative like "-15m". */
  at?: Date | number | string;
}

/** Options for {@link restore}. */
export interface RestoreOptions extends ReplicaOptions, TargetOptions {
  /** The database's name in the replica (by default its file name, e.g. "app.db"). */
  name: string;
  /** Where to write it; must not exist unless `force`. */
  output: string;
  /** Replace an existing output (never one a running walrust replicates). */
  force?: boolean;
  /** Check the database checksum walrust recorded with the last file (default true). */
  checkRecordedChecksum?: boolean;
  /** Told about each corrupt file planned around. */
  onFallback?: (info: FallbackInfo) => void;
  /** Called as LTX bytes are consumed: (bytes read so far, total bytes of the plan). */
  onProgress?: (done: number, total: number) => void;
}

/** What a restore produced. */
export interface RestoreSummary extends RunResult {
  /** The database's name in the replica. */
  name: string;
  /** The replica, as a URL. */
  replica: string;
  /** The requested time was after the newest backup: the latest state was restored. */
  clampedToLatest: boolean;
  /** Wall-clock time the restore took, in milliseconds. */
  durationMs: number;
}

/** The restore target named by `o` (latest when neither txid nor at is given). */
export function targetOf(o: TargetOptions): Target {
  if (o.txid !== undefined && o.at !== undefined) {
    throw new ConfigError("restore: give txid or at, not both");
  }
  if (o.txid !== undefined) {
    if (!Number.isSafeInteger(o.txid) || o.txid < 1) {
      throw new ConfigError(`restore: txid must be a positive integer, got ${o.txid}`);
    }
    return { kind: "txid", txid: o.txid };
  }
  if (o.at === undefined) return { kind: "latest" };
  const at = o.at instanceof Date
    ? o.at.toISOString()
    : typeof o.at === "number"
    ? new Date(o.at).toISOString()
    : o.at;
  return parseTarget({ pointInTime: at });
}

/**
 * Restore a database into a new file: latest, a TXID, or a moment. The output is written to a
 * temporary file, checked (`PRAGMA integrity_check`, the recorded checksum), fsynced and renamed.
 *
 * ```ts
 * import { restore } from "./mod.ts";
 * const r = await restore({ name: "app.db", output: "/tmp/app.db", bucket: "file:///backups" });
 * console.log(`restored TXID ${r.txid}`);
 * ```
 */
export async function restore(o: RestoreOptions): Promise<RestoreSummary> {
  const started = Date.now();
  const replica = await replicaOf(o);
  const r = await restoreWithFallback(
    DbReplica.of(replica, o.name),
    targetOf(o),
    resolve(o.output),
    {
      force: o.force,
      integrity: "full",
      checkRecordedChecksum: o.checkRecordedChecksum,
      replicaRoot: replica.fileRoot,
      onFallback: o.onFallback,
      onProgress: o.onProgress,
    },
  );
  return {
    ...r,
    name: o.name,
    replica: replica.url,
    clampedToLatest: r.plan.clampedToLatest,
    durationMs: Date.now() - started,
  };
}

/** The files a restore of `name` at the target would apply, without writing anything. */
export async function restorePlan(
  o: ReplicaOptions & TargetOptions & { name: string },
): Promise<RestorePlan> {
  const replica = await replicaOf(o);
  return await planRestore(DbReplica.of(replica, o.name), targetOf(o));
}
