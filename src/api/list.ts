/** `list()` and `listFiles()`: what a replica holds, per database and per file. */
import { splitLtxKey } from "../storage/layout.ts";
import type { Replica } from "../storage/open.ts";
import { V3Collector, type V3Generation } from "../restore/v3.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";
import { NotFoundError, StorageError } from "../errors.ts";

/** One LTX file of a database. */
export interface FileSummary {
  /** Compaction level 0..9 (9 holds snapshots). */
  level: number;
  /** First TXID the file covers. */
  minTXID: number;
  /** Last TXID the file covers. */
  maxTXID: number;
  /** Object size in bytes. */
  size: number;
  /** When the object was written (its modification time). */
  created: Date;
  /** The object's full key in the replica. */
  key: string;
}

/** One Litestream v0.3 generation of a database (the `generations/<id>/` layout). */
export interface GenerationSummary {
  /** The generation id, 16 hex digits. */
  id: string;
  /** Snapshot objects. */
  snapshots: number;
  /** WAL segment objects. */
  segments: number;
  /** The lowest WAL index in any of its objects (older ones were removed by retention). */
  firstIndex: number;
  /** The highest WAL index: `restore({ generation, index })` reaches up to it. */
  latestIndex: number;
  /** Time of its oldest object. */
  oldest: Date;
  /** Time of its newest object. */
  newest: Date;
  /** Total size of its objects in bytes. */
  bytes: number;
}

/** One database in a replica. */
export interface DatabaseSummary {
  /** The database's name in the replica (its key prefix below the base prefix). */
  name: string;
  /**
   * Which backup `restore()` reads: "ltx" (Litestream v0.5 / walrust LTX files) or "v0.3" (only a
   * Litestream v0.3 `generations/` backup). For "v0.3" the LTX counts are 0 and `snapshots`,
   * `oldest`, `newest` and `bytes` describe the generations.
   */
  format: "ltx" | "v0.3";
  /** Litestream v0.3 generations, oldest first (empty when there are none). */
  generations: GenerationSummary[];
  /** The newest TXID in any file. */
  txid: number;
  /** Level-9 snapshot files. */
  snapshots: number;
  /** Files per level 0..3. */
  l0: number;
  /** Level-1 files. */
  l1: number;
  /** Level-2 files. */
  l2: number;
  /** Level-3 files. */
  l3: number;
  /** The oldest snapshot (or file), and the newest file. */
  oldest: Date;
  /** When the newest file was written. */
  newest: Date;
  /** Total size of all its files in bytes. */
  bytes: number;
}

/**
 * A missing bucket is an error, not an empty replica: a typo in the URL must not read as "no
 * databases". File replicas: the root directory must exist. S3: a 404 on LIST that is not a
 * missing key means the bucket does not exist (NoSuchBucket).
 */
async function scan(replica: Replica, only?: string): Promise<Scan> {
  if (replica.fileRoot !== undefined) await requireDirectory(replica);
  try {
    return await scanObjects(replica, only);
  } catch (e) {
    if (e instanceof StorageError && !(e instanceof NotFoundError) && e.status === 404) {
      throw new StorageError(
        `${e.message} (fix: check the bucket name and --endpoint, or create the bucket)`,
        { status: e.status, cause: e },
      );
    }
    throw e;
  }
}

async function requireDirectory(replica: Replica): Promise<void> {
  const root = replica.fileRoot!;
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new StorageError(
        `replica ${replica.url}: directory ${root} does not exist (fix: check --bucket; ` +
          `'walrust watch' creates it with the first upload)`,
        { cause: e },
      );
    }
    const why = e instanceof Error ? e.message : String(e);
    throw new StorageError(`replica ${replica.url}: cannot read ${root}: ${why}`, { cause: e });
  }
  if (!st.isDirectory) {
    throw new StorageError(
      `replica ${replica.url}: ${root} is not a directory (fix: check --bucket)`,
    );
  }
}

/** Per database name: its LTX files, and its v0.3 objects grouped by generation. */
interface Scan {
  ltx: Map<string, FileSummary[]>;
  v3: Map<string, V3Collector>;
}

// "<name>/generations/<rest>" or "generations/<rest>" (a v0.3 replica at the base prefix).
const V3_KEY = /^(?:(.*)\/)?generations\/([0-9a-f]{16}\/(?:snapshots|wal)\/[^/]+)$/;

async function scanObjects(replica: Replica, only?: string): Promise<Scan> {
  const base = replica.basePrefix.replace(/\/+$/, "");
  const prefix = only !== undefined
    ? (base ? `${base}/${only}/` : `${only}/`)
    : (base ? `${base}/` : "");
  const byDb = new Map<string, FileSummary[]>();
  const v3 = new Map<string, V3Collector>();
  for await (const o of replica.storage.list(prefix)) {
    const k = splitLtxKey(replica.kind, o.key);
    if (!k) {
      const m = V3_KEY.exec(base ? o.key.slice(base.length + 1) : o.key);
      if (!m || (only !== undefined && (m[1] ?? "") !== only)) continue;
      const name = m[1] ?? "";
      let c = v3.get(name);
      if (!c) v3.set(name, c = new V3Collector());
      c.add(m[2], o);
      continue;
    }
    const name = base && k.prefix.startsWith(base + "/")
      ? k.prefix.slice(base.length + 1)
      : k.prefix;
    if (only !== undefined && name !== only) continue;
    const files = byDb.get(name) ?? [];
    files.push({
      level: k.level,
      minTXID: k.minTXID,
      maxTXID: k.maxTXID,
      size: o.size,
      created: o.lastModified,
      key: o.key,
    });
    byDb.set(name, files);
  }
  return { ltx: byDb, v3 };
}

/**
 * The databases in a replica with their newest TXID, file counts and restorable window, and the
 * Litestream v0.3 generations of each (a database with only those is listed as format "v0.3").
 * A bucket that does not exist (file replica directory missing, S3 NoSuchBucket) is a
 * StorageError (exit 4), not an empty list.
 *
 * ```ts
 * import { list } from "./mod.ts";
 * for (const db of await list({ bucket: "file:///backups" })) console.log(db.name, db.txid);
 * ```
 */
export async function list(o: ReplicaOptions): Promise<DatabaseSummary[]> {
  const { ltx, v3 } = await scan(await replicaOf(o));
  const names = [...new Set([...ltx.keys(), ...v3.keys()])].sort((a, b) => a < b ? -1 : 1);
  return names.map((name) => {
    const generations = (v3.get(name)?.generations() ?? []).map(summarizeGeneration);
    const fs = ltx.get(name);
    return fs ? { ...summarizeLtx(name, fs), generations } : summarizeV3(name, generations);
  });
}

function summarizeLtx(name: string, fs: FileSummary[]): Omit<DatabaseSummary, "generations"> {
  const count = (l: number) => fs.filter((f) => f.level === l).length;
  const snaps = fs.filter((f) => f.level === 9);
  let txid = 0, bytes = 0, oldest = Infinity, newest = 0, oldestSnap = Infinity;
  for (const f of fs) {
    const t = f.created.getTime();
    txid = Math.max(txid, f.maxTXID);
    bytes += f.size;
    oldest = Math.min(oldest, t);
    newest = Math.max(newest, t);
    if (f.level === 9) oldestSnap = Math.min(oldestSnap, t);
  }
  return {
    name,
    format: "ltx",
    txid,
    snapshots: snaps.length,
    l0: count(0),
    l1: count(1),
    l2: count(2),
    l3: count(3),
    oldest: new Date(snaps.length ? oldestSnap : oldest),
    newest: new Date(newest),
    bytes,
  };
}

function summarizeGeneration(g: V3Generation): GenerationSummary {
  let bytes = 0, lo = Infinity, hi = -1;
  for (const o of [g.snapshots, g.segments].flat()) {
    bytes += o.size;
    lo = Math.min(lo, o.index);
    hi = Math.max(hi, o.index);
  }
  return {
    id: g.id,
    snapshots: g.snapshots.length,
    segments: g.segments.length,
    firstIndex: lo,
    latestIndex: hi,
    oldest: g.createdAt,
    newest: g.updatedAt,
    bytes,
  };
}

function summarizeV3(name: string, gens: GenerationSummary[]): DatabaseSummary {
  let snapshots = 0, bytes = 0, oldest = Infinity, newest = 0;
  for (const g of gens) {
    snapshots += g.snapshots;
    bytes += g.bytes;
    oldest = Math.min(oldest, g.oldest.getTime());
    newest = Math.max(newest, g.newest.getTime());
  }
  return {
    name,
    format: "v0.3",
    generations: gens,
    txid: 0,
    snapshots,
    l0: 0,
    l1: 0,
    l2: 0,
    l3: 0,
    oldest: new Date(oldest),
    newest: new Date(newest),
    bytes,
  };
}

/**
 * One database's LTX files, by level then TXID (empty when the replica holds none). A bucket
 * that does not exist is a StorageError, as for {@link list}.
 */
export async function listFiles(o: ReplicaOptions & { name: string }): Promise<FileSummary[]> {
  const files = (await scan(await replicaOf(o), o.name)).ltx.get(o.name) ?? [];
  return files.sort((a, b) => a.level - b.level || a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
}
