/** Golden vectors from the reference implementation: decode every file, apply every chain. */
import assert from "node:assert/strict";
import { applyLtxChain } from "../../src/ltx/apply.ts";
import { DatabaseChecksum, pageChecksum } from "../../src/ltx/checksum.ts";
import { LtxDecoder, type LtxFrame, readLtxFile } from "../../src/ltx/decoder.ts";
import { formatHex64 } from "../../src/ltx/names.ts";

const ROOT = new URL("../fixtures/vectors/ltx/", import.meta.url).pathname;

interface FrameEntry {
  pgno: number;
  pageHeaderFlags: number;
  offset: number;
  frameSize: number;
  compressedSize: number;
  pageSha256: string;
  pageChecksum: string;
  lz4Frame?: {
    flg: string;
    bd: string;
    contentChecksum: boolean;
    blockChecksum: boolean;
    contentSize: number | null;
    blocks: { stored: string; size: number }[];
  };
}

interface FileEntry {
  file: string;
  size: number;
  sha256: string;
  kind: "snapshot" | "incremental";
  encoding: "block" | "legacy-frame";
  header: Record<string, string | number>;
  pages: number[];
  pageCount: number;
  frames: FrameEntry[];
  pageBlockEnd: number;
  pageIndex: { offset: number; length: number; entries: number };
  trailerOffset: number;
  postApplyChecksum: string;
  fileChecksum: string;
  zeroPages: number[];
  incompressiblePages: number[];
  applyAfter: string[];
  result: { db: string; sha256: string; size: number; pageCount: number; dbChecksum: string };
}

interface Manifest {
  files: FileEntry[];
  chains: {
    name: string;
    pageSize: number;
    files: string[];
    finalDb: string;
    finalSha256: string;
  }[];
  databases: {
    db: string;
    sha256: string;
    pageSize: number;
    pageCount: number;
    dbChecksum: string;
  }[];
}

const manifest: Manifest = JSON.parse(await Deno.readTextFile(ROOT + "manifest.json"));

async function sha256(b: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  return Array.from(d).map((x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("vectors: manifest covers the documented chains", () => {
  assert.ok(manifest.files.length >= 15);
  const names = manifest.chains.map((c) => c.name);
  for (
    const n of [
      "c4096-chain",
      "c4096-chain+compacted",
      "n512-hundreds",
      "p65536",
      "one-page",
      "legacy4096",
      "legacy65536",
    ]
  ) assert.ok(names.includes(n), n);
});

for (const f of manifest.files) {
  Deno.test(`vectors: decode ${f.file}`, async () => {
    const bytes = await Deno.readFile(ROOT + f.file);
    assert.equal(bytes.length, f.size);
    assert.equal(await sha256(bytes), f.sha256, "fixture is intact");

    const dec = await LtxDecoder.open(readLtxFile(ROOT + f.file), { name: f.file });
    const h = dec.header;
    const mh = f.header;
    assert.equal(h.flags, mh.flags);
    assert.equal(h.pageSize, mh.pageSize);
    assert.equal(h.commit, mh.commit);
    assert.equal(formatHex64(h.minTXID), mh.minTXID);
    assert.equal(formatHex64(h.maxTXID), mh.maxTXID);
    assert.equal(formatHex64(h.timestamp), mh.timestamp);
    assert.equal(h.timestamp, mh.timestampMs);
    assert.equal(new Date(h.timestamp).toISOString(), mh.timestampISO);
    assert.equal(formatHex64(h.preApplyChecksum), mh.preApplyChecksum);
    assert.equal(formatHex64(h.walOffset), mh.walOffset);
    assert.equal(formatHex64(h.walSize), mh.walSize);
    assert.equal(h.walSalt1.toString(16).padStart(8, "0"), mh.walSalt1);
    assert.equal(h.walSalt2.toString(16).padStart(8, "0"), mh.walSalt2);
    assert.equal(formatHex64(h.nodeID), mh.nodeID);
    assert.equal(h.minTXID === 1 ? "snapshot" : "incremental", f.kind);

    const frames: LtxFrame[] = [];
    for await (const p of dec.pages()) frames.push(p);
    assert.deepEqual(frames.map((p) => p.pgno), f.pages);
    assert.equal(frames.length, f.pageCount);
    for (let i = 0; i < frames.length; i++) {
      const got = frames[i];
      const want = f.frames[i];
      const at = `${f.file} frame ${i}`;
      assert.equal(got.pgno, want.pgno, at);
      assert.equal(got.flags, want.pageHeaderFlags, at);
      assert.equal(got.offset, want.offset, at);
      assert.equal(got.frameSize, want.frameSize, at);
      assert.equal(got.compressedSize, want.compressedSize, at);
      assert.equal(got.data.length, h.pageSize, at);
      assert.equal(await sha256(got.data), want.pageSha256, at);
      assert.equal(formatHex64(pageChecksum(got.pgno, got.data)), want.pageChecksum, at);
      if (want.lz4Frame) {
        const l = got.lz4Frame!;
        assert.equal("0x" + l.flg.toString(16), want.lz4Frame.flg, at);
        assert.equal("0x" + l.bd.toString(16), want.lz4Frame.bd, at);
        assert.equal(l.contentChecksum, want.lz4Frame.contentChecksum, at);
        assert.equal(l.blockChecksum, want.lz4Frame.blockChecksum, at);
        assert.equal(l.contentSize, want.lz4Frame.contentSize, at);
        assert.deepEqual(l.blocks, want.lz4Frame.blocks, at);
      } else {
        assert.equal(got.lz4Frame, undefined, at);
      }
      const zero = got.data.every((x) => x === 0);
      assert.equal(zero, f.zeroPages.includes(got.pgno), `${at} zero page`);
      const incompressible = got.lz4Frame
        ? got.lz4Frame.blocks.some((b) => b.stored === "uncompressed")
        : got.compressedSize >= h.pageSize;
      assert.equal(
        incompressible,
        f.incompressiblePages.includes(got.pgno),
        `${at} incompressible`,
      );
    }
    const last = frames.at(-1);
    assert.equal(last ? last.offset + last.frameSize : 100, f.pageBlockEnd);

    const { trailer, index, size } = await dec.finish();
    assert.equal(size, f.size);
    assert.equal(formatHex64(trailer.postApplyChecksum), f.postApplyChecksum);
    assert.equal(formatHex64(trailer.fileChecksum), f.fileChecksum);
    assert.equal(index.length, f.pageIndex.entries);
    assert.deepEqual(
      index,
      f.frames.map((fr) => ({ pgno: fr.pgno, offset: fr.offset, size: fr.frameSize })),
    );
    assert.equal(f.pageIndex.offset, f.pageBlockEnd + 6);
    assert.equal(f.trailerOffset + 16, f.size);
    assert.equal(dec.encoding, f.encoding === "block" ? "block" : "legacy");
  });
}

Deno.test("vectors: database checksums of every source database", async () => {
  for (const d of manifest.databases) {
    const db = await Deno.readFile(ROOT + d.db);
    assert.equal(await sha256(db), d.sha256, d.db);
    assert.equal(db.length, d.pageCount * d.pageSize);
    const c = new DatabaseChecksum(d.pageSize);
    for (let p = 1; p <= d.pageCount; p++) {
      c.add(p, db.subarray((p - 1) * d.pageSize, p * d.pageSize));
    }
    assert.equal(formatHex64(c.value()), d.dbChecksum, d.db);
  }
});

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const chain of manifest.chains) {
  Deno.test(`vectors: apply chain ${chain.name} byte for byte`, async () => {
    await withTempDir(async (dir) => {
      const out = `${dir}/out.db`;
      const r = await applyLtxChain(chain.files.map((p) => ROOT + p), out);
      const db = await Deno.readFile(out);
      assert.equal(await sha256(db), chain.finalSha256);
      assert.equal(r.pageSize, chain.pageSize);
      assert.equal(r.commit * r.pageSize, db.length);
      const lastFile = manifest.files.find((x) => x.file === chain.files.at(-1))!;
      assert.equal(formatHex64(r.txid), lastFile.header.maxTXID);
      const names = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(names, ["out.db"], "no temp file left behind");
    });
  });
}

Deno.test("vectors: every intermediate result (applyAfter, then the file)", async () => {
  await withTempDir(async (dir) => {
    for (const [i, f] of manifest.files.entries()) {
      const out = `${dir}/r${i}.db`;
      const r = await applyLtxChain([...f.applyAfter, f.file].map((p) => ROOT + p), out);
      const db = await Deno.readFile(out);
      assert.equal(await sha256(db), f.result.sha256, f.file);
      assert.equal(db.length, f.result.size, f.file);
      assert.equal(r.commit, f.result.pageCount, f.file);
    }
  });
});
