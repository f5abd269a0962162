/** `follow()`: a read replica that keeps a local copy of a replicated database current. */
import { resolve } from "node:path";
import { Follower, type FollowerStatus } from "../follower/follow.ts";
import { DbReplica } from "../storage/replica.ts";
import {
  ConfigError,
  DatabaseError,
  IntegrityError,
  RestoreError,
  StorageError,
  WalrustError,
} from "../errors.ts";
import { Logger, type LogOptions } from "../observe/log.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";
import { restore } from "./restore.ts";

export type { FollowerStatus };

/** Options for {@link follow}. */
export interface FollowOptions extends ReplicaOptions {
  /** The database's name in the replica (e.g. "app.db"). */
  name: string;
  /** The local copy readers open (created by the first bootstrap). */
  local: string;
  /** How often to ask the replica for new files (ms; default 1000). */
  intervalMs?: number;
  /** A Logger, or options for one (default: info level, text, to stderr). */
  log?: Logger | LogOptions;
  /**
   * While no level-0 file follows the applied TXID, how often higher levels and snapshots are
   * looked at (compacted files, gaps, a replica that went backwards); ms, default 5000.
   */
  checkEveryMs?: number;
  /** Give up waiting for a first backup (or a reachable replica) at start. */
  signal?: AbortSignal;
}

/** A running follower. */
export interface Following {
  /** Where the local copy is. */
  status(): FollowerStatus;
  /** Poll now (besides the interval); resolves to the batches applied. */
  pollNow(): Promise<number>;
  /** Stop polling; the local copy stays as it is (consistent). */
  stop(): Promise<void>;
  /** Rejects when following stopped for good (the copy was written by someone else: exit 5). */
  readonly failed: Promise<never>;
}

/**
 * Follow database `name` of a replica into the local file `local`: bootstrap it (restore latest)
 * when it does not exist, then apply each new file as one atomic batch. Readers open `local`
 * read-only and see one committed state or the next, never a mix.
 *
 * ```ts
 * import { follow } from "./mod.ts";
 * const f = await follow({ name: "app.db", bucket: "s3://backups/prod", local: "/srv/replica.db" });
 * ```
 */
export async function follow(o: FollowOptions): Promise<Following> {
  const intervalMs = o.intervalMs ?? 1000;
  if (!(intervalMs > 0)) {
    throw new ConfigError(`follow: interval must be positive, got ${intervalMs}`);
  }
  const replica = await replicaOf(o);
  const log = o.log instanceof Logger ? o.log : new Logger(o.log ?? {});
  const local = resolve(o.local);
  const follower = new Follower({
    replica: DbReplica.of(replica, o.name),
    localPath: local,
    source: `${replica.url.replace(/\/+$/, "")}/${o.name}`,
    log,
    checkEveryMs: o.checkEveryMs,
    bootstrap: async (path) => {
      const r = await restore({ bucket: replica, name: o.name, output: path });
      return { txid: r.txid };
    },
  });
  // A follower may start before the primary's first upload, or during an outage: wait for it.
  for (let waiting = false;;) {
    try {
      await follower.start();
      break;
    } catch (e) {
      if (!(e instanceof RestoreError || e instanceof StorageError) || o.signal?.aborted) throw e;
      if (!waiting) {
        log.warn("no backup to follow yet (or the replica cannot be read); waiting", {
          db: local,
          error: e.message,
        });
        waiting = true;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, intervalMs);
        o.signal?.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
      });
    }
  }

  let failWith: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (failWith = reject));
  failed.catch(() => {}); // observed through `failed` by whoever cares
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<number> | undefined;
  let failing = false;
  const pollOnce = (): Promise<number> => {
    running ??= follower.poll().then((n) => {
      if (failing) log.info("following resumed", { db: local });
      failing = false;
      return n;
    }).finally(() => (running = undefined));
    return running;
  };
  const loop = async () => {
    if (stopped) return;
    try {
      await pollOnce();
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      // A copy someone else wrote, or a local file that cannot be used: stop for good.
      if (
        e instanceof IntegrityError || e instanceof DatabaseError || !(e instanceof WalrustError)
      ) {
        stopped = true;
        log.error("following stopped", { db: local, error: err.message });
        failWith(err);
        return;
      }
      if (!failing) {
        log.warn("following: the replica could not be read; retrying", {
          db: local,
          error: err.message,
        });
      }
      failing = true;
    }
    if (!stopped) timer = setTimeout(loop, intervalMs);
  };
  timer = setTimeout(loop, 0);
  return {
    status: () => follower.status(),
    pollNow: pollOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => {});
    },
    failed,
  };
}
