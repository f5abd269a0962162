/**
 * A read replica: keeps a local copy of one replicated database current by applying only what
 * is new. Each poll asks the replica for the level-0 file that starts right after the applied
 * TXID (one narrow listing); when compaction removed it, a covering file of a higher level
 * serves; a gap (files pruned while offline), a replica that went backwards, or a file that does
 * not continue the applied state (another database at the source) re-bootstraps from the newest
 * snapshot, said once in the log. docs/replicas.md has the design.
 */
import { dirname } from "node:path";
import { DatabaseError, IntegrityError, WalrustError } from "../errors.ts";
import { LtxDecoder, readLtxFile, verifyLtx } from "../ltx/decoder.ts";
import { type LtxHeader, tracksChecksums } from "../ltx/header.ts";
import { DatabaseChecksum } from "../ltx/checksum.ts";
import { formatHex64, formatTXID } from "../ltx/names.ts";
import { lockPgno } from "../ltx/header.ts";
import type { Logger } from "../observe/log.ts";
import { readAtSync } from "../sqlite/pagefile.ts";
import { toRollbackMode } from "../sqlite/handle.ts";
import { SNAPSHOT_LEVEL } from "../storage/layout.ts";
import type { DbReplica, ReplicaFile } from "../storage/replica.ts";
import { atomicWriteFile, fsyncDir, removeIfExists, writeAll } from "../fsutil.ts";
import { type Batch, LocalCopy, type PageImage } from "./local.ts";

/** What the follower needs from outside (the API layer injects the restore). */
export interface FollowerOptions {
  replica: DbReplica;
  /** The local copy readers open. */
  localPath: string;
  /** The replica, as a URL, for messages and the state file. */
  source: string;
  log: Logger;
  /** Restore the latest state of the replica into `path` (a new file); returns its TXID. */
  bootstrap(path: string): Promise<{ txid: number }>;
  /** Levels compaction writes (the follower looks there when a level-0 file is gone). */
  maxLevel?: number;
  /** How often, while nothing new arrives, the replica is checked for gaps and regressions. */
  checkEveryMs?: number;
  /** Busy timeout of the follower's own connection (ms). */
  busyTimeoutMs?: number;
}

/** Where a follower is. */
export interface FollowerStatus {
  /** The local copy. */
  path: string;
  /** TXID the local copy is at. */
  txid: number;
  /** Header time of the newest file applied (ms; the primary's commit time), 0 before one. */
  appliedTimestamp: number;
  /** When the last poll finished (ms). */
  lastPollAt: number;
  /** When a poll last found nothing newer than the copy (ms): the copy was current then. */
  caughtUpAt: number;
  /** Batches applied since the start. */
  applied: number;
  /** Re-bootstraps since the start. */
  rebootstraps: number;
  /** Bytes downloaded since the start (bootstraps included). */
  bytesDownloaded: number;
}

/** The state file beside the copy (`PATH-walrust-replica.json`). */
interface FollowerState {
  version: 1;
  source: string;
  txid: number;
  /** The primary's database checksum after `txid` (hex), when its files track checksums. */
  checksum?: string;
  /** The copy's change counter walrust wrote last. */
  counter: number;
  /** A batch that was being applied: on restart its counter tells whether it landed. */
  applying?: { key: string; txid: number; checksum?: string; counter: number; timestamp: number };
  appliedTimestamp: number;
}

/** Follows one database. */
export class Follower {
  readonly #o: FollowerOptions;
  #copy?: LocalCopy;
  #state?: FollowerState;
  #lastCheck = 0;
  readonly #status: FollowerStatus;

  constructor(o: FollowerOptions) {
    this.#o = o;
    this.#status = {
      path: o.localPath,
      txid: 0,
      appliedTimestamp: 0,
      lastPollAt: 0,
      caughtUpAt: 0,
      applied: 0,
      rebootstraps: 0,
      bytesDownloaded: 0,
    };
  }

  get statePath(): string {
    return `${this.#o.localPath}-walrust-replica.json`;
  }

  get #stagePath(): string {
    return `${this.#o.localPath}-walrust-replica.ltx`;
  }

  /** A snapshot of where the follower is. */
  status(): FollowerStatus {
    return { ...this.#status };
  }

  /** Open the local copy (bootstrapping it when there is none) and settle an interrupted batch. */
  async start(): Promise<void> {
    const { localPath, log } = this.#o;
    const state = await this.#readState();
    const exists = await Deno.stat(localPath).then(() => true, () => false);
    if (!exists || !state) {
      if (exists) {
        throw new DatabaseError(
          `${localPath} exists but has no ${this.statePath}: it is not a walrust read replica ` +
            "(move it away, or pick another --local path)",
        );
      }
      await this.#bootstrapNew();
      return;
    }
    if (state.source !== this.#o.source) {
      throw new DatabaseError(
        `${localPath} follows ${state.source}, not ${this.#o.source} (fix: another --local ` +
          "path, or delete it and its -walrust-replica.json to follow the new source)",
      );
    }
    // Opening rolls back a batch a crash left half-written (SQLite plays the hot journal).
    const copy = LocalCopy.open(localPath, this.#o.busyTimeoutMs);
    this.#copy = copy;
    if (state.applying) {
      const a = state.applying;
      if (copy.counter === a.counter) {
        // The batch landed before the state said so.
        state.txid = a.txid;
        state.checksum = a.checksum;
        state.counter = a.counter;
        state.appliedTimestamp = a.timestamp;
      }
      state.applying = undefined;
      await this.#writeState(state);
    }
    this.#state = state;
    if (copy.counter !== state.counter) {
      throw new IntegrityError(
        `${localPath} was written by something other than walrust (its change counter is ` +
          `${copy.counter}, walrust wrote ${state.counter}); the local copy is read-only: ` +
          "delete it and its -walrust-replica.json to re-bootstrap",
      );
    }
    this.#status.txid = state.txid;
    this.#status.appliedTimestamp = state.appliedTimestamp;
    log.info("following", { db: localPath, source: this.#o.source, txid: formatTXID(state.txid) });
  }

  /** One poll: apply every new file in order; returns how many batches were applied. */
  async poll(now = Date.now()): Promise<number> {
    const state = this.#state!;
    const asOf = Date.now();
    let applied = 0;
    let fromLevels = false;
    for (;;) {
      const next = state.txid + 1;
      let file: ReplicaFile | undefined = (await this.#o.replica.startingAt(0, next))[0];
      // No level-0 file: usually nothing new. Now and then (and right after a compacted file
      // served, as level 0 may still be missing) look in the higher levels.
      const due = now - this.#lastCheck >= (this.#o.checkEveryMs ?? 5000);
      if (!file && (due || fromLevels)) {
        if (due) this.#lastCheck = now;
        file = await this.#covering(next);
        if (!file && due) await this.#checkRegression();
      }
      if (!file) {
        this.#status.caughtUpAt = asOf;
        break;
      }
      fromLevels = file.level > 0;
      if (!(await this.#applyFile(file))) break; // re-bootstrapped: the next poll goes on
      applied++;
    }
    this.#status.lastPollAt = Date.now();
    return applied;
  }

  /** A file of a higher level that covers `next` (level-0 files were compacted away). */
  async #covering(next: number): Promise<ReplicaFile | undefined> {
    const top = this.#o.maxLevel ?? 3;
    let best: ReplicaFile | undefined;
    for (let level = 1; level <= top; level++) {
      for (const f of await this.#o.replica.ltxFiles(level, { after: next - 1 })) {
        if (f.minTXID <= next && (!best || f.maxTXID > best.maxTXID)) best = f;
      }
    }
    return best;
  }

  /**
   * Nothing continues the applied TXID: a newer snapshot means files were pruned while we were
   * away (a gap); a replica whose newest TXID is below ours went backwards (another database).
   * Either way: re-bootstrap.
   */
  async #checkRegression(): Promise<void> {
    const state = this.#state!;
    const db = this.#o.replica;
    let newest = 0;
    for (const f of await db.ltxFiles(SNAPSHOT_LEVEL)) newest = Math.max(newest, f.maxTXID);
    if (newest > state.txid) {
      await this.#rebootstrap(
        `the replica has no file after TXID ${formatTXID(state.txid)} but a snapshot at ` +
          `${formatTXID(newest)} (files were pruned while this follower was behind)`,
      );
      return;
    }
    if (newest === 0 || newest === state.txid) return;
    // Newest snapshot below us: fine while the level-0 chain above it reaches our TXID.
    const [mine] = await db.startingAt(0, state.txid);
    if (mine && mine.maxTXID === state.txid) return;
    for (let level = 1; level <= (this.#o.maxLevel ?? 3); level++) {
      const files = await db.ltxFiles(level, { after: state.txid - 1 });
      if (files.some((f) => f.minTXID <= state.txid)) return;
    }
    await this.#rebootstrap(
      `the replica's history ends before TXID ${formatTXID(state.txid)} (the primary was ` +
        "restored to an older point or replaced by another database)",
    );
  }

  /** Download, verify and apply one file; false when it could not continue (re-bootstrapped). */
  async #applyFile(f: ReplicaFile): Promise<boolean> {
    const state = this.#state!;
    const stage = this.#stagePath;
    await this.#download(f, stage);
    const sum = await verifyLtx(readLtxFile(stage), { name: f.key });
    const h = sum.header;
    const next = state.txid + 1;
    if (h.minTXID > next || h.maxTXID < next) {
      throw new IntegrityError(`${f.key}: header TXIDs do not match its key`);
    }
    if (h.minTXID === next && state.checksum !== undefined && tracksChecksums(h)) {
      if (formatHex64(h.preApplyChecksum) !== state.checksum) {
        await removeIfExists(stage);
        await this.#rebootstrap(
          `${f.key} does not continue the applied state (its pre-apply checksum ` +
            `${formatHex64(h.preApplyChecksum)}, ours ${state.checksum}): another history`,
        );
        return false;
      }
    }
    const copy = this.#copy!;
    const checksum = tracksChecksums(h) ? formatHex64(sum.trailer.postApplyChecksum) : undefined;
    state.applying = {
      key: f.key,
      txid: h.maxTXID,
      checksum,
      counter: (copy.counter + 1) >>> 0,
      timestamp: h.timestamp,
    };
    await this.#writeState(state);
    await copy.apply(ltxBatch(stage, h, sum.pages));
    state.txid = h.maxTXID;
    state.checksum = checksum;
    state.counter = copy.counter;
    state.appliedTimestamp = h.timestamp;
    state.applying = undefined;
    await this.#writeState(state);
    await removeIfExists(stage);
    this.#status.txid = state.txid;
    this.#status.appliedTimestamp = h.timestamp;
    this.#status.applied++;
    this.#o.log.debug("applied", {
      db: this.#o.localPath,
      key: f.key,
      txid: formatTXID(h.maxTXID),
      pages: sum.pages.length,
    });
    return true;
  }

  async #download(f: ReplicaFile, path: string): Promise<void> {
    const out = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      for await (const chunk of await this.#o.replica.openLtx(f)) {
        await writeAll(out, chunk);
        this.#status.bytesDownloaded += chunk.length;
      }
    } finally {
      out.close();
    }
  }

  /**
   * First start: restore into a temp file, switch it to rollback mode, write the state, then
   * rename it into place; a crash at any step leaves either no copy (the next start begins
   * again) or a copy with its state.
   */
  async #bootstrapNew(): Promise<void> {
    const { localPath, log } = this.#o;
    const tmp = `${localPath}.walrust-bootstrap`;
    await removeIfExists(tmp);
    const { txid } = await this.#o.bootstrap(tmp);
    // The primary's checksum is of the file as restored, before its header says rollback mode.
    const info = await this.#fileInfo(tmp);
    toRollbackMode(tmp);
    const { counter } = await this.#fileInfo(tmp);
    this.#state = {
      version: 1,
      source: this.#o.source,
      txid,
      checksum: info.checksum,
      counter,
      appliedTimestamp: Date.now(),
    };
    await this.#writeState(this.#state);
    await Deno.rename(tmp, localPath);
    await fsyncDir(dirname(localPath));
    const copy = LocalCopy.open(localPath, this.#o.busyTimeoutMs);
    this.#copy = copy;
    copy.checkUntouched();
    this.#status.txid = txid;
    this.#status.bytesDownloaded += info.bytes;
    log.info("bootstrapped the read replica", {
      db: localPath,
      source: this.#o.source,
      txid: formatTXID(txid),
    });
  }

  /** Re-bootstrap in place: the new state goes in as one batch, so readers never see a mix. */
  async #rebootstrap(why: string): Promise<void> {
    const { localPath, log } = this.#o;
    log.warn("re-bootstrapping the read replica", { db: localPath, reason: why });
    const tmp = `${localPath}.walrust-bootstrap`;
    await removeIfExists(tmp);
    try {
      const { txid } = await this.#o.bootstrap(tmp);
      const info = await this.#fileInfo(tmp);
      const copy = this.#copy!;
      const state = this.#state!;
      state.applying = {
        key: "bootstrap",
        txid,
        checksum: info.checksum,
        counter: (copy.counter + 1) >>> 0,
        timestamp: Date.now(),
      };
      await this.#writeState(state);
      await copy.apply(fileBatch(tmp, info.pageSize, info.commit));
      Object.assign(state, {
        txid,
        checksum: info.checksum,
        counter: copy.counter,
        appliedTimestamp: Date.now(),
        applying: undefined,
      });
      await this.#writeState(state);
      this.#status.txid = txid;
      this.#status.rebootstraps++;
      this.#status.bytesDownloaded += info.bytes;
    } finally {
      await removeIfExists(tmp);
    }
  }

  /** Page size, size in pages and the LTX database checksum of a restored file. */
  async #fileInfo(path: string) {
    const f = await Deno.open(path, { read: true });
    try {
      const head = new Uint8Array(100);
      readAtSync(f, 0, head);
      const view = new DataView(head.buffer);
      const raw = view.getUint16(16);
      const pageSize = raw === 1 ? 65536 : raw;
      const counter = view.getUint32(24);
      const bytes = (await f.stat()).size;
      const commit = Math.floor(bytes / pageSize);
      const sum = new DatabaseChecksum(pageSize);
      const buf = new Uint8Array(pageSize);
      const lock = lockPgno(pageSize);
      for (let pgno = 1; pgno <= commit; pgno++) {
        if (pgno === lock) continue;
        readAtSync(f, (pgno - 1) * pageSize, buf);
        sum.add(pgno, buf);
      }
      return { pageSize, commit, bytes, counter, checksum: formatHex64(sum.value()) };
    } finally {
      f.close();
    }
  }

  async #readState(): Promise<FollowerState | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.statePath);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    try {
      const s = JSON.parse(text) as FollowerState;
      if (s.version !== 1 || typeof s.txid !== "number") throw new Error("unknown format");
      return s;
    } catch (e) {
      throw new WalrustError(
        `${this.statePath}: unreadable follower state (${e instanceof Error ? e.message : e}); ` +
          "delete it and the local copy to re-bootstrap",
      );
    }
  }

  async #writeState(s: FollowerState): Promise<void> {
    await atomicWriteFile(this.statePath, new TextEncoder().encode(JSON.stringify(s)));
  }
}

/** A staged LTX file as a batch. */
function ltxBatch(path: string, h: LtxHeader, pgnos: number[]): Batch {
  return {
    pageSize: h.pageSize,
    commit: h.commit,
    pgnos,
    async *pages(): AsyncIterable<PageImage> {
      const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
      for await (const p of dec.pages()) yield p;
      await dec.finish();
    },
  };
}

/** Every page of a restored database file as a batch (a re-bootstrap). */
function fileBatch(path: string, pageSize: number, commit: number): Batch {
  const pgnos = Array.from({ length: commit }, (_, i) => i + 1);
  return {
    pageSize,
    commit,
    pgnos,
    async *pages(): AsyncIterable<PageImage> {
      const f = await Deno.open(path, { read: true });
      try {
        for (let pgno = 1; pgno <= commit; pgno++) {
          const data = new Uint8Array(pageSize);
          readAtSync(f, (pgno - 1) * pageSize, data);
          yield { pgno, data };
        }
      } finally {
        f.close();
      }
    },
  };
}
