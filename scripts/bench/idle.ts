/**
 * CPU cost of idle databases (issue 7): `walrust watch` and Litestream side by side, each over
 * N small WAL-mode databases that receive no writes, with a file replica.
 *
 * For N = 100 and 1,000 at a 1 s interval, and N = 100 at 0.1 s: fresh databases, start the tool,
 * wait until every database has reached the replica, let it settle, then read utime+stime
 * (/proc/<pid>/stat) at the start and end of a quiet window. Reports CPU % of one core, CPU
 * seconds per hour per database, VmRSS, open fds, and walrust/Litestream ratios of the same
 * repetition. Litestream is the binary of the npm package @flydotio/litestream-linux-x64,
 * installed into a temp dir for the run; without it walrust is measured alone.
 *
 * `deno run -A scripts/bench/idle.ts [--quick]` or `deno task bench --only idle [--quick]`.
 */

import { parseArgs } from "node:util";
import { type BenchOptions, printTable, procMemory } from "./replication.ts";
import {
  fdCount,
  machineBusyTicks,
  procTicks,
  ticksPerSecond,
  ToolProcess,
  writeLitestreamConfig,
} from "./proc.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const LITESTREAM_PKG = "@flydotio/litestream-linux-x64@1.0.1";
const SETTLE_MS = 5_000;

type Tool = "walrust" | "litestream";

/** One measured window. */
export interface IdleResult {
  tool: Tool;
  databases: number;
  intervalS: number;
  run: number;
  windowS: number;
  cpuSeconds: number;
  rssKb: number;
  fds: number;
  threads: number;
  /** CPU used by everything else on the machine during the window, in cores. */
  otherCores: number;
  load1: number;
  startupS: number;
  /** Short HEAD when the tool was launched, "+k" when k paths under src/ differed from it. */
  tree: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// /proc readers

/** The soft "Max open files" limit the process actually got. */
async function fdLimit(pid: number): Promise<string> {
  const text = await Deno.readTextFile(`/proc/${pid}/limits`).catch(() => "");
  return /^Max open files\s+(\S+)/m.exec(text)?.[1] ?? "?";
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Make sure `pid` runs the tool itself (not bash), so the figures are the tool's. */
async function assertTool(pid: number, tool: Tool): Promise<void> {
  const cmd = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
  const ok = tool === "walrust"
    ? cmd.some((a) => a.endsWith("/main.ts"))
    : /litestream$/.test(cmd[0]);
  if (!ok) throw new Error(`pid ${pid} is not ${tool}: ${cmd.join(" ")}`);
}

// ---------------------------------------------------------------------------------------------
// Setup

// One process for all databases: a table and a few rows each, WAL mode (persistent in the header).
const SEED_DBS = String.raw`
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect("%s/db%04d.db" % (d, i), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL").fetchall()
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, note TEXT)")
    c.execute("BEGIN")
    for k in range(10):
        c.execute("INSERT INTO t (v, note) VALUES (?, ?)", (k, "idle row %d" % k))
    c.execute("COMMIT")
    c.close()
`;

/** Create `n` databases dbNNNN.db in `dir`; returns their file names. */
export async function seed(dir: string, n: number): Promise<string[]> {
  const o = await new Deno.Command("python3", {
    args: ["-c", SEED_DBS, dir, String(n)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (o.code !== 0) throw new Error(`seeding failed: ${new TextDecoder().decode(o.stderr)}`);
  return Array.from({ length: n }, (_, i) => `db${String(i).padStart(4, "0")}.db`);
}

/** Install Litestream from npm into `dir`; returns the binary and its version, or why not. */
async function installLitestream(
  dir: string,
): Promise<{ bin: string; version: string } | { error: string }> {
  try {
    const o = await new Deno.Command("npm", {
      args: ["install", "--prefix", dir, "--no-audit", "--no-fund", "--silent", LITESTREAM_PKG],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (o.code !== 0) {
      return {
        error: `npm install exited ${o.code}: ${new TextDecoder().decode(o.stderr).trim()}`,
      };
    }
    const bin = `${dir}/node_modules/@flydotio/litestream-linux-x64/litestream`;
    const v = await new Deno.Command(bin, { args: ["version"], stdout: "piped", stderr: "piped" })
      .output();
    if (v.code !== 0) return { error: `${bin} version exited ${v.code}` };
    return { bin, version: new TextDecoder().decode(v.stdout).trim() };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

/** Write the tool's config for `names` in `dir`/dbs; returns the command line to run. */
async function configure(
  tool: Tool,
  dir: string,
  names: string[],
  intervalS: number,
  litestream: string | undefined,
): Promise<string[]> {
  if (tool === "walrust") {
    const path = `${dir}/walrust.toml`;
    // wal_sync_interval is left out at 1 s, its default.
    const sync = intervalS === 1 ? "" : `\n[sync]\nwal_sync_interval = ${intervalS}\n`;
    await Deno.writeTextFile(
      path,
      `[s3]\nbucket = "file://${dir}/replica"\n${sync}\n[[databases]]\npath = "${dir}/dbs/*.db"\n`,
    );
    return [
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      "--v8-flags=--max-semi-space-size=1",
      "--config",
      CONFIG,
      MAIN,
      "--config",
      path,
      "watch",
    ];
  }
  const path = await writeLitestreamConfig(dir, names, intervalS);
  return [litestream!, "replicate", "-config", path];
}

/** Whether the replica holds the first sync of database `name`. */
async function replicated(tool: Tool, root: string, name: string): Promise<boolean> {
  const any = async (dir: string, suffix: string) => {
    try {
      for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith(suffix)) return true;
    } catch { /* not there yet */ }
    return false;
  };
  if (tool === "walrust") return await any(`${root}/${name}/ltx/0`, ".ltx");
  try {
    for await (const g of Deno.readDir(`${root}/${name}/generations`)) {
      if (await any(`${root}/${name}/generations/${g.name}/wal`, ".wal.lz4")) return true;
    }
  } catch { /* not there yet */ }
  return false;
}

/** Wait until every database reached the replica (and walrust logged "watching"). */
async function waitReady(
  p: ToolProcess,
  tool: Tool,
  root: string,
  names: string[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const left = new Set(names);
  let watching = tool !== "walrust";
  while (Date.now() < deadline) {
    if (p.exited) {
      throw new Error(`${tool} exited during start-up:\n${(await p.log()).slice(-3000)}`);
    }
    if (!watching) watching = (await p.log()).includes("INFO  watching");
    for (const n of [...left]) if (await replicated(tool, root, n)) left.delete(n);
    if (watching && left.size === 0) return;
    await sleep(500);
  }
  throw new Error(
    `${tool}: ${left.size} of ${names.length} databases not replicated after ${timeoutMs} ms` +
      (watching ? "" : ' (no "watching" line)') + `; log:\n${digest(await p.log())}`,
  );
}

/** The lines of a log worth reading after a failure: all but per-database start-up chatter. */
function digest(log: string): string {
  const chatter = /INFO {1,2}(snapshot|replicating)\b|msg="(initialized db|replicating to)"/;
  const lines = log.split("\n").filter((l) => l && !chatter.test(l));
  return lines.slice(-30).join("\n");
}

// ---------------------------------------------------------------------------------------------
// Measurement

const live = new Set<ToolProcess>();
const liveDirs = new Set<string>();

/** Start `tool` over `n` fresh idle databases and measure one quiet window. */
async function measure(
  tool: Tool,
  n: number,
  intervalS: number,
  run: number,
  windowS: number,
  litestream: string | undefined,
): Promise<IdleResult> {
  const dir = await Deno.makeTempDir({ prefix: `walrust-bench-idle-${tool}-${n}-` });
  liveDirs.add(dir);
  let p: ToolProcess | undefined;
  try {
    await Deno.mkdir(`${dir}/dbs`);
    await Deno.mkdir(`${dir}/replica`);
    const names = await seed(`${dir}/dbs`, n);
    const cmd = await configure(tool, dir, names, intervalS, litestream);
    // walrust loads its modules at launch: this is the code it runs (others commit meanwhile).
    const tree = tool === "walrust" ? (await treeState()).short : "";
    const t0 = performance.now();
    p = new ToolProcess(cmd, `${dir}/${tool}.log`, dir);
    live.add(p);
    await waitReady(p, tool, `${dir}/replica`, names, 300_000);
    const startupS = (performance.now() - t0) / 1000;
    await assertTool(p.pid, tool);
    if (run === 1) {
      console.log(`  (${tool} pid ${p.pid}: open-file limit ${await fdLimit(p.pid)})`);
    }
    await sleep(SETTLE_MS);

    const hz = await ticksPerSecond();
    const load1 = Deno.loadavg()[0];
    const c0 = await procTicks(p.pid);
    const m0 = await machineBusyTicks();
    const w0 = performance.now();
    await sleep(windowS * 1000);
    const c1 = await procTicks(p.pid);
    const m1 = await machineBusyTicks();
    const w1 = performance.now();
    const mem = await procMemory(p.pid);
    if (!mem) throw new Error(`${tool} exited during the window:\n${digest(await p.log())}`);
    const fds = await fdCount(p.pid);
    const elapsed = (w1 - w0) / 1000;
    const problems = (await p.log()).split("\n").filter((l) =>
      /\b(WARN|ERROR)\b|level=(WARN|ERROR)/.test(l)
    );
    for (const l of problems.slice(0, 3)) console.log(`  ${tool} ${n} db log: ${l}`);
    return {
      tool,
      databases: n,
      intervalS,
      run,
      windowS: elapsed,
      cpuSeconds: (c1 - c0) / hz,
      rssKb: mem.rssKb,
      fds,
      threads: mem.threads,
      otherCores: (m1 - m0 - (c1 - c0)) / hz / elapsed,
      load1,
      startupS,
      tree,
    };
  } finally {
    if (p) {
      await p.stop();
      live.delete(p);
    }
    await Deno.remove(dir, { recursive: true });
    liveDirs.delete(dir);
  }
}

const cpuPct = (r: IdleResult) => (r.cpuSeconds / r.windowS) * 100;
const perDbHour = (r: IdleResult) => (r.cpuSeconds / r.windowS) * 3600 / r.databases;

function printResults(results: IdleResult[]): void {
  const twin = (r: IdleResult) =>
    results.find((o) =>
      o.tool === "litestream" && o.databases === r.databases && o.intervalS === r.intervalS &&
      o.run === r.run
    );
  const ratio = (a: number, b: number | undefined) =>
    b === undefined ? "" : b === 0 ? "inf" : (a / b).toFixed(2);
  printTable(
    [
      "tool",
      "N",
      "interval",
      "run",
      "CPU % (1 core)",
      "CPU s/h per db",
      "RSS MB",
      "fds",
      "threads",
      "start s",
      "others (cores)",
      "load1",
      "CPU w/L",
      "RSS w/L",
      "tree",
    ],
    results.map((r) => {
      const l = r.tool === "walrust" ? twin(r) : undefined;
      return [
        r.tool,
        String(r.databases),
        `${r.intervalS} s`,
        String(r.run),
        cpuPct(r).toFixed(2),
        perDbHour(r).toFixed(3),
        (r.rssKb / 1024).toFixed(1),
        String(r.fds),
        String(r.threads),
        r.startupS.toFixed(1),
        r.otherCores.toFixed(2),
        r.load1.toFixed(2),
        l ? ratio(r.cpuSeconds, l.cpuSeconds) : "",
        l ? ratio(r.rssKb, l.rssKb) : "",
        r.tree,
      ];
    }),
  );
  console.log(
    "(CPU = utime+stime of the tool's process over the window; RSS MB = VmRSS in MiB at the end\n" +
      " of the window; start s = launch until every database reached the replica; others =\n" +
      " CPU busy on the whole machine minus the tool, in cores; load1 at the window's start;\n" +
      " w/L = walrust / Litestream of the same N, interval and run; tree = walrust's HEAD at its\n" +
      " launch, +k = k uncommitted paths under src/)",
  );
}

/** The commit measured and how many files under src/ differ from it (others edit the tree). */
async function treeState(): Promise<{ short: string; text: string }> {
  const repo = new URL("../..", import.meta.url).pathname;
  const git = async (args: string[]) => {
    try {
      const o = await new Deno.Command("git", { args: ["-C", repo, ...args], stdout: "piped" })
        .output();
      return o.code === 0 ? new TextDecoder().decode(o.stdout).trim() : "?";
    } catch {
      return "?";
    }
  };
  const head = await git(["log", "-1", "--format=%h %s"]);
  const changed = (await git(["status", "--short", "src/"])).split("\n").filter((l) => l);
  return {
    short: head.split(" ")[0] + (changed.length ? `+${changed.length}` : ""),
    text: `${head.slice(0, 60)}; ${changed.length} uncommitted path(s) under src/` +
      (changed.length ? ` (${changed.map((l) => l.slice(3)).join(", ")})` : ""),
  };
}

/** Figure: CPU cost of idle databases, walrust and Litestream side by side. */
export async function benchIdle(opts: BenchOptions): Promise<IdleResult[]> {
  const windowS = opts.quick ? 20 : 60;
  const runs = opts.quick ? 1 : 2;
  const cases: [number, number][] = [[100, 1], [1000, 1], [100, 0.1]];
  console.log(
    `\n## CPU cost of idle databases (file replica, no writes, ${windowS} s window, ` +
      `${runs} run${runs > 1 ? "s" : ""})\n` +
      `Each database: WAL mode, one table of 10 rows. Fresh databases and replica per run; the\n` +
      `window starts ${SETTLE_MS / 1000} s after every database reached the replica. ` +
      `Defaults otherwise (walrust\n` +
      `[sync] wal_sync_interval; Litestream 0.3 monitor-interval and sync-interval set alike).`,
  );
  console.log(`walrust tree: ${(await treeState()).text}`);
  const tmp = await Deno.makeTempDir({ prefix: "walrust-bench-litestream-" });
  const onSignal = async () => {
    // Ctrl-C: stop the tool by PID (SIGKILL after 2 s), then remove what this run created.
    await Promise.all([...live].map((p) => p.stop(2_000)));
    for (const d of [tmp, ...liveDirs]) Deno.removeSync(d, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const ls = await installLitestream(tmp);
    const litestream = "bin" in ls ? ls.bin : undefined;
    console.log(
      "bin" in ls
        ? `Litestream: ${ls.version} (npm ${LITESTREAM_PKG})`
        : `Litestream: not measured (${ls.error}); walrust alone`,
    );
    const tools: Tool[] = litestream ? ["walrust", "litestream"] : ["walrust"];
    const results: IdleResult[] = [];
    const failures: string[] = [];
    for (let run = 1; run <= runs; run++) {
      for (const [n, iv] of cases) {
        for (const tool of tools) {
          let r: IdleResult;
          try {
            r = await measure(tool, n, iv, run, windowS, litestream);
          } catch (e) {
            // One failed case must not hide the others' figures.
            const msg = e instanceof Error ? e.message : String(e);
            failures.push(`run ${run} ${tool} N=${n} ${iv} s: ${msg}`);
            console.log(`  run ${run} ${tool} N=${n} ${iv} s: FAILED (details below the table)`);
            continue;
          }
          results.push(r);
          console.log(
            `  run ${run} ${tool} N=${n} ${iv} s: ${cpuPct(r).toFixed(2)} % of a core, ` +
              `${(r.rssKb / 1024).toFixed(1)} MiB (load ${r.load1.toFixed(2)})`,
          );
        }
      }
    }
    printResults(results);
    for (const f of failures) console.log(`FAILED ${f}`);
    console.log(`walrust tree at the end: ${(await treeState()).text}`);
    return results;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    for (const p of live) await p.stop(2_000);
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args.filter((a) => a !== "--"),
    options: { quick: { type: "boolean", default: false } },
  });
  console.log(
    `# idle benchmark, ${new Date().toISOString()}: deno ${Deno.version.deno}, ` +
      `${navigator.hardwareConcurrency} CPUs, load average ` +
      Deno.loadavg().map((x) => x.toFixed(2)).join(" "),
  );
  await benchIdle({ quick: values.quick ?? false });
  console.log(`\nload average at the end: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
}
