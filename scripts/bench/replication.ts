/**
 * Replication benchmarks against the real CLI on the filesystem backend:
 * - rss: memory of `walrust watch` with 1, 10 and 100 databases under light writes;
 * - lag: commit-to-durable-in-replica latency at --wal-sync-interval 1 and 0.1;
 * - restore: throughput and peak RSS of `walrust restore` on a ~200 MB database.
 *
 * Writers are python3 processes (their cost is outside every walrust measurement). Everything
 * lives under one temp dir per benchmark, removed at the end; every process is stopped by PID.
 * Run through scripts/bench/run.ts (`deno task bench --only rss|lag|restore [--quick]`).
 */

import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { LtxDecoder, readLtxFile } from "../../src/ltx/decoder.ts";
import { parseLtxName } from "../../src/ltx/names.ts";
import { applyPlan } from "../../src/restore/apply.ts";
import { planRestore } from "../../src/restore/plan.ts";
import { openReplica } from "../../src/storage/open.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import { waitCaughtUp } from "../../tests/helpers/replica.ts";
import { runSql } from "../../tests/helpers/sqlite_writer.ts";
import { WalrustProcess } from "../../tests/helpers/walrust.ts";
import { percentile } from "./proc.ts";

/** Options shared by the benchmarks. */
export interface BenchOptions {
  /** Shorter runs for a smoke check. */
  quick: boolean;
}

// ---------------------------------------------------------------------------------------------
// Process and table utilities

/** Memory of a process from /proc/<pid>/status, in KiB. */
export interface ProcMemory {
  rssKb: number;
  anonKb: number;
  fileKb: number;
  hwmKb: number;
  threads: number;
}

/** Read VmRSS, RssAnon, RssFile, VmHWM and Threads of `pid`; undefined once it has exited. */
export async function procMemory(pid: number): Promise<ProcMemory | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const rssKb = field("VmRSS");
  if (Number.isNaN(rssKb)) return undefined; // a zombie has no memory lines
  return {
    rssKb,
    anonKb: field("RssAnon"),
    fileKb: field("RssFile"),
    hwmKb: field("VmHWM"),
    threads: field("Threads"),
  };
}

let clockTicks = 0;

/** User + system CPU seconds used so far by `pid` (0 once it has exited). */
async function procCpuSeconds(pid: number): Promise<number> {
  if (clockTicks === 0) {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output()
      .catch(() => undefined);
    clockTicks = Number(new TextDecoder().decode(out?.stdout ?? new Uint8Array()).trim()) || 100;
  }
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name, which may itself contain spaces or parentheses.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / clockTicks;
  } catch {
    return 0;
  }
}

/** Make sure `pid` is the deno process running walrust (not a wrapper), so we measure walrust. */
async function assertWalrustPid(pid: number): Promise<void> {
  const cmd = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
  if (!cmd.some((a) => a.endsWith("/main.ts"))) {
    throw new Error(`pid ${pid} is not walrust: ${cmd.join(" ")}`);
  }
}

/** Sample a process's memory every `everyMs` until stopped; keeps the peak VmHWM seen. */
class PeakSampler {
  peakHwmKb = 0;
  peakRssKb = 0;
  #timer: ReturnType<typeof setInterval>;
  constructor(readonly pid: number, everyMs = 10) {
    const tick = async () => {
      const m = await procMemory(pid);
      if (!m) return;
      this.peakHwmKb = Math.max(this.peakHwmKb, m.hwmKb);
      this.peakRssKb = Math.max(this.peakRssKb, m.rssKb);
    };
    tick();
    this.#timer = setInterval(tick, everyMs);
  }
  /** Stop sampling. */
  stop(): void {
    clearInterval(this.#timer);
  }
}

/** A python3 child started by a benchmark; stopped by PID. */
export class PythonProcess {
  readonly #child: Deno.ChildProcess;
  readonly #out: Promise<{ code: number; stdout: string; stderr: string }>;
  readonly pid: number;
  #done = false;

  constructor(script: string, args: string[]) {
    this.#child = new Deno.Command("python3", {
      args: ["-c", script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#out = this.#child.output().then((o) => {
      this.#done = true;
      const dec = new TextDecoder();
      return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
    });
  }

  /** Wait for exit; throws with its stderr when it failed. */
  async result(): Promise<string> {
    const o = await this.#out;
    if (o.code !== 0) throw new Error(`python3 ${this.pid} exited ${o.code}: ${o.stderr}`);
    return o.stdout;
  }

  /** SIGKILL it if it still runs, and reap it. */
  async stop(): Promise<void> {
    if (!this.#done) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.#out.catch(() => undefined);
  }
}

/** Stop a walrust process gracefully (SIGTERM, then SIGKILL after `graceMs`); returns its code. */
async function stopWalrust(p: WalrustProcess, graceMs = 30_000): Promise<number> {
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
  try {
    return await p.wait();
  } finally {
    clearTimeout(timer);
  }
}

/** WARN/ERROR lines a walrust process printed (for the report). */
function problems(stderr: string): string[] {
  return stderr.split("\n").filter((l) => /\b(WARN|ERROR)\b/.test(l));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number) => (kb / 1024).toFixed(1);

/** Print rows as an aligned table (first column left-aligned, the rest right-aligned). */
export function printTable(head: string[], rows: string[][]): void {
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  console.log(line(head));
  console.log(w.map((n) => "-".repeat(n)).join("  "));
  for (const r of rows) console.log(line(r));
}

/** Nearest-rank percentile of sorted values. */

// ---------------------------------------------------------------------------------------------
// 1. RSS of `watch` with many databases

const SEED_DBS = String.raw`
import sqlite3, sys
for p in sys.argv[1:]:
    c = sqlite3.connect(p, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL").fetchall()
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, note TEXT)")
    c.execute("BEGIN")
    for i in range(200):
        c.execute("INSERT INTO t (v, note) VALUES (?, ?)", (i, "seed row %d %s" % (i, "x" * 40)))
    c.execute("COMMIT")
    c.close()
`;

// One process, one connection per database; commits are spread evenly over each second.
const LIGHT_WRITER = String.raw`
import sqlite3, sys, time
duration, rate, paths = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
conns = [sqlite3.connect(p, isolation_level=None, timeout=5) for p in paths]
step = 1.0 / (rate * len(conns))
t0, k, errors = time.time(), 0, 0
while True:
    t = t0 + k * step
    if t - t0 >= duration:
        break
    d = t - time.time()
    if d > 0:
        time.sleep(d)
    try:
        conns[k % len(conns)].execute("INSERT INTO t (v, note) VALUES (?, ?)", (k, "light write %d" % k))
    except sqlite3.Error as e:
        errors += 1
        sys.stderr.write("%s\n" % e)
    k += 1
late = time.time() - (t0 + duration)
for c in conns:
    c.close()
print(k, errors, "%.3f" % late)
`;

/** One row of the RSS table. */
export interface RssResult {
  databases: number;
  idle: ProcMemory;
  final: ProcMemory;
  timeline: { s: number; rssKb: number }[];
  cpuSeconds: number;
  commits: number;
  writerErrors: number;
  maxTXIDs: number[];
  exitCode: number;
  problems: string[];
}

/**
 * Run `watch` over `n` databases with light writes for `seconds` and read its memory;
 * `extraToml` is appended to the config (e.g. an `[age]` table).
 */
export async function rssRun(n: number, seconds: number, extraToml = ""): Promise<RssResult> {
  const dir = await Deno.makeTempDir({ prefix: `walrust-bench-rss${n}-` });
  let watch: WalrustProcess | undefined;
  let writer: PythonProcess | undefined;
  try {
    await Deno.mkdir(`${dir}/dbs`);
    const paths = Array.from(
      { length: n },
      (_, i) => `${dir}/dbs/db${String(i).padStart(3, "0")}.db`,
    );
    const seed = new PythonProcess(SEED_DBS, paths);
    await seed.result();
    const root = `${dir}/replica`;
    const config = `${dir}/walrust.toml`;
    await Deno.writeTextFile(
      config,
      `[s3]\nbucket = "file://${root}"\n${extraToml}\n[[databases]]\npath = "dbs/*.db"\n`,
    );

    watch = new WalrustProcess(["--config", config, "watch"], { cwd: dir });
    await watch.waitFor("watching", 120_000);
    await assertWalrustPid(watch.pid);
    await sleep(2_000);
    const idle = (await procMemory(watch.pid))!;
    const cpu0 = await procCpuSeconds(watch.pid);

    writer = new PythonProcess(LIGHT_WRITER, [String(seconds), "1", ...paths]);
    const t0 = Date.now();
    const timeline: { s: number; rssKb: number }[] = [];
    for (let s = 0; s <= seconds; s += 5) {
      await sleep(Math.max(0, t0 + s * 1000 - Date.now()));
      const m = await procMemory(watch.pid);
      if (!m) throw new Error(`walrust exited during the run:\n${watch.stderr}`);
      timeline.push({ s, rssKb: m.rssKb });
    }
    const final = (await procMemory(watch.pid))!;
    const cpuSeconds = (await procCpuSeconds(watch.pid)) - cpu0;
    const [commits, writerErrors] = (await writer.result()).trim().split(" ").map(Number);

    // Replication kept up: every database's replica reaches its WAL's end.
    const maxTXIDs: number[] = [];
    for (const p of paths) {
      maxTXIDs.push(await waitCaughtUp(p, root, p.slice(p.lastIndexOf("/") + 1), 60_000));
    }
    const exitCode = await stopWalrust(watch);
    return {
      databases: n,
      idle,
      final,
      timeline,
      cpuSeconds,
      commits,
      writerErrors,
      maxTXIDs,
      exitCode,
      problems: problems(watch.stderr),
    };
  } finally {
    await writer?.stop();
    if (watch) await stopWalrust(watch, 5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Figure 1: RSS of `watch` with 1, 10 and 100 databases after light writes. */
export async function benchRss(opts: BenchOptions): Promise<RssResult[]> {
  const seconds = opts.quick ? 10 : 60;
  const counts = [1, 10, 100];
  console.log(
    `\n## RSS of \`walrust watch\` (file backend, default settings, ${seconds} s of writes)\n` +
      `Each database: WAL mode, table of 200 seed rows (~4 pages). Load: one python3 process with\n` +
      `one connection per database commits one small INSERT per database per second,\n` +
      `round-robin, evenly spread. Memory is the deno process of walrust (/proc/<pid>/status),\n` +
      `read ${seconds} s after the writes started; "idle" is 2 s after startup, before writes.`,
  );
  const results: RssResult[] = [];
  for (const n of counts) {
    const r = await rssRun(n, seconds);
    results.push(r);
    console.log(
      `  ${n} db: done (commits ${r.commits}, writer errors ${r.writerErrors}, ` +
        `exit ${r.exitCode}, warnings/errors ${r.problems.length})`,
    );
  }
  printTable(
    [
      "databases",
      "idle RSS",
      "VmRSS",
      "RssAnon",
      "RssFile",
      "VmHWM",
      "threads",
      "CPU s",
      "commits",
      "replica TXID",
    ],
    results.map((r) => [
      String(r.databases),
      mb(r.idle.rssKb),
      mb(r.final.rssKb),
      mb(r.final.anonKb),
      mb(r.final.fileKb),
      mb(r.final.hwmKb),
      String(r.final.threads),
      r.cpuSeconds.toFixed(2),
      String(r.commits),
      `${Math.min(...r.maxTXIDs)}..${Math.max(...r.maxTXIDs)}`,
    ]),
  );
  console.log(
    "(MB = MiB; CPU s = walrust user+system CPU during the write window; replica TXID = " +
      "min..max over the databases once caught up: one TXID per sync that found commits)",
  );
  const one = results[0];
  const deltas = results.slice(1).map((r) => ({
    label: `${r.databases}-1`,
    idle: r.idle.rssKb - one.idle.rssKb,
    rss: r.final.rssKb - one.final.rssKb,
    anon: r.final.anonKb - one.final.anonKb,
    hwm: r.final.hwmKb - one.final.hwmKb,
    per: (r.final.rssKb - one.final.rssKb) / (r.databases - 1),
  }));
  printTable(
    ["delta", "idle VmRSS", "VmRSS", "RssAnon", "VmHWM", "VmRSS per extra db"],
    deltas.map((d) => [
      d.label,
      mb(d.idle),
      mb(d.rss),
      mb(d.anon),
      mb(d.hwm),
      `${d.per.toFixed(0)} KiB`,
    ]),
  );
  const d100 = deltas.at(-1)!;
  console.log(
    `target: 100 databases cost at most 8 MB more than 1 -> VmRSS +${mb(d100.rss)} MB: ` +
      (d100.rss <= 8 * 1024 ? "PASS" : "FAIL"),
  );
  printTable(
    ["VmRSS MB at", ...results[0].timeline.map((t) => `${t.s}s`)],
    results.map((r) => [`${r.databases} db`, ...r.timeline.map((t) => mb(t.rssKb))]),
  );
  for (const r of results) {
    for (const p of r.problems.slice(0, 5)) console.log(`  ${r.databases} db stderr: ${p}`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// 2. Replication lag

// Commits one row per transaction carrying the marker TXN-nnnnnn; prints "i commit_time" lines.
const LAG_WRITER = String.raw`
import sqlite3, sys, time
path, n, spacing = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=5)
pad = "payload " * 8
times = []
t0 = time.time() + 0.05
for i in range(1, n + 1):
    d = t0 + (i - 1) * spacing - time.time()
    if d > 0:
        time.sleep(d)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO log (body) VALUES (?)", ("TXN-%06d %s" % (i, pad),))
    conn.execute("COMMIT")
    times.append(time.time())
conn.close()
sys.stdout.write("".join("%d %.6f\n" % (i + 1, t) for i, t in enumerate(times)))
`;

/** Records when each LTX file first appears in a directory (watchFs plus a 5 ms poll). */
class ArrivalRecorder {
  /** File name -> arrival time (ms since the epoch); files present at start are not recorded. */
  readonly arrivals = new Map<string, number>();
  readonly #before = new Set<string>();
  #watcher?: Deno.FsWatcher;
  #loop?: Promise<void>;
  #timer?: ReturnType<typeof setInterval>;
  #scanning = false;
  #again = false;

  constructor(readonly dir: string) {}

  /** Take the initial listing and start watching. */
  async start(): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true });
    for await (const e of Deno.readDir(this.dir)) this.#before.add(e.name);
    this.#watcher = Deno.watchFs(this.dir, { recursive: false });
    const w = this.#watcher;
    this.#loop = (async () => {
      for await (const _ of w) this.#scan();
    })().catch(() => undefined);
    this.#timer = setInterval(() => this.#scan(), 5);
  }

  async #scan(): Promise<void> {
    if (this.#scanning) {
      this.#again = true;
      return;
    }
    this.#scanning = true;
    try {
      do {
        this.#again = false;
        for await (const e of Deno.readDir(this.dir)) {
          if (this.#before.has(e.name) || this.arrivals.has(e.name)) continue;
          if (parseLtxName(e.name)) this.arrivals.set(e.name, Date.now());
        }
      } while (this.#again);
    } catch {
      // The directory vanished (teardown); nothing more to record.
    } finally {
      this.#scanning = false;
    }
  }

  /** Stop watching (after one last scan). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#watcher?.close();
    await this.#loop;
    while (this.#scanning) await sleep(5);
  }
}

/** The highest TXN-nnnnnn marker in a page, or 0. */
function highestMarker(page: Uint8Array): number {
  let best = 0;
  const end = page.length - 10;
  for (let i = 0; i <= end; i++) {
    if (page[i] !== 0x54 || page[i + 1] !== 0x58 || page[i + 2] !== 0x4e || page[i + 3] !== 0x2d) {
      continue;
    }
    let v = 0;
    let ok = true;
    for (let j = 4; j < 10; j++) {
      const c = page[i + j] - 0x30;
      if (c < 0 || c > 9) {
        ok = false;
        break;
      }
      v = v * 10 + c;
    }
    if (ok && v > best) best = v;
  }
  return best;
}

/** The highest marker among all pages of an LTX file (decoded and fully validated). */
async function fileMarker(path: string): Promise<number> {
  const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
  let best = 0;
  for await (const p of dec.pages()) best = Math.max(best, highestMarker(p.data));
  await dec.finish();
  return best;
}

/** One row of the lag table. */
export interface LagResult {
  intervalS: number;
  transactions: number;
  spacingMs: number;
  files: number;
  lagsMs: number[];
  notDurable: number;
  exitCode: number;
  problems: string[];
}

/** Commit `n` marked transactions `spacingMs` apart under `watch` and measure each one's lag. */
async function lagRun(intervalS: number, n: number, spacingMs: number): Promise<LagResult> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-lag-" });
  let watch: WalrustProcess | undefined;
  let writer: PythonProcess | undefined;
  let rec: ArrivalRecorder | undefined;
  try {
    const db = `${dir}/lag.db`;
    const root = `${dir}/replica`;
    await runSql(
      db,
      "CREATE TABLE log (id INTEGER PRIMARY KEY, body TEXT); " +
        "INSERT INTO log (body) VALUES ('seed row without a marker')",
    );
    watch = new WalrustProcess([
      "watch",
      db,
      "--bucket",
      `file://${root}`,
      "--wal-sync-interval",
      String(intervalS),
    ]);
    await watch.waitFor("watching", 60_000);
    await assertWalrustPid(watch.pid);
    rec = new ArrivalRecorder(`${root}/lag.db/ltx/0`);
    await rec.start();
    await sleep(Math.max(500, intervalS * 2000)); // let the startup sync settle

    writer = new PythonProcess(LAG_WRITER, [db, String(n), String(spacingMs / 1000)]);
    const commits = new Map<number, number>();
    for (const line of (await writer.result()).trim().split("\n")) {
      const [i, t] = line.split(" ");
      commits.set(Number(i), Number(t) * 1000);
    }
    // Wait for the last transaction to land (or give up after a generous while).
    const deadline = Date.now() + 10_000 + intervalS * 3000;
    let durable = false;
    const checked = new Map<string, number>();
    while (!durable && Date.now() < deadline) {
      for (const name of rec.arrivals.keys()) {
        if (!checked.has(name)) checked.set(name, await fileMarker(`${rec.dir}/${name}`));
        if (checked.get(name)! >= n) durable = true;
      }
      if (!durable) await sleep(50);
    }
    await rec.stop();
    const exitCode = await stopWalrust(watch);

    // Arrival order; a transaction is durable at the first file whose marker reaches it.
    const files = [...rec.arrivals.entries()].sort((a, b) => a[1] - b[1]);
    const durableAt: number[] = [];
    let covered = 0;
    for (const [name, at] of files) {
      const m = checked.get(name) ?? await fileMarker(`${rec.dir}/${name}`);
      for (let i = covered + 1; i <= Math.min(m, n); i++) durableAt[i] = at;
      covered = Math.max(covered, Math.min(m, n));
    }
    const lagsMs: number[] = [];
    let notDurable = 0;
    for (let i = 1; i <= n; i++) {
      const c = commits.get(i);
      if (c === undefined || durableAt[i] === undefined) notDurable++;
      else lagsMs.push(durableAt[i] - c);
    }
    return {
      intervalS,
      transactions: n,
      spacingMs,
      files: files.length,
      lagsMs: lagsMs.sort((a, b) => a - b),
      notDurable,
      exitCode,
      problems: problems(watch.stderr),
    };
  } finally {
    await rec?.stop().catch(() => undefined);
    await writer?.stop();
    if (watch) await stopWalrust(watch, 5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Figure 2: commit-to-durable lag at --wal-sync-interval 1 and 0.1. */
export async function benchLag(opts: BenchOptions): Promise<LagResult[]> {
  const n = opts.quick ? 100 : 1000;
  const spacingMs = 20;
  console.log(
    `\n## Replication lag, commit -> level-0 file in the replica (file backend)\n` +
      `One python3 writer commits ${n} transactions ${spacingMs} ms apart, each inserting one row\n` +
      `marked TXN-nnnnnn, and records time.time() after COMMIT returns. The benchmark records\n` +
      `each new file's arrival in <replica>/lag.db/ltx/0/ (Deno.watchFs + 5 ms poll), then decodes\n` +
      `every file: a transaction is durable at the first file whose highest marker reaches it.`,
  );
  const results: LagResult[] = [];
  for (const interval of [1, 0.1]) results.push(await lagRun(interval, n, spacingMs));
  printTable(
    [
      "--wal-sync-interval",
      "txns",
      "L0 files",
      "P50 ms",
      "P95 ms",
      "P99 ms",
      "max ms",
      "min ms",
      "target P95",
      "result",
    ],
    results.map((r) => {
      const target = r.intervalS * 1000 + 50;
      const p95 = percentile(r.lagsMs, 95);
      return [
        `${r.intervalS} s`,
        String(r.transactions),
        String(r.files),
        percentile(r.lagsMs, 50).toFixed(0),
        p95.toFixed(0),
        percentile(r.lagsMs, 99).toFixed(0),
        r.lagsMs.at(-1)!.toFixed(0),
        r.lagsMs[0].toFixed(0),
        `<= ${target} ms`,
        r.notDurable > 0 ? `${r.notDurable} never durable` : p95 <= target ? "PASS" : "FAIL",
      ];
    }),
  );
  for (const r of results) {
    console.log(`  interval ${r.intervalS}: walrust exit ${r.exitCode}`);
    for (const p of r.problems.slice(0, 5)) console.log(`  interval ${r.intervalS} stderr: ${p}`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// 3. Restore throughput

const WORDS = (
  "order invoice customer shipping pending delivered returned refund payment card account " +
  "address street city country postal region product category price discount quantity stock " +
  "warehouse supplier review rating comment session login logout error warning notice update"
).split(" ");

/** A deterministic PRNG so every run builds the same database. */
function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Build a database of at least `targetBytes` with 4 KiB pages: rows of short text, a body of
 * words, JSON-ish attributes and a blob that is half random, half repetitive. Ends in WAL mode.
 */
export function buildRestoreDb(path: string, targetBytes: number): { rows: number; bytes: number } {
  const rnd = prng(42);
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
      CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, author TEXT, created TEXT,
        body TEXT, attrs TEXT, payload BLOB);
      CREATE INDEX docs_author ON docs (author, created);`);
    const ins = db.prepare(
      "INSERT INTO docs (title, author, created, body, attrs, payload) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const pages = db.prepare("PRAGMA page_count");
    const word = () => WORDS[Math.floor(rnd() * WORDS.length)];
    // Mostly words, with some numbers, as in real notes and logs.
    const token = () => rnd() < 0.15 ? String(Math.floor(rnd() * 1e6)) : word();
    const words = (k: number) => Array.from({ length: k }, token).join(" ");
    let rows = 0;
    let bytes = 0;
    while (bytes < targetBytes) {
      db.exec("BEGIN");
      for (let i = 0; i < 500; i++) {
        // Half random (incompressible), half a repeated 16-byte pattern (compressible).
        const blob = new Uint8Array(600 + Math.floor(rnd() * 1200));
        const half = blob.length >> 1;
        for (let j = 0; j < half; j++) blob[j] = Math.floor(rnd() * 256);
        for (let j = half; j < blob.length; j++) blob[j] = blob[j & 0x0f];
        ins.run(
          words(6),
          `user${Math.floor(rnd() * 5000)}@example.com`,
          new Date(1_700_000_000_000 + rows * 60_000).toISOString(),
          words(80 + Math.floor(rnd() * 200)),
          JSON.stringify({ score: Math.floor(rnd() * 100), tags: [word(), word()], v: rows }),
          blob,
        );
        rows++;
      }
      db.exec("COMMIT");
      bytes = Number((pages.get() as { page_count: number }).page_count) * 4096;
    }
    db.exec("PRAGMA journal_mode=WAL");
    return { rows, bytes };
  } finally {
    db.close();
  }
}

/** Page count and a SHA-256 over every row of docs, to check a restore against its source. */
export function summarize(path: string): { pages: number; digest: string } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const h = createHash("sha256");
    for (const row of db.prepare("SELECT * FROM docs ORDER BY id").iterate()) {
      for (const v of Object.values(row as Record<string, unknown>)) {
        h.update(v instanceof Uint8Array ? v : String(v));
        h.update("\x00");
      }
    }
    const pc = db.prepare("PRAGMA page_count").get() as { page_count: number };
    return { pages: pc.page_count, digest: h.digest("hex") };
  } finally {
    db.close();
  }
}

/** Bytes of the level-9 snapshot files of a file replica. */
async function snapshotBytes(root: string, name: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(`${root}/${name}/ltx/9`)) {
    total += (await Deno.stat(`${root}/${name}/ltx/9/${e.name}`)).size;
  }
  return total;
}

/** Replica bytes under a directory (all levels). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) total += await treeBytes(p);
    else if (e.isFile) total += (await Deno.stat(p)).size;
  }
  return total;
}

/** Run walrust to completion while sampling its memory; returns wall time and peak RSS. */
export async function timedWalrust(args: string[]): Promise<
  { code: number; ms: number; hwmKb: number; stdout: string; stderr: string }
> {
  const t0 = performance.now();
  const p = new WalrustProcess(args);
  const s = new PeakSampler(p.pid, 10);
  const code = await p.wait();
  const ms = performance.now() - t0;
  s.stop();
  return { code, ms, hwmKb: s.peakHwmKb, stdout: p.stdout, stderr: p.stderr };
}

/** Results of the restore benchmark. */
export interface RestoreBench {
  dbBytes: number;
  rows: number;
  replicaBytes: number;
  snapshotBytes: number;
  onceMs: number;
  onceHwmKb: number;
  cli: { ms: number; internalMs: number; hwmKb: number }[];
  inProcessMs: number[];
  identical: boolean;
}

/** Figure 3: restore throughput and peak RSS of `walrust restore`. */
export async function benchRestore(opts: BenchOptions): Promise<RestoreBench> {
  const target = opts.quick ? 20e6 : 200e6;
  const runs = opts.quick ? 1 : 3;
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-restore-" });
  try {
    const db = `${dir}/big.db`;
    const bucket = `file://${dir}/replica`;
    const built = buildRestoreDb(db, target);

    const once = await timedWalrust(["watch", db, "--bucket", bucket, "--once"]);
    if (once.code !== 0) throw new Error(`watch --once failed (${once.code}): ${once.stderr}`);
    const replicaBytes = await treeBytes(`${dir}/replica`);
    // After the first sync: walrust adds its own small tables, so the page count grows a little.
    const source = summarize(db);
    const same = (out: string) => {
      const s = summarize(out);
      return s.pages === source.pages && s.digest === source.digest;
    };

    const cli: RestoreBench["cli"] = [];
    let identical = true;
    for (let i = 0; i < runs; i++) {
      const out = `${dir}/restored-cli-${i}.db`;
      const r = await timedWalrust(["restore", "big.db", "-o", out, "--bucket", bucket, "--json"]);
      if (r.code !== 0) throw new Error(`restore failed (${r.code}): ${r.stderr}`);
      const summary = JSON.parse(r.stdout) as { duration_ms: number; bytes: number };
      if (summary.bytes !== source.pages * 4096 || !same(out)) identical = false;
      cli.push({ ms: r.ms, internalMs: summary.duration_ms, hwmKb: r.hwmKb });
      await Deno.remove(out);
    }

    const inProcessMs: number[] = [];
    const replica = await openReplica(bucket);
    for (let i = 0; i < runs; i++) {
      const out = `${dir}/restored-lib-${i}.db`;
      const t0 = performance.now();
      const plan = await planRestore(DbReplica.of(replica, "big.db"), { kind: "latest" });
      await applyPlan(replica.storage, plan, out, { integrity: "full" });
      inProcessMs.push(performance.now() - t0);
      if (!same(out)) identical = false;
      await Deno.remove(out);
    }

    const res: RestoreBench = {
      dbBytes: source.pages * 4096,
      rows: built.rows,
      replicaBytes,
      snapshotBytes: await snapshotBytes(`${dir}/replica`, "big.db"),
      onceMs: once.ms,
      onceHwmKb: once.hwmKb,
      cli,
      inProcessMs,
      identical,
    };
    printRestore(res);
    return res;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function printRestore(r: RestoreBench): void {
  const mbps = (ms: number) => (r.dbBytes / 1e6 / (ms / 1000)).toFixed(1);
  console.log(
    `\n## Restore throughput (file backend, warm page cache, full integrity_check included)\n` +
      `Database: ${(r.dbBytes / 1e6).toFixed(1)} MB (${r.dbBytes / 4096} pages of 4 KiB, ` +
      `${r.rows} rows of text, JSON and half-random blobs).\nReplica after \`watch --once\`: ` +
      `snapshot ${(r.snapshotBytes / 1e6).toFixed(1)} MB (LZ4 ratio ` +
      `${(r.snapshotBytes / r.dbBytes).toFixed(2)}), all files ${
        (r.replicaBytes / 1e6).toFixed(1)
      } MB.\n` +
      `MB/s = database bytes (1e6) / seconds. CLI wall time includes deno startup; "restore ms"\n` +
      `is the CLI's own duration_ms (plan + apply + check + rename). Peak RSS = VmHWM of the\n` +
      `walrust deno process, sampled every 10 ms.`,
  );
  const rows: string[][] = [[
    "watch --once (snapshot + upload)",
    r.onceMs.toFixed(0),
    "",
    mbps(r.onceMs),
    mb(r.onceHwmKb),
  ]];
  r.cli.forEach((c, i) =>
    rows.push([
      `restore CLI run ${i + 1}`,
      c.ms.toFixed(0),
      String(c.internalMs),
      mbps(c.ms),
      mb(c.hwmKb),
    ])
  );
  r.inProcessMs.forEach((ms, i) =>
    rows.push([
      `restore in-process run ${i + 1} (planRestore+applyPlan)`,
      ms.toFixed(0),
      "",
      mbps(ms),
      "",
    ])
  );
  printTable(["step", "wall ms", "restore ms", "MB/s", "peak RSS MiB"], rows);
  const med = [...r.cli.map((c) => c.ms)].sort((a, b) => a - b)[Math.floor(r.cli.length / 2)];
  console.log(
    `restore CLI median: ${mbps(med)} MB/s; restored content matches source: ` +
      (r.identical ? "yes" : "NO"),
  );
}
