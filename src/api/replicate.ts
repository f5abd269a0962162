/** `replicate()`: continuous replication of databases in this process, with a handle to stop it. */
import { basename, resolve } from "node:path";
import { Store } from "../engine/store.ts";
import type { ActivityEvent, Replicator, ReplicatorEvent, ReplicatorStats } from "../engine/db.ts";
import { type BreakerState, ResilientStorage, type StorageStats } from "../storage/resilient.ts";
import {
  type MaintenanceSettings,
  resolveCache,
  resolveMaintenance,
  resolveRetention,
  resolveSync,
  type RetentionSettings,
  type SyncSettings,
} from "../config/schema.ts";
import { databasePrefix, withAge } from "../storage/open.ts";
import { type AgeKeys, AgeStorage } from "../storage/age.ts";
import { Logger, type LogOptions } from "../observe/log.ts";
import { ConfigError, WalrustError } from "../errors.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";
import { register, unregister } from "./running.ts";
import { restoredChecksum } from "./validate.ts";

/** One database, with its own settings. */
export interface DatabaseOptions {
  /** Path of the SQLite database (WAL mode). */
  path: string;
  /** Its name in the replica (default: the file name). */
  name?: string;
  /** Settings over the replication's `sync`. */
  sync?: Partial<SyncSettings>;
  /** Retention policy over the replication's `retention`. */
  retention?: Partial<RetentionSettings>;
  /** age keys of this database's objects, replacing the replication's (`{recipients: []...}`: plain). */
  age?: AgeKeys;
}

/** Options for {@link replicate}. Everything but `databases` and `bucket` has a default. */
export interface ReplicateOptions extends ReplicaOptions {
  /** Database paths, or entries with per-database settings. */
  databases: (string | DatabaseOptions)[];
  /** Sync settings for every database (defaults: DEFAULT_SYNC, e.g. a 1 s batching window). */
  sync?: Partial<SyncSettings>;
  /**
   * Compaction levels and retention inside the replication (default: Litestream's levels 30 s,
   * 5 min, 1 h; retention after each snapshot and hourly).
   */
  maintenance?: Partial<MaintenanceSettings>;
  /** Retention policy (default: 24 h PITR window, 24 hourly, 7 daily, 12 weekly, 12 monthly). */
  retention?: Partial<RetentionSettings>;
  /** Upload queue size above which checkpoints pause (default 5 GiB). */
  cacheMaxBytes?: number;
  /** Uploads in flight across all databases (default 4). */
  uploadConcurrency?: number;
  /** A Logger, or options for one (default: info level, text, to stderr). */
  log?: Logger | LogOptions;
  /** Aborting it stops the replication (as `stop()` does). */
  signal?: AbortSignal;
  /**
   * Directory watching: called every `discoverIntervalMs` for the databases to replicate now.
   * New ones join (a file that is not a WAL database yet is retried at the next call); a
   * discovered database whose file is deleted leaves quietly. With it, `databases` may be empty.
   */
  discover?: () => Promise<(string | DatabaseOptions)[]>;
  /** How often `discover` is called (default 2000 ms). */
  discoverIntervalMs?: number;
  /** How long `stop()` keeps uploading by default (default 10 000 ms). */
  drainMs?: number;
  /** Alerts (the CLI's webhooks): called once per state change, never awaited. */
  notify?: (
    event: ReplicatorEvent,
    p: { database: string; error?: string; attempts?: number; context?: Record<string, unknown> },
  ) => void;
}

/** Where one database stands. */
export interface DatabaseStatus {
  /** Absolute path of the database. */
  path: string;
  /** Its name in the replica. */
  name: string;
  /** TXID of the newest local level-0 file. */
  txid: number;
  /** Highest TXID confirmed in the replica. */
  replicaTXID: number;
  /** Files waiting for upload. */
  pendingUploads: number;
  /** When the last sync ran (undefined before the first). */
  lastSyncAt?: Date;
  /** Why this database stopped replicating, if it did. */
  failed?: string;
  /** Bytes waiting for upload. */
  pendingBytes: number;
  /** Size of the database file (bytes). */
  dbBytes: number;
  /** Size of its `-wal` file (bytes). */
  walBytes: number;
  /** Age of the oldest change not in the replica yet (seconds; 0 when caught up). */
  lagSeconds: number;
  /** When the next scheduled snapshot is due, if snapshots are scheduled. */
  nextSnapshotAt?: Date;
  /** Counters since the start (syncs, checkpoints, compactions, validations, ...). */
  stats: Readonly<ReplicatorStats>;
}

/** The replica storage as this replication sees it. */
export interface StorageStatus {
  /** The replica, as a URL. */
  url: string;
  /** Circuit breaker state; "closed" when there is no breaker. */
  breaker: BreakerState;
  /** Requests, retries and failures by operation; the last success. */
  stats: Readonly<StorageStats>;
}

export type { ReplicatorStats };

/** The events a replication reports. */
export type ReplicationEvent = ActivityEvent;

/** A running replication. */
export interface Replication {
  /** Absolute paths of the databases. */
  readonly databases: readonly string[];
  /** Per-database position, replica position and queue. */
  status(): DatabaseStatus[];
  /** The replica storage: breaker state and request counts. */
  storage(): StorageStatus;
  /** A level-9 snapshot of one database now; resolves once it is uploaded. */
  snapshot(path: string): Promise<{ txid: number }>;
  /** Sync every database once now. */
  syncNow(): Promise<void>;
  /**
   * Apply each database's retention policy now, after its queued uploads (whether or not
   * retention runs on its own schedule); resolves to the number of files deleted.
   */
  enforceRetention(): Promise<number>;
  /**
   * Stop: sync what is committed, upload within `drainMs`, give every lock back. Resolves true
   * when everything was uploaded (the rest stays queued on disk for the next start).
   */
  stop(opts?: { drainMs?: number }): Promise<boolean>;
  /** Listen to `sync`, `snapshot` or `error` events; returns the function that unsubscribes. */
  on<T extends ReplicationEvent["type"]>(
    type: T,
    fn: (e: Extract<ReplicationEvent, { type: T }>) => void,
  ): () => void;
  /** Rejects (DatabaseError, exit 3) when every database stopped replicating. */
  readonly failed: Promise<never>;
}

/**
 * Replicate databases continuously until `stop()` (or `signal`).
 *
 * ```ts
 * import { replicate } from "./mod.ts";
 * const r = await replicate({ databases: ["/data/app.db"], bucket: "file:///backups" });
 * r.on("sync", (e) => console.log(e.database, "at TXID", e.txid));
 * // ... later
 * await r.stop();
 * ```
 */
export async function replicate(o: ReplicateOptions): Promise<Replication> {
  if (o.databases.length === 0 && !o.discover) {
    throw new ConfigError("replicate: no databases given");
  }
  const replica = await replicaOf(o);
  const log = o.log instanceof Logger ? o.log : new Logger(o.log ?? {});
  const listeners = new Set<(e: ReplicationEvent) => void>();
  const emit = (e: ReplicationEvent) => {
    for (const fn of listeners) {
      try {
        fn(e);
      } catch { /* a listener's failure is its own */ }
    }
  };
  const maintenance = resolveMaintenance(o.maintenance ?? {});
  const specOf = async (d: string | DatabaseOptions, discovered = false) => {
    const db: DatabaseOptions = typeof d === "string" ? { path: d } : d;
    const path = resolve(db.path);
    const name = db.name ?? basename(path);
    return {
      dbPath: path,
      prefix: databasePrefix(replica, name),
      name,
      replica: db.age ? await withAge(replica, db.age) : replica,
      discovered,
      sync: resolveSync(o.sync ?? {}, db.sync ?? {}),
      maintenance,
      retention: resolveRetention(o.retention, db.retention),
      validate: restoredChecksum,
      cacheMaxBytes: o.cacheMaxBytes ?? resolveCache().maxSize,
      notify: o.notify,
      onActivity: emit,
    };
  };
  const specs = await Promise.all(o.databases.map((d) => specOf(d)));
  const store = new Store({ databases: specs, log, uploadConcurrency: o.uploadConcurrency ?? 4 });
  await store.start();
  const byPath = new Map<string, Replicator>(
    store.replicators.map((r, i) => [specs[i].dbPath, r]),
  );
  const pathOf = new Map<Replicator, string>([...byPath].map(([p, r]) => [r, p]));
  store.onChange = () => {
    // A discovered database that was deleted left the store: forget it here too.
    for (const [path, r] of byPath) {
      if (!store.replicators.includes(r)) {
        byPath.delete(path);
        pathOf.delete(r);
        unregister(path);
      }
    }
  };
  let stopping: Promise<boolean> | undefined;
  const discovery = o.discover
    ? startDiscovery(o.discover, o.discoverIntervalMs ?? 2000)
    : undefined;
  const handle: Replication = {
    get databases() {
      return [...byPath.keys()];
    },
    status: () =>
      store.replicators.map((r) => ({
        path: pathOf.get(r) ?? "",
        name: r.name,
        txid: r.txid,
        replicaTXID: r.remoteTXID,
        pendingUploads: r.pendingUploads,
        lastSyncAt: r.lastSyncAt ? new Date(r.lastSyncAt) : undefined,
        failed: r.failed?.message,
        pendingBytes: r.pendingBytes,
        dbBytes: r.dbSize,
        walBytes: r.walSize,
        lagSeconds: r.lagSeconds(),
        nextSnapshotAt: r.nextSnapshotAt !== undefined ? new Date(r.nextSnapshotAt) : undefined,
        stats: r.stats,
      })),
    storage: () => {
      const st = replica.storage instanceof AgeStorage ? replica.storage.inner : replica.storage;
      const resilient = st instanceof ResilientStorage ? st : undefined;
      return {
        url: replica.url,
        breaker: resilient?.breaker?.state ?? "closed",
        stats: resilient?.stats ?? { requests: {}, retries: {}, failures: {} },
      };
    },
    async snapshot(path: string) {
      const r = byPath.get(resolve(path));
      if (!r) throw new ConfigError(`snapshot: ${path} is not part of this replication`);
      const { txid, uploaded } = await r.snapshot("requested");
      await uploaded;
      return { txid };
    },
    syncNow: () => store.syncAll(),
    async enforceRetention() {
      let deleted = 0;
      for (const r of store.replicators) deleted += await r.enforceRetention();
      return deleted;
    },
    stop(opts = {}) {
      stopping ??= (async () => {
        await discovery?.stop();
        try {
          return await store.stop(opts.drainMs ?? o.drainMs ?? 10_000);
        } finally {
          for (const path of byPath.keys()) unregister(path);
        }
      })();
      return stopping;
    },
    on(type, fn) {
      const f = (e: ReplicationEvent) => {
        if (e.type === type) fn(e as never);
      };
      listeners.add(f);
      return () => listeners.delete(f);
    },
    failed: store.failed,
  };
  for (const [path, r] of byPath) register(path, r);
  o.signal?.addEventListener("abort", () => handle.stop(), { once: true });
  if (o.signal?.aborted) handle.stop();
  return handle;

  /** Poll `discover` and add what it finds; a file not ready yet (not WAL) is tried again. */
  function startDiscovery(
    discover: () => Promise<(string | DatabaseOptions)[]>,
    everyMs: number,
  ): { stop(): Promise<void> } {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let running: Promise<void> = Promise.resolve();
    const notReady = new Map<string, string>(); // path -> last reason, logged once
    const round = async () => {
      let found: (string | DatabaseOptions)[];
      try {
        found = await discover();
      } catch (e) {
        log.warn("directory scan failed; retrying", { error: messageOf(e) });
        return;
      }
      for (const d of found) {
        if (stopped) return;
        // Known ones first: a spec (and its age keys' check) only for a new database.
        if (byPath.has(resolve(typeof d === "string" ? d : d.path))) continue;
        const spec = await specOf(d, true);
        try {
          const r = await store.add(spec);
          byPath.set(spec.dbPath, r);
          pathOf.set(r, spec.dbPath);
          register(spec.dbPath, r);
          notReady.delete(spec.dbPath);
          log.info("replicating a new database", { db: spec.dbPath, name: spec.name });
        } catch (e) {
          if (!(e instanceof WalrustError)) throw e;
          if (notReady.get(spec.dbPath) !== e.message) {
            notReady.set(spec.dbPath, e.message);
            log.info("found a database not ready to replicate yet; will retry", {
              db: spec.dbPath,
              reason: e.message,
            });
          }
        }
      }
    };
    const loop = () => {
      if (stopped) return;
      running = round().catch((e) => log.error("directory scan failed", { error: messageOf(e) }))
        .finally(() => {
          if (!stopped) timer = setTimeout(loop, everyMs);
        });
    };
    timer = setTimeout(loop, everyMs);
    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        await running;
      },
    };
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
