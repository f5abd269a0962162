/** `restore()` and `restorePlan()`: rebuild a database from its replica. */
import { resolve } from "node:path";
import { DbReplica } from "../storage/replica.ts";
import { planRestore, type RestorePlan } from "../restore/plan.ts";
import { type FallbackInfo, restoreWithFallback } from "../restore/run.ts";
import { checkRestoreOutput } from "../restore/apply.ts";
import type { RunResult } from "../restore/run.ts";
import { parseTarget, type Target } from "../restore/time.ts";
import {
  applyV3Plan,
  checkIndex,
  listV3,
  parseGenerationId,
  planV3,
  type V3Plan,
  V3ReplicaError,
  type V3Target,
} from "../restore/v3.ts";
import { ConfigError, RestoreError } from "../errors.ts";
import type { Replica } from "../storage/open.ts";
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
  /**
   * Litestream v0.3 backups only: restore from this generation (16 hex digits). Alone: its
   * latest state, or with `at` its state at that moment.
   */
  generation?: string;
  /** Litestream v0.3 backups only: the state at the end of this WAL index (needs `generation`). */
  index?: number;
}

/** Where in a Litestream v0.3 backup a restore ended. */
export interface V3RestoreInfo {
  /** The generation restored from. */
  generation: string;
  /** WAL index of the snapshot it started from. */
  snapshotIndex: number;
  /** WAL index of the restored state. */
  index: number;
  /** End of the last commit applied within that WAL index, in bytes (0: snapshot only). */
  offset: number;
  /** WAL segments applied after the snapshot. */
  segments: number;
  /** Time of the newest object used. */
  timestamp: Date;
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
  /**
   * Set when the backup was a Litestream v0.3 one (no TXIDs: `txid` is 0, `plan.files` empty,
   * `files` counts the snapshot and segments applied).
   */
  v3?: V3RestoreInfo;
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
 * A database whose prefix holds only a Litestream v0.3 backup (`generations/`) is restored from
 * that (latest, `at`, or `generation` + `index`); `generation`/`index` always select it.
 *
 * ```ts
 * import { restore } from "./mod.ts";
 * const r = await restore({ name: "app.db", output: "/tmp/app.db", bucket: "file:///backups" });
 * console.log(`restored TXID ${r.txid}`);
 * ```
 */
export async function restore(o: RestoreOptions): Promise<RestoreSummary> {
  const started = Date.now();
  const target = targetOf(o);
  const v3Asked = o.generation !== undefined || o.index !== undefined;
  if (v3Asked) v3TargetOf(o, "");
  const replica = await replicaOf(o);
  const db = DbReplica.of(replica, o.name);
  if (v3Asked) return await restoreV3(replica, db, o, started);
  let r;
  try {
    r = await restoreWithFallback(db, target, resolve(o.output), {
      force: o.force,
      integrity: "full",
      checkRecordedChecksum: o.checkRecordedChecksum,
      replicaRoot: replica.fileRoot,
      onFallback: o.onFallback,
      onProgress: o.onProgress,
    });
  } catch (e) {
    if (e instanceof V3ReplicaError) return await restoreV3(replica, db, o, started);
    throw e;
  }
  return {
    ...r,
    name: o.name,
    replica: replica.url,
    clampedToLatest: r.plan.clampedToLatest,
    durationMs: Date.now() - started,
  };
}

/**
 * The v0.3 target named by `o`: the end of `index`, the moment `at`, or latest. A TXID has no
 * meaning in a v0.3 backup (RestoreError naming `where`); bad generation/index values and an index
 * combined with a time are ConfigErrors.
 */
function v3TargetOf(o: RestoreOptions, where: string): V3Target {
  if (o.generation !== undefined) parseGenerationId(o.generation);
  if (o.index !== undefined) checkIndex(o.index);
  if (o.txid !== undefined) {
    if (o.generation !== undefined || o.index !== undefined) {
      throw new ConfigError(
        "restore: txid is for LTX backups; generation/index for Litestream v0.3",
      );
    }
    throw new RestoreError(
      `${where} is a Litestream v0.3 backup: it has no TXIDs; restore its latest state, a ` +
        "moment (at / --timestamp), or a generation's WAL index",
    );
  }
  if (o.index !== undefined && o.at !== undefined) {
    throw new ConfigError("restore: give index or at, not both");
  }
  if (o.index !== undefined) return { kind: "index", index: o.index };
  const t = targetOf(o);
  return t.kind === "time" ? t : { kind: "latest" };
}

/** Plan and apply a restore from the Litestream v0.3 backup at `db`'s prefix. */
async function restoreV3(
  replica: Replica,
  db: DbReplica,
  o: RestoreOptions,
  started: number,
): Promise<RestoreSummary> {
  const output = resolve(o.output);
  const opts = { force: o.force, replicaRoot: replica.fileRoot };
  await checkRestoreOutput(output, opts);
  const plan = await v3PlanOf(db, o);
  const r = await applyV3Plan(db.storage, plan, output, {
    ...opts,
    integrity: "full",
    onProgress: o.onProgress,
  });
  return {
    txid: 0,
    pageSize: r.pageSize,
    commit: r.commit,
    bytes: r.bytes,
    files: r.files,
    outPath: r.outPath,
    plan: { files: [], txid: 0, pageSize: r.pageSize, clampedToLatest: plan.clampedToLatest },
    fallbacks: [],
    name: o.name,
    replica: replica.url,
    clampedToLatest: plan.clampedToLatest,
    durationMs: Date.now() - started,
    v3: {
      generation: r.generation,
      snapshotIndex: r.snapshotIndex,
      index: r.index,
      offset: r.offset,
      segments: plan.segments.length,
      timestamp: plan.timestamp,
    },
  };
}

async function v3PlanOf(db: DbReplica, o: RestoreOptions): Promise<V3Plan> {
  const target = v3TargetOf(o, db.where);
  const generation = o.generation === undefined ? undefined : parseGenerationId(o.generation);
  return planV3(db.where, await listV3(db.storage, db.prefix), target, generation);
}

/**
 * What a restore of `name` from a Litestream v0.3 backup would apply (snapshot, segments, the
 * index it ends in), without writing anything. Options as for {@link restore}.
 */
export async function restorePlanV3(
  o: ReplicaOptions & TargetOptions & { name: string; generation?: string; index?: number },
): Promise<V3Plan> {
  const replica = await replicaOf(o);
  return await v3PlanOf(DbReplica.of(replica, o.name), { ...o, output: "" });
}

/** The files a restore of `name` at the target would apply, without writing anything. */
export async function restorePlan(
  o: ReplicaOptions & TargetOptions & { name: string },
): Promise<RestorePlan> {
  const replica = await replicaOf(o);
  return await planRestore(DbReplica.of(replica, o.name), targetOf(o));
}
