/** Restore planning against the real Litestream v0.5 replica in the vectors. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { RestoreError } from "../../src/errors.ts";
import {
  listLtxFiles,
  type LtxFileRef,
  planRestore,
  type RestorePlan,
} from "../../src/restore/plan.ts";
import { formatTXID as txidHex } from "../../src/ltx/names.ts";
import { FileStorage } from "../../src/storage/file.ts";
import type { LayoutKind } from "../../src/storage/layout.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import type { ByteRange, ObjectInfo, Storage } from "../../src/storage/port.ts";
import { copyTree, rejects, VECTORS } from "../helpers/vectors.ts";

/** Await a rejection of class `cls` (whose message includes `part`, if given) and return it. */

const SET = join(VECTORS, "litestream-replica");
const REPLICA = join(SET, "replica");

interface PlanStep {
  level: number;
  snapshotMaxTXID?: string;
  file?: string;
}
interface Manifest {
  fileCounts: Record<string, number>;
  levels: Record<string, { path: string; header: { timestampMs: number } }[]>;
  timestampRestores: {
    name: string;
    timestampMs: number;
    expect: "ok" | "error";
    restoredTXID: string | null;
    referencePlan: PlanStep[] | null;
  }[];
  txidRestores: {
    txid: string;
    expect: "ok" | "error";
    referencePlan?: PlanStep[];
  }[];
  latestRestore: { restoredTXID: string; referencePlan: PlanStep[] };
}

const manifest: Manifest = JSON.parse(Deno.readTextFileSync(join(SET, "manifest.json")));

/** A FileStorage that counts gets: planning must not read what it does not need. */
class CountingStorage implements Storage {
  gets = 0;
  constructor(readonly inner: Storage) {}
  get description() {
    return this.inner.description;
  }
  put(key: string, body: Uint8Array | AsyncIterable<Uint8Array>, meta?: Record<string, string>) {
    return this.inner.put(key, body, meta);
  }
  get(key: string, range?: ByteRange) {
    this.gets++;
    return this.inner.get(key, range);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  delete(keys: string[]) {
    return this.inner.delete(keys);
  }
}

/** Render a plan like the manifest's referencePlan. */
function steps(plan: RestorePlan): PlanStep[] {
  return plan.files.map((f: LtxFileRef) =>
    f.level === 9 ? { level: 9, snapshotMaxTXID: txidHex(f.maxTXID) } : {
      level: f.level,
      file: `${txidHex(f.minTXID)}-${txidHex(f.maxTXID)}.ltx`,
    }
  );
}

/** Run `fn` with a writable copy of the replica, removed afterwards. */
async function withCopy(fn: (root: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  try {
    await copyTree(REPLICA, join(dir, "replica"));
    await fn(join(dir, "replica"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const replica = () => new FileStorage(REPLICA);

/** The handle of the database at `prefix` in `storage`, laid out as `kind`. */
function dbOf(storage: Storage, kind: LayoutKind = "file", prefix = ""): DbReplica {
  return new DbReplica({ storage, kind, basePrefix: "", url: storage.description }, prefix);
}

// ---- listing ----

Deno.test("listLtxFiles finds every level's files in (level, min, max) order", async () => {
  const files = await listLtxFiles(dbOf(replica()));
  const counts: Record<string, number> = {};
  for (const f of files) counts[f.level] = (counts[f.level] ?? 0) + 1;
  assert.deepEqual(counts, manifest.fileCounts);
  const want = Object.values(manifest.levels).flat().map((f) => f.path).sort();
  assert.deepEqual(files.map((f) => f.key).sort(), want);
  for (let i = 1; i < files.length; i++) {
    const a = files[i - 1], b = files[i];
    assert(
      a.level < b.level || (a.level === b.level && (a.minTXID < b.minTXID ||
        (a.minTXID === b.minTXID && a.maxTXID < b.maxTXID))),
      `${a.key} before ${b.key}`,
    );
  }
  assert(files.every((f) => f.size > 0 && f.timestamp === undefined));
});

Deno.test("listLtxFiles ignores keys that are not LTX names", async () => {
  await withCopy(async (root) => {
    await Deno.writeTextFile(join(root, "ltx/0/notes.txt"), "x");
    await Deno.writeTextFile(join(root, "ltx/0/00000000000000AA-00000000000000AA.ltx"), "x");
    await Deno.writeTextFile(join(root, "ltx/0/0000000000000099-0000000000000099.ltx.bak"), "x");
    await Deno.mkdir(join(root, "ltx/12"));
    await Deno.writeTextFile(join(root, "ltx/12/0000000000000099-0000000000000099.ltx"), "x");
    const files = await listLtxFiles(dbOf(new FileStorage(root)));
    assert.deepEqual(files.length, Object.values(manifest.fileCounts).reduce((a, b) => a + b));
  });
});

// ---- latest and TXID targets ----

Deno.test("latest plan matches Litestream's and reads no object", async () => {
  const s = new CountingStorage(replica());
  const plan = await planRestore(dbOf(s), { kind: "latest" });
  assert.deepEqual(steps(plan), manifest.latestRestore.referencePlan);
  assert.deepEqual(txidHex(plan.txid), manifest.latestRestore.restoredTXID);
  assert.deepEqual(plan.clampedToLatest, false);
  assert.deepEqual(s.gets, 0);
});

for (const t of manifest.txidRestores.filter((t) => t.expect === "ok")) {
  Deno.test(`TXID plan ${t.txid} matches Litestream's and reads no object`, async () => {
    const s = new CountingStorage(replica());
    const plan = await planRestore(dbOf(s), { kind: "txid", txid: parseInt(t.txid, 16) });
    assert.deepEqual(steps(plan), t.referencePlan);
    assert.deepEqual(txidHex(plan.txid), t.txid);
    assert.deepEqual(s.gets, 0);
  });
}

Deno.test("every TXID 1..latest is restorable while all L0 files exist", async () => {
  const s = replica();
  for (let txid = 1; txid <= 0x26; txid++) {
    const plan = await planRestore(dbOf(s), { kind: "txid", txid });
    assert.deepEqual(plan.txid, txid);
    assert.deepEqual(plan.files[0].minTXID, 1);
    for (let i = 1; i < plan.files.length; i++) {
      const p = plan.files[i - 1], f = plan.files[i];
      assert(f.minTXID <= p.maxTXID + 1 && f.maxTXID > p.maxTXID, `chain at ${f.key}`);
    }
  }
});

for (const t of manifest.txidRestores.filter((t) => t.expect === "error")) {
  Deno.test(`TXID ${t.txid} past the newest file is refused, naming the latest`, async () => {
    const e = await rejects(
      () => planRestore(dbOf(replica()), { kind: "txid", txid: parseInt(t.txid, 16) }),
      RestoreError,
    );
    assert.deepEqual(e.exitCode, 6);
    assert(e.message.includes(t.txid), e.message);
    assert(e.message.includes("0000000000000026"), e.message);
  });
}

// ---- time targets ----

function timePlanTests(label: string, storage: () => Promise<[Storage, () => Promise<void>]>) {
  for (const t of manifest.timestampRestores) {
    Deno.test(`${label}: time plan "${t.name}"`, async () => {
      const [s, done] = await storage();
      try {
        const target = { kind: "time" as const, ms: t.timestampMs };
        if (t.expect === "ok") {
          const plan = await planRestore(dbOf(s), target);
          assert.deepEqual(steps(plan), t.referencePlan);
          assert.deepEqual(txidHex(plan.txid), t.restoredTXID);
          assert.deepEqual(plan.clampedToLatest, false);
          assert.deepEqual(plan.pageSize, 4096);
        } else if (t.timestampMs > manifest.levels["9"].at(-1)!.header.timestampMs) {
          // Litestream refuses a time after the newest file; we restore the latest state and
          // say so through clampedToLatest.
          const plan = await planRestore(dbOf(s), target);
          assert.deepEqual(plan.clampedToLatest, true);
          assert.deepEqual(steps(plan), manifest.latestRestore.referencePlan);
          assert.deepEqual(txidHex(plan.txid), manifest.latestRestore.restoredTXID);
        } else {
          const e = await rejects(() => planRestore(dbOf(s), target), RestoreError);
          assert.deepEqual(e.exitCode, 6);
          assert(e.message.includes(new Date(t.timestampMs).toISOString()), e.message);
          assert(e.message.includes("oldest is 2026-11-24T08:47:52.494Z"), e.message);
        }
      } finally {
        await done();
      }
    });
  }
}

timePlanTests("in place", () => Promise.resolve([replica(), () => Promise.resolve()]));

// A git checkout gives every file the same fresh mtime: header timestamps must still rule.
timePlanTests("mtimes reset to now", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  const root = join(dir, "replica");
  await copyTree(REPLICA, root);
  const now = new Date();
  for (const f of Object.values(manifest.levels).flat()) {
    await Deno.utime(join(root, f.path), now, now);
  }
  return [new FileStorage(root), () => Deno.remove(dir, { recursive: true })];
});

Deno.test("a time plan reads headers only for candidate files, in bounded batches", async () => {
  const s = new CountingStorage(replica());
  const total = Object.values(manifest.fileCounts).reduce((a, b) => a + b);
  const t = manifest.timestampRestores.find((t) => t.name === "idle")!;
  const plan = await planRestore(dbOf(s), { kind: "time", ms: t.timestampMs }, {
    concurrency: 2,
  });
  assert.deepEqual(txidHex(plan.txid), t.restoredTXID);
  assert(s.gets > 0 && s.gets < total / 2, `${s.gets} header reads of ${total} files`);
});

Deno.test("time exactly at the oldest file's timestamp has nothing strictly before it", async () => {
  const oldest = Math.min(
    ...Object.values(manifest.levels).flat().map((f) => f.header.timestampMs),
  );
  const e = await rejects(
    () => planRestore(dbOf(replica()), { kind: "time", ms: oldest }),
    RestoreError,
  );
  assert(e.message.includes("no backup before"), e.message);
  const plan = await planRestore(dbOf(replica()), { kind: "time", ms: oldest + 1 });
  assert.deepEqual(plan.txid, 1);
});

// ---- gaps, empty and foreign layouts ----

/** Make TXID 0x23 reachable only through its L0 file, then delete that file. */
async function makeGap(root: string): Promise<void> {
  for (
    const p of [
      "ltx/9/0000000000000001-0000000000000026.ltx",
      "ltx/2/0000000000000021-0000000000000026.ltx",
      "ltx/1/0000000000000021-0000000000000025.ltx",
    ]
  ) await Deno.remove(join(root, p));
  const before = await planRestore(dbOf(new FileStorage(root)), { kind: "latest" });
  assert(before.files.some((f) => f.key === "ltx/0/0000000000000023-0000000000000023.ltx"));
  await Deno.remove(join(root, "ltx/0/0000000000000023-0000000000000023.ltx"));
}

Deno.test("a missing file that the latest plan needs is a gap naming the TXID range", async () => {
  await withCopy(async (root) => {
    await makeGap(root);
    const s = new FileStorage(root);
    const e = await rejects(() => planRestore(dbOf(s), { kind: "latest" }), RestoreError);
    assert.deepEqual(e.exitCode, 6);
    assert(e.message.includes("0000000000000023-0000000000000023"), e.message);
    assert(e.message.includes(s.description), e.message);

    // A TXID target inside the gap names the restorable TXIDs around it.
    const t = await rejects(
      () => planRestore(dbOf(s), { kind: "txid", txid: 0x24 }),
      RestoreError,
    );
    assert(t.message.includes("0000000000000022 (below)"), t.message);
    assert(t.message.includes("0000000000000023-0000000000000023 are missing"), t.message);
    // Before the gap everything still works.
    assert.deepEqual((await planRestore(dbOf(s), { kind: "txid", txid: 0x22 })).txid, 0x22);

    // A time after files beyond the gap cannot be served; a time before the gap can.
    const l0 = (txid: number) =>
      manifest.levels["0"].find((f) => f.path.endsWith(`${txidHex(txid)}-${txidHex(txid)}.ltx`))!
        .header.timestampMs;
    await rejects(
      () => planRestore(dbOf(s), { kind: "time", ms: l0(0x24) + 1 }),
      RestoreError,
      "0000000000000023-0000000000000023",
    );
    const ok = await planRestore(dbOf(s), { kind: "time", ms: l0(0x22) + 1 });
    assert.deepEqual(ok.txid, 0x22);
    assert.deepEqual(ok.clampedToLatest, false);
  });
});

Deno.test("no snapshot and no file from TXID 1 is a gap from the start", async () => {
  await withCopy(async (root) => {
    for (const level of ["1", "2", "9"]) {
      await Deno.remove(join(root, "ltx", level), { recursive: true });
    }
    for (const t of [1, 2, 3]) {
      await Deno.remove(join(root, `ltx/0/${txidHex(t)}-${txidHex(t)}.ltx`));
    }
    await rejects(
      () => planRestore(dbOf(new FileStorage(root)), { kind: "latest" }),
      RestoreError,
      "0000000000000001-0000000000000003",
    );
  });
});

Deno.test("a level-9 file that is not a snapshot cannot start a restore", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  try {
    await Deno.mkdir(join(dir, "ltx", "9"), { recursive: true });
    const name = "0000000000000002-0000000000000006.ltx";
    await Deno.copyFile(join(REPLICA, "ltx", "1", name), join(dir, "ltx", "9", name));
    const e = await rejects(
      () => planRestore(dbOf(new FileStorage(dir)), { kind: "latest" }),
      RestoreError,
      "no snapshot and no file starting at TXID 1",
    );
    assert.equal(e.exitCode, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an empty replica is 'no backup found', naming where", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  try {
    const s = new FileStorage(dir);
    const e = await rejects(
      () => planRestore(dbOf(s, "file", "db"), { kind: "latest" }),
      RestoreError,
      "no backup found at",
    );
    assert(e.message.includes(`${s.description}/db`), e.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a Litestream v0.3 layout is reported as such", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  try {
    const gen = join(dir, "db", "generations", "0123456789abcdef");
    await Deno.mkdir(join(gen, "snapshots"), { recursive: true });
    await Deno.writeTextFile(join(gen, "snapshots", "00000000.snapshot.lz4"), "x");
    for (const kind of ["file", "s3"] as const) {
      const e = await rejects(
        () => planRestore(dbOf(new FileStorage(dir), kind, "db"), { kind: "latest" }),
        RestoreError,
      );
      assert(e.message.includes("v0.3"), e.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the s3 layout plans the same replica under a prefix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-plan-" });
  try {
    for (const f of Object.values(manifest.levels).flat()) {
      const [, level, name] = f.path.split("/");
      const to = join(dir, "app.db", Number(level).toString(16).padStart(4, "0"));
      await Deno.mkdir(to, { recursive: true });
      await Deno.copyFile(join(REPLICA, f.path), join(to, name));
    }
    const s = new FileStorage(dir);
    for (const t of manifest.txidRestores.filter((t) => t.expect === "ok")) {
      const plan = await planRestore(dbOf(s, "s3", "app.db"), {
        kind: "txid",
        txid: parseInt(t.txid, 16),
      });
      assert.deepEqual(steps(plan), t.referencePlan);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a time inside a compacted file whose L0 files expired restores the state before it, no gap", async () => {
  await withCopy(async (root) => {
    // L1 0x21-0x25 remains; its L0 files 0x21-0x24 expired (as compaction's l0_retention does).
    for (
      const p of [
        "ltx/9/0000000000000001-0000000000000026.ltx",
        "ltx/2/0000000000000021-0000000000000026.ltx",
        ...[0x21, 0x22, 0x23, 0x24].map((t) => `ltx/0/${txidHex(t)}-${txidHex(t)}.ltx`),
      ]
    ) await Deno.remove(join(root, p));
    const s = new FileStorage(root);
    const l0 = (txid: number) =>
      manifest.levels["0"].find((f) => f.path.endsWith(`${txidHex(txid)}-${txidHex(txid)}.ltx`))!
        .header.timestampMs;
    // 0x23's moment lies inside the L1 file, which was written after it: the nearest point before.
    const inside = await planRestore(dbOf(s), { kind: "time", ms: l0(0x23) + 1 });
    assert.deepEqual(inside.txid, 0x20);
    // After the L1 file's own time, it serves the moment.
    const after = await planRestore(dbOf(s), { kind: "time", ms: l0(0x25) + 1 });
    assert.deepEqual(after.txid, 0x25);
    // A really missing file (nothing covers 0x21) is still a gap.
    await Deno.remove(join(root, "ltx/1/0000000000000021-0000000000000025.ltx"));
    await rejects(
      () => planRestore(dbOf(s), { kind: "time", ms: l0(0x26) + 1 }),
      RestoreError,
      "are missing",
    );
  });
});
