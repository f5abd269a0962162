import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../src/errors.ts";
import {
  formatTimestamp,
  levelDir,
  ltxKey,
  parseLtxKey,
  parseTimestampMeta,
  SNAPSHOT_LEVEL,
  timestampMeta,
} from "../../src/storage/layout.ts";
import { parseBucketUrl } from "../../src/storage/url.ts";

const ONE = "0000000000000001";

Deno.test("layout: S3 keys use %04x level dirs", () => {
  assert.equal(levelDir("s3", "app.db", 0), "app.db/0000/");
  assert.equal(levelDir("s3", "app.db", SNAPSHOT_LEVEL), "app.db/0009/");
  assert.equal(
    ltxKey("s3", "app.db", 0, 7, 7),
    `app.db/0000/0000000000000007-0000000000000007.ltx`,
  );
  assert.equal(ltxKey("s3", "app.db", 1, 1, 6), `app.db/0001/${ONE}-0000000000000006.ltx`);
  assert.equal(ltxKey("s3", "app.db", 9, 1, 7), `app.db/0009/${ONE}-0000000000000007.ltx`);
  assert.equal(
    ltxKey("s3", "base/sub/x.db", 2, 0xabc, 0xdeadbeef),
    "base/sub/x.db/0002/0000000000000abc-00000000deadbeef.ltx",
  );
  assert.equal(
    ltxKey("s3", "p", 0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
    "p/0000/001fffffffffffff-001fffffffffffff.ltx",
  );
});

Deno.test("layout: S3 empty-prefix quirks are kept", () => {
  // s3://bkt/ gives Path "" and s3://bkt gives Path "." in Litestream (spec §2.1).
  assert.equal(ltxKey("s3", "", 0, 1, 1), `/0000/${ONE}-${ONE}.ltx`);
  assert.equal(ltxKey("s3", ".", 0, 1, 1), `./0000/${ONE}-${ONE}.ltx`);
  assert.equal(levelDir("s3", "", 9), "/0009/");
  assert.deepEqual(parseLtxKey("s3", "", `/0000/${ONE}-${ONE}.ltx`), {
    level: 0,
    minTXID: 1,
    maxTXID: 1,
  });
  assert.deepEqual(parseLtxKey("s3", ".", `./0003/${ONE}-${ONE}.ltx`), {
    level: 3,
    minTXID: 1,
    maxTXID: 1,
  });
  assert.equal(parseLtxKey("s3", "", `0000/${ONE}-${ONE}.ltx`), undefined);
});

Deno.test("layout: file keys use decimal ltx/<level> and join paths", () => {
  assert.equal(levelDir("file", "app.db", 0), "app.db/ltx/0/");
  assert.equal(levelDir("file", "app.db", 9), "app.db/ltx/9/");
  assert.equal(ltxKey("file", "app.db", 9, 1, 7), `app.db/ltx/9/${ONE}-0000000000000007.ltx`);
  assert.equal(ltxKey("file", "", 0, 1, 1), `ltx/0/${ONE}-${ONE}.ltx`);
  assert.equal(ltxKey("file", ".", 0, 1, 1), `ltx/0/${ONE}-${ONE}.ltx`);
  assert.equal(levelDir("file", "a/", 1), "a/ltx/1/");
  assert.equal(levelDir("file", "./a//b", 1), "a/b/ltx/1/");
  assert.deepEqual(parseLtxKey("file", "", `ltx/0/${ONE}-${ONE}.ltx`), {
    level: 0,
    minTXID: 1,
    maxTXID: 1,
  });
  assert.deepEqual(parseLtxKey("file", ".", `ltx/5/${ONE}-${ONE}.ltx`), {
    level: 5,
    minTXID: 1,
    maxTXID: 1,
  });
});

Deno.test("layout: parse round trip for every level", () => {
  for (const kind of ["s3", "file"] as const) {
    for (let level = 0; level <= SNAPSHOT_LEVEL; level++) {
      for (const [a, b] of [[1, 1], [2, 0x1f], [0x10000, 0x10001], [1, 2 ** 40]]) {
        const key = ltxKey(kind, "db", level, a, b);
        assert.ok(key.startsWith(levelDir(kind, "db", level)));
        assert.deepEqual(parseLtxKey(kind, "db", key), { level, minTXID: a, maxTXID: b }, key);
      }
    }
  }
});

Deno.test("layout: parse rejects non-canonical names", () => {
  const bad = [
    `db/0000/000000000000000A-${ONE}.ltx`, // upper-case hex
    `db/0000/000000000000001-${ONE}.ltx`, // 15 digits
    `db/0000/00000000000000001-${ONE}.ltx`, // 17 digits
    `db/0000/${ONE}-${ONE}.LTX`,
    `db/0000/${ONE}-${ONE}.ltx.tmp`,
    `db/0000/${ONE}_${ONE}.ltx`,
    `db/0000/${ONE}.ltx`,
    `db/000/${ONE}-${ONE}.ltx`, // 3-digit level dir
    `db/000A/${ONE}-${ONE}.ltx`,
    `db/000a/${ONE}-${ONE}.ltx`, // level 10 does not exist
    `db/0000/sub/${ONE}-${ONE}.ltx`,
    `db2/0000/${ONE}-${ONE}.ltx`, // other prefix
    `db/ltx/0/${ONE}-${ONE}.ltx`, // file layout under s3 parsing
    `db/0000/ffffffffffffffff-ffffffffffffffff.ltx`, // above 2^53-1: not representable
  ];
  for (const k of bad) assert.equal(parseLtxKey("s3", "db", k), undefined, k);
  const badFile = [
    `db/ltx/00/${ONE}-${ONE}.ltx`, // leading zero in decimal level
    `db/ltx/10/${ONE}-${ONE}.ltx`,
    `db/ltx/a/${ONE}-${ONE}.ltx`,
    `db/ltx/0/000000000000000A-${ONE}.ltx`,
    `db/ltx/0/00000000000001-${ONE}.ltx`,
    `db/0000/${ONE}-${ONE}.ltx`,
    `db/ltx/0/generations`,
  ];
  for (const k of badFile) assert.equal(parseLtxKey("file", "db", k), undefined, k);
});

Deno.test("layout: out-of-range levels and TXIDs are programming errors", () => {
  assert.throws(() => levelDir("s3", "p", 10), RangeError);
  assert.throws(() => levelDir("file", "p", -1), RangeError);
  assert.throws(() => ltxKey("s3", "p", 0, 1.5, 2), RangeError);
  assert.throws(() => ltxKey("s3", "p", 0, 1, 2 ** 53), RangeError);
});

Deno.test("layout: timestamp metadata formats like Go RFC3339Nano", () => {
  assert.deepEqual(timestampMeta(1_700_000_000_000), {
    "litestream-timestamp": "2023-11-14T22:13:20Z",
  });
  assert.equal(formatTimestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
  assert.equal(formatTimestamp(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
  assert.equal(formatTimestamp(1_700_000_000_100), "2023-11-14T22:13:20.1Z");
  assert.equal(formatTimestamp(1_700_000_000_001), "2023-11-14T22:13:20.001Z");
  assert.equal(formatTimestamp(0), "1970-01-01T00:00:00Z");
  assert.equal(formatTimestamp(-1), "1969-12-31T23:59:59.999Z");
  assert.throws(() => formatTimestamp(1.5), RangeError);
  assert.throws(() => formatTimestamp(NaN), RangeError);
});

Deno.test("layout: timestamp metadata parses RFC 3339 to ms", () => {
  for (const ms of [0, 1, 999, 1_700_000_000_000, 1_700_000_000_123, 253402300799999, -1]) {
    assert.equal(parseTimestampMeta(formatTimestamp(ms)), ms, String(ms));
  }
  assert.equal(parseTimestampMeta("2023-11-14T22:13:20.123456789Z"), 1_700_000_000_123);
  assert.equal(parseTimestampMeta("2023-11-14T22:13:20.1239Z"), 1_700_000_000_123); // truncated
  assert.equal(parseTimestampMeta("2023-11-14T22:13:20.5Z"), 1_700_000_000_500);
  assert.equal(parseTimestampMeta("2023-11-15T00:13:20+02:00"), 1_700_000_000_000);
  assert.equal(parseTimestampMeta("2023-11-14T20:43:20.25-01:30"), 1_700_000_000_250);
  assert.equal(parseTimestampMeta("2024-02-29T00:00:00Z"), Date.UTC(2024, 1, 29));
  assert.equal(parseTimestampMeta("0001-01-01T00:00:00Z"), -62135596800000); // Go's zero time
  for (
    const bad of [
      undefined,
      "",
      "2023-11-14",
      "2023-11-14 22:13:20Z",
      "2023-11-14t22:13:20z",
      "2023-11-14T22:13:20",
      "2023-11-14T22:13:20.Z",
      "2023-11-14T22:13:20.1234567890Z",
      "2023-13-14T22:13:20Z",
      "2023-02-29T22:13:20Z",
      "2023-04-31T22:13:20Z",
      "2023-11-14T24:00:00Z",
      "2023-11-14T22:60:20Z",
      "2023-11-14T22:13:60Z",
      "2023-11-14T22:13:20+2:00",
      "2023-11-14T22:13:20+24:00",
      "1700000000",
    ]
  ) {
    assert.equal(parseTimestampMeta(bad), undefined, String(bad));
  }
});

Deno.test("url: file buckets", () => {
  assert.deepEqual(parseBucketUrl("file:///var/backups"), {
    kind: "file",
    root: "/var/backups",
    prefix: "",
  });
  assert.deepEqual(parseBucketUrl("file:///var/backups/"), {
    kind: "file",
    root: "/var/backups",
    prefix: "",
  });
  assert.deepEqual(parseBucketUrl("file:///with%20space"), {
    kind: "file",
    root: "/with space",
    prefix: "",
  });
  assert.deepEqual(parseBucketUrl("/abs//x/../y"), { kind: "file", root: "/abs/y", prefix: "" });
  assert.deepEqual(parseBucketUrl("rel/dir"), {
    kind: "file",
    root: join(Deno.cwd(), "rel/dir"),
    prefix: "",
  });
  // Scheme-less bucket/prefix is a relative path here, never S3.
  assert.deepEqual(parseBucketUrl("bucket/prefix"), {
    kind: "file",
    root: join(Deno.cwd(), "bucket/prefix"),
    prefix: "",
  });
  assert.equal((parseBucketUrl("./x:y") as { root: string }).root, join(Deno.cwd(), "x:y"));
});

Deno.test("url: s3 buckets with Litestream query parameters", () => {
  assert.deepEqual(parseBucketUrl("s3://bkt/app/prod"), {
    kind: "s3",
    bucket: "bkt",
    prefix: "app/prod",
  });
  assert.deepEqual(parseBucketUrl("s3://bkt"), { kind: "s3", bucket: "bkt", prefix: "" });
  assert.deepEqual(parseBucketUrl("s3://bkt/"), { kind: "s3", bucket: "bkt", prefix: "" });
  assert.deepEqual(parseBucketUrl("s3://bkt//a//b/"), { kind: "s3", bucket: "bkt", prefix: "a/b" });
  assert.deepEqual(
    parseBucketUrl(
      "s3://bkt/p?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=true",
    ),
    {
      kind: "s3",
      bucket: "bkt",
      prefix: "p",
      endpoint: "http://127.0.0.1:9000",
      region: "eu-west-1",
      forcePathStyle: true,
    },
  );
  assert.deepEqual(parseBucketUrl("s3://bkt/p?force-path-style=false"), {
    kind: "s3",
    bucket: "bkt",
    prefix: "p",
    forcePathStyle: false,
  });
  assert.deepEqual(
    parseBucketUrl("s3://my.bucket-1/a%20b?endpoint=https%3A%2F%2Fs3.example.com"),
    { kind: "s3", bucket: "my.bucket-1", prefix: "a b", endpoint: "https://s3.example.com" },
  );
});

Deno.test("url: malformed buckets are ConfigErrors naming the value", () => {
  const bad = [
    "",
    "   ",
    "s3://",
    "s3:///prefix",
    "s3:bucket/prefix",
    "s3://bkt:9000/p",
    "s3://key:secret@bkt/p",
    "s3://bkt/p#frag",
    "s3://bkt/../p",
    "s3://bkt/a/./p",
    "s3://bkt/p?skipVerify=true",
    "s3://bkt/p?region=a&region=b",
    "s3://bkt/p?forcePathStyle=true&force-path-style=false",
    "s3://bkt/p?forcePathStyle=yes",
    "s3://bkt/p?endpoint=",
    "s3://bkt/%zz",
    "gs://bkt/p",
    "abs://acct:key@container/p",
    "abs://acct@container/p?sas=x",
    "sftp://host/p",
    "file://host/path",
    "file://relative/path",
    "file:relative",
    "file:///a?x=1",
    "file:///a%2Fb",
  ];
  for (const s of bad) {
    assert.throws(() => parseBucketUrl(s), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `${JSON.stringify(s)} -> ConfigError`);
      assert.ok(err.message.includes(JSON.stringify(s)), `message names ${JSON.stringify(s)}`);
      assert.ok(!err.message.includes("\n"), "one line");
      assert.match(err.message, /use |must |give |true or false|twice/, err.message);
      return true;
    });
  }
});

Deno.test("layout: splitLtxKey finds the database prefix of any LTX key", async () => {
  const { splitLtxKey } = await import("../../src/storage/layout.ts");
  assert.deepStrictEqual(
    splitLtxKey("file", "base/app.db/ltx/9/0000000000000001-000000000000000a.ltx"),
    {
      prefix: "base/app.db",
      level: 9,
      minTXID: 1,
      maxTXID: 10,
    },
  );
  assert.deepStrictEqual(
    splitLtxKey("file", "ltx/0/0000000000000002-0000000000000002.ltx")?.prefix,
    "",
  );
  assert.deepStrictEqual(splitLtxKey("s3", "app.db/0001/0000000000000001-0000000000000003.ltx"), {
    prefix: "app.db",
    level: 1,
    minTXID: 1,
    maxTXID: 3,
  });
  assert.equal(splitLtxKey("s3", "app.db/0000/0000000000000001-0000000000000001.LTX"), undefined);
  assert.equal(splitLtxKey("file", "app.db/lt/0/0000000000000001-0000000000000001.ltx"), undefined);
  assert.equal(splitLtxKey("file", "app.db/ltx/0/manifest.json"), undefined);
});
