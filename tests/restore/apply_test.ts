/** Restores of the real Litestream v0.5 replica: bytes, content, faults and output handling. */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { IntegrityError, RestoreError } from "../../src/errors.ts";
import { LtxEncoder } from "../../src/ltx/encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM } from "../../src/ltx/header.ts";
import { applyPlan, type RestoreResult } from "../../src/restore/apply.ts";
import { planRestore, type RestorePlan } from "../../src/restore/plan.ts";
import type { Target } from "../../src/restore/time.ts";
import { formatTXID as txidHex } from "../../src/ltx/names.ts";
import { FileStorage } from "../../src/storage/file.ts";
import type { Storage } from "../../src/storage/port.ts";
import type { LayoutKind } from "../../src/storage/layout.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import { copyTree, rejects, rowsSha256, VECTORS } from "../helpers/vectors.ts";
import { pathExists } from "../../src/fsutil.ts";

const SET = join(VECTORS, "litestream-replica");
const REPLICA = join(SET, "replica");

/** The handle of the database at `prefix` in `storage`, laid out as `kind`. */
function dbOf(storage: Storage, kind: LayoutKind = "file", prefix = ""): DbReplica {
  return new DbReplica({ storage, kind, basePrefix: "", url: storage.description }, prefix);
}

interface Expected {
  restoredDbSha256: string;
  rowsSha256: string;
  pageCount: number;
  pageSize: number;
}
interface Manifest {
  levels: Record<string, { path: string; header: { timestampMs: number } }[]>;
  timestampRestores: ({
    name: string;
    timestampMs: number;
    expect: "ok" | "error";
    restoredTXID: string | null;
  } & Partial<Expected>)[];
  txidRestores: ({ txid: string; expect: "ok" | "error" } & Partial<Expected>)[];
  latestRestore: Expected & { restoredTXID: string };
  sourceFinal: { file: string; sha256: string };
}

const manifest: Manifest = JSON.parse(Deno.readTextFileSync(join(SET, "manifest.json")));
const NEWEST_MS = Math.max(
  ...Object.values(manifest.levels).flat().map((f) => f.header.timestampMs),
);

// ---- helpers ----

/** Await a rejection of class `cls` (whose message includes `part`, if given) and return it. */

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path, { read: true });
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}

function integrityOk(path: string): boolean {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all();
    return rows.length === 1 && Object.values(rows[0])[0] === "ok";
  } catch {
    return false; // "database disk image is malformed"
  } finally {
    db.close();
  }
}

/**
 * Files under `dir` this process holds open (Linux /proc; empty elsewhere). Matched by path so
 * that other test modules running in parallel in this process do not disturb the count.
 */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  const real = Deno.realPathSync(dir);
  try {
    for (const e of Deno.readDirSync("/proc/self/fd")) {
      try {
        const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
        if (target.startsWith(real + "/")) out.push(target);
      } catch { /* closed meanwhile */ }
    }
  } catch { /* no /proc */ }
  return out;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function restore(
  storage: Storage,
  target: Target,
  out: string,
  opts?: Parameters<typeof applyPlan>[3],
): Promise<{ plan: RestorePlan; result: RestoreResult }> {
  const plan = await planRestore(dbOf(storage), target);
  const result = await applyPlan(storage, plan, out, opts);
  return { plan, result };
}

/** The restore left exactly `out` in its folder, with the expected bytes and content. */
async function checkRestored(out: string, want: Expected, result: RestoreResult, txid: string) {
  const dir = join(out, "..");
  assert.deepEqual(await names(dir), ["out.db"]);
  assert.equal(await sha256File(out), want.restoredDbSha256);
  assert.equal(txidHex(result.txid), txid);
  assert.equal(result.pageSize, want.pageSize);
  assert.equal(result.commit, want.pageCount);
  assert.equal(result.bytes, want.pageCount * want.pageSize);
  assert.equal((await Deno.stat(out)).size, result.bytes);
  assert.equal(result.outPath, out);
  assert.ok(integrityOk(out));
  assert.equal(rowsSha256(out), want.rowsSha256);
}

const replica = () => new FileStorage(REPLICA);

// ---- the vector's restores ----

for (const t of manifest.txidRestores.filter((t) => t.expect === "ok")) {
  Deno.test(`restore --txid ${t.txid} gives Litestream's bytes`, async () => {
    await withTemp(async (dir) => {
      const out = join(dir, "out.db");
      const { result } = await restore(
        replica(),
        { kind: "txid", txid: parseInt(t.txid, 16) },
        out,
      );
      await checkRestored(out, t as Expected, result, t.txid);
    });
  });
}

function timeRestoreTests(label: string, storage: () => Promise<[Storage, () => Promise<void>]>) {
  for (const t of manifest.timestampRestores) {
    Deno.test(`${label}: restore --point-in-time "${t.name}"`, async () => {
      const [s, done] = await storage();
      try {
        await withTemp(async (dir) => {
          const out = join(dir, "out.db");
          const target: Target = { kind: "time", ms: t.timestampMs };
          if (t.expect === "ok") {
            const { plan, result } = await restore(s, target, out);
            assert.equal(plan.clampedToLatest, false);
            await checkRestored(out, t as Expected, result, t.restoredTXID!);
          } else if (t.timestampMs > NEWEST_MS) {
            // Deliberate difference: Litestream refuses a time after the newest file ("timestamp
            // does not exist"); we restore the latest state and report clampedToLatest.
            const { plan, result } = await restore(s, target, out);
            assert.equal(plan.clampedToLatest, true);
            await checkRestored(
              out,
              manifest.latestRestore,
              result,
              manifest.latestRestore.restoredTXID,
            );
          } else {
            const e = await rejects(
              () => restore(s, target, out),
              RestoreError,
              "no backup before",
            );
            assert.equal(e.exitCode, 6);
            assert.deepEqual(await names(dir), []);
          }
        });
      } finally {
        await done();
      }
    });
  }
}

timeRestoreTests("in place", () => Promise.resolve([replica(), () => Promise.resolve()]));

// As after a git checkout: every file's mtime is "now"; the header timestamps still decide.
timeRestoreTests("mtimes reset to now", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-" });
  const root = join(dir, "replica");
  await copyTree(REPLICA, root);
  const now = new Date();
  for (const f of Object.values(manifest.levels).flat()) {
    await Deno.utime(join(root, f.path), now, now);
  }
  return [new FileStorage(root), () => Deno.remove(dir, { recursive: true })];
});

Deno.test("latest restore is byte-identical to source-final.db", async () => {
  await withTemp(async (dir) => {
    const out = join(dir, "out.db");
    const progress: [number, number][] = [];
    const { result } = await restore(replica(), { kind: "latest" }, out, {
      onProgress: (done, total) => progress.push([done, total]),
    });
    assert.deepEqual(
      await Deno.readFile(out),
      await Deno.readFile(join(SET, manifest.sourceFinal.file)),
    );
    await checkRestored(out, manifest.latestRestore, result, manifest.latestRestore.restoredTXID);
    // Progress counts LTX bytes read and ends at the plan's total.
    assert.ok(progress.length > 0);
    const [done, total] = progress.at(-1)!;
    assert.equal(done, total);
    assert.ok(progress.every(([d], i) => i === 0 || d >= progress[i - 1][0]));
  });
});

Deno.test("a long chain of small files restores the same bytes as the snapshot", async () => {
  // Only L0 files: 38 files applied one after another, including the VACUUM shrink.
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await copyTree(join(REPLICA, "ltx", "0"), join(root, "ltx", "0"));
    const out = join(dir, "out", "out.db");
    await Deno.mkdir(join(dir, "out"));
    const { plan, result } = await restore(new FileStorage(root), { kind: "latest" }, out, {
      integrity: "none",
    });
    assert.equal(plan.files.length, 38);
    assert.equal(result.files, 38);
    await checkRestored(out, manifest.latestRestore, result, manifest.latestRestore.restoredTXID);
  });
});

// ---- faults ----

Deno.test("a corrupt byte in a needed file is an exit-5 error naming the key; no output", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await copyTree(REPLICA, root);
    const key = "ltx/9/0000000000000001-0000000000000026.ltx";
    const bytes = await Deno.readFile(join(root, key));
    // Page 1's header flags (fails at once, mid-stream), page data, the trailer checksum.
    for (const at of [105, Math.floor(bytes.length / 2), bytes.length - 20]) {
      const bad = bytes.slice();
      bad[at] ^= 0x01;
      await Deno.writeFile(join(root, key), bad);
      const outDir = join(dir, `out-${at}`);
      await Deno.mkdir(outDir);
      const e = await rejects(
        () => restore(new FileStorage(root), { kind: "latest" }, join(outDir, "out.db")),
        IntegrityError,
        key,
      );
      assert.equal(e.exitCode, 5);
      assert.deepEqual(await names(outDir), [], `leftovers after corrupting byte ${at}`);
      // The replica object was closed even though decoding stopped part-way.
      assert.deepEqual(openUnder(root), [], `replica file left open after corrupting byte ${at}`);
    }
  });
});

Deno.test("a file whose header disagrees with its key is refused, naming the key", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await copyTree(REPLICA, root);
    const key = "ltx/0/0000000000000007-0000000000000007.ltx";
    await Deno.copyFile(join(root, "ltx/0/0000000000000006-0000000000000006.ltx"), join(root, key));
    const out = join(dir, "out.db");
    const plan = await planRestore(dbOf(new FileStorage(root)), { kind: "txid", txid: 7 });
    assert.ok(plan.files.some((f) => f.key === key));
    const e = await rejects(() => applyPlan(new FileStorage(root), plan, out), IntegrityError, key);
    assert.equal(e.exitCode, 5);
    assert.deepEqual(openUnder(root), [], "the refused object was left open");
    assert.equal(await pathExists(out), false);
    assert.deepEqual(await names(dir), ["replica"]);
  });
});

Deno.test("a plan with a hole between files is refused while applying", async () => {
  await withTemp(async (dir) => {
    const s = replica();
    const good = await planRestore(dbOf(s), { kind: "txid", txid: 0x10 });
    // Drop one file from the middle of a valid plan: TXIDs no longer continue.
    const holed: RestorePlan = { ...good, files: good.files.filter((_, i) => i !== 2) };
    const missing = good.files[3].key;
    const out = join(dir, "out.db");
    await rejects(() => applyPlan(s, holed, out), IntegrityError, missing);
    // And a plan that does not start at TXID 1.
    const headless: RestorePlan = { ...good, files: good.files.slice(1) };
    await rejects(() => applyPlan(s, headless, out), IntegrityError, "not 1");
    assert.deepEqual(await names(dir), []);
  });
});

// ---- output handling ----

Deno.test("an existing output is refused without force and left untouched", async () => {
  await withTemp(async (dir) => {
    const out = join(dir, "out.db");
    await Deno.writeTextFile(out, "precious");
    const e = await rejects(() => restore(replica(), { kind: "latest" }, out), RestoreError, out);
    assert.equal(e.exitCode, 6);
    assert.equal(await Deno.readTextFile(out), "precious");
    assert.deepEqual(await names(dir), ["out.db"]);
  });
});

Deno.test("an output that appears during the restore is not overwritten", async () => {
  await withTemp(async (dir) => {
    const out = join(dir, "out.db");
    const e = await rejects(
      () =>
        restore(replica(), { kind: "latest" }, out, {
          onProgress: () => {
            try {
              Deno.writeTextFileSync(out, "written meanwhile", { createNew: true });
            } catch (e) {
              if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
            }
          },
        }),
      RestoreError,
      out,
    );
    assert.equal(e.exitCode, 6);
    assert.equal(await Deno.readTextFile(out), "written meanwhile");
    assert.deepEqual(await names(dir), ["out.db"]);
  });
});

Deno.test("a leftover -wal, -shm or -journal of the output is refused without force", async () => {
  for (const side of ["-wal", "-shm", "-journal"]) {
    await withTemp(async (dir) => {
      const out = join(dir, "out.db");
      await Deno.writeTextFile(out + side, "stale");
      await rejects(() => restore(replica(), { kind: "latest" }, out), RestoreError, out + side);
      assert.deepEqual(await names(dir), [`out.db${side}`]);
    });
  }
});

Deno.test("force replaces the output and removes its stale -wal/-shm/-journal", async () => {
  await withTemp(async (dir) => {
    const out = join(dir, "out.db");
    await Deno.writeTextFile(out, "old database");
    for (const side of ["-wal", "-shm", "-journal"]) await Deno.writeTextFile(out + side, "stale");
    const { result } = await restore(replica(), { kind: "latest" }, out, { force: true });
    await checkRestored(out, manifest.latestRestore, result, manifest.latestRestore.restoredTXID);
  });
});

Deno.test("the output's directory must exist", async () => {
  await withTemp(async (dir) => {
    const missing = join(dir, "no", "such");
    const e = await rejects(
      () => restore(replica(), { kind: "latest" }, join(missing, "out.db")),
      RestoreError,
      missing,
    );
    assert.equal(e.exitCode, 6);
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("integrity 'none' and 'quick' give the same bytes", async () => {
  for (const integrity of ["none", "quick"] as const) {
    await withTemp(async (dir) => {
      const out = join(dir, "out.db");
      const { result } = await restore(replica(), { kind: "txid", txid: 0x14 }, out, { integrity });
      const want = manifest.txidRestores.find((t) => t.txid === "0000000000000014")!;
      await checkRestored(out, want as Expected, result, want.txid);
    });
  }
});

// ---- crafted chains (made with our encoder) for what the real replica cannot show ----

/** Write one NoChecksum LTX file into a file-layout replica at `root`. */
async function writeLtx(
  root: string,
  f: { level?: number; min: number; max: number; commit: number; pageSize?: number },
  pages: [number, Uint8Array][],
): Promise<string> {
  const pageSize = f.pageSize ?? 4096;
  const key = `ltx/${f.level ?? 0}/${txidHex(f.min)}-${txidHex(f.max)}.ltx`;
  const chunks: Uint8Array[] = [];
  const enc = new LtxEncoder(
    {
      flags: HEADER_FLAG_NO_CHECKSUM,
      pageSize,
      commit: f.commit,
      minTXID: f.min,
      maxTXID: f.max,
      timestamp: Date.UTC(2026, 0, 1) + f.max,
      preApplyChecksum: 0n,
      walOffset: 0,
      walSize: 0,
      walSalt1: 0,
      walSalt2: 0,
      nodeID: 0n,
    },
    (c) => Promise.resolve(void chunks.push(c)),
    { format: "block" },
  );
  for (const [pgno, data] of pages) await enc.encodePage(pgno, data);
  await enc.finish();
  await Deno.mkdir(join(root, "ltx", String(f.level ?? 0)), { recursive: true });
  await Deno.writeFile(join(root, key), concat(chunks));
  return key;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Pages of source-final.db (a real database), 1-based. */
const SOURCE = Deno.readFileSync(join(SET, manifest.sourceFinal.file));
const page = (pgno: number) => SOURCE.slice((pgno - 1) * 4096, pgno * 4096);
const range = (from: number, to: number): [number, Uint8Array][] =>
  Array.from({ length: to - from + 1 }, (_, i) => [from + i, page(from + i)]);

Deno.test("growth without its new pages leaves a hole: refused, naming the page and key", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await writeLtx(root, { min: 1, max: 1, commit: 2 }, range(1, 2));
    const key = await writeLtx(root, { min: 2, max: 2, commit: 4 }, [[4, page(4)]]);
    const out = join(dir, "out.db");
    const e = await rejects(
      () => restore(new FileStorage(root), { kind: "latest" }, out),
      IntegrityError,
      "page 3 of 4",
    );
    assert.ok(e.message.includes(key), e.message);
    assert.deepEqual(await names(dir), ["replica"]);
  });
});

Deno.test("pages dropped by a shrink must be rewritten when the database regrows", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await writeLtx(root, { min: 1, max: 1, commit: 20 }, range(1, 20));
    await writeLtx(root, { min: 2, max: 2, commit: 2 }, [[1, page(1)]]);
    // Regrowth to 20 that brings back every page but 11: the old page 11 must not count.
    const key = await writeLtx(
      root,
      { min: 3, max: 3, commit: 20 },
      range(3, 20).filter(([p]) => p !== 11),
    );
    const out = join(dir, "out.db");
    await rejects(
      () => restore(new FileStorage(root), { kind: "latest" }, out),
      IntegrityError,
      `page 11 of 20 after ${key}`,
    );
    assert.deepEqual(await names(dir), ["replica"]);
  });
});

Deno.test("files with different page sizes do not chain", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    await writeLtx(root, { min: 1, max: 1, commit: 2 }, range(1, 2));
    const key = await writeLtx(root, { min: 2, max: 2, commit: 1, pageSize: 512 }, [
      [1, page(1).slice(0, 512)],
    ]);
    await rejects(
      () => restore(new FileStorage(root), { kind: "latest" }, join(dir, "out.db")),
      IntegrityError,
      key,
    );
    assert.deepEqual(await names(dir), ["replica"]);
  });
});

Deno.test("a result that fails PRAGMA integrity_check is an exit-5 error and is removed", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    // A valid LTX file of a broken database: page 50 (an events leaf) loses its cell pointers.
    const broken = page(50);
    broken.fill(0, 8);
    await writeLtx(root, { level: 9, min: 1, max: 1, commit: 100 }, [
      ...range(1, 49),
      [50, broken],
      ...range(51, 100),
    ]);
    const s = new FileStorage(root);
    const out = join(dir, "out.db");
    const e = await rejects(
      () => restore(s, { kind: "latest" }, out),
      IntegrityError,
      "integrity_check: Tree 3 page 50 cell 2",
    );
    assert.equal(e.exitCode, 5);
    assert.deepEqual(await names(dir), ["replica"]);
    // The same file restores without the check: the check is what refused it.
    await restore(s, { kind: "latest" }, out, { integrity: "none" });
    assert.equal(integrityOk(out), false);
  });
});

Deno.test("a result SQLite cannot even open is an integrity error, not a database error", async () => {
  await withTemp(async (dir) => {
    const root = join(dir, "replica");
    const noise = new Uint8Array(4096).fill(0x5a);
    await writeLtx(root, { min: 1, max: 1, commit: 2 }, [[1, noise], [2, noise]]);
    const out = join(dir, "out.db");
    const e = await rejects(
      () => restore(new FileStorage(root), { kind: "latest" }, out),
      IntegrityError,
    );
    assert.equal(e.exitCode, 5);
    assert.deepEqual(await names(dir), ["replica"]);
  });
});
