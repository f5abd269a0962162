import assert from "node:assert/strict";
import { LtxError, type LtxErrorKind } from "../../src/errors.ts";
import { applyLtxChain } from "../../src/ltx/apply.ts";
import { CHECKSUM_FLAG, DatabaseChecksum } from "../../src/ltx/checksum.ts";
import { LtxDecoder, type LtxFrame } from "../../src/ltx/decoder.ts";
import { LtxEncoder, type LtxFormat } from "../../src/ltx/encoder.ts";
import { lockPgno, type LtxHeader } from "../../src/ltx/header.ts";
import { decodeLz4Frame, LZ4_FRAME_MAGIC } from "../../src/ltx/lz4.ts";
import { formatHex64, parseTXID } from "../../src/ltx/names.ts";

const ROOT = new URL("../fixtures/vectors/ltx/", import.meta.url).pathname;
const FORMATS: LtxFormat[] = ["legacy", "block"];

interface Db {
  db: string;
  chain: string;
  afterTXID: string;
  pageSize: number;
  pageCount: number;
  dbChecksum: string;
}

const manifest: {
  databases: Db[];
  files: { chain: string; header: { flags: number } }[];
} = JSON.parse(await Deno.readTextFile(ROOT + "manifest.json"));

/** Encode into memory; returns the file bytes and what finish() reported. */
async function encode(
  header: LtxHeader,
  format: LtxFormat,
  pages: [number, Uint8Array][],
  post?: bigint,
) {
  const chunks: Uint8Array[] = [];
  const enc = new LtxEncoder(header, (c) => {
    chunks.push(c);
    return Promise.resolve();
  }, { format });
  for (const [pgno, data] of pages) await enc.encodePage(pgno, data);
  const res = await enc.finish(post);
  const bytes = new Uint8Array(res.size);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.length;
  }
  assert.equal(o, res.size);
  return { bytes, res, chunks };
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

async function decode(bytes: Uint8Array) {
  const dec = await LtxDecoder.open(once(bytes));
  const frames: LtxFrame[] = [];
  for await (const f of dec.pages()) frames.push(f);
  const tail = await dec.finish();
  return { header: dec.header, frames, ...tail, encoding: dec.encoding };
}

function header(over: Partial<LtxHeader>): LtxHeader {
  return {
    flags: 2,
    pageSize: 4096,
    commit: 1,
    minTXID: 1,
    maxTXID: 1,
    timestamp: 1767607261292,
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
    ...over,
  };
}

function randomPage(n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(p.subarray(i, i + 65536));
  return p;
}

for (const d of manifest.databases) {
  for (const format of FORMATS) {
    Deno.test(`encoder: re-encode ${d.db} as a ${format} snapshot`, async () => {
      const db = await Deno.readFile(ROOT + d.db);
      const flags = manifest.files.find((f) => f.chain === d.chain)!.header.flags;
      const h = header({
        flags,
        pageSize: d.pageSize,
        commit: d.pageCount,
        maxTXID: parseTXID(d.afterTXID),
        nodeID: 0x5eedn,
      });
      const pages: [number, Uint8Array][] = [];
      for (let p = 1; p <= d.pageCount; p++) {
        pages.push([p, db.subarray((p - 1) * d.pageSize, p * d.pageSize)]);
      }
      const { bytes, res } = await encode(h, format, pages);
      assert.equal(res.pageCount, d.pageCount);
      const r = await decode(bytes);
      assert.deepEqual(r.header, h);
      assert.equal(r.encoding, format);
      assert.deepEqual(r.frames.map((f) => f.pgno), pages.map(([p]) => p));
      for (const f of r.frames) assert.deepEqual(f.data, pages[f.pgno - 1][1], `page ${f.pgno}`);
      assert.equal(r.trailer.fileChecksum, res.fileChecksum);
      assert.equal(r.size, bytes.length);
      if (flags === 0) assert.equal(formatHex64(r.trailer.postApplyChecksum), d.dbChecksum);
      else assert.equal(r.trailer.postApplyChecksum, 0n);
      for (const f of r.frames) {
        assert.equal(f.flags, format === "block" ? 1 : 0);
        if (format === "legacy") assert.deepEqual([f.lz4Frame!.flg, f.lz4Frame!.bd], [0x64, 0x40]);
      }
      // And it restores to the same database bytes.
      const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
      try {
        const file = `${dir}/snap.ltx`;
        await Deno.writeFile(file, bytes);
        await applyLtxChain([file], `${dir}/out.db`);
        assert.deepEqual(await Deno.readFile(`${dir}/out.db`), db);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}

for (const format of FORMATS) {
  Deno.test(`encoder: random and all-zero pages round-trip (${format})`, async () => {
    for (const pageSize of [512, 4096, 65536]) {
      const rnd = randomPage(pageSize);
      const zero = new Uint8Array(pageSize);
      const h = header({ flags: 0, pageSize, commit: 2 });
      const { bytes } = await encode(h, format, [[1, rnd], [2, zero]]);
      const r = await decode(bytes);
      assert.deepEqual(r.frames[0].data, rnd);
      assert.deepEqual(r.frames[1].data, zero);
      const c = new DatabaseChecksum(pageSize);
      c.add(1, rnd);
      c.add(2, zero);
      assert.equal(r.trailer.postApplyChecksum, c.value());
    }
  });
}

Deno.test("encoder: legacy frames follow spec §1.4.2 byte for byte", async () => {
  const rnd = randomPage(4096);
  const zero = new Uint8Array(4096);
  const { bytes } = await encode(header({ commit: 2 }), "legacy", [[1, zero], [2, rnd]]);
  const r = await decode(bytes);
  for (const f of r.frames) {
    const frame = bytes.subarray(f.offset + 6, f.offset + f.frameSize);
    assert.deepEqual([...bytes.subarray(f.offset, f.offset + 6)], [0, 0, 0, f.pgno, 0, 0]);
    const v = new DataView(frame.buffer, frame.byteOffset, frame.length);
    assert.equal(v.getUint32(0, true), LZ4_FRAME_MAGIC);
    assert.deepEqual([...frame.subarray(4, 7)], [0x64, 0x40, 0xa7]);
    const word = v.getUint32(7, true);
    const stored = (word & 0x80000000) !== 0;
    const size = word & 0x7fffffff;
    assert.equal(frame.length, 7 + 4 + size + 8);
    assert.equal(v.getUint32(11 + size, true), 0, "EndMark");
    const { data, info } = decodeLz4Frame(frame, 4096);
    assert.deepEqual(data, f.pgno === 1 ? zero : rnd);
    assert.equal(info.contentChecksum, true);
    assert.equal(stored, f.pgno === 2, "random page stored raw, zero page compressed");
    assert.equal(info.blocks[0].stored, stored ? "uncompressed" : "compressed");
    if (stored) assert.deepEqual(frame.subarray(11, 11 + 4096), rnd);
  }
});

Deno.test("encoder: output goes out in ~64 KiB chunks, and pages are not retained", async () => {
  const pages: [number, Uint8Array][] = [];
  const reused = new Uint8Array(4096);
  const chunks: Uint8Array[] = [];
  const enc = new LtxEncoder(header({ commit: 100 }), (c) => {
    chunks.push(c);
    return Promise.resolve();
  }, { format: "block" });
  const originals: Uint8Array[] = [];
  for (let p = 1; p <= 100; p++) {
    crypto.getRandomValues(reused);
    originals.push(reused.slice());
    await enc.encodePage(p, reused);
    reused.fill(0xee); // the caller reuses its buffer
  }
  const res = await enc.finish();
  assert.ok(chunks.length >= 6 && chunks.length <= 10, `${chunks.length} chunks`);
  for (const c of chunks.slice(0, -1)) {
    assert.ok(c.length > 60000 && c.length <= 65536, `${c.length}`);
  }
  const all = new Uint8Array(res.size);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  const r = await decode(all);
  r.frames.forEach((f, i) => assert.deepEqual(f.data, originals[i], `page ${f.pgno}`));
  void pages;
});

Deno.test("encoder and decoder: a snapshot past 1 GiB skips the lock page", async () => {
  const pageSize = 65536;
  const lock = lockPgno(pageSize);
  const commit = lock + 1;
  const page = new Uint8Array(pageSize);
  const chunks: Uint8Array[] = [];
  // NoChecksum keeps this to one CRC pass each way; DatabaseChecksum's skip is tested apart.
  const enc = new LtxEncoder(header({ pageSize, commit }), (c) => {
    chunks.push(c);
    return Promise.resolve();
  }, { format: "block" });
  for (let p = 1; p < lock; p++) await enc.encodePage(p, page);
  await assert.rejects(enc.encodePage(lock, page), (e: unknown) => {
    assert.ok(e instanceof LtxError && e.kind === "page-range");
    assert.match(e.message, /lock page/);
    return true;
  });
  await enc.encodePage(lock + 1, page);
  const res = await enc.finish();
  const dec = await LtxDecoder.open((async function* () {
    yield* chunks;
  })());
  let n = 0;
  let prev = 0;
  for await (const f of dec.pages()) {
    assert.equal(f.pgno, prev + 1 === lock ? lock + 1 : prev + 1);
    prev = f.pgno;
    n++;
  }
  const { index } = await dec.finish();
  assert.equal(n, commit - 1);
  assert.equal(res.pageCount, commit - 1);
  assert.equal(index.at(-1)!.pgno, commit);
});

async function rejectsKind(p: Promise<unknown>, kind: LtxErrorKind, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LtxError, String(e));
    assert.equal(e.kind, kind, e.message);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("encoder: rejects the lock page in an incremental", async () => {
  const h = header({ pageSize: 512, minTXID: 2, maxTXID: 2, commit: 3_000_000 });
  const enc = new LtxEncoder(h, async () => {});
  await rejectsKind(enc.encodePage(2097153, new Uint8Array(512)), "page-range", /lock page/);
});

Deno.test("encoder: rejects out-of-order and duplicate pages", async () => {
  const enc = new LtxEncoder(header({ minTXID: 2, maxTXID: 2, commit: 10 }), async () => {});
  await enc.encodePage(5, new Uint8Array(4096));
  await rejectsKind(enc.encodePage(3, new Uint8Array(4096)), "page-order", /page 3 after page 5/);
  await rejectsKind(enc.encodePage(5, new Uint8Array(4096)), "page-order", /page 5 after page 5/);
  await enc.encodePage(6, new Uint8Array(4096));
});

Deno.test("encoder: rejects pgno beyond commit, page 0 and wrong page sizes", async () => {
  const enc = new LtxEncoder(header({ minTXID: 2, maxTXID: 2, commit: 10 }), async () => {});
  await rejectsKind(enc.encodePage(11, new Uint8Array(4096)), "page-range", /beyond commit 10/);
  await rejectsKind(enc.encodePage(0, new Uint8Array(4096)), "page-header", /page number 0/);
  await rejectsKind(enc.encodePage(1, new Uint8Array(4095)), "page-data", /4095 bytes/);
  await rejectsKind(enc.encodePage(1, new Uint8Array(8192)), "page-data", /8192 bytes/);
});

Deno.test("encoder: snapshots must be contiguous from page 1 to commit", async () => {
  const gap = new LtxEncoder(header({ commit: 5 }), async () => {});
  await gap.encodePage(1, new Uint8Array(4096));
  await rejectsKind(gap.encodePage(3, new Uint8Array(4096)), "snapshot-incomplete", /page 2/);
  const late = new LtxEncoder(header({ commit: 5 }), async () => {});
  await rejectsKind(late.encodePage(2, new Uint8Array(4096)), "snapshot-incomplete", /page 1/);
  const short = new LtxEncoder(header({ commit: 5 }), async () => {});
  await short.encodePage(1, new Uint8Array(4096));
  await rejectsKind(short.finish(), "snapshot-incomplete", /commit is 5/);
});

Deno.test("encoder: header and trailer checksum rules", async () => {
  assert.throws(
    () => new LtxEncoder(header({ pageSize: 1000 }), async () => {}),
    (e: unknown) => e instanceof LtxError && e.kind === "header",
  );
  // NoChecksum files cannot carry a post-apply checksum.
  const nochk = new LtxEncoder(header({}), async () => {});
  await nochk.encodePage(1, new Uint8Array(4096));
  await rejectsKind(nochk.finish(CHECKSUM_FLAG | 1n), "header", /NoChecksum/);
  // Tracked incrementals need one, with bit 63 set.
  const pre = CHECKSUM_FLAG | 7n;
  const h = header({ flags: 0, minTXID: 2, maxTXID: 2, commit: 3, preApplyChecksum: pre });
  const none = new LtxEncoder(h, async () => {});
  await rejectsKind(none.finish(), "checksum", /required/);
  const noFlag = new LtxEncoder(h, async () => {});
  await rejectsKind(noFlag.finish(5n), "checksum", /bit 63/);
  const ok = new LtxEncoder(h, async () => {});
  const res = await ok.finish(CHECKSUM_FLAG | 9n);
  assert.equal(res.pageCount, 0);
  // A tracked snapshot computes its own; a wrong one given is refused.
  const snap = new LtxEncoder(header({ flags: 0 }), async () => {});
  await snap.encodePage(1, new Uint8Array(4096));
  await rejectsKind(snap.finish(CHECKSUM_FLAG | 1n), "checksum", /snapshot database checksum/);
});

Deno.test("encoder: an incremental with zero pages (shrink only) decodes", async () => {
  const h = header({ minTXID: 3, maxTXID: 3, commit: 7 });
  const { bytes, res } = await encode(h, "legacy", []);
  assert.equal(res.pageCount, 0);
  const r = await decode(bytes);
  assert.equal(r.frames.length, 0);
  assert.deepEqual(r.index, []);
  assert.equal(r.encoding, "none");
  assert.equal(bytes.length, 100 + 6 + 1 + 8 + 16);
});
