/**
 * restoreWithFallback on the real Litestream v0.5 replica with files made corrupt: the restore
 * plans around a corrupt snapshot or compacted file when other files cover the same TXIDs, and
 * the corruption error stands when none do. Every restore is checked against the vector's bytes
 * and content.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { IntegrityError, RestoreError } from "../../src/errors.ts";
import { CorruptFileError } from "../../src/restore/apply.ts";
import { type FallbackInfo, restoreWithFallback } from "../../src/restore/run.ts";
import type { Target } from "../../src/restore/time.ts";
import { formatTXID as txidHex } from "../../src/ltx/names.ts";
import { FileStorage } from "../../src/storage/file.ts";
import { POST_APPLY_CHECKSUM_META } from "../../src/storage/layout.ts";
import { openReplica } from "../../src/storage/open.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import { restore } from "../../mod.ts";
import { copyTree, rejects, rowsSha256, VECTORS } from "../helpers/vectors.ts";
import { fileChecksum } from "../helpers/checksums.ts";

const SET = join(VECTORS, "litestream-replica");

interface Expected {
  restoredDbSha256: string;
  rowsSha256: string;
  pageCount: number;
}
interface Manifest {
  timestampRestores: (
    & { name: string; timestampMs: number; restoredTXID: string | null }
    & Partial<
      Expected
    >
  )[];
  txidRestores: ({ txid: string } & Partial<Expected>)[];
  latestRestore: Expected & { restoredTXID: string };
}
const manifest: Manifest = JSON.parse(Deno.readTextFileSync(join(SET, "manifest.json")));
const LATEST = manifest.latestRestore;
const txidState = (txid: string) => manifest.txidRestores.find((t) => t.txid === txid) as Expected;
const timeState = (name: string) =>
  manifest.timestampRestores.find((t) => t.name === name)! as Expected & {
    timestampMs: number;
    restoredTXID: string;
  };

const SNAP_26 = "ltx/9/0000000000000001-0000000000000026.ltx";
const SNAP_1B = "ltx/9/0000000000000001-000000000000001b.ltx";
const SNAP_06 = "ltx/9/0000000000000001-0000000000000006.ltx";
const SNAP_01 = "ltx/9/0000000000000001-0000000000000001.ltx";
const L2_21_26 = "ltx/2/0000000000000021-0000000000000026.ltx";
const L1_0C_11 = "ltx/1/000000000000000c-0000000000000011.ltx";
const L1_26 = "ltx/1/0000000000000026-0000000000000026.ltx";
const L0_26 = "ltx/0/0000000000000026-0000000000000026.ltx";
const L0_0D = "ltx/0/000000000000000d-000000000000000d.ltx";

// ---- helpers ----

/** A copy of the vector replica under a temp dir, and an empty folder for outputs. */
async function withReplica(
  fn: (s: { root: string; storage: FileStorage; outDir: string; dir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-fallback-" });
  try {
    const root = join(dir, "replica");
    await copyTree(join(SET, "replica"), root);
    const outDir = join(dir, "out");
    await Deno.mkdir(outDir);
    await fn({ root, storage: new FileStorage(root), outDir, dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Flip one bit in the middle of the file's payload (compressed page data). */
async function corrupt(root: string, key: string): Promise<void> {
  const path = join(root, key);
  const bytes = await Deno.readFile(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x10;
  await Deno.writeFile(path, bytes);
}

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

function integrity(path: string): unknown[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare("PRAGMA integrity_check").all().map((r) => Object.values(r)[0]);
  } finally {
    db.close();
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** `out` is the only file in its folder (no temp file of a failed attempt) and holds `want`. */
async function checkRestored(out: string, want: Expected): Promise<void> {
  assert.deepEqual(await names(join(out, "..")), ["out.db"]);
  assert.equal(await sha256File(out), want.restoredDbSha256);
  assert.equal(rowsSha256(out), want.rowsSha256);
  assert.deepEqual(integrity(out), ["ok"]);
}

/** The handle of the database at the root of a file replica. */
function dbOf(storage: FileStorage): DbReplica {
  return new DbReplica({ storage, kind: "file", basePrefix: "", url: storage.description }, "");
}

/** Restore `target` into a fresh folder under outDir, recording every fallback. */
async function run(
  storage: FileStorage,
  outDir: string,
  label: string,
  target: Target,
  opts: Parameters<typeof restoreWithFallback>[3] = {},
) {
  const folder = join(outDir, label);
  await Deno.mkdir(folder);
  const out = join(folder, "out.db");
  const notes: FallbackInfo[] = [];
  const go = () =>
    restoreWithFallback(dbOf(storage), target, out, {
      ...opts,
      onFallback: (f) => notes.push(f),
    });
  return { out, folder, notes, go };
}

// ---- fallbacks that succeed ----

Deno.test("a corrupt newest snapshot: latest, its TXID and a time restore from the older snapshot", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    await corrupt(root, SNAP_26);
    const targets: [string, Target][] = [
      ["latest", { kind: "latest" }],
      ["txid", { kind: "txid", txid: 0x26 }],
      // After the newest file (the snapshot's own timestamp is not strictly before itself).
      ["time", { kind: "time", ms: timeState("after-last-file").timestampMs }],
    ];
    for (const [label, target] of targets) {
      const { out, notes, go } = await run(storage, outDir, label, target);
      const r = await go();
      assert.equal(txidHex(r.txid), LATEST.restoredTXID, label);
      assert.equal(notes.length, 1, label);
      assert.equal(notes[0].key, SNAP_26);
      assert.ok(notes[0].reason.length > 0 && !notes[0].reason.includes(SNAP_26), notes[0].reason);
      assert.deepEqual(r.fallbacks, notes);
      assert.deepEqual(r.plan.files.map((f) => f.key), [
        SNAP_1B,
        "ltx/2/0000000000000017-0000000000000020.ltx",
        L2_21_26,
      ]);
      assert.equal(r.files, 3);
      assert.equal(r.plan.clampedToLatest, label === "time");
      await checkRestored(out, LATEST);
    }
  });
});

Deno.test("corruption found mid-stream or in the trailer is planned around too", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    const path = join(root, SNAP_26);
    const good = await Deno.readFile(path);
    // Page 1's frame header (fails at once, pages half written), the trailer's checksum.
    for (const at of [105, good.length - 20]) {
      const bad = good.slice();
      bad[at] ^= 0x01;
      await Deno.writeFile(path, bad);
      const { out, notes, go } = await run(storage, outDir, `at-${at}`, { kind: "latest" });
      await go();
      assert.deepEqual(notes.map((n) => n.key), [SNAP_26], `byte ${at}`);
      await checkRestored(out, LATEST);
    }
  });
});

Deno.test("a corrupt older snapshot: a TXID and a time before the newest one fall back further", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    await corrupt(root, SNAP_1B);
    await corrupt(root, SNAP_06);
    const t = timeState("after-vacuum"); // planned on snapshot 1-1b
    const a = await run(storage, outDir, "time", { kind: "time", ms: t.timestampMs });
    const ra = await a.go();
    assert.equal(txidHex(ra.txid), t.restoredTXID);
    assert.deepEqual(a.notes.map((n) => n.key), [SNAP_1B, SNAP_06]);
    assert.equal(ra.plan.files[0].key, SNAP_01);
    await checkRestored(a.out, t);

    const b = await run(storage, outDir, "txid", { kind: "txid", txid: 0x14 }); // on 1-6
    const rb = await b.go();
    assert.deepEqual(b.notes.map((n) => n.key), [SNAP_06]);
    assert.equal(rb.plan.files[0].key, SNAP_01);
    await checkRestored(b.out, txidState("0000000000000014"));
  });
});

Deno.test("corrupt compacted files: lower levels down to L0 cover them", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    await corrupt(root, L1_0C_11);
    const a = await run(storage, outDir, "txid", { kind: "txid", txid: 0x14 });
    const ra = await a.go();
    assert.deepEqual(a.notes.map((n) => n.key), [L1_0C_11]);
    assert.ok(ra.plan.files.some((f) => f.key === "ltx/0/000000000000000c-000000000000000c.ltx"));
    await checkRestored(a.out, txidState("0000000000000014"));

    // Three corrupt files, found one attempt at a time; the last TXID comes from L0 in the end.
    for (const k of [SNAP_26, L2_21_26, L1_26]) await corrupt(root, k);
    const b = await run(storage, outDir, "latest", { kind: "latest" });
    const rb = await b.go();
    assert.deepEqual(b.notes.map((n) => n.key), [SNAP_26, L2_21_26, L1_26]);
    assert.equal(rb.plan.files.at(-1)!.key, L0_26);
    await checkRestored(b.out, LATEST);
  });
});

// ---- the error stands ----

Deno.test("a corrupt L0 file nothing else covers: exit 5 naming it, nothing written", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    await corrupt(root, L0_0D);
    const a = await run(storage, outDir, "txid", { kind: "txid", txid: 0x10 });
    const e = await rejects(a.go, CorruptFileError, L0_0D);
    assert.equal(e.exitCode, 5);
    assert.equal(e.key, L0_0D);
    assert.match(e.message, /no restore plan without it reaches TXID 0000000000000010/);
    assert.deepEqual(a.notes, []);
    assert.deepEqual(await names(a.folder), []);

    // Latest: after three fallbacks only L0 holds TXID 0x26; without it the plan would end at
    // 0x25, an older state than asked for, so the error stands instead.
    for (const k of [SNAP_26, L2_21_26, L1_26, L0_26]) await corrupt(root, k);
    const b = await run(storage, outDir, "latest", { kind: "latest" });
    const eb = await rejects(b.go, CorruptFileError, L0_26);
    assert.equal(eb.exitCode, 5);
    assert.match(eb.message, /reaches TXID 0000000000000026/);
    assert.deepEqual(b.notes.map((n) => n.key), [SNAP_26, L2_21_26, L1_26]);
    assert.deepEqual(await names(b.folder), []);
  });
});

Deno.test("maxFallbacks bounds the retries", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    await corrupt(root, SNAP_26);
    const a = await run(storage, outDir, "none", { kind: "latest" }, { maxFallbacks: 0 });
    const e = await rejects(a.go, CorruptFileError, SNAP_26);
    assert.match(e.message, /gave up after planning around 0 corrupt file/);
    assert.deepEqual(a.notes, []);
    assert.deepEqual(await names(a.folder), []);
  });
});

// ---- the recorded checksum ----

Deno.test("a recorded-checksum mismatch is not planned around; checkRecordedChecksum: false restores", async () => {
  await withReplica(async ({ root, storage, outDir }) => {
    const body = await Deno.readFile(join(root, SNAP_26));
    // The right record passes: the check compares, it does not just refuse any record.
    const good = await run(storage, outDir, "plain", { kind: "latest" });
    await good.go();
    const sum = await fileChecksum(good.out);
    await storage.put(SNAP_26, body, { [POST_APPLY_CHECKSUM_META]: sum });
    const right = await run(storage, outDir, "right", { kind: "latest" });
    await right.go();
    await checkRestored(right.out, LATEST);

    const wrong = sum === "8000000000000001" ? "8000000000000002" : "8000000000000001";
    await storage.put(SNAP_26, body, { [POST_APPLY_CHECKSUM_META]: wrong });
    const a = await run(storage, outDir, "mismatch", { kind: "latest" });
    const e = await rejects(a.go, IntegrityError, SNAP_26);
    assert.ok(!(e instanceof CorruptFileError), "a checksum record is no file's corruption");
    assert.equal(e.exitCode, 5);
    assert.ok(e.message.includes(wrong) && e.message.includes(sum), e.message);
    assert.ok(e.message.includes("--no-checksum-record"), e.message);
    assert.deepEqual(a.notes, []);
    assert.deepEqual(await names(a.folder), []);

    const b = await run(storage, outDir, "anyway", { kind: "latest" }, {
      checkRecordedChecksum: false,
    });
    await b.go();
    assert.deepEqual(b.notes, []);
    await checkRestored(b.out, LATEST);
  });
});

// ---- mod.ts ----

Deno.test("mod.ts restore(): falls back, refuses an output inside the replica", async () => {
  await withReplica(async ({ dir, outDir }) => {
    // The vector sits under the name "replica" in a bucket rooted at dir/bucket.
    const bucket = join(dir, "bucket");
    await copyTree(join(SET, "replica"), join(bucket, "app.db"));
    await corrupt(join(bucket, "app.db"), SNAP_26);
    const replica = await openReplica(`file://${bucket}`);
    assert.equal(replica.fileRoot, bucket);
    const notes: string[] = [];
    const out = join(outDir, "lib", "out.db");
    await Deno.mkdir(join(outDir, "lib"));
    const r = await restore({
      bucket: replica,
      name: "app.db",
      output: out,
      onFallback: (f) => notes.push(f.key),
    });
    assert.equal(txidHex(r.txid), LATEST.restoredTXID);
    assert.deepEqual(notes, [`app.db/${SNAP_26}`]);
    await checkRestored(out, LATEST);

    const inside = join(bucket, "restored.db");
    const e = await rejects(
      () => restore({ bucket: replica, name: "app.db", output: inside, force: true }),
      RestoreError,
      bucket,
    );
    assert.equal(e.exitCode, 6);
    assert.ok(e.message.includes(inside), e.message);
    assert.deepEqual(await names(bucket), ["app.db"]);
  });
});
