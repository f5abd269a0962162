/** Replications running in this process, by database path (for `snapshot()` to find them). */
import type { Replicator } from "../engine/db.ts";

const running = new Map<string, Replicator>();

/** Note a database replicated by this process. */
export function register(path: string, r: Replicator): void {
  running.set(path, r);
}

/** Forget it (its replication stopped). */
export function unregister(path: string): void {
  running.delete(path);
}

/** The replicator of `path` in this process, if any. */
export function runningReplicator(path: string): Replicator | undefined {
  return running.get(path);
}
