/**
 * One replicated database: turns committed WAL frames into level-0 LTX files in the local state
 * directory, owns checkpoints, takes snapshots, and uploads the queue in TXID order.
 *
 * Invariants:
 * - An LTX file is durable locally before the position advances past its frames and before any
 *   checkpoint may backfill them.
 * - "Pinned": the read lock is (re)taken only under our write barrier right after every
 *   committed frame was copied, and held from then on. A WAL restart can then only reset frames
 *   we copied (SQLite restarts only a wholly backfilled WAL, and our read lock stops the
 *   backfill of anything newer), and the database file never holds a page newer than our
 *   position (so the previous version of any page is in the WAL index or the file).
 * - The watched files are opened once and never closed (files.ts): closing any descriptor on
 *   them drops SQLite's POSIX locks; closing a connection may delete the WAL.
 * - The replica is the truth: uploads start only after the replica was compared with local state
 *   (reconcile.ts); a replica that is ahead, diverged or lost files gets a new snapshot under a
 *   TXID above everything in it.
 */
import { readWalHeader, scanWal, type WalHeader, type WalScan } from "../sqlite/wal.ts";
import { formatHex64 } from "../ltx/names.ts";
import type { MaintenanceSettings, RetentionSettings, SyncSettings } from "../config/schema.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import { isEncrypted, type Replica } from "../storage/open.ts";
import { canRead, checkObjectEncryption } from "../storage/age.ts";
import { DbReplica } from "../storage/replica.ts";
import { DatabaseError, NotFoundError, StorageError, WalrustError } from "../errors.ts";
import type { Logger } from "../observe/log.ts";
import { type LocalMeta, LocalState, recoverChecksums } from "./localstate.ts";
import { PageSource } from "./pagesource.ts";
import { UploadPool, UploadQueue } from "./uploader.ts";
import { type FileChange, WatchedFiles } from "./files.ts";
import { Position, resumePosition, WAL_HEADER_SIZE } from "./position.ts";
import { reconcile } from "./reconcile.ts";
import { writeFullCopies } from "./snapshot.ts";
import { IntegrityError, RestoreError } from "../errors.ts";
import { writeL0 } from "./l0.ts";
import { checkpointDue, checkpointWindow } from "./checkpoint.ts";
import { LevelCompactor } from "./compactor.ts";
import { applyRetention } from "./prune.ts";
import { streamAllPages } from "./snapshot.ts";
import {
  answerSnapshotRequest,
  SnapshotRequestPoll,
  takeSnapshotRequest,
  writeWatcherInfo,
} from "./requests.ts";

/** Progress of a snapshot: the database read into the local file, then its upload (bytes). */
export type SnapshotProgress = (phase: "write" | "upload", done: number, total: number) => void;

/** Alerts a replicator raises (webhooks); called once per state change, never awaited. */
export type ReplicatorEvent = "upload_failed" | "wal_size_exceeded" | "validation_failed";

/** What happened, for library callers (`replicate().on(...)`). */
export type ActivityEvent =
  | { type: "sync"; database: string; txid: number; seconds: number }
  | { type: "checkpoint"; database: string; mode: "PASSIVE" | "TRUNCATE"; seconds: number }
  | { type: "snapshot"; database: string; txid: number; reason: string }
  | { type: "error"; database: string; error: Error };

/** Options for one replicated database. */
export interface ReplicatorOptions {
  dbPath: string;
  /** Key prefix of this database in the replica. */
  prefix: string;
  /** The database's name for people (alerts, logs); defaults to the prefix. */
  name?: string;
  replica: Replica;
  sync: SyncSettings;
  pool: UploadPool;
  log: Logger;
  /** Upload queue size above which checkpoints stop (SQLite then keeps the frames). */
  cacheMaxBytes?: number;
  /** Activity (new level-0 files, snapshots, errors), for library callers; never awaited. */
  onActivity?: (e: ActivityEvent) => void;
  /** Found by directory watching: its deletion is expected (logged at info, not a failure). */
  discovered?: boolean;
  /** Compaction, retention inside watch (default: neither) and their schedule. */
  maintenance?: MaintenanceSettings;
  /** The retention policy applied when `maintenance.retentionEnabled`. */
  retention?: RetentionSettings;
  /** Bounds maintenance rounds (compaction, retention, validation) across databases. */
  maintenancePool?: UploadPool;
  /**
   * Validation (`sync.validationIntervalMs`): restore the replica at `txid` somewhere temporary
   * and return the restored database's LTX checksum. Injected by the API layer.
   */
  validate?: (replica: DbReplica, txid: number) => Promise<bigint>;
  /** Alerts (webhooks): called once per state change, never awaited. */
  notify?: (
    event: ReplicatorEvent,
    p: { database: string; error?: string; attempts?: number; context?: Record<string, unknown> },
  ) => void;
}

/** Counters for tests, metrics and benchmarks. */
export interface ReplicatorStats {
  /** Syncs run (whether or not they found new frames). */
  syncs: number;
  /** Level-0 files written. */
  l0Written: number;
  /** Level-9 snapshots written. */
  snapshotsWritten: number;
  /** Checkpoints run by walrust. */
  checkpoints: number;
  /** Files uploaded. */
  uploads: number;
  /** Upload attempts that failed (and are retried). */
  uploadErrors: number;
  /** Full passes whose checksum disagreed with the tracked one (should stay 0). */
  checksumMismatches: number;
  /** Files written by compaction. */
  compactions: number;
  /** Level-0 files compaction expired from the replica. */
  l0Expired: number;
  /** Retention passes run. */
  retentionRuns: number;
  /** Files retention deleted. */
  retentionDeleted: number;
  /** Validations that matched the live database. */
  validations: number;
  /** Validations that found the replica broken. */
  validationFailures: number;
  /** Syncs that failed (and are retried). */
  syncErrors: number;
  /** Time spent in syncs, seconds. */
  syncSeconds: number;
  /** WAL bytes copied into level-0 files. */
  walBytes: number;
  /** Checkpoints by mode. */
  checkpointsByMode: Record<string, number>;
  /** Seconds spent in checkpoints, by mode. */
  checkpointSeconds: Record<string, number>;
  /** Files written by compaction, by level. */
  compactionsByLevel: Record<number, number>;
}

/** What a poll of the database's files found. */
export type PollResult = "changed" | "due" | "idle";

/** Queued uploads at which a changed database waits for them before its next sync. */
const UPLOADS_BEHIND = 2;

/** Replicates one database. Create with `Replicator.open`. */
export class Replicator {
  readonly stats: ReplicatorStats = {
    syncs: 0,
    l0Written: 0,
    snapshotsWritten: 0,
    checkpoints: 0,
    uploads: 0,
    uploadErrors: 0,
    checksumMismatches: 0,
    compactions: 0,
    l0Expired: 0,
    retentionRuns: 0,
    retentionDeleted: 0,
    validations: 0,
    validationFailures: 0,
    syncErrors: 0,
    syncSeconds: 0,
    walBytes: 0,
    checkpointsByMode: {},
    checkpointSeconds: {},
    compactionsByLevel: {},
  };
  readonly state: LocalState;
  readonly name: string;

  #o: ReplicatorOptions;
  /** This database's files in the replica. */
  #db: DbReplica;
  #f: WatchedFiles | undefined;
  #pages!: PageSource;
  #pageSize = 0;
  #pos = new Position();
  #pinned = false;
  #snapshotReason: string | undefined;
  #meta: LocalMeta = { remoteTXID: 0, snapshotTXID: 0, snapshotAt: 0 };
  #uploads!: UploadQueue;
  #reconciled = false;
  #reconcileAt = 0;
  #reconcileBackoffMs = 0;
  #replicaLost: string | undefined;
  #lastCheckpointAt = Date.now();
  #syncedSinceCheckpoint = false;
  #lastWal: { size: number; mtime: number; ino: number | null } | undefined;
  #lastIdentityCheck = 0;
  lastSyncAt = 0;
  #busy: Promise<unknown> = Promise.resolve();
  #queueOverCap = false;
  #walOverThreshold = false;
  #closed = false;
  #gone = false;
  readonly #requests: SnapshotRequestPoll;
  #failed: WalrustError | undefined;
  #compactor: LevelCompactor | undefined;
  /** The maintenance round running in the background, if any. */
  #maint: Promise<void> | undefined;
  #maintStop = new AbortController();
  #retentionDue = false;
  #nextPruneAt = 0;
  #nextValidationAt = 0;
  readonly #openedAt = Date.now();
  /** When the poll first saw a WAL change not synced yet (ms). */
  #dirtySince: number | undefined;
  /** Header timestamps of snapshots (immutable files), by key, for retention. */
  #snapshotTimes = new Map<string, number>();

  /** The held files; gone once released. */
  get #files(): WatchedFiles {
    if (!this.#f) throw new WalrustError(`replication of ${this.#o.dbPath} was stopped`);
    return this.#f;
  }

  private constructor(o: ReplicatorOptions) {
    this.#o = o;
    this.#db = new DbReplica(o.replica, o.prefix);
    this.state = new LocalState(o.dbPath);
    this.#requests = new SnapshotRequestPoll(this.state);
    this.name = o.name ?? o.prefix;
    const m = o.maintenance;
    const now = Date.now();
    // Compaction and validation read the replica back: a host holding age recipients only
    // cannot (the CLI says so once at start).
    const readable = canRead(o.replica.storage);
    if (m && m.compactionLevelsMs.length > 0 && readable) {
      this.#compactor = new LevelCompactor({
        replica: this.#db,
        state: this.state,
        levelsMs: m.compactionLevelsMs,
        l0RetentionMs: o.sync.l0RetentionMs,
        format: o.sync.format,
        log: o.log,
        dbPath: o.dbPath,
        onL1Covered: (txid) => this.#dropCoveredL0(txid),
      }, now);
    }
    if (m?.retentionEnabled && m.pruneIntervalMs > 0) this.#nextPruneAt = now + m.pruneIntervalMs;
    if (o.sync.validationIntervalMs > 0 && readable) {
      this.#nextValidationAt = now + o.sync.validationIntervalMs;
    }
  }

  /** Current TXID (the newest local level-0 file). */
  get txid(): number {
    return this.#pos.txid;
  }
  /** Highest TXID confirmed in the replica. */
  get remoteTXID(): number {
    return this.#meta.remoteTXID;
  }
  /** Number of files waiting for upload. */
  get pendingUploads(): number {
    return this.#uploads.length;
  }
  /**
   * Uploads are flowing but behind: two or more files queued. A sync now would only queue one
   * more small file; waiting lets the next sync take every commit since in one file.
   */
  get uploadsBehind(): boolean {
    return this.#uploads.length >= UPLOADS_BEHIND && this.#uploads.flowing;
  }
  /** Bytes queued for upload. */
  get pendingBytes(): number {
    return this.#uploads.files.reduce((n, f) => n + f.size, 0);
  }
  /** Size of the `-wal` file at the last poll (bytes). */
  get walSize(): number {
    return Math.max(0, this.#lastWal?.size ?? 0);
  }
  /** Size of the database file (bytes), 0 once released. */
  get dbSize(): number {
    try {
      return this.#f?.db.size() ?? 0;
    } catch {
      return 0;
    }
  }
  /** When the next scheduled snapshot is due (ms), if snapshots are scheduled. */
  get nextSnapshotAt(): number | undefined {
    const every = this.#o.sync.snapshotIntervalMs;
    return every > 0 ? this.#meta.snapshotAt + every : undefined;
  }
  /**
   * Replication lag in seconds: the age of the oldest change not in the replica yet — the
   * oldest queued level-0 file, else a WAL change seen but not synced yet; 0 when caught up.
   */
  lagSeconds(now = Date.now()): number {
    const queued = this.#uploads.files.find((f) => f.level === 0);
    // Files queued by an earlier run carry no timestamp here: count them from this start.
    const oldest = queued ? (queued.timestamp ?? this.#openedAt) : this.#dirtySince;
    return oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000);
  }
  /** Why this database stopped replicating, if it did (the rest of the process goes on). */
  get failed(): WalrustError | undefined {
    return this.#failed;
  }

  /** Open the database, check continuity with the local state and the replica, take the read lock. */
  static async open(o: ReplicatorOptions): Promise<Replicator> {
    const r = new Replicator(o);
    try {
      await r.#open();
    } catch (e) {
      r.#f?.release(); // a failed start leaves nothing locked
      throw e;
    }
    return r;
  }

  async #open(): Promise<void> {
    const { dbPath, log } = this.#o;
    this.#f = WatchedFiles.open(dbPath, this.#o.sync.busyTimeoutMs);
    this.#pageSize = this.#f.pageSize;
    this.#pages = new PageSource(dbPath, this.#f.db, this.#pageSize);
    await this.state.init();
    this.#meta = await this.state.readMeta();
    this.#uploads = new UploadQueue({
      state: this.state,
      meta: this.#meta,
      replica: this.#db,
      name: this.name,
      dbPath,
      pool: this.#o.pool,
      log: this.#o.log,
      notify: this.#o.notify,
      stats: this.stats,
      onReplicaLost: (key) => {
        this.#replicaLost = key;
        this.#reconciled = false;
        this.#reconcileAt = 0;
      },
      keepUploadedL0: this.#compactor !== undefined,
      onUploaded: (f) => {
        if (f.level === 0) this.#compactor?.noteUploaded(f.maxTXID);
        else if (f.level === SNAPSHOT_LEVEL) {
          this.#retentionDue = true;
          if (f.minTXID === 1) this.#compactor?.noteSnapshot(f.maxTXID);
        }
      },
    });
    await this.#loadLocal();
    await this.#reconcileLocked(true);
    await this.#syncLocked();
    await this.#pin();
    if (this.#o.sync.onStartup && this.#meta.snapshotTXID === 0 && this.#pos.txid > 0) {
      await this.#snapshotLocked("first start");
    }
    await writeWatcherInfo(this.state, {
      pid: Deno.pid,
      replica: this.#o.replica.url,
      prefix: this.#o.prefix,
    });
    log.info("replicating", {
      db: dbPath,
      prefix: this.#o.prefix,
      txid: this.#pos.txid,
      remote_txid: this.#meta.remoteTXID,
      pending: this.#uploads.length,
    });
  }

  /** Position and queue from the local state directory (read lock held). */
  async #loadLocal(): Promise<void> {
    const r = await resumePosition(this.state, this.#meta, this.#files.wal, this.#pageSize);
    this.#pos = r.position;
    this.#snapshotReason = r.snapshotReason;
    const local = await this.state.list(0);
    const snaps = await this.state.list(SNAPSHOT_LEVEL);
    recoverChecksums([...local, ...snaps], this.#meta);
    this.#meta.remoteTXID = Math.min(this.#meta.remoteTXID, this.#pos.txid);
    // Uploaded level-0 files are no longer needed locally, except the newest (the position
    // record until a newer one is up) and, with compaction, those no L1 file covers yet (the
    // first compaction round removes the covered ones).
    const uploaded = local.filter((f) => f.maxTXID <= this.#meta.remoteTXID);
    if (!this.#compactor) {
      for (const f of uploaded.slice(0, -1)) await Deno.remove(f.path).catch(() => {});
    }
    this.#uploads.load(
      [...local.filter((f) => f.maxTXID > this.#meta.remoteTXID), ...snaps],
      uploaded.at(-1),
    );
  }

  /**
   * Compare the replica with local state (one listing) and release uploads, or arrange a new
   * snapshot above the replica's newest TXID. At start, transient storage errors leave uploads
   * held (replication goes on locally); rejected credentials or a missing bucket throw.
   */
  async #reconcileLocked(startup = false): Promise<void> {
    const { log } = this.#o;
    let remote;
    const listedAt = Date.now();
    try {
      remote = await this.#db.files();
    } catch (e) {
      if (!(e instanceof StorageError) || (!e.transient && startup)) throw e;
      if (this.#reconcileBackoffMs === 0) {
        log.warn("replica unreachable; replicating locally and retrying", {
          db: this.#o.dbPath,
          error: e.message,
        });
        this.#o.notify?.("upload_failed", {
          database: this.name,
          error: e.message,
          context: { pending: this.#uploads.length, phase: "listing the replica" },
        });
      }
      this.#reconcileBackoffMs = Math.min(Math.max(this.#reconcileBackoffMs * 2, 1000), 30_000);
      this.#reconcileAt = Date.now() + this.#reconcileBackoffMs;
      return;
    }
    if (startup && remote.length > 0) {
      // Never add plain files to an encrypted replica, or the reverse.
      const newest = remote.reduce((a, b) => (b.maxTXID > a.maxTXID ? b : a));
      await checkObjectEncryption(this.#db.storage, newest.key, isEncrypted(this.#o.replica))
        .catch((e) => {
          // Gone since the listing, or storage flaky: the next start checks again.
          if (!(e instanceof StorageError) || (!e.transient && !(e instanceof NotFoundError))) {
            throw e;
          }
        });
    }
    if (this.#reconcileBackoffMs > 0) log.info("replica reachable again", { db: this.#o.dbPath });
    this.#reconcileBackoffMs = 0;
    const d = reconcile(remote, {
      txid: this.#pos.txid,
      queue: this.#uploads.files,
      lastUploaded: this.#uploads.lastUploaded,
      uploadedWhileListing: this.#uploads.lastUploadedAt >= listedAt
        ? this.#uploads.lastUploaded
        : undefined,
    });
    const lost = this.#replicaLost;
    this.#replicaLost = undefined;
    if (this.#compactor) {
      this.#compactor.seed(remote);
      const l1 = remote.reduce((m, f) => (f.level === 1 ? Math.max(m, f.maxTXID) : m), 0);
      if (l1 > 0) await this.#dropCoveredL0(l1);
    }
    if (d.kind === "continue") {
      this.#meta.remoteTXID = Math.min(d.replicaTXID, this.#pos.txid);
      if (lost) {
        // The file we checked is gone but the chain still reaches our position: nothing to do.
        log.warn("replica file missing, but the chain is intact", {
          db: this.#o.dbPath,
          key: lost,
        });
      }
    } else {
      const why = lost ? `${d.why}; ${lost} is missing` : d.why;
      const fields = { db: this.#o.dbPath, local_txid: this.#pos.txid, reason: why };
      if (d.alarming || lost) {
        log.error("replica disagrees with local state; taking a new snapshot", fields);
        this.#o.notify?.("validation_failed", {
          database: this.name,
          error: why,
          context: { local_txid: this.#pos.txid, snapshot_txid: d.afterTXID + 1 },
        });
      } else log.info("taking a snapshot", fields);
      await this.#uploads.clear();
      this.#meta.remoteTXID = d.afterTXID;
      this.#pos.txid = Math.max(this.#pos.txid, d.afterTXID);
      this.#snapshotReason ??= why;
    }
    this.#reconciled = true;
    this.#uploads.held = false;
  }

  /** Serialise work on this database. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#busy.then(fn, fn);
    this.#busy = p.catch(() => {});
    return p;
  }

  /**
   * The scheduler's cheap look (path stats only): did the `-wal` change (size, mtime, inode), or
   * is periodic work due (checkpoint, snapshot, a snapshot request, the identity check)?
   */
  poll(now: number): PollResult {
    if (this.#failed || this.#closed) return "idle";
    let st: Deno.FileInfo | undefined;
    try {
      st = Deno.statSync(`${this.#o.dbPath}-wal`);
    } catch { /* gone: the sync reports it */ }
    const cur = { size: st?.size ?? -1, mtime: st?.mtime?.getTime() ?? 0, ino: st?.ino ?? null };
    const last = this.#lastWal;
    this.#lastWal = cur;
    if (!last || last.size !== cur.size || last.mtime !== cur.mtime || last.ino !== cur.ino) {
      this.#dirtySince ??= now;
      return "changed";
    }
    const s = this.#o.sync;
    if (!this.#reconciled && now >= this.#reconcileAt) return "due";
    const checkpoint = checkpointDue(s, {
      frames: this.#pos.frames(this.#pageSize),
      sinceCheckpointMs: now - this.#lastCheckpointAt,
      syncedSinceCheckpoint: this.#syncedSinceCheckpoint,
    });
    if (checkpoint) return "due";
    if (
      s.snapshotIntervalMs > 0 && this.#pos.txid > this.#meta.snapshotTXID &&
      now - this.#meta.snapshotAt >= s.snapshotIntervalMs
    ) return "due";
    if (now - this.#lastIdentityCheck >= 5_000) {
      this.#lastIdentityCheck = now;
      if (this.#f?.pathsMoved()) return "due"; // the sync's full check decides what it means
    }
    return this.#requests.pending(now) ? "due" : "idle";
  }

  /** Copy new committed frames into a level-0 file, then checkpoint or snapshot when due. */
  sync(): Promise<boolean> {
    return this.#exclusive(async () => {
      if (this.#closed || this.#failed) return false;
      try {
        if (!this.#reconciled && Date.now() >= this.#reconcileAt) await this.#reconcileLocked();
        const wrote = await this.#syncLocked();
        if (!this.#pinned) await this.#pin();
        await this.#maintenanceLocked();
        return wrote;
      } catch (e) {
        if (e instanceof WalrustError && this.#failed === e) return false;
        throw e;
      }
    });
  }

  /**
   * Take a level-9 snapshot now (after syncing); resolves once it is queued for upload.
   * `onProgress` hears the database read into the file, then the file's upload (bytes).
   */
  snapshot(
    reason = "requested",
    onProgress?: SnapshotProgress,
  ): Promise<{ txid: number; uploaded: Promise<void> }> {
    return this.#exclusive(async () => {
      await this.#syncLocked();
      return await this.#snapshotLocked(reason, onProgress);
    });
  }

  /** Force a checkpoint now (tests, shutdown). */
  checkpoint(mode: "PASSIVE" | "TRUNCATE" = "PASSIVE"): Promise<void> {
    return this.#exclusive(() => this.#checkpointLocked(mode));
  }

  /** Stop replicating this database for good, saying why once. */
  #fail(e: WalrustError, expected = false): WalrustError {
    if (!this.#failed) {
      this.#failed = e;
      this.#o.onActivity?.({ type: "error", database: this.name, error: e });
      const fields = { db: this.#o.dbPath, error: e.message };
      if (expected) this.#o.log.info("replication of this database stopped", fields);
      else this.#o.log.error("replication of this database stopped", fields);
    }
    return e;
  }

  /** True once the database file was deleted (a discovered database then simply goes). */
  get gone(): boolean {
    return this.#gone;
  }

  /** A watched path names another file now: re-open safely, or stop this database. */
  #filesChanged(change: FileChange): void {
    const { dbPath, log } = this.#o;
    if (change === "database-gone") {
      this.#gone = true;
      const e = new DatabaseError(`database ${dbPath} was deleted; nothing to replicate`);
      throw this.#fail(e, this.#o.discovered === true);
    }
    if (change !== "database-replaced") {
      // The same database file with a different -wal/-shm: SQLite in this process would go on
      // using the old ones (they hang off the database's inode), so no in-process re-open is
      // safe. A restarted walrust starts clean and snapshots.
      throw this.#fail(
        new DatabaseError(
          `${dbPath}: its ${change === "wal-replaced" ? "-wal" : "-shm"} file was deleted or ` +
            "replaced while the database stayed open (something removed SQLite's files under " +
            "it); restart walrust to re-open it",
        ),
      );
    }
    log.warn("database file was replaced; re-opening it and taking a snapshot", { db: dbPath });
    const old = this.#files;
    old.retire();
    try {
      this.#f = WatchedFiles.open(dbPath, this.#o.sync.busyTimeoutMs);
    } catch (e) {
      throw e instanceof WalrustError ? this.#fail(e) : e;
    }
    // The old file's set closes now unless something of ours still shares its inodes.
    WatchedFiles.sweep();
    this.#pageSize = this.#files.pageSize;
    this.#pages = new PageSource(dbPath, this.#files.db, this.#pageSize);
    this.#pinned = false;
    this.#pos.dbChecksum = undefined;
    this.#snapshotReason = "the database file was replaced";
  }

  async #syncLocked(): Promise<boolean> {
    if (this.#failed) throw this.#failed;
    const started = performance.now();
    const change = this.#files.check();
    this.#lastIdentityCheck = Date.now();
    if (change) this.#filesChanged(change);
    const wal = this.#files.wal;
    const hdr = await readWalHeader(wal);
    if (this.#snapshotReason) return await this.#resnapshotLocked(hdr);
    // An empty WAL (truncated, or nothing written yet) holds nothing new; the salts we keep
    // prove the next generation follows ours.
    if (!hdr) return false;
    if (hdr.pageSize !== this.#pageSize) {
      this.#snapshotReason = "page size changed";
      return await this.#resnapshotLocked(hdr);
    }
    const pos = this.#pos;
    if (hdr.salt1 !== pos.salt1 || hdr.salt2 !== pos.salt2) {
      if (!this.#pinned || !pos.isNextGeneration(hdr)) {
        this.#snapshotReason = this.#pinned
          ? "WAL restarted more than once between two syncs"
          : "WAL restarted with frames walrust may not have copied";
        return await this.#resnapshotLocked(hdr);
      }
      pos.newGeneration(hdr);
    }
    let wrote = false;
    for (;;) {
      const scan = await scanWal(wal, hdr, {
        offset: pos.offset,
        checksum: pos.walChecksum,
        maxBytes: this.#o.sync.maxSyncWalBytes,
      });
      if (scan.endOffset === pos.offset) break;
      const file = await writeL0(this.state, this.#pages, pos, {
        wal,
        hdr,
        changed: scan.pages,
        commit: scan.commit,
        end: scan.endOffset,
      }, this.#o.sync.format);
      this.#uploads.push(file);
      pos.txid = file.maxTXID;
      this.#recordChecksum();
      this.stats.l0Written++;
      for (const [pgno, off] of scan.pages) pos.walIndex.set(pgno, off);
      for (const pgno of pos.walIndex.keys()) if (pgno > scan.commit) pos.walIndex.delete(pgno);
      this.stats.walBytes += scan.endOffset - pos.offset;
      pos.offset = scan.endOffset;
      pos.walChecksum = scan.checksum;
      pos.commit = scan.commit;
      wrote = true;
      if (!scan.limited) break;
    }
    this.lastSyncAt = Date.now();
    this.#dirtySince = undefined;
    this.stats.syncs++;
    const seconds = (performance.now() - started) / 1000;
    this.stats.syncSeconds += seconds;
    if (wrote) {
      this.#syncedSinceCheckpoint = true;
      this.#uploads.kick();
      this.#o.onActivity?.({ type: "sync", database: this.name, txid: pos.txid, seconds });
    }
    return wrote;
  }

  /**
   * Establish the pinned invariant: under the write barrier, copy every committed frame, then
   * re-take the read lock (its new mark covers only copied frames).
   */
  async #pin(): Promise<void> {
    const h = this.#files.h;
    try {
      h.beginWriteBarrier();
    } catch (e) {
      // The application held the write lock past our busy timeout: try again at the next sync.
      this.#o.log.warn("could not take the write lock to pin the WAL; retrying", {
        db: this.#o.dbPath,
        error: messageOf(e),
      });
      return;
    }
    try {
      await this.#syncLocked();
      h.releaseReadLock();
      h.beginReadLock();
      this.#pinned = true;
    } finally {
      h.releaseWriteBarrier();
    }
  }

  /** Keep the checksum with its TXID in the meta record (persisted with the next upload). */
  #recordChecksum(): void {
    const sum = this.#pos.dbChecksum;
    this.#meta.checksum = sum ? formatHex64(sum.value()) : undefined;
    this.#meta.checksumTXID = sum ? this.#pos.txid : undefined;
  }

  /**
   * Continuity is broken: write the whole database as level-0 file txid+1 (so the level-0 chain
   * stays contiguous) and as a level-9 snapshot 1..txid+1, in one pass.
   */
  async #resnapshotLocked(hdr: WalHeader | undefined): Promise<boolean> {
    const reason = this.#snapshotReason ?? "requested";
    const wal = this.#files.wal;
    let scan: Pick<WalScan, "pages" | "endOffset" | "checksum" | "commit"> = {
      pages: new Map(),
      endOffset: WAL_HEADER_SIZE,
      checksum: [0, 0],
      commit: 0,
    };
    if (hdr && hdr.pageSize === this.#pageSize) {
      scan = await scanWal(wal, hdr, { offset: WAL_HEADER_SIZE });
    }
    const commit = scan.commit || Math.floor(this.#files.db.size() / this.#pageSize);
    if (commit === 0) return false; // empty database: nothing to replicate yet
    const txid = this.#pos.txid + 1;
    const withSnapshot = txid > 1 || this.#o.sync.onStartup;
    const started = performance.now();
    const { files, sum } = await writeFullCopies(
      this.state,
      this.#pages,
      { wal, hdr, index: scan.pages, end: scan.endOffset, commit, txid },
      { l0: true, snapshot: withSnapshot },
      this.#o.sync.format,
    );
    for (const f of files) this.#uploads.push(f);
    this.#o.log.info("snapshot", {
      db: this.#o.dbPath,
      txid,
      pages: commit,
      bytes: files.at(-1)?.size,
      seconds: round3((performance.now() - started) / 1000),
      reason,
    });
    this.#o.onActivity?.({ type: "snapshot", database: this.name, txid, reason });
    const pos = this.#pos;
    pos.txid = txid;
    pos.commit = commit;
    pos.offset = scan.endOffset;
    pos.salt1 = hdr?.salt1 ?? 0;
    pos.salt2 = hdr?.salt2 ?? 0;
    pos.walChecksum = scan.commit > 0 ? scan.checksum : undefined;
    pos.walIndex = scan.pages;
    pos.dbChecksum = sum;
    this.#snapshotReason = undefined;
    this.#recordChecksum();
    this.stats.l0Written++;
    if (withSnapshot) {
      this.stats.snapshotsWritten++;
      this.#meta.snapshotTXID = txid;
      this.#meta.snapshotAt = Date.now();
      await this.state.writeMeta(this.#meta);
    }
    this.lastSyncAt = Date.now();
    this.#uploads.kick();
    return true;
  }

  /** Level-9 snapshot of the current position (no new TXID). */
  async #snapshotLocked(
    reason: string,
    onProgress?: SnapshotProgress,
  ): Promise<{ txid: number; uploaded: Promise<void> }> {
    const pos = this.#pos;
    if (pos.txid === 0) return { txid: 0, uploaded: Promise.resolve() };
    const onUpload = onProgress &&
      ((done: number, total: number) => onProgress("upload", done, total));
    // A snapshot of this very TXID is already written (the start-up one, say): rewriting the
    // same path while it uploads would let that upload's clean-up delete the new file.
    if (this.#meta.snapshotTXID === pos.txid) {
      const path = this.state.path(SNAPSHOT_LEVEL, 1, pos.txid);
      return { txid: pos.txid, uploaded: this.#uploads.whenUploaded(path, onUpload) };
    }
    const wal = this.#files.wal;
    const started = performance.now();
    const { files: [file], sum } = await writeFullCopies(
      this.state,
      this.#pages,
      {
        wal,
        hdr: await readWalHeader(wal),
        index: pos.walIndex,
        end: pos.offset,
        commit: pos.commit,
        txid: pos.txid,
      },
      { l0: false, snapshot: true },
      this.#o.sync.format,
      onProgress && ((done, total) => onProgress("write", done, total)),
    );
    // A full pass checks the incrementally tracked checksum: they must agree.
    if (pos.dbChecksum && pos.dbChecksum.value() !== sum.value()) {
      this.stats.checksumMismatches++;
      this.#o.log.error("tracked database checksum disagrees with a full read; re-basing", {
        db: this.#o.dbPath,
        txid: pos.txid,
        tracked: formatHex64(pos.dbChecksum.value()),
        actual: formatHex64(sum.value()),
      });
    }
    pos.dbChecksum = sum;
    this.#recordChecksum();
    this.#uploads.remove(file.path);
    this.#uploads.push(file);
    this.stats.snapshotsWritten++;
    this.#meta.snapshotTXID = pos.txid;
    this.#meta.snapshotAt = Date.now();
    await this.state.writeMeta(this.#meta);
    this.#o.log.info("snapshot", {
      db: this.#o.dbPath,
      txid: pos.txid,
      pages: pos.commit,
      bytes: file.size,
      seconds: round3((performance.now() - started) / 1000),
      reason,
    });
    this.#o.onActivity?.({ type: "snapshot", database: this.name, txid: pos.txid, reason });
    const uploaded = this.#uploads.whenUploaded(file.path, onUpload);
    this.#uploads.kick();
    return { txid: pos.txid, uploaded };
  }

  /** Checkpoint, scheduled snapshot and on-demand snapshot requests. */
  async #maintenanceLocked(): Promise<void> {
    const s = this.#o.sync;
    const frames = this.#pos.frames(this.#pageSize);
    const now = Date.now();
    const overThreshold = s.walTruncateThresholdPages > 0 && frames >= s.walTruncateThresholdPages;
    if (overThreshold !== this.#walOverThreshold) {
      this.#walOverThreshold = overThreshold;
      if (overThreshold) {
        this.#o.log.error("WAL is past wal_truncate_threshold_pages; truncating it", {
          db: this.#o.dbPath,
          frames,
        });
        this.#o.notify?.("wal_size_exceeded", {
          database: this.name,
          error: `WAL holds ${frames} frames (threshold ${s.walTruncateThresholdPages})`,
          context: { frames, threshold: s.walTruncateThresholdPages },
        });
      }
    }
    const mode = checkpointDue(s, {
      frames,
      sinceCheckpointMs: now - this.#lastCheckpointAt,
      syncedSinceCheckpoint: this.#syncedSinceCheckpoint,
    });
    if (mode) {
      const max = this.#o.cacheMaxBytes;
      const over = max !== undefined && this.#uploads.length > 0 &&
        this.#uploads.files.reduce((n, f) => n + f.size, 0) > max;
      if (over !== this.#queueOverCap) {
        this.#queueOverCap = over;
        if (over) {
          this.#o.log.error(
            "upload queue is over [cache] max_size: checkpoints are stopped so SQLite keeps the frames; the WAL will grow until uploads resume",
            { db: this.#o.dbPath, max_size: max },
          );
        } else {
          this.#o.log.info("upload queue is below [cache] max_size again; checkpointing", {
            db: this.#o.dbPath,
          });
        }
      }
      if (!over) await this.#checkpointLocked(mode);
    }
    if (
      s.snapshotIntervalMs > 0 && this.#pos.txid > this.#meta.snapshotTXID &&
      now - this.#meta.snapshotAt >= s.snapshotIntervalMs
    ) {
      // Every backend: look at the replica before each scheduled snapshot (lost files, another
      // writer) so the snapshot never lands on top of someone else's history.
      await this.#reconcileLocked();
      if (this.#snapshotReason) await this.#syncLocked();
      else await this.#snapshotLocked("interval");
    }
    const request = takeSnapshotRequest(this.state);
    if (request) await this.#answer(request);
  }

  /** Take a requested snapshot and answer once it is uploaded (in the background). */
  async #answer(id: string): Promise<void> {
    let taken;
    try {
      taken = await this.#snapshotLocked("requested");
    } catch (e) {
      await answerSnapshotRequest(this.state, id, { error: messageOf(e) });
      return;
    }
    taken.uploaded.then(
      () => answerSnapshotRequest(this.state, id, { txid: taken.txid }),
      (e) => answerSnapshotRequest(this.state, id, { error: messageOf(e) }),
    ).catch(() => {});
  }

  /** Our checkpoint (checkpoint.ts: the window that loses nothing and re-pins the read lock). */
  async #checkpointLocked(mode: "PASSIVE" | "TRUNCATE"): Promise<void> {
    const started = performance.now();
    const w = await checkpointWindow(this.#files.h, mode, () => this.#syncLocked(), {
      busyTimeoutMs: this.#o.sync.busyTimeoutMs,
      warn: (msg, error) => this.#o.log.warn(msg, { db: this.#o.dbPath, mode, error }),
    });
    if (!w.ran) {
      // The application holds the write lock (a long transaction): checkpoint next time.
      this.#o.log.debug("checkpoint postponed", { db: this.#o.dbPath, error: w.error });
      return;
    }
    this.#pinned = true;
    this.#pages.invalidate();
    this.stats.checkpoints++;
    const seconds = (performance.now() - started) / 1000;
    const st = this.stats;
    st.checkpointsByMode[mode] = (st.checkpointsByMode[mode] ?? 0) + 1;
    st.checkpointSeconds[mode] = (st.checkpointSeconds[mode] ?? 0) + seconds;
    this.#o.onActivity?.({ type: "checkpoint", database: this.name, mode, seconds });
    this.#lastCheckpointAt = Date.now();
    this.#syncedSinceCheckpoint = false;
    this.#o.log.info("checkpoint", {
      db: this.#o.dbPath,
      mode,
      seconds: round3(seconds),
      ...w.result,
    });
  }

  /** Start uploading queued files in the background (no-op while running or backing off). */
  kickUpload(): void {
    this.#uploads.kick();
  }

  /**
   * Start a maintenance round in the background when one is due: compaction levels, retention
   * (after a snapshot reached the replica, and every prune interval), validation. One round at a
   * time per database, bounded across databases by the maintenance pool; never blocks syncs.
   */
  maintain(now: number): void {
    if (this.#maint || this.#closed || this.#failed || !this.#reconciled) return;
    const m = this.#o.maintenance;
    const compact = this.#compactor?.due(now) ?? false;
    const prune = !!m?.retentionEnabled && !!this.#o.retention &&
      (this.#retentionDue || (m.pruneIntervalMs > 0 && now >= this.#nextPruneAt));
    const validate = this.#nextValidationAt > 0 && now >= this.#nextValidationAt &&
      this.#o.validate !== undefined && this.#pos.txid > 0;
    if (!compact && !prune && !validate) return;
    const run = () => this.#maintenance(now, { compact, prune, validate });
    const pool = this.#o.maintenancePool;
    this.#maint = (pool ? pool.run(run) : run()).catch((e) => {
      if (this.#maintStop.signal.aborted) return;
      this.#o.log.warn("replica maintenance failed; retrying at its next interval", {
        db: this.#o.dbPath,
        error: messageOf(e),
      });
    }).finally(() => (this.#maint = undefined));
  }

  /**
   * Apply the retention policy now, once the queued uploads are in (`replicate --once
   * --enforce-retention`), whether or not retention runs inside watch. Returns files deleted.
   */
  async enforceRetention(drainDeadline = Date.now() + 30_000): Promise<number> {
    const policy = this.#o.retention;
    if (!policy) return 0;
    await this.#maint;
    await this.drainUploads(drainDeadline);
    return await this.#applyRetention(policy, Date.now());
  }

  async #applyRetention(policy: RetentionSettings, now: number): Promise<number> {
    const plan = await applyRetention(this.#db, policy, {
      now,
      delete: true,
      times: this.#snapshotTimes,
    });
    this.stats.retentionRuns++;
    this.stats.retentionDeleted += plan.delete.length;
    this.#o.log.info("retention", {
      db: this.#o.dbPath,
      deleted: plan.delete.length,
      bytes_freed: plan.bytesFreed,
      kept: plan.keep.length,
      earliest_txid: plan.earliest?.txid,
    });
    return plan.delete.length;
  }

  /** Wait for the maintenance round in flight, if any (tests). */
  async maintenanceIdle(): Promise<void> {
    await this.#maint;
  }

  async #maintenance(
    now: number,
    due: { compact: boolean; prune: boolean; validate: boolean },
  ): Promise<void> {
    const { log, dbPath } = this.#o;
    const signal = this.#maintStop.signal;
    if (due.compact && this.#compactor && !signal.aborted) {
      const r = await this.#compactor.run(now, signal);
      this.stats.compactions += r.compacted.length;
      this.stats.l0Expired += r.l0Deleted;
      for (const c of r.compacted) {
        const by = this.stats.compactionsByLevel;
        by[c.level] = (by[c.level] ?? 0) + 1;
        log.info("compaction", {
          db: dbPath,
          level: c.level,
          min_txid: c.minTXID,
          max_txid: c.maxTXID,
          inputs: c.inputs,
          size: c.size,
        });
      }
      if (r.l0Deleted > 0) log.info("expired level-0 files", { db: dbPath, count: r.l0Deleted });
      const l1 = this.#o.maintenance!.compactionLevelsMs[0];
      await this.#dropCoveredL0(0, now - Math.max(600_000, 20 * l1));
    }
    if (due.prune && !signal.aborted) {
      const m = this.#o.maintenance!;
      this.#retentionDue = false;
      if (m.pruneIntervalMs > 0) this.#nextPruneAt = now + m.pruneIntervalMs;
      await this.#applyRetention(this.#o.retention!, now);
    }
    if (due.validate && !signal.aborted) {
      this.#nextValidationAt = now + this.#o.sync.validationIntervalMs;
      await this.#validate(signal);
    }
  }

  /**
   * Level-0 files up to `txid` are in an uploaded L1 file: drop the local copies not needed (not
   * queued, not the newest uploaded one). With `olderThan`, uploaded copies last written before
   * it go too, covered or not: compaction then reads them from the replica, and a level-1 merge
   * that keeps failing cannot fill the disk.
   */
  async #dropCoveredL0(txid: number, olderThan?: number): Promise<void> {
    const keep = new Set(this.#uploads.files.map((f) => f.path));
    const newest = this.#uploads.lastUploaded;
    if (newest) keep.add(newest.path);
    for (const f of await this.state.list(0)) {
      if (keep.has(f.path) || (newest && f.maxTXID >= newest.maxTXID)) continue;
      let drop = f.maxTXID <= txid;
      if (!drop && olderThan !== undefined && f.maxTXID <= this.#meta.remoteTXID) {
        const st = await Deno.stat(f.path).catch(() => undefined);
        drop = (st?.mtime?.getTime() ?? Infinity) < olderThan;
      }
      if (drop) await Deno.remove(f.path).catch(() => {});
    }
  }

  /**
   * Validation: a checksum of the live database at the current TXID from our own read
   * transaction, then (once that TXID is in the replica) a restore of the replica at it. A
   * mismatch, or a replica that cannot restore it, is a broken replica: ERROR, alert, snapshot.
   */
  async #validate(signal: AbortSignal): Promise<void> {
    const { log, dbPath } = this.#o;
    const live = await this.#exclusive(async () => {
      await this.#syncLocked();
      const pos = this.#pos;
      if (pos.txid === 0 || pos.commit === 0) return undefined;
      const sum = await streamAllPages(this.#pages, this.#files.wal, pos.walIndex, pos.commit, []);
      return { txid: pos.txid, checksum: sum.value() };
    });
    if (!live) return;
    const deadline = Date.now() + 60_000;
    while (this.#meta.remoteTXID < live.txid) {
      if (signal.aborted || Date.now() > deadline) return; // not uploaded yet: next interval
      this.#uploads.kick();
      await new Promise((r) => setTimeout(r, 200));
    }
    let problem: string | undefined;
    try {
      const restored = await this.#o.validate!(this.#db, live.txid);
      if (restored !== live.checksum) {
        problem = `the replica restored at TXID ${live.txid} has database checksum ${
          formatHex64(restored)
        }, the live database ${formatHex64(live.checksum)}`;
      }
    } catch (e) {
      if (!(e instanceof IntegrityError || e instanceof RestoreError)) throw e;
      problem = `the replica does not restore TXID ${live.txid}: ${e.message}`;
    }
    if (problem === undefined) {
      this.stats.validations++;
      log.info("validation passed", { db: dbPath, txid: live.txid });
      return;
    }
    this.stats.validationFailures++;
    log.error("replica validation failed; taking a new snapshot", { db: dbPath, error: problem });
    this.#o.notify?.("validation_failed", {
      database: this.name,
      error: problem,
      context: { txid: live.txid },
    });
    await this.#exclusive(async () => {
      this.#snapshotReason ??= "replica validation failed";
      await this.#syncLocked();
    });
  }

  /** Upload what is queued; false if `deadline` passed first. */
  async drainUploads(deadline: number): Promise<boolean> {
    // Not after a failed listing: an unreachable replica must not hold up the shutdown (the
    // queue stays on disk and goes up on the next start).
    if (!this.#reconciled && !this.#failed && this.#reconcileBackoffMs === 0) {
      await this.#exclusive(() => this.#reconcileLocked()).catch(() => {});
      if (this.#snapshotReason) await this.#exclusive(() => this.#syncLocked()).catch(() => {});
    }
    return await this.#uploads.drain(deadline);
  }

  /** The final summary line of this database (shutdown). */
  logSummary(): void {
    const s = this.stats;
    this.#o.log.info("stopped", {
      db: this.#o.dbPath,
      syncs: s.syncs,
      txid: this.#pos.txid,
      replica_txid: this.#meta.remoteTXID,
      pending: this.#uploads.length,
      snapshots: s.snapshotsWritten,
      checkpoints: s.checkpoints,
      compactions: s.compactions,
      errors: s.syncErrors + s.uploadErrors,
    });
  }

  /** Stop work: wait for the current operation. The SQLite connections stay open on purpose. */
  async stop(): Promise<void> {
    this.#closed = true;
    this.#maintStop.abort();
    await this.#maint;
    await this.#busy;
  }

  /**
   * After stop(), when this replication ends for good because its database was deleted (a
   * discovered database left): give its files back (WatchedFiles.dispose closes them when safe).
   */
  dispose(): void {
    this.#closed = true;
    this.#f?.dispose();
    this.#f = undefined;
  }

  /**
   * After stop() and the drain: give up the read lock and the watcher lock (the connections stay
   * open and are reused by the next replication of this file in the process).
   */
  release(): void {
    if (this.#failed) return; // a failed set may be a stale one: never reuse it
    this.#f?.release();
    this.#f = undefined;
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export { UploadPool };
