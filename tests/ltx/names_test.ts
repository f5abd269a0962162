import assert from "node:assert/strict";
import {
  formatHex64,
  formatLtxName,
  formatTXID,
  parseLtxName,
  parseTXID,
} from "../../src/ltx/names.ts";

Deno.test("formatTXID: 16 lower-case hex digits", () => {
  assert.equal(formatTXID(1), "0000000000000001");
  assert.equal(formatTXID(0xabcdef), "0000000000abcdef");
  assert.equal(formatTXID(Number.MAX_SAFE_INTEGER), "001fffffffffffff");
  assert.throws(() => formatTXID(-1), RangeError);
  assert.throws(() => formatTXID(1.5), RangeError);
});

Deno.test("parseTXID: exactly 16 hex digits, either case", () => {
  assert.equal(parseTXID("00000000000000ff"), 255);
  assert.equal(parseTXID("00000000000000FF"), 255);
  for (const bad of ["ff", "0000000000000000f", "000000000000000g", "", "0x00000000000001"]) {
    assert.throws(() => parseTXID(bad), RangeError, bad);
  }
  assert.throws(() => parseTXID("ffffffffffffffff"), RangeError);
});

Deno.test("formatLtxName / parseLtxName: Litestream's %016x-%016x.ltx", () => {
  assert.equal(formatLtxName(1, 0x2a), "0000000000000001-000000000000002a.ltx");
  assert.deepEqual(parseLtxName("0000000000000001-000000000000002a.ltx"), {
    minTXID: 1,
    maxTXID: 42,
  });
  for (
    const bad of [
      "0000000000000001-000000000000002A.ltx", // upper case: Litestream ignores it
      "000000000000001-000000000000002a.ltx",
      "0000000000000001-000000000000002a.ltx.tmp",
      "x0000000000000001-000000000000002a.ltx",
      "0000000000000001_000000000000002a.ltx",
      "ffffffffffffffff-ffffffffffffffff.ltx", // beyond 2^53-1
    ]
  ) {
    assert.equal(parseLtxName(bad), undefined, bad);
  }
});

Deno.test("formatHex64: bigints and numbers", () => {
  assert.equal(formatHex64(0x953a1463be5cc813n), "953a1463be5cc813");
  assert.equal(formatHex64(0), "0000000000000000");
  assert.equal(formatHex64(-1), "ffffffffffffffff");
});
