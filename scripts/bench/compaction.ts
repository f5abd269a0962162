/**
 * Compaction inside `walrust watch` (file backend), two parts:
 * - hour: "one hour at one transaction per second", time-compressed by a factor F, run twice side
 *   by side (Litestream's levels, and `levels = []`): replica objects per level, replica bytes,
 *   and a latest restore through a Storage that counts what it reads (objects, bytes, seconds);
 * - l3: peak RSS of watch while one level-3 compaction merges L2 files totalling >= 200 MB
 *   (50 MB with --quick).
 *
 * Writers are python3 processes; every restore is checked (integrity_check, row count, content
 * digest) and a wrong one throws. Everything lives under one temp dir, removed at the end; every
 * process is stopped by PID. `deno task bench --only compaction [--quick]`, or
 * `deno run -A scripts/bench/compaction.ts [--quick]`.
 */

import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { restore } from "../../mod.ts";
import { openReplica, type Replica } from "../../src/storage/open.ts";
import { replicaFiles, waitCaughtUp } from "../../tests/helpers/replica.ts";
import { WalrustProcess } from "../../tests/helpers/walrust.ts";
import { type BenchOptions, printTable, procMemory, PythonProcess } from "./replication.ts";
import { CountingStorage } from "../../tests/helpers/counting_storage.ts";

const NAME = "app.db";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kb: number) => (kb / 1024).toFixed(1);
const mb = (bytes: number) => (bytes / 1e6).toFixed(2);

// ---------------------------------------------------------------------------------------------
// Processes

/** Run a python3 script to completion; its stdout. */
async function python(script: string, args: string[]): Promise<string> {
  const p = new PythonProcess(script, args);
  try {
    return await p.result();
  } finally {
    await p.stop();
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; returns the exit code. */
async function stopWatch(p: WalrustProcess, graceMs = 30_000): Promise<number> {
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
  try {
    return await p.wait();
  } finally {
    clearTimeout(timer);
  }
}

/** Start `walrust --config <config> watch <db> --bucket file://<root>` and wait for "watching". */
async function startWatch(config: string, db: string, root: string): Promise<WalrustProcess> {
  const p = new WalrustProcess(["--config", config, "watch", db, "--bucket", `file://${root}`]);
  await p.waitFor("INFO  watching", 120_000);
  const cmd = (await Deno.readTextFile(`/proc/${p.pid}/cmdline`)).split("\0");
  if (!cmd.some((a) => a.endsWith("/main.ts"))) {
    throw new Error(`pid ${p.pid} is not walrust: ${cmd.join(" ")}`);
  }
  return p;
}

/** WARN/ERROR lines of a walrust log. */
function problems(stderr: string): string[] {
  return stderr.split("\n").filter((l) => /\b(WARN|ERROR)\b/.test(l));
}

/** One `INFO  compaction ...` log line. */
interface CompactionLine {
  level: number;
  minTXID: number;
  maxTXID: number;
  inputs: number;
  size: number;
}

/** Every compaction walrust logged so far. */
function compactions(stderr: string): CompactionLine[] {
  const re =
    /INFO {1,2}compaction db=\S+ level=(\d+) min_txid=(\d+) max_txid=(\d+) inputs=(\d+) size=(\d+)/g;
  return [...stderr.matchAll(re)].map((m) => ({
    level: Number(m[1]),
    minTXID: Number(m[2]),
    maxTXID: Number(m[3]),
    inputs: Number(m[4]),
    size: Number(m[5]),
  }));
}

/** A walrust.toml for one database (given on the command line); metrics off (two run at once). */
function config(o: {
  walSyncS: number;
  levelsS: number[];
  l0RetentionS?: number;
  onStartup?: boolean;
}): string {
  // Whole milliseconds, as walrust rounds them; strings keep TOML free of float formatting.
  const ms = (s: number) => `"${Math.round(s * 1000)}ms"`;
  return [
    "[sync]",
    `wal_sync_interval = ${ms(o.walSyncS)}`,
    `snapshot_interval = "86400s"`,
    ...(o.l0RetentionS === undefined ? [] : [`l0_retention = ${ms(o.l0RetentionS)}`]),
    ...(o.onStartup === undefined ? [] : [`on_startup = ${o.onStartup}`]),
    "",
    "[compaction]",
    `levels = [${o.levelsS.map(ms).join(", ")}]`,
    "",
    "[retention]",
    "enabled = false",
    "",
    "[metrics]",
    "enabled = false",
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Replica inspection and counted restores

/** Objects and bytes of a file replica, per level. */
interface ReplicaStats {
  perLevel: Map<number, { files: number; bytes: number }>;
  files: number;
  bytes: number;
}

/** Count the LTX objects of `NAME` under a file replica root. */
async function replicaStats(root: string): Promise<ReplicaStats> {
  const perLevel = new Map<number, { files: number; bytes: number }>();
  let files = 0;
  let bytes = 0;
  for (const f of await replicaFiles(root, NAME)) {
    const size = (await Deno.stat(f.path)).size;
    const l = perLevel.get(f.level) ?? { files: 0, bytes: 0 };
    l.files++;
    l.bytes += size;
    perLevel.set(f.level, l);
    files++;
    bytes += size;
  }
  return { perLevel, files, bytes };
}

/** Row count and a SHA-256 over every row of `table` (ordered by id). */
function digest(path: string, table: string): { rows: number; sha: string } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const h = createHash("sha256");
    let rows = 0;
    for (const row of db.prepare(`SELECT * FROM ${table} ORDER BY id`).iterate()) {
      for (const v of Object.values(row as Record<string, unknown>)) {
        h.update(v instanceof Uint8Array ? v : String(v));
        h.update("\x00");
      }
      rows++;
    }
    return { rows, sha: h.digest("hex") };
  } finally {
    db.close();
  }
}

/** `PRAGMA integrity_check` of a database file; throws unless "ok". */
function assertIntegrity(path: string): void {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    const text = rows.map((r) => r.integrity_check).join("; ");
    if (text !== "ok") throw new Error(`restored ${path}: integrity_check says ${text}`);
  } finally {
    db.close();
  }
}

/** One latest restore through a CountingStorage. */
interface CountedRestore {
  seconds: number;
  gets: number;
  distinct: number;
  bytesRead: number;
  lists: number;
  heads: number;
  planFiles: number;
  planLevels: string;
  txid: number;
}

/**
 * Restore the latest state of `NAME` from the file replica at `root` into `out`, counting the
 * reads; checks integrity and that table `table` equals `source` (throws otherwise).
 */
async function countedRestore(
  root: string,
  out: string,
  table: string,
  source: { rows: number; sha: string },
): Promise<CountedRestore> {
  const opened = await openReplica(`file://${root}`);
  const storage = new CountingStorage(opened.storage);
  const replica: Replica = { ...opened, storage };
  const t0 = performance.now();
  const r = await restore({ name: NAME, output: out, bucket: replica });
  const seconds = (performance.now() - t0) / 1000;
  assertIntegrity(out);
  const got = digest(out, table);
  if (got.rows !== source.rows || got.sha !== source.sha) {
    throw new Error(
      `restore of ${root} is wrong: ${got.rows} rows (source ${source.rows}), ` +
        `digest ${got.sha.slice(0, 12)} (source ${source.sha.slice(0, 12)})`,
    );
  }
  const byLevel = new Map<number, number>();
  for (const f of r.plan.files) byLevel.set(f.level, (byLevel.get(f.level) ?? 0) + 1);
  const planLevels = [...byLevel.entries()].sort((a, b) => b[0] - a[0])
    .map(([l, n]) => `L${l}:${n}`).join(" ");
  await Deno.remove(out);
  return {
    seconds,
    gets: storage.gets,
    distinct: storage.keys.size,
    bytesRead: storage.bytes,
    lists: storage.lists,
    heads: storage.heads,
    planFiles: r.plan.files.length,
    planLevels,
    txid: r.txid,
  };
}

/** Sample VmRSS/VmHWM of a process every `everyMs` (timestamps in performance.now() ms). */
class RssSampler {
  readonly samples: { t: number; rssKb: number; anonKb: number; hwmKb: number }[] = [];
  #timer: ReturnType<typeof setInterval>;
  constructor(readonly pid: number, everyMs: number) {
    const tick = async () => {
      const t = performance.now();
      const m = await procMemory(pid);
      if (m) this.samples.push({ t, rssKb: m.rssKb, anonKb: m.anonKb, hwmKb: m.hwmKb });
    };
    tick();
    this.#timer = setInterval(tick, everyMs);
  }
  /** Stop sampling. */
  stop(): void {
    clearInterval(this.#timer);
  }
  /** VmRSS of the sample nearest to `t`. */
  at(t: number): number {
    return this.samples.reduce((a, b) => (Math.abs(b.t - t) < Math.abs(a.t - t) ? b : a)).rssKb;
  }
  /** Samples taken in [from, to). */
  between(from: number, to = Infinity, field: "rssKb" | "anonKb" = "rssKb"): number[] {
    return this.samples.filter((s) => s.t >= from && s.t < to).map((s) => s[field]);
  }
}

const median = (v: number[]) => {
  if (v.length === 0) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const peak = (v: number[]) => (v.length === 0 ? NaN : Math.max(...v));

/** Poll `cond` every `everyMs` until it holds (true) or `timeoutMs` passes (false). */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

/** Highest TXID among the files of `level` in the replica (0 when none). */
async function levelMax(root: string, level: number): Promise<number> {
  let max = 0;
  for (const f of await replicaFiles(root, NAME)) {
    if (f.level === level) max = Math.max(max, f.maxTXID);
  }
  return max;
}

// ---------------------------------------------------------------------------------------------
// 1. One hour at one transaction per second

const SEED_HOUR = String.raw`
import sqlite3, sys
for p in sys.argv[1:]:
    c = sqlite3.connect(p, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL").fetchall()
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, note TEXT)")
    c.execute("BEGIN")
    for i in range(100):
        c.execute("INSERT INTO t (v, note) VALUES (?, ?)", (i, "seed %03d " % i + "s" * 190))
    c.execute("COMMIT")
    c.close()
`;

// One long-lived connection per database (WAL, default autocheckpoint). Transaction k goes to
// every database at t0 + k/rate: insert a ~200-byte row, update one earlier row (same choice
// for every database, so their contents stay identical). Prints "count max_late_s elapsed_s".
const HOUR_WRITER = String.raw`
import random, sqlite3, sys, time
n, rate, paths = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
conns = [sqlite3.connect(p, isolation_level=None, timeout=10) for p in paths]
rnd = random.Random(7)
alpha = "abcdefghijklmnopqrstuvwxyz0123456789 "
t0 = time.time() + 0.05
late = 0.0
for k in range(n):
    d = t0 + k / rate - time.time()
    if d > 0:
        time.sleep(d)
    else:
        late = max(late, -d)
    note = "".join(rnd.choice(alpha) for _ in range(200))
    victim = rnd.randint(1, 100 + k)
    upd = "updated at %d " % k + "u" * 60
    for c in conns:
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t (v, note) VALUES (?, ?)", (k, note))
        c.execute("UPDATE t SET v = v + 1, note = ? WHERE id = ?", (upd, victim))
        c.execute("COMMIT")
for c in conns:
    c.close()
print(n, "%.3f" % late, "%.3f" % (time.time() - t0))
`;

/** One configuration of the hour. */
interface HourSide {
  label: string;
  levels: string;
  stats: ReplicaStats;
  restores: CountedRestore[];
  peakRssKb: number;
  /** Seconds after the writer started when the peak was sampled. */
  peakAtS: number;
  /** VmRSS at 0, 25, 50, 75 and 100 % of the write window, in KiB. */
  rssTimelineKb: number[];
  exitCode: number;
  compactions: CompactionLine[];
  l0Expired: number;
  problems: string[];
}

/** Results of the hour. */
export interface HourResult {
  factor: number;
  transactions: number;
  writerLateS: number;
  writerS: number;
  l3WaitS: number;
  l3Found: boolean;
  rows: number;
  sides: HourSide[];
}

async function hourRun(quick: boolean): Promise<HourResult> {
  const F = quick ? 60 : 20;
  const n = 3600;
  const runs = quick ? 1 : 3;
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-compaction-hour-" });
  const watches: WalrustProcess[] = [];
  let writer: PythonProcess | undefined;
  try {
    const sides = [
      { label: "compaction on", levelsS: [30 / F, 300 / F, 3600 / F], key: "on" },
      { label: "compaction off", levelsS: [] as number[], key: "off" },
    ].map((s) => ({
      ...s,
      db: `${dir}/${s.key}/${NAME}`,
      root: `${dir}/replica-${s.key}`,
      config: `${dir}/${s.key}.toml`,
    }));
    for (const s of sides) {
      await Deno.mkdir(`${dir}/${s.key}`);
      await Deno.writeTextFile(
        s.config,
        config({ walSyncS: 1 / F, levelsS: s.levelsS, l0RetentionS: 300 / F }),
      );
    }
    await python(SEED_HOUR, sides.map((s) => s.db));
    for (const s of sides) watches.push(await startWatch(s.config, s.db, s.root));
    const samplers = watches.map((w) => new RssSampler(w.pid, 1000));
    await sleep(1000);

    const wStart = performance.now();
    writer = new PythonProcess(HOUR_WRITER, [String(n), String(F), ...sides.map((s) => s.db)]);
    const [, late, took] = (await writer.result()).trim().split(" ").map(Number);
    const wEnd = performance.now();
    const w0 = Date.now();
    const l3Found = await until(
      async () => (await levelMax(sides[0].root, 3)) > 0,
      (3600 / F + 30) * 1000,
      200,
    );
    const l3WaitS = (Date.now() - w0) / 1000;
    for (const s of samplers) s.stop();
    const codes = await Promise.all(watches.map((w) => stopWatch(w)));

    const source = digest(sides[0].db, "t");
    const other = digest(sides[1].db, "t");
    if (other.rows !== source.rows || other.sha !== source.sha) {
      throw new Error("the two source databases differ: the writer is broken");
    }
    const out: HourSide[] = [];
    for (const [i, s] of sides.entries()) {
      const restores: CountedRestore[] = [];
      for (let k = 0; k < runs; k++) {
        restores.push(
          await countedRestore(s.root, `${dir}/restored-${s.key}-${k}.db`, "t", source),
        );
      }
      const stderr = watches[i].stderr;
      out.push({
        label: s.label,
        levels: s.levelsS.length === 0
          ? "[]"
          : `[${s.levelsS.map((x) => `${+x.toFixed(3)}s`).join(", ")}]`,
        stats: await replicaStats(s.root),
        restores,
        peakRssKb: peak(samplers[i].samples.map((x) => x.rssKb)),
        peakAtS: (samplers[i].samples.reduce((a, b) => (b.rssKb > a.rssKb ? b : a)).t - wStart) /
          1000,
        rssTimelineKb: [0, 0.25, 0.5, 0.75, 1].map((q) =>
          samplers[i].at(wStart + q * (wEnd - wStart))
        ),
        exitCode: codes[i],
        compactions: compactions(stderr),
        l0Expired: [...stderr.matchAll(/expired level-0 files db=\S+ count=(\d+)/g)]
          .reduce((a, m) => a + Number(m[1]), 0),
        problems: problems(stderr),
      });
    }
    return {
      factor: F,
      transactions: n,
      writerLateS: late,
      writerS: took,
      l3WaitS,
      l3Found,
      rows: source.rows,
      sides: out,
    };
  } finally {
    await writer?.stop();
    for (const w of watches) await stopWatch(w, 5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

function printHour(r: HourResult): void {
  const F = r.factor;
  console.log(
    `\n## One hour at one transaction per second, compaction on and off (file backend)\n` +
      `Time compressed by F = ${F}: ${r.transactions} transactions at ${F}/s ` +
      `(${(r.transactions / F).toFixed(0)} s of real time stand for 1 h), every interval / ${F}: ` +
      `wal_sync_interval ${+(1000 / F).toFixed(1)} ms,\nlevels 30s/5m/1h -> ` +
      `${r.sides[0].levels}, l0_retention 5m -> ${300 / F}s, snapshot_interval 86400 s (only ` +
      `the start-up snapshot), retention off.\nBoth watchers run at once over two identical ` +
      `databases fed by one python3 writer (one connection each, WAL, default autocheckpoint;\n` +
      `each transaction inserts a ~200-byte row and updates an earlier one). After the writes, ` +
      `waited ${r.l3WaitS.toFixed(1)} s for a level-3 file` +
      (r.l3Found ? "" : " (NONE APPEARED)") + `, then SIGTERM.\nRestore = library restore() of ` +
      `the latest state through a Storage that counts get calls (a ranged get counts as one) and ` +
      `the bytes they stream;\nchecked: integrity_check ok, ${r.rows} rows, same SHA-256 of all ` +
      `rows as the source. Seconds: median of ${r.sides[0].restores.length} run(s), warm cache.`,
  );
  const levels = [...new Set(r.sides.flatMap((s) => [...s.stats.perLevel.keys()]))].sort((a, b) =>
    a - b
  );
  printTable(
    [
      "config",
      ...levels.map((l) => `L${l}`),
      "objects",
      "replica MB",
      "plan files",
      "get calls",
      "objects read",
      "MB read",
      "restore s",
      "watch peak RSS MiB",
    ],
    r.sides.map((s) => {
      const first = s.restores[0];
      return [
        s.label,
        ...levels.map((l) => String(s.stats.perLevel.get(l)?.files ?? 0)),
        String(s.stats.files),
        mb(s.stats.bytes),
        String(first.planFiles),
        String(first.gets),
        String(first.distinct),
        mb(first.bytesRead),
        median(s.restores.map((x) => x.seconds)).toFixed(3),
        mib(s.peakRssKb),
      ];
    }),
  );
  const [on, off] = r.sides;
  const sec = (s: HourSide) => median(s.restores.map((x) => x.seconds));
  console.log(
    `ratio on/off: objects read ${
      (on.restores[0].distinct / off.restores[0].distinct).toFixed(4)
    } ` +
      `(${on.restores[0].distinct} / ${off.restores[0].distinct}), restore seconds ` +
      `${(sec(on) / sec(off)).toFixed(3)}, replica bytes ${
        (on.stats.bytes / off.stats.bytes).toFixed(2)
      }`,
  );
  for (const s of r.sides) {
    const per = [1, 2, 3].map((l) => s.compactions.filter((c) => c.level === l).length);
    console.log(
      `  ${s.label}: plan ${s.restores[0].planLevels}, restored TXID ${s.restores[0].txid}, ` +
        `list calls ${s.restores[0].lists}, head calls ${s.restores[0].heads}; ` +
        `compactions L1/L2/L3 ${per.join("/")}, L0 expired ${s.l0Expired}, exit ${s.exitCode}`,
    );
    for (const p of s.problems.slice(0, 5)) console.log(`  ${s.label} stderr: ${p}`);
  }
  printTable(
    ["watch VmRSS MiB at", "0%", "25%", "50%", "75%", "100% of the writes", "peak", "peak at"],
    r.sides.map((s) => [
      s.label,
      ...s.rssTimelineKb.map(mib),
      mib(s.peakRssKb),
      `${s.peakAtS.toFixed(0)} s`,
    ]),
  );
  console.log(
    `  writer: ${r.transactions} transactions in ${r.writerS.toFixed(1)} s, worst lateness ` +
      `${(r.writerLateS * 1000).toFixed(0)} ms`,
  );
}

// ---------------------------------------------------------------------------------------------
// 2. Peak RSS during a level-3 compaction

// Rows of 4,000 random bytes, one per 4 KiB page, so pages do not compress.
const BUILD_BIG = String.raw`
import os, sqlite3, sys
path, rows = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA page_size=4096")
c.execute("PRAGMA journal_mode=OFF")
c.execute("PRAGMA synchronous=OFF")
c.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
c.execute("BEGIN")
for i in range(rows):
    c.execute("INSERT INTO blobs (b) VALUES (?)", (os.urandom(4000),))
c.execute("COMMIT")
c.execute("PRAGMA journal_mode=WAL").fetchall()
print(c.execute("PRAGMA page_count").fetchone()[0] * 4096)
c.close()
`;

// Rewrite the first fraction of the rows with new random blobs in k transactions.
const REWRITE_BIG = String.raw`
import sqlite3, sys
path, k, frac = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = sqlite3.connect(path, isolation_level=None, timeout=30)
n = c.execute("SELECT max(id) FROM blobs").fetchone()[0]
m = int(n * frac)
step = (m + k - 1) // k
for j in range(k):
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE blobs SET b = randomblob(4000) WHERE id > ? AND id <= ?", (j * step, min(m, (j + 1) * step)))
    c.execute("COMMIT")
c.close()
print(m)
`;

/** Results of the level-3 compaction run. */
export interface L3Result {
  targetBytes: number;
  dbBytes: number;
  rewrittenRows: number;
  l3IntervalS: number;
  l3: CompactionLine;
  l3FileBytes: number;
  l2Inputs: number;
  inputBytes: number;
  steadyKb: number;
  /** Phase A's VmHWM (start-up snapshot and the first file's cascade to L3). */
  phaseAHwmKb: number;
  l0PeakKb: number;
  /** RssAnon at the same five points as the VmRSS figures (steady .. L3 peak). */
  anonKb: number[];
  rewritePeakKb: number;
  atL2Kb: number;
  l3PeakKb: number;
  hwmKb: number;
  samples: number;
  restore: CountedRestore;
  exitCodes: number[];
  problems: string[];
}

async function l3Run(quick: boolean): Promise<L3Result> {
  const target = quick ? 50e6 : 200e6;
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-compaction-l3-" });
  let watch: WalrustProcess | undefined;
  let sampler: RssSampler | undefined;
  try {
    const db = `${dir}/${NAME}`;
    const root = `${dir}/replica`;
    const dbBytes = Number(await python(BUILD_BIG, [db, String(Math.ceil(target * 1.1 / 4096))]));

    // Phase A: replicate the built database and let its first (whole-database) file cascade
    // into level 3, so the measured level-3 compaction merges only the rewrite.
    const cfgA = `${dir}/a.toml`;
    await Deno.writeTextFile(cfgA, config({ walSyncS: 0.2, levelsS: [1, 2, 3] }));
    const aStart = Date.now();
    const a = await startWatch(cfgA, db, root);
    watch = a;
    const cascaded = await until(async () => (await levelMax(root, 3)) > 0, 180_000, 200);
    const phaseAHwmKb = (await procMemory(a.pid))?.hwmKb ?? NaN;
    const codeA = await stopWatch(a);
    watch = undefined;
    if (!cascaded) throw new Error(`the first file never reached level 3:\n${a.stderr}`);
    const baseTXID = await levelMax(root, 3);

    // Phase B, measured: no start-up snapshot (the replica is current). Level 3 is first due one
    // interval after its newest file's timestamp (about phase A's start): the interval covers
    // phase A, the steady window, the rewrite and L1/L2 catching up, so L3 runs once over all.
    const l3IntervalS = Math.ceil((Date.now() - aStart) / 1000 + 12 + target / 1e7);
    const cfgB = `${dir}/b.toml`;
    await Deno.writeTextFile(
      cfgB,
      config({ walSyncS: 0.2, levelsS: [1, 2, l3IntervalS], onStartup: false }),
    );
    const b = await startWatch(cfgB, db, root);
    watch = b;
    sampler = new RssSampler(b.pid, 50);
    const steadyFrom = performance.now() + 1000;
    await sleep(quick ? 3000 : 4000);
    const rewriteAt = performance.now();
    const rewrittenRows = Number(await python(REWRITE_BIG, [db, "4", "0.95"]));
    const last = await waitCaughtUp(db, root, NAME, 120_000);
    const atL0 = performance.now();
    if (!await until(async () => (await levelMax(root, 2)) >= last, 120_000, 50)) {
      throw new Error(`level 2 did not reach TXID ${last}:\n${b.stderr}`);
    }
    const atL2 = performance.now();
    const l3Line = () => compactions(b.stderr).find((c) => c.level === 3 && c.maxTXID >= last);
    if (!await until(() => l3Line() !== undefined, (l3IntervalS + 120) * 1000, 20)) {
      throw new Error(`no level-3 compaction up to TXID ${last}:\n${b.stderr}`);
    }
    const l3At = performance.now();
    await sleep(500);
    sampler.stop();
    const hwmKb = (await procMemory(b.pid))?.hwmKb ?? NaN;
    const codeB = await stopWatch(b);
    watch = undefined;

    const l3 = l3Line()!;
    const early = compactions(b.stderr).filter((c) => c.level === 3 && c.maxTXID < last);
    if (early.length > 0 || l3.minTXID !== baseTXID + 1) {
      throw new Error(
        `level 3 ran before level 2 had the whole rewrite (${
          JSON.stringify(early)
        }); raise the level-3 interval (${l3IntervalS} s)`,
      );
    }
    const files = await replicaFiles(root, NAME);
    const inputs = files.filter((f) =>
      f.level === 2 && f.minTXID >= l3.minTXID && f.maxTXID <= l3.maxTXID
    );
    let inputBytes = 0;
    for (const f of inputs) inputBytes += (await Deno.stat(f.path)).size;
    const l3File = files.find((f) =>
      f.level === 3 && f.minTXID === l3.minTXID && f.maxTXID === l3.maxTXID
    );
    if (!l3File) throw new Error("the level-3 file logged is not in the replica");
    if (inputBytes < target) {
      throw new Error(`level-3 input is ${mb(inputBytes)} MB, below the ${mb(target)} MB target`);
    }

    const source = digest(db, "blobs");
    const restored = await countedRestore(root, `${dir}/restored.db`, "blobs", source);
    return {
      targetBytes: target,
      dbBytes,
      rewrittenRows,
      l3IntervalS,
      l3,
      l3FileBytes: (await Deno.stat(l3File.path)).size,
      l2Inputs: inputs.length,
      inputBytes,
      steadyKb: median(sampler.between(steadyFrom, rewriteAt)),
      anonKb: [
        median(sampler.between(steadyFrom, rewriteAt, "anonKb")),
        peak(sampler.between(rewriteAt, atL0, "anonKb")),
        peak(sampler.between(atL0, atL2, "anonKb")),
        median(sampler.between(atL2 - 200, atL2 + 200, "anonKb")),
        peak(sampler.between(atL2, l3At + 500, "anonKb")),
      ],
      phaseAHwmKb,
      l0PeakKb: peak(sampler.between(rewriteAt, atL0)),
      rewritePeakKb: peak(sampler.between(atL0, atL2)),
      atL2Kb: median(sampler.between(atL2 - 200, atL2 + 200)),
      l3PeakKb: peak(sampler.between(atL2, l3At + 500)),
      hwmKb,
      samples: sampler.samples.length,
      restore: restored,
      exitCodes: [codeA, codeB],
      problems: [...problems(a.stderr), ...problems(b.stderr)],
    };
  } finally {
    sampler?.stop();
    if (watch) await stopWatch(watch, 5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

function printL3(r: L3Result): void {
  console.log(
    `\n## Peak RSS of watch during a level-3 compaction of ${mb(r.targetBytes)} MB of input ` +
      `(file backend)\nDatabase: ${mb(r.dbBytes)} MB of 4 KiB pages, one 4,000-byte random ` +
      `blob per page (incompressible). Phase A: watch with levels [1s, 2s, 3s]\nuntil the ` +
      `first whole-database file reached L3, then SIGTERM. Phase B (measured): watch with ` +
      `levels [1s, 2s, ${r.l3IntervalS}s],\non_startup = false, wal_sync_interval 0.2 s; after ` +
      `a steady window, ${r.rewrittenRows} rows rewritten in 4 transactions; L1/L2 follow ` +
      `within seconds\nand the one L3 round then merges every L2 file of the rewrite. VmRSS of ` +
      `the walrust deno process sampled every 50 ms (${r.samples} samples).`,
  );
  printTable(
    ["phase B", "VmRSS MiB", "RssAnon MiB"],
    [
      ["steady, before the rewrite (median)", mib(r.steadyKb), mib(r.anonKb[0])],
      ["peak, rewrite until its L0 files are uploaded", mib(r.l0PeakKb), mib(r.anonKb[1])],
      ["peak, from then until L2 has it all", mib(r.rewritePeakKb), mib(r.anonKb[2])],
      ["when L2 had caught up", mib(r.atL2Kb), mib(r.anonKb[3])],
      ["peak, L3 compaction window", mib(r.l3PeakKb), mib(r.anonKb[4])],
      ["VmHWM at the end", mib(r.hwmKb)],
      ["(phase A VmHWM: start-up snapshot + first cascade)", mib(r.phaseAHwmKb)],
    ],
  );
  console.log(
    `L3 file ${r.l3.minTXID}-${r.l3.maxTXID}: ${mb(r.l3FileBytes)} MB (log size ${mb(r.l3.size)}` +
      ` MB) from ${r.l2Inputs} L2 files totalling ${mb(r.inputBytes)} MB (log inputs ` +
      `${r.l3.inputs})\npeak - steady: ${mib(r.l3PeakKb - r.steadyKb)} MiB during L3, ` +
      `${mib(Math.max(r.l0PeakKb, r.rewritePeakKb) - r.steadyKb)} MiB during the rewrite, L0, L1 ` +
      `and L2; restore of the result: ` +
      `${r.restore.seconds.toFixed(2)} s, plan ${r.restore.planLevels}, ${r.restore.gets} gets, ` +
      `${mb(r.restore.bytesRead)} MB read, content matches: yes`,
  );
  console.log(`  walrust exit codes (phase A, B): ${r.exitCodes.join(", ")}`);
  for (const p of r.problems.slice(0, 5)) console.log(`  stderr: ${p}`);
}

/** The compaction benchmark: the compressed hour (on vs off), then peak RSS during L3. */
export async function benchCompaction(
  opts: BenchOptions,
): Promise<{ hour: HourResult; l3: L3Result }> {
  const hour = await hourRun(opts.quick);
  printHour(hour);
  const l3 = await l3Run(opts.quick);
  printL3(l3);
  return { hour, l3 };
}

if (import.meta.main) {
  await benchCompaction({ quick: Deno.args.includes("--quick") });
}
