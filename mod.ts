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
import { planRestore, type Target } from "./src/restore/plan.ts";
import { applyPlan, type RestoreResult } from "./src/restore/apply.ts";

/** Restore database `name` from `replica` into `outPath` at `target` (latest, TXID or time). */
export async function restore(
  replica: Replica,
  name: string,
  outPath: string,
  target: Target = { kind: "latest" },
  opts: { force?: boolean } = {},
): Promise<RestoreResult> {
  const prefix = databasePrefix(replica, name);
  const plan = await planRestore(replica.storage, replica.kind, prefix, target);
  return await applyPlan(replica.storage, plan, outPath, { force: opts.force, integrity: "full" });
}
