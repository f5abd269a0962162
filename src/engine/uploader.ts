/**
 * The upload side of one database: its queue of durable local LTX files, uploaded in TXID order
 * (a gap in the replica's level-0 chain would stop a restore), with backoff while storage fails,
 * one log line and one alert per failure episode, and the shared pool that bounds concurrency
 * across all databases.
 */
import type { Logger } from "../observe/log.ts";
import type { DbReplica, LtxId } from "../storage/replica.ts";
import { POST_APPLY_CHECKSUM_META, timestampMeta } from "../storage/layout.ts";
import { formatHex64 } from "../ltx/names.ts";
import { removeIfExists } from "../fsutil.ts";
import type { LocalLtx, LocalMeta, LocalState } from "./localstate.ts";

/** Files up to this size are uploaded from memory (replayable by retries); larger ones stream. */
const UPLOAD_IN_MEMORY_MAX = 16 * 1024 * 1024;

/** Bounded concurrency shared by every database's uploads. */
export class UploadPool {
  #active = 0;
  #waiters: (() => void)[] = [];
  constructor(readonly limit: number) {}

  /** Run `fn` when a slot is free. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#active >= this.limit) await new Promise<void>((r) => this.#waiters.push(r));
    this.#active++;
    try {
      return await fn();
    } finally {
      this.#active--;
      this.#waiters.shift()?.();
    }
  }
}

/** What the queue needs from its database. */
export interface UploadQueueOptions {
  state: LocalState;
  /** Shared with the replicator: the queue advances `remoteTXID` and persists the record. */
  meta: LocalMeta;
  /** This database's files in the replica. */
  replica: DbReplica;
  name: string;
  dbPath: string;
  pool: UploadPool;
  log: Logger;
  notify?: (
    event: "upload_failed",
    p: { database: string; error?: string; attempts?: number; context?: Record<string, unknown> },
  ) => void;
  stats: { uploads: number; uploadErrors: number };
  /**
   * The file backend only: the previous level-0 file we uploaded is gone from the replica (its
   * folder was deleted or replaced). Uploads stop until the replicator reconciles.
   */
  onReplicaLost?: (key: string) => void;
  /**
   * Keep level-0 files locally after upload (compaction reads them there, then removes them);
   * otherwise only the newest uploaded one is kept, as the position record.
   */
  keepUploadedL0?: boolean;
  /** Called after each file reached the replica. */
  onUploaded?: (f: LocalLtx) => void;
}

/** The ordered upload queue of one database. */
export class UploadQueue {
  #o: UploadQueueOptions;
  #files: LocalLtx[] = [];
  #running: Promise<void> | undefined;
  #failing = false;
  #failures = 0;
  #nextAt = 0;
  #backoffMs = 0;
  /** The last level-0 file uploaded: kept locally as the position record until the next one. */
  #lastL0: LocalLtx | undefined;
  #lastL0At = 0;
  /** Uploads wait while true (until the replicator has compared the replica with local state). */
  #held = true;
  /** Waiters for a file's upload, by local path. */
  #waiters = new Map<string, { resolve: () => void; reject: (e: Error) => void }[]>();
  /** Who follows the bytes of a file's upload (a snapshot command's progress line), by path. */
  #progress = new Map<string, ((done: number, total: number) => void)[]>();

  constructor(o: UploadQueueOptions) {
    this.#o = o;
  }

  /** Files waiting. */
  get length(): number {
    return this.#files.length;
  }

  /** Uploads are flowing: not held, and the last attempt did not fail. */
  get flowing(): boolean {
    return !this.#held && !this.#failing;
  }

  /** The queued files, in upload order. */
  get files(): readonly LocalLtx[] {
    return this.#files;
  }

  /** The newest level-0 file already uploaded, while kept locally. */
  get lastUploaded(): LocalLtx | undefined {
    return this.#lastL0;
  }

  /** When (ms) `lastUploaded` finished uploading in this process; 0 when it was loaded. */
  get lastUploadedAt(): number {
    return this.#lastL0At;
  }

  /** Hold (true) or release (false) uploads. */
  set held(v: boolean) {
    this.#held = v;
    if (!v) this.kick();
  }
  get held(): boolean {
    return this.#held;
  }

  /**
   * Resolves when the file at `path` has been uploaded; rejects if it is dropped first.
   * `onProgress` hears the bytes handed to storage while it uploads.
   */
  whenUploaded(path: string, onProgress?: (done: number, total: number) => void): Promise<void> {
    if (!this.#files.some((f) => f.path === path)) return Promise.resolve();
    if (onProgress) this.#progress.set(path, [...(this.#progress.get(path) ?? []), onProgress]);
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(path) ?? [];
      list.push({ resolve, reject });
      this.#waiters.set(path, list);
    });
  }

  /**
   * Forget every queued file and the uploaded one (the replica will get a new snapshot instead)
   * and delete them locally; waits for an upload in flight first.
   */
  async clear(): Promise<void> {
    await this.#running;
    for (const f of this.#files) {
      await removeIfExists(f.path);
      this.#settle(f.path, new Error("dropped from the upload queue: a new snapshot replaces it"));
    }
    this.#files = [];
    if (this.#lastL0) await removeIfExists(this.#lastL0.path);
    this.#lastL0 = undefined;
    // Uploaded level-0 files kept for compaction describe the history being replaced.
    for (const f of await this.#o.state.list(0)) await removeIfExists(f.path);
  }

  #settle(path: string, error?: Error): void {
    this.#progress.delete(path);
    const list = this.#waiters.get(path);
    if (!list) return;
    this.#waiters.delete(path);
    for (const w of list) error ? w.reject(error) : w.resolve();
  }

  /**
   * Replace the queue (at start), ordered by TXID, a level-0 file before a snapshot ending there.
   * `uploaded` is the newest level-0 file already in the replica: kept until a newer one is up.
   */
  load(files: LocalLtx[], uploaded?: LocalLtx): void {
    this.#files = [...files].sort((a, b) => a.maxTXID - b.maxTXID || a.level - b.level);
    this.#lastL0 = uploaded;
  }

  /** Queue a durable local file. */
  push(f: LocalLtx): void {
    this.#files.push(f);
  }

  /** Drop a queued file that is being rewritten (a snapshot at the same TXID). */
  remove(path: string): void {
    this.#files = this.#files.filter((f) => f.path !== path);
  }

  /** Start uploading in the background (no-op while running or backing off). */
  kick(): void {
    if (this.#held || this.#running || this.#files.length === 0) return;
    if (Date.now() < this.#nextAt) return;
    this.#running = this.#upload().finally(() => (this.#running = undefined));
  }

  /** Upload until the queue is empty; false if `deadline` passed first. */
  async drain(deadline: number): Promise<boolean> {
    while (this.#files.length > 0) {
      if (Date.now() >= deadline) return false;
      this.#nextAt = 0;
      if (this.#held) return false;
      this.kick();
      if (this.#running) {
        await Promise.race([this.#running, sleep(Math.max(0, deadline - Date.now()))]);
      }
      if (this.#files.length > 0) await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
    }
    return true;
  }

  /** Upload queued files in order; returns when the queue is empty or an upload failed. */
  async #upload(): Promise<void> {
    const { replica, pool, log, state } = this.#o;
    const record = this.#o.meta;
    while (this.#files.length > 0 && !this.#held) {
      const f = this.#files[0];
      const key = replica.key(f.level, f.minTXID, f.maxTXID);
      try {
        if (await this.#replicaLost()) return;
        const timestamp = f.timestamp ?? (await state.readHeader(f.path)).timestamp;
        const meta: Record<string, string> = timestampMeta(timestamp);
        if (f.postApplyChecksum !== undefined) {
          meta[POST_APPLY_CHECKSUM_META] = formatHex64(f.postApplyChecksum);
        }
        const heard = this.#progress.get(f.path);
        const onBytes = heard && ((n: number) => heard.forEach((fn) => fn(n, f.size)));
        await pool.run(() => putLocalFile(replica, f, f.path, f.size, meta, onBytes));
      } catch (e) {
        this.#failed(key, e);
        return;
      }
      if (this.#failing) {
        log.info("uploads resumed", { db: this.#o.dbPath, key, failed_attempts: this.#failures });
      }
      this.#failing = false;
      this.#failures = 0;
      this.#backoffMs = 0;
      this.#files.shift();
      this.#o.stats.uploads++;
      if (f.level === 0) {
        // Before any await: a reconcile running meanwhile must see the file as uploaded (it is
        // no longer queued, and a listing taken during the put may not show it).
        const previous = this.#lastL0;
        this.#lastL0 = f;
        this.#lastL0At = Date.now();
        record.remoteTXID = Math.max(record.remoteTXID, f.maxTXID);
        await state.writeMeta(record, { durable: false });
        // The newest level-0 file is the position record for the next start: keep the file
        // just uploaded, drop the one before it (older than this one, so never the newest).
        if (previous && !this.#o.keepUploadedL0) await removeIfExists(previous.path);
      } else {
        await removeIfExists(f.path);
      }
      this.#settle(f.path);
      log.debug("uploaded", { db: this.#o.dbPath, key, bytes: f.size, queued: this.#files.length });
      this.#o.onUploaded?.(f);
    }
  }

  /**
   * On the file backend a stat is cheap: before each upload, check that the level-0 file we
   * uploaded last is still there, so a deleted replica folder is noticed at once instead of
   * being recreated by the next put with a chain nobody can restore.
   */
  async #replicaLost(): Promise<boolean> {
    const { replica } = this.#o;
    const last = this.#lastL0;
    if (replica.kind !== "file" || !last || !this.#o.onReplicaLost) return false;
    const l0 = { level: 0, minTXID: last.minTXID, maxTXID: last.maxTXID };
    if (await replica.hasLtx(l0)) return false;
    const key = replica.key(0, last.minTXID, last.maxTXID);
    this.#held = true;
    this.#o.onReplicaLost(key);
    return true;
  }

  /** Back off; log and alert once per failure episode, not per attempt. */
  #failed(key: string, e: unknown): void {
    this.#o.stats.uploadErrors++;
    this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, 500), 30_000);
    this.#nextAt = Date.now() + this.#backoffMs;
    this.#failures++;
    const error = e instanceof Error ? e.message : String(e);
    if (!this.#failing) {
      this.#o.log.error("upload failed; keeping files locally and retrying", {
        db: this.#o.dbPath,
        key,
        error,
      });
      this.#o.notify?.("upload_failed", {
        database: this.#o.name,
        error,
        attempts: this.#failures,
        context: { key, pending: this.#files.length },
      });
    }
    this.#failing = true;
  }
}

/**
 * Upload one local LTX file: from memory when small (a retry can replay it), else streamed.
 * `onBytes` hears how many bytes storage has taken so far.
 */
export async function putLocalFile(
  replica: DbReplica,
  id: LtxId,
  path: string,
  size: number,
  meta: Record<string, string>,
  onBytes?: (done: number) => void,
): Promise<void> {
  if (size <= UPLOAD_IN_MEMORY_MAX) {
    onBytes?.(0);
    await replica.putLtx(id, await Deno.readFile(path), meta);
  } else {
    await replica.putLtx(id, streamFile(path, onBytes), meta);
  }
  onBytes?.(size);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Stream a local file through ONE reused buffer: each chunk is valid until the next one is
 * requested. Both backends consume a chunk (write it, or copy it into their part buffer) before
 * asking for the next, and a fresh allocation per chunk would pile up as garbage while a large
 * snapshot uploads.
 */
async function* streamFile(
  path: string,
  onBytes?: (done: number) => void,
): AsyncIterable<Uint8Array> {
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(256 * 1024);
    // A chunk asked for means the one before it was taken (the body contract).
    let taken = 0;
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      onBytes?.(taken);
      yield buf.subarray(0, n);
      taken += n;
    }
  } finally {
    f.close();
  }
}
