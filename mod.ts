/**
 * walrust as a library: replicate SQLite databases to a replica and restore them, the same way
 * the CLI does.
 *
 * ```ts
 * import { openReplica, restore } from "./mod.ts";
 * const replica = await openReplica("file:///backups");
 * await restore(replica, "app.db", "/tmp/app.db", { kind: "latest" });
 * ```
 */
export { databasePrefix, openReplica, type Replica } from "./src/storage/open.ts";
export { type DatabaseSpec, Store, type StoreOptions } from "./src/engine/store.ts";
export { Replicator, type ReplicatorOptions, UploadPool } from "./src/engine/db.ts";
export { planRestore, type RestorePlan, type Target } from "./src/restore/plan.ts";
export { applyPlan, type RestoreResult } from "./src/restore/apply.ts";
export { parseTarget } from "./src/restore/time.ts";
export { type LtxSummary, verifyLtx } from "./src/ltx/decoder.ts";
export * from "./src/errors.ts";

import { databasePrefix, type Replica } from "./src/storage/open.ts";
import type { Target } from "./src/restore/plan.ts";
import type { RestoreResult } from "./src/restore/apply.ts";
import { type FallbackInfo, restoreWithFallback } from "./src/restore/run.ts";

/**
 * Restore database `name` from `replica` into `outPath` at `target` (latest, TXID or time),
 * planning around LTX files found corrupt (each reported through `onFallback`).
 */
export async function restore(
  replica: Replica,
  name: string,
  outPath: string,
  target: Target = { kind: "latest" },
  opts: {
    force?: boolean;
    /** Verify the recorded database checksum (default true). */
    checkRecordedChecksum?: boolean;
    onFallback?: (info: FallbackInfo) => void;
  } = {},
): Promise<RestoreResult> {
  const prefix = databasePrefix(replica, name);
  return await restoreWithFallback(replica.storage, replica.kind, prefix, target, outPath, {
    force: opts.force,
    integrity: "full",
    checkRecordedChecksum: opts.checkRecordedChecksum,
    replicaRoot: replica.fileRoot,
    onFallback: opts.onFallback,
  });
}
