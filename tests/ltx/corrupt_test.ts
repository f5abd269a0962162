/** Broken LTX files: every one must be rejected with the error class the vectors name. */
import assert from "node:assert/strict";
import { LtxError, type LtxErrorKind } from "../../src/errors.ts";
import { applyLtxChain } from "../../src/ltx/apply.ts";
import { readLtxFile, verifyLtx } from "../../src/ltx/decoder.ts";

const VECTORS = new URL("../fixtures/vectors/", import.meta.url).pathname;

interface CorruptEntry {
  file: string;
  defect: string;
  derivedFrom: string | null;
  expectedErrorClass: LtxErrorKind;
  applyOnto: string | null;
  mustReject: boolean;
}

const corrupt: { files: CorruptEntry[] } = JSON.parse(
  await Deno.readTextFile(VECTORS + "corrupt/manifest.json"),
);
const ltx: {
  files: { file: string; applyAfter: string[]; result: { db: string }; size: number }[];
} = JSON.parse(await Deno.readTextFile(VECTORS + "ltx/manifest.json"));

async function* chunks(b: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function expectKind(p: Promise<unknown>, kind: LtxErrorKind, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LtxError, `${what}: ${e}`);
    assert.equal(e.kind, kind, `${what}: ${e.message}`);
    return true;
  });
}

Deno.test("corrupt: the manifest lists every error class the vectors use", () => {
  assert.ok(corrupt.files.length >= 20);
  const kinds = new Set(corrupt.files.map((f) => f.expectedErrorClass));
  for (
    const k of [
      "header",
      "truncated",
      "checksum",
      "page-data",
      "page-header",
      "page-order",
      "page-range",
      "snapshot-incomplete",
      "trailing-data",
      "index",
    ]
  ) assert.ok(kinds.has(k as LtxErrorKind), k);
});

for (const f of corrupt.files) {
  Deno.test(`corrupt: ${f.file} is rejected as ${f.expectedErrorClass}`, async () => {
    assert.equal(f.mustReject, true);
    const path = VECTORS + "corrupt/" + f.file;
    await expectKind(verifyLtx(readLtxFile(path), { name: f.file }), f.expectedErrorClass, f.file);
    // The same verdict with tiny chunks, and the message names the file.
    const bytes = await Deno.readFile(path);
    await assert.rejects(verifyLtx(chunks(bytes, 7), { name: f.file }), (e: unknown) => {
      assert.ok(e instanceof LtxError);
      assert.equal(e.kind, f.expectedErrorClass);
      assert.ok(e.message.startsWith(`${f.file}: `), e.message);
      return true;
    });
  });
}

/** The valid files that come before a corrupt file's original in its chain. */
function chainBefore(f: CorruptEntry): string[] | undefined {
  if (f.applyOnto === null) return [];
  const producer = ltx.files.find((x) => "ltx/" + x.result.db === f.applyOnto);
  if (!producer) return undefined;
  return [...producer.applyAfter, producer.file].map((p) => VECTORS + "ltx/" + p);
}

Deno.test("corrupt: applying a chain that ends in a corrupt file fails and leaves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
  try {
    let tried = 0;
    for (const f of corrupt.files) {
      if (f.derivedFrom === null) continue; // lock-page file: an incremental with no base
      const before = chainBefore(f);
      assert.ok(before, f.file);
      const out = `${dir}/${f.file}.db`;
      await expectKind(
        applyLtxChain([...before, VECTORS + "corrupt/" + f.file], out),
        f.expectedErrorClass,
        f.file,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], `${f.file}: output or temp file left`);
      tried++;
    }
    assert.ok(tried >= 19);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corrupt: a valid file cut at every tenth of its length is truncated", async () => {
  for (
    const name of [
      "c4096-chain/0000000000000002-0000000000000002.ltx",
      "legacy4096/0000000000000001-0000000000000001.ltx",
    ]
  ) {
    const bytes = await Deno.readFile(VECTORS + "ltx/" + name);
    for (let tenth = 1; tenth < 10; tenth++) {
      const cut = Math.floor((bytes.length * tenth) / 10);
      await expectKind(
        verifyLtx(chunks(bytes.subarray(0, cut), 4096)),
        "truncated",
        `${name} cut at ${cut}`,
      );
    }
    // Cuts inside the header, the index and the trailer too.
    for (const cut of [0, 1, 99, 100, bytes.length - 17, bytes.length - 16, bytes.length - 1]) {
      await expectKind(
        verifyLtx(chunks(bytes.subarray(0, cut), 4096)),
        "truncated",
        `${name} cut at ${cut}`,
      );
    }
  }
});

Deno.test("corrupt: random bytes and an empty file are rejected", async () => {
  const rnd = crypto.getRandomValues(new Uint8Array(5000));
  await expectKind(verifyLtx(chunks(rnd, 1000)), "header", "random bytes");
  await expectKind(verifyLtx(chunks(new Uint8Array(0), 1)), "truncated", "empty file");
  // Random bytes behind a valid magic still fail as a header problem.
  rnd.set([0x4c, 0x54, 0x58, 0x31], 0);
  await assert.rejects(verifyLtx(chunks(rnd, 1000)), LtxError);
});
