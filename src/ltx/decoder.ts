/**
 * Streaming LTX decoder (spec §1.11) with the checks the reference leaves out: page order and
 * range, lock page, snapshot completeness, exact page length, page index against the frames,
 * trailing bytes, and the trailer's checksum fields.
 */

import { LtxError, type LtxErrorKind, WalrustError } from "../errors.ts";
import { ByteReader } from "./byte_reader.ts";
import { CHECKSUM_FLAG, Crc64, DatabaseChecksum, pageChecksumHalves } from "./checksum.ts";
import {
  decodeHeader,
  HEADER_SIZE,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  PAGE_FLAG_SIZE,
  PAGE_HEADER_SIZE,
  tracksChecksums,
  TRAILER_SIZE,
} from "./header.ts";
import { decodeLz4Frame, decompressBlock, type Lz4FrameInfo, scanLz4Frame } from "./lz4.ts";
import { formatHex64 } from "./names.ts";

/** The 16-byte trailer. */
export interface LtxTrailer {
  /** Database checksum after applying the file (0 when checksums are not tracked). */
  postApplyChecksum: bigint;
  /** CRC-64 of every byte before this field, with bit 63 set. */
  fileChecksum: bigint;
}

/** One page-index entry: where a page's frame starts and how long it is. */
export interface PageIndexEntry {
  /** Page number (1-based). */
  pgno: number;
  /** Byte offset of the page's frame (its page header) in the file. */
  offset: number;
  /** Frame length in bytes, from the page header to the end of the payload. */
  size: number;
}

/** A decoded page; `data` is a fresh buffer the caller may keep. */
export interface LtxPage {
  pgno: number;
  data: Uint8Array<ArrayBuffer>;
}

/** A decoded page with the layout of its frame. */
export interface LtxFrame extends LtxPage {
  /** Page header flags: 0x0001 block format, 0 legacy LZ4 frame. */
  flags: number;
  /** Offset of the 6-byte page header. */
  offset: number;
  /** Bytes from the page header to the end of the payload (the index size). */
  frameSize: number;
  /** The size prefix (block format) or the LZ4 frame length (legacy). */
  compressedSize: number;
  /** The page's checksum halves [hi, lo], when the decoder computed it (snapshot files). */
  checksum?: [number, number];
  /** Legacy frames only: what the LZ4 frame looked like. */
  lz4Frame?: Lz4FrameInfo;
}

/** Everything a full verification learned about one file. */
export interface LtxSummary {
  /** The decoded file header (page size, commit, TXID range, timestamp, WAL position). */
  header: LtxHeader;
  /** Page numbers of the page frames, in file order. */
  pages: number[];
  /** The trailer's post-apply and file checksums. */
  trailer: LtxTrailer;
  /** The page index: offset and size of each page frame. */
  index: PageIndexEntry[];
  /** Total file size in bytes. */
  size: number;
  /** Page encoding used: LZ4 block, legacy LZ4 frame, both, or none (no pages). */
  encoding: "block" | "legacy" | "mixed" | "none";
}

const U64_BYTES = 8;
// A page index entry is three varints of at most 5 + 10 + 10 bytes.
const MAX_INDEX_ENTRY = 25;

function fail(kind: LtxErrorKind, msg: string): never {
  throw new LtxError(kind, msg);
}

function hex(v: bigint): string {
  return "0x" + formatHex64(v);
}

/** The largest raw LZ4 block that may encode `n` bytes (LZ4_compressBound). */
function compressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

/** Decode one LTX file from a stream of chunks; see the module comment for what is checked. */
export class LtxDecoder {
  /** The validated header. */
  readonly header: LtxHeader;
  readonly #r: ByteReader;
  readonly #crc = new Crc64();
  readonly #prefix: string;
  readonly #lock: number;
  readonly #snapshot: boolean;
  readonly #db: DatabaseChecksum | undefined;
  readonly #sum = new Int32Array(2);
  readonly #pgnos: number[] = [];
  readonly #offsets: number[] = [];
  readonly #sizes: number[] = [];
  #prev = 0;
  #blockFrames = 0;
  #legacyFrames = 0;
  #pagesDone = false;
  #finished = false;

  private constructor(header: LtxHeader, r: ByteReader, headerBytes: Uint8Array, prefix: string) {
    this.header = header;
    this.#r = r;
    this.#prefix = prefix;
    this.#crc.update(headerBytes);
    this.#lock = lockPgno(header.pageSize);
    this.#snapshot = isSnapshot(header);
    this.#db = this.#snapshot && tracksChecksums(header)
      ? new DatabaseChecksum(header.pageSize)
      : undefined;
  }

  /** Read and validate the header. `name` prefixes every error message. */
  static async open(
    src: AsyncIterable<Uint8Array>,
    opts: { name?: string } = {},
  ): Promise<LtxDecoder> {
    const prefix = opts.name ? `${opts.name}: ` : "";
    const r = new ByteReader(src);
    return await guard(prefix, r, async () => {
      const hb = await r.read(HEADER_SIZE);
      if (hb === undefined) {
        fail(
          "truncated",
          `file is ${r.available} bytes, shorter than the ${HEADER_SIZE}-byte header`,
        );
      }
      const header = decodeHeader(hb);
      return new LtxDecoder(header, r, hb, prefix);
    });
  }

  /** Stop early and release the source (closes the file behind readLtxFile). */
  async cancel(): Promise<void> {
    await this.#r.close();
  }

  /** Decode the pages in file order, validating each frame as it goes. */
  async *pages(): AsyncGenerator<LtxFrame> {
    for (;;) {
      let f: LtxFrame | undefined;
      try {
        f = await this.#nextFrame();
      } catch (e) {
        throw await failed(this.#prefix, this.#r, e);
      }
      if (f === undefined) return;
      yield f;
    }
  }

  /**
   * Read the page index and trailer and run every file-level check. Pages not yet read through
   * `pages()` are decoded (and validated) first.
   */
  async finish(): Promise<{ trailer: LtxTrailer; index: PageIndexEntry[]; size: number }> {
    return await guard(this.#prefix, this.#r, async () => {
      if (this.#finished) throw new WalrustError("LtxDecoder.finish called twice");
      while ((await this.#nextFrame()) !== undefined) { /* drain */ }
      this.#finished = true;
      return await this.#readTail();
    });
  }

  /** Which page encodings the frames read so far used. */
  get encoding(): LtxSummary["encoding"] {
    if (this.#blockFrames > 0 && this.#legacyFrames > 0) return "mixed";
    if (this.#blockFrames > 0) return "block";
    if (this.#legacyFrames > 0) return "legacy";
    return "none";
  }

  async #nextFrame(): Promise<LtxFrame | undefined> {
    if (this.#pagesDone) return undefined;
    const r = this.#r;
    const h = this.header;
    const offset = r.offset;
    const ph = r.take(PAGE_HEADER_SIZE) ?? (await r.read(PAGE_HEADER_SIZE));
    if (ph === undefined) {
      fail("truncated", `file ends at byte ${offset + r.available} inside the page block`);
    }
    const pgno = ((ph[0] << 24) | (ph[1] << 16) | (ph[2] << 8) | ph[3]) >>> 0;
    const flags = (ph[4] << 8) | ph[5];
    this.#crc.update(ph);
    if (pgno === 0 && flags === 0) {
      this.#pagesDone = true;
      this.#checkSnapshotEnd();
      return undefined;
    }
    const at = (): string => `page ${pgno} at offset ${offset}`;
    if (pgno === 0) {
      fail("page-header", `page number 0 with flags 0x${hex4(flags)} at offset ${offset}`);
    }
    if ((flags & ~PAGE_FLAG_SIZE) !== 0) {
      fail("page-header", `${at()}: invalid page header flags 0x${hex4(flags)}`);
    }
    if (pgno <= this.#prev) {
      fail("page-order", `page ${pgno} after page ${this.#prev}: pages must ascend`);
    }
    if (pgno > h.commit) fail("page-range", `${at()}: beyond commit ${h.commit}`);
    if (pgno === this.#lock) {
      fail("page-range", `${at()}: the lock page (page size ${h.pageSize}) is never stored`);
    }
    if (this.#snapshot) {
      const want = this.#nextSnapshotPage(this.#prev);
      if (pgno !== want) {
        fail("snapshot-incomplete", `snapshot is missing page ${want} (next page is ${pgno})`);
      }
    }
    let data: Uint8Array<ArrayBuffer>;
    let compressedSize: number;
    let frameSize: number;
    let lz4Frame: Lz4FrameInfo | undefined;
    if ((flags & PAGE_FLAG_SIZE) !== 0) {
      const sp = r.take(4) ?? (await r.read(4));
      if (sp === undefined) fail("truncated", `${at()}: file ends inside the size prefix`);
      const size = ((sp[0] << 24) | (sp[1] << 16) | (sp[2] << 8) | sp[3]) >>> 0;
      this.#crc.update(sp);
      const max = compressBound(h.pageSize);
      if (size === 0 || size > max) {
        fail("page-data", `${at()}: compressed size ${size} outside 1..${max}`);
      }
      const block = r.take(size) ?? (await r.read(size));
      if (block === undefined) {
        fail("truncated", `${at()}: LZ4 block of ${size} bytes runs past the end of the file`);
      }
      try {
        data = decompressBlock(block, h.pageSize);
      } catch (e) {
        throw inPage(at(), e);
      }
      compressedSize = size;
      frameSize = PAGE_HEADER_SIZE + 4 + size;
      this.#blockFrames++;
    } else {
      const max = 2 * compressBound(h.pageSize) + 64;
      let len: number;
      for (;;) {
        const view = r.peek();
        try {
          len = scanLz4Frame(view, max);
        } catch (e) {
          throw inPage(at(), e);
        }
        if (len > 0) break;
        if (!(await r.fill(-len))) {
          fail("truncated", `${at()}: LZ4 frame runs past the end of the file`);
        }
      }
      const frame = r.take(len)!;
      try {
        const dec = decodeLz4Frame(frame, h.pageSize);
        data = dec.data;
        lz4Frame = dec.info;
      } catch (e) {
        throw inPage(at(), e);
      }
      compressedSize = len;
      frameSize = PAGE_HEADER_SIZE + len;
      this.#legacyFrames++;
    }
    this.#crc.update(data);
    let sum: [number, number] | undefined;
    if (this.#db) {
      pageChecksumHalves(pgno, data, this.#sum);
      sum = [this.#sum[0], this.#sum[1]];
      if (pgno !== this.#lock) this.#db.xorHalves(sum[0], sum[1]);
    }
    this.#prev = pgno;
    this.#pgnos.push(pgno);
    this.#offsets.push(offset);
    this.#sizes.push(frameSize);
    const out: LtxFrame = { pgno, data, flags, offset, frameSize, compressedSize };
    if (lz4Frame) out.lz4Frame = lz4Frame;
    if (sum) out.checksum = sum;
    return out;
  }

  #nextSnapshotPage(prev: number): number {
    const n = prev + 1;
    return n === this.#lock ? n + 1 : n;
  }

  #checkSnapshotEnd(): void {
    if (!this.#snapshot) return;
    const want = this.#nextSnapshotPage(this.#prev);
    if (want <= this.header.commit) {
      fail(
        "snapshot-incomplete",
        this.#prev === 0
          ? `snapshot with commit ${this.header.commit} holds no pages`
          : `snapshot ends at page ${this.#prev}, commit is ${this.header.commit}`,
      );
    }
  }

  async #readTail(): Promise<{ trailer: LtxTrailer; index: PageIndexEntry[]; size: number }> {
    const r = this.#r;
    const start = r.offset;
    const n = this.#pgnos.length;
    const limit = n * MAX_INDEX_ENTRY + 1 + U64_BYTES + TRAILER_SIZE;
    const { bytes, more } = await r.readToEnd(limit);
    const total = start + bytes.length;
    const parsed = parseIndex(bytes);
    // Where the stored file checksum would sit if the file ended right here.
    const crcMatchesAt = (end: number): boolean => {
      if (end < TRAILER_SIZE || end > bytes.length) return false;
      const c = this.#crc.clone();
      c.update(bytes.subarray(0, end - U64_BYTES));
      const stored = readU64(bytes, end - U64_BYTES);
      return (c.digest() | CHECKSUM_FLAG) === stored;
    };
    const tailEnd = parsed.ok ? parsed.length + U64_BYTES + TRAILER_SIZE : -1;
    if (!parsed.ok || tailEnd > bytes.length) {
      const why = parsed.ok ? `${tailEnd - bytes.length} more bytes needed` : parsed.error;
      if (!more && crcMatchesAt(bytes.length)) {
        fail("index", `page index at offset ${start} is malformed: ${why}`);
      }
      if (more) fail("index", `page index at offset ${start} is longer than ${n} entries allow`);
      fail("truncated", `file ends at byte ${total} inside the page index or trailer (${why})`);
    }
    if (more || tailEnd < bytes.length) {
      if (crcMatchesAt(tailEnd)) {
        fail(
          "trailing-data",
          `${more ? "more than " : ""}${bytes.length - tailEnd} byte(s) after the trailer, ` +
            `which ends at byte ${start + tailEnd}`,
        );
      }
      if (!more && crcMatchesAt(bytes.length)) {
        fail("index", `page index at offset ${start} ends early, at byte ${start + parsed.length}`);
      }
      fail("checksum", `file checksum mismatch (and ${bytes.length - tailEnd} unexpected bytes)`);
    }
    const postApply = readU64(bytes, tailEnd - TRAILER_SIZE);
    const fileChecksum = readU64(bytes, tailEnd - U64_BYTES);
    this.#crc.update(bytes.subarray(0, tailEnd - U64_BYTES));
    const computed = this.#crc.digest() | CHECKSUM_FLAG;
    if (computed !== fileChecksum) {
      fail("checksum", `file checksum ${hex(fileChecksum)} != computed ${hex(computed)}`);
    }
    const indexSize = readU64(bytes, parsed.length);
    if (indexSize !== BigInt(parsed.length)) {
      fail("index", `page index size field ${indexSize} != ${parsed.length} index bytes`);
    }
    this.#crossCheckIndex(parsed.entries);
    this.#checkPostApply(postApply);
    return {
      trailer: { postApplyChecksum: postApply, fileChecksum },
      index: parsed.entries,
      size: total,
    };
  }

  #crossCheckIndex(entries: PageIndexEntry[]): void {
    const n = this.#pgnos.length;
    for (let i = 0; i < Math.min(n, entries.length); i++) {
      const e = entries[i];
      const pgno = this.#pgnos[i];
      const off = this.#offsets[i];
      const size = this.#sizes[i];
      if (e.pgno !== pgno || e.offset !== off || e.size !== size) {
        fail(
          "index",
          `page index entry ${i} (page ${e.pgno}, offset ${e.offset}, size ${e.size}) != frame ` +
            `${i} (page ${pgno}, offset ${off}, size ${size})`,
        );
      }
    }
    if (entries.length !== n) {
      fail("index", `page index has ${entries.length} entries for ${n} frames`);
    }
  }

  #checkPostApply(post: bigint): void {
    const h = this.header;
    if (!tracksChecksums(h)) {
      if (post !== 0n) {
        fail("header", `post-apply checksum ${hex(post)} with the NoChecksum flag: must be 0`);
      }
      return;
    }
    if ((post & CHECKSUM_FLAG) === 0n) {
      fail("checksum", `post-apply checksum ${hex(post)}: must be non-zero with bit 63 set`);
    }
    if (this.#db) {
      const want = this.#db.value();
      if (post !== want) {
        fail(
          "checksum",
          `post-apply checksum ${hex(post)} != snapshot database checksum ${hex(want)}`,
        );
      }
    }
  }

  /** Page numbers decoded so far, in file order. */
  get pageNumbers(): readonly number[] {
    return this.#pgnos;
  }
}

function hex4(v: number): string {
  return v.toString(16).padStart(4, "0");
}

function readU64(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset + off, U64_BYTES).getBigUint64(0);
}

type ParsedIndex =
  | { ok: true; entries: PageIndexEntry[]; length: number }
  | { ok: false; error: string };

/** Parse the index varints up to and including the 0 terminator. */
function parseIndex(b: Uint8Array): ParsedIndex {
  const entries: PageIndexEntry[] = [];
  let p = 0;
  const uvarint = (): number | string => {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= b.length) return "ends inside a varint";
      const byte = b[p++];
      v += (byte & 0x7f) * mul;
      if (byte < 0x80) {
        return Number.isSafeInteger(v) ? v : `varint ${v} beyond 2^53-1`;
      }
      mul *= 128;
    }
    return "varint longer than 10 bytes";
  };
  for (;;) {
    const pgno = uvarint();
    if (typeof pgno === "string") return { ok: false, error: pgno };
    if (pgno === 0) return { ok: true, entries, length: p };
    const offset = uvarint();
    if (typeof offset === "string") return { ok: false, error: offset };
    const size = uvarint();
    if (typeof size === "string") return { ok: false, error: size };
    entries.push({ pgno, offset, size });
  }
}

/** Add page context to an LtxError. */
function inPage(at: string, e: unknown): unknown {
  return e instanceof LtxError ? new LtxError(e.kind, `${at}: ${e.message}`, { cause: e }) : e;
}

/** After a failure: release the source, and prefix LtxError messages with the file name. */
async function failed(prefix: string, r: ByteReader, e: unknown): Promise<unknown> {
  await r.close().catch(() => {});
  if (prefix && e instanceof LtxError) {
    return new LtxError(e.kind, prefix + e.message, { cause: e });
  }
  return e;
}

/** Run `f`; on failure see `failed`. */
async function guard<T>(prefix: string, r: ByteReader, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw await failed(prefix, r, e);
  }
}

/** Decode and fully validate one LTX stream, keeping only metadata (not the pages). */
export async function verifyLtx(
  src: AsyncIterable<Uint8Array>,
  opts: { name?: string } = {},
): Promise<LtxSummary> {
  const dec = await LtxDecoder.open(src, opts);
  const pages: number[] = [];
  for await (const p of dec.pages()) pages.push(p.pgno);
  const { trailer, index, size } = await dec.finish();
  return { header: dec.header, pages, trailer, index, size, encoding: dec.encoding };
}

const READ_CHUNK = 256 * 1024;

/**
 * Stream a local file in chunks (closed at the end or on error). A missing path or a directory
 * is a WalrustError naming the path.
 */
export async function* readLtxFile(path: string): AsyncGenerator<Uint8Array> {
  let file: Deno.FsFile;
  let left: number;
  try {
    const st = await Deno.stat(path);
    if (st.isDirectory) throw new WalrustError(`${path}: is a directory`);
    file = await Deno.open(path, { read: true });
    left = st.size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WalrustError(`${path}: no such file`);
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new WalrustError(`${path}: permission denied`);
    }
    throw e;
  }
  try {
    for (;;) {
      // A fresh buffer per chunk: the reader may still hold views into earlier ones. Sized to
      // what is left, so small files (most level-0 files) do not allocate a whole chunk.
      const buf = new Uint8Array(Math.min(READ_CHUNK, Math.max(left, 4096)));
      const n = await file.read(buf);
      if (n === null) return;
      left -= n;
      yield n === buf.length ? buf : buf.subarray(0, n);
    }
  } finally {
    file.close();
  }
}
