/**
 * CRC-64/GO-ISO (Go's `hash/crc64` with the ISO table) and the LTX page and database
 * checksums built on it (spec §1.7, §1.8).
 *
 * The 64-bit CRC state is kept as two signed 32-bit halves so the hot loop stays in small
 * integers; it processes 16 bytes per step with slicing-by-16 tables.
 */

import { lockPgno } from "./header.ts";

/** Bit 63: set on every stored page, database and file checksum. */
export const CHECKSUM_FLAG = 1n << 63n;

const SLICES = 16;
// Reflected ISO polynomial 0xD800000000000000: only the high half is non-zero.
const POLY_HI = 0xd8000000 | 0;

/** Slicing tables: entry [t * 256 + i] of table t, low and high halves apart. */
const TAB_LO = new Int32Array(SLICES * 256);
const TAB_HI = new Int32Array(SLICES * 256);
for (let i = 0; i < 256; i++) {
  let lo = i;
  let hi = 0;
  for (let k = 0; k < 8; k++) {
    const bit = lo & 1;
    lo = (lo >>> 1) | ((hi & 1) << 31);
    hi = hi >>> 1;
    if (bit) hi ^= POLY_HI;
  }
  TAB_LO[i] = lo;
  TAB_HI[i] = hi;
}
for (let t = 1; t < SLICES; t++) {
  for (let i = 0; i < 256; i++) {
    const plo = TAB_LO[(t - 1) * 256 + i];
    const phi = TAB_HI[(t - 1) * 256 + i];
    const idx = plo & 0xff;
    TAB_LO[t * 256 + i] = ((plo >>> 8) | (phi << 24)) ^ TAB_LO[idx];
    TAB_HI[t * 256 + i] = (phi >>> 8) ^ TAB_HI[idx];
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Running state; `lo`/`hi` hold the inverted CRC as Go keeps it between updates. */
interface State {
  lo: number;
  hi: number;
}

function updateState(st: State, b: Uint8Array): void {
  const L = TAB_LO;
  const H = TAB_HI;
  let lo = st.lo;
  let hi = st.hi;
  const n = b.length;
  let i = 0;
  // Byte-wise until 4-aligned so the bulk can be read as 32-bit words.
  while (i < n && ((b.byteOffset + i) & 3) !== 0) {
    const idx = (lo ^ b[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ L[idx];
    hi = (hi >>> 8) ^ H[idx];
    i++;
  }
  const blocks = (n - i) >>> 4;
  if (blocks > 0 && LITTLE_ENDIAN) {
    const w = new Int32Array(b.buffer, b.byteOffset + i, blocks * 4);
    for (let j = 0; j < w.length; j += 4) {
      lo ^= w[j];
      hi ^= w[j + 1];
      const a = w[j + 2];
      const c = w[j + 3];
      const nl = L[3840 + (lo & 0xff)] ^ L[3584 + ((lo >>> 8) & 0xff)] ^
        L[3328 + ((lo >>> 16) & 0xff)] ^ L[3072 + (lo >>> 24)] ^
        L[2816 + (hi & 0xff)] ^ L[2560 + ((hi >>> 8) & 0xff)] ^
        L[2304 + ((hi >>> 16) & 0xff)] ^ L[2048 + (hi >>> 24)] ^
        L[1792 + (a & 0xff)] ^ L[1536 + ((a >>> 8) & 0xff)] ^
        L[1280 + ((a >>> 16) & 0xff)] ^ L[1024 + (a >>> 24)] ^
        L[768 + (c & 0xff)] ^ L[512 + ((c >>> 8) & 0xff)] ^
        L[256 + ((c >>> 16) & 0xff)] ^ L[c >>> 24];
      const nh = H[3840 + (lo & 0xff)] ^ H[3584 + ((lo >>> 8) & 0xff)] ^
        H[3328 + ((lo >>> 16) & 0xff)] ^ H[3072 + (lo >>> 24)] ^
        H[2816 + (hi & 0xff)] ^ H[2560 + ((hi >>> 8) & 0xff)] ^
        H[2304 + ((hi >>> 16) & 0xff)] ^ H[2048 + (hi >>> 24)] ^
        H[1792 + (a & 0xff)] ^ H[1536 + ((a >>> 8) & 0xff)] ^
        H[1280 + ((a >>> 16) & 0xff)] ^ H[1024 + (a >>> 24)] ^
        H[768 + (c & 0xff)] ^ H[512 + ((c >>> 8) & 0xff)] ^
        H[256 + ((c >>> 16) & 0xff)] ^ H[c >>> 24];
      lo = nl;
      hi = nh;
    }
    i += blocks * 16;
  }
  for (; i < n; i++) {
    const idx = (lo ^ b[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ L[idx];
    hi = (hi >>> 8) ^ H[idx];
  }
  st.lo = lo;
  st.hi = hi;
}

function toBigint(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Incremental CRC-64/GO-ISO. */
export class Crc64 {
  #st: State = { lo: -1, hi: -1 };

  /** Feed more bytes. */
  update(b: Uint8Array): void {
    updateState(this.#st, b);
  }

  /** The CRC of everything fed so far, without the bit-63 flag. */
  digest(): bigint {
    return toBigint(~this.#st.hi, ~this.#st.lo);
  }

  /** An independent copy of the running state. */
  clone(): Crc64 {
    const c = new Crc64();
    c.#st = { lo: this.#st.lo, hi: this.#st.hi };
    return c;
  }
}

/** CRC-64/GO-ISO of `b` (check value: crc64("123456789") = 0xB90956C775A41001). */
export function crc64(b: Uint8Array): bigint {
  const st = { lo: -1, hi: -1 };
  updateState(st, b);
  return toBigint(~st.hi, ~st.lo);
}

/** Page checksum halves (flag included) written into `out` as [hi, lo]; no bigint. */
export function pageChecksumHalves(pgno: number, data: Uint8Array, out: Int32Array): void {
  let lo = -1;
  let hi = -1;
  for (let shift = 24; shift >= 0; shift -= 8) {
    const idx = (lo ^ (pgno >>> shift)) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ TAB_LO[idx];
    hi = (hi >>> 8) ^ TAB_HI[idx];
  }
  const st = { lo, hi };
  updateState(st, data);
  out[0] = ~st.hi | 0x80000000;
  out[1] = ~st.lo;
}

/** Page checksum: CRC-64/GO-ISO over u32 BE pgno then the page, with bit 63 set. */
export function pageChecksum(pgno: number, data: Uint8Array): bigint {
  const h = new Int32Array(2);
  pageChecksumHalves(pgno, data, h);
  return toBigint(h[0], h[1]);
}

/**
 * Running database checksum: XOR of the page checksums of pages 1..N (skipping the lock page),
 * with bit 63 forced. Add each page once.
 */
export class DatabaseChecksum {
  readonly #lock: number | undefined;
  #hi = 0;
  #lo = 0;
  readonly #tmp = new Int32Array(2);

  /** The lock page (never counted) follows from `pageSize`, or from each page's length. */
  constructor(pageSize?: number) {
    this.#lock = pageSize === undefined ? undefined : lockPgno(pageSize);
  }

  /** Fold in one page (ignored when it is the lock page). */
  add(pgno: number, data: Uint8Array): void {
    if (pgno === (this.#lock ?? lockPgno(data.length))) return;
    pageChecksumHalves(pgno, data, this.#tmp);
    this.#hi ^= this.#tmp[0];
    this.#lo ^= this.#tmp[1];
  }

  /** XOR in a page checksum given as its halves (as pageChecksumHalves writes them). */
  xorHalves(hi: number, lo: number): void {
    this.#hi ^= hi;
    this.#lo ^= lo;
  }

  /** XOR in an already computed page checksum (add or remove it: XOR is its own inverse). */
  xor(checksum: bigint): void {
    this.#hi ^= Number((checksum >> 32n) & 0xffffffffn) | 0;
    this.#lo ^= Number(checksum & 0xffffffffn) | 0;
  }

  /** The database checksum so far (bit 63 always set; an empty database gives the flag alone). */
  value(): bigint {
    return toBigint(this.#hi | 0x80000000, this.#lo);
  }
}

/**
 * The database checksum of a database rebuilt page by page (a restore): pages may be written in
 * any order, overwritten and cut off by a shrink; each page's checksum is kept (8 bytes a page)
 * so the old one can be XORed out. The lock page never counts.
 */
export class RebuiltChecksum {
  readonly #lock: number;
  #sums = new Int32Array(2048); // [hi, lo] per pgno
  #has = new Uint8Array(1024);
  #max = 0;
  #hi = 0;
  #lo = 0;
  readonly #tmp = new Int32Array(2);

  constructor(pageSize: number) {
    this.#lock = lockPgno(pageSize);
  }

  /** Page `pgno` now holds `data`. */
  set(pgno: number, data: Uint8Array): void {
    if (pgno === this.#lock) return;
    pageChecksumHalves(pgno, data, this.#tmp);
    this.setHalves(pgno, this.#tmp[0], this.#tmp[1]);
  }

  /** Page `pgno` now holds a page whose checksum halves are known (the decoder computed them). */
  setHalves(pgno: number, hi: number, lo: number): void {
    if (pgno === this.#lock) return;
    if (pgno >= this.#has.length) this.#grow(pgno);
    if (this.#has[pgno]) {
      this.#hi ^= this.#sums[2 * pgno];
      this.#lo ^= this.#sums[2 * pgno + 1];
    }
    this.#has[pgno] = 1;
    this.#sums[2 * pgno] = hi;
    this.#sums[2 * pgno + 1] = lo;
    this.#hi ^= hi;
    this.#lo ^= lo;
    if (pgno > this.#max) this.#max = pgno;
  }

  /** Pages above `commit` are gone. */
  truncate(commit: number): void {
    for (let p = commit + 1; p <= this.#max; p++) {
      if (!this.#has[p]) continue;
      this.#has[p] = 0;
      this.#hi ^= this.#sums[2 * p];
      this.#lo ^= this.#sums[2 * p + 1];
    }
    this.#max = Math.min(this.#max, commit);
  }

  /** The database checksum (bit 63 set), as DatabaseChecksum gives for the same pages. */
  value(): bigint {
    return toBigint(this.#hi | 0x80000000, this.#lo);
  }

  #grow(pgno: number): void {
    let n = this.#has.length;
    while (n <= pgno) n *= 2;
    const has = new Uint8Array(n);
    has.set(this.#has);
    const sums = new Int32Array(2 * n);
    sums.set(this.#sums);
    this.#has = has;
    this.#sums = sums;
  }
}
