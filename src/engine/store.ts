/**
 * All replicated databases of one process: one scheduler, one shared file watcher over the
 * databases' folders, one upload pool, and the shutdown drain.
 */
import { Replicator, type ReplicatorOptions, UploadPool } from "./db.ts";
import type { Logger } from "../observe/log.ts";

/** One database to replicate, fully resolved. */
export type DatabaseSpec = Omit<ReplicatorOptions, "pool" | "log">;

/** Options for the store. */
export interface StoreOptions {
  databases: DatabaseSpec[];
  log: Logger;
  uploadConcurrency: number;
  /** Use Deno.watchFs for low-latency change detection (polling always runs too). */
  watch?: boolean;
}

/** Runs every database's sync loop from one scheduler. */
export class Store {
  readonly replicators: Replicator[] = [];
  #o: StoreOptions;
  #pool: UploadPool;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #byWal = new Map<string, Replicator>();
  #specs = new Map<Replicator, DatabaseSpec>();
  #pending = new Map<Replicator, ReturnType<typeof setTimeout>>(); // per-database deadline timers while dirty
  #running = new Set<Replicator>();
  #stopped = false;

  constructor(o: StoreOptions) {
    this.#o = o;
    this.#pool = new UploadPool(Math.max(1, o.uploadConcurrency));
  }

  /** Open every database (fails fast on the first error) and start the scheduler. */
  async start(): Promise<void> {
    for (const spec of this.#o.databases) {
      const r = await Replicator.open({ ...spec, pool: this.#pool, log: this.#o.log });
      this.replicators.push(r);
      this.#specs.set(r, spec);
      this.#byWal.set(`${spec.dbPath}-wal`, r);
    }
    if (this.#o.watch !== false) this.#startWatcher();
    this.#schedule();
  }

  #startWatcher(): void {
    const dirs = [
      ...new Set(this.#o.databases.map((d) => d.dbPath.slice(0, d.dbPath.lastIndexOf("/")) || "/")),
    ];
    try {
      this.#watcher = Deno.watchFs(dirs, { recursive: false });
    } catch (e) {
      this.#o.log.warn("file watching unavailable; polling only", { error: String(e) });
      return;
    }
    (async () => {
      try {
        for await (const ev of this.#watcher!) {
          for (const p of ev.paths) {
            const r = this.#byWal.get(p);
            if (r) this.#dirty(r);
          }
        }
      } catch {
        // The watcher closed (shutdown) or failed; polling continues.
      }
    })();
  }

  /** A change was seen: sync now if the batching window allows, else at its end. */
  #dirty(r: Replicator): void {
    if (this.#stopped || this.#pending.has(r)) return;
    const interval = this.#specs.get(r)!.sync.walSyncIntervalMs;
    const wait = Math.max(0, r.lastSyncAt + interval - Date.now());
    this.#pending.set(
      r,
      setTimeout(() => {
        this.#pending.delete(r);
        this.#run(r);
      }, wait),
    );
  }

  #run(r: Replicator): void {
    if (this.#stopped || this.#running.has(r)) return;
    this.#running.add(r);
    r.sync().catch((e) => {
      this.#o.log.error("sync failed; will retry", {
        db: this.#specs.get(r)!.dbPath,
        error: e instanceof Error ? e.message : String(e),
      });
    }).finally(() => this.#running.delete(r));
  }

  /** The polling fallback and periodic work: one timer for all databases. */
  #schedule(): void {
    const tick = Math.min(1000, ...this.#o.databases.map((d) => d.sync.walSyncIntervalMs));
    const loop = async () => {
      if (this.#stopped) return;
      const now = Date.now();
      for (const r of this.replicators) {
        const interval = this.#specs.get(r)!.sync.walSyncIntervalMs;
        r.kickUpload();
        if (this.#running.has(r) || this.#pending.has(r)) continue;
        let changed = false;
        try {
          changed = await r.walChanged();
        } catch { /* the sync will report it */ }
        // Periodic sync also drives checkpoints and snapshots when nothing changed.
        if (changed) this.#dirty(r);
        else if (now - r.lastSyncAt >= Math.max(interval, 1000)) this.#run(r);
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
    try {
      this.#watcher?.close();
    } catch { /* already closed */ }
    await this.syncAll();
    await Promise.all(this.replicators.map((r) => r.stop().catch(() => {})));
    const deadline = Date.now() + drainMs;
    const results = await Promise.all(this.replicators.map((r) => r.drainUploads(deadline)));
    return results.every(Boolean);
  }
}
