/**
 * walrust as a library: continuous replication of SQLite databases (WAL mode) to object storage,
 * and point-in-time restore from it, byte-compatible with Litestream v0.5. The `walrust` CLI is
 * built on exactly these functions.
 *
 * ```ts
 * import { replicate, restore } from "./mod.ts";
 *
 * const r = await replicate({ databases: ["/data/app.db"], bucket: "file:///backups" });
 * // ... the application writes /data/app.db ...
 * await r.stop(); // syncs what is committed, uploads it, gives every lock back
 *
 * const out = await restore({ name: "app.db", output: "/tmp/app.db", bucket: "file:///backups" });
 * console.log(`restored TXID ${out.txid}`);
 * ```
 *
 * Errors are the typed classes below; each carries the CLI's exit code (`exitCode`).
 *
 * @module
 */
export * from "./src/api.ts";
export {
  DEFAULT_MAINTENANCE,
  DEFAULT_RETENTION,
  DEFAULT_SYNC,
  type MaintenanceSettings,
  type RetentionSettings,
  type RetrySettings,
  type SyncSettings,
} from "./src/config/schema.ts";
export { Logger, type LogLevel, type LogOptions } from "./src/observe/log.ts";
export {
  openReplica,
  type Replica,
  type ResilienceOptions,
  type S3Overrides,
} from "./src/storage/open.ts";
export type { ByteRange, ObjectInfo, Storage } from "./src/storage/port.ts";
export type { AgeKeys } from "./src/storage/age.ts";
export type { LayoutKind } from "./src/storage/layout.ts";
export type { ResilienceEvents } from "./src/storage/resilient.ts";
export type { FallbackInfo, RunResult } from "./src/restore/run.ts";
export type { RestoreResult } from "./src/restore/apply.ts";
export type { LtxFileRef, RestorePlan, Target } from "./src/restore/plan.ts";
export type { ReplicatorEvent } from "./src/engine/db.ts";
export {
  type LtxSummary,
  type LtxTrailer,
  type PageIndexEntry,
  verifyLtx,
} from "./src/ltx/decoder.ts";
export type { LtxHeader } from "./src/ltx/header.ts";
export * from "./src/errors.ts";
