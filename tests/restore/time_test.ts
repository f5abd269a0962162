/** Parsing of restore targets: --txid and --point-in-time. */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { parseTarget } from "../../src/restore/time.ts";

/** The ConfigError thrown by `fn`; fails when nothing or something else is thrown. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.exitCode, 2);
    return e;
  }
  throw new assert.AssertionError({ message: "expected ConfigError, nothing was thrown" });
}

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);

Deno.test("no flag means latest", () => {
  assert.deepEqual(parseTarget({}), { kind: "latest" });
});

Deno.test("--txid: decimal, 0x hex, and Litestream's 16 hex digits", () => {
  const txid = (s: string) => parseTarget({ txid: s });
  assert.deepEqual(txid("38"), { kind: "txid", txid: 38 });
  assert.deepEqual(txid("0x26"), { kind: "txid", txid: 38 });
  assert.deepEqual(txid("0X1A"), { kind: "txid", txid: 26 });
  assert.deepEqual(txid("0000000000000026"), { kind: "txid", txid: 38 });
  // 16 digits are hex even when they look decimal, as in key names and Litestream's -txid.
  assert.deepEqual(txid("0000000000000010"), { kind: "txid", txid: 16 });
  assert.deepEqual(txid("00000000000000aB"), { kind: "txid", txid: 171 });
  assert.deepEqual(txid("001fffffffffffff"), { kind: "txid", txid: Number.MAX_SAFE_INTEGER });
});

Deno.test("--txid: garbage, zero and out-of-range values are ConfigErrors naming the value", () => {
  for (
    const bad of [
      "",
      "abc",
      "12z",
      "0x",
      "0xg1",
      "-1",
      "1.5",
      "0",
      "0x0",
      "9007199254740991",
      "0x00000000000000001",
      "0020000000000000",
      "99999999999999999999",
    ]
  ) {
    const e = configError(() => parseTarget({ txid: bad }));
    assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
  }
  assert.deepEqual(parseTarget({ txid: " 26 " }), { kind: "txid", txid: 26 });
  // Not 16 digits, so decimal: only the exact Litestream width switches to hex.
  assert.deepEqual(parseTarget({ txid: "000000000000026" }), { kind: "txid", txid: 26 });
});

Deno.test("--point-in-time: RFC 3339 with and without fraction, Z or offset", () => {
  const at = (s: string) => parseTarget({ pointInTime: s }, NOW);
  const ms = 1795510092492; // 2026-11-24T08:48:12.492Z
  assert.deepEqual(at("2026-11-24T08:48:12.492Z"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24T08:48:12Z"), { kind: "time", ms: ms - 492 });
  assert.deepEqual(at("2026-11-24T08:48:12.4Z"), { kind: "time", ms: ms - 92 });
  assert.deepEqual(at("2026-11-24T08:48:12.492000000Z"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24t08:48:12.492z"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24 08:48:12.492Z"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24T09:48:12.492+01:00"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24T03:18:12.492-05:30"), { kind: "time", ms });
  assert.deepEqual(at("2026-11-24T08:48:12.492+00:00"), { kind: "time", ms });
  // Sub-millisecond fractions round up: a file stamped ...492 is strictly before ...492.000001.
  assert.deepEqual(at("2026-11-24T08:48:12.492000001Z"), { kind: "time", ms: ms + 1 });
  assert.deepEqual(at("2026-11-24T08:48:12.4920Z"), { kind: "time", ms });
  assert.deepEqual(at("2024-02-29T00:00:00Z"), { kind: "time", ms: Date.UTC(2024, 1, 29) });
  assert.deepEqual(at("0050-01-01T00:00:00Z"), { kind: "time", ms: -60589296000000 });
});

Deno.test("--point-in-time: relative to now", () => {
  const ago = (s: string) => parseTarget({ pointInTime: s }, NOW);
  assert.deepEqual(ago("-15m"), { kind: "time", ms: NOW - 15 * 60_000 });
  assert.deepEqual(ago("-2h"), { kind: "time", ms: NOW - 2 * 3_600_000 });
  assert.deepEqual(ago("-30s"), { kind: "time", ms: NOW - 30_000 });
  assert.deepEqual(ago("-1d"), { kind: "time", ms: NOW - 86_400_000 });
  assert.deepEqual(ago("-1h30m"), { kind: "time", ms: NOW - 90 * 60_000 });
  assert.deepEqual(ago("-1d2h3m4s"), {
    kind: "time",
    ms: NOW - (((24 + 2) * 60 + 3) * 60 + 4) * 1000,
  });
  const before = Date.now();
  const t = parseTarget({ pointInTime: "-1m" });
  assert.ok(t.kind === "time" && t.ms >= before - 60_000 && t.ms <= Date.now() - 60_000);
});

Deno.test("--point-in-time: garbage is a ConfigError naming the value", () => {
  for (
    const bad of [
      "",
      "-",
      "15m",
      "-15",
      "-1x",
      "-1m1h",
      "yesterday",
      "2026-11-24",
      "2026-11-24T08:48:12",
      "2026-11-24T08:48Z",
      "2026-11-24T08:48:12.Z",
      "2026-02-30T00:00:00Z",
      "2025-02-29T00:00:00Z",
      "2026-13-01T00:00:00Z",
      "2026-11-24T24:00:00Z",
      "2026-11-24T08:60:00Z",
      "2026-11-24T08:48:12+25:00",
      "2026-11-24T08:48:12+0100",
    ]
  ) {
    const e = configError(() => parseTarget({ pointInTime: bad }, NOW));
    assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
  }
});

Deno.test("--txid and --point-in-time together are refused", () => {
  const e = configError(() => parseTarget({ txid: "1", pointInTime: "-1m" }));
  assert.ok(e.message.includes("--txid") && e.message.includes("--point-in-time"), e.message);
});
