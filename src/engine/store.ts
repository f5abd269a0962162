/**
 * All replicated databases of one process: one scheduler polling every database's files with
 * `stat`, one upload pool, and the shutdown drain.
 *
 * Never `Deno.watchFs` here: its watcher thread opens and closes the files in the folders it
 * watches, and closing any descriptor on a database drops the POSIX locks SQLite holds through
 * its own, after which the app's last connection to close deletes the WAL under us
 * (docs/decisions.md). A path `stat` opens nothing.
 */
import { Replicator, type ReplicatorOptions, UploadPool } from "./db.ts";
import type { Logger } from "../observe/log.ts";
import { DatabaseError } from "../errors.ts";

/** One database to replicate, fully resolved. */
export type DatabaseSpec = Omit<ReplicatorOptions, "pool" | "log" | "maintenancePool">;

/** Maintenance rounds (compaction, retention, validation) running at once across databases. */
const MAINTENANCE_CONCURRENCY = 2;

/** Options for the store. */
export interface StoreOptions {
  databases: DatabaseSpec[];
  log: Logger;
  uploadConcurrency: number;
}

/** Runs every database's sync loop from one scheduler. */
export class Store {
  readonly replicators: Replicator[] = [];
  #o: StoreOptions;
  #pool: UploadPool;
  #maintenancePool = new UploadPool(MAINTENANCE_CONCURRENCY);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #specs = new Map<Replicator, DatabaseSpec>();
  #pending = new Map<Replicator, ReturnType<typeof setTimeout>>(); // batching-window timers
  #running = new Set<Replicator>();
  #reported = new Set<Replicator>();
  #stopped = false;
  #allFailed: (e: DatabaseError) => void = () => {};
  /** Rejects when every database stopped replicating (deleted, files replaced): exit 3. */
  readonly failed: Promise<never>;

  constructor(o: StoreOptions) {
    this.#o = o;
    this.#pool = new UploadPool(Math.max(1, o.uploadConcurrency));
    this.failed = new Promise<never>((_, reject) => (this.#allFailed = reject));
    this.failed.catch(() => {});
  }

  /** Open every database (fails fast on the first error) and start the scheduler. */
  async start(): Promise<void> {
    try {
      for (const spec of this.#o.databases) {
        const r = await this.#open(spec);
        this.replicators.push(r);
        this.#specs.set(r, spec);
      }
    } catch (e) {
      // One database failed to start: the ones already open give their locks back.
      for (const r of this.replicators) {
        await r.stop();
        r.release();
      }
      throw e;
    }
    this.#schedule();
  }

  /**
   * A change was seen: sync now if the batching window allows, else at its end. While the
   * database's uploads are behind (flowing, but files queued), look again an interval later:
   * the frames wait in the WAL (our read lock keeps them) and one sync then takes them all, so
   * a backlog shrinks instead of growing by one file per interval when there are more databases
   * than the machine can upload one file each per interval. Checkpoints and snapshots do not
   * wait (they come through `due`), nor do syncs while uploads fail (files keep the frames).
   */
  #dirty(r: Replicator): void {
    if (this.#stopped || this.#pending.has(r)) return;
    const interval = this.#specs.get(r)!.sync.walSyncIntervalMs;
    const wait = Math.max(0, r.lastSyncAt + interval - Date.now());
    this.#after(r, wait, () => {
      if (r.uploadsBehind) this.#after(r, Math.max(interval, 20), () => this.#dirty(r));
      else this.#run(r);
    });
  }

  /** Run `fn` for `r` in `ms` (the one pending timer per database; stop clears them). */
  #after(r: Replicator, ms: number, fn: () => void): void {
    this.#pending.set(
      r,
      setTimeout(() => {
        this.#pending.delete(r);
        if (!this.#stopped) fn();
      }, ms),
    );
  }

  #run(r: Replicator): void {
    if (this.#stopped || this.#running.has(r)) return;
    this.#running.add(r);
    r.sync().catch((e) => {
      r.stats.syncErrors++;
      const spec = this.#specs.get(r)!;
      this.#o.log.error("sync failed; will retry", {
        db: spec.dbPath,
        error: e instanceof Error ? e.message : String(e),
      });
      spec.onActivity?.({
        type: "error",
        database: r.name,
        error: e instanceof Error ? e : new Error(String(e)),
      });
    }).finally(() => {
      this.#running.delete(r);
      this.#checkFailed(r);
    });
  }

  #checkFailed(r: Replicator): void {
    if (!r.failed || this.#reported.has(r)) return;
    this.#reported.add(r);
    const spec = this.#specs.get(r);
    if (spec?.discovered && r.gone) {
      // A database of a watched directory was deleted: it simply leaves the set.
      this.#drop(r);
      return;
    }
    if (this.replicators.length > 0 && this.replicators.every((x) => x.failed)) {
      this.#allFailed(
        new DatabaseError(
          this.replicators.length === 1
            ? r.failed.message
            : `every database stopped replicating; last: ${r.failed.message}`,
        ),
      );
    }
  }

  /**
   * Start replicating one more database while running (directory watching). Throws what
   * Replicator.open throws (a file that is not a WAL database yet, say); nothing is kept then.
   */
  async add(spec: DatabaseSpec): Promise<Replicator> {
    if (this.#stopped) throw new DatabaseError("replication is stopping; not adding databases");
    const r = await this.#open(spec);
    this.replicators.push(r);
    this.#specs.set(r, spec);
    this.onChange?.();
    return r;
  }

  /** Open one database with the store's shared pools and logger. */
  #open(spec: DatabaseSpec): Promise<Replicator> {
    return Replicator.open({
      ...spec,
      pool: this.#pool,
      log: this.#o.log,
      maintenancePool: this.#maintenancePool,
    });
  }

  /** Called when a database joins or leaves the set. */
  onChange?: () => void;

  #drop(r: Replicator): void {
    const i = this.replicators.indexOf(r);
    if (i >= 0) this.replicators.splice(i, 1);
    clearTimeout(this.#pending.get(r));
    this.#pending.delete(r);
    this.#specs.delete(r);
    this.#reported.delete(r);
    // Its files go once its last operation finished: a deleted database keeps nothing open.
    r.stop().then(() => r.dispose()).catch(() => {});
    this.onChange?.();
  }

  /** The poll: one timer for all databases; a `stat` of each `-wal` per tick. */
  #schedule(): void {
    const tick = Math.min(1000, ...this.#o.databases.map((d) => d.sync.walSyncIntervalMs));
    const loop = () => {
      if (this.#stopped) return;
      const now = Date.now();
      for (const r of this.replicators) {
        r.kickUpload();
        r.maintain(now);
        if (this.#running.has(r) || this.#pending.has(r)) continue;
        const seen = r.poll(now);
        if (seen === "changed") this.#dirty(r);
        else if (seen === "due") this.#run(r);
      }
      if (!this.#stopped) this.#timer = setTimeout(loop, tick);
    };
    this.#timer = setTimeout(loop, tick);
  }

  /** Sync every database once now and wait (used by --once and at shutdown). */
  async syncAll(): Promise<void> {
    // Replicator.sync queues behind a sync already running: no need to wait for it here.
    await Promise.all(this.replicators.map(async (r) => {
      try {
        await r.sync();
      } catch (e) {
        this.#o.log.error("final sync failed", {
          db: this.#specs.get(r)!.dbPath,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }));
  }

  /** Stop scheduling, sync once more, and upload what is pending within `drainMs`. */
  async stop(drainMs: number): Promise<boolean> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const t of this.#pending.values()) clearTimeout(t);
    this.#pending.clear();
    await this.syncAll();
    await Promise.all(this.replicators.map((r) => r.stop().catch(() => {})));
    const deadline = Date.now() + drainMs;
    const results = await Promise.all(this.replicators.map((r) => r.drainUploads(deadline)));
    for (const r of this.replicators) {
      r.logSummary();
      r.release();
    }
    return results.every(Boolean);
  }
}
