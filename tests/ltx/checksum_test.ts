import assert from "node:assert/strict";
import {
  CHECKSUM_FLAG,
  Crc64,
  crc64,
  DatabaseChecksum,
  pageChecksum,
  pageChecksumHalves,
  RebuiltChecksum,
} from "../../src/ltx/checksum.ts";
import { lockPgno } from "../../src/ltx/header.ts";

/** Bit-at-a-time CRC-64/GO-ISO straight from the definition, to check the sliced version. */
function slowCrc64(b: Uint8Array): bigint {
  const poly = 0xd800000000000000n;
  let crc = 0xffffffffffffffffn;
  for (const byte of b) {
    crc ^= BigInt(byte);
    for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  return crc ^ 0xffffffffffffffffn;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

Deno.test("crc64: check value of CRC-64/GO-ISO", () => {
  assert.equal(crc64(new TextEncoder().encode("123456789")), 0xB90956C775A41001n);
  assert.equal(crc64(new Uint8Array(0)), 0n);
});

Deno.test("crc64: sliced tables agree with the bitwise definition at every length and alignment", () => {
  const data = randomBytes(300, 7);
  for (let start = 0; start < 8; start++) {
    for (const len of [0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 255, 291]) {
      const view = data.subarray(start, start + len);
      assert.equal(crc64(view), slowCrc64(view), `start ${start} len ${len}`);
    }
  }
});

Deno.test("Crc64: any split into updates gives the one-shot digest", () => {
  const data = randomBytes(5000, 99);
  const whole = crc64(data);
  for (const step of [1, 3, 7, 16, 17, 1000]) {
    const c = new Crc64();
    for (let i = 0; i < data.length; i += step) c.update(data.subarray(i, i + step));
    assert.equal(c.digest(), whole, `step ${step}`);
  }
  const c = new Crc64();
  c.update(data.subarray(0, 1234));
  const copy = c.clone();
  c.update(data.subarray(1234));
  copy.update(data.subarray(1234));
  assert.equal(copy.digest(), whole);
  assert.equal(c.digest(), whole);
});

Deno.test("pageChecksum: CRC over u32 BE pgno then the page, bit 63 set", () => {
  const page = new Uint8Array(4096);
  // Spec §1.13 variant with checksums tracked: pageChk(1, 4096 zeros).
  assert.equal(pageChecksum(1, page), 0xd9328f592d9e733dn);
  const prefixed = new Uint8Array(4 + page.length);
  new DataView(prefixed.buffer).setUint32(0, 0x01020304);
  prefixed.set(page, 4);
  assert.equal(pageChecksum(0x01020304, page), crc64(prefixed) | CHECKSUM_FLAG);
});

Deno.test("DatabaseChecksum: superfly/ltx test vector 0xEFFFFFFFECD99000", () => {
  const c = new DatabaseChecksum(512);
  c.add(1, new Uint8Array(512).fill(1));
  c.add(2, new Uint8Array(512).fill(2));
  c.add(3, new Uint8Array(512).fill(3));
  assert.equal(c.value(), 0xEFFFFFFFECD99000n);
  // Without a page size the lock page follows from each page's length: same result.
  const d = new DatabaseChecksum();
  for (const v of [1, 2, 3]) d.add(v, new Uint8Array(512).fill(v));
  assert.equal(d.value(), 0xEFFFFFFFECD99000n);
});

Deno.test("DatabaseChecksum: empty database is the flag alone; lock page is skipped; xor undoes", () => {
  assert.equal(new DatabaseChecksum(4096).value(), CHECKSUM_FLAG);
  const c = new DatabaseChecksum(4096);
  c.add(lockPgno(4096), new Uint8Array(4096).fill(9));
  assert.equal(c.value(), CHECKSUM_FLAG);
  const page = new Uint8Array(4096).fill(5);
  c.add(7, page);
  assert.equal(c.value(), pageChecksum(7, page));
  c.xor(pageChecksum(7, page));
  assert.equal(c.value(), CHECKSUM_FLAG);
});

Deno.test("RebuiltChecksum: writes in any order, overwrites and shrinks equal a fresh sum of the result", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (const pageSize of [512, 4096]) {
    const lock = lockPgno(pageSize);
    const pages = new Map<number, Uint8Array>();
    const sums = new RebuiltChecksum(pageSize);
    let commit = 0;
    for (let step = 0; step < 3000; step++) {
      if (rnd(50) === 0 && commit > 10) {
        commit = commit - 1 - rnd(10);
        for (const p of [...pages.keys()]) if (p > commit) pages.delete(p);
        sums.truncate(commit);
        continue;
      }
      // Around the lock page too, for the small page size (its lock page is page 2097153).
      const pgno = pageSize === 512 && rnd(20) === 0 ? lock - 2 + rnd(4) : 1 + rnd(400);
      const data = new Uint8Array(pageSize).map(() => rnd(256));
      pages.set(pgno, data);
      sums.set(pgno, data);
      commit = Math.max(commit, pgno);
    }
    const fresh = new DatabaseChecksum(pageSize);
    for (const [p, d] of pages) fresh.add(p, d);
    assert.equal(sums.value(), fresh.value(), `page size ${pageSize}`);
    // Given as halves (as the decoder hands them over) it is the same.
    const halves = new RebuiltChecksum(pageSize);
    const h = new Int32Array(2);
    for (const [p, d] of pages) {
      pageChecksumHalves(p, d, h);
      halves.setHalves(p, h[0], h[1]);
    }
    assert.equal(halves.value(), fresh.value());
  }
});
