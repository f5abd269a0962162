/** `snapshot()`: a level-9 snapshot now, through whichever replication holds the database. */
import { basename, resolve } from "node:path";
import { Replicator, type SnapshotProgress, UploadPool } from "../engine/db.ts";
import { LocalState } from "../engine/localstate.ts";
import { readWatcherInfo, requestSnapshot } from "../engine/requests.ts";
import { isWatched } from "../sqlite/watchlock.ts";
import { resolveSync, type SyncSettings } from "../config/schema.ts";
import { databasePrefix } from "../storage/open.ts";
import { Logger, type LogOptions } from "../observe/log.ts";
import { ConfigError, WalrustError } from "../errors.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";
import { runningReplicator } from "./running.ts";

export type { SnapshotProgress };

/** Options for {@link snapshot}. */
export interface SnapshotOptions extends Partial<ReplicaOptions> {
  /** The database file. */
  path: string;
  /** Its name in the replica (default: the file name). */
  name?: string;
  /** How long to wait for the upload (default 120 000 ms). */
  timeoutMs?: number;
  /** Sync settings when walrust opens the database itself. */
  sync?: Partial<SyncSettings>;
  /** A Logger, or options for one (default: info level, text, to stderr). */
  log?: Logger | LogOptions;
  /**
   * Hears the database read into the snapshot file, then the file's upload (bytes); not called
   * when a running watcher (another process) takes the snapshot.
   */
  onProgress?: SnapshotProgress;
}

/** What a snapshot produced. */
export interface SnapshotResult {
  /** The snapshot's TXID (its key is `1-txid` at level 9). */
  txid: number;
  /** True when a running watcher (another process) took it. */
  viaWatcher: boolean;
}

/**
 * Take a full snapshot of `path` now and wait until it is uploaded: through this process's own
 * replication of it, through a running `walrust watch` (which must replicate to `bucket` if one
 * is given), or directly (then `bucket` is required).
 *
 * ```ts
 * import { snapshot } from "./mod.ts";
 * const { txid } = await snapshot({ path: "/data/app.db", bucket: "file:///backups" });
 * ```
 */
export async function snapshot(o: SnapshotOptions): Promise<SnapshotResult> {
  const path = resolve(o.path);
  const timeoutMs = o.timeoutMs ?? 120_000;
  const mine = runningReplicator(path);
  if (mine) {
    const { txid, uploaded } = await mine.snapshot("requested", o.onProgress);
    await withTimeout(uploaded, timeoutMs);
    return { txid, viaWatcher: false };
  }
  if (isWatched(path)) return await viaWatcher(path, o.bucket, timeoutMs);
  if (o.bucket === undefined) {
    throw new ConfigError(
      "snapshot: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix)",
    );
  }
  const replica = await replicaOf({ ...o, bucket: o.bucket });
  const log = o.log instanceof Logger ? o.log : new Logger(o.log ?? {});
  let r: Replicator;
  try {
    r = await Replicator.open({
      dbPath: path,
      prefix: databasePrefix(replica, o.name ?? basename(path)),
      replica,
      sync: resolveSync(o.sync ?? {}),
      pool: new UploadPool(4),
      log,
    });
  } catch (e) {
    // A watcher started between the check and the open.
    if (e instanceof ConfigError && isWatched(path)) {
      return await viaWatcher(path, o.bucket, timeoutMs);
    }
    throw e;
  }
  try {
    const { txid } = await r.snapshot("requested", o.onProgress);
    if (!(await r.drainUploads(Date.now() + timeoutMs))) {
      throw new WalrustError(
        `snapshot: uploads did not finish within ${timeoutMs / 1000}s; they stay queued locally`,
      );
    }
    return { txid, viaWatcher: false };
  } finally {
    await r.stop();
    r.release();
  }
}

/**
 * A watcher holds the database: ask it (through its state directory) and wait until the
 * snapshot is uploaded. A different replica than the watcher's is refused, not silently ignored.
 */
async function viaWatcher(
  path: string,
  bucket: ReplicaOptions["bucket"] | undefined,
  timeoutMs: number,
): Promise<SnapshotResult> {
  const state = new LocalState(path);
  const info = await readWatcherInfo(state);
  const url = typeof bucket === "string" ? bucket : bucket?.url;
  if (url !== undefined && info && !sameReplica(url, info.replica)) {
    throw new ConfigError(
      `snapshot: ${path} is replicated by a running watcher (pid ${info.pid}) to ` +
        `${info.replica}, not ${url}; run snapshot without --bucket to snapshot there, or stop ` +
        "the watcher first",
    );
  }
  const answer = await requestSnapshot(state, timeoutMs);
  if (!answer) {
    throw new WalrustError(
      `snapshot: the running watcher did not upload a snapshot within ${timeoutMs / 1000}s`,
    );
  }
  if ("error" in answer) throw new WalrustError(`snapshot: the watcher failed: ${answer.error}`);
  return { txid: answer.txid, viaWatcher: true };
}

/** The same replica, whether given as file:///path, a plain path, or with a trailing slash. */
function sameReplica(a: string, b: string): boolean {
  const norm = (u: string) => {
    const s = u.replace(/\/+$/, "");
    if (s.startsWith("file://")) return resolve(s.slice("file://".length));
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return resolve(s);
    return s;
  };
  return norm(a) === norm(b);
}

async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new WalrustError(`snapshot: not uploaded within ${ms / 1000}s`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
