/** Retention (engine/retention.ts) with an injected clock, and `prune` on a real replica. */
import assert from "node:assert/strict";
import { isoWeek, planRetention, type RetentionFile } from "../../src/engine/retention.ts";
import { chainEnd } from "../../src/engine/reconcile.ts";
import { DEFAULT_RETENTION } from "../../src/config/schema.ts";
import { ConfigError } from "../../src/errors.ts";
import { prune, restore } from "../../mod.ts";
import { dumpContent, runSql } from "../helpers/sqlite_writer.ts";
import { walrust } from "../helpers/walrust.ts";
import { replicaFiles } from "../helpers/replica.ts";
import { requireS3OrSkip, s3Options, uniquePrefix } from "../helpers/s3env.ts";
import { openS3Storage } from "../../src/storage/s3.ts";

const s3cfg = await requireS3OrSkip();

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 11, 1, 12, 30);

/** A year of hourly snapshots, and one L0 per 10 minutes in the last two days. */
function aYear(): { files: RetentionFile[]; snaps: RetentionFile[] } {
  const files: RetentionFile[] = [];
  const snaps: RetentionFile[] = [];
  let txid = 0;
  for (let t = NOW - 365 * DAY; t <= NOW; t += 10 * 60_000) {
    txid++;
    if (t >= NOW - 2 * DAY) {
      files.push({
        level: 0,
        minTXID: txid,
        maxTXID: txid,
        key: `l0/${txid}`,
        size: 10,
        timestamp: t,
      });
    }
    if ((t - (NOW - 365 * DAY)) % HOUR === 0) {
      const s = {
        level: 9,
        minTXID: 1,
        maxTXID: txid,
        key: `l9/${txid}`,
        size: 1000,
        timestamp: t,
      };
      files.push(s);
      snaps.push(s);
    }
  }
  return { files, snaps };
}

/** The GFS set computed the plain way: per tier, the newest snapshot of each of the newest N buckets. */
function expectedGfs(snaps: RetentionFile[]): Set<string> {
  const tiers: [number, (ms: number) => string][] = [
    [DEFAULT_RETENTION.hourly, (ms) => new Date(ms).toISOString().slice(0, 13)],
    [DEFAULT_RETENTION.daily, (ms) => new Date(ms).toISOString().slice(0, 10)],
    [DEFAULT_RETENTION.weekly, isoWeek],
    [DEFAULT_RETENTION.monthly, (ms) => new Date(ms).toISOString().slice(0, 7)],
  ];
  const out = new Set<string>();
  for (const [n, bucket] of tiers) {
    const newest = new Map<string, RetentionFile>();
    for (const s of snaps) {
      const b = bucket(s.timestamp);
      if (!newest.has(b) || newest.get(b)!.maxTXID < s.maxTXID) newest.set(b, s);
    }
    const buckets = [...newest.values()].sort((a, b) => b.maxTXID - a.maxTXID).slice(0, n);
    for (const s of buckets) out.add(s.key);
  }
  return out;
}

Deno.test("ISO weeks: Monday starts the week, the week with Jan 4 is week 1", () => {
  assert.equal(isoWeek(Date.UTC(2026, 0, 1)), "2026-W01"); // a Thursday
  assert.equal(isoWeek(Date.UTC(2027, 0, 3)), "2026-W53"); // a Sunday
  assert.equal(isoWeek(Date.UTC(2027, 0, 4)), "2027-W01"); // a Monday
  assert.equal(isoWeek(Date.UTC(2024, 11, 30)), "2025-W01");
});

Deno.test("a year of hourly snapshots thins to exactly the GFS set plus the PITR window", () => {
  const { files, snaps } = aYear();
  const plan = planRetention(files, DEFAULT_RETENTION, NOW);
  const keptSnaps = new Set(plan.keep.filter((f) => f.level === 9).map((f) => f.key));
  const gfs = expectedGfs(snaps);
  const base = [...snaps].reverse().find((s) => s.timestamp <= NOW - DAY)!;
  const window = snaps.filter((s) => s.maxTXID >= base.maxTXID).map((s) => s.key);
  assert.deepEqual([...keptSnaps].sort(), [...new Set([...gfs, ...window])].sort());
  // 24 hourly + 7 daily + 12 weekly + 12 monthly buckets overlap; the year keeps far fewer.
  assert.ok(keptSnaps.size < 80, `${keptSnaps.size} snapshots kept`);
  assert.equal(plan.pitrFromTXID, base.maxTXID);
  assert.equal(
    plan.earliest?.txid,
    Math.min(...plan.keep.filter((f) => f.level === 9).map((f) => f.maxTXID)),
  );
  assert.equal(plan.bytesFreed, plan.delete.reduce((n, f) => n + f.size, 0));
});

Deno.test("the PITR window stays restorable TXID by TXID; nothing a kept point needs is deleted", () => {
  const { files } = aYear();
  const plan = planRetention(files, DEFAULT_RETENTION, NOW);
  const newest = Math.max(...files.map((f) => f.maxTXID));
  // From the base, the kept files reach the newest TXID without a gap ...
  assert.equal(chainEnd(plan.keep), newest);
  const base = plan.pitrFromTXID!;
  const l0 = new Set(plan.keep.filter((f) => f.level === 0).map((f) => f.maxTXID));
  for (let t = base + 1; t <= newest; t++) assert.ok(l0.has(t), `TXID ${t} has its level-0 file`);
  // ... and every deleted L0 lies at or below the base.
  for (const f of plan.delete) if (f.level === 0) assert.ok(f.maxTXID <= base, f.key);
});

Deno.test("the newest snapshot is always kept; a policy that keeps nothing is refused", () => {
  const { files } = aYear();
  const none = { hourly: 0, daily: 0, weekly: 0, monthly: 0, pitrWindowMs: 0 };
  assert.throws(() => planRetention(files, none, NOW), ConfigError);
  const only = planRetention(files, { ...none, monthly: 1 }, NOW);
  const kept = only.keep.filter((f) => f.level === 9);
  assert.equal(kept.length, 1, "the newest snapshot is also the newest of its month");
  assert.equal(
    kept[0].maxTXID,
    Math.max(...files.filter((f) => f.level === 9).map((f) => f.maxTXID)),
  );
});

Deno.test("prune on a real replica: a dry run deletes nothing; --force thins it and latest still restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-prune-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  const bucket = `file://${root}`;
  try {
    await runSql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    for (let round = 0; round < 4; round++) {
      await runSql(db, `INSERT INTO t (v) VALUES ('round ${round}')`);
      const once = await walrust(["watch", db, "--bucket", bucket, "--once"]);
      assert.equal(once.code, 0, once.stderr);
      const snap = await walrust(["snapshot", db, "--bucket", bucket]);
      assert.equal(snap.code, 0, snap.stderr);
    }
    const before = await replicaFiles(root, "app.db");
    const later = Date.now() + 400 * DAY; // everything is older than every tier's buckets but one
    const policy = { hourly: 0, daily: 0, weekly: 0, monthly: 1, pitrWindowMs: DAY };
    const dry = await prune({ name: "app.db", bucket, retention: policy, now: later });
    assert.equal(dry.dryRun, true);
    assert.ok(dry.deleted.length > 0);
    assert.deepEqual(await replicaFiles(root, "app.db"), before, "a dry run deletes nothing");

    const cli = await walrust(["prune", "app.db", "--bucket", bucket, "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(JSON.parse(cli.stdout).dry_run, true);
    assert.deepEqual(await replicaFiles(root, "app.db"), before);

    const done = await prune({
      name: "app.db",
      bucket,
      retention: policy,
      now: later,
      force: true,
    });
    const after = await replicaFiles(root, "app.db");
    assert.equal(after.length, before.length - done.deleted.length);
    assert.ok(after.some((f) => f.level === 9), "the newest snapshot stays");
    const out = `${dir}/restored.db`;
    await restore({ name: "app.db", output: out, bucket });
    assert.equal(await dumpContent(out), await dumpContent(db));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the newest file of every level is kept (a running watcher checks its last level-0 file)", () => {
  const files: RetentionFile[] = [
    { level: 0, minTXID: 1, maxTXID: 1, key: "l0/1", size: 5, timestamp: NOW - 3 * DAY },
    { level: 9, minTXID: 1, maxTXID: 1, key: "l9/1", size: 50, timestamp: NOW - 3 * DAY },
    { level: 9, minTXID: 1, maxTXID: 1, key: "l9/1-again", size: 50, timestamp: NOW - 2 * DAY },
  ];
  const plan = planRetention(files, DEFAULT_RETENTION, NOW);
  assert.ok(plan.keep.some((f) => f.key === "l0/1"), "the only (newest) level-0 file stays");
});

Deno.test({
  name: "s3: prune on RGW: a dry run deletes nothing; force thins it and latest still restores",
  ignore: !s3cfg,
  async fn() {
    const c = s3cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-prune-s3-" });
    const db = `${dir}/app.db`;
    const prefix = uniquePrefix().replace(/\/$/, "");
    const url = `s3://${c.bucket}/${prefix}`;
    const env = {
      AWS_ACCESS_KEY_ID: c.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
      AWS_REGION: c.region,
      AWS_ENDPOINT_URL_S3: c.endpoint,
    };
    const s3 = await openS3Storage(s3Options(c));
    const bucket = { storage: s3, kind: "s3" as const, basePrefix: prefix, url };
    const keys = async () => {
      const out: string[] = [];
      for await (const o of s3.list(`${prefix}/`)) out.push(o.key);
      return out.sort();
    };
    try {
      await runSql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
      for (let round = 0; round < 3; round++) {
        await runSql(db, `INSERT INTO t (v) VALUES ('round ${round}')`);
        const once = await walrust(["watch", db, "--bucket", url, "--once"], { env });
        assert.equal(once.code, 0, once.stderr);
        const snap = await walrust(["snapshot", db, "--bucket", url], { env });
        assert.equal(snap.code, 0, snap.stderr);
      }
      const before = await keys();
      const later = Date.now() + 400 * DAY;
      const policy = { hourly: 0, daily: 0, weekly: 0, monthly: 1, pitrWindowMs: DAY };
      const dry = await prune({ name: "app.db", bucket, retention: policy, now: later });
      assert.ok(dry.dryRun && dry.deleted.length > 0);
      assert.deepEqual(await keys(), before, "a dry run deletes nothing");
      const done = await prune({
        name: "app.db",
        bucket,
        retention: policy,
        now: later,
        force: true,
      });
      assert.equal((await keys()).length, before.length - done.deleted.length);
      const out = `${dir}/restored.db`;
      await restore({ name: "app.db", output: out, bucket });
      assert.equal(await dumpContent(out), await dumpContent(db));
    } finally {
      const left = await keys();
      await s3.delete(left);
      await s3.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
