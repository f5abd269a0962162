/**
 * compactLtx (spec §1.12): each rule checked by comparing the database that applying the
 * compacted file gives with the one the input chain gives, on golden vectors and on files our
 * encoder writes. Run as a script (`deno run ... compactor_test.ts --memory-probe DIR`) this file
 * is the child process of the memory test.
 */
import assert from "node:assert/strict";
import { IntegrityError, LtxError } from "../../src/errors.ts";
import { applyLtxChain } from "../../src/ltx/apply.ts";
import {
  type CompactInput,
  compactLtx,
  type CompactOptions,
  type CompactResult,
  fileInput,
} from "../../src/ltx/compactor.ts";
import { LtxDecoder, readLtxFile, verifyLtx } from "../../src/ltx/decoder.ts";
import { LtxEncoder, type LtxFormat } from "../../src/ltx/encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../../src/ltx/header.ts";
import { rejects, VECTORS } from "../helpers/vectors.ts";

const LTX = `${VECTORS}/ltx`;
const hex = (n: number) => n.toString(16).padStart(16, "0");
const vec = (chain: string, min: number, max = min) =>
  `${LTX}/${chain}/${hex(min)}-${hex(max)}.ltx`;
const vecDb = (chain: string, txid: number) => `${LTX}/${chain}/db-txid-${hex(txid)}.db`;

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-compact-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function fileSink(
  path: string,
): Promise<{ write: (c: Uint8Array) => Promise<void>; close(): void }> {
  const f = await Deno.open(path, { write: true, createNew: true });
  return {
    write: async (c) => {
      let o = 0;
      while (o < c.length) o += await f.write(c.subarray(o));
    },
    close: () => f.close(),
  };
}

/** Compact `paths` into `out`, then check the result with the full decoder. */
async function compactFiles(
  paths: string[],
  out: string,
  opts?: CompactOptions,
): Promise<CompactResult> {
  const sink = await fileSink(out);
  let r: CompactResult;
  try {
    r = await compactLtx(paths.map(fileInput), sink.write, opts);
  } finally {
    sink.close();
  }
  const sum = await verifyLtx(readLtxFile(out), { name: out });
  assert.deepEqual(sum.header, r.header);
  assert.equal(sum.size, r.size);
  assert.equal(sum.size, (await Deno.stat(out)).size);
  assert.equal(sum.pages.length, r.pages);
  return r;
}

/** The database bytes that applying `files` in order gives. */
async function applied(dir: string, files: string[]): Promise<Uint8Array> {
  const out = `${dir}/db-${crypto.randomUUID()}`;
  await applyLtxChain(files, out);
  try {
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(out);
  }
}

async function pagesOf(path: string): Promise<Map<number, Uint8Array>> {
  const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
  const m = new Map<number, Uint8Array>();
  for await (const p of dec.pages()) m.set(p.pgno, p.data);
  await dec.finish();
  return m;
}

function header(over: Partial<LtxHeader>): LtxHeader {
  return {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize: 512,
    commit: 1,
    minTXID: 1,
    maxTXID: 1,
    timestamp: 1_700_000_000_000,
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
    ...over,
  };
}

/** A page whose every byte tells which file (`tag`) and page it came from. */
function page(tag: number, pgno: number, size = 512): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (tag * 31 + pgno * 7 + i) & 0xff;
  b[0] = tag;
  return b;
}

interface Spec {
  min: number;
  max?: number;
  commit: number;
  /** Pages written, each as page(tag, pgno). */
  pages: number[];
  tag?: number;
  pageSize?: number;
  timestamp?: number;
  over?: Partial<LtxHeader>;
}

/** Write one NoChecksum LTX file described by `s` into `dir`; returns its path. */
async function writeSpec(dir: string, s: Spec, format: LtxFormat = "block"): Promise<string> {
  const max = s.max ?? s.min;
  const ps = s.pageSize ?? 512;
  const path = `${dir}/${hex(s.min)}-${hex(max)}.ltx`;
  const sink = await fileSink(path);
  try {
    const h = header({
      pageSize: ps,
      commit: s.commit,
      minTXID: s.min,
      maxTXID: max,
      timestamp: s.timestamp ?? 1_700_000_000_000 + max,
      ...s.over,
    });
    const enc = new LtxEncoder(h, sink.write, { format });
    for (const p of s.pages) await enc.encodePage(p, page(s.tag ?? max, p, ps));
    await enc.finish();
  } finally {
    sink.close();
  }
  return path;
}

const upTo = (n: number, from = 1) => Array.from({ length: n - from + 1 }, (_, i) => from + i);

Deno.test("compact: a snapshot and its incrementals become one snapshot of the final database", async () => {
  await withDir(async (dir) => {
    const files = [1, 2, 3, 4].map((n) => vec("c4096-chain", n));
    const out = `${dir}/out.ltx`;
    const r = await compactFiles(files, out);
    const last = await verifyLtx(readLtxFile(files[3]));
    assert.equal(r.header.minTXID, 1);
    assert.equal(r.header.maxTXID, 4);
    assert.equal(r.header.commit, 14, "commit is the last input's (the chain shrinks to 14)");
    assert.equal(r.header.flags, 0, "the inputs track checksums, so does the output");
    assert.deepEqual((await verifyLtx(readLtxFile(out))).pages, upTo(14));
    assert.equal(
      (await verifyLtx(readLtxFile(out))).trailer.postApplyChecksum,
      last.trailer.postApplyChecksum,
    );
    assert.deepEqual(await applied(dir, [out]), await Deno.readFile(vecDb("c4096-chain", 4)));
  });
});

Deno.test("compact: incrementals merge into one incremental with the first's pre-apply checksum", async () => {
  await withDir(async (dir) => {
    const files = [2, 3, 4].map((n) => vec("c4096-chain", n));
    const out = `${dir}/out.ltx`;
    const r = await compactFiles(files, out);
    const first = await verifyLtx(readLtxFile(files[0]));
    assert.equal(r.header.minTXID, 2);
    assert.equal(r.header.maxTXID, 4);
    assert.equal(r.header.preApplyChecksum, first.header.preApplyChecksum);
    // applyLtxChain checks pre- and post-apply checksums against the database it builds.
    const base = vec("c4096-chain", 1);
    assert.deepEqual(await applied(dir, [base, out]), await applied(dir, [base, ...files]));
    assert.deepEqual(await applied(dir, [base, out]), await Deno.readFile(vecDb("c4096-chain", 4)));
  });
});

Deno.test("compact: overlapping TXID ranges merge, the newer file's pages winning", async () => {
  await withDir(async (dir) => {
    // 2-3 overlaps 2: allowed (it starts within the previous range and ends after it).
    const files = [vec("c4096-chain", 1), vec("c4096-chain", 2), vec("c4096-chain", 2, 3)];
    files.push(vec("c4096-chain", 4));
    const out = `${dir}/out.ltx`;
    const r = await compactFiles(files, out);
    assert.equal(r.header.maxTXID, 4);
    assert.deepEqual(await applied(dir, [out]), await Deno.readFile(vecDb("c4096-chain", 4)));

    // Synthetic overlap where each file rewrites page 2: sequential apply and the merge agree.
    const a = await writeSpec(dir, { min: 1, commit: 4, pages: upTo(4) });
    const b = await writeSpec(dir, { min: 2, max: 5, commit: 4, pages: [2, 3] });
    const c = await writeSpec(dir, { min: 4, max: 7, commit: 4, pages: [2] });
    const out2 = `${dir}/out2.ltx`;
    await compactFiles([a, b, c], out2);
    assert.deepEqual(await applied(dir, [out2]), await applied(dir, [a, b, c]));
    assert.equal((await pagesOf(out2)).get(2)![0], 7, "page 2 comes from 0004-0007");
  });
});

Deno.test("compact: a page written by several inputs is taken from the newest", async () => {
  await withDir(async (dir) => {
    const base = await writeSpec(dir, { min: 1, commit: 5, pages: upTo(5) });
    const incs = [];
    for (let t = 2; t <= 6; t++) {
      incs.push(await writeSpec(dir, { min: t, commit: 5, pages: t % 2 ? [3] : [1, 3, 5] }));
    }
    const out = `${dir}/out.ltx`;
    const r = await compactFiles(incs, out);
    assert.equal(r.pages, 3);
    const got = await pagesOf(out);
    assert.deepEqual([...got.keys()], [1, 3, 5]);
    assert.deepEqual(got.get(3), page(6, 3));
    assert.deepEqual(got.get(1), page(6, 1));
    assert.deepEqual(got.get(5), page(6, 5));
    assert.deepEqual(await applied(dir, [base, out]), await applied(dir, [base, ...incs]));
    const snap = `${dir}/snap.ltx`;
    await compactFiles([base, ...incs], snap);
    assert.deepEqual(await applied(dir, [snap]), await applied(dir, [base, ...incs]));
  });
});

Deno.test("compact: pages above the final commit are dropped (the database shrank)", async () => {
  await withDir(async (dir) => {
    const base = await writeSpec(dir, { min: 1, commit: 10, pages: upTo(10) });
    const grow = await writeSpec(dir, { min: 2, commit: 12, pages: [2, 9, 11, 12] });
    const shrink = await writeSpec(dir, { min: 3, commit: 6, pages: [1] });
    const out = `${dir}/out.ltx`;
    const r = await compactFiles([grow, shrink], out);
    assert.equal(r.header.commit, 6);
    assert.deepEqual([...(await pagesOf(out)).keys()], [1, 2]);
    assert.deepEqual(await applied(dir, [base, out]), await applied(dir, [base, grow, shrink]));
    const snap = `${dir}/snap.ltx`;
    const s = await compactFiles([base, grow, shrink], snap);
    assert.equal(s.pages, 6);
    assert.deepEqual(await applied(dir, [snap]), await applied(dir, [base, grow, shrink]));
    assert.equal((await applied(dir, [snap])).length, 6 * 512);
  });
});

Deno.test("compact: a page cut by a shrink and rewritten by a regrowth takes the new content", async () => {
  await withDir(async (dir) => {
    const base = await writeSpec(dir, { min: 1, commit: 10, pages: upTo(10) });
    const shrink = await writeSpec(dir, { min: 2, commit: 4, pages: [] });
    const regrow = await writeSpec(dir, { min: 3, commit: 10, pages: upTo(10, 5) });
    const chain = [base, shrink, regrow];
    const snap = `${dir}/snap.ltx`;
    await compactFiles(chain, snap);
    assert.deepEqual(await applied(dir, [snap]), await applied(dir, chain));
    assert.deepEqual((await pagesOf(snap)).get(7), page(3, 7));
  });
});

Deno.test("compact: a page cut by a shrink and not rewritten after regrowth is zeros, not stale", async () => {
  await withDir(async (dir) => {
    const base = await writeSpec(dir, { min: 1, commit: 10, pages: upTo(10) });
    const shrink = await writeSpec(dir, { min: 2, commit: 4, pages: [2] });
    // Regrows to 10 but writes only 5, 8, 9, 10: applying the chain leaves 6 and 7 zero.
    const regrow = await writeSpec(dir, { min: 3, commit: 10, pages: [5, 8, 9, 10] });
    const chain = [base, shrink, regrow];
    const want = await applied(dir, chain);
    assert.deepEqual(want.subarray(5 * 512, 7 * 512), new Uint8Array(2 * 512));

    const snap = `${dir}/snap.ltx`;
    await compactFiles(chain, snap);
    assert.deepEqual(await applied(dir, [snap]), want);

    // As an incremental over the base: 6 and 7 are in no input, yet must overwrite the base's.
    const inc = `${dir}/inc.ltx`;
    await compactFiles([shrink, regrow], inc);
    assert.deepEqual([...(await pagesOf(inc)).keys()], [2, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(await applied(dir, [base, inc]), want);
  });
});

Deno.test("compact: zero pages for a regrown range skip the lock page", async () => {
  await withDir(async (dir) => {
    const ps = 65536;
    const lock = lockPgno(ps); // 16385
    // Incrementals only: a snapshot reaching the lock page would be a 1 GiB file.
    const a = await writeSpec(dir, { min: 2, commit: lock - 2, pages: [1], pageSize: ps });
    const b = await writeSpec(dir, { min: 3, commit: lock + 3, pages: [lock + 3], pageSize: ps });
    const out = `${dir}/out.ltx`;
    await compactFiles([a, b], out);
    // Pages lock-1 .. lock+2 were grown without being written: zeros, except the lock page.
    assert.deepEqual(
      [...(await pagesOf(out)).keys()],
      [1, lock - 1, lock + 1, lock + 2, lock + 3],
    );
    const c = await writeSpec(dir, {
      min: 4,
      commit: lock + 3,
      pages: [lock - 1, lock + 1],
      pageSize: ps,
    });
    const out2 = `${dir}/out2.ltx`;
    await compactFiles([a, b, c], out2);
    const got = await pagesOf(out2);
    assert.ok(!got.has(lock));
    assert.deepEqual(got.get(lock + 1), page(4, lock + 1, ps));
  });
});

Deno.test("compact: an input that stores the lock page is rejected, naming it", async () => {
  await withDir(async (dir) => {
    const ps = 65536;
    const lock = lockPgno(ps);
    const good = await writeSpec(dir, {
      min: 2,
      commit: lock + 1,
      pages: [lock - 1],
      pageSize: ps,
    });
    const bad = await writeSpec(dir, { min: 3, commit: lock + 1, pages: [lock + 1], pageSize: ps });
    // The encoder refuses the lock page, so patch the stored pgno (the frame right after the header).
    const bytes = await Deno.readFile(bad);
    new DataView(bytes.buffer).setUint32(100, lock);
    await Deno.writeFile(bad, bytes);
    const e = await rejects(
      () => compactLtx([fileInput(good), fileInput(bad)], async () => {}),
      LtxError,
      bad,
    );
    assert.equal(e.kind, "page-range");
    assert.match(e.message, /lock page/);
  });
});

Deno.test("compact: a snapshot output needs every page up to commit", async () => {
  await withDir(async (dir) => {
    const base = await writeSpec(dir, { min: 1, commit: 3, pages: upTo(3) });
    const grow = await writeSpec(dir, { min: 2, commit: 5, pages: [5] }); // page 4 never written
    const e = await rejects(
      () => compactLtx([fileInput(base), fileInput(grow)], async () => {}),
      IntegrityError,
      "page 4",
    );
    assert.match(e.message, /snapshot/);
    // The same files merge fine as an incremental when the snapshot is not among them.
    await compactFiles([grow], `${dir}/inc.ltx`);
  });
});

Deno.test("compact: a TXID gap between inputs is an error naming both files", async () => {
  await withDir(async (dir) => {
    const a = await writeSpec(dir, { min: 1, max: 2, commit: 2, pages: [1, 2] });
    const b = await writeSpec(dir, { min: 4, commit: 2, pages: [1] });
    const e = await rejects(
      () => compactLtx([a, b].map(fileInput), async () => {}),
      IntegrityError,
    );
    assert.ok(e.message.includes(a) && e.message.includes(b), e.message);
    assert.match(e.message, /0000000000000003-0000000000000003 are missing/);
    // An input that does not end after the previous one (misordered or contained) fails too.
    const c = await writeSpec(dir, { min: 2, max: 3, commit: 2, pages: [1] });
    const d = await writeSpec(dir, { min: 3, commit: 2, pages: [2] });
    const e2 = await rejects(
      () => compactLtx([c, d].map(fileInput), async () => {}),
      IntegrityError,
    );
    assert.ok(e2.message.includes(c) && e2.message.includes(d), e2.message);
  });
});

Deno.test("compact: inputs with different page sizes are an error naming both files", async () => {
  await withDir(async (dir) => {
    const a = await writeSpec(dir, { min: 1, commit: 2, pages: [1, 2] });
    const b = await writeSpec(dir, { min: 2, commit: 2, pages: [1], pageSize: 1024 });
    const e = await rejects(
      () => compactLtx([a, b].map(fileInput), async () => {}),
      IntegrityError,
      "page sizes 512 and 1024",
    );
    assert.ok(e.message.includes(a) && e.message.includes(b), e.message);
  });
});

Deno.test("compact: inputs that disagree on tracking checksums are an error", async () => {
  await withDir(async (dir) => {
    const tracked = vec("c4096-chain", 1);
    const b = await writeSpec(dir, { min: 2, commit: 2, pages: [1], pageSize: 4096 });
    await rejects(
      () => compactLtx([tracked, b].map(fileInput), async () => {}),
      IntegrityError,
      "database checksums",
    );
  });
});

Deno.test("compact: a corrupt input fails the compaction, naming it, even when its pages lose", async () => {
  await withDir(async (dir) => {
    const a = await writeSpec(dir, { min: 1, commit: 4, pages: upTo(4) });
    const b = await writeSpec(dir, { min: 2, commit: 4, pages: [2, 3] });
    const c = await writeSpec(dir, { min: 3, commit: 4, pages: [1, 2, 3, 4] });
    // Every page of b loses to c. Flip one byte inside b's first page payload.
    const bytes = await Deno.readFile(b);
    bytes[100 + 6 + 4 + 20] ^= 0x01;
    await Deno.writeFile(b, bytes);
    let wrote = 0;
    const e = await rejects(
      () =>
        compactLtx([a, b, c].map(fileInput), (ch) => {
          wrote += ch.length;
          return Promise.resolve();
        }),
      LtxError,
      b,
    );
    assert.ok(["checksum", "page-data"].includes(e.kind), e.kind);
    assert.ok(wrote < 100 + 4 * 512, "no complete file reached the sink");

    // A damaged trailer (file checksum) is caught too: the input is read to its end.
    const d = await writeSpec(dir, { min: 4, commit: 4, pages: [1] });
    const db = await Deno.readFile(d);
    db[db.length - 1] ^= 0x01;
    await Deno.writeFile(d, db);
    const e2 = await rejects(
      () => compactLtx([c, d].map(fileInput), async () => {}),
      LtxError,
      d,
    );
    assert.equal(e2.kind, "checksum");
  });
});

Deno.test("compact: timestamp is the newest input's by default, or earliest, or given", async () => {
  await withDir(async (dir) => {
    const a = await writeSpec(dir, { min: 1, commit: 1, pages: [1], timestamp: 5000 });
    const b = await writeSpec(dir, { min: 2, commit: 1, pages: [1], timestamp: 7000 });
    const c = await writeSpec(dir, { min: 3, commit: 1, pages: [1], timestamp: 6000 });
    const files = [a, b, c];
    assert.equal((await compactFiles(files, `${dir}/1.ltx`)).header.timestamp, 6000);
    const early = await compactFiles(files, `${dir}/2.ltx`, { timestamp: "earliest" });
    assert.equal(early.header.timestamp, 5000);
    const given = await compactFiles(files, `${dir}/3.ltx`, { timestamp: 1234 });
    assert.equal(given.header.timestamp, 1234);
  });
});

Deno.test("compact: WAL fields and node ID are zero, flags as the inputs (Litestream's chain)", async () => {
  await withDir(async (dir) => {
    const files = [1, 2, 3].map((n) => vec("n512-hundreds", n));
    const src = await verifyLtx(readLtxFile(files[2]));
    assert.ok(src.header.walOffset > 0 && src.header.walSalt1 !== 0, "the vector has WAL fields");
    const out = `${dir}/out.ltx`;
    const r = await compactFiles(files, out, { format: "block" });
    assert.equal(r.header.flags, HEADER_FLAG_NO_CHECKSUM);
    assert.deepEqual(
      [r.header.walOffset, r.header.walSize, r.header.walSalt1, r.header.walSalt2, r.header.nodeID],
      [0, 0, 0, 0, 0n],
    );
    assert.equal(r.header.commit, 285);
    assert.deepEqual(await applied(dir, [out]), await Deno.readFile(vecDb("n512-hundreds", 3)));
    assert.equal((await verifyLtx(readLtxFile(out))).trailer.postApplyChecksum, 0n);
  });
});

Deno.test("compact: legacy and block inputs mix; the output format is the one asked for", async () => {
  await withDir(async (dir) => {
    const files = [1, 2, 3].map((n) => vec("legacy4096", n));
    const want = await Deno.readFile(vecDb("legacy4096", 3));
    for (const format of ["legacy", "block"] as const) {
      const out = `${dir}/${format}.ltx`;
      await compactFiles(files, out, { format });
      assert.equal((await verifyLtx(readLtxFile(out))).encoding, format);
      assert.deepEqual(await applied(dir, [out]), want);
    }
  });
});

Deno.test("compact: one input comes out as the same database", async () => {
  await withDir(async (dir) => {
    const f = vec("p65536", 1);
    const out = `${dir}/out.ltx`;
    await compactFiles([f], out);
    assert.deepEqual(await applied(dir, [out]), await Deno.readFile(vecDb("p65536", 1)));
    await rejects(() => compactLtx([], async () => {}), Error, "at least one input");
  });
});

// ---- memory: a child process with --expose-gc measures what the merge keeps alive ----

const PROBE_PAGE = 4096;
const PROBE_PAGES = 10240; // 40 MiB of pages per input
const PROBE_INPUTS = 8;
const MiB = 1 << 20;

interface ProbeReport {
  inputBytes: number;
  /** heapUsed + external before the merge, after GC. */
  liveBase: number;
  bytesRead: number;
  outputBytes: number;
  pages: number;
  liveGrowth: number;
  rawGrowth: number;
  rssGrowth: number;
  ms: number;
}

/** Child side: write the inputs (random pages, incompressible), then compact with sampling. */
async function memoryProbe(dir: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --v8-flags=--expose-gc");
  const buf = new Uint8Array(PROBE_PAGE);
  const words = new Uint32Array(buf.buffer);
  let x = 0x9e3779b9;
  const paths: string[] = [];
  let inputBytes = 0;
  for (let k = 0; k < PROBE_INPUTS; k++) {
    const path = `${dir}/${hex(k + 1)}-${hex(k + 1)}.ltx`;
    const sink = await fileSink(path);
    const enc = new LtxEncoder(
      header({ pageSize: PROBE_PAGE, commit: PROBE_PAGES, minTXID: k + 1, maxTXID: k + 1 }),
      sink.write,
      { format: "block" },
    );
    for (let p = 1; p <= PROBE_PAGES; p++) {
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x;
      }
      await enc.encodePage(p, buf);
    }
    inputBytes += (await enc.finish()).size;
    sink.close();
    paths.push(path);
  }
  let bytesRead = 0;
  let n = 0;
  const live = () => {
    const m = Deno.memoryUsage();
    return { live: m.heapUsed + m.external, rss: m.rss };
  };
  // Settle first: freed backing stores of the writing phase are released after a collection.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  const base = live();
  let peakLive = -Infinity, peakRaw = -Infinity, peakRss = -Infinity;
  const sample = () => {
    const raw = live();
    peakRaw = Math.max(peakRaw, raw.live - base.live);
    peakRss = Math.max(peakRss, raw.rss - base.rss);
    // A full collection on every 4th sample: what is still reachable then is what the merge holds.
    if (n++ % 4 !== 0) return;
    gc();
    peakLive = Math.max(peakLive, live().live - base.live);
  };
  const inputs: CompactInput[] = paths.map((path) => ({
    name: path,
    open: () =>
      Promise.resolve((async function* () {
        for await (const c of readLtxFile(path)) {
          bytesRead += c.length;
          sample();
          yield c;
        }
      })()),
  }));
  let outputBytes = 0;
  const t0 = performance.now();
  const r = await compactLtx(inputs, (c) => {
    outputBytes += c.length;
    sample();
    return Promise.resolve();
  });
  const report: ProbeReport = {
    inputBytes,
    liveBase: base.live,
    bytesRead,
    outputBytes,
    pages: r.pages,
    liveGrowth: peakLive,
    rawGrowth: peakRaw,
    rssGrowth: peakRss,
    ms: Math.round(performance.now() - t0),
  };
  console.log(JSON.stringify(report));
}

Deno.test("compact: memory stays bounded by the number of inputs, not their size", async () => {
  await withDir(async (dir) => {
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--config",
        config,
        "--v8-flags=--expose-gc",
        new URL(import.meta.url).pathname,
        "--memory-probe",
        dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let out: Deno.CommandOutput;
    try {
      out = await child.output();
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      throw e;
    }
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    const r: ProbeReport = JSON.parse(lines[lines.length - 1]);
    console.log(
      `compacted ${(r.inputBytes / MiB).toFixed(0)} MiB in ${r.ms} ms: heap+external ` +
        `${(r.liveBase / MiB).toFixed(1)} MiB before, live growth ` +
        `${(r.liveGrowth / MiB).toFixed(1)} MiB, without GC ${(r.rawGrowth / MiB).toFixed(1)} ` +
        `MiB, rss ${(r.rssGrowth / MiB).toFixed(1)} MiB`,
    );
    assert.ok(r.inputBytes >= PROBE_INPUTS * PROBE_PAGES * PROBE_PAGE, "inputs are ~40 MiB each");
    assert.equal(r.bytesRead, r.inputBytes, "every input byte was streamed through");
    assert.equal(r.pages, PROBE_PAGES);
    assert.ok(r.outputBytes >= PROBE_PAGES * PROBE_PAGE);
    const bound = r.inputBytes / 10;
    assert.ok(r.liveGrowth < bound, `live growth ${r.liveGrowth} >= ${bound}`);
    assert.ok(r.rssGrowth < bound, `rss growth ${r.rssGrowth} >= ${bound}`);
  });
});

if (import.meta.main) {
  const i = Deno.args.indexOf("--memory-probe");
  if (i >= 0) await memoryProbe(Deno.args[i + 1]);
}
