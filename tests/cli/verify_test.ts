/**
 * `walrust verify` as a subprocess on real replicas: one walrust wrote (several `watch --once`
 * runs and two snapshots) with files deleted, flipped or truncated, the golden Litestream v0.5
 * replica, and the same checks on S3 (Ceph RGW) when one is configured.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { walrust } from "../helpers/walrust.ts";
import { SqliteWriter } from "../helpers/sqlite_writer.ts";
import { replicaFiles } from "../helpers/replica.ts";
import { copyTree, VECTORS } from "../helpers/vectors.ts";
import { openTestS3, requireS3OrSkip, type S3TestConfig } from "../helpers/s3env.ts";
import { readAll } from "../../src/storage/port.ts";
import { formatTXID } from "../../src/ltx/names.ts";
import { FileStorage } from "../../src/storage/file.ts";
import { POST_APPLY_CHECKSUM_META } from "../../src/storage/layout.ts";

type LtxFile = Awaited<ReturnType<typeof replicaFiles>>[number];

interface VerifyJson {
  ok: boolean;
  exit_code: number;
  name: string;
  restored: boolean;
  txid: string | null;
  timestamp: string | null;
  files_checked: number;
  bytes: number;
  restore_seconds: number;
  checksum_record: string | null;
  window: {
    oldest_txid: string | null;
    oldest_time: string | null;
    newest_txid: string | null;
    newest_time: string | null;
  };
  fallback: { restorable: boolean; note: string } | null;
  errors: { key: string | null; error: string }[];
}

/** A replica walrust wrote, and what it holds. */
interface Built {
  dir: string;
  root: string;
  bucket: string;
  /** TMPDIR of every verify run: must be empty after each. */
  tmp: string;
  /** Every LTX file, by level then TXID. */
  files: LtxFile[];
  /** TXID of the older and the newer snapshot (the requested one). */
  snap1: number;
  snap2: number;
  latest: number;
  /** A moment between two syncs after the newer snapshot, and the TXID restorable at it. */
  mark: Date;
  markTxid: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function once(db: string, bucket: string): Promise<void> {
  const r = await walrust(["watch", db, "--bucket", bucket, "--once"]);
  assert.equal(r.code, 0, r.stderr);
}

async function maxTxid(root: string): Promise<number> {
  return Math.max(...(await replicaFiles(root, "app.db")).map((f) => f.maxTXID));
}

/**
 * The writer keeps its connection (and so the WAL) open between `watch --once` runs, so each run
 * adds level-0 files rather than a fresh snapshot.
 */
async function build(): Promise<Built> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-cli-" });
  const root = join(dir, "bucket");
  const bucket = `file://${root}`;
  const tmp = join(dir, "tmp");
  await Deno.mkdir(tmp);
  const db = join(dir, "app.db");
  const w = await SqliteWriter.start(db, { autocheckpoint: 0 });
  let requested: number, markTxid: number, mark: Date;
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    await once(db, bucket);
    for (let i = 0; i < 3; i++) {
      await w.exec(`INSERT INTO t (v) VALUES ('a${i}'); INSERT INTO t (v) VALUES ('b${i}')`);
      await once(db, bucket);
    }
    const snap = await walrust(["snapshot", db, "--bucket", bucket, "--json"]);
    assert.equal(snap.code, 0, snap.stderr);
    requested = parseInt(JSON.parse(snap.stdout).txid, 16);
    for (let i = 0; i < 2; i++) {
      await w.exec(`INSERT INTO t (v) VALUES (hex(randomblob(500)))`);
      await once(db, bucket);
    }
    markTxid = await maxTxid(root);
    await sleep(30);
    mark = new Date();
    await sleep(30);
    for (let i = 0; i < 3; i++) {
      await w.exec(`INSERT INTO t (v) VALUES (hex(randomblob(500)))`);
      await once(db, bucket);
    }
  } finally {
    await w.close();
  }
  const files = await replicaFiles(root, "app.db");
  const snaps = files.filter((f) => f.level === 9).map((f) => f.maxTXID).sort((a, b) => a - b);
  assert.ok(snaps.length >= 2, `expected two snapshots, got ${snaps}`);
  assert.equal(snaps.at(-1), requested, "the requested snapshot is the newest");
  const l0After = files.filter((f) => f.level === 0 && f.minTXID > snaps.at(-1)!);
  assert.ok(l0After.length >= 4, `expected L0 files after the newest snapshot: ${l0After.length}`);
  return {
    dir,
    root,
    bucket,
    tmp,
    files,
    snap1: snaps[0],
    snap2: snaps.at(-1)!,
    latest: await maxTxid(root),
    mark,
    markTxid,
  };
}

/** Run verify with TMPDIR inside the test's folder, and check nothing was left there. */
async function verify(b: Built, ...args: string[]) {
  const r = await walrust(["verify", "app.db", "--bucket", b.bucket, ...args], {
    env: { TMPDIR: b.tmp },
  });
  const left = [...Deno.readDirSync(b.tmp)].map((e) => e.name);
  assert.deepEqual(left, [], `verify left ${left} in its temp folder`);
  return r;
}

async function verifyJson(b: Built, ...args: string[]) {
  const r = await verify(b, "--json", ...args);
  return { ...r, json: JSON.parse(r.stdout) as VerifyJson };
}

function keyOf(b: Built, f: LtxFile): string {
  return f.path.slice(b.root.length + 1);
}

async function flipByte(path: string): Promise<void> {
  const bytes = await Deno.readFile(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x20;
  await Deno.writeFile(path, bytes);
}

/** A fresh replica per test: each one damages it differently. */
function withBuilt(name: string, fn: (b: Built) => Promise<void>) {
  Deno.test(name, async () => {
    const b = await build();
    try {
      await fn(b);
    } finally {
      await Deno.remove(b.dir, { recursive: true });
    }
  });
}

withBuilt(
  "verify: a good replica exits 0; --json names the latest TXID, its time and the window",
  async (b) => {
    const { code, json, stderr } = await verifyJson(b);
    assert.equal(code, 0, stderr);
    assert.equal(json.ok, true);
    assert.equal(json.exit_code, 0);
    assert.equal(json.name, "app.db");
    assert.equal(json.txid, formatTXID(b.latest));
    assert.ok(json.timestamp && Date.parse(json.timestamp) > b.mark.getTime(), json.timestamp!);
    assert.deepEqual(json.errors, []);
    // "matched" exactly when walrust recorded the checksum with the chain's last file.
    const last = b.files.find((f) => f.level === 0 && f.maxTXID === b.latest)!;
    const meta = (await new FileStorage(b.root).head(keyOf(b, last)))?.meta ?? {};
    const recorded = meta[POST_APPLY_CHECKSUM_META] !== undefined;
    assert.equal(json.checksum_record, recorded ? "matched" : "absent");
    // The chain: the newer snapshot and every L0 after it.
    const chain = b.files.filter((f) => f.level === 0 && f.minTXID > b.snap2).length + 1;
    assert.equal(json.files_checked, chain);
    const sizes = b.files.filter((f) =>
      (f.level === 9 && f.maxTXID === b.snap2) || f.minTXID > b.snap2
    )
      .reduce((n, f) => n + Deno.statSync(f.path).size, 0);
    assert.equal(json.bytes, sizes);
    assert.equal(json.window.oldest_txid, formatTXID(1));
    assert.equal(json.window.newest_txid, formatTXID(b.latest));
    assert.ok(Date.parse(json.window.oldest_time!) < Date.parse(json.window.newest_time!));
    assert.ok(json.restore_seconds >= 0 && json.restore_seconds < 60);

    const text = await verify(b);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /: OK\n/);
    assert.match(text.stdout, new RegExp(`restored TXID ${formatTXID(b.latest)}`));
    assert.match(text.stdout, /files checked: \d+ \(\d+ bytes\)/);
    assert.match(text.stdout, /restorable window: TXID 0000000000000001 \(/);

    // --all decodes every file of the database.
    const all = await verifyJson(b, "--all");
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.json.files_checked, b.files.length);
  },
);

withBuilt(
  "verify: --txid and --point-in-time verify those states; a TXID past the end exits 6",
  async (b) => {
    const mid = b.snap1 + 1; // restorable only from the older snapshot and L0 files
    assert.ok(mid < b.snap2);
    const t = await verifyJson(b, "--txid", String(mid));
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.json.txid, formatTXID(mid));
    assert.equal(t.json.window.newest_txid, formatTXID(b.latest));

    const p = await verifyJson(b, "--point-in-time", b.mark.toISOString());
    assert.equal(p.code, 0, p.stderr);
    assert.equal(p.json.txid, formatTXID(b.markTxid));
    assert.ok(Date.parse(p.json.timestamp!) < b.mark.getTime());

    const past = await verifyJson(b, "--txid", String(b.latest + 5));
    assert.equal(past.code, 6, past.stderr);
    assert.equal(past.json.ok, false);
    assert.equal(past.json.restored, false);
    assert.match(past.json.errors[0].error, /cannot be restored/);

    const before = await verifyJson(b, "--point-in-time", "2000-01-01T00:00:00Z");
    assert.equal(before.code, 6, before.stderr);
  },
);

withBuilt(
  "verify: a deleted L0 in the middle of the chain is a gap: exit 5 naming the TXIDs",
  async (b) => {
    const after = b.files.filter((f) => f.level === 0 && f.minTXID > b.snap2);
    const gone = after[1];
    await Deno.remove(gone.path);
    const { code, json, stderr } = await verifyJson(b);
    assert.equal(code, 5, stderr);
    assert.equal(json.ok, false);
    assert.equal(json.restored, false);
    assert.match(json.errors[0].error, new RegExp(`TXIDs ${formatTXID(gone.minTXID)}-`));
    assert.match(stderr, /gap in the backup/);
    // The window ends where the chain stops.
    assert.equal(json.window.newest_txid, formatTXID(gone.minTXID - 1));
  },
);

withBuilt(
  "verify: a flipped byte in an L0 of the chain exits 5 naming it, not restorable without it",
  async (b) => {
    const bad = b.files.filter((f) => f.level === 0 && f.minTXID > b.snap2).at(-2)!;
    await flipByte(bad.path);
    const { code, json, stderr } = await verifyJson(b);
    assert.equal(code, 5, stderr);
    assert.equal(json.ok, false);
    assert.equal(json.restored, false);
    assert.equal(json.errors.length, 1, stderr);
    assert.equal(json.errors[0].key, keyOf(b, bad));
    assert.equal(json.fallback?.restorable, false);
    assert.match(stderr, new RegExp(`error: ${keyOf(b, bad)}: `));
    assert.match(stderr, /not restorable without it/);
  },
);

withBuilt(
  "verify: a corrupt newest snapshot exits 5 even though the older one restores the same TXID",
  async (b) => {
    const snap = b.files.find((f) => f.level === 9 && f.maxTXID === b.snap2)!;
    await flipByte(snap.path);
    const { code, json, stderr } = await verifyJson(b);
    assert.equal(code, 5, stderr);
    assert.equal(json.ok, false);
    assert.equal(json.restored, true);
    assert.equal(json.txid, formatTXID(b.latest));
    assert.equal(json.errors[0].key, keyOf(b, snap));
    assert.equal(json.fallback?.restorable, true);
    assert.match(json.fallback!.note, /restorable without it from snapshot app\.db\/ltx\/9\//);
    // The fallback's base is an older snapshot, never the corrupt one.
    assert.ok(!json.fallback!.note.includes(keyOf(b, snap)));

    const text = await verify(b);
    assert.equal(text.code, 5);
    assert.match(text.stdout, /FAILED: integrity/);
    assert.match(text.stdout, /restorable without it from snapshot/);
  },
);

withBuilt("verify: a truncated snapshot exits 5 naming it", async (b) => {
  // Truncate every snapshot the chain could start from at or below the newest one's TXID.
  const snap = b.files.find((f) => f.level === 9 && f.maxTXID === b.snap2)!;
  const size = Deno.statSync(snap.path).size;
  await Deno.truncate(snap.path, Math.floor(size / 2));
  const { code, json, stderr } = await verifyJson(b);
  assert.equal(code, 5, stderr);
  assert.equal(json.errors[0].key, keyOf(b, snap));
  assert.match(json.errors[0].error, /truncated|ends|shorter|past the end/);
});

withBuilt("verify: no snapshot and no file from TXID 1 exits 6 (nothing restorable)", async (b) => {
  for (const f of b.files) if (f.level === 9 || f.minTXID === 1) await Deno.remove(f.path);
  const { code, json, stderr } = await verifyJson(b);
  assert.equal(code, 6, stderr);
  assert.equal(json.ok, false);
  assert.equal(json.restored, false);
  assert.equal(json.window.oldest_txid, null);
  assert.match(json.errors[0].error, /TXIDs 0000000000000001-[0-9a-f]{16} are missing/);
  const text = await verify(b);
  assert.equal(text.code, 6);
  assert.match(text.stdout, /FAILED: not restorable/);
});

withBuilt(
  "verify: --all finds a corrupt L0 older than the newest snapshot that the chain skips",
  async (b) => {
    const old = b.files.find((f) => f.level === 0 && f.maxTXID <= b.snap2 && f.minTXID > 1)!;
    await flipByte(old.path);
    const plain = await verifyJson(b);
    assert.equal(plain.code, 0, plain.stderr); // the latest chain does not need it
    const all = await verifyJson(b, "--all");
    assert.equal(all.code, 5, all.stderr);
    assert.equal(all.json.restored, true);
    assert.deepEqual(all.json.errors.map((e) => e.key), [keyOf(b, old)]);
    assert.match(all.stderr, new RegExp(`error: ${keyOf(b, old)}: `));
  },
);

Deno.test("verify: storage that cannot be read exits 4, and --json still prints one object", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-cli-" });
  try {
    await Deno.writeTextFile(join(dir, "walrust.toml"), "[retry]\nmax_retries = 0\n");
    const r = await walrust([
      "--config",
      join(dir, "walrust.toml"),
      "verify",
      "app.db",
      "--bucket",
      "s3://nobucket/x",
      "--endpoint",
      "http://127.0.0.1:9",
      "--json",
    ], { env: { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "y", TMPDIR: dir } });
    assert.equal(r.code, 4, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.ok, false);
    assert.equal(json.exit_code, 4);
    assert.equal(json.errors.length, 1);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["walrust.toml"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify: the golden Litestream v0.5 replica verifies, --all included", async () => {
  const set = join(VECTORS, "litestream-replica");
  const manifest = JSON.parse(await Deno.readTextFile(join(set, "manifest.json")));
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-cli-" });
  try {
    await copyTree(join(set, "replica"), join(dir, "bucket", "ls"));
    const tmp = join(dir, "tmp");
    await Deno.mkdir(tmp);
    const r = await walrust(
      ["verify", "ls", "--bucket", `file://${dir}/bucket`, "--all", "--json"],
      { env: { TMPDIR: tmp } },
    );
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout) as VerifyJson;
    assert.equal(json.ok, true);
    assert.equal(json.txid, manifest.latestRestore.restoredTXID);
    assert.equal(json.checksum_record, "absent"); // Litestream records none
    assert.equal(json.window.oldest_txid, formatTXID(1));
    let count = 0;
    for (const level of Deno.readDirSync(join(dir, "bucket", "ls", "ltx"))) {
      count += [...Deno.readDirSync(join(dir, "bucket", "ls", "ltx", level.name))].length;
    }
    assert.equal(json.files_checked, count);
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- S3 (Ceph RGW) ----

const cfg = await requireS3OrSkip();

function s3Env(c: S3TestConfig, tmp: string): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: c.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
    AWS_REGION: c.region,
    AWS_ENDPOINT_URL_S3: c.endpoint,
    TMPDIR: tmp,
  };
}

Deno.test({
  name: "s3: verify a replica on RGW: good exits 0; a flipped byte, a deleted middle L0 file, a " +
    "truncated snapshot exit 5 naming the object",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-verify-s3-" });
    const t = await openTestS3(c); // its cleanup deletes everything under the prefix
    const { s3 } = t;
    const prefix = t.prefix.replace(/\/$/, "");
    const bucket = `s3://${c.bucket}/${prefix}`;
    try {
      const db = join(dir, "app.db");
      const env = s3Env(c, dir);
      const w = await SqliteWriter.start(db, { autocheckpoint: 0 });
      try {
        await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
        for (let i = 0; i < 3; i++) {
          await w.exec(`INSERT INTO t (v) VALUES ('v${i}')`);
          const r = await walrust(["watch", db, "--bucket", bucket, "--once"], { env });
          assert.equal(r.code, 0, r.stderr);
        }
      } finally {
        await w.close();
      }
      const good = await walrust(["verify", "app.db", "--bucket", bucket, "--json", "--all"], {
        env,
      });
      assert.equal(good.code, 0, good.stderr);
      const json = JSON.parse(good.stdout) as VerifyJson;
      const keys: { key: string; level: number }[] = [];
      for await (const o of s3.list(`${prefix}/app.db/`)) {
        const m = /\/([0-9a-f]{4})\/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.exec(o.key);
        if (m) keys.push({ key: o.key, level: parseInt(m[1], 16) });
      }
      assert.equal(json.files_checked, keys.length);
      assert.ok(parseInt(json.txid!, 16) >= 3, good.stdout);

      const newest = keys.filter((k) => k.level === 0).map((k) => k.key).sort().at(-1)!;
      const bytes = await readAll(await s3.get(newest));
      const head = await s3.head(newest);
      const copy = new Uint8Array(bytes);
      copy[Math.floor(copy.length / 2)] ^= 0x20;
      await s3.put(newest, copy, head?.meta);
      const bad = await walrust(["verify", "app.db", "--bucket", bucket, "--json"], { env });
      assert.equal(bad.code, 5, bad.stderr);
      const badJson = JSON.parse(bad.stdout) as VerifyJson;
      assert.equal(badJson.errors[0].key, newest);
      await s3.put(newest, bytes, head?.meta);

      // A deleted middle level-0 file: a gap, exit 5, naming the missing TXIDs.
      const l0 = keys.filter((k) => k.level === 0).map((k) => k.key).sort();
      const middle = l0[Math.floor(l0.length / 2)];
      const middleBytes = await readAll(await s3.get(middle));
      const middleHead = await s3.head(middle);
      await s3.delete([middle]);
      const gap = await walrust(["verify", "app.db", "--bucket", bucket, "--json"], { env });
      assert.equal(gap.code, 5, gap.stderr);
      const txid = /([0-9a-f]{16})-[0-9a-f]{16}\.ltx$/.exec(middle)![1];
      assert.match(gap.stdout, new RegExp(txid), gap.stdout);
      await s3.put(middle, middleBytes, middleHead?.meta);

      // A truncated snapshot: exit 5 naming it.
      const snapshot = keys.filter((k) => k.level === 9).map((k) => k.key).sort().at(-1)!;
      const snapBytes = await readAll(await s3.get(snapshot));
      await s3.put(
        snapshot,
        snapBytes.subarray(0, snapBytes.length - 100),
        (await s3.head(snapshot))?.meta,
      );
      const cut = await walrust(["verify", "app.db", "--bucket", bucket, "--json"], { env });
      assert.equal(cut.code, 5, cut.stderr);
      assert.ok(
        (JSON.parse(cut.stdout) as VerifyJson).errors.some((e) => e.key === snapshot),
        cut.stdout,
      );
      assert.deepEqual(
        [...Deno.readDirSync(dir)].filter((n) => n.name.startsWith("walrust-verify")),
        [],
      );
    } finally {
      await t.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
