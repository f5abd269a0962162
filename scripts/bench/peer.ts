/**
 * walrust next to Litestream 0.3.13 in one run (issue 13): the same workloads on the filesystem
 * backend, each tool on its own copy of the same databases, the same sync interval, run
 * alternately (walrust, then Litestream, per workload and repetition) so machine noise hits both.
 * Every figure is given for both tools and as the ratio walrust / Litestream.
 *
 * Workloads: steady (N databases, one small commit per database per second), idle (N = 100, no
 * writes; measured on the N = 100 steady run's processes before its writes start), lag (commit to
 * durable in the replica at a 0.1 s interval), heavy (5 MB/s of page changes into one database)
 * and restore (a large database replicated, then restored by each tool's own restore command).
 *
 * `deno run -A scripts/bench/peer.ts [--quick] [--full] [--only steady,lag,heavy,restore]
 * [--ns 1,100,1000] [--dir /dev/shm]`: `--ns` replaces the steady workload's database counts,
 * `--dir` is where the temp dir (databases and replicas) goes (default: the system's temp dir).
 * Writes the figures as JSON to bench-results/peer-<time>.json; everything else lives in a temp
 * dir that is removed at the end; every process started is stopped by PID.
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { LtxDecoder, readLtxFile } from "../../src/ltx/decoder.ts";
import { lz4FrameStream } from "../../src/restore/v3.ts";
import { waitCaughtUp } from "../../tests/helpers/replica.ts";
import { dumpContent } from "../../tests/helpers/sqlite_writer.ts";
import {
  printTable,
  type ProcMemory,
  procMemory,
  PythonProcess,
  summarize,
} from "./replication.ts";
import {
  fdCount,
  machineBusyTicks,
  percentile,
  procTicks,
  ticksPerSecond,
  ToolProcess,
  writeLitestreamConfig,
} from "./proc.ts";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const MAIN = `${REPO}/main.ts`;
const CONFIG = `${REPO}/deno.json`;
const LITESTREAM_PKG = "@flydotio/litestream-linux-x64@1.0.1";

type Tool = "walrust" | "litestream";
const TOOLS: Tool[] = ["walrust", "litestream"];
type Workload = "steady" | "lag" | "heavy" | "restore";
const WORKLOADS: Workload[] = ["steady", "lag", "heavy", "restore"];

/** Lengths of one run of the benchmark. */
interface Plan {
  steadyNs: number[];
  /** Steady window for N >= 100. */
  steadyS: number;
  /** Steady window for N < 100 (shorter, to keep the default run under 10 minutes). */
  steadySmallS: number;
  settleMs: number;
  warmupS: number;
  idleS: number;
  lagS: number;
  heavyS: number;
  heavyBytesPerS: number;
  restoreMB: number[];
  restoreRuns: number;
}

function planFor(quick: boolean, full: boolean): Plan {
  const p: Plan = quick
    ? {
      steadyNs: [1, 10, 100],
      steadyS: 10,
      steadySmallS: 10,
      settleMs: 3_000,
      warmupS: 1,
      idleS: 10,
      lagS: 10,
      heavyS: 10,
      heavyBytesPerS: 5e6,
      restoreMB: [200],
      restoreRuns: 1,
    }
    : {
      steadyNs: [1, 10, 100],
      steadyS: 60,
      steadySmallS: 30,
      settleMs: 5_000,
      warmupS: 2,
      idleS: 30,
      lagS: 30,
      heavyS: 30,
      heavyBytesPerS: 5e6,
      restoreMB: [500],
      restoreRuns: 3,
    };
  if (full) {
    p.steadyNs.push(1000);
    p.restoreMB.push(1000);
  }
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kb: number) => (kb / 1024).toFixed(1);
const errText = (e: unknown) => e instanceof Error ? e.message : String(e);

// ---------------------------------------------------------------------------------------------
// /proc readers: ./proc.ts

/** CPU of one process and of the whole machine over a window. */
class CpuWindow {
  #t0 = 0;
  #c0 = 0;
  #m0 = 0;
  private constructor(readonly pid: number) {}

  /** Start a window now. */
  static async start(pid: number): Promise<CpuWindow> {
    const w = new CpuWindow(pid);
    w.#c0 = await procTicks(pid);
    w.#m0 = await machineBusyTicks();
    w.#t0 = performance.now();
    return w;
  }

  /** End the window: seconds, CPU seconds of the process, cores the rest of the machine used. */
  async end(): Promise<{ seconds: number; cpuS: number; otherCores: number }> {
    const c1 = await procTicks(this.pid);
    const m1 = await machineBusyTicks();
    const seconds = (performance.now() - this.#t0) / 1000;
    const hz = await ticksPerSecond();
    return {
      seconds,
      cpuS: (c1 - this.#c0) / hz,
      otherCores: (m1 - this.#m0 - (c1 - this.#c0)) / hz / seconds,
    };
  }
}

/** Samples /proc/<pid>/status every `everyMs` until stopped. */
class Sampler {
  readonly samples: ProcMemory[] = [];
  readonly #timer: ReturnType<typeof setInterval>;
  #busy = false;

  constructor(readonly pid: number, everyMs: number) {
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), everyMs);
  }

  async #tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const m = await procMemory(this.pid);
      if (m) this.samples.push(m);
    } finally {
      this.#busy = false;
    }
  }

  /** Stop sampling (after one last sample). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    while (this.#busy) await sleep(1);
    await this.#tick();
  }

  /** Median and peak of one field over the samples. */
  stat(field: "rssKb" | "anonKb"): { median: number; peak: number } {
    const v = this.samples.map((s) => s[field]).sort((a, b) => a - b);
    return { median: v.length ? v[Math.floor(v.length / 2)] : NaN, peak: v.at(-1) ?? NaN };
  }

  /** The highest VmHWM and VmRSS seen. */
  get peakKb(): number {
    return Math.max(0, ...this.samples.map((s) => Math.max(s.hwmKb, s.rssKb)));
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Anything started here that must be stopped at the end or on failure. */
interface Stoppable {
  stop(graceMs?: number): Promise<unknown>;
}
const live = new Set<Stoppable>();

/** A bench tool (./proc.ts) that the exit handler stops if the run fails first. */
class TrackedTool extends ToolProcess implements Stoppable {
  constructor(cmd: string[], logPath: string, cwd: string) {
    super(cmd, logPath, cwd);
    live.add(this);
  }

  override async stop(graceMs = 15_000): Promise<number> {
    try {
      return await super.stop(graceMs);
    } finally {
      live.delete(this);
    }
  }
}

/** A python3 child registered for the final clean-up. */
function python(script: string, args: string[]): PythonProcess {
  const p = new PythonProcess(script, args);
  live.add(p);
  return p;
}

/** Wait for a python3 child and unregister it. */
async function pythonResult(p: PythonProcess): Promise<string> {
  try {
    return await p.result();
  } finally {
    live.delete(p);
  }
}

/** Make sure `pid` runs the tool itself (not bash or a wrapper), so the figures are the tool's. */
async function assertTool(pid: number, tool: Tool): Promise<void> {
  const cmd = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
  const ok = tool === "walrust"
    ? cmd[0] === Deno.execPath() && cmd.includes(MAIN)
    : /litestream$/.test(cmd[0]);
  if (!ok) throw new Error(`pid ${pid} is not ${tool}: ${cmd.join(" ")}`);
}

/** The command line of walrust, as `deno task install` installs it. */
function walrustCmd(args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--v8-flags=--max-semi-space-size=1",
    "--config",
    CONFIG,
    MAIN,
    ...args,
  ];
}

/** Run a command to completion, sampling its memory every 10 ms. */
async function timedRun(cmd: string[], tool: Tool): Promise<
  { code: number; ms: number; peakKb: number; stdout: string; stderr: string }
> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const handle: Stoppable = {
    stop: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
    },
  };
  live.add(handle);
  const s = new Sampler(child.pid, 10);
  try {
    // Spawned without a wrapper, so the PID is the tool; checked unless it already exited.
    const cmdline = await Deno.readTextFile(`/proc/${child.pid}/cmdline`).catch(() => "");
    if (cmdline !== "") await assertTool(child.pid, tool);
    const o = await child.output();
    const ms = performance.now() - t0;
    live.delete(handle);
    await s.stop();
    const dec = new TextDecoder();
    return {
      code: o.code,
      ms,
      peakKb: s.peakKb,
      stdout: dec.decode(o.stdout),
      stderr: dec.decode(o.stderr),
    };
  } finally {
    await s.stop();
    if (live.delete(handle)) await handle.stop(); // failed before it exited
  }
}

/** Install Litestream from npm into `dir`; returns the binary and its version (idle.ts's way). */
async function installLitestream(dir: string): Promise<{ bin: string; version: string }> {
  const o = await new Deno.Command("npm", {
    args: ["install", "--prefix", dir, "--no-audit", "--no-fund", "--silent", LITESTREAM_PKG],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (o.code !== 0) {
    throw new Error(`npm install exited ${o.code}: ${new TextDecoder().decode(o.stderr).trim()}`);
  }
  const bin = `${dir}/node_modules/@flydotio/litestream-linux-x64/litestream`;
  const v = await new Deno.Command(bin, { args: ["version"], stdout: "piped", stderr: "piped" })
    .output();
  if (v.code !== 0) throw new Error(`${bin} version exited ${v.code}`);
  return { bin, version: new TextDecoder().decode(v.stdout).trim() };
}

// ---------------------------------------------------------------------------------------------
// One tool over one directory: <dir>/dbs/*.db replicated to <dir>/replica

/** A tool set up over `dir`/dbs, with the commands to replicate and restore. */
class Setup {
  private constructor(
    readonly tool: Tool,
    readonly dir: string,
    readonly names: string[],
    readonly replicate: string[],
    readonly restoreCmd: (name: string, out: string) => string[],
  ) {}

  /** The replica root. */
  get root(): string {
    return `${this.dir}/replica`;
  }

  /** Write the tool's config for `names` (in `dir`/dbs) at `intervalS`. */
  static async create(
    tool: Tool,
    dir: string,
    names: string[],
    intervalS: number,
    litestream: string,
  ): Promise<Setup> {
    if (tool === "walrust") {
      const path = `${dir}/walrust.toml`;
      const bucket = `file://${dir}/replica`;
      await Deno.writeTextFile(
        path,
        // No metrics server: Litestream 0.3 serves none unless `addr` is set (and the default
        // port may be taken by another walrust on this machine).
        `[s3]\nbucket = "${bucket}"\n\n[sync]\nwal_sync_interval = ${intervalS}\n\n` +
          `[metrics]\nenabled = false\n\n` +
          `[[databases]]\npath = "${dir}/dbs/*.db"\n`,
      );
      return new Setup(
        tool,
        dir,
        names,
        walrustCmd(["--config", path, "watch"]),
        (name, out) => walrustCmd(["restore", name, "-o", out, "--bucket", bucket]),
      );
    }
    const path = await writeLitestreamConfig(dir, names, intervalS);
    return new Setup(
      tool,
      dir,
      names,
      [litestream, "replicate", "-config", path],
      (name, out) => [litestream, "restore", "-o", out, "-config", path, `${dir}/dbs/${name}`],
    );
  }

  /** Start replicating and wait until every database reached the replica. */
  async start(timeoutMs = 300_000): Promise<{ p: ToolProcess; startupS: number }> {
    const t0 = performance.now();
    const p = new TrackedTool(this.replicate, `${this.dir}/${this.tool}.log`, this.dir);
    await this.#waitReady(p, timeoutMs);
    await assertTool(p.pid, this.tool);
    return { p, startupS: (performance.now() - t0) / 1000 };
  }

  async #waitReady(p: ToolProcess, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const left = new Set(this.names);
    let watching = this.tool !== "walrust";
    while (Date.now() < deadline) {
      if (p.exited) {
        throw new Error(`${this.tool} exited during start-up:\n${digest(await p.log())}`);
      }
      if (!watching) watching = (await p.log()).includes("INFO  watching");
      for (const n of [...left]) if (await this.#replicated(n)) left.delete(n);
      if (watching && left.size === 0) return;
      await sleep(200);
    }
    throw new Error(
      `${this.tool}: ${left.size} of ${this.names.length} databases not replicated after ` +
        `${timeoutMs} ms; log:\n${digest(await p.log())}`,
    );
  }

  /** Whether the replica holds the first sync of database `name`. */
  async #replicated(name: string): Promise<boolean> {
    const files = this.tool === "walrust"
      ? await ltxFiles(this.root, name)
      : await walSegments(this.root, name);
    return files.length > 0;
  }

  /** Restore `name` with the tool's own restore command into `out`, timed. */
  async restore(name: string, out: string) {
    const r = await timedRun(this.restoreCmd(name, out), this.tool);
    if (r.code !== 0) {
      throw new Error(`${this.tool} restore ${name} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    }
    return r;
  }
}

/** The lines of a log worth reading after a failure: all but per-database start-up chatter. */
function digest(log: string): string {
  const chatter = /INFO {1,2}(snapshot|replicating)\b|msg="(initialized db|replicating to)"/;
  return log.split("\n").filter((l) => l && !chatter.test(l)).slice(-30).join("\n");
}

/** WARN/ERROR lines of a tool's log. */
async function problems(p: ToolProcess): Promise<string[]> {
  return (await p.log()).split("\n").filter((l) => /\b(WARN|ERROR)\b|level=(WARN|ERROR)/.test(l));
}

async function fileNames(dir: string, re: RegExp): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile && re.test(e.name)) out.push(e.name);
  } catch { /* not there yet */ }
  return out;
}

const LTX_NAME = /^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/;
const SEGMENT_NAME = /^([0-9a-f]{8})_([0-9a-f]{8,16})\.wal\.lz4$/;
const SNAPSHOT_NAME = /^[0-9a-f]{8}\.snapshot\.lz4$/;

/** Paths of walrust's level-0 files of `name` in a file replica. */
async function ltxFiles(root: string, name: string): Promise<string[]> {
  const dir = `${root}/${name}/ltx/0`;
  return (await fileNames(dir, LTX_NAME)).map((n) => `${dir}/${n}`);
}

/** Litestream 0.3 files of `name` (WAL segments or snapshots), newest generation first. */
async function v3Files(root: string, name: string, kind: "wal" | "snapshots"): Promise<string[]> {
  const gens: { files: string[]; mtime: number }[] = [];
  const re = kind === "wal" ? SEGMENT_NAME : SNAPSHOT_NAME;
  for (const g of await dirNames(`${root}/${name}/generations`)) {
    const dir = `${root}/${name}/generations/${g}/${kind}`;
    const files = (await fileNames(dir, re)).sort(segmentOrder).map((n) => `${dir}/${n}`);
    if (files.length === 0) continue;
    const st = await Deno.stat(files.at(-1)!).catch(() => undefined);
    gens.push({ files, mtime: st?.mtime?.getTime() ?? 0 });
  }
  // Within a generation by (index, offset); generations by their newest file.
  return gens.sort((a, b) => b.mtime - a.mtime).flatMap((g) => g.files.reverse());
}

/** Litestream 0.3 WAL segments of `name`, newest first. */
function walSegments(root: string, name: string): Promise<string[]> {
  return v3Files(root, name, "wal");
}

function segmentOrder(a: string, b: string): number {
  const ma = SEGMENT_NAME.exec(a), mb = SEGMENT_NAME.exec(b);
  if (!ma || !mb) return a < b ? -1 : a > b ? 1 : 0;
  return parseInt(ma[1], 16) - parseInt(mb[1], 16) || parseInt(ma[2], 16) - parseInt(mb[2], 16);
}

async function dirNames(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) out.push(e.name);
  } catch { /* not there yet */ }
  return out;
}

/** Bytes of the snapshot files of `name` (walrust level 9, Litestream snapshots/). */
async function snapshotBytes(tool: Tool, root: string, name: string): Promise<number> {
  const dir = `${root}/${name}/ltx/9`;
  const files = tool === "walrust"
    ? (await fileNames(dir, LTX_NAME)).map((n) => `${dir}/${n}`)
    : await v3Files(root, name, "snapshots");
  let total = 0;
  for (const f of files) total += (await Deno.stat(f)).size;
  return total;
}

/** Bytes of every file under `dir`. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) total += await treeBytes(p);
    else if (e.isFile) total += (await Deno.stat(p)).size;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Markers: commits carry PREFIX + fixed-width digits in a row, found again in replica pages

/** Finds the highest PREFIX-dddddd marker in a stream of chunks (markers may span chunks). */
class MarkerScan {
  best = 0;
  #carry = new Uint8Array(0);
  readonly #prefix: Uint8Array;

  constructor(prefix: string, readonly digits: number) {
    this.#prefix = new TextEncoder().encode(prefix);
  }

  /** Scan the next chunk (it may be a reused buffer: nothing of it is kept but a copy). */
  feed(chunk: Uint8Array): void {
    const keep = this.#prefix.length + this.digits - 1;
    let b = chunk;
    if (this.#carry.length > 0) {
      b = new Uint8Array(this.#carry.length + chunk.length);
      b.set(this.#carry);
      b.set(chunk, this.#carry.length);
    }
    const p = this.#prefix;
    const end = b.length - p.length - this.digits;
    outer: for (let i = 0; i <= end; i++) {
      for (let j = 0; j < p.length; j++) if (b[i + j] !== p[j]) continue outer;
      let v = 0;
      for (let j = 0; j < this.digits; j++) {
        const c = b[i + p.length + j] - 0x30;
        if (c < 0 || c > 9) continue outer;
        v = v * 10 + c;
      }
      if (v > this.best) this.best = v;
    }
    this.#carry = b.slice(Math.max(0, b.length - keep));
  }

  /** Forget the carried tail (the next chunk is not contiguous with the last). */
  reset(): void {
    this.#carry = new Uint8Array(0);
  }
}

/** The highest marker in a replica file: a walrust LTX file or a Litestream 0.3 WAL segment. */
async function fileMarker(tool: Tool, path: string, prefix: string, digits: number) {
  const scan = new MarkerScan(prefix, digits);
  if (tool === "walrust") {
    const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
    for await (const p of dec.pages()) {
      scan.reset();
      scan.feed(p.data);
    }
    await dec.finish();
  } else {
    const data = await Deno.readFile(path); // segments are small (one sync's WAL frames)
    const src = (async function* () {
      yield data;
    })();
    for await (const block of lz4FrameStream(src)) scan.feed(block);
  }
  return scan.best;
}

/** Records when each replica file first appears (polling every `everyMs`). */
class Arrivals {
  /** Path -> arrival time (ms since the epoch); files present at start are not recorded. */
  readonly seen = new Map<string, number>();
  readonly #before = new Set<string>();
  #timer?: ReturnType<typeof setInterval>;
  #busy = false;

  constructor(readonly list: () => Promise<string[]>, readonly everyMs: number) {}

  /** Take the initial listing and start polling. */
  async start(): Promise<void> {
    for (const p of await this.list()) this.#before.add(p);
    this.#timer = setInterval(() => this.#scan(), this.everyMs);
  }

  async #scan(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (const p of await this.list()) {
        if (!this.#before.has(p) && !this.seen.has(p)) this.seen.set(p, Date.now());
      }
    } catch {
      /* a directory changed under us; the next poll sees it */
    } finally {
      this.#busy = false;
    }
  }

  /** Stop polling. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    while (this.#busy) await sleep(1);
  }
}

/** Lister of the files a tool adds per sync for database `name`. */
function syncFiles(tool: Tool, root: string, name: string): () => Promise<string[]> {
  return tool === "walrust" ? () => ltxFiles(root, name) : () => walSegments(root, name);
}

/**
 * Lag of each commit i (1..n, committed at commits[i] ms): a commit is durable at the arrival of
 * the first file whose highest marker reaches it. Decodes every arrived file (after the run).
 */
async function lagsOf(
  tool: Tool,
  arrivals: Map<string, number>,
  commits: number[],
  markers: Map<string, number>,
): Promise<{ lagsMs: number[]; notDurable: number }> {
  const files = [...arrivals.entries()].sort((a, b) => a[1] - b[1]);
  const n = commits.length - 1;
  const durableAt: number[] = [];
  let covered = 0;
  for (const [path, at] of files) {
    let m = markers.get(path);
    if (m === undefined) markers.set(path, m = await fileMarker(tool, path, "TXN-", 6));
    for (let i = covered + 1; i <= Math.min(m, n); i++) durableAt[i] = at;
    covered = Math.max(covered, Math.min(m, n));
  }
  const lagsMs: number[] = [];
  let notDurable = 0;
  for (let i = 1; i <= n; i++) {
    if (commits[i] === undefined || durableAt[i] === undefined) notDurable++;
    else lagsMs.push(durableAt[i] - commits[i]);
  }
  return { lagsMs: lagsMs.sort((a, b) => a - b), notDurable };
}

/** Wait until a file with marker >= `n` arrived; returns seconds waited (NaN on time-out). */
async function waitMarker(
  tool: Tool,
  arrivals: Arrivals,
  n: number,
  markers: Map<string, number>,
  timeoutMs: number,
): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    for (const path of arrivals.seen.keys()) {
      if (!markers.has(path)) {
        markers.set(path, await fileMarker(tool, path, "TXN-", 6).catch(() => -1));
        if (markers.get(path) === -1) markers.delete(path); // still being written: retry
      }
      if ((markers.get(path) ?? 0) >= n) return (performance.now() - t0) / 1000;
    }
    await sleep(20);
  }
  return NaN;
}

/** Nearest-rank percentile of sorted values. */

// ---------------------------------------------------------------------------------------------
// Writers and seeds (python3, so their cost stays outside both tools' figures)

// ~100 KB per database: WAL mode, one table of 450 rows of ~190 bytes.
const SEED_STEADY = String.raw`
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect("%s/db%04d.db" % (d, i), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL").fetchall()
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, note TEXT)")
    c.execute("BEGIN")
    for k in range(450):
        c.execute("INSERT INTO t (v, note) VALUES (?, ?)", (k, "seed %05d %s" % (k, "x" * 180)))
    c.execute("COMMIT")
    c.close()
`;

// One process, one connection per database; commits spread evenly over each second. Each row
// carries STD-nnnnnnnn (a global counter); prints the last counter committed to each database.
const STEADY_WRITER = String.raw`
import json, sqlite3, sys, time
duration, rate, paths = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
conns = [sqlite3.connect(p, isolation_level=None, timeout=5) for p in paths]
last = [0] * len(conns)
step = 1.0 / (rate * len(conns))
t0, k, errors = time.time(), 0, 0
while True:
    t = t0 + k * step
    if t - t0 >= duration:
        break
    d = t - time.time()
    if d > 0:
        time.sleep(d)
    k += 1
    try:
        conns[k % len(conns)].execute("INSERT INTO t (v, note) VALUES (?, ?)", (k, "STD-%08d light" % k))
        last[k % len(conns)] = k
    except sqlite3.Error as e:
        errors += 1
        sys.stderr.write("%s\n" % e)
late = time.time() - (t0 + duration)
for c in conns:
    c.close()
print(json.dumps({"commits": k - errors, "errors": errors, "late": late, "last": last}))
`;

// Commits one marked row per transaction `spacing` s apart; prints the commit times.
const LAG_WRITER = String.raw`
import json, sqlite3, sys, time
path, n, spacing = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=5)
times = []
t0 = time.time() + 0.05
for i in range(1, n + 1):
    d = t0 + (i - 1) * spacing - time.time()
    if d > 0:
        time.sleep(d)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO log (body) VALUES (?)", ("TXN-%06d %s" % (i, "payload " * 8),))
    conn.execute("COMMIT")
    times.append(time.time())
conn.close()
print(json.dumps(times))
`;

// 2,000 rows of one page each (3,000 random bytes) and a marker row, ~8.5 MB.
const SEED_HEAVY = String.raw`
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL").fetchall()
c.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, data BLOB)")
c.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body TEXT)")
c.execute("BEGIN")
for i in range(2000):
    c.execute("INSERT INTO b (data) VALUES (?)", (os.urandom(3000),))
c.execute("INSERT INTO m (body) VALUES ('TXN-000000')")
c.execute("COMMIT")
c.close()
`;

// Every 100 ms one transaction rewrites random rows with new random blobs (rate bytes/s of
// pages) and sets the marker row to TXN-<transaction number>; prints the commit times.
const HEAVY_WRITER = String.raw`
import json, os, random, sqlite3, sys, time
path, duration, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=5)
rows = conn.execute("SELECT max(id) FROM b").fetchone()[0]
per_tx = max(1, round(rate * 0.1 / 4096))
times, updates = [], 0
t0 = time.time() + 0.05
i = 0
while t0 + i * 0.1 - t0 < duration:
    d = t0 + i * 0.1 - time.time()
    if d > 0:
        time.sleep(d)
    i += 1
    conn.execute("BEGIN IMMEDIATE")
    for _ in range(per_tx):
        conn.execute("UPDATE b SET data = ? WHERE id = ?", (os.urandom(3000), random.randint(1, rows)))
    conn.execute("UPDATE m SET body = ? WHERE id = 1", ("TXN-%06d" % i,))
    conn.execute("COMMIT")
    times.append(time.time())
    updates += per_tx + 1
conn.close()
print(json.dumps({"times": times, "pages": updates, "seconds": time.time() - t0}))
`;

/** Copy every database of `from` into `to` (created). */
async function copyDbs(from: string, to: string, dbNames: string[]): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const n of dbNames) await Deno.copyFile(`${from}/${n}`, `${to}/${n}`);
}

/**
 * A database of at least `targetBytes` (4 KiB pages) with the `docs` table `summarize` reads:
 * short text, a body of words, JSON attributes and a blob half random, half zeros. Built by SQL
 * in one process (much faster than replication.ts's buildRestoreDb at 500 MB). Ends in WAL mode.
 */
function buildBigDb(path: string, targetBytes: number): number {
  const words = (
    "order invoice customer shipping pending delivered returned refund payment card account " +
    "address street city country postal region product category price discount quantity stock " +
    "warehouse supplier review rating comment session login logout error warning notice update "
  ).repeat(30);
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
      CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, author TEXT, created TEXT,
        body TEXT, attrs TEXT, payload BLOB);
      CREATE INDEX docs_author ON docs (author, created);`);
    const ins = db.prepare(`WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c
        WHERE i < ?2)
      INSERT INTO docs (title, author, created, body, attrs, payload)
      SELECT 'doc ' || i || ' ' || substr(?3, 1 + abs(random()) % 500, 40),
        'user' || (abs(random()) % 5000) || '@example.com',
        datetime(1700000000 + i * 60, 'unixepoch'),
        substr(?3, 1 + abs(random()) % 2000, 400 + abs(random()) % 1200),
        json_object('score', abs(random()) % 100, 'v', i),
        unhex(hex(randomblob(300 + abs(random()) % 600)) || hex(zeroblob(300 + abs(random()) % 600)))
      FROM c`);
    const pages = db.prepare("PRAGMA page_count");
    let next = 1;
    let bytes = 0;
    while (bytes < targetBytes) {
      ins.run(next, next + 9_999, words);
      next += 10_000;
      bytes = Number((pages.get() as { page_count: number }).page_count) * 4096;
    }
    db.exec("PRAGMA journal_mode=WAL");
    return bytes;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/** Figures of one steady run. */
interface SteadyResult {
  tool: Tool;
  n: number;
  windowS: number;
  startupS: number;
  rssMedKb: number;
  rssPeakKb: number;
  anonMedKb: number;
  anonPeakKb: number;
  hwmKb: number;
  fds: number;
  threads: number;
  cpuS: number;
  otherCores: number;
  /** Files created in the replica over the window (the file backend's write requests). */
  replicaFilesWritten: number;
  commits: number;
  writerErrors: number;
  caughtUp: number;
  catchUpS: number;
  restoresEqual: number;
  restoresChecked: number;
  exitCode: number;
  problems: string[];
}

/** Figures of one idle window. */
interface IdleResult {
  tool: Tool;
  n: number;
  windowS: number;
  cpuS: number;
  rssMedKb: number;
  fds: number;
  threads: number;
  otherCores: number;
}

/** Shared state of the run. */
interface Ctx {
  tmp: string;
  litestream: string;
  plan: Plan;
}

/** Whether every database's replica holds its last commit; returns how many do, and when. */
async function catchUp(
  s: Setup,
  last: number[],
  timeoutMs: number,
): Promise<{ caughtUp: number; seconds: number }> {
  const t0 = performance.now();
  const deadline = Date.now() + timeoutMs;
  let caughtUp = 0;
  if (s.tool === "walrust") {
    for (const name of s.names) {
      try {
        await waitCaughtUp(
          `${s.dir}/dbs/${name}`,
          s.root,
          name,
          Math.max(1, deadline - Date.now()),
        );
        caughtUp++;
      } catch { /* counted as not caught up */ }
    }
  } else {
    // Litestream 0.3: the newest WAL segment holding a marker of this database must hold its
    // last commit (segments written without a commit, e.g. at a checkpoint, carry no marker).
    const left = new Map(s.names.map((n, i) => [n, last[i]]));
    while (left.size > 0 && Date.now() < deadline) {
      for (const [name, want] of [...left]) {
        if (want === 0) {
          left.delete(name);
          continue;
        }
        for (const seg of await walSegments(s.root, name)) {
          const m = await fileMarker("litestream", seg, "STD-", 8).catch(() => -1);
          if (m === 0) continue;
          if (m >= want) left.delete(name);
          break;
        }
      }
      if (left.size > 0) await sleep(200);
    }
    caughtUp = s.names.length - left.size;
  }
  return { caughtUp, seconds: (performance.now() - t0) / 1000 };
}

/** Restore the first and last database with the tool's own restore; count those equal. */
async function sampleRestores(s: Setup): Promise<{ checked: number; equal: number }> {
  const picks = [...new Set([s.names[0], s.names.at(-1)!])];
  let equal = 0;
  for (const name of picks) {
    const out = `${s.dir}/restored-${name}`;
    await s.restore(name, out);
    const a = await dumpContent(`${s.dir}/dbs/${name}`, ["t"]);
    const b = await dumpContent(out, ["t"]);
    if (a === b) equal++;
  }
  return { checked: picks.length, equal };
}

/** Steady (and, with `idleS` > 0, first an idle window) for one tool over `n` databases. */
async function steadyRun(
  ctx: Ctx,
  tool: Tool,
  n: number,
  template: string,
  dbNames: string[],
  idleS: number,
): Promise<{ steady: SteadyResult; idle?: IdleResult }> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: `steady-${tool}-${n}-` });
  let p: ToolProcess | undefined;
  let writer: PythonProcess | undefined;
  try {
    await copyDbs(template, `${dir}/dbs`, dbNames);
    await Deno.mkdir(`${dir}/replica`);
    const s = await Setup.create(tool, dir, dbNames, 1, ctx.litestream);
    const started = await s.start();
    p = started.p;
    await sleep(ctx.plan.settleMs);

    let idle: IdleResult | undefined;
    if (idleS > 0) {
      const sampler = new Sampler(p.pid, 1000);
      const w = await CpuWindow.start(p.pid);
      await sleep(idleS * 1000);
      const c = await w.end();
      await sampler.stop();
      const mem = (await procMemory(p.pid))!;
      idle = {
        tool,
        n,
        windowS: c.seconds,
        cpuS: c.cpuS,
        rssMedKb: sampler.stat("rssKb").median,
        fds: await fdCount(p.pid),
        threads: mem.threads,
        otherCores: c.otherCores,
      };
    }

    const { plan } = ctx;
    const paths = dbNames.map((d) => `${dir}/dbs/${d}`);
    const windowS = n >= 100 ? plan.steadyS : plan.steadySmallS;
    writer = python(STEADY_WRITER, [String(plan.warmupS + windowS), "1", ...paths]);
    await sleep(plan.warmupS * 1000);
    const filesBefore = await replicaFiles(`${dir}/replica`);
    const sampler = new Sampler(p.pid, 1000);
    const w = await CpuWindow.start(p.pid);
    await sleep(windowS * 1000);
    const c = await w.end();
    await sampler.stop();
    const filesWritten = await newFiles(`${dir}/replica`, filesBefore);
    const mem = await procMemory(p.pid);
    if (!mem) throw new Error(`${tool} exited during the window:\n${digest(await p.log())}`);
    const fds = await fdCount(p.pid);
    const out = JSON.parse(await pythonResult(writer)) as {
      commits: number;
      errors: number;
      last: number[];
    };
    const cu = await catchUp(s, out.last, 60_000);
    const rs = await sampleRestores(s);
    const prob = await problems(p);
    const exitCode = await p.stop();
    const rss = sampler.stat("rssKb"), anon = sampler.stat("anonKb");
    return {
      idle,
      steady: {
        tool,
        n,
        windowS: c.seconds,
        startupS: started.startupS,
        rssMedKb: rss.median,
        rssPeakKb: rss.peak,
        anonMedKb: anon.median,
        anonPeakKb: anon.peak,
        hwmKb: mem.hwmKb,
        fds,
        threads: mem.threads,
        cpuS: c.cpuS,
        otherCores: c.otherCores,
        replicaFilesWritten: filesWritten,
        commits: out.commits,
        writerErrors: out.errors,
        caughtUp: cu.caughtUp,
        catchUpS: cu.seconds,
        restoresEqual: rs.equal,
        restoresChecked: rs.checked,
        exitCode,
        problems: prob.slice(0, 5),
      },
    };
  } finally {
    await writer?.stop();
    live.delete(writer!);
    await p?.stop(5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Paths of every file below `dir` (hidden ones too: walrust's metadata sidecars are writes). */
async function replicaFiles(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else if (e.isFile) out.add(`${d}/${e.name}`);
    }
  };
  await walk(dir);
  return out;
}

/** How many files below `dir` were not in `before` (files removed meanwhile are not counted). */
async function newFiles(dir: string, before: Set<string>): Promise<number> {
  let n = 0;
  for (const f of await replicaFiles(dir)) if (!before.has(f)) n++;
  return n;
}

/** Figures of one lag run. */
interface LagResult {
  tool: Tool;
  intervalS: number;
  transactions: number;
  files: number;
  lagsMs: number[];
  notDurable: number;
  cpuS: number;
  rssPeakKb: number;
  exitCode: number;
}

/** One database at a 0.1 s interval, one commit every 250 ms: commit -> durable in the replica. */
async function lagRun(ctx: Ctx, tool: Tool): Promise<LagResult> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: `lag-${tool}-` });
  let p: ToolProcess | undefined;
  let writer: PythonProcess | undefined;
  let arr: Arrivals | undefined;
  try {
    await Deno.mkdir(`${dir}/dbs`);
    await Deno.mkdir(`${dir}/replica`);
    const db = new DatabaseSync(`${dir}/dbs/lag.db`);
    db.exec(
      "PRAGMA journal_mode=WAL; CREATE TABLE log (id INTEGER PRIMARY KEY, body TEXT); " +
        "INSERT INTO log (body) VALUES ('seed row without a marker')",
    );
    db.close();
    const intervalS = 0.1;
    const s = await Setup.create(tool, dir, ["lag.db"], intervalS, ctx.litestream);
    p = (await s.start()).p;
    await sleep(1_000);
    arr = new Arrivals(syncFiles(tool, s.root, "lag.db"), 5);
    await arr.start();
    const spacingMs = 250;
    const n = Math.round(ctx.plan.lagS * 1000 / spacingMs);
    const sampler = new Sampler(p.pid, 1000);
    const w = await CpuWindow.start(p.pid);
    writer = python(LAG_WRITER, [`${dir}/dbs/lag.db`, String(n), String(spacingMs / 1000)]);
    const times = JSON.parse(await pythonResult(writer)) as number[];
    const markers = new Map<string, number>();
    await waitMarker(tool, arr, n, markers, 15_000);
    const c = await w.end();
    await sampler.stop();
    await arr.stop();
    const exitCode = await p.stop();
    const commits = [NaN, ...times.map((t) => t * 1000)];
    const l = await lagsOf(tool, arr.seen, commits, markers);
    return {
      tool,
      intervalS,
      transactions: n,
      files: arr.seen.size,
      lagsMs: l.lagsMs,
      notDurable: l.notDurable,
      cpuS: c.cpuS,
      rssPeakKb: sampler.stat("rssKb").peak,
      exitCode,
    };
  } finally {
    await arr?.stop();
    await writer?.stop();
    live.delete(writer!);
    await p?.stop(5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Figures of one heavy run. */
interface HeavyResult {
  tool: Tool;
  seconds: number;
  writtenMBps: number;
  transactions: number;
  cpuS: number;
  otherCores: number;
  rssMedKb: number;
  rssPeakKb: number;
  hwmKb: number;
  replicaBytes: number;
  lagP50Ms: number;
  lagP95Ms: number;
  notDurable: number;
  exitCode: number;
  problems: string[];
}

/** One database taking ~5 MB/s of page changes at the default 1 s interval. */
async function heavyRun(ctx: Ctx, tool: Tool, template: string): Promise<HeavyResult> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: `heavy-${tool}-` });
  let p: ToolProcess | undefined;
  let writer: PythonProcess | undefined;
  let arr: Arrivals | undefined;
  try {
    await copyDbs(template, `${dir}/dbs`, ["heavy.db"]);
    await Deno.mkdir(`${dir}/replica`);
    const s = await Setup.create(tool, dir, ["heavy.db"], 1, ctx.litestream);
    p = (await s.start()).p;
    await sleep(2_000);
    arr = new Arrivals(syncFiles(tool, s.root, "heavy.db"), 10);
    await arr.start();
    const bytes0 = await treeBytes(s.root);
    const sampler = new Sampler(p.pid, 1000);
    const w = await CpuWindow.start(p.pid);
    writer = python(HEAVY_WRITER, [
      `${dir}/dbs/heavy.db`,
      String(ctx.plan.heavyS),
      String(ctx.plan.heavyBytesPerS),
    ]);
    const out = JSON.parse(await pythonResult(writer)) as {
      times: number[];
      pages: number;
      seconds: number;
    };
    const c = await w.end();
    await sampler.stop();
    const mem = await procMemory(p.pid);
    if (!mem) throw new Error(`${tool} exited during the window:\n${digest(await p.log())}`);
    const markers = new Map<string, number>();
    await waitMarker(tool, arr, out.times.length, markers, 30_000);
    await arr.stop();
    const replicaBytes = (await treeBytes(s.root)) - bytes0;
    const prob = await problems(p);
    const exitCode = await p.stop();
    const l = await lagsOf(tool, arr.seen, [NaN, ...out.times.map((t) => t * 1000)], markers);
    return {
      tool,
      seconds: c.seconds,
      writtenMBps: out.pages * 4096 / 1e6 / out.seconds,
      transactions: out.times.length,
      cpuS: c.cpuS,
      otherCores: c.otherCores,
      rssMedKb: sampler.stat("rssKb").median,
      rssPeakKb: sampler.stat("rssKb").peak,
      hwmKb: mem.hwmKb,
      replicaBytes,
      lagP50Ms: percentile(l.lagsMs, 50),
      lagP95Ms: percentile(l.lagsMs, 95),
      notDurable: l.notDurable,
      exitCode,
      problems: prob.slice(0, 5),
    };
  } finally {
    await arr?.stop();
    await writer?.stop();
    live.delete(writer!);
    await p?.stop(5_000);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Figures of one tool's restore runs of one database size. */
interface RestoreResult {
  tool: Tool;
  targetMB: number;
  dbBytes: number;
  snapshotMs: number;
  snapshotLoggedMs: number;
  snapshotPeakKb: number;
  snapshotBytes: number;
  replicaBytes: number;
  runs: { ms: number; peakKb: number; equal: boolean }[];
}

/** Replicate a copy of `template` with `tool` until its snapshot is in the replica. */
async function replicateBig(ctx: Ctx, tool: Tool, dir: string, template: string) {
  await copyDbs(template, `${dir}/dbs`, ["big.db"]);
  await Deno.mkdir(`${dir}/replica`);
  const s = await Setup.create(tool, dir, ["big.db"], 1, ctx.litestream);
  let ms: number, peakKb: number, log: string;
  if (tool === "walrust") {
    const r = await timedRun(
      walrustCmd(["--config", `${dir}/walrust.toml`, "watch", "--once"]),
      tool,
    );
    if (r.code !== 0) throw new Error(`walrust watch --once exited ${r.code}: ${r.stderr}`);
    ms = r.ms;
    peakKb = r.peakKb;
    log = r.stderr;
  } else {
    const t0 = performance.now();
    const p = new TrackedTool(s.replicate, `${dir}/litestream.log`, dir);
    const sampler = new Sampler(p.pid, 10);
    try {
      const deadline = Date.now() + 600_000;
      let snap = false;
      ms = NaN;
      while (Date.now() < deadline) {
        if (p.exited) throw new Error(`litestream exited:\n${digest(await p.log())}`);
        if (!snap && (await v3Files(s.root, "big.db", "snapshots")).length > 0) {
          ms = performance.now() - t0;
          snap = true;
        }
        if (snap && (await walSegments(s.root, "big.db")).length > 0) break;
        await sleep(20);
      }
      if (!snap) throw new Error("litestream wrote no snapshot within 600 s");
      await assertTool(p.pid, tool);
    } finally {
      await sampler.stop();
      await p.stop();
    }
    peakKb = sampler.peakKb;
    log = await p.log();
  }
  return {
    s,
    ms,
    peakKb,
    loggedMs: loggedSnapshotMs(tool, log),
    source: summarize(`${dir}/dbs/big.db`),
  };
}

/**
 * The snapshot's duration as the tool logs it (walrust `INFO snapshot ... seconds=S`, Litestream
 * `msg="snapshot written" ... elapsed=<Go duration>`): without process start-up and, for
 * Litestream, without its wait for the first monitor tick. NaN when not found.
 */
function loggedSnapshotMs(tool: Tool, log: string): number {
  if (tool === "walrust") {
    const m = /INFO\s+snapshot\b.*\bseconds=([\d.]+)/.exec(log);
    return m ? Number(m[1]) * 1000 : NaN;
  }
  const m = /msg="snapshot written".*\belapsed=(\S+)/.exec(log);
  if (!m) return NaN;
  const unit: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    "µs": 1e-3,
    us: 1e-3,
    ns: 1e-6,
  };
  let ms = 0;
  for (const part of m[1].matchAll(/([\d.]+)(h|ms|m|s|µs|us|ns)/g)) {
    ms += Number(part[1]) * unit[part[2]];
  }
  return ms;
}

/** Each tool replicates a `targetMB` database, then restores it `runs` times, alternating. */
async function restoreBench(ctx: Ctx, targetMB: number): Promise<RestoreResult[]> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: `restore-${targetMB}-` });
  try {
    const template = `${dir}/template`;
    await Deno.mkdir(template);
    const t0 = performance.now();
    buildBigDb(`${template}/big.db`, targetMB * 1e6);
    console.log(
      `  built ${targetMB} MB database in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const res = new Map<Tool, RestoreResult>();
    const setups = new Map<Tool, Awaited<ReturnType<typeof replicateBig>>>();
    for (const tool of TOOLS) {
      const d = `${dir}/${tool}`;
      await Deno.mkdir(d);
      const r = await replicateBig(ctx, tool, d, template);
      setups.set(tool, r);
      res.set(tool, {
        tool,
        targetMB,
        dbBytes: r.source.pages * 4096,
        snapshotMs: r.ms,
        snapshotLoggedMs: r.loggedMs,
        snapshotPeakKb: r.peakKb,
        snapshotBytes: await snapshotBytes(tool, r.s.root, "big.db"),
        replicaBytes: await treeBytes(r.s.root),
        runs: [],
      });
    }
    for (let run = 0; run < ctx.plan.restoreRuns; run++) {
      for (const tool of TOOLS) {
        const { s, source } = setups.get(tool)!;
        const out = `${s.dir}/restored-${run}.db`;
        const r = await s.restore("big.db", out);
        const got = summarize(out);
        const equal = got.pages === source.pages && got.digest === source.digest;
        res.get(tool)!.runs.push({ ms: r.ms, peakKb: r.peakKb, equal });
        for (const f of [out, `${out}-wal`, `${out}-shm`]) await Deno.remove(f).catch(() => {});
        console.log(
          `  restore ${targetMB} MB run ${run + 1} ${tool}: ${(r.ms / 1000).toFixed(1)} s, ` +
            `peak ${mib(r.peakKb)} MiB, ${equal ? "equal" : "NOT EQUAL"}`,
        );
      }
    }
    return TOOLS.map((t) => res.get(t)!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Printing

const ratio = (w: number, l: number) =>
  !Number.isFinite(w) || !Number.isFinite(l)
    ? ""
    : l === 0
    ? (w === 0 ? "1.00" : "inf")
    : (w / l).toFixed(2);

/** A figure row: label, walrust, Litestream, ratio (numbers formatted with `digits`). */
function row(label: string, w: number | undefined, l: number | undefined, digits = 1): string[] {
  const f = (v: number | undefined) =>
    v === undefined ? "-" : Number.isFinite(v) ? v.toFixed(digits) : "n/a";
  return [label, f(w), f(l), w === undefined || l === undefined ? "" : ratio(w, l)];
}

/** A text row (no ratio). */
function textRow(label: string, w: string | undefined, l: string | undefined): string[] {
  return [label, w ?? "-", l ?? "-", ""];
}

const HEAD = ["figure", "walrust", "Litestream", "ratio w/L"];

function pair<T extends { tool: Tool }>(rs: T[]): { w?: T; l?: T } {
  return { w: rs.find((r) => r.tool === "walrust"), l: rs.find((r) => r.tool === "litestream") };
}

function printSteady(results: SteadyResult[], plan: Plan): void {
  console.log(
    `\n## steady: N WAL databases of ~100 KB, one small INSERT per database per second from one\n` +
      `python3 process; window ${plan.steadySmallS} s for N < 100, ${plan.steadyS} s for N >= 100,\n` +
      `after start-up, a ${
        plan.settleMs / 1000
      } s settle and ${plan.warmupS} s of writes; sync interval 1 s\n`,
  );
  const rows: string[][] = [];
  for (const n of plan.steadyNs) {
    const { w, l } = pair(results.filter((r) => r.n === n));
    if (!w && !l) continue;
    const k = `N=${n}`;
    rows.push(
      row(`${k} RSS median MiB`, w && w.rssMedKb / 1024, l && l.rssMedKb / 1024),
      row(`${k} RSS peak MiB`, w && w.rssPeakKb / 1024, l && l.rssPeakKb / 1024),
      row(`${k} RssAnon median MiB`, w && w.anonMedKb / 1024, l && l.anonMedKb / 1024),
      row(`${k} RssAnon peak MiB`, w && w.anonPeakKb / 1024, l && l.anonPeakKb / 1024),
      row(`${k} VmHWM MiB (since start)`, w && w.hwmKb / 1024, l && l.hwmKb / 1024),
      row(`${k} fds at end`, w?.fds, l?.fds, 0),
      row(`${k} threads at end`, w?.threads, l?.threads, 0),
      row(`${k} CPU s in window`, w?.cpuS, l?.cpuS, 2),
      row(`${k} CPU % of a core`, w && w.cpuS / w.windowS * 100, l && l.cpuS / l.windowS * 100, 2),
      row(
        `${k} replica files written / min`,
        w && w.replicaFilesWritten / w.windowS * 60,
        l && l.replicaFilesWritten / l.windowS * 60,
        0,
      ),
      row(`${k} start-up s (all in replica)`, w?.startupS, l?.startupS, 1),
      textRow(`${k} caught up at end`, w && `${w.caughtUp}/${w.n}`, l && `${l.caughtUp}/${l.n}`),
      row(`${k} catch-up s after last write`, w?.catchUpS, l?.catchUpS, 2),
      textRow(
        `${k} sampled restores = source`,
        w && `${w.restoresEqual}/${w.restoresChecked}`,
        l && `${l.restoresEqual}/${l.restoresChecked}`,
      ),
      textRow(
        `${k} commits (writer errors)`,
        w && `${w.commits} (${w.writerErrors})`,
        l && `${l.commits} (${l.writerErrors})`,
      ),
      row(`${k} rest of machine, cores`, w?.otherCores, l?.otherCores, 2),
    );
  }
  printTable(HEAD, rows);
  console.log(
    "(RSS/RssAnon from /proc/<pid>/status every 1 s over the window; CPU = utime+stime; caught\n" +
      " up: walrust waitCaughtUp (replica level 0 reaches the WAL's last commit), Litestream: the\n" +
      " newest WAL segment of the database holding a row marker holds its last commit; sampled\n" +
      " restores = first and last database restored by the tool's own restore, table t equal;\n" +
      " replica files written: files below the replica folder at the window's end that were not\n" +
      " there at its start, walrust's metadata sidecars included: the file backend's write requests)",
  );
  for (const r of results) {
    for (const p of r.problems) console.log(`  ${r.tool} N=${r.n} log: ${p}`);
  }
}

function printIdle(results: IdleResult[], plan: Plan): void {
  if (results.length === 0) return;
  const { w, l } = pair(results);
  const n = (w ?? l)!.n;
  console.log(
    `\n## idle: N = ${n} databases, no writes, ${(w ?? l)!.windowS.toFixed(0)} s window ` +
      `(the steady N = ${n} processes, after start-up and a ${plan.settleMs / 1000} s settle, ` +
      `before writes)\n`,
  );
  printTable(HEAD, [
    row("CPU % of a core", w && w.cpuS / w.windowS * 100, l && l.cpuS / l.windowS * 100, 2),
    row(
      "CPU s per hour per db",
      w && w.cpuS / w.windowS * 3600 / w.n,
      l && l.cpuS / l.windowS * 3600 / l.n,
      3,
    ),
    row("RSS median MiB", w && w.rssMedKb / 1024, l && l.rssMedKb / 1024),
    row("fds", w?.fds, l?.fds, 0),
    row("threads", w?.threads, l?.threads, 0),
    row("rest of machine, cores", w?.otherCores, l?.otherCores, 2),
  ]);
}

function printLag(results: LagResult[]): void {
  if (results.length === 0) return;
  const { w, l } = pair(results);
  const r0 = (w ?? l)!;
  console.log(
    `\n## lag: one database, sync interval ${r0.intervalS} s, ${r0.transactions} commits 250 ms ` +
      `apart; commit -> a new replica file holding it\n`,
  );
  const p = (r: LagResult | undefined, q: number) => r && percentile(r.lagsMs, q);
  printTable(HEAD, [
    row("P50 ms", p(w, 50), p(l, 50), 0),
    row("P95 ms", p(w, 95), p(l, 95), 0),
    row("P99 ms", p(w, 99), p(l, 99), 0),
    row("max ms", w?.lagsMs.at(-1), l?.lagsMs.at(-1), 0),
    row("commits never durable", w?.notDurable, l?.notDurable, 0),
    row("replica files", w?.files, l?.files, 0),
    row("CPU s", w?.cpuS, l?.cpuS, 2),
    row("RSS peak MiB", w && w.rssPeakKb / 1024, l && l.rssPeakKb / 1024),
  ]);
  console.log(
    "(walrust: new <replica>/lag.db/ltx/0/*.ltx, pages decoded; Litestream: new\n" +
      " generations/<g>/wal/*.wal.lz4, LZ4 decoded; a commit is durable at the arrival, seen by a\n" +
      " 5 ms poll, of the first file whose highest TXN-nnnnnn marker reaches it)",
  );
}

function printHeavy(results: HeavyResult[]): void {
  if (results.length === 0) return;
  const { w, l } = pair(results);
  console.log(
    `\n## heavy: one database, ~5 MB/s of page changes (random rows rewritten with random blobs,\n` +
      `one transaction every 100 ms), ${(w ?? l)!.seconds.toFixed(0)} s, sync interval 1 s\n`,
  );
  printTable(HEAD, [
    row("pages written MB/s (writer)", w?.writtenMBps, l?.writtenMBps, 2),
    row("CPU s", w?.cpuS, l?.cpuS, 2),
    row("CPU % of a core", w && w.cpuS / w.seconds * 100, l && l.cpuS / l.seconds * 100, 1),
    row("RSS median MiB", w && w.rssMedKb / 1024, l && l.rssMedKb / 1024),
    row("RSS peak MiB", w && w.rssPeakKb / 1024, l && l.rssPeakKb / 1024),
    row("VmHWM MiB (since start)", w && w.hwmKb / 1024, l && l.hwmKb / 1024),
    row("replica MB written", w && w.replicaBytes / 1e6, l && l.replicaBytes / 1e6),
    row("lag P50 ms", w?.lagP50Ms, l?.lagP50Ms, 0),
    row("lag P95 ms", w?.lagP95Ms, l?.lagP95Ms, 0),
    row("commits never durable", w?.notDurable, l?.notDurable, 0),
    row("rest of machine, cores", w?.otherCores, l?.otherCores, 2),
  ]);
  for (const r of results) for (const p of r.problems) console.log(`  ${r.tool} heavy log: ${p}`);
}

function printRestore(results: RestoreResult[], plan: Plan): void {
  if (results.length === 0) return;
  console.log(
    `\n## restore: database replicated by each tool (walrust \`watch --once\`; Litestream\n` +
      `\`replicate\` until its snapshot and a WAL segment are in the replica), then restored by its\n` +
      `own restore command, ${plan.restoreRuns} run(s) alternating; MB/s = database bytes / wall s\n`,
  );
  const rows: string[][] = [];
  for (const mb of plan.restoreMB) {
    const { w, l } = pair(results.filter((r) => r.targetMB === mb));
    if (!w && !l) continue;
    const k = `${mb} MB:`;
    const med = (r: RestoreResult | undefined) => {
      if (!r || r.runs.length === 0) return undefined;
      const v = r.runs.map((x) => r.dbBytes / 1e6 / (x.ms / 1000)).sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)];
    };
    const peak = (r: RestoreResult | undefined) =>
      r && Math.max(...r.runs.map((x) => x.peakKb)) / 1024;
    rows.push(
      row(`${k} database MB`, w && w.dbBytes / 1e6, l && l.dbBytes / 1e6),
      row(
        `${k} snapshot upload MB/s (wall)`,
        w && w.dbBytes / 1e3 / w.snapshotMs,
        l && l.dbBytes / 1e3 / l.snapshotMs,
      ),
      row(
        `${k} snapshot MB/s (tool's log)`,
        w && w.dbBytes / 1e3 / w.snapshotLoggedMs,
        l && l.dbBytes / 1e3 / l.snapshotLoggedMs,
      ),
      row(`${k} snapshot peak RSS MiB`, w && w.snapshotPeakKb / 1024, l && l.snapshotPeakKb / 1024),
      row(`${k} snapshot MB`, w && w.snapshotBytes / 1e6, l && l.snapshotBytes / 1e6),
      row(`${k} replica MB (all files)`, w && w.replicaBytes / 1e6, l && l.replicaBytes / 1e6),
      row(`${k} restore MB/s (median)`, med(w), med(l)),
    );
    for (let i = 0; i < plan.restoreRuns; i++) {
      const f = (r: RestoreResult | undefined) =>
        r?.runs[i] && r.dbBytes / 1e6 / (r.runs[i].ms / 1000);
      rows.push(row(`${k} restore MB/s run ${i + 1}`, f(w), f(l)));
    }
    rows.push(
      row(`${k} restore peak RSS MiB`, peak(w), peak(l)),
      textRow(
        `${k} restores = source`,
        w && `${w.runs.filter((x) => x.equal).length}/${w.runs.length}`,
        l && `${l.runs.filter((x) => x.equal).length}/${l.runs.length}`,
      ),
    );
  }
  printTable(HEAD, rows);
  console.log(
    "(snapshot MB/s (wall): walrust = wall time of `watch --once` (start-up, first sync, snapshot,\n" +
      " upload, exit), Litestream = start of `replicate` to its snapshot file in the replica\n" +
      " (start-up, first monitor tick after up to 1 s, snapshot); (tool's log) = the snapshot's\n" +
      " own duration as logged: walrust `snapshot ... seconds=`, Litestream `snapshot written\n" +
      " elapsed=`. Peak RSS = max VmHWM/VmRSS sampled every\n" +
      " 10 ms. Restores checked with summarize: page count and SHA-256 of every docs row)",
  );
}

// ---------------------------------------------------------------------------------------------
// Main

function machine() {
  return {
    time: new Date().toISOString(),
    cpus: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
  };
}

/** Run the workloads; returns the figures (failures are recorded, not thrown). */
async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args.filter((a) => a !== "--"),
    options: {
      quick: { type: "boolean", default: false },
      full: { type: "boolean", default: false },
      only: { type: "string" },
      ns: { type: "string" },
      dir: { type: "string" },
    },
  });
  const plan = planFor(values.quick ?? false, values.full ?? false);
  if (values.ns !== undefined) {
    plan.steadyNs = values.ns.split(",").map(Number);
    if (plan.steadyNs.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(`--ns ${values.ns}: give database counts such as 1,100,1000`);
    }
  }
  const only = values.only ? values.only.split(",") as Workload[] : WORKLOADS;
  for (const o of only) if (!WORKLOADS.includes(o)) throw new Error(`unknown workload ${o}`);
  const t0 = performance.now();
  const start = machine();
  console.log(
    `# walrust vs Litestream, ${start.time}: deno ${Deno.version.deno}, ${start.cpus} CPUs, ` +
      `load average ${start.loadavg.map((x) => x.toFixed(2)).join(" ")}` +
      (values.quick ? " (--quick)" : "") + (values.full ? " (--full)" : "") +
      (values.dir ? ` (in ${values.dir})` : ""),
  );
  const tmp = await Deno.makeTempDir({ prefix: "walrust-bench-peer-", dir: values.dir });
  const onSignal = async () => {
    await Promise.all([...live].map((p) => p.stop(2_000)));
    Deno.removeSync(tmp, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  const out = {
    args: Deno.args,
    plan,
    machineStart: start,
    machineEnd: undefined as ReturnType<typeof machine> | undefined,
    deno: Deno.version.deno,
    litestream: "",
    steady: [] as SteadyResult[],
    idle: [] as IdleResult[],
    lag: [] as LagResult[],
    heavy: [] as HeavyResult[],
    restore: [] as RestoreResult[],
    failures: [] as string[],
    phaseSeconds: {} as Record<string, number>,
    seconds: 0,
  };
  let phaseT0 = performance.now();
  const phaseDone = (name: string) => {
    const s = (performance.now() - phaseT0) / 1000;
    out.phaseSeconds[name] = s;
    console.log(`(${name}: ${s.toFixed(0)} s; load average ${Deno.loadavg()[0].toFixed(2)})`);
    phaseT0 = performance.now();
  };
  const attempt = async (label: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      // One failed case must not hide the others' figures.
      out.failures.push(`${label}: ${errText(e)}`);
      console.log(`  ${label}: FAILED (details at the end)`);
    }
  };
  try {
    const ls = await installLitestream(`${tmp}/npm`);
    out.litestream = ls.version;
    console.log(`Litestream ${ls.version} (npm ${LITESTREAM_PKG}); walrust ${MAIN}`);
    phaseDone("install");
    const ctx: Ctx = { tmp, litestream: ls.bin, plan };

    if (only.includes("steady")) {
      for (const n of plan.steadyNs) {
        const template = `${tmp}/steady-template-${n}`;
        await Deno.mkdir(template);
        await pythonResult(python(SEED_STEADY, [template, String(n)]));
        const dbNames = Array.from({ length: n }, (_, i) => `db${String(i).padStart(4, "0")}.db`);
        for (const tool of TOOLS) {
          await attempt(`steady N=${n} ${tool}`, async () => {
            const r = await steadyRun(ctx, tool, n, template, dbNames, n === 100 ? plan.idleS : 0);
            out.steady.push(r.steady);
            if (r.idle) out.idle.push(r.idle);
            console.log(
              `  steady N=${n} ${tool}: RSS ${mib(r.steady.rssMedKb)} MiB, CPU ` +
                `${r.steady.cpuS.toFixed(2)} s, caught up ${r.steady.caughtUp}/${n} ` +
                `(load ${Deno.loadavg()[0].toFixed(2)})`,
            );
          });
        }
        await Deno.remove(template, { recursive: true });
      }
      printSteady(out.steady, plan);
      printIdle(out.idle, plan);
      phaseDone("steady");
    }
    if (only.includes("lag")) {
      for (const tool of TOOLS) {
        await attempt(`lag ${tool}`, async () => {
          const r = await lagRun(ctx, tool);
          out.lag.push(r);
          console.log(`  lag ${tool}: P95 ${percentile(r.lagsMs, 95).toFixed(0)} ms`);
        });
      }
      printLag(out.lag);
      phaseDone("lag");
    }
    if (only.includes("heavy")) {
      const template = `${tmp}/heavy-template`;
      await Deno.mkdir(template);
      await pythonResult(python(SEED_HEAVY, [`${template}/heavy.db`]));
      for (const tool of TOOLS) {
        await attempt(`heavy ${tool}`, async () => {
          const r = await heavyRun(ctx, tool, template);
          out.heavy.push(r);
          console.log(
            `  heavy ${tool}: CPU ${r.cpuS.toFixed(2)} s, ${r.writtenMBps.toFixed(2)} MB/s`,
          );
        });
      }
      printHeavy(out.heavy);
      phaseDone("heavy");
    }
    if (only.includes("restore")) {
      for (const mb of plan.restoreMB) {
        await attempt(`restore ${mb} MB`, async () => {
          out.restore.push(...await restoreBench(ctx, mb));
        });
      }
      printRestore(out.restore, plan);
      phaseDone("restore");
    }
  } catch (e) {
    out.failures.push(errText(e));
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    for (const p of [...live]) await p.stop(2_000);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    out.machineEnd = machine();
    out.seconds = (performance.now() - t0) / 1000;
    await Deno.mkdir(`${REPO}/bench-results`, { recursive: true });
    const file = `${REPO}/bench-results/peer-${start.time.replace(/[:.]/g, "-")}.json`;
    await Deno.writeTextFile(file, JSON.stringify(out, null, 1) + "\n");
    for (const f of out.failures) console.log(`FAILED ${f}`);
    console.log(
      `\nload average at the end: ${out.machineEnd.loadavg.map((x) => x.toFixed(2)).join(" ")}; ` +
        `${out.seconds.toFixed(0)} s in all; figures in ${file}`,
    );
  }
  return out.failures.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
