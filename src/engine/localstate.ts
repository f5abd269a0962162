/**
 * The local state directory `.<dbfile>-walrust/` beside a database. It holds LTX files that are
 * durable locally but maybe not yet in the replica (the disk upload queue), and a small meta
 * record. The newest level-0 file also serves as the WAL position record: its header holds the
 * TXID, WAL offset + size, salts and commit of the last sync.
 */
import { decodeHeader, HEADER_SIZE, type LtxHeader } from "../ltx/header.ts";
import { formatLtxName, parseLtxName } from "../ltx/names.ts";
import { LtxEncoder, type LtxFormat } from "../ltx/encoder.ts";
import { atomicWriteFile, fsyncDir, removeIfExists, writeAll } from "../fsutil.ts";
import { readAt } from "../sqlite/pagefile.ts";
import { DatabaseError } from "../errors.ts";

/** One LTX file in the local state directory. */
export interface LocalLtx {
  level: number;
  minTXID: number;
  maxTXID: number;
  path: string;
  size: number;
  /** The database checksum after this file, when known (uploaded as object metadata). */
  postApplyChecksum?: bigint;
  /** Its header timestamp (ms), when the writer still knows it; else read from the file. */
  timestamp?: number;
}

/** meta.json's size: its JSON (under 200 bytes) padded with spaces, rewritten in place. */
const META_RECORD_BYTES = 512;

/** Small facts kept across restarts. */
export interface LocalMeta {
  /** Highest TXID known to be in the replica (level 0 chain). */
  remoteTXID: number;
  /** TXID and time (ms) of the newest level-9 snapshot written. */
  snapshotTXID: number;
  snapshotAt: number;
  /** The database checksum (16 hex) at `checksumTXID`, when tracked. */
  checksum?: string;
  checksumTXID?: number;
}

/**
 * Give local files a process left queued the checksum `meta.json` recorded at their TXID (it is
 * written with every snapshot): the checksum lived only in that process's memory, and without
 * this the next process uploads them with no `walrust-post-apply-checksum`.
 */
export function recoverChecksums(files: LocalLtx[], meta: LocalMeta): void {
  // readMeta only keeps a well-formed checksum.
  if (!meta.checksum || !meta.checksumTXID) return;
  const sum = BigInt(`0x${meta.checksum}`);
  for (const f of files) {
    if (f.maxTXID === meta.checksumTXID && f.postApplyChecksum === undefined) {
      f.postApplyChecksum = sum;
    }
  }
}

/** The state directory of one database. */
export class LocalState {
  readonly dir: string;
  constructor(readonly dbPath: string) {
    const slash = dbPath.lastIndexOf("/");
    this.dir = `${dbPath.slice(0, slash)}/.${dbPath.slice(slash + 1)}-walrust`;
  }

  /** Create the directories and remove temp files a crash left behind. */
  async init(): Promise<void> {
    // Compaction outputs are uploaded and removed; any left were interrupted by a crash.
    await Deno.remove(`${this.dir}/compact`, { recursive: true }).catch(() => {});
    for (const level of [0, 9]) {
      await Deno.mkdir(`${this.dir}/ltx/${level}`, { recursive: true, mode: 0o700 });
      for await (const e of Deno.readDir(`${this.dir}/ltx/${level}`)) {
        if (e.name.endsWith(".tmp")) await removeIfExists(`${this.dir}/ltx/${level}/${e.name}`);
      }
    }
  }

  /** Path of a local LTX file. */
  path(level: number, min: number, max: number): string {
    return `${this.dir}/ltx/${level}/${formatLtxName(min, max)}`;
  }

  /** A fresh path for a compaction output (removed after upload; cleared at start). */
  async compactionPath(level: number, min: number, max: number): Promise<string> {
    await Deno.mkdir(`${this.dir}/compact`, { recursive: true, mode: 0o700 });
    const id = crypto.randomUUID().slice(0, 8);
    return `${this.dir}/compact/${level}-${formatLtxName(min, max)}.${id}`;
  }

  /** LTX files of one level, ascending by (min, max). */
  async list(level: number): Promise<LocalLtx[]> {
    const out: LocalLtx[] = [];
    try {
      for await (const e of Deno.readDir(`${this.dir}/ltx/${level}`)) {
        const n = e.isFile ? parseLtxName(e.name) : undefined;
        if (!n) continue;
        const path = `${this.dir}/ltx/${level}/${e.name}`;
        const st = await Deno.stat(path);
        out.push({ level, minTXID: n.minTXID, maxTXID: n.maxTXID, path, size: st.size });
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out.sort((a, b) => a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
  }

  /** Read the header of a local LTX file. */
  async readHeader(path: string): Promise<LtxHeader> {
    const f = await Deno.open(path, { read: true });
    try {
      const b = new Uint8Array(HEADER_SIZE);
      if (await readAt(f, 0, b) < HEADER_SIZE) {
        throw new DatabaseError(`${path}: local LTX file is shorter than its header`);
      }
      return decodeHeader(b);
    } finally {
      f.close();
    }
  }

  /** The meta record, or defaults when absent or unreadable. */
  async readMeta(): Promise<LocalMeta> {
    try {
      const m = JSON.parse(await Deno.readTextFile(`${this.dir}/meta.json`));
      return {
        remoteTXID: Number(m.remoteTXID) || 0,
        snapshotTXID: Number(m.snapshotTXID) || 0,
        snapshotAt: Number(m.snapshotAt) || 0,
        checksum: typeof m.checksum === "string" && /^[0-9a-f]{16}$/.test(m.checksum)
          ? m.checksum
          : undefined,
        checksumTXID: Number(m.checksumTXID) || undefined,
      };
    } catch {
      return { remoteTXID: 0, snapshotTXID: 0, snapshotAt: 0 };
    }
  }

  /**
   * Persist the meta record: atomically and durably by default; `durable: false` (after each
   * upload) overwrites it in place instead, as one write of a fixed-size record (JSON padded with
   * spaces), no fsync. A record torn or lost to a power failure fails to parse and only makes
   * the next start re-check the replica (readMeta falls back to defaults; the listing decides
   * what is uploaded). In place because a new file per upload costs ext4 an inode allocation
   * that scans past every recently deleted inode (see docs/performance.md).
   */
  async writeMeta(m: LocalMeta, opts: { durable?: boolean } = {}): Promise<void> {
    const path = `${this.dir}/meta.json`;
    const json = JSON.stringify(m);
    const bytes = new TextEncoder().encode(json.padEnd(META_RECORD_BYTES));
    if ((opts.durable ?? true) || bytes.length > META_RECORD_BYTES) {
      await atomicWriteFile(path, bytes, opts);
      return;
    }
    const f = await Deno.open(path, { write: true, create: true });
    try {
      await writeAll(f, bytes);
      // A no-op unless an older, longer record was there: a kill in between leaves bytes
      // after the JSON, which readMeta treats as no record.
      await f.truncate(bytes.length);
    } finally {
      f.close();
    }
  }
}

/** Writes one LTX file durably: temp file, encode, fsync, rename, directory fsync. */
export class LtxFileWriter {
  #file: Deno.FsFile;
  #tmp: string;
  #encoder: LtxEncoder;
  #done = false;

  private constructor(readonly path: string, tmp: string, file: Deno.FsFile, enc: LtxEncoder) {
    this.#tmp = tmp;
    this.#file = file;
    this.#encoder = enc;
  }

  /** Start writing `path` with `header`. */
  static async create(path: string, header: LtxHeader, format: LtxFormat): Promise<LtxFileWriter> {
    const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    let enc: LtxEncoder;
    try {
      enc = new LtxEncoder(header, (chunk) => writeAll(file, chunk), {
        format,
        reuseChunks: true,
      });
    } catch (e) {
      file.close();
      await removeIfExists(tmp);
      throw e;
    }
    return new LtxFileWriter(path, tmp, file, enc);
  }

  /** Add one page (ascending pgno). */
  encodePage(pgno: number, data: Uint8Array): Promise<void> {
    return this.#encoder.encodePage(pgno, data);
  }

  /** Finish the file and make it durable under its final name; returns its size. */
  async commit(): Promise<number> {
    const r = await this.#encoder.finish();
    await this.#file.sync();
    this.#file.close();
    this.#done = true;
    await Deno.rename(this.#tmp, this.path);
    await fsyncDir(this.path.slice(0, this.path.lastIndexOf("/")));
    return r.size;
  }

  /** Drop the partial file. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#file.close();
    } catch { /* already closed */ }
    await removeIfExists(this.#tmp);
  }
}
