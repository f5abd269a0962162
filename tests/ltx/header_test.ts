import assert from "node:assert/strict";
import { LtxError } from "../../src/errors.ts";
import {
  decodeHeader,
  encodeHeader,
  HEADER_SIZE,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  validateHeader,
} from "../../src/ltx/header.ts";

const MANIFEST = new URL("../fixtures/vectors/ltx/manifest.json", import.meta.url);

/** Header of the spec §1.13 worked example. */
function example(): LtxHeader {
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

// Spec §1.13 hexdump, offsets 0x00-0x63: the header.
const EXAMPLE_HEX = `
4c54 5831 0000 0002 0000 1000 0000 0001
0000 0000 0000 0001 0000 0000 0000 0001
0000 018b cfe5 6800 0000 0000 0000 0000
0000 0000 0000 0020 0000 0000 0000 1018
1234 5678 9abc def0 0000 0000 0000 0000
0000 0000 0000 0000 0000 0000 0000 0000
0000 0000`.replace(/\s+/g, "");

function fromHex(s: string): Uint8Array {
  return new Uint8Array(s.match(/../g)!.map((x) => parseInt(x, 16)));
}

function rejects(h: LtxHeader, re: RegExp): void {
  assert.throws(() => validateHeader(h), (e: unknown) => {
    assert.ok(e instanceof LtxError);
    assert.equal(e.kind, "header");
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("encodeHeader: spec §1.13 header bytes exactly", () => {
  const b = encodeHeader(example());
  assert.equal(b.length, HEADER_SIZE);
  assert.deepEqual(b, fromHex(EXAMPLE_HEX));
  assert.deepEqual(decodeHeader(b), example());
});

Deno.test("decodeHeader: round-trips every field, including large safe values", () => {
  const h: LtxHeader = {
    ...example(),
    flags: 0,
    minTXID: 5,
    maxTXID: Number.MAX_SAFE_INTEGER,
    timestamp: -1,
    preApplyChecksum: 0xffffffffffffffffn,
    walOffset: 2 ** 40,
    walSize: 2 ** 33,
    walSalt1: 0xffffffff,
    walSalt2: 0,
    nodeID: 0xfedcba9876543210n,
    commit: 0xffffffff,
  };
  assert.deepEqual(decodeHeader(encodeHeader(h)), h);
});

Deno.test("decodeHeader: bad magic and u64 values beyond 2^53-1 are header errors", () => {
  const b = encodeHeader(example());
  b[3] = 0x32;
  assert.throws(
    () => decodeHeader(b),
    (e: unknown) => e instanceof LtxError && e.kind === "header",
  );
  const big = encodeHeader(example());
  new DataView(big.buffer).setBigUint64(24, 1n << 60n);
  assert.throws(
    () => decodeHeader(big),
    (e: unknown) => e instanceof LtxError && e.kind === "header" && /maxTXID/.test(e.message),
  );
  const neg = encodeHeader(example());
  new DataView(neg.buffer).setBigInt64(48, -32n);
  assert.throws(
    () => decodeHeader(neg),
    (e: unknown) => e instanceof LtxError && e.kind === "header" && /walOffset -32/.test(e.message),
  );
});

Deno.test("decodeHeader: fewer than 100 bytes is truncated", () => {
  assert.throws(
    () => decodeHeader(new Uint8Array(99)),
    (e: unknown) => e instanceof LtxError && e.kind === "truncated",
  );
});

Deno.test("validateHeader: flags other than 0x2 are rejected", () => {
  rejects({ ...example(), flags: 1 }, /flags 0x00000001/);
  rejects({ ...example(), flags: 3 }, /flags 0x00000003/);
  validateHeader({ ...example(), flags: 0 });
});

Deno.test("validateHeader: page size must be a power of two from 512 to 65536", () => {
  for (const n of [0, 256, 1000, 4095, 131072]) rejects({ ...example(), pageSize: n }, /page size/);
  for (let n = 512; n <= 65536; n *= 2) validateHeader({ ...example(), pageSize: n });
});

Deno.test("validateHeader: TXIDs non-zero and ordered", () => {
  rejects({ ...example(), minTXID: 0 }, /minTXID 0/);
  rejects({ ...example(), minTXID: 7, maxTXID: 2 }, /minTXID 7 > maxTXID 2/);
  rejects({ ...example(), minTXID: 2, maxTXID: 0 }, /maxTXID 0/);
});

Deno.test("validateHeader: WAL fields", () => {
  rejects({ ...example(), walOffset: -1 }, /walOffset -1/);
  rejects({ ...example(), walSize: -1 }, /walSize -1/);
  rejects({ ...example(), walOffset: 0, walSize: 0 }, /salts/);
  rejects({ ...example(), walOffset: 0, walSize: 5, walSalt1: 0, walSalt2: 0 }, /walSize 5/);
  validateHeader({ ...example(), walOffset: 0, walSize: 0, walSalt1: 0, walSalt2: 0 });
});

Deno.test("validateHeader: pre-apply checksum rules", () => {
  const incr = { ...example(), minTXID: 2, maxTXID: 2 };
  rejects({ ...example(), preApplyChecksum: 1n << 63n }, /snapshot/);
  rejects({ ...incr, preApplyChecksum: 1n << 63n }, /NoChecksum/);
  validateHeader({ ...incr, preApplyChecksum: 0n });
  rejects({ ...incr, flags: 0, preApplyChecksum: 0n }, /bit 63/);
  rejects({ ...incr, flags: 0, preApplyChecksum: 5n }, /bit 63/);
  validateHeader({ ...incr, flags: 0, preApplyChecksum: (1n << 63n) | 5n });
});

Deno.test("encodeHeader validates first", () => {
  assert.throws(
    () => encodeHeader({ ...example(), pageSize: 1000 }),
    (e: unknown) => e instanceof LtxError && e.kind === "header",
  );
});

Deno.test("isSnapshot is minTXID === 1", () => {
  assert.equal(isSnapshot(example()), true);
  assert.equal(isSnapshot({ ...example(), minTXID: 2, maxTXID: 3 }), false);
});

Deno.test("lockPgno: the page holding byte 1 GiB, for every page size in the manifest", async () => {
  assert.equal(lockPgno(512), 2097153);
  assert.equal(lockPgno(4096), 262145);
  assert.equal(lockPgno(65536), 16385);
  const m = JSON.parse(await Deno.readTextFile(MANIFEST));
  const examples = Object.entries(m.lockPage.examples as Record<string, number>);
  assert.equal(examples.length, 8);
  for (const [size, pgno] of examples) assert.equal(lockPgno(Number(size)), pgno, size);
});
