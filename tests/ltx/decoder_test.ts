import assert from "node:assert/strict";
import { LtxError, WalrustError } from "../../src/errors.ts";
import { CHECKSUM_FLAG, Crc64 } from "../../src/ltx/checksum.ts";
import { LtxDecoder, type LtxFrame, readLtxFile, verifyLtx } from "../../src/ltx/decoder.ts";
import { LtxEncoder } from "../../src/ltx/encoder.ts";
import { encodeHeader, type LtxHeader } from "../../src/ltx/header.ts";
import { compressBlock } from "../../src/ltx/lz4.ts";

const ROOT = new URL("../fixtures/vectors/ltx/", import.meta.url).pathname;

function fromHex(s: string): Uint8Array<ArrayBuffer> {
  const clean = s.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)!.map((x) => parseInt(x, 16)));
}

function toHex(b: Uint8Array): string {
  return Array.from(b).map((x) => x.toString(16).padStart(2, "0")).join("");
}

async function* chunks(b: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

// Spec §1.13: the 182-byte worked example, block format, as Litestream v0.5.16 writes it.
const EXAMPLE = fromHex(`
4c54 5831 0000 0002 0000 1000 0000 0001 0000 0000 0000 0001 0000 0000 0000 0001
0000 018b cfe5 6800 0000 0000 0000 0000 0000 0000 0000 0020 0000 0000 0000 1018
1234 5678 9abc def0 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
0000 0000 0000 0001 0001 0000 0026 1f00 0100 ffff ffff ffff ffff ffff ffff ffff
ffe8 0002 0000 0200 b000 0000 0000 0000 0000 0000 0000 0000 0000 0164 3000 0000
0000 0000 0004 0000 0000 0000 0000 953a 1463 be5c c813`);

const SPEC_BLOCK = EXAMPLE.subarray(0x6e, 0x6e + 38);

function exampleHeader(): LtxHeader {
  return {
    flags: 2,
    pageSize: 4096,
    commit: 1,
    minTXID: 1,
    maxTXID: 1,
    timestamp: 1700000000000,
    preApplyChecksum: 0n,
    walOffset: 32,
    walSize: 4120,
    walSalt1: 0x12345678,
    walSalt2: 0x9abcdef0,
    nodeID: 0n,
  };
}

/** The legacy-frame variant of the example (197 bytes), assembled from the spec's parts. */
function legacyExample(): Uint8Array<ArrayBuffer> {
  return fromHex(
    toHex(EXAMPLE.subarray(0, 100)) + "00000001 0000" + "04224d18 64 40 a7" + "26000000" +
      toHex(SPEC_BLOCK) + "00000000" + "f5465547" + "000000000000" + "01643f00" +
      "0000000000000004" + "0000000000000000" + "d52f0b54cd09c95d",
  );
}

/** The example with checksums tracked (flags 0): still 182 bytes. */
function trackedExample(): Uint8Array<ArrayBuffer> {
  const b = EXAMPLE.slice();
  b[7] = 0;
  const v = new DataView(b.buffer);
  v.setBigUint64(182 - 16, 0xd9328f592d9e733dn);
  v.setBigUint64(182 - 8, 0xcafc78fd695ffe8en);
  return b;
}

async function decodeAll(src: AsyncIterable<Uint8Array>) {
  const dec = await LtxDecoder.open(src);
  const frames: LtxFrame[] = [];
  for await (const f of dec.pages()) frames.push(f);
  const tail = await dec.finish();
  return { header: dec.header, frames, ...tail, encoding: dec.encoding };
}

Deno.test("decoder: spec §1.13 worked example (block format)", async () => {
  assert.equal(EXAMPLE.length, 182);
  const r = await decodeAll(chunks(EXAMPLE, 182));
  assert.deepEqual(r.header, exampleHeader());
  assert.equal(r.frames.length, 1);
  assert.deepEqual(r.frames[0].data, new Uint8Array(4096));
  assert.equal(r.frames[0].compressedSize, 38);
  assert.deepEqual(r.index, [{ pgno: 1, offset: 100, size: 48 }]);
  assert.equal(r.trailer.fileChecksum, 0x953a1463be5cc813n);
  assert.equal(r.trailer.postApplyChecksum, 0n);
  assert.equal(r.size, 182);
  assert.equal(r.encoding, "block");
});

Deno.test("decoder: spec §1.13 legacy-frame variant (197 bytes)", async () => {
  const b = legacyExample();
  assert.equal(b.length, 197);
  const r = await decodeAll(chunks(b, 5));
  assert.deepEqual(r.frames[0].data, new Uint8Array(4096));
  assert.deepEqual(r.index, [{ pgno: 1, offset: 100, size: 63 }]);
  assert.equal(r.trailer.fileChecksum, 0xd52f0b54cd09c95dn);
  assert.equal(r.encoding, "legacy");
});

Deno.test("decoder: spec §1.13 variant with checksums tracked verifies the snapshot checksum", async () => {
  const r = await decodeAll(chunks(trackedExample(), 64));
  assert.equal(r.header.flags, 0);
  assert.equal(r.trailer.postApplyChecksum, 0xd9328f592d9e733dn);
  // A wrong post-apply checksum, with the file checksum recomputed, is still caught.
  const bad = trackedExample();
  const v = new DataView(bad.buffer);
  v.setBigUint64(182 - 16, 0xd9328f592d9e733en);
  // The file CRC covers the decompressed page, not the block (spec §1.7).
  const c = new Crc64();
  c.update(bad.subarray(0, 110)); // header, page header, size prefix
  c.update(new Uint8Array(4096));
  c.update(bad.subarray(148, 182 - 8)); // end marker, index, size field, post-apply
  v.setBigUint64(182 - 8, c.digest() | CHECKSUM_FLAG);
  await assert.rejects(verifyLtx(chunks(bad, 182)), (e: unknown) => {
    assert.ok(e instanceof LtxError);
    assert.equal(e.kind, "checksum");
    assert.match(e.message, /!= snapshot database checksum 0xd9328f592d9e733d/);
    return true;
  });
});

Deno.test("encoder: the worked example in block format, byte-identical when the LZ4 block is", async () => {
  const parts: Uint8Array[] = [];
  const enc = new LtxEncoder(exampleHeader(), (c) => {
    parts.push(c.slice());
    return Promise.resolve();
  }, { format: "block" });
  await enc.encodePage(1, new Uint8Array(4096));
  const res = await enc.finish();
  const ours = new Uint8Array(res.size);
  let o = 0;
  for (const p of parts) {
    ours.set(p, o);
    o += p.length;
  }
  const block = compressBlock(new Uint8Array(4096));
  if (toHex(block) === toHex(SPEC_BLOCK)) {
    assert.deepEqual(ours, EXAMPLE);
    assert.equal(res.fileChecksum, 0x953a1463be5cc813n);
  } else {
    // lz4-wasm compresses differently from pierrec: same layout, different block bytes.
    assert.equal(res.size, 182 - 38 + block.length);
    assert.deepEqual(ours.subarray(0, 0x6a), EXAMPLE.subarray(0, 0x6a)); // header + page header
    const r = await decodeAll(chunks(ours, 13));
    assert.deepEqual(r.header, exampleHeader());
    assert.deepEqual(r.frames.map((f) => f.pgno), [1]);
    assert.deepEqual(r.frames[0].data, new Uint8Array(4096));
    assert.equal(r.trailer.postApplyChecksum, 0n);
    assert.equal(r.trailer.fileChecksum, res.fileChecksum);
  }
  assert.equal(res.pageCount, 1);
});

Deno.test("decoder: 1-byte and 7-byte chunks give the same result as whole files", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(ROOT + "manifest.json"));
  for (const f of manifest.files as { file: string }[]) {
    const bytes = await Deno.readFile(ROOT + f.file);
    const whole = await decodeAll(chunks(bytes, bytes.length));
    for (const size of [1, 7]) {
      const r = await decodeAll(chunks(bytes, size));
      assert.deepEqual(r, whole, `${f.file} in ${size}-byte chunks`);
    }
  }
});

Deno.test("decoder: finish() decodes and validates pages that were not iterated", async () => {
  const path = ROOT + "c4096-chain/0000000000000001-0000000000000001.ltx";
  const dec = await LtxDecoder.open(readLtxFile(path));
  const r = await dec.finish();
  assert.equal(r.index.length, 11);
  assert.equal(dec.pageNumbers.length, 11);
  await assert.rejects(dec.finish(), WalrustError);
});

/** How many of this process's file descriptors point at `path` (Linux /proc). */
function openFds(path: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === path) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

Deno.test("decoder: cancel() and decode errors release the file", async () => {
  const path = ROOT + "n512-hundreds/0000000000000001-0000000000000001.ltx";
  const dec = await LtxDecoder.open(readLtxFile(path));
  for await (const p of dec.pages()) {
    assert.equal(p.pgno, 1);
    break;
  }
  assert.equal(openFds(path), 1);
  await dec.cancel();
  assert.equal(openFds(path), 0);

  const bad =
    new URL("../fixtures/vectors/corrupt/pages-out-of-order.ltx", import.meta.url).pathname;
  await assert.rejects(verifyLtx(readLtxFile(bad)), LtxError);
  assert.equal(openFds(bad), 0);
  await verifyLtx(readLtxFile(path));
  assert.equal(openFds(path), 0);
});

Deno.test("decoder: page data is a fresh buffer per page", async () => {
  const bytes = await Deno.readFile(ROOT + "c4096-chain/0000000000000001-0000000000000001.ltx");
  const r = await decodeAll(chunks(bytes, 4096));
  const buffers = new Set(r.frames.map((f) => f.data.buffer));
  assert.equal(buffers.size, r.frames.length);
  assert.ok(r.frames.every((f) => f.data.byteOffset === 0 && f.data.byteLength === 4096));
});

Deno.test("readLtxFile: a missing file or a directory is a WalrustError naming it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
  try {
    await assert.rejects(verifyLtx(readLtxFile(`${dir}/nope.ltx`)), (e: unknown) => {
      assert.ok(e instanceof WalrustError && !(e instanceof LtxError));
      assert.equal(e.message, `${dir}/nope.ltx: no such file`);
      assert.equal(e.exitCode, 1);
      return true;
    });
    await assert.rejects(verifyLtx(readLtxFile(dir)), (e: unknown) => {
      assert.ok(e instanceof WalrustError);
      assert.equal(e.message, `${dir}: is a directory`);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decoder: a header that validates but has trailing garbage in the page block", async () => {
  // Header, then a page header for page 1 with flags 0x0001 and a size prefix of 0.
  const b = new Uint8Array(100 + 10);
  b.set(encodeHeader(exampleHeader()));
  b.set([0, 0, 0, 1, 0, 1, 0, 0, 0, 0], 100);
  await assert.rejects(verifyLtx(chunks(b, 50)), (e: unknown) => {
    assert.ok(e instanceof LtxError);
    assert.equal(e.kind, "page-data");
    assert.match(e.message, /page 1 at offset 100: compressed size 0/);
    return true;
  });
});
