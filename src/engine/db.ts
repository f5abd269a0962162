/**
 * One replicated database: turns committed WAL frames into level-0 LTX files in the local state
 * directory, owns checkpoints, takes snapshots, and uploads the queue in TXID order.
 *
 * Invariants:
 * - An LTX file is durable locally before the position advances past its frames and before any
 *   checkpoint may backfill them.
 * - The read lock (connection `#r`) pins a WAL read mark so nobody can restart the WAL past what
 *   we have copied; it is released only inside our own checkpoint window.
 * - The database file is opened once and never closed while the process lives: closing any
 *   descriptor on it would drop the POSIX locks SQLite holds through its own descriptors.
 * - The watched SQLite connections are never closed either: closing the last connection would
 *   checkpoint and delete the WAL behind our back (node:sqlite has no PERSIST_WAL).
 */
import { SqliteHandle } from "../sqlite/handle.ts";
import { readWalHeader, scanWal, walFrameSize, type WalHeader } from "../sqlite/wal.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../ltx/header.ts";
import { DatabaseChecksum } from "../ltx/checksum.ts";
import { formatHex64 } from "../ltx/names.ts";
import type { SyncSettings } from "../config/schema.ts";
import { levelDir, ltxKey, parseLtxKey, SNAPSHOT_LEVEL } from "../storage/layout.ts";
import type { Replica } from "../storage/open.ts";
import { DatabaseError, StorageError } from "../errors.ts";
import type { Logger } from "../observe/log.ts";
import { type LocalMeta, LocalState, LtxFileWriter } from "./localstate.ts";
import { PageSource } from "./pagesource.ts";
import { DbFileReader } from "../sqlite/pagefile.ts";
import { removeIfExists } from "../fsutil.ts";
import { UploadPool, UploadQueue } from "./uploader.ts";
import { acquireLock } from "./lockfile.ts";

const WAL_HEADER_SIZE = 32;

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
  /** Alerts (webhooks): called once per state change, never awaited. */
  notify?: (
    event: "upload_failed" | "wal_size_exceeded",
    p: { database: string; error?: string; attempts?: number; context?: Record<string, unknown> },
  ) => void;
}

/** Counters for tests, metrics and benchmarks. */
export interface ReplicatorStats {
  syncs: number;
  l0Written: number;
  snapshotsWritten: number;
  checkpoints: number;
  uploads: number;
  uploadErrors: number;
}

/** Replicates one database. Create with `Replicator.open`. */
export class Replicator {
  readonly stats: ReplicatorStats = {
    syncs: 0,
    l0Written: 0,
    snapshotsWritten: 0,
    checkpoints: 0,
    uploads: 0,
    uploadErrors: 0,
  };
  readonly state: LocalState;
  readonly name: string;

  #o: ReplicatorOptions;
  #h!: SqliteHandle; // read-lock connection + writer connection (barrier, bump)
  #db!: DbFileReader;
  #lockFile!: Deno.FsFile;
  #wal: Deno.FsFile | undefined;
  #pages!: PageSource;
  #pageSize = 0;

  // Replicated position: everything in the WAL before #offset (same salts) is in local LTX files.
  #txid = 0;
  #offset = WAL_HEADER_SIZE;
  #salt1 = 0;
  #salt2 = 0;
  #checksum: [number, number] | undefined;
  #commit = 0;
  /** pgno -> offset of its newest frame in the current WAL, for frames before #offset. */
  #walIndex = new Map<number, number>();
  /** True when the WAL may be restarted without losing frames (everything was synced under a barrier). */
  #restartSafe = false;
  #snapshotReason: string | undefined;
  /** The database checksum at #txid (LTX's CRC-64 page checksums XORed), when known. */
  #dbChecksum: DatabaseChecksum | undefined;

  #meta: LocalMeta = { remoteTXID: 0, snapshotTXID: 0, snapshotAt: 0 };
  #uploads!: UploadQueue;
  #lastCheckpointAt = Date.now();
  #syncedSinceCheckpoint = false;
  #lastWalSize = -1;
  #lastWalMtime = 0;
  lastSyncAt = 0;
  #busy: Promise<unknown> = Promise.resolve();
  #queueOverCap = false;
  #walOverThreshold = false;
  #closed = false;

  private constructor(o: ReplicatorOptions) {
    this.#o = o;
    this.state = new LocalState(o.dbPath);
    this.name = o.name ?? o.prefix;
  }

  /** Current TXID (the newest local level-0 file). */
  get txid(): number {
    return this.#txid;
  }
  /** Highest TXID confirmed in the replica. */
  get remoteTXID(): number {
    return this.#meta.remoteTXID;
  }
  /** Number of files waiting for upload. */
  get pendingUploads(): number {
    return this.#uploads.length;
  }

  /** Open the database, check continuity with the local state and the replica, take the read lock. */
  static async open(o: ReplicatorOptions): Promise<Replicator> {
    const r = new Replicator(o);
    await r.#open();
    return r;
  }

  async #open(): Promise<void> {
    const { dbPath, log } = this.#o;
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(dbPath);
    } catch {
      throw new DatabaseError(`database file not found: ${dbPath}`);
    }
    if (!st.isFile) throw new DatabaseError(`not a database file: ${dbPath}`);
    this.#lockFile = await acquireLock(dbPath);
    this.#h = SqliteHandle.open(dbPath, { busyTimeoutMs: this.#o.sync.busyTimeoutMs });
    const mode = this.#h.journalMode();
    if (mode !== "wal") {
      throw new DatabaseError(
        `${dbPath} is in ${mode} journal mode; walrust needs WAL mode (fix: sqlite3 ${dbPath} 'PRAGMA journal_mode=WAL')`,
      );
    }
    this.#pageSize = this.#h.pageSize();
    this.#db = DbFileReader.openSync(dbPath);
    this.#pages = new PageSource(dbPath, this.#db, this.#pageSize);
    await this.state.init();
    this.#meta = await this.state.readMeta();
    this.#uploads = new UploadQueue({
      state: this.state,
      meta: this.#meta,
      replica: this.#o.replica,
      prefix: this.#o.prefix,
      name: this.name,
      dbPath,
      pool: this.#o.pool,
      log: this.#o.log,
      notify: this.#o.notify,
      stats: this.stats,
    });

    await this.#loadPosition();

    // Seal: hold the write lock while we catch up, then bump the sequence in the same
    // transaction, so that if this write restarts the WAL every frame of the old WAL was copied.
    // (Creating our tables writes only on the very first start, which snapshots anyway.)
    this.#h.ensureLitestreamTables();
    await this.#sealedBump();
    this.#h.beginReadLock();
    await this.#syncLocked();
    if (this.#o.sync.onStartup && this.#meta.snapshotTXID === 0 && this.#txid > 0) {
      await this.#snapshotLocked("first start");
    }
    log.info("replicating", {
      db: dbPath,
      prefix: this.#o.prefix,
      txid: this.#txid,
      remote_txid: this.#meta.remoteTXID,
      pending: this.#uploads.length,
    });
  }

  /** Decide where to resume: the newest local L0 file when the WAL still matches it. */
  async #loadPosition(): Promise<void> {
    const { replica, prefix, log } = this.#o;
    const local = await this.state.list(0);
    const snaps = await this.state.list(SNAPSHOT_LEVEL);
    const newest = local.at(-1);
    const localTXID = newest?.maxTXID ?? 0;

    // The replica may be ahead of us (state dir lost, database restored from a backup, another
    // writer): continue after its newest TXID with a full re-snapshot, never overwrite history.
    let remoteMax = this.#meta.remoteTXID;
    const probe = ltxKey(replica.kind, prefix, 0, remoteMax + 1, remoteMax + 1);
    try {
      if (localTXID === 0 || (await replica.storage.head(probe)) !== undefined) {
        remoteMax = await this.#listRemoteMax();
      }
    } catch (e) {
      // With local state we can start while storage is down: the queue drains when it returns.
      // Without it we cannot know which TXID to continue from, so refuse (exit 4).
      if (localTXID === 0 || !(e instanceof StorageError)) throw e;
      log.warn("replica unreachable at start; continuing from local state", {
        db: this.#o.dbPath,
        error: e.message,
      });
    }
    if (remoteMax > localTXID) {
      if (localTXID > 0) {
        log.warn("replica is ahead of local state; re-snapshotting", {
          db: this.#o.dbPath,
          local_txid: localTXID,
          remote_txid: remoteMax,
        });
      }
      for (const f of local) await removeIfExists(f.path);
      this.#txid = remoteMax;
      this.#meta.remoteTXID = remoteMax;
      this.#snapshotReason = localTXID === 0 && remoteMax > 0
        ? "no local state; replica has data"
        : "replica is ahead of local state";
      return;
    }
    this.#meta.remoteTXID = Math.min(this.#meta.remoteTXID, localTXID);
    // Uploaded level-0 files are no longer needed locally, except the newest (the position
    // record until a newer one is up).
    const uploaded = local.filter((f) => f.maxTXID <= this.#meta.remoteTXID);
    for (const f of uploaded.slice(0, -1)) await removeIfExists(f.path);
    this.#uploads.load(
      [...local.filter((f) => f.maxTXID > this.#meta.remoteTXID), ...snaps],
      uploaded.at(-1),
    );
    const first = this.#uploads.first;
    if (first && first.level === 0 && first.minTXID > this.#meta.remoteTXID + 1) {
      // A queued file is missing: the chain in the replica would have a gap.
      this.#txid = localTXID;
      this.#snapshotReason = "local upload queue has a gap";
      return;
    }
    if (!newest) {
      this.#txid = 0;
      this.#snapshotReason = "first start";
      return;
    }
    const h = await this.state.readHeader(newest.path);
    this.#txid = newest.maxTXID;
    this.#commit = h.commit;
    if (h.pageSize !== this.#pageSize) {
      this.#snapshotReason = `page size changed from ${h.pageSize} to ${this.#pageSize}`;
      return;
    }
    const end = h.walOffset + h.walSize;
    const wal = await this.#openWal();
    const hdr = wal ? await readWalHeader(wal) : undefined;
    if (!wal || !hdr) {
      this.#snapshotReason = "WAL is gone (checkpointed while walrust was not running)";
      return;
    }
    if (hdr.salt1 !== h.walSalt1 || hdr.salt2 !== h.walSalt2) {
      this.#snapshotReason = "WAL was restarted while walrust was not running";
      return;
    }
    // Re-read the WAL up to our position: proves the frames are the ones we copied (salts and
    // checksum chain) and rebuilds the page index needed for snapshots and growth pages.
    const scan = await scanWal(wal, hdr, {
      offset: WAL_HEADER_SIZE,
      maxBytes: end - WAL_HEADER_SIZE,
    });
    if (scan.endOffset !== end) {
      this.#snapshotReason = `WAL no longer holds the frames up to offset ${end}`;
      return;
    }
    this.#offset = end;
    this.#salt1 = hdr.salt1;
    this.#salt2 = hdr.salt2;
    this.#checksum = scan.checksum;
    this.#walIndex = scan.pages;
    if (this.#meta.checksum && this.#meta.checksumTXID === this.#txid) {
      this.#dbChecksum = new DatabaseChecksum(this.#pageSize);
      this.#dbChecksum.xor(BigInt(`0x${this.#meta.checksum}`));
    }
  }

  async #listRemoteMax(): Promise<number> {
    const { replica, prefix } = this.#o;
    let max = 0;
    for await (const o of replica.storage.list(levelDir(replica.kind, prefix, 0))) {
      const k = parseLtxKey(replica.kind, prefix, o.key);
      if (k && k.level === 0 && k.maxTXID > max) max = k.maxTXID;
    }
    return max;
  }

  async #openWal(): Promise<Deno.FsFile | undefined> {
    if (this.#wal) return this.#wal;
    try {
      this.#wal = await Deno.open(`${this.#o.dbPath}-wal`, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    return this.#wal;
  }

  /** Serialise work on this database. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#busy.then(fn, fn);
    this.#busy = p.catch(() => {});
    return p;
  }

  /** True when the WAL changed since the last look (cheap fstat). */
  async walChanged(): Promise<boolean> {
    const wal = await this.#openWal();
    if (!wal) return false;
    const st = await wal.stat();
    const m = st.mtime?.getTime() ?? 0;
    const changed = st.size !== this.#lastWalSize || m !== this.#lastWalMtime;
    this.#lastWalSize = st.size;
    this.#lastWalMtime = m;
    return changed;
  }

  /** Copy new committed frames into a level-0 file, then checkpoint or snapshot when due. */
  sync(): Promise<boolean> {
    return this.#exclusive(async () => {
      if (this.#closed) return false;
      const wrote = await this.#syncLocked();
      await this.#maintenanceLocked();
      return wrote;
    });
  }

  /** Take a level-9 snapshot now (after syncing). */
  snapshot(reason = "requested"): Promise<number> {
    return this.#exclusive(async () => {
      await this.#syncLocked();
      await this.#snapshotLocked(reason);
      return this.#txid;
    });
  }

  /** Force a checkpoint now (tests, shutdown). */
  checkpoint(mode: "PASSIVE" | "TRUNCATE" = "PASSIVE"): Promise<void> {
    return this.#exclusive(() => this.#checkpointLocked(mode));
  }

  async #syncLocked(): Promise<boolean> {
    const wal = await this.#openWal();
    const hdr = wal ? await readWalHeader(wal) : undefined;
    if (this.#snapshotReason) return await this.#resnapshotLocked(wal, hdr);
    if (!wal || !hdr) {
      // The WAL is empty or gone. Fine if we never copied from it, or if everything in it was
      // copied before it was reset; otherwise frames may have been checkpointed away unseen.
      if (this.#offset === WAL_HEADER_SIZE) return false;
      if (!this.#restartSafe) {
        this.#snapshotReason = "WAL was reset with frames walrust may not have copied";
        return await this.#resnapshotLocked(wal, hdr);
      }
      this.#offset = WAL_HEADER_SIZE;
      this.#salt1 = 0;
      this.#salt2 = 0;
      this.#checksum = undefined;
      this.#walIndex.clear();
      return false;
    }
    if (hdr.pageSize !== this.#pageSize) {
      this.#snapshotReason = "page size changed";
      return await this.#resnapshotLocked(wal, hdr);
    }
    if (hdr.salt1 !== this.#salt1 || hdr.salt2 !== this.#salt2) {
      if (!this.#restartSafe) {
        this.#snapshotReason = "WAL restarted with frames walrust may not have copied";
        return await this.#resnapshotLocked(wal, hdr);
      }
      // The WAL restarted after everything in it was copied: continue from its start.
      this.#offset = WAL_HEADER_SIZE;
      this.#salt1 = hdr.salt1;
      this.#salt2 = hdr.salt2;
      this.#checksum = undefined;
      this.#walIndex.clear();
    }
    let wrote = false;
    for (;;) {
      const scan = await scanWal(wal, hdr, {
        offset: this.#offset,
        checksum: this.#checksum,
        maxBytes: this.#o.sync.maxSyncWalBytes,
      });
      if (scan.endOffset === this.#offset) break;
      await this.#writeL0(wal, hdr, scan.pages, scan.commit, scan.endOffset);
      for (const [pgno, off] of scan.pages) this.#walIndex.set(pgno, off);
      this.#pruneIndex(scan.commit);
      this.#offset = scan.endOffset;
      this.#checksum = scan.checksum;
      this.#commit = scan.commit;
      this.#restartSafe = false;
      wrote = true;
      if (!scan.limited) break;
    }
    this.lastSyncAt = Date.now();
    this.stats.syncs++;
    if (wrote) {
      this.#syncedSinceCheckpoint = true;
      this.#uploads.kick();
    }
    return wrote;
  }

  #pruneIndex(commit: number): void {
    for (const pgno of this.#walIndex.keys()) if (pgno > commit) this.#walIndex.delete(pgno);
  }

  /** Write L0 file txid+1 with the changed pages plus growth pages. */
  async #writeL0(
    wal: Deno.FsFile,
    hdr: WalHeader,
    changed: Map<number, number>,
    commit: number,
    end: number,
  ): Promise<void> {
    const txid = this.#txid + 1;
    const pgnos = new Set<number>();
    for (const p of changed.keys()) if (p <= commit) pgnos.add(p);
    // Growth pages: a page added since the previous file that this batch did not write must
    // still reach the replica, or a restore would miss it.
    const lock = lockPgno(this.#pageSize);
    for (let p = this.#commit + 1; p <= commit; p++) if (p !== lock) pgnos.add(p);
    const sorted = [...pgnos].sort((a, b) => a - b);
    const header = this.#header(txid, txid, commit, this.#offset, end - this.#offset, hdr);
    const path = this.state.path(0, txid, txid);
    const w = await LtxFileWriter.create(path, header, this.#o.sync.format);
    this.#pages.invalidate();
    const sum = this.#dbChecksum;
    try {
      for (const pgno of sorted) {
        // Keep the database checksum current: take the page's previous version out (XOR is its
        // own inverse), put the new one in.
        if (sum && pgno <= this.#commit) sum.add(pgno, await this.#previousPage(wal, pgno));
        const off = changed.get(pgno) ?? this.#walIndex.get(pgno);
        const data = off !== undefined
          ? await this.#pages.fromWal(wal, off, pgno)
          : this.#pages.fromDb(pgno);
        sum?.add(pgno, data);
        await w.encodePage(pgno, data);
      }
      // Pages cut off by a shrink leave the database too.
      if (sum) {
        for (let p = commit + 1; p <= this.#commit; p++) {
          if (p !== lock) sum.add(p, await this.#previousPage(wal, p));
        }
      }
      const size = await w.commit();
      this.#uploads.push({
        level: 0,
        minTXID: txid,
        maxTXID: txid,
        path,
        size,
        postApplyChecksum: sum?.value(),
        timestamp: header.timestamp,
      });
    } catch (e) {
      await w.abort();
      throw e;
    } finally {
      this.#pages.invalidate();
    }
    this.#txid = txid;
    this.#recordChecksum();
    this.stats.l0Written++;
  }

  /** A page as of the current position: its newest copied WAL frame, else the database file. */
  #previousPage(wal: Deno.FsFile, pgno: number): Promise<Uint8Array> | Uint8Array {
    const off = this.#walIndex.get(pgno);
    return off !== undefined ? this.#pages.fromWal(wal, off, pgno) : this.#pages.fromDb(pgno);
  }

  /** Keep the checksum with its TXID in the meta record (persisted with the next upload). */
  #recordChecksum(): void {
    this.#meta.checksum = this.#dbChecksum ? formatHex64(this.#dbChecksum.value()) : undefined;
    this.#meta.checksumTXID = this.#dbChecksum ? this.#txid : undefined;
  }

  #header(
    min: number,
    max: number,
    commit: number,
    walOffset: number,
    walSize: number,
    hdr: WalHeader | undefined,
  ): LtxHeader {
    return {
      flags: HEADER_FLAG_NO_CHECKSUM,
      pageSize: this.#pageSize,
      commit,
      minTXID: min,
      maxTXID: max,
      timestamp: Date.now(),
      preApplyChecksum: 0n,
      walOffset,
      walSize,
      walSalt1: hdr?.salt1 ?? 0,
      walSalt2: hdr?.salt2 ?? 0,
      nodeID: 0n,
    };
  }

  /**
   * Continuity is broken: write the whole database as level-0 file txid+1 (so the level-0 chain
   * stays contiguous) and as a level-9 snapshot 1..txid+1, in one pass.
   */
  async #resnapshotLocked(
    wal: Deno.FsFile | undefined,
    hdr: WalHeader | undefined,
  ): Promise<boolean> {
    const reason = this.#snapshotReason ?? "requested";
    let index = new Map<number, number>();
    let end = WAL_HEADER_SIZE;
    let checksum: [number, number] | undefined;
    let commit = 0;
    if (wal && hdr && hdr.pageSize === this.#pageSize) {
      const scan = await scanWal(wal, hdr, { offset: WAL_HEADER_SIZE });
      index = scan.pages;
      end = scan.endOffset;
      checksum = scan.checksum;
      commit = scan.commit;
    }
    if (commit === 0) {
      commit = Math.floor(this.#db.size() / this.#pageSize);
    }
    if (commit === 0) return false; // empty database: nothing to replicate yet
    const txid = this.#txid + 1;
    const walOffset = WAL_HEADER_SIZE;
    const l0Header = this.#header(txid, txid, commit, walOffset, end - walOffset, hdr);
    const l0Path = this.state.path(0, txid, txid);
    const writers = [await LtxFileWriter.create(l0Path, l0Header, this.#o.sync.format)];
    const withSnapshot = txid > 1 || this.#o.sync.onStartup;
    const snapPath = this.state.path(SNAPSHOT_LEVEL, 1, txid);
    let snapTimestamp: number | undefined;
    if (withSnapshot) {
      const last = Math.max(end - walFrameSize(this.#pageSize), WAL_HEADER_SIZE);
      const sh = this.#header(1, txid, commit, last, end - last, hdr);
      snapTimestamp = sh.timestamp;
      writers.push(await LtxFileWriter.create(snapPath, sh, this.#o.sync.format));
    }
    let sum: DatabaseChecksum;
    try {
      sum = await this.#streamAllPages(wal, index, commit, writers);
      const postApplyChecksum = sum.value();
      const l0Size = await writers[0].commit();
      this.#uploads.push({
        level: 0,
        minTXID: txid,
        maxTXID: txid,
        path: l0Path,
        size: l0Size,
        postApplyChecksum,
        timestamp: l0Header.timestamp,
      });
      if (withSnapshot) {
        const s = await writers[1].commit();
        this.#uploads.push({
          level: SNAPSHOT_LEVEL,
          minTXID: 1,
          maxTXID: txid,
          path: snapPath,
          size: s,
          postApplyChecksum,
          timestamp: snapTimestamp,
        });
      }
    } catch (e) {
      for (const w of writers) await w.abort();
      throw e;
    }
    this.#o.log.info("snapshot", { db: this.#o.dbPath, txid, pages: commit, reason });
    this.#txid = txid;
    this.#commit = commit;
    this.#offset = end;
    this.#salt1 = hdr?.salt1 ?? 0;
    this.#salt2 = hdr?.salt2 ?? 0;
    this.#checksum = checksum;
    this.#walIndex = index;
    this.#snapshotReason = undefined;
    this.#restartSafe = false;
    this.#dbChecksum = sum;
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

  async #streamAllPages(
    wal: Deno.FsFile | undefined,
    index: Map<number, number>,
    commit: number,
    writers: LtxFileWriter[],
  ): Promise<DatabaseChecksum> {
    const lock = lockPgno(this.#pageSize);
    const sum = new DatabaseChecksum(this.#pageSize);
    this.#pages.invalidate();
    this.#pages.beginSequential();
    try {
      for (let pgno = 1; pgno <= commit; pgno++) {
        if (pgno === lock) continue;
        const off = index.get(pgno);
        const data = off !== undefined && wal
          ? await this.#pages.fromWal(wal, off, pgno)
          : this.#pages.fromDb(pgno);
        sum.add(pgno, data);
        for (const w of writers) await w.encodePage(pgno, data);
      }
    } finally {
      this.#pages.invalidate();
    }
    return sum;
  }

  /** Level-9 snapshot of the current position (no new TXID). */
  async #snapshotLocked(reason: string): Promise<void> {
    if (this.#txid === 0) return;
    const wal = await this.#openWal();
    const hdr = wal ? await readWalHeader(wal) : undefined;
    const txid = this.#txid;
    const path = this.state.path(SNAPSHOT_LEVEL, 1, txid);
    const last = Math.max(this.#offset - walFrameSize(this.#pageSize), WAL_HEADER_SIZE);
    const h = this.#header(1, txid, this.#commit, last, this.#offset - last, hdr);
    const w = await LtxFileWriter.create(path, h, this.#o.sync.format);
    try {
      const sum = await this.#streamAllPages(wal, this.#walIndex, this.#commit, [w]);
      // A full pass checks the incrementally tracked checksum: they must agree.
      if (this.#dbChecksum && this.#dbChecksum.value() !== sum.value()) {
        this.#o.log.error("tracked database checksum disagrees with a full read; re-basing", {
          db: this.#o.dbPath,
          txid,
          tracked: formatHex64(this.#dbChecksum.value()),
          actual: formatHex64(sum.value()),
        });
      }
      this.#dbChecksum = sum;
      this.#recordChecksum();
      const size = await w.commit();
      this.#uploads.remove(path);
      this.#uploads.push({
        level: SNAPSHOT_LEVEL,
        minTXID: 1,
        maxTXID: txid,
        path,
        size,
        postApplyChecksum: sum.value(),
        timestamp: h.timestamp,
      });
    } catch (e) {
      await w.abort();
      throw e;
    }
    this.stats.snapshotsWritten++;
    this.#meta.snapshotTXID = txid;
    this.#meta.snapshotAt = Date.now();
    await this.state.writeMeta(this.#meta);
    this.#o.log.info("snapshot", { db: this.#o.dbPath, txid, pages: this.#commit, reason });
    this.#uploads.kick();
  }

  /** Checkpoint, scheduled snapshot and on-demand snapshot requests. */
  async #maintenanceLocked(): Promise<void> {
    const s = this.#o.sync;
    const frames = (this.#offset - WAL_HEADER_SIZE) / walFrameSize(this.#pageSize);
    const now = Date.now();
    const overThreshold = s.walTruncateThresholdPages > 0 && frames >= s.walTruncateThresholdPages;
    if (overThreshold !== this.#walOverThreshold) {
      this.#walOverThreshold = overThreshold;
      if (overThreshold) {
        this.#o.log.error(
          "WAL is past wal_truncate_threshold_pages; forcing a TRUNCATE checkpoint",
          {
            db: this.#o.dbPath,
            frames,
          },
        );
        this.#o.notify?.("wal_size_exceeded", {
          database: this.name,
          error: `WAL holds ${frames} frames (threshold ${s.walTruncateThresholdPages})`,
          context: { frames, threshold: s.walTruncateThresholdPages },
        });
      }
    }
    let mode: "PASSIVE" | "TRUNCATE" | undefined;
    if (s.walTruncateThresholdPages > 0 && frames >= s.walTruncateThresholdPages) mode = "TRUNCATE";
    else if (frames >= s.minCheckpointPageCount) mode = "PASSIVE";
    else if (
      s.checkpointIntervalMs > 0 && now - this.#lastCheckpointAt >= s.checkpointIntervalMs &&
      this.#syncedSinceCheckpoint && frames > 1
    ) mode = "PASSIVE";
    if (mode) {
      const max = this.#o.cacheMaxBytes;
      const over = max !== undefined && this.#uploads.length > 0 &&
        (await this.state.queueBytes()) > max;
      if (over !== this.#queueOverCap) {
        this.#queueOverCap = over;
        if (over) {
          this.#o.log.error(
            "upload queue is over [cache] max_size: checkpoints are stopped so SQLite keeps the frames; the WAL will grow until uploads resume",
            { db: this.#o.dbPath, max_size: max },
          );
        } else {this.#o.log.info("upload queue is below [cache] max_size again; checkpointing", {
            db: this.#o.dbPath,
          });}
      }
      if (!over) await this.#checkpointLocked(mode);
    }
    if (
      s.snapshotIntervalMs > 0 && this.#txid > this.#meta.snapshotTXID &&
      now - this.#meta.snapshotAt >= s.snapshotIntervalMs
    ) {
      await this.#snapshotLocked("interval");
    }
    try {
      await Deno.stat(this.state.snapshotRequestPath);
      await this.#snapshotLocked("requested");
      await removeIfExists(this.state.snapshotRequestPath);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /**
   * Our checkpoint window. Sync under a write barrier, release the read lock, checkpoint, then
   * seal again with our sequence bump so that a WAL restart is only ever observed after every
   * frame of the old WAL was copied. `data_version` tells whether another connection committed
   * between the barrier and the checkpoint (frames we might not have copied).
   */
  async #checkpointLocked(mode: "PASSIVE" | "TRUNCATE"): Promise<void> {
    this.#h.beginWriteBarrier();
    let v1: number;
    try {
      await this.#syncLocked();
      v1 = this.#h.dataVersion();
    } finally {
      this.#h.releaseWriteBarrier();
    }
    let result;
    try {
      result = this.#h.checkpoint(mode);
    } catch (e) {
      this.#o.log.warn("checkpoint failed", { db: this.#o.dbPath, mode, error: String(e) });
      return;
    }
    const v2 = this.#h.dataVersion();
    this.#pages.invalidate();
    // No commit by anyone between our sealed sync and the checkpoint: the WAL held only frames
    // we copied, so a restart of it loses nothing.
    if (v1 === v2) this.#restartSafe = true;
    await this.#sealedBump();
    this.#h.releaseReadLock();
    this.#h.beginReadLock();
    await this.#syncLocked();
    this.stats.checkpoints++;
    this.#lastCheckpointAt = Date.now();
    this.#syncedSinceCheckpoint = false;
    this.#o.log.debug("checkpoint", { db: this.#o.dbPath, mode, ...result });
  }

  /**
   * Under the write barrier: copy every committed frame, then bump `_litestream_seq` and commit.
   * If that commit restarts the WAL, the old WAL held nothing we had not copied.
   */
  async #sealedBump(): Promise<void> {
    this.#h.beginWriteBarrier();
    try {
      if (!this.#snapshotReason) await this.#syncLocked();
      this.#h.commitWriteBarrier();
    } catch (e) {
      this.#h.releaseWriteBarrier();
      throw e;
    }
    this.#restartSafe = true;
  }

  /** Start uploading queued files in the background (no-op while running or backing off). */
  kickUpload(): void {
    this.#uploads.kick();
  }

  /** Upload what is queued; false if `deadline` passed first. */
  drainUploads(deadline: number): Promise<boolean> {
    return this.#uploads.drain(deadline);
  }

  /** Stop work: wait for the current operation. The SQLite connections stay open on purpose. */
  async stop(): Promise<void> {
    this.#closed = true;
    await this.#busy;
  }
}

export { UploadPool };
