/**
 * Compaction, L0 expiry and retention inside a real `walrust watch`, on the filesystem backend and
 * on RGW side by side: a writer in another process (long-lived connection, autocheckpoint on)
 * inserts, updates, deletes and VACUUMs for WALRUST_COMPACTION_SECONDS (default 300) with the
 * intervals shortened in config. Then: L1, L2 and L3 files exist, covered L0 files are gone
 * from the replica and from the local state folder, every file decodes (`walrust ltx verify`),
 * ten recorded moments inside the L0 window restore exactly, older moments restore to a
 * consistent earlier state never after them, and once compaction has caught up a latest restore
 * reads at most 10 objects (counted by a storage wrapper) and equals the source.
 */
import assert from "node:assert/strict";
import { SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { requireS3OrSkip, s3Options, uniquePrefix } from "../helpers/s3env.ts";
import { openS3Storage } from "../../src/storage/s3.ts";
import { openReplica, type Replica } from "../../src/storage/open.ts";
import type { Storage } from "../../src/storage/port.ts";
import { CountingStorage } from "../helpers/counting_storage.ts";
import { DbReplica, type ReplicaFile } from "../../src/storage/replica.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { restore } from "../../mod.ts";
import { RestoreError } from "../../src/errors.ts";
import { contiguousRuns } from "../../src/engine/compactor.ts";
import { DatabaseSync } from "node:sqlite";

const cfg = await requireS3OrSkip();
const SECONDS = Number(Deno.env.get("WALRUST_COMPACTION_SECONDS") ?? 300);
/** Shortened intervals: the levels, L0 expiry, snapshots and retention scaled down together. */
const LEVELS_S = [3, 15, 60];
const L0_RETENTION_S = Math.max(20, Math.round(SECONDS / 5));
const PITR_WINDOW_S = Math.round(SECONDS / 2);

Deno.test("contiguousRuns: gaps start a new run; files inside the previous one are skipped", () => {
  const f = (minTXID: number, maxTXID: number) => ({ minTXID, maxTXID });
  assert.deepEqual(contiguousRuns([f(3, 3), f(1, 1), f(2, 2)]), [[f(1, 1), f(2, 2), f(3, 3)]]);
  assert.deepEqual(contiguousRuns([f(1, 4), f(2, 3), f(5, 6)]), [[f(1, 4), f(5, 6)]]);
  assert.deepEqual(contiguousRuns([f(1, 2), f(2, 5), f(9, 9), f(10, 12)]), [
    [f(1, 2), f(2, 5)],
    [f(9, 9), f(10, 12)],
  ]);
  assert.deepEqual(contiguousRuns([]), []);
});

/** The workload, step by step: what row i does, and the content after n steps. */
const PAD = (id: number) => String(id).padStart(400, "0");
function stepSql(i: number): string {
  const bump = 1 + (104729 % i);
  let sql = `BEGIN; INSERT INTO k (id, n, pad) VALUES (${i}, 0, '${PAD(i)}'); ` +
    `UPDATE k SET n = n + 1 WHERE id = ${bump}; `;
  if (i % 100 === 0) sql += `DELETE FROM k WHERE id % 13 = 0 AND id <= ${i - 200}; `;
  return sql + "COMMIT;";
}
function modelAt(n: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 1; i <= n; i++) {
    m.set(i, 0);
    const bump = 1 + (104729 % i);
    if (m.has(bump)) m.set(bump, m.get(bump)! + 1);
    if (i % 100 === 0) {
      for (const id of [...m.keys()]) if (id % 13 === 0 && id <= i - 200) m.delete(id);
    }
  }
  return m;
}

/** Rows of a restored database, checked for integrity and padding. */
function restoredRows(path: string): Map<number, number> {
  const ic = integrityCheck(path);
  assert.deepEqual(ic, ["ok"], `${path}: integrity_check`);
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const bad = db.prepare("SELECT count(*) AS c FROM k WHERE pad != printf('%0400d', id)").get();
    assert.equal(bad?.c, 0, `${path}: padding`);
    const m = new Map<number, number>();
    for (const r of db.prepare("SELECT id, n FROM k ORDER BY id").all()) {
      m.set(Number(r.id), Number(r.n));
    }
    return m;
  } finally {
    db.close();
  }
}

interface Backend {
  label: string;
  bucket: string;
  env: Record<string, string>;
  /** The replica seen by the test, through `storage` when given. */
  replica(storage?: (s: Storage) => Storage): Promise<Replica>;
  cleanup(): Promise<void>;
}

function fileBackend(dir: string): Backend {
  const url = `file://${dir}/replica`;
  return {
    label: "file",
    bucket: url,
    env: {},
    async replica(wrap) {
      const r = await openReplica(url);
      return wrap ? { ...r, storage: wrap(r.storage) } : r;
    },
    cleanup: () => Promise.resolve(),
  };
}

async function s3Backend(): Promise<Backend> {
  const c = cfg!;
  const prefix = uniquePrefix().replace(/\/$/, "");
  const bucket = `s3://${c.bucket}/${prefix}`;
  const s3 = await openS3Storage(s3Options(c));
  return {
    label: "s3",
    bucket,
    env: {
      AWS_ACCESS_KEY_ID: c.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
      AWS_REGION: c.region,
      AWS_ENDPOINT_URL_S3: c.endpoint,
    },
    replica(wrap) {
      const storage = wrap ? wrap(s3) : s3;
      return Promise.resolve({ storage, kind: "s3", basePrefix: prefix, url: bucket });
    },
    async cleanup() {
      const keys: string[] = [];
      for await (const o of s3.list(`${prefix}/`)) keys.push(o.key);
      await s3.delete(keys);
      await s3.close();
    },
  };
}

function config(): string {
  return `[sync]
wal_sync_interval = 0.2
snapshot_interval = ${Math.round(SECONDS * 0.45)}
l0_retention = ${L0_RETENTION_S}
[compaction]
levels = [${LEVELS_S.map((s) => `"${s}s"`).join(", ")}]
[retention]
prune_interval = 20
pitr_window = ${PITR_WINDOW_S}
`;
}

/** One backend's whole run; returns a line for the log. */
async function runOne(b: Backend, dir: string): Promise<string> {
  const db = `${dir}/app.db`;
  await Deno.writeTextFile(`${dir}/walrust.toml`, config());
  const w = await SqliteWriter.start(db);
  await w.exec("CREATE TABLE k (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, pad TEXT NOT NULL)");
  const watch = new WalrustProcess(
    ["--config", `${dir}/walrust.toml`, "watch", db, "--bucket", b.bucket, "--no-metrics"],
    { env: b.env },
  );
  const moments: { at: number; step: number }[] = [];
  let step = 0;
  try {
    await watch.waitFor("watching");
    const start = Date.now();
    const end = start + SECONDS * 1000;
    // Moments: ten inside the final L0 window, a few older ones.
    const recent = end - (L0_RETENTION_S * 1000) / 2;
    const nextMoment = () => {
      const last = moments.at(-1)?.at ?? start;
      return last < recent ? last + (recent - start) / 4 : last + (end - recent) / 12;
    };
    let momentAt = nextMoment();
    let vacuumed = false;
    const recentCount = () => moments.filter((m) => m.at >= recent).length;
    while (Date.now() < end || recentCount() < 10) {
      step++;
      await w.exec(stepSql(step));
      if (!vacuumed && Date.now() > start + (SECONDS * 1000) / 2) {
        await w.exec("VACUUM"); // the database shrinks and pages move: compaction must follow
        vacuumed = true;
      }
      if (Date.now() >= momentAt) {
        await waitCaughtUp(db, undefined, "app.db");
        const at = Date.now();
        // The next file must be written strictly after `at` (header times are milliseconds).
        while (Date.now() <= at + 1) await new Promise((r) => setTimeout(r, 1));
        moments.push({ at, step });
        momentAt = nextMoment();
      } else {
        await new Promise((r) => setTimeout(r, 60)); // workload pacing (~12 steps/s)
      }
    }
    await waitCaughtUp(db, undefined, "app.db", 60_000);

    // Moments: exact inside the L0 window; older ones a consistent state no later than them.
    const replica = await b.replica();
    const recentMoments = moments.filter((m) => m.at >= recent);
    assert.ok(recentMoments.length >= 10, `${b.label}: ${recentMoments.length} recent moments`);
    let pruned = 0;
    for (const [i, m] of moments.entries()) {
      const out = `${dir}/pitr-${i}.db`;
      try {
        await restore({ name: "app.db", output: out, bucket: replica, at: m.at });
      } catch (e) {
        // Retention may have pruned points older than its PITR window; never newer ones.
        if (!(e instanceof RestoreError) || m.at >= Date.now() - PITR_WINDOW_S * 1000) throw e;
        pruned++;
        continue;
      }
      const got = restoredRows(out);
      if (recentMoments.includes(m)) {
        assert.deepEqual(got, modelAt(m.step), `${b.label}: moment ${i} (step ${m.step})`);
      } else {
        const n = Math.max(0, ...got.keys());
        assert.ok(n <= m.step, `${b.label}: moment ${i} restored step ${n} > ${m.step}`);
        assert.deepEqual(got, modelAt(n), `${b.label}: moment ${i} restored as step ${n}`);
      }
      await Deno.remove(out);
    }

    // What a latest restore reads while compaction lags behind the writes (reported only).
    const during = await b.replica((s) => new CountingStorage(s));
    await restore({ name: "app.db", output: `${dir}/during.db`, bucket: during });
    const duringGets = (during.storage as CountingStorage).gets;
    assert.deepEqual(restoredRows(`${dir}/during.db`), modelAt(step), `${b.label}: latest`);

    // Quiet: wait until level 3 covers everything, then count what a latest restore reads.
    const dbr = DbReplica.of(replica, "app.db");
    const finalTXID = await waitCaughtUp(db, undefined, "app.db");
    const deadline = Date.now() + (LEVELS_S[2] + 60) * 1000;
    let files: ReplicaFile[] = [];
    for (;;) {
      files = await dbr.files();
      if (files.some((f) => f.level === 3 && f.maxTXID >= finalTXID)) break;
      if (Date.now() > deadline) {
        throw new Error(
          `${b.label}: level 3 did not reach TXID ${finalTXID}; stderr:\n${watch.stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const byLevel = (l: number) => files.filter((f) => f.level === l);
    for (const l of [1, 2, 3, 9]) {
      assert.ok(byLevel(l).length > 0, `${b.label}: no level-${l} file`);
    }
    // Covered L0 files older than l0_retention are gone: what is left is recent.
    const l0 = byLevel(0);
    assert.ok(l0.length < finalTXID / 4, `${b.label}: ${l0.length} L0 of ${finalTXID} TXIDs left`);
    assert.ok(Math.min(...l0.map((f) => f.minTXID)) > 1, `${b.label}: the first L0 file stayed`);
    const local = [...Deno.readDirSync(`${dir}/.app.db-walrust/ltx/0`)].length;
    assert.ok(local < finalTXID / 4, `${b.label}: ${local} local L0 files kept`);
    assert.ok(watch.stderr.includes("INFO  retention"), `${b.label}: retention never ran`);

    const counting = await b.replica((s) => new CountingStorage(s));
    const latest = `${dir}/latest.db`;
    const r = await restore({ name: "app.db", output: latest, bucket: counting });
    const gets = (counting.storage as CountingStorage).gets;
    assert.equal(r.txid, finalTXID);
    assert.ok(gets <= 10, `${b.label}: a latest restore read ${gets} objects`);
    assert.deepEqual(restoredRows(latest), modelAt(step), `${b.label}: latest`);

    // Every file decodes and checks out with the CLI's own verifier (watch stopped first: it
    // would go on expiring level-0 files under the copy).
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, `${b.label}: watch's exit code`);
    const copies: string[] = [];
    await Deno.mkdir(`${dir}/files`);
    for (const f of await dbr.files()) {
      const path = `${dir}/files/${f.level}-${f.key.split("/").pop()}`;
      const body = await dbr.openLtx(f);
      const out = await Deno.open(path, { write: true, createNew: true });
      for await (const c of body) await out.write(c);
      out.close();
      copies.push(path);
    }
    const v = await walrust(["ltx", "verify", ...copies]);
    assert.equal(v.code, 0, `${b.label}: ltx verify: ${v.stdout}${v.stderr}`);
    const errors = watch.stderr.split("\n").filter((l) => /ERROR|WARN/.test(l));
    assert.deepEqual(errors, [], `${b.label}: errors in watch's log`);
    return `${b.label}: ${step} steps, ${moments.length} moments (${pruned} pruned by retention), ` +
      `final TXID ${finalTXID}, ` +
      `levels ${[0, 1, 2, 3, 9].map((l) => `L${l}=${byLevel(l).length}`).join(" ")}, ` +
      `latest restore read ${duringGets} objects right after the writes, ${gets} once compacted`;
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
  }
}

Deno.test({
  name: `compaction in watch for ${SECONDS} s (file and RGW side by side): levels, L0 expiry, ` +
    "retention, exact PITR in the L0 window, a latest restore of <= 10 objects",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dirs = [await Deno.makeTempDir({ prefix: "walrust-compact-" })];
    const backends = [fileBackend(dirs[0])];
    if (cfg) {
      dirs.push(await Deno.makeTempDir({ prefix: "walrust-compact-s3-" }));
      backends.push(await s3Backend());
    }
    try {
      const lines = await Promise.all(backends.map((b, i) => runOne(b, dirs[i])));
      for (const l of lines) console.log(l);
    } finally {
      for (const b of backends) await b.cleanup().catch(() => {});
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});
