/**
 * Streaming LTX encoder (spec §1.10). Pages go out in ~64 KiB chunks to an async sink; only
 * the page index (three numbers per page) is kept until `finish`.
 */

import { LtxError, WalrustError } from "../errors.ts";
import { CHECKSUM_FLAG, Crc64, DatabaseChecksum } from "./checksum.ts";
import {
  encodeHeader,
  HEADER_FLAG_NO_CHECKSUM,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  PAGE_FLAG_SIZE,
  PAGE_HEADER_SIZE,
  TRAILER_SIZE,
} from "./header.ts";
import { compressBlock, compressBound, legacyFrameLength, writeLz4Frame } from "./lz4.ts";
import { formatHex64 } from "./names.ts";

/** Page payload encoding: legacy LZ4 frames (read by every Litestream v0.5.x) or LZ4 blocks. */
export type LtxFormat = "legacy" | "block";
/**
 * Receives the encoded bytes in order. Each chunk is handed over (never reused by us), unless
 * the encoder was made with `reuseChunks`: then a chunk is valid only until the promise resolves.
 */
export type ByteSink = (chunk: Uint8Array) => Promise<void>;

const CHUNK = 64 * 1024;
const MAX_SPARE_CHUNKS = 8;
const spareChunks: Uint8Array[] = [];

function hex(v: bigint): string {
  return "0x" + formatHex64(v);
}

/** Write one LTX file page by page. */
export class LtxEncoder {
  readonly #h: LtxHeader;
  readonly #sink: ByteSink;
  readonly #format: LtxFormat;
  readonly #crc = new Crc64();
  readonly #lock: number;
  readonly #snapshot: boolean;
  readonly #db: DatabaseChecksum | undefined;
  readonly #pgnos: number[] = [];
  readonly #offsets: number[] = [];
  readonly #sizes: number[] = [];
  // Page header plus size prefix, reused: it is copied out before the next page.
  readonly #ph = new Uint8Array(PAGE_HEADER_SIZE + 4);
  readonly #phv = new DataView(this.#ph.buffer);
  #buf: Uint8Array;
  #len = 0;
  #offset = 0;
  #prev = 0;
  #busy = false;
  #done = false;

  /** Validates the header (LtxError "header") and buffers it; nothing is written yet. */
  readonly #reuse: boolean;

  constructor(
    header: LtxHeader,
    sink: ByteSink,
    opts: { format?: LtxFormat; reuseChunks?: boolean } = {},
  ) {
    this.#reuse = opts.reuseChunks ?? false;
    // Encoders that own their chunk share a small pool: one fresh 64 KiB buffer per small file
    // (every sync of every database) was steady off-heap garbage.
    this.#buf = (this.#reuse ? spareChunks.pop() : undefined) ?? new Uint8Array(CHUNK);
    const hb = encodeHeader(header);
    this.#h = { ...header };
    this.#sink = sink;
    this.#format = opts.format ?? "legacy";
    if (this.#format !== "legacy" && this.#format !== "block") {
      throw new WalrustError(`unknown LTX format ${JSON.stringify(this.#format)}`);
    }
    this.#lock = lockPgno(header.pageSize);
    this.#snapshot = isSnapshot(header);
    this.#db = this.#snapshot && (header.flags & HEADER_FLAG_NO_CHECKSUM) === 0
      ? new DatabaseChecksum(header.pageSize)
      : undefined;
    this.#crc.update(hb);
    this.#put(hb);
  }

  /**
   * Add one page. Pages must ascend, stay within commit, skip the lock page, be exactly one page
   * long, and (in a snapshot) run 1, 2, 3, … without gaps. `data` is not retained.
   */
  async encodePage(pgno: number, data: Uint8Array): Promise<void> {
    this.#enter();
    try {
      this.#checkPage(pgno, data);
      const ph = this.#ph;
      const v = this.#phv;
      v.setUint32(0, pgno);
      // Room for the worst case first, so the frame is written without another await.
      await this.#reserve(ph.length + compressBound(data.length) + 32);
      const block = compressBlock(data);
      let frameSize: number;
      if (this.#format === "block") {
        v.setUint16(4, PAGE_FLAG_SIZE);
        v.setUint32(6, block.length);
        this.#crc.update(ph);
        frameSize = ph.length + block.length;
        this.#put(ph);
        this.#put(block);
      } else {
        v.setUint16(4, 0);
        const hdr = ph.subarray(0, PAGE_HEADER_SIZE);
        this.#crc.update(hdr);
        frameSize = hdr.length + legacyFrameLength(data.length, block.length);
        this.#put(hdr);
        const n = writeLz4Frame(data, block, this.#buf, this.#len);
        this.#len += n;
        this.#offset += n;
      }
      this.#crc.update(data);
      this.#db?.add(pgno, data);
      this.#pgnos.push(pgno);
      this.#offsets.push(this.#offset - frameSize);
      this.#sizes.push(frameSize);
      this.#prev = pgno;
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Write the end-of-pages marker, the page index and the trailer, and flush. For files that
   * track checksums, `postApplyChecksum` is required unless the file is a snapshot (computed
   * from its pages; a value given must match). NoChecksum files take 0 or nothing.
   */
  async finish(
    postApplyChecksum?: bigint,
  ): Promise<{ fileChecksum: bigint; size: number; pageCount: number }> {
    this.#enter();
    try {
      const h = this.#h;
      if (this.#snapshot) {
        let next = this.#prev + 1;
        if (next === this.#lock) next++;
        if (next <= h.commit) {
          throw new LtxError(
            "snapshot-incomplete",
            `snapshot ends at page ${this.#prev} but commit is ${h.commit}: page ${next} missing`,
          );
        }
      }
      const post = this.#postApply(postApplyChecksum);
      const idx = encodeIndex(this.#pgnos, this.#offsets, this.#sizes);
      const tail = new Uint8Array(PAGE_HEADER_SIZE + idx.length + 8 + TRAILER_SIZE);
      const v = new DataView(tail.buffer);
      tail.set(idx, PAGE_HEADER_SIZE);
      let p = PAGE_HEADER_SIZE + idx.length;
      v.setBigUint64(p, BigInt(idx.length));
      p += 8;
      v.setBigUint64(p, post);
      p += 8;
      this.#crc.update(tail.subarray(0, p));
      const fileChecksum = this.#crc.digest() | CHECKSUM_FLAG;
      v.setBigUint64(p, fileChecksum);
      await this.#reserve(tail.length);
      this.#put(tail);
      await this.#flush();
      this.#done = true;
      if (this.#reuse && this.#buf.length === CHUNK && spareChunks.length < MAX_SPARE_CHUNKS) {
        spareChunks.push(this.#buf);
      }
      return { fileChecksum, size: this.#offset, pageCount: this.#pgnos.length };
    } finally {
      this.#busy = false;
    }
  }

  #enter(): void {
    if (this.#done) throw new WalrustError("LtxEncoder used after finish");
    if (this.#busy) throw new WalrustError("LtxEncoder calls must not overlap; await each one");
    this.#busy = true;
  }

  #checkPage(pgno: number, data: Uint8Array): void {
    const h = this.#h;
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > 0xffffffff) {
      throw new LtxError("page-header", `page number ${pgno}: must be an integer from 1`);
    }
    if (pgno === this.#lock) {
      throw new LtxError(
        "page-range",
        `page ${pgno} is the lock page for page size ${h.pageSize}: never stored`,
      );
    }
    if (pgno > h.commit) {
      throw new LtxError("page-range", `page ${pgno} beyond commit ${h.commit}`);
    }
    if (pgno <= this.#prev) {
      throw new LtxError("page-order", `page ${pgno} after page ${this.#prev}: pages must ascend`);
    }
    if (this.#snapshot) {
      let want = this.#prev + 1;
      if (want === this.#lock) want++;
      if (pgno !== want) {
        throw new LtxError(
          "snapshot-incomplete",
          `snapshot page ${pgno} after page ${this.#prev}: page ${want} missing`,
        );
      }
    }
    if (data.length !== h.pageSize) {
      throw new LtxError(
        "page-data",
        `page ${pgno} is ${data.length} bytes, page size ${h.pageSize}`,
      );
    }
  }

  #postApply(given: bigint | undefined): bigint {
    const h = this.#h;
    if ((h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0) {
      if (given !== undefined && given !== 0n) {
        throw new LtxError(
          "header",
          `post-apply checksum ${hex(given)} with NoChecksum: must be 0`,
        );
      }
      if (h.commit === 0) {
        throw new LtxError(
          "header",
          "commit 0 needs a post-apply checksum, impossible with NoChecksum",
        );
      }
      return 0n;
    }
    let post: bigint;
    if (this.#db) {
      post = this.#db.value();
      if (given !== undefined && given !== post) {
        throw new LtxError(
          "checksum",
          `post-apply checksum ${hex(given)} != snapshot database checksum ${hex(post)}`,
        );
      }
    } else {
      if (given === undefined) {
        throw new LtxError("checksum", "post-apply checksum required when checksums are tracked");
      }
      post = given;
    }
    if ((post & CHECKSUM_FLAG) === 0n || post > 0xffffffffffffffffn || post < 0n) {
      throw new LtxError("checksum", `post-apply checksum ${hex(post)}: must have bit 63 set`);
    }
    if (h.commit === 0 && post !== CHECKSUM_FLAG) {
      throw new LtxError("checksum", `commit 0 needs post-apply checksum ${hex(CHECKSUM_FLAG)}`);
    }
    return post;
  }

  /** Make room for `n` more bytes, flushing the current chunk first if it would overflow. */
  async #reserve(n: number): Promise<void> {
    if (this.#len + n <= this.#buf.length) return;
    await this.#flush();
    if (n > this.#buf.length) this.#buf = new Uint8Array(n);
  }

  #put(b: Uint8Array): void {
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    this.#offset += b.length;
  }

  async #flush(): Promise<void> {
    if (this.#len === 0) return;
    const chunk = this.#buf.subarray(0, this.#len);
    this.#len = 0;
    if (this.#reuse) {
      // The sink has consumed the chunk once its promise resolves: keep the buffer.
      await this.#sink(chunk);
      return;
    }
    this.#buf = new Uint8Array(CHUNK);
    await this.#sink(chunk);
  }
}

function uvarintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Page index: (pgno, offset, size) uvarint triples, then a 0 terminator. */
function encodeIndex(pgnos: number[], offsets: number[], sizes: number[]): Uint8Array {
  let len = 1;
  for (let i = 0; i < pgnos.length; i++) {
    len += uvarintLength(pgnos[i]) + uvarintLength(offsets[i]) + uvarintLength(sizes[i]);
  }
  const out = new Uint8Array(len);
  let p = 0;
  const put = (v: number) => {
    while (v >= 0x80) {
      out[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    out[p++] = v;
  };
  for (let i = 0; i < pgnos.length; i++) {
    put(pgnos[i]);
    put(offsets[i]);
    put(sizes[i]);
  }
  out[p] = 0;
  return out;
}
