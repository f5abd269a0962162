/** One database's files in a replica: its key layout inside, the Storage port underneath. */
import type { Replica } from "./open.ts";
import { databasePrefix } from "./open.ts";
import { type LayoutKind, levelDir, ltxKey, parseLtxKey } from "./layout.ts";
import { type ByteRange, objectExists, type ObjectInfo, type Storage } from "./port.ts";

/** One LTX object of a database in the replica. */
export interface ReplicaFile {
  level: number;
  minTXID: number;
  maxTXID: number;
  key: string;
  size: number;
  /** When the object was written, as listed (S3 LastModified; the file's mtime). */
  lastModified?: Date;
}

/** What names an LTX file: its level and TXID range. */
export interface LtxId {
  /** Compaction level 0..9 (9 holds snapshots). */
  level: number;
  /** First TXID the file covers. */
  minTXID: number;
  /** Last TXID the file covers. */
  maxTXID: number;
}

/** One database's files in a replica: its layout inside, the Storage port underneath. */
export class DbReplica {
  /** `prefix` is the database's full key prefix (base prefix included). */
  constructor(readonly replica: Replica, readonly prefix: string) {}

  /** The handle of database `name` under the replica's base prefix (databasePrefix). */
  static of(replica: Replica, name: string): DbReplica {
    return new DbReplica(replica, databasePrefix(replica, name));
  }

  /** The backend holding the objects. */
  get storage(): Storage {
    return this.replica.storage;
  }

  /** The replica's key layout. */
  get kind(): LayoutKind {
    return this.replica.kind;
  }

  /** For messages: the storage description plus the prefix. */
  get where(): string {
    const p = this.prefix.replace(/\/+$/, "");
    return p === "" ? this.storage.description : `${this.storage.description}/${p}`;
  }

  /** The object key of one LTX file. */
  key(level: number, minTXID: number, maxTXID: number): string {
    return ltxKey(this.kind, this.prefix, level, minTXID, maxTXID);
  }

  /** Every LTX file of every level, from one paginated listing; other keys are ignored. */
  async files(): Promise<ReplicaFile[]> {
    const level0 = levelDir(this.kind, this.prefix, 0);
    // "<prefix>/0000/" (S3) or "<prefix>/ltx/0/" (file): drop the level part.
    const base = level0.slice(0, level0.length - (this.kind === "s3" ? 5 : 2));
    const out: ReplicaFile[] = [];
    for await (const o of this.storage.list(base)) {
      const k = parseLtxKey(this.kind, this.prefix, o.key);
      if (k) out.push({ ...k, key: o.key, size: o.size, lastModified: o.lastModified });
    }
    return out;
  }

  /** The LTX files of one level, ascending by (min, max); `after` skips those with maxTXID <= after. */
  async ltxFiles(level: number, opts: { after?: number } = {}): Promise<ReplicaFile[]> {
    const after = opts.after ?? -Infinity;
    const out: ReplicaFile[] = [];
    for await (const obj of this.storage.list(levelDir(this.kind, this.prefix, level))) {
      const p = parseLtxKey(this.kind, this.prefix, obj.key);
      // A listing of "ltx/1/" could in principle return other levels' keys on odd backends.
      if (!p || p.level !== level || p.maxTXID <= after) continue;
      out.push({ ...p, key: obj.key, size: obj.size, lastModified: obj.lastModified });
    }
    return out.sort((a, b) => a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
  }

  /**
   * The files of `level` that start exactly at `minTXID`: one narrow listing (a follower asks
   * for what follows its TXID without listing the level's history).
   */
  async startingAt(level: number, minTXID: number): Promise<ReplicaFile[]> {
    const k = this.key(level, minTXID, minTXID);
    const out: ReplicaFile[] = [];
    for await (const obj of this.storage.list(k.slice(0, k.lastIndexOf("-") + 1))) {
      const p = parseLtxKey(this.kind, this.prefix, obj.key);
      if (!p || p.level !== level || p.minTXID !== minTXID) continue;
      out.push({ ...p, key: obj.key, size: obj.size, lastModified: obj.lastModified });
    }
    return out.sort((a, b) => b.maxTXID - a.maxTXID);
  }

  /** Read one LTX file (or a range of it). Throws NotFoundError if absent. */
  openLtx(f: LtxId, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    return this.storage.get(this.#keyOf(f), range);
  }

  /** The object info of one LTX file, or undefined when absent. */
  headLtx(f: LtxId): Promise<ObjectInfo | undefined> {
    return this.storage.head(this.#keyOf(f));
  }

  /** Whether one LTX file exists (cheaper than headLtx where the backend can say so). */
  hasLtx(f: LtxId): Promise<boolean> {
    return objectExists(this.storage, this.#keyOf(f));
  }

  /** Write one LTX file with its metadata. */
  putLtx(
    f: LtxId,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta: Record<string, string>,
  ): Promise<void> {
    return this.storage.put(this.#keyOf(f), body, meta);
  }

  /** Delete LTX files; missing ones are not an error. */
  deleteLtx(files: LtxId[]): Promise<void> {
    return this.storage.delete(files.map((f) => this.#keyOf(f)));
  }

  #keyOf(f: LtxId): string {
    return this.key(f.level, f.minTXID, f.maxTXID);
  }
}
