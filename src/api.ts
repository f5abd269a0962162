/**
 * The walrust library: `replicate`, `restore`, `snapshot`, `list`. The CLI calls exactly these
 * and adds only argument parsing, output and exit codes.
 */
export {
  type DatabaseOptions,
  type DatabaseStatus,
  replicate,
  type ReplicateOptions,
  type Replication,
  type ReplicationEvent,
  type ReplicatorStats,
  type StorageStatus,
} from "./api/replicate.ts";
export type { BreakerState, StorageStats } from "./storage/resilient.ts";
export {
  restore,
  type RestoreOptions,
  restorePlan,
  type RestoreSummary,
  targetOf,
  type TargetOptions,
  type V3RestoreInfo,
} from "./api/restore.ts";
export {
  snapshot,
  type SnapshotOptions,
  type SnapshotProgress,
  type SnapshotResult,
} from "./api/snapshot.ts";
export {
  type DatabaseSummary,
  type FileSummary,
  type GenerationSummary,
  list,
  listFiles,
} from "./api/list.ts";
export { replicaOf, type ReplicaOptions } from "./api/replica.ts";
export { prune, type PruneOptions, type PruneReport } from "./api/prune.ts";
export {
  type FallbackOutcome,
  type RestorablePoint,
  verify,
  type VerifyOptions,
  type VerifyProblem,
  type VerifyReport,
} from "./api/verify.ts";
export { follow, type FollowerStatus, type Following, type FollowOptions } from "./api/follow.ts";
