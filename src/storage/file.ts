/**
 * Filesystem backend: one file per object under a root directory.
 *
 * On-disk names reserved by this backend (never listed, and refused as key segments):
 * - `.<name>.<time>-<random>.tmp`: a write in progress (or left by a crash).
 * - `.<name>.<inode>.walrust-meta`: JSON sidecar with the metadata of the object version whose
 *   inode it names (written and renamed before the object). It is trusted only when inode, size
 *   and mtime all match the object, so a crash or a concurrent put never pairs an object with
 *   another version's metadata; sidecars of replaced versions are removed after the rename, and
 *   leftovers from crashes by cleanupTemp.
 * `litestream-timestamp` is kept as the file's mtime (as Litestream's file replica does) and only
 * goes into the sidecar when it is not in the canonical millisecond form.
 * Delete leaves empty directories in place: removing them would race with concurrent puts.
 */

import { basename, dirname, join, resolve } from "node:path";
import { NotFoundError, StorageError } from "../errors.ts";
import { formatTimestamp, parseTimestampMeta, TIMESTAMP_META_KEY } from "./layout.ts";
import { type ByteRange, checkRange, type ObjectInfo, type Storage } from "./port.ts";
import { writeAll } from "../fsutil.ts";

const READ_CHUNK = 64 * 1024;
const STAT_WINDOW = 64;
const DELETE_POOL = 32;
const TEMP_SUFFIX = ".tmp";
const META_SUFFIX = ".walrust-meta";
const SIDECAR_VERSION = 1;
const STALE_MS = 60_000;

/** True for on-disk names this backend uses internally (temp files and metadata sidecars). */
export function isInternalName(name: string): boolean {
  return name.startsWith(".") && (name.endsWith(TEMP_SUFFIX) || name.endsWith(META_SUFFIX));
}

interface Sidecar {
  v: number;
  size: number;
  mtimeMs: number;
  meta: Record<string, string>;
}

/** Storage on a local (or mounted) filesystem. Keys map to paths below `root`. */
export class FileStorage implements Storage {
  readonly root: string;
  readonly description: string;

  /** `root` is resolved to an absolute path; it is created on the first put if missing. */
  constructor(root: string) {
    this.root = resolve(root);
    this.description = `file://${this.root}`;
  }

  /** Write atomically: temp file, fsync, set mtime, rename, fsync the directory. */
  async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    const name = basename(path);
    const { tsMs, extra } = splitMeta(meta);
    const tmp = join(dir, tempName(name));
    let sidecarTmp: string | undefined;
    let sidecarDone: string | undefined;
    let file: Deno.FsFile | undefined;
    let renamed = false;
    try {
      file = await this.createTemp("put", key, tmp, dir);
      if (body instanceof Uint8Array) {
        await this.fs("put", key, () => writeAll(file!, body));
      } else {
        for await (const chunk of body) await this.fs("put", key, () => writeAll(file!, chunk));
      }
      const f = file;
      if (tsMs !== undefined) {
        const t = new Date(tsMs);
        await this.fs("put", key, () => f.utime(t, t));
      }
      await this.fs("put", key, () => f.sync());
      const st = await this.fs("put", key, () => f.stat());
      file = undefined;
      f.close();
      const old = await this.fs("put", key, () => statOrUndefined(path));
      if (Object.keys(extra).length > 0) {
        sidecarTmp = join(dir, tempName(name));
        const sidecar: Sidecar = {
          v: SIDECAR_VERSION,
          size: st.size,
          mtimeMs: st.mtime?.getTime() ?? 0,
          meta: extra,
        };
        await this.writeSmall("put", key, sidecarTmp, JSON.stringify(sidecar));
        sidecarDone = sidecarPath(path, st.ino);
        await this.fs("put", key, () => Deno.rename(sidecarTmp!, sidecarDone!));
        sidecarTmp = undefined;
      }
      await this.fs("put", key, () => Deno.rename(tmp, path));
      renamed = true;
      await this.fsyncDir("put", key, dir);
      if (old?.isFile && old.ino !== st.ino) {
        await this.removeIfExists("put", key, sidecarPath(path, old.ino));
      }
    } finally {
      if (file !== undefined) {
        try {
          file.close();
        } catch { /* already closed */ }
      }
      if (!renamed) await removeQuietly(tmp);
      if (sidecarTmp !== undefined) await removeQuietly(sidecarTmp);
      // The temp file's inode is free again; its sidecar must not outlive it.
      if (!renamed && sidecarDone !== undefined) await removeQuietly(sidecarDone);
    }
  }

  /** Stream the object (or `range`, clipped at the end; empty past the end) in 64 KiB chunks. */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const path = this.pathOf(key);
    if (range !== undefined) checkRange(range);
    const st = await this.fs("get", key, () => statOrUndefined(path));
    if (st === undefined || !st.isFile) throw this.notFound("get", key);
    return this.stream(key, path, range);
  }

  /** Size, mtime and metadata (sidecar keys plus `litestream-timestamp`), or undefined. */
  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    const st = await this.fs("head", key, () => statOrUndefined(path));
    if (st === undefined || !st.isFile) return undefined;
    const lastModified = st.mtime ?? new Date(0);
    const meta: Record<string, string> = {};
    const ts = safeFormat(lastModified.getTime());
    if (ts !== undefined) meta[TIMESTAMP_META_KEY] = ts;
    const sidecar = await this.readSidecar(key, path, st);
    if (sidecar !== undefined) Object.assign(meta, sidecar.meta);
    return { key, size: st.size, lastModified, meta };
  }

  /** Whether the object exists: one stat, no sidecar read. */
  async exists(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    return (await this.fs("head", key, () => statOrUndefined(path)))?.isFile === true;
  }

  /** Every object whose key starts with `prefix`, in ascending (code point = UTF-8) order. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const window: { key: string; path: string }[] = [];
    const flush = async (): Promise<ObjectInfo[]> => {
      const infos = await Promise.all(window.map(async ({ key, path }) => {
        const st = await this.fs("list", key, () => statOrUndefined(path));
        if (st === undefined || !st.isFile) return undefined; // deleted while listing
        return { key, size: st.size, lastModified: st.mtime ?? new Date(0) };
      }));
      window.length = 0;
      return infos.filter((i) => i !== undefined);
    };
    for await (const e of this.walk(prefix)) {
      if (isInternalName(e.name)) continue;
      window.push(e);
      if (window.length >= STAT_WINDOW) yield* await flush();
    }
    yield* await flush();
  }

  /** Delete objects and their sidecars; missing keys and directories are skipped. */
  async delete(keys: string[]): Promise<void> {
    const paths = keys.map((k) => this.pathOf(k));
    let next = 0;
    const worker = async () => {
      while (next < paths.length) {
        const i = next++;
        const key = keys[i];
        const path = paths[i];
        const st = await this.fs("delete", key, () => lstatOrUndefined(path));
        if (st === undefined || st.isDirectory) continue;
        await this.removeIfExists("delete", key, path);
        await this.removeIfExists("delete", key, sidecarPath(path, st.ino));
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_POOL, paths.length) }, worker));
  }

  /**
   * Remove temp files and orphaned or stale sidecars older than `olderThanMs` in the directory
   * of `prefix` (the part up to its last "/"; "" = whole root) and below. Returns the count.
   */
  async cleanupTemp(prefix = "", olderThanMs = STALE_MS): Promise<number> {
    const dirPrefix = prefix.slice(0, prefix.lastIndexOf("/") + 1);
    const now = Date.now();
    let removed = 0;
    for await (const e of this.walk(dirPrefix)) {
      if (!isInternalName(e.name)) continue;
      const st = await this.fs("cleanup", e.key, () => lstatOrUndefined(e.path));
      if (st === undefined) continue;
      if (e.name.endsWith(TEMP_SUFFIX)) {
        const born = tempBirth(e.name) ?? st.mtime?.getTime() ?? 0;
        if (now - born < olderThanMs) continue;
      } else {
        if (now - (st.mtime?.getTime() ?? 0) < olderThanMs) continue;
        if (await this.sidecarIsCurrent(e.key, e.path)) continue;
      }
      await this.removeIfExists("cleanup", e.key, e.path);
      removed++;
    }
    return removed;
  }

  // --- keys and paths ---

  /** Validate a key and map it to a path under the root. */
  private pathOf(key: string): string {
    const why = keyProblem(key);
    if (why !== undefined) {
      throw new StorageError(`invalid key ${JSON.stringify(key)} for ${this.description}: ${why}`);
    }
    return join(this.root, ...key.split("/"));
  }

  private notFound(op: string, key: string): NotFoundError {
    return new NotFoundError(`${op} ${key}: no such object in ${this.description}`);
  }

  /** Run a filesystem call, mapping OS errors to StorageError naming the operation and key. */
  private async fs<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.mapError(op, key, err);
    }
  }

  private mapError(op: string, key: string, err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    const code = errorCode(err);
    const detail = err instanceof Error ? err.message : String(err);
    return new StorageError(`${op} ${key} in ${this.description}: ${detail}`, {
      transient: isTransient(err, code),
      cause: err,
    });
  }

  // --- writing ---

  /** Create the temp file, creating missing parent directories on the first NotFound. */
  private async createTemp(op: string, key: string, tmp: string, dir: string) {
    const open = () => Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    try {
      return await open();
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw this.mapError(op, key, err);
    }
    await this.mkdirs(op, key, dir);
    return await this.fs(op, key, open);
  }

  /** mkdir -p, then fsync the parent of every directory created so the entries are durable. */
  private async mkdirs(op: string, key: string, dir: string): Promise<void> {
    const missing: string[] = [];
    let d = dir;
    for (;;) {
      const st = await this.fs(op, key, () => statOrUndefined(d));
      if (st !== undefined) {
        if (!st.isDirectory) throw this.mapError(op, key, new Deno.errors.NotADirectory(d));
        break;
      }
      missing.unshift(d);
      const parent = dirname(d);
      if (parent === d) break;
      d = parent;
    }
    for (const m of missing) {
      try {
        await Deno.mkdir(m);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw this.mapError(op, key, err);
      }
    }
    for (const p of [d, ...missing.slice(0, -1)]) await this.fsyncDir(op, key, p);
  }

  private async fsyncDir(op: string, key: string, dir: string): Promise<void> {
    await this.fs(op, key, async () => {
      const f = await Deno.open(dir, { read: true });
      try {
        await f.sync();
      } finally {
        f.close();
      }
    });
  }

  /**
   * A sidecar's own data is not fsynced: one lost or emptied by a power failure fails its
   * size/mtime check and is ignored (the object then has no extra metadata; the LTX bytes, its
   * timestamp and the directory entry are durable). One fsync fewer per upload.
   */
  private async writeSmall(op: string, key: string, path: string, text: string): Promise<void> {
    await this.fs(op, key, async () => {
      const f = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
      try {
        await writeAll(f, new TextEncoder().encode(text));
      } finally {
        f.close();
      }
    });
  }

  private async removeIfExists(op: string, key: string, path: string): Promise<void> {
    try {
      await Deno.remove(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw this.mapError(op, key, err);
    }
  }

  // --- reading ---

  private stream(key: string, path: string, range?: ByteRange): AsyncIterable<Uint8Array> {
    const fs = this.fs.bind(this);
    const mapError = this.mapError.bind(this);
    const notFound = () => this.notFound("get", key);
    // Opened lazily so an iterable that is never consumed holds no file handle.
    return {
      async *[Symbol.asyncIterator]() {
        let f: Deno.FsFile;
        try {
          f = await Deno.open(path, { read: true });
        } catch (err) {
          throw err instanceof Deno.errors.NotFound ? notFound() : mapError("get", key, err);
        }
        try {
          let remaining = range?.length ?? Infinity;
          if (range !== undefined && range.offset > 0) {
            await fs("get", key, () => f.seek(range.offset, Deno.SeekMode.Start));
          }
          // One read ahead: the next chunk is read while the consumer works on this one (a
          // restore decodes at disk speed instead of waiting for each read in turn).
          let ahead: Promise<Uint8Array | null> | undefined;
          const next = (): Promise<Uint8Array | null> | undefined => {
            if (remaining <= 0) return undefined;
            const buf = new Uint8Array(Math.min(READ_CHUNK, remaining));
            return fs("get", key, () => f.read(buf)).then((n) => {
              if (n === null) {
                remaining = 0;
                return null;
              }
              remaining -= n;
              return n === buf.length ? buf : buf.subarray(0, n);
            });
          };
          try {
            ahead = next();
            while (ahead) {
              const chunk = await ahead;
              if (chunk === null) break;
              ahead = next();
              yield chunk;
            }
          } finally {
            // Never close the file under a read still in flight.
            await ahead?.catch(() => {});
          }
        } finally {
          f.close();
        }
      },
    };
  }

  private async readSidecar(
    key: string,
    path: string,
    st: Deno.FileInfo,
  ): Promise<Sidecar | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(sidecarPath(path, st.ino));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw this.mapError("head", key, err);
    }
    const s = parseSidecar(text);
    // A sidecar that does not describe this exact version is ignored, never trusted.
    if (s === undefined || s.size !== st.size || s.mtimeMs !== (st.mtime?.getTime() ?? 0)) {
      return undefined;
    }
    return s;
  }

  private async sidecarIsCurrent(key: string, sidecar: string): Promise<boolean> {
    const m = /^\.(.*)\.([0-9]+)\.walrust-meta$/.exec(basename(sidecar));
    if (m === null) return false;
    const objectPath = join(dirname(sidecar), m[1]);
    const st = await this.fs("cleanup", key, () => statOrUndefined(objectPath));
    if (st === undefined || !st.isFile || sidecarPath(objectPath, st.ino) !== sidecar) return false;
    return (await this.readSidecar(key, objectPath, st)) !== undefined;
  }

  /**
   * Files (objects and internal names) under the directory part of `prefix` whose names start
   * with the rest, recursively, in ascending key order. Symlinked directories are not followed.
   */
  private async *walk(prefix: string): AsyncGenerator<{ key: string; path: string; name: string }> {
    const cut = prefix.lastIndexOf("/");
    const dirKey = cut < 0 ? "" : prefix.slice(0, cut);
    const namePrefix = prefix.slice(cut + 1);
    if (dirKey !== "" && keyProblem(dirKey) !== undefined) return; // no key can match
    yield* this.walkDir(dirKey, namePrefix);
  }

  private async *walkDir(
    dirKey: string,
    namePrefix: string,
  ): AsyncGenerator<{ key: string; path: string; name: string }> {
    const dirPath = dirKey === "" ? this.root : join(this.root, ...dirKey.split("/"));
    const entries: { name: string; dir: boolean; sortKey: string }[] = [];
    try {
      for await (const e of Deno.readDir(dirPath)) {
        if (!e.name.startsWith(namePrefix) || e.name.includes("\\")) continue;
        let dir = e.isDirectory;
        if (e.isSymlink) {
          const st = await statOrUndefined(join(dirPath, e.name));
          if (st === undefined || !st.isFile) continue;
          dir = false;
        } else if (!e.isFile && !e.isDirectory) {
          continue;
        }
        // A directory's keys all continue with "/", which is what decides their order.
        entries.push({ name: e.name, dir, sortKey: dir ? e.name + "/" : e.name });
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
      throw this.mapError("list", dirKey + "/" + namePrefix, err);
    }
    entries.sort((a, b) => compareCodePoints(a.sortKey, b.sortKey));
    for (const e of entries) {
      const key = dirKey === "" ? e.name : `${dirKey}/${e.name}`;
      if (e.dir) yield* this.walkDir(key, "");
      else yield { key, path: join(dirPath, e.name), name: e.name };
    }
  }
}

// --- helpers ---

function keyProblem(key: string): string | undefined {
  if (typeof key !== "string" || key === "") return "empty key";
  if (key.includes("\0")) return "contains NUL";
  if (key.includes("\\")) return "contains a backslash";
  if (key.startsWith("/")) return "absolute key";
  for (const seg of key.split("/")) {
    if (seg === "") return "empty path segment";
    if (seg === "." || seg === "..") return `"${seg}" segment would leave the key space`;
    if (isInternalName(seg)) return `"${seg}" is a name reserved for temp and metadata files`;
  }
  return undefined;
}

/** Lower-case keys; timestamp goes to mtime when canonical, everything else to the sidecar. */
function splitMeta(
  meta: Record<string, string> | undefined,
): { tsMs?: number; extra: Record<string, string> } {
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta ?? {})) extra[k.toLowerCase()] = v;
  const ts = extra[TIMESTAMP_META_KEY];
  const tsMs = parseTimestampMeta(ts);
  if (tsMs !== undefined && safeFormat(tsMs) === ts) delete extra[TIMESTAMP_META_KEY];
  return { tsMs, extra };
}

function safeFormat(ms: number): string | undefined {
  try {
    return formatTimestamp(ms);
  } catch {
    return undefined;
  }
}

function sidecarPath(objectPath: string, ino: number | null): string {
  return join(dirname(objectPath), `.${basename(objectPath)}.${ino ?? 0}${META_SUFFIX}`);
}

function parseSidecar(text: string): Sidecar | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const s = v as Partial<Sidecar>;
  if (s.v !== SIDECAR_VERSION || typeof s.size !== "number" || typeof s.mtimeMs !== "number") {
    return undefined;
  }
  if (typeof s.meta !== "object" || s.meta === null) return undefined;
  const meta: Record<string, string> = {};
  for (const [k, val] of Object.entries(s.meta)) if (typeof val === "string") meta[k] = val;
  return { v: s.v, size: s.size, mtimeMs: s.mtimeMs, meta };
}

function tempName(name: string): string {
  const rand = crypto.getRandomValues(new Uint8Array(8));
  const hex = Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
  // The object name is shortened so the temp name stays under NAME_MAX.
  return `.${name.slice(0, 100)}.${Date.now().toString(36)}-${hex}${TEMP_SUFFIX}`;
}

function tempBirth(name: string): number | undefined {
  const m = /\.([0-9a-z]+)-[0-9a-f]{16}\.tmp$/.exec(name);
  if (m === null) return undefined;
  const t = parseInt(m[1], 36);
  return Number.isSafeInteger(t) ? t : undefined;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw err;
  }
}

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw err;
  }
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch { /* best effort: cleanupTemp removes leftovers */ }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "string" ? err.code : undefined;
}

const TRANSIENT_CODES = new Set([
  "EAGAIN",
  "EWOULDBLOCK",
  "EINTR",
  "EBUSY",
  "ETIMEDOUT",
  "EMFILE",
  "ENFILE",
]);

function isTransient(err: unknown, code: string | undefined): boolean {
  return err instanceof Deno.errors.Interrupted || err instanceof Deno.errors.TimedOut ||
    err instanceof Deno.errors.Busy || err instanceof Deno.errors.WouldBlock ||
    (code !== undefined && TRANSIENT_CODES.has(code));
}

/** Compare strings by Unicode code point, which equals UTF-8 byte order (S3's list order). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 puts surrogates (U+10000 and up) below U+E000..U+FFFF; shift to fix the order.
    if (x >= 0xd800) x += x >= 0xe000 ? -0x800 : 0x2000;
    if (y >= 0xd800) y += y >= 0xe000 ? -0x800 : 0x2000;
    return x - y;
  }
  return a.length - b.length;
}
