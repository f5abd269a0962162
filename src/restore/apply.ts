/** Restore application: stream a plan's pages into a temp file, verify, fsync, rename. */

import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { ConfigError, DatabaseError, IntegrityError, RestoreError } from "../errors.ts";
import { LtxDecoder } from "../ltx/decoder.ts";
import { lockPgno, type LtxHeader } from "../ltx/header.ts";
import { formatHex64, formatTXID as txidHex } from "../ltx/names.ts";
import { DatabaseChecksum, RebuiltChecksum } from "../ltx/checksum.ts";
import { POST_APPLY_CHECKSUM_META } from "../storage/layout.ts";
import { integrityCheck } from "../sqlite/handle.ts";
import { isWatched } from "../sqlite/watchlock.ts";
import type { Storage } from "../storage/port.ts";
import type { LtxFileRef, RestorePlan } from "./plan.ts";
import { fsyncDir } from "../fsutil.ts";

/** What a finished restore produced. */
export interface RestoreResult {
  /** The TXID the restored database is at. */
  txid: number;
  /** Page size of the restored database in bytes. */
  pageSize: number;
  /** Size of the restored database in pages. */
  commit: number;
  /** Size of the restored database in bytes (commit * pageSize). */
  bytes: number;
  /** How many LTX files were applied. */
  files: number;
  /** Where the database was written. */
  outPath: string;
}

/** Options for applyPlan. */
export interface ApplyOptions {
  /** Replace an existing output (and drop its -wal/-shm/-journal). */
  force?: boolean;
  /** Check run on the result before it is renamed into place; default "full". */
  integrity?: "full" | "quick" | "none";
  /** Called as LTX bytes are consumed: (bytes read so far, total bytes of the plan). */
  onProgress?(done: number, total: number): void;
  /**
   * Prove the result against the database checksum walrust recorded with the plan's last file
   * (`walrust-post-apply-checksum`); default true. False restores a database whose LTX files
   * verified although the record disagrees.
   */
  checkRecordedChecksum?: boolean;
  /** A file replica's root directory: an output inside it is refused (it could overwrite the backup). */
  replicaRoot?: string;
}

/**
 * One file of the plan is corrupt (bad checksum, undecodable page, header that contradicts its key
 * or the chain). `key` names the object, so a restore can be planned without it; `reason` is the
 * defect without the key.
 */
export class CorruptFileError extends IntegrityError {
  readonly key: string;
  readonly reason: string;
  constructor(key: string, reason: string, options?: ErrorOptions & { note?: string }) {
    super(`${key}: ${reason}${options?.note ? `; ${options.note}` : ""}`, options);
    this.key = key;
    this.reason = reason;
  }
}

const SIDECARS = ["-wal", "-shm", "-journal"];
/** Contiguous pages are gathered up to this many bytes before one write. */
const RUN_BYTES = 1 << 20;

/**
 * Apply `plan` to a new database at `outPath`: pages stream into `<outPath>.tmp-<random>`,
 * which is checked, fsynced and renamed; on any failure the temp file is removed.
 */
export async function applyPlan(
  storage: Storage,
  plan: RestorePlan,
  outPath: string,
  opts: ApplyOptions = {},
): Promise<RestoreResult> {
  if (plan.files.length === 0) throw new RestoreError("restore plan has no files");
  const dir = dirname(outPath);
  await checkRestoreOutput(outPath, opts);

  const tmp = `${outPath}.tmp-${randomHex(8)}`;
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { createNew: true, write: true, read: true });
    const state = await writePages(storage, plan, file, opts.onProgress);
    if (opts.checkRecordedChecksum ?? true) {
      await verifyRecordedChecksum(storage, plan, state.checksum);
    }
    await file.sync();
    file.close();
    file = undefined;

    checkIntegrity(tmp, opts.integrity ?? "full");
    await removeSidecars(tmp);
    await placeRestored(tmp, outPath, opts.force ?? false);
    await fsyncDir(dir);
    return {
      txid: state.txid,
      pageSize: state.pageSize,
      commit: state.commit,
      bytes: state.commit * state.pageSize,
      files: plan.files.length,
      outPath,
    };
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await removeQuietly(tmp);
    await removeSidecars(tmp);
    throw e;
  }
}

/**
 * Refuse an output restore must not write (RestoreError, exit 6): its directory must exist; it
 * must not be a database a running walrust replicates, nor lie inside the file replica's root
 * (`replicaRoot`); an existing output or sidecar needs `force`. applyPlan runs it too; call it
 * first to fail before any planning.
 */
export async function checkRestoreOutput(
  outPath: string,
  opts: { force?: boolean; replicaRoot?: string } = {},
): Promise<void> {
  const dir = dirname(outPath);
  // stat, not lstat: a directory reached through a symlink is a directory.
  const d = await statOrUndefined(dir, true);
  if (!d?.isDirectory) {
    throw new RestoreError(`output directory ${dir} does not exist`);
  }
  refuseWatched(outPath);
  if (opts.replicaRoot !== undefined) await refuseInsideReplica(outPath, opts.replicaRoot);
  const out = await statOrUndefined(outPath);
  if (out?.isDirectory) throw new RestoreError(`output ${outPath} is a directory`);
  if (!opts.force) await refuseExisting(outPath);
}

/** Replacing a live database (and dropping its -wal) under a running watcher would corrupt it. */
function refuseWatched(outPath: string): void {
  let watched: boolean;
  try {
    // isWatched follows a symlink to the file it names: the lock is keyed by that file.
    watched = isWatched(outPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied)) throw e;
    throw new RestoreError(
      `cannot check whether ${outPath} is being replicated: permission denied`,
      { cause: e },
    );
  }
  if (watched) {
    throw new RestoreError(
      `${outPath} is being replicated by a running walrust process; stop it first ` +
        "(restoring over a live database would corrupt it)",
    );
  }
}

/**
 * The output, with its directory's symlinks resolved (and its own, if it exists), must not lie
 * inside the replica's root: a restore there could overwrite an LTX file.
 */
async function refuseInsideReplica(outPath: string, root: string): Promise<void> {
  const realRoot = await realPathOrUndefined(root);
  if (realRoot === undefined) return; // no replica directory: nothing in it to overwrite
  const resolved = [join(await Deno.realPath(dirname(outPath)), basename(outPath))];
  const target = await realPathOrUndefined(outPath);
  if (target !== undefined) resolved.push(target);
  for (const p of resolved) {
    const rel = relative(realRoot, p);
    if (rel === ".." || rel.startsWith("../") || isAbsolute(rel)) continue;
    const via = p === outPath ? "" : ` (resolved: ${p})`;
    throw new RestoreError(
      `output ${outPath}${via} lies inside the file replica ${root}; restoring there could ` +
        "overwrite the backup: choose an output outside it",
    );
  }
}

async function refuseExisting(outPath: string): Promise<void> {
  for (const p of [outPath, ...SIDECARS.map((s) => outPath + s)]) {
    if (await statOrUndefined(p)) {
      throw new RestoreError(`${p} already exists; use --force to replace it`);
    }
  }
}

/**
 * Move a checked temp file into place: never over a database a running walrust replicates (one
 * may have started meanwhile); with `force` the old file's -wal/-shm go first (SQLite would apply
 * a foreign WAL), else nothing that appeared at the output is replaced.
 */
export async function placeRestored(tmp: string, outPath: string, force: boolean): Promise<void> {
  refuseWatched(outPath);
  if (force) {
    await removeSidecars(outPath);
    await Deno.rename(tmp, outPath);
  } else {
    await placeNoClobber(tmp, outPath);
  }
}

/** Move tmp to outPath unless something appeared there during the restore. */
async function placeNoClobber(tmp: string, outPath: string): Promise<void> {
  await refuseExisting(outPath);
  try {
    // link fails atomically if outPath exists, closing the window a check-then-rename leaves.
    await Deno.link(tmp, outPath);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new RestoreError(`${outPath} appeared during the restore; use --force to replace it`);
    }
    // No hard links on this filesystem: fall back to rename after the check above.
    await Deno.rename(tmp, outPath);
    return;
  }
  try {
    await Deno.remove(tmp);
  } catch { /* the restore is in place; a stray second name of it is harmless */ }
}

interface ApplyState {
  txid: number;
  pageSize: number;
  commit: number;
  /** The database checksum of the pages written (kept while writing: no second read). */
  checksum: bigint;
}

/** Decode every plan file in order, writing its pages and enforcing the chain rules. */
async function writePages(
  storage: Storage,
  plan: RestorePlan,
  file: Deno.FsFile,
  onProgress?: (done: number, total: number) => void,
): Promise<ApplyState> {
  const total = plan.files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  const count = async function* (src: AsyncIterable<Uint8Array>) {
    for await (const chunk of src) {
      done += chunk.length;
      onProgress?.(done, total);
      yield chunk;
    }
  };

  const written = new PageSet();
  let sums: RebuiltChecksum | undefined;
  let prev: LtxHeader | undefined;
  let writer: RunWriter | undefined;
  let lastKey = "";
  for (const ref of plan.files) {
    lastKey = ref.key;
    const src = count(await storage.get(ref.key));
    try {
      // Unnamed: CorruptFileError puts the key in front of the decoder's own message.
      const dec = await LtxDecoder.open(src);
      const h = dec.header;
      checkChain(ref, h, prev);
      writer ??= new RunWriter(file, h.pageSize);
      sums ??= new RebuiltChecksum(h.pageSize);
      for await (const { pgno, data, checksum } of dec.pages()) {
        await writer.write(pgno, data);
        written.add(pgno);
        if (checksum) sums.setHalves(pgno, checksum[0], checksum[1]);
        else sums.set(pgno, data);
      }
      await dec.finish();
      await writer.flush();
      await file.truncate(h.commit * h.pageSize);
      written.truncate(h.commit);
      sums.truncate(h.commit);
      prev = h;
    } catch (e) {
      // Integrity failures inside one file are that file's; storage failures are not.
      if (e instanceof IntegrityError && !(e instanceof CorruptFileError)) {
        throw new CorruptFileError(ref.key, e.message, { cause: e });
      }
      // An encrypted object read without keys: name it.
      if (e instanceof ConfigError && e.cause === undefined) {
        throw new ConfigError(`${ref.key}: ${e.message}`, { cause: e });
      }
      throw e;
    } finally {
      // The decoder stops pulling on an error; closing the stream releases the object's handle.
      await src.return(undefined);
    }
  }
  const last = prev!;
  const lock = lockPgno(last.pageSize);
  const missing = written.firstMissing(last.commit, lock);
  if (missing !== undefined) {
    throw new IntegrityError(
      `restored database would lack page ${missing} of ${last.commit} after ${lastKey}: ` +
        "the plan's files do not hold a complete database",
    );
  }
  if (last.commit >= lock) {
    await writer!.writeRaw((lock - 1) * last.pageSize, new Uint8Array(last.pageSize));
  }
  return {
    txid: last.maxTXID,
    pageSize: last.pageSize,
    commit: last.commit,
    checksum: sums!.value(),
  };
}

/** The header must match its key and continue the previous file without a gap. */
function checkChain(ref: LtxFileRef, h: LtxHeader, prev: LtxHeader | undefined): void {
  const bad = (msg: string) => new CorruptFileError(ref.key, msg);
  if (h.minTXID !== ref.minTXID || h.maxTXID !== ref.maxTXID) {
    throw bad(
      `header holds TXIDs ${txidHex(h.minTXID)}-${txidHex(h.maxTXID)}, the key names ` +
        `${txidHex(ref.minTXID)}-${txidHex(ref.maxTXID)}`,
    );
  }
  if (!prev) {
    if (h.minTXID !== 1) {
      throw bad(`first file starts at TXID ${txidHex(h.minTXID)}, not 1`);
    }
    return;
  }
  if (h.pageSize !== prev.pageSize) {
    throw bad(`page size ${h.pageSize} differs from ${prev.pageSize} before it`);
  }
  if (h.minTXID > prev.maxTXID + 1 || h.maxTXID <= prev.maxTXID) {
    throw bad(
      `TXIDs ${txidHex(h.minTXID)}-${txidHex(h.maxTXID)} do not continue ` +
        `${txidHex(prev.maxTXID)}`,
    );
  }
}

/** Writes pages, gathering ascending neighbours into one buffer to save system calls. */
class RunWriter {
  private readonly buf: Uint8Array;
  private start = 0; // first pgno in buf
  private n = 0; // pages in buf

  constructor(private readonly file: Deno.FsFile, private readonly pageSize: number) {
    this.buf = new Uint8Array(Math.max(pageSize, RUN_BYTES - (RUN_BYTES % pageSize)));
  }

  async write(pgno: number, data: Uint8Array): Promise<void> {
    const full = (this.n + 1) * this.pageSize > this.buf.length;
    if (this.n > 0 && (pgno !== this.start + this.n || full)) await this.flush();
    if (this.n === 0) this.start = pgno;
    this.buf.set(data, this.n * this.pageSize);
    this.n++;
  }

  async flush(): Promise<void> {
    if (this.n === 0) return;
    const len = this.n * this.pageSize;
    this.n = 0;
    await this.writeRaw((this.start - 1) * this.pageSize, this.buf.subarray(0, len));
  }

  async writeRaw(offset: number, bytes: Uint8Array): Promise<void> {
    await this.file.seek(offset, Deno.SeekMode.Start);
    let o = 0;
    while (o < bytes.length) o += await this.file.write(bytes.subarray(o));
  }
}

/** A growable bitmap of written page numbers. */
class PageSet {
  private bits = new Uint8Array(1024);
  private max = 0;

  add(pgno: number): void {
    const i = pgno >>> 3;
    if (i >= this.bits.length) {
      const grown = new Uint8Array(Math.max(i + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[i] |= 1 << (pgno & 7);
    if (pgno > this.max) this.max = pgno;
  }

  has(pgno: number): boolean {
    const i = pgno >>> 3;
    return i < this.bits.length && (this.bits[i] & (1 << (pgno & 7))) !== 0;
  }

  /** Forget pages above commit: a shrink drops them, and regrowth must rewrite them. */
  truncate(commit: number): void {
    if (this.max <= commit) return;
    for (let p = commit + 1; p <= this.max && (p & 7) !== 0; p++) {
      this.bits[p >>> 3] &= ~(1 << (p & 7));
    }
    const from = (commit + 8) >>> 3; // first byte wholly above commit
    if (from < this.bits.length) this.bits.fill(0, from, (this.max >>> 3) + 1);
    this.max = commit;
  }

  /** The first page in 1..commit, other than the lock page, that was never written. */
  firstMissing(commit: number, lock: number): number | undefined {
    for (let p = 1; p <= commit; p++) {
      if ((p & 7) === 0 && this.bits[p >>> 3] === 0xff && p + 7 <= commit) {
        p += 7;
        continue;
      }
      if (p !== lock && !this.has(p)) return p;
    }
    return undefined;
  }
}

/**
 * Run SQLite's check on the temp file; anything but "ok" is an IntegrityError. handle.ts offers
 * only the full integrity_check, so "quick" runs it too (stricter, slower).
 */
export function checkIntegrity(path: string, mode: "full" | "quick" | "none"): void {
  if (mode === "none") return;
  let rows: string[];
  try {
    rows = integrityCheck(path);
  } catch (e) {
    // SQLite refusing to open the result (e.g. "file is not a database") is a corrupt restore.
    if (e instanceof DatabaseError) {
      throw new IntegrityError(`restored database failed PRAGMA integrity_check: ${e.message}`, {
        cause: e,
      });
    }
    throw e;
  }
  if (rows.length !== 1 || rows[0] !== "ok") {
    // Rows can hold thousands of lines; the first few say enough.
    const lines = rows.flatMap((r) => r.split("\n")).filter((l) => !l.startsWith("*** "));
    const more = lines.length > 3 ? ` (and ${lines.length - 3} more)` : "";
    throw new IntegrityError(
      `restored database failed PRAGMA integrity_check: ${lines.slice(0, 3).join("; ")}${more}`,
    );
  }
}

/** Remove `-wal`, `-shm` and `-journal` beside `path`, if there. */
export async function removeSidecars(path: string): Promise<void> {
  for (const s of SIDECARS) await removeQuietly(path + s);
}

/** Remove a file; a missing one is not an error. */
export async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

async function realPathOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.realPath(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function statOrUndefined(path: string, follow = false): Promise<Deno.FileInfo | undefined> {
  try {
    return await (follow ? Deno.stat(path) : Deno.lstat(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The LTX database checksum of pages 1..commit of a database file, read a run at a time. */
export async function databaseChecksum(
  file: Deno.FsFile,
  commit: number,
  pageSize: number,
): Promise<bigint> {
  const sum = new DatabaseChecksum(pageSize);
  const chunkPages = Math.max(1, Math.floor(RUN_BYTES / pageSize));
  const buf = new Uint8Array(chunkPages * pageSize);
  for (let first = 1; first <= commit; first += chunkPages) {
    const n = Math.min(chunkPages, commit - first + 1);
    const want = buf.subarray(0, n * pageSize);
    await file.seek((first - 1) * pageSize, Deno.SeekMode.Start);
    let got = 0;
    while (got < want.length) {
      const r = await file.read(want.subarray(got));
      if (r === null) break;
      got += r;
    }
    for (let i = 0; i < n; i++) sum.add(first + i, want.subarray(i * pageSize, (i + 1) * pageSize));
  }
  return sum.value();
}

/**
 * When walrust wrote the last file of the plan, its metadata records the database checksum
 * after it (`walrust-post-apply-checksum`): the rebuilt database must have exactly that one.
 * Files without the record (Litestream's, or written before the checksum was known) are only
 * checked by their CRCs and `integrity_check`.
 */
async function verifyRecordedChecksum(
  storage: Storage,
  plan: RestorePlan,
  checksum: bigint,
): Promise<void> {
  const last = plan.files[plan.files.length - 1];
  const recorded = (await storage.head(last.key))?.meta?.[POST_APPLY_CHECKSUM_META];
  if (recorded === undefined) return;
  const actual = formatHex64(checksum);
  if (actual !== recorded) {
    // Not a CorruptFileError: every file verified, so no other plan would be more trustworthy.
    throw new IntegrityError(
      `restored database checksum ${actual} does not match ${recorded} recorded with ${last.key} ` +
        "(the LTX files themselves verified; to restore anyway: --no-checksum-record)",
    );
  }
}
