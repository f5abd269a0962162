/**
 * S3 backend against a real S3 server (Ceph RGW from scripts/s3-test-server.sh, or any S3 given
 * by AWS_* + WALRUST_TEST_BUCKET). Skipped loudly without one; WALRUST_REQUIRE_S3=1 makes that
 * a failure. The raw SDK is used only to look at what landed in the bucket.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import {
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { AuthError, ConfigError, NotFoundError, StorageError } from "../../src/errors.ts";
import { ltxKey, parseLtxKey, timestampMeta } from "../../src/storage/layout.ts";
import { readAll } from "../../src/storage/port.ts";
import { bodyChunks, openS3Storage, s3Error } from "../../src/storage/s3.ts";
import {
  openTestS3,
  requireS3OrSkip,
  s3Options,
  type S3TestConfig,
  uniquePrefix,
} from "../helpers/s3env.ts";
import { storageContract } from "./contract.ts";

const MiB = 1024 * 1024;
const cfg = await requireS3OrSkip();
const ignore = cfg === undefined;

storageContract({ name: "s3", ignore, make: () => openTestS3(cfg!) });

/** Register an S3 test: a fresh prefix (keys relative to it), cleaned afterwards. */
function s3test(
  name: string,
  fn: (t: Awaited<ReturnType<typeof openTestS3>>, cfg: S3TestConfig) => Promise<void>,
  extra: { partSize?: number } = {},
) {
  Deno.test({
    name: `s3: ${name}`,
    ignore,
    async fn() {
      const t = await openTestS3(cfg!, extra);
      try {
        await fn(t, cfg!);
      } finally {
        await t.cleanup();
      }
    },
  });
}

/** A raw SDK client, to inspect objects independently of S3Storage. */
async function withRaw<T>(c: S3TestConfig, fn: (raw: S3Client) => Promise<T>): Promise<T> {
  const raw = new S3Client({
    region: c.region,
    endpoint: c.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  try {
    return await fn(raw);
  } finally {
    raw.destroy();
  }
}

async function rawETag(c: S3TestConfig, key: string): Promise<string> {
  const out = await withRaw(
    c,
    (raw) => raw.send(new HeadObjectCommand({ Bucket: c.bucket, Key: key })),
  );
  return out.ETag ?? "";
}

/** Number of parts in a multipart ETag ("<md5>-N"), 0 for a single PutObject. */
function etagParts(etag: string): number {
  const m = /-(\d+)"?$/.exec(etag);
  return m ? Number(m[1]) : 0;
}

/** Deterministic byte at position i of stream `seed` (cheap to regenerate while reading back). */
function byteAt(i: number, seed: number): number {
  return ((i * 2654435761 + seed * 40503) >>> 13) & 0xff;
}

function fillPattern(out: Uint8Array, start: number, seed: number): Uint8Array {
  for (let j = 0; j < out.length; j++) out[j] = byteAt(start + j, seed);
  return out;
}

/** `total` bytes of the pattern in odd-sized fresh chunks; `onChunk` runs before each yield. */
async function* patternBody(
  total: number,
  seed: number,
  onChunk?: (yielded: number) => Promise<void>,
): AsyncIterable<Uint8Array> {
  const sizes = [1, 65_537, 1_000_003, 4093, 777_777];
  let off = 0;
  for (let i = 0; off < total; i++) {
    const n = Math.min(sizes[i % sizes.length], total - off);
    await onChunk?.(off);
    yield fillPattern(new Uint8Array(n), off, seed);
    off += n;
  }
}

/** Compare a stream with the pattern without holding it; returns the byte count. */
async function checkPattern(it: AsyncIterable<Uint8Array>, seed: number): Promise<number> {
  let off = 0;
  for await (const c of it) {
    for (let j = 0; j < c.length; j++) {
      if (c[j] !== byteAt(off + j, seed)) assert.fail(`byte ${off + j} differs`);
    }
    off += c.length;
  }
  return off;
}

s3test("40 MiB AsyncIterable goes up in 5 MiB parts, streamed, byte-exact", async (t, c) => {
  const total = 40 * MiB + 12_345;
  const key = "mp/big.ltx";
  const full = t.prefix + key;
  // Halfway through the body, parts must already be on the server: the upload streams, it does
  // not gather the whole body first (one part buffer + the chunk in flight).
  let partsAt30: number | undefined;
  const probe = async (yielded: number) => {
    if (partsAt30 !== undefined || yielded < 30 * MiB) return;
    partsAt30 = await withRaw(c, async (raw) => {
      const ups = await raw.send(
        new ListMultipartUploadsCommand({ Bucket: c.bucket, Prefix: full }),
      );
      const up = ups.Uploads?.find((u) => u.Key === full);
      if (!up) return 0;
      const parts = await raw.send(
        new ListPartsCommand({ Bucket: c.bucket, Key: full, UploadId: up.UploadId }),
      );
      return parts.Parts?.length ?? 0;
    });
  };
  await t.storage.put(key, patternBody(total, 1, probe), { "walrust-test": "mp" });
  // >= 30 MiB read, at most one 5 MiB part + one <1 MiB chunk buffered: >= 4 parts uploaded.
  assert.ok(partsAt30 !== undefined && partsAt30 >= 4, `parts uploaded at 30 MiB: ${partsAt30}`);
  assert.equal(etagParts(await rawETag(c, full)), 9, "8 full parts of 5 MiB + the tail");
  const info = await t.storage.head(key);
  assert.equal(info?.size, total);
  assert.equal(info?.meta?.["walrust-test"], "mp", "multipart objects carry metadata");
  assert.equal(await checkPattern(await t.storage.get(key), 1), total);
  // A range across a part boundary.
  const r = await readAll(await t.storage.get(key, { offset: 5 * MiB - 10, length: 20 }));
  assert.deepEqual(r, fillPattern(new Uint8Array(20), 5 * MiB - 10, 1));
}, { partSize: 5 * MiB });

s3test("part-size boundaries: single PutObject up to one part, multipart above", async (t, c) => {
  const cases: [string, number, number, boolean][] = [
    // key, size, expected ETag part count, as iterable?
    ["b/small-iter", 100_000, 0, true],
    ["b/exact-iter", 5 * MiB, 0, true],
    ["b/exact-bytes", 5 * MiB, 0, false],
    ["b/over-iter", 5 * MiB + 1, 2, true],
    ["b/over-bytes", 5 * MiB + 1, 2, false],
    ["b/two-exact-iter", 10 * MiB, 2, true],
    ["b/two-exact-bytes", 10 * MiB, 2, false],
  ];
  for (const [key, size, parts, iter] of cases) {
    const body = iter ? patternBody(size, 2) : fillPattern(new Uint8Array(size), 0, 2);
    await t.storage.put(key, body, timestampMeta(1_700_000_000_123));
    assert.equal(etagParts(await rawETag(c, t.prefix + key)), parts, `${key} parts`);
    assert.equal(await checkPattern(await t.storage.get(key), 2), size, `${key} bytes`);
    const info = await t.storage.head(key);
    assert.equal(info?.meta?.["litestream-timestamp"], "2023-11-14T22:13:20.123Z", key);
  }
}, { partSize: 5 * MiB });

s3test("a failing body aborts the multipart upload and leaves no object", async (t, c) => {
  const boom = new Error("source failed");
  async function* failing(): AsyncIterable<Uint8Array> {
    yield* patternBody(12 * MiB, 3);
    throw boom;
  }
  await assert.rejects(() => t.storage.put("abort/k", failing()), (e) => e === boom);
  assert.equal(await t.storage.head("abort/k"), undefined);
  const ups = await withRaw(
    c,
    (raw) => raw.send(new ListMultipartUploadsCommand({ Bucket: c.bucket, Prefix: t.prefix })),
  );
  assert.deepEqual(ups.Uploads ?? [], [], "no multipart upload left open");
}, { partSize: 5 * MiB });

s3test("metadata round trip is S3 user metadata", async (t, c) => {
  const meta = {
    "litestream-timestamp": "2023-11-14T22:13:20.123456789Z",
    "walrust-post-apply-checksum": "8a6c5e2d31f0b7c4",
  };
  await t.storage.put("m/obj", Uint8Array.of(1, 2, 3), meta);
  const info = await t.storage.head("m/obj");
  assert.deepEqual(info?.meta, meta);
  assert.equal(info?.size, 3);
  assert.equal(info?.key, "m/obj");
  // On the wire: x-amz-meta-litestream-timestamp, as Litestream reads it.
  const raw = await withRaw(
    c,
    (r) => r.send(new HeadObjectCommand({ Bucket: c.bucket, Key: t.prefix + "m/obj" })),
  );
  assert.equal(raw.Metadata?.["litestream-timestamp"], meta["litestream-timestamp"]);
  // Upper-case keys come back lower-case.
  await t.storage.put("m/upper", Uint8Array.of(1), { "Walrust-Mixed": "V" });
  assert.deepEqual((await t.storage.head("m/upper"))?.meta, { "walrust-mixed": "V" });
  // list carries no metadata.
  const listed = [];
  for await (const o of t.storage.list("m/")) listed.push(o);
  assert.deepEqual(listed.map((o) => [o.key, o.size, o.meta]), [
    ["m/obj", 3, undefined],
    ["m/upper", 1, undefined],
  ]);
});

s3test("keys with the S3 layout, including Litestream's '/' and './' prefixes", async (t, c) => {
  const keys = [
    ltxKey("s3", "app.db", 0, 7, 7),
    ltxKey("s3", "app.db", 1, 1, 6),
    ltxKey("s3", "app.db", 9, 1, 7),
  ];
  assert.deepEqual(keys, [
    "app.db/0000/0000000000000007-0000000000000007.ltx",
    "app.db/0001/0000000000000001-0000000000000006.ltx",
    "app.db/0009/0000000000000001-0000000000000007.ltx",
  ]);
  for (const [i, k] of keys.entries()) await t.storage.put(k, Uint8Array.of(i));
  const listed = [];
  for await (const o of t.storage.list("app.db/0001/")) listed.push(o.key);
  assert.deepEqual(listed, [keys[1]]);
  assert.deepEqual(parseLtxKey("s3", "app.db", keys[2]), { level: 9, minTXID: 1, maxTXID: 7 });
  // Exactly these object keys exist in the bucket.
  const raw = await withRaw(
    c,
    (r) => r.send(new ListObjectsV2Command({ Bucket: c.bucket, Prefix: t.prefix })),
  );
  assert.deepEqual(raw.Contents?.map((o) => o.Key), keys.map((k) => t.prefix + k));

  // `s3://bkt/` and `s3://bkt` give keys "/0000/…" and "./0000/…" in Litestream: they must
  // survive as-is (no path cleaning in the URL). They live at the bucket root, so use a unique
  // top-level name and remove them here.
  const tag = t.prefix.replace(/\/$/, "").replaceAll("/", "_");
  const odd = [`/${tag}/0000/0000000000000001-0000000000000001.ltx`, `./${tag}/0000/x.ltx`];
  try {
    for (const k of odd) {
      await t.s3.put(k, new TextEncoder().encode(k));
      assert.equal(new TextDecoder().decode(await readAll(await t.s3.get(k))), k);
      const found = [];
      for await (const o of t.s3.list(k.slice(0, k.indexOf("/0000/")))) found.push(o.key);
      assert.deepEqual(found, [k]);
    }
  } finally {
    await t.s3.delete(odd);
  }
  for (const k of odd) assert.equal(await t.s3.head(k), undefined, `${k} deleted`);
});

s3test("get can be iterated again (re-reads) and an early break releases the body", async (t) => {
  await t.storage.put("it/k", fillPattern(new Uint8Array(3 * MiB), 0, 4));
  const it = await t.storage.get("it/k");
  for await (const _ of it) break; // abandon after the first chunk
  assert.equal(await checkPattern(it, 4), 3 * MiB, "second iteration reads the whole object");
  // Many abandoned reads must not exhaust the connection pool.
  for (let i = 0; i < 60; i++) {
    for await (const _ of await t.storage.get("it/k")) break;
  }
  assert.equal(await checkPattern(await t.storage.get("it/k"), 4), 3 * MiB);
});

s3test("missing keys: get -> NotFoundError 404, head -> undefined, delete ok", async (t) => {
  const err = await t.storage.get("nope/k").then(() => undefined, (e) => e);
  assert.ok(err instanceof NotFoundError, String(err));
  assert.equal(err.status, 404);
  assert.equal(err.transient, false);
  assert.match(err.message, /nope\/k/);
  assert.equal(await t.storage.head("nope/k"), undefined);
  await t.storage.delete(["nope/k"]);
});

Deno.test({
  name: "s3: wrong credentials -> AuthError 403, not transient, secret not in the message",
  ignore,
  async fn() {
    const secret = "this-secret-must-not-leak";
    for (const accessKeyId of [cfg!.accessKeyId, "WALRUSTNOSUCHKEY"]) {
      const s = await openS3Storage(s3Options(cfg!, { accessKeyId, secretAccessKey: secret }));
      try {
        const attempts: [string, () => Promise<unknown>][] = [
          ["put", () => s.put("auth/k", Uint8Array.of(1))],
          ["get", () => s.get("auth/k")],
          ["head", () => s.head("auth/k")],
          ["list", () => Array.fromAsync(s.list("auth/"))],
          ["delete", () => s.delete(["auth/k"])],
        ];
        for (const [op, f] of attempts) {
          const err = await f().then(() => undefined, (e) => e);
          assert.ok(err instanceof AuthError, `${op} with ${accessKeyId}: ${err}`);
          assert.equal(err.status, 403, op);
          assert.equal(err.transient, false, op);
          assert.ok(!err.message.includes(secret), err.message);
          assert.ok(err.message.includes(`s3://${cfg!.bucket}`), err.message);
          assert.ok(err.message.includes(op), err.message);
        }
      } finally {
        await s.close();
      }
    }
  },
});

Deno.test({
  name: "s3: missing bucket -> StorageError naming it, not NotFoundError, not transient",
  ignore,
  async fn() {
    const bucket = `walrust-missing-${crypto.randomUUID().slice(0, 8)}`;
    const s = await openS3Storage(s3Options(cfg!, { bucket }));
    try {
      assert.equal(s.description, `s3://${bucket}`);
      const attempts: [string, () => Promise<unknown>][] = [
        ["put", () => s.put("k", Uint8Array.of(1))],
        ["get", () => s.get("k")],
        ["list", () => Array.fromAsync(s.list(""))],
        ["delete", () => s.delete(["k"])],
      ];
      for (const [op, f] of attempts) {
        const err = await f().then(() => undefined, (e) => e);
        assert.ok(err instanceof StorageError, `${op}: ${err}`);
        assert.ok(!(err instanceof NotFoundError), `${op}: a missing bucket is not a missing key`);
        assert.equal(err.transient, false, op);
        assert.equal(err.status, 404, op);
        assert.match(err.message, new RegExp(`bucket "${bucket}" does not exist`), op);
      }
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "s3: endpoint and credentials from the AWS_* environment",
  ignore,
  async fn() {
    // Same values as the test server's, so concurrent tests in this process are unaffected.
    const vars: Record<string, string> = {
      AWS_ENDPOINT_URL_S3: cfg!.endpoint,
      AWS_ACCESS_KEY_ID: cfg!.accessKeyId,
      AWS_SECRET_ACCESS_KEY: cfg!.secretAccessKey,
    };
    const saved = Object.keys(vars).map((k) => [k, Deno.env.get(k)] as const);
    for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
    const s = await openS3Storage({ bucket: cfg!.bucket });
    const key = `${uniquePrefix()}env/k`;
    try {
      await s.put(key, Uint8Array.of(7, 8));
      assert.deepEqual(await readAll(await s.get(key)), Uint8Array.of(7, 8));
    } finally {
      await s.delete([key]);
      await s.close();
      for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  },
});

/** A port on 127.0.0.1 that nothing listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("s3: connection refused -> transient StorageError without status", async () => {
  // Needs no server: the endpoint is a closed port.
  const endpoint = `http://127.0.0.1:${closedPort()}`;
  const s = await openS3Storage({
    bucket: "walrust-test",
    endpoint,
    accessKeyId: "AKIDTEST",
    secretAccessKey: "secret-not-in-messages",
  });
  try {
    const attempts: [string, () => Promise<unknown>][] = [
      ["put", () => s.put("k", Uint8Array.of(1))],
      ["get", () => s.get("k")],
      ["head", () => s.head("k")],
      ["list", () => Array.fromAsync(s.list(""))],
      ["delete", () => s.delete(["k"])],
    ];
    for (const [op, f] of attempts) {
      const err = await f().then(() => undefined, (e) => e);
      assert.ok(err instanceof StorageError, `${op}: ${err}`);
      assert.ok(!(err instanceof NotFoundError) && !(err instanceof AuthError), op);
      assert.equal(err.transient, true, op);
      assert.equal(err.status, undefined, op);
      assert.ok(err.message.includes(endpoint), err.message);
      assert.ok(!err.message.includes("secret-not-in-messages"), err.message);
    }
  } finally {
    await s.close();
  }
});

Deno.test("s3: error classification from status, code and $retryable", () => {
  const ctx = { description: "s3://b", bucket: "b", op: "put", key: "k" };
  const svc = (name: string, status: number, extra: Record<string, unknown> = {}) =>
    Object.assign(
      new S3ServiceException({
        name,
        $fault: status >= 500 ? "server" : "client",
        $metadata: { httpStatusCode: status },
        message: "SDKTEXT from the service",
      }),
      extra,
    );
  const errno = (code: string) =>
    Object.assign(new Error(`SDKTEXT ${code}`), { code, $metadata: {} });
  const cases: [unknown, string, boolean, number | undefined][] = [
    // error, class, transient, status
    [svc("InternalError", 500), "StorageError", true, 500],
    [svc("ServiceUnavailable", 503), "StorageError", true, 503],
    [svc("SlowDown", 503), "StorageError", true, 503],
    [svc("Unknown", 502), "StorageError", true, 502],
    [svc("TooManyRequests", 429), "StorageError", true, 429],
    [svc("RequestTimeout", 400), "StorageError", true, 400],
    [svc("Whatever", 408), "StorageError", true, 408],
    [svc("Throttled", 400, { $retryable: { throttling: true } }), "StorageError", true, 400],
    [svc("InvalidArgument", 400), "StorageError", false, 400],
    [svc("EntityTooLarge", 400), "StorageError", false, 400],
    [svc("PreconditionFailed", 412), "StorageError", false, 412],
    [svc("NoSuchKey", 404), "NotFoundError", false, 404],
    [svc("NotFound", 404), "NotFoundError", false, 404],
    [svc("Unknown", 404), "NotFoundError", false, 404],
    [svc("NoSuchUpload", 404), "StorageError", false, 404],
    [svc("NoSuchBucket", 404), "StorageError", false, 404],
    [svc("AccessDenied", 403), "AuthError", false, 403],
    [svc("Unknown", 401), "AuthError", false, 401],
    [svc("RequestTimeTooSkewed", 403), "StorageError", true, 403],
    [errno("ECONNREFUSED"), "StorageError", true, undefined],
    [errno("ECONNRESET"), "StorageError", true, undefined],
    [errno("EPIPE"), "StorageError", true, undefined],
    [errno("ETIMEDOUT"), "StorageError", true, undefined],
    [errno("EAI_AGAIN"), "StorageError", true, undefined],
    [errno("ENOTFOUND"), "StorageError", false, undefined],
    [
      Object.assign(new Error("SDKTEXT t"), { name: "TimeoutError" }),
      "StorageError",
      true,
      undefined,
    ],
    [
      Object.assign(new Error("SDKTEXT c"), { name: "CredentialsProviderError" }),
      "AuthError",
      false,
      undefined,
    ],
    [new TypeError("SDKTEXT a bug"), "StorageError", false, undefined],
  ];
  for (const [err, cls, transient, status] of cases) {
    const mapped = s3Error(err, ctx);
    const label = `${(err as Error).name}/${status}`;
    assert.equal(mapped.constructor.name, cls, label);
    assert.equal(mapped.transient, transient, label);
    assert.equal(mapped.status, status, label);
    assert.equal(mapped.cause, err, label);
    assert.ok(mapped.message.startsWith("s3://b: put k: "), mapped.message);
    // Never the SDK's message text.
    assert.ok(!mapped.message.includes("SDKTEXT"), mapped.message);
  }
  const same = new StorageError("already typed", { transient: true });
  assert.equal(s3Error(same, ctx), same);
});

Deno.test("s3: bodyChunks reads web streams and Node Readables as plain Uint8Arrays", async () => {
  const enc = new TextEncoder();
  const web = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode("ab"));
      c.enqueue(enc.encode("cd"));
      c.close();
    },
  });
  const got: Uint8Array[] = [];
  for await (const c of bodyChunks(web)) got.push(c);
  assert.deepEqual(got.map((c) => new TextDecoder().decode(c)), ["ab", "cd"]);

  const node = Readable.from([Buffer.from("xy"), Buffer.from("z")]);
  const nodeGot: Uint8Array[] = [];
  for await (const c of bodyChunks(node)) nodeGot.push(c);
  assert.deepEqual(nodeGot.map((c) => c.constructor), [Uint8Array, Uint8Array], "not Buffer");
  assert.equal(new TextDecoder().decode(await readAll(bodyChunks(Readable.from([])))), "");

  // Leaving early cancels a web stream and destroys a Node stream (frees the connection).
  let cancelled = false;
  const endless = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(new Uint8Array(10));
    },
    cancel() {
      cancelled = true;
    },
  });
  for await (const _ of bodyChunks(endless)) break;
  assert.ok(cancelled, "web stream cancelled");
  const endlessNode = new Readable({
    read() {
      this.push(Buffer.alloc(10));
    },
  });
  for await (const _ of bodyChunks(endlessNode)) break;
  assert.ok(endlessNode.destroyed, "node stream destroyed");

  assert.deepEqual(await readAll(bodyChunks(undefined)), new Uint8Array(0));
  await assert.rejects(() => readAll(bodyChunks(42)), TypeError);
});

Deno.test("s3: options are validated", async () => {
  await assert.rejects(() => openS3Storage({ bucket: "" }), ConfigError);
  await assert.rejects(() => openS3Storage({ bucket: "b", partSize: 1024 }), ConfigError);
  await assert.rejects(() => openS3Storage({ bucket: "b", accessKeyId: "only-id" }), ConfigError);
  await assert.rejects(
    () => openS3Storage({ bucket: "b", endpoint: "127.0.0.1:9000" }),
    ConfigError,
  );
  await assert.rejects(() => openS3Storage({ bucket: "b", endpoint: "ftp://h/" }), ConfigError);
  const s = await openS3Storage({ bucket: "b", endpoint: "http://127.0.0.1:1" });
  try {
    assert.equal(s.description, "s3://b");
    assert.equal(s.partSize, 16 * MiB);
    // Bad ranges are refused before any request (port 1 would give a transient StorageError).
    await assert.rejects(() => s.get("k", { offset: -1, length: 1 }), RangeError);
    await assert.rejects(() => s.get("k", { offset: 0, length: 1.5 }), RangeError);
  } finally {
    await s.close();
  }
});
