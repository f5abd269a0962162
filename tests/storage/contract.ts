/**
 * The storage contract: every backend must pass these cases unchanged. They use only the Storage
 * interface, NotFoundError and the layout helpers.
 *
 * Decisions pinned here (backends must follow them):
 * - `make()` returns a Storage whose key space is empty (a fresh directory, bucket or prefix).
 * - Ranges: bytes [offset, offset+length) clipped at the end of the object; an offset at or past
 *   the end, or length 0, yields an empty stream, not an error (S3 must map 416 to empty).
 * - `get` of a missing key rejects with NotFoundError from the `get()` call itself.
 * - A key that is only a prefix of other keys ("dir" when "dir/a" exists) is not an object.
 * - `head().meta` contains every metadata key that was put, with the same value; backends may
 *   add keys (the file backend derives `litestream-timestamp` from mtime).
 * - Overwriting replaces the body and the metadata; nothing of the old metadata survives.
 * - List order is ascending by key (ASCII cases here; byte order for the rest).
 * - No case puts both "a" and "a/b": a filesystem cannot hold a file and a directory at one path.
 */

import assert from "node:assert/strict";
import { NotFoundError } from "../../src/errors.ts";
import {
  ltxKey,
  parseLtxKey,
  parseTimestampMeta,
  timestampMeta,
} from "../../src/storage/layout.ts";
import { readAll, type Storage } from "../../src/storage/port.ts";

/** A backend under test: `make()` gives a fresh, empty Storage and its cleanup. */
export interface ContractTarget {
  name: string;
  make(): Promise<{ storage: Storage; cleanup(): Promise<void> }>;
  /** Passed to Deno.test (e.g. to skip when an S3 server is not available). */
  ignore?: boolean;
}

/** Register one Deno.test per contract rule, named `${target.name}: <rule>`. */
export function storageContract(target: ContractTarget): void {
  const rule = (name: string, fn: (s: Storage) => Promise<void>) => {
    Deno.test({
      name: `${target.name}: ${name}`,
      ignore: target.ignore,
      async fn() {
        const { storage, cleanup } = await target.make();
        try {
          await fn(storage);
        } finally {
          await storage.close?.();
          await cleanup();
        }
      },
    });
  };

  rule("put/get round trip", async (s) => {
    const cases: [string, Uint8Array][] = [
      ["rt/empty", new Uint8Array(0)],
      ["rt/one", Uint8Array.of(0xa5)],
      ["rt/5mib", pseudoRandom(5 * MiB, 1)],
    ];
    for (const [key, body] of cases) {
      await s.put(key, body);
      assertBytes(await readAll(await s.get(key)), body, key);
      assert.equal((await s.head(key))?.size, body.length, `${key} size`);
    }
    // Odd chunk sizes, and a total just over 5 MiB (the S3 multipart threshold).
    const big = pseudoRandom(5 * MiB + 3, 2);
    await s.put("rt/iter", chunked(big, [1, 7, 4093, 65537, 1_000_003]));
    assertBytes(await readAll(await s.get("rt/iter")), big, "rt/iter");
    const small = pseudoRandom(100_000, 3);
    await s.put("rt/iter-small", chunked(small, [3, 0, 8191]));
    assertBytes(await readAll(await s.get("rt/iter-small")), small, "rt/iter-small");
    // Empty iterable body.
    await s.put("rt/iter-empty", chunked(new Uint8Array(0), [5]));
    assert.equal((await readAll(await s.get("rt/iter-empty"))).length, 0);
    // The returned stream can be read again (it is an iterable, not a one-shot iterator).
    const again = await s.get("rt/one");
    assertBytes(await readAll(again), Uint8Array.of(0xa5), "first read");
  });

  rule("get with range", async (s) => {
    const body = pseudoRandom(200_000, 4);
    await s.put("range/obj", body);
    const read = async (offset: number, length: number) =>
      await readAll(await s.get("range/obj", { offset, length }));
    assertBytes(await read(0, 10), body.subarray(0, 10), "start");
    assertBytes(await read(1000, 2345), body.subarray(1000, 3345), "middle");
    assertBytes(await read(65530, 70000), body.subarray(65530, 135530), "across 64 KiB");
    assertBytes(await read(199_990, 10), body.subarray(199_990), "end");
    assertBytes(await read(199_995, 100), body.subarray(199_995), "length past end is clipped");
    assertBytes(await read(0, 200_000), body, "whole");
    assert.equal((await read(200_000, 10)).length, 0, "offset at end gives empty");
    assert.equal((await read(300_000, 10)).length, 0, "offset past end gives empty");
    assert.equal((await read(5, 0)).length, 0, "length 0 gives empty");
  });

  rule("get missing -> NotFoundError", async (s) => {
    await assert.rejects(() => s.get("missing/key"), NotFoundError);
    await assert.rejects(() => s.get("missing/key", { offset: 0, length: 1 }), NotFoundError);
    await s.put("dir/a", Uint8Array.of(1));
    await assert.rejects(() => s.get("dir"), NotFoundError, "a prefix of keys is not an object");
    assert.equal(await s.head("dir"), undefined);
    if (s.exists) {
      assert.equal(await s.exists("dir"), false, "exists: a prefix of keys is not an object");
      assert.equal(await s.exists("missing/key"), false, "exists: absent");
      assert.equal(await s.exists("dir/a"), true, "exists: present");
    }
  });

  rule("head present/absent, size, meta round trip", async (s) => {
    assert.equal(await s.head("h/absent"), undefined);
    const ms = 1_700_000_000_123;
    const meta = {
      ...timestampMeta(ms),
      "walrust-post-apply-checksum": "8a6c5e2d31f0b7c4",
    };
    const body = pseudoRandom(4321, 5);
    await s.put("h/obj", body, meta);
    const info = await s.head("h/obj");
    assert.ok(info, "head of a present object");
    assert.equal(info.key, "h/obj");
    assert.equal(info.size, 4321);
    assert.ok(info.lastModified instanceof Date && !isNaN(info.lastModified.getTime()));
    assert.ok(info.meta, "head returns metadata");
    for (const [k, v] of Object.entries(meta)) assert.equal(info.meta[k], v, `meta ${k}`);
    assert.equal(parseTimestampMeta(info.meta["litestream-timestamp"]), ms);
    // Whole seconds print without a fraction, and survive too.
    await s.put("h/whole", body, timestampMeta(1_700_000_000_000));
    const whole = await s.head("h/whole");
    assert.equal(whole?.meta?.["litestream-timestamp"], "2023-11-14T22:13:20Z");
    assert.equal(parseTimestampMeta(whole?.meta?.["litestream-timestamp"]), 1_700_000_000_000);
    // A nanosecond timestamp is returned as written.
    const nanos = { "litestream-timestamp": "2023-11-14T22:13:20.123456789Z" };
    await s.put("h/nanos", body, nanos);
    const n = await s.head("h/nanos");
    assert.equal(n?.meta?.["litestream-timestamp"], nanos["litestream-timestamp"]);
    assert.equal(parseTimestampMeta(n?.meta?.["litestream-timestamp"]), ms);
  });

  rule("put overwrites", async (s) => {
    const v1 = pseudoRandom(70_000, 6);
    const v2 = pseudoRandom(1234, 7);
    await s.put("ow/k", v1, { "walrust-a": "1", ...timestampMeta(1_600_000_000_000) });
    await s.put("ow/k", v2, { "walrust-b": "2", ...timestampMeta(1_700_000_000_000) });
    assertBytes(await readAll(await s.get("ow/k")), v2, "second version");
    let info = await s.head("ow/k");
    assert.equal(info?.size, 1234);
    assert.equal(info?.meta?.["walrust-b"], "2");
    assert.equal(info?.meta?.["walrust-a"], undefined, "old metadata is gone");
    assert.equal(parseTimestampMeta(info?.meta?.["litestream-timestamp"]), 1_700_000_000_000);
    // Overwrite without metadata drops the custom keys too.
    await s.put("ow/k", v1);
    info = await s.head("ow/k");
    assert.equal(info?.size, 70_000);
    assert.equal(info?.meta?.["walrust-b"], undefined, "metadata of the overwritten version");
    assert.deepEqual(await keys(s, "ow/"), ["ow/k"]);
  });

  rule("list returns keys in ascending order", async (s) => {
    const want = [
      "ord/0000/0000000000000001-0000000000000001.ltx",
      "ord/0000/0000000000000002-0000000000000002.ltx",
      "ord/0000/000000000000000a-000000000000000a.ltx",
      "ord/0000/0000000000000010-0000000000000010.ltx",
      "ord/0001/0000000000000001-0000000000000010.ltx",
      "ord/A",
      "ord/Z",
      "ord/a-b",
      "ord/a.b",
      "ord/a/x",
      "ord/a/y/z",
      "ord/a0",
      "ord/a_b",
      "ord/ab",
      "ord/b",
    ];
    const sizes = new Map(want.map((k, i) => [k, i * 3 + 1]));
    for (const k of shuffled(want, 42)) await s.put(k, new Uint8Array(sizes.get(k)!));
    const got = await collect(s.list("ord/"));
    assert.deepEqual(got.map((o) => o.key), [...want].sort(byteOrder));
    assert.deepEqual(got.map((o) => o.key), want, "the expected order is byte order");
    for (const o of got) {
      assert.equal(o.size, sizes.get(o.key), `size of ${o.key}`);
      assert.ok(o.lastModified instanceof Date && !isNaN(o.lastModified.getTime()));
    }
  });

  rule("list by partial prefix", async (s) => {
    const all = [1, 2, 0x10, 0x11, 0x100, 0x1000].map((t) => ltxKey("file", "db", 0, t, t));
    await putAll(s, all);
    assert.deepEqual(await keys(s, "db/ltx/0/000000000000000"), all.slice(0, 2));
    assert.deepEqual(await keys(s, "db/ltx/0/00000000000000"), all.slice(0, 4));
    assert.deepEqual(await keys(s, "db/ltx/0/0000000000000010"), [all[2]]);
    assert.deepEqual(await keys(s, "db/ltx/0/0000000000000001-"), [all[0]]);
    assert.deepEqual(await keys(s, "db/lt"), all);
    assert.deepEqual(await keys(s, "d"), all);
    assert.deepEqual(await keys(s, "db/ltx/0/1"), []);
    assert.deepEqual(await keys(s, all[3]), [all[3]], "a full key lists itself");
  });

  rule("list of an empty or missing prefix", async (s) => {
    assert.deepEqual(await keys(s, ""), [], "empty storage");
    assert.deepEqual(await keys(s, "nothing/"), []);
    await putAll(s, ["x/1", "x/2"]);
    assert.deepEqual(await keys(s, "nothing/"), []);
    assert.deepEqual(await keys(s, "nothing/deeper/"), []);
    assert.deepEqual(await keys(s, "x/1/"), [], "a key used as a directory");
    assert.deepEqual(await keys(s, ""), ["x/1", "x/2"], "the empty prefix lists everything");
  });

  rule("list does not return keys outside the prefix", async (s) => {
    await putAll(s, ["db/x", "db/y/z", "db2/x", "db-", "dbx", "da/x", "dc"]);
    assert.deepEqual(await keys(s, "db/"), ["db/x", "db/y/z"]);
    assert.deepEqual(await keys(s, "db2/"), ["db2/x"]);
    assert.deepEqual(await keys(s, "db"), ["db-", "db/x", "db/y/z", "db2/x", "dbx"]);
  });

  rule("list sees more than 1000 keys", async (s) => {
    const all = Array.from({ length: 1100 }, (_, i) => `many/${i.toString().padStart(5, "0")}`);
    await putAll(s, all);
    await s.put("manx", Uint8Array.of(1)); // just outside the prefix, after it in order
    const got = await collect(s.list("many/"));
    assert.equal(got.length, 1100);
    assert.deepEqual(got.map((o) => o.key), all);
    assert.ok(got.every((o) => o.size === 1));
  });

  rule("delete is idempotent", async (s) => {
    await s.put("del/a", Uint8Array.of(1), { "walrust-x": "y" });
    await s.delete(["del/a"]);
    assert.equal(await s.head("del/a"), undefined);
    await assert.rejects(() => s.get("del/a"), NotFoundError);
    await s.delete(["del/a"]);
    await s.delete([]);
    assert.deepEqual(await keys(s, ""), []);
    // A new object at a deleted key starts without the old metadata.
    await s.put("del/a", Uint8Array.of(2));
    assert.equal((await s.head("del/a"))?.meta?.["walrust-x"], undefined);
  });

  rule("delete of a missing key", async (s) => {
    await putAll(s, ["dm/keep", "dm/gone"]);
    await s.delete(["dm/never", "dm/gone", "dm/never/deeper", "other/never"]);
    assert.deepEqual(await keys(s, ""), ["dm/keep"]);
    await s.delete(["dm"]); // only a prefix of a key: not an object, nothing happens
    assert.deepEqual(await keys(s, ""), ["dm/keep"]);
  });

  rule("delete many", async (s) => {
    const all = Array.from({ length: 2500 }, (_, i) => `dmany/${i.toString().padStart(5, "0")}`);
    await putAll(s, [...all, "dmany-keep"]);
    await s.delete(all);
    assert.deepEqual(await keys(s, ""), ["dmany-keep"]);
  });

  rule("concurrent puts of the same key leave one complete value", async (s) => {
    const bodies = Array.from({ length: 8 }, (_, i) => pseudoRandom(300_000 + i * 1000, 100 + i));
    await Promise.all(
      bodies.map((b, i) => s.put("race/k", chunked(b, [65_536]), { "walrust-body": `${i}` })),
    );
    const got = await readAll(await s.get("race/k"));
    const match = bodies.findIndex((b) => equalBytes(b, got));
    assert.ok(match >= 0, `the object is one of the bodies, not a mix (got ${got.length} bytes)`);
    const info = await s.head("race/k");
    assert.equal(info?.size, bodies[match].length);
    assert.equal(info?.meta?.["walrust-body"], `${match}`, "metadata of the same put as the body");
    assert.deepEqual(await keys(s, ""), ["race/k"]);
  });

  rule("keys with the real layout", async (s) => {
    const l0 = ltxKey("s3", "app.db", 0, 1, 1);
    const snap = ltxKey("file", "app.db", 9, 1, 7);
    assert.equal(l0, "app.db/0000/0000000000000001-0000000000000001.ltx");
    assert.equal(snap, "app.db/ltx/9/0000000000000001-0000000000000007.ltx");
    await s.put(l0, pseudoRandom(100, 8), timestampMeta(1_700_000_000_500));
    await s.put(snap, pseudoRandom(200, 9), timestampMeta(1_700_000_000_600));
    assert.deepEqual(await keys(s, "app.db/"), [l0, snap]);
    assert.deepEqual(await keys(s, "app.db/0000/"), [l0]);
    assert.deepEqual(await keys(s, "app.db/ltx/9/"), [snap]);
    assert.deepEqual(parseLtxKey("s3", "app.db", l0), { level: 0, minTXID: 1, maxTXID: 1 });
    assert.deepEqual(parseLtxKey("file", "app.db", snap), { level: 9, minTXID: 1, maxTXID: 7 });
    const info = await s.head(snap);
    assert.equal(info?.size, 200);
    assert.equal(parseTimestampMeta(info?.meta?.["litestream-timestamp"]), 1_700_000_000_600);
  });
}

// --- helpers ---

const MiB = 1024 * 1024;

/** Deterministic bytes (xorshift32) so failures are reproducible. */
function pseudoRandom(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Yield `b` in pieces cycling through `sizes` (0 yields an empty chunk), pausing in between. */
async function* chunked(b: Uint8Array, sizes: number[]): AsyncIterable<Uint8Array> {
  let off = 0;
  for (let i = 0; off < b.length; i++) {
    const n = sizes[i % sizes.length];
    yield b.slice(off, off + n);
    off += n;
    await Promise.resolve();
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function assertBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  if (equalBytes(got, want)) return;
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  assert.fail(`${what}: got ${got.length} bytes, want ${want.length}; first difference at ${i}`);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function keys(s: Storage, prefix: string): Promise<string[]> {
  return (await collect(s.list(prefix))).map((o) => o.key);
}

/** Put one byte at each key, 16 at a time. */
async function putAll(s: Storage, ks: string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < ks.length) await s.put(ks[next++], Uint8Array.of(1));
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  const r = pseudoRandom(out.length * 4, seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = new DataView(r.buffer).getUint32((i * 4) % (r.length - 3)) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** UTF-8 byte order, computed independently of any backend. */
function byteOrder(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
