/**
 * Apply a chain of LTX files to a new database file (for `ltx apply` and tests): contiguity
 * checks, page writes at (pgno-1)*pageSize, truncation to commit after each file, and pre/post
 * database checksums for files that track them. Written to a temp file, fsynced, renamed.
 */

import { dirname } from "node:path";
import { LtxError, RestoreError } from "../errors.ts";
import { CHECKSUM_FLAG, pageChecksum } from "./checksum.ts";
import { LtxDecoder, readLtxFile } from "./decoder.ts";
import { isSnapshot, lockPgno, type LtxHeader, tracksChecksums } from "./header.ts";
import { formatHex64, formatTXID } from "./names.ts";

const WRITE_BATCH = 1 << 20;

/** Apply `files` in order into a new database at `outPath`; refuses an existing file unless forced. */
export async function applyLtxChain(
  files: string[],
  outPath: string,
  opts: { force?: boolean } = {},
): Promise<{ commit: number; pageSize: number; txid: number }> {
  if (files.length === 0) throw new RestoreError("no LTX files to apply");
  await checkOutPath(outPath, opts.force ?? false);
  // Database checksums cost a CRC pass per page: keep them only if some file tracks them.
  const track = (await checkChain(files)).some(tracksChecksums);
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(6)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const tmp = `${outPath}.tmp-${rand}`;
  let out: Deno.FsFile;
  try {
    out = await Deno.open(tmp, { write: true, createNew: true });
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "its directory does not exist" : String(e);
    throw new RestoreError(`${outPath}: cannot create: ${why}`, { cause: e });
  }
  let closed = false;
  try {
    const db = new DbWriter(out, track);
    let last: LtxHeader | undefined;
    for (const path of files) {
      last = await applyOne(db, path);
    }
    await out.sync();
    out.close();
    closed = true;
    await Deno.rename(tmp, outPath);
    await syncDir(dirname(outPath));
    return { commit: last!.commit, pageSize: last!.pageSize, txid: last!.maxTXID };
  } catch (e) {
    if (!closed) out.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

async function checkOutPath(outPath: string, force: boolean): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(outPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (st.isDirectory) throw new RestoreError(`${outPath}: is a directory`);
  if (!force) throw new RestoreError(`${outPath}: already exists (use --force to replace it)`);
}

/** Read every header first so a gap or page-size mismatch fails before any work. */
async function checkChain(files: string[]): Promise<LtxHeader[]> {
  const headers: LtxHeader[] = [];
  let prev: { path: string; h: LtxHeader } | undefined;
  for (const path of files) {
    const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
    await dec.cancel();
    const h = dec.header;
    if (!prev) {
      if (!isSnapshot(h)) {
        throw new RestoreError(
          `${path}: a chain must start with a snapshot (minTXID 1), this file starts at ` +
            formatTXID(h.minTXID),
        );
      }
    } else {
      const p = prev.h;
      if (h.pageSize !== p.pageSize) {
        throw new RestoreError(
          `${path}: page size ${h.pageSize} differs from ${p.pageSize} in ${prev.path}`,
        );
      }
      if (h.minTXID > p.maxTXID + 1 || h.maxTXID <= p.maxTXID) {
        throw new RestoreError(
          `${path}: TXIDs ${formatTXID(h.minTXID)}-${formatTXID(h.maxTXID)} do not continue ` +
            `${prev.path} (max ${formatTXID(p.maxTXID)})`,
        );
      }
    }
    prev = { path, h };
    headers.push(h);
  }
  return headers;
}

/** Write one file's pages into the database and keep the database checksum current. */
async function applyOne(db: DbWriter, path: string): Promise<LtxHeader> {
  const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
  const h = dec.header;
  db.setPageSize(h.pageSize);
  if (tracksChecksums(h) && !isSnapshot(h)) {
    const have = db.checksum();
    if (h.preApplyChecksum !== have) {
      await dec.cancel();
      throw new LtxError(
        "checksum",
        `${path}: pre-apply checksum ${formatHex64(h.preApplyChecksum)} != database checksum ` +
          formatHex64(have),
      );
    }
  }
  for await (const p of dec.pages()) await db.writePage(p.pgno, p.data);
  const { trailer } = await dec.finish();
  await db.truncate(h.commit);
  if (tracksChecksums(h)) {
    const have = db.checksum();
    if (trailer.postApplyChecksum !== have) {
      throw new LtxError(
        "checksum",
        `${path}: post-apply checksum ${formatHex64(trailer.postApplyChecksum)} != database ` +
          `checksum ${formatHex64(have)} after applying it`,
      );
    }
  }
  return h;
}

/** Page writes with batching of consecutive pages, plus a rolling database checksum. */
class DbWriter {
  readonly #f: Deno.FsFile;
  readonly #track: boolean;
  #pageSize = 0;
  #lock = 0;
  #commit = 0;
  /** Page checksum by pgno; 0 for pages not present (real ones always have bit 63 set). */
  #sums = new BigUint64Array(1024);
  #xor = 0n;
  #batch = new Uint8Array(0);
  #batchStart = 0; // first pgno in the batch
  #batchPages = 0;

  constructor(f: Deno.FsFile, track: boolean) {
    this.#f = f;
    this.#track = track;
  }

  setPageSize(n: number): void {
    if (this.#pageSize === n) return;
    this.#pageSize = n;
    this.#lock = lockPgno(n);
    this.#batch = new Uint8Array(Math.max(n, WRITE_BATCH - (WRITE_BATCH % n)));
  }

  checksum(): bigint {
    return this.#xor | CHECKSUM_FLAG;
  }

  async writePage(pgno: number, data: Uint8Array): Promise<void> {
    if (this.#track) this.#setSum(pgno, pageChecksum(pgno, data));
    const n = this.#pageSize;
    const contiguous = this.#batchPages > 0 && pgno === this.#batchStart + this.#batchPages;
    if (!contiguous || (this.#batchPages + 1) * n > this.#batch.length) await this.#flush();
    if (this.#batchPages === 0) this.#batchStart = pgno;
    this.#batch.set(data, this.#batchPages * n);
    this.#batchPages++;
  }

  /** Cut or extend the file to `commit` pages; pages that appear read as zeros. */
  async truncate(commit: number): Promise<void> {
    await this.#flush();
    const n = this.#pageSize;
    await this.#f.truncate(commit * n);
    if (!this.#track) {
      this.#commit = commit;
      return;
    }
    if (commit > this.#commit) {
      let zero: Uint8Array | undefined;
      for (let p = this.#commit + 1; p <= commit; p++) {
        if (p === this.#lock || this.#getSum(p) !== 0n) continue;
        zero ??= new Uint8Array(n);
        this.#setSum(p, pageChecksum(p, zero));
      }
    } else {
      for (let p = commit + 1; p <= this.#commit; p++) this.#setSum(p, 0n);
    }
    // Pages written beyond the old size but above the new commit cannot exist (decoder rule).
    this.#commit = commit;
  }

  #getSum(p: number): bigint {
    return p < this.#sums.length ? this.#sums[p] : 0n;
  }

  #setSum(p: number, v: bigint): void {
    if (p === this.#lock) return;
    if (p >= this.#sums.length) {
      let len = this.#sums.length;
      while (len <= p) len *= 2;
      const next = new BigUint64Array(len);
      next.set(this.#sums);
      this.#sums = next;
    }
    this.#xor ^= this.#sums[p] ^ v;
    this.#sums[p] = v;
  }

  async #flush(): Promise<void> {
    if (this.#batchPages === 0) return;
    const n = this.#pageSize;
    const bytes = this.#batch.subarray(0, this.#batchPages * n);
    await this.#f.seek((this.#batchStart - 1) * n, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += await this.#f.write(bytes.subarray(off));
    this.#batchPages = 0;
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Not every platform lets a directory be opened and synced; the rename itself is done.
  }
}
