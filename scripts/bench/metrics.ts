/**
 * RSS cost of the metrics server: `walrust watch` over N idle databases run three ways side by
 * side (`--no-metrics`, metrics on, metrics on with `--metrics-process`), each with its own
 * databases and file replica. VmRSS (/proc/<pid>/status) is the median of samples 100 ms apart
 * over a window once start-up has settled, then again after 20 scrapes of /metrics 250 ms apart.
 * Also reports the size of /metrics and its scrape time, and checks what it serves (every
 * metric family present, one series per database, labels).
 *
 * `deno run -A scripts/bench/metrics.ts [--quick]` or `deno task bench --only metrics [--quick]`.
 */

import { seed } from "./idle.ts";
import { METRIC_FAMILIES } from "../../tests/helpers/metric_names.ts";
import { type BenchOptions, printTable, procMemory } from "./replication.ts";
import { WalrustProcess } from "../../tests/helpers/walrust.ts";

const SETTLE_MS = 5_000;
const SAMPLE_EVERY_MS = 100;
const SCRAPES = 20;
const SCRAPE_EVERY_MS = 250;

type Mode = "no-metrics" | "metrics" | "metrics+process";

const MODES: { mode: Mode; flags: string[] }[] = [
  { mode: "no-metrics", flags: ["--no-metrics"] },
  { mode: "metrics", flags: ["--metrics-addr", "127.0.0.1:0"] },
  { mode: "metrics+process", flags: ["--metrics-addr", "127.0.0.1:0", "--metrics-process"] },
];

// Families with exactly one series per database from the first scrape on.
const PER_DB = [
  "walrust_wal_size_bytes",
  "walrust_db_size_bytes",
  "walrust_current_txid",
  "walrust_replica_txid",
  "walrust_replication_lag_seconds",
  "walrust_sync_total",
  "walrust_upload_queue_files",
  "walrust_upload_queue_bytes",
  "walrust_snapshot_count_total",
  "litestream_db_size",
  "litestream_txid",
  "litestream_sync_count",
];

/** One configuration's figures. */
export interface MetricsResult {
  mode: Mode;
  databases: number;
  run: number;
  /** Median VmRSS over the window after start-up settled (KiB). */
  settledKb: number;
  /** Median VmRSS over the window after the scrapes (KiB). */
  scrapedKb: number;
  /** VmHWM at the end (KiB). */
  hwmKb: number;
  /** Bytes of the first /metrics answer (undefined without a server). */
  bytes?: number;
  /** Sample lines (not comments) of the first answer. */
  series?: number;
  firstScrapeMs?: number;
  medianScrapeMs?: number;
  /** What the check of the served text found wrong. */
  problems: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kb: number) => (kb / 1024).toFixed(1);
const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[s.length >> 1]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One `watch` under test with its folder. */
interface Instance {
  mode: Mode;
  dir: string;
  names: string[];
  p: WalrustProcess;
  url?: string;
  rss: number[];
}

const live = new Set<WalrustProcess>();
const liveDirs = new Set<string>();

/** Fresh databases and config for one mode, then `watch` started on them. */
async function launch(mode: Mode, flags: string[], n: number): Promise<Instance> {
  const dir = await Deno.makeTempDir({ prefix: `walrust-bench-metrics-${mode}-${n}-` });
  liveDirs.add(dir);
  await Deno.mkdir(`${dir}/dbs`);
  const names = await seed(`${dir}/dbs`, n);
  // Compaction and retention off: their rounds would land inside the windows at random.
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[s3]\nbucket = "file://${dir}/replica"\n\n[compaction]\nlevels = []\n\n` +
      `[retention]\nenabled = false\n\n[[databases]]\npath = "${dir}/dbs/*.db"\n`,
  );
  const p = new WalrustProcess(["--config", `${dir}/walrust.toml`, "watch", ...flags], {
    cwd: dir,
  });
  live.add(p);
  return { mode, dir, names, p, rss: [] };
}

/** Wait for "watching", the metrics URL (when served) and every database in the replica. */
async function ready(i: Instance, timeoutMs: number): Promise<void> {
  await i.p.waitFor("INFO  watching", timeoutMs);
  const cmd = (await Deno.readTextFile(`/proc/${i.p.pid}/cmdline`)).split("\0");
  if (!cmd.some((a) => a.endsWith("/main.ts"))) {
    throw new Error(`pid ${i.p.pid} is not walrust: ${cmd.join(" ")}`);
  }
  const m = /serving metrics and health url=(http:\/\/\S+)\/metrics/.exec(i.p.stderr);
  if (i.mode === "no-metrics") {
    if (m) throw new Error("--no-metrics still served metrics");
  } else {
    if (!m) throw new Error(`${i.mode}: no metrics URL logged:\n${i.p.stderr.slice(-2000)}`);
    i.url = m[1];
  }
  const deadline = Date.now() + timeoutMs;
  const left = new Set(i.names);
  while (left.size > 0) {
    for (const n of [...left]) {
      try {
        for await (const e of Deno.readDir(`${i.dir}/replica/${n}/ltx/0`)) {
          if (e.name.endsWith(".ltx")) {
            left.delete(n);
            break;
          }
        }
      } catch { /* not there yet */ }
    }
    if (left.size === 0) break;
    if (Date.now() > deadline) {
      throw new Error(`${i.mode}: ${left.size} databases not in the replica after ${timeoutMs} ms`);
    }
    await sleep(200);
  }
}

/** Sample VmRSS of every instance every 100 ms for `ms`; returns the medians (KiB). */
async function sampleRss(all: Instance[], ms: number): Promise<number[]> {
  for (const i of all) i.rss = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t = performance.now();
    for (const i of all) {
      const m = await procMemory(i.p.pid);
      if (!m) throw new Error(`${i.mode} exited:\n${i.p.stderr.slice(-2000)}`);
      i.rss.push(m.rssKb);
    }
    await sleep(Math.max(0, SAMPLE_EVERY_MS - (performance.now() - t)));
  }
  return all.map((i) => median(i.rss));
}

/** Fetch /metrics once: its text and the wall time of request plus body. */
async function scrape(url: string): Promise<{ text: string; ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/metrics`);
  const body = new Uint8Array(await res.arrayBuffer());
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`GET ${url}/metrics: ${res.status}`);
  return { text: new TextDecoder().decode(body), ms, bytes: body.length };
}

/** What is wrong with a /metrics answer for instance `i` (empty when nothing). */
function check(i: Instance, text: string, rssKb: number): string[] {
  const out: string[] = [];
  const lines = text.split("\n");
  const help = new Set(lines.filter((l) => l.startsWith("# HELP ")).map((l) => l.split(" ")[2]));
  for (const f of METRIC_FAMILIES) if (!help.has(f)) out.push(`family ${f} missing`);
  for (const h of help) {
    if (!METRIC_FAMILIES.includes(h) && !/^(process|nodejs)_/.test(h)) {
      out.push(`unexpected family ${h}`);
    }
  }
  const series = (name: string) =>
    lines.filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  const n = i.names.length;
  for (const f of PER_DB) {
    const s = series(f);
    if (s.length !== n) out.push(`${f}: ${s.length} series for ${n} databases`);
  }
  const dbLabels = new Set(
    series("walrust_current_txid").map((l) => /database="([^"]*)"/.exec(l)?.[1]),
  );
  for (const name of i.names) if (!dbLabels.has(name)) out.push(`no database="${name}" series`);
  const paths = new Set(series("litestream_txid").map((l) => /db="([^"]*)"/.exec(l)?.[1]));
  for (const name of i.names) {
    if (!paths.has(`${i.dir}/dbs/${name}`)) out.push(`no litestream db="${i.dir}/dbs/${name}"`);
  }
  const total = series("walrust_databases_total")[0]?.split(" ")[1];
  if (Number(total) !== n) out.push(`walrust_databases_total ${total}, expected ${n}`);
  const procRss = series("process_resident_memory_bytes")[0];
  if (i.mode === "metrics+process") {
    if (!procRss) out.push("process_resident_memory_bytes missing with --metrics-process");
    else {
      const v = Number(procRss.split(" ")[1]) / 1024;
      if (Math.abs(v - rssKb) > 0.1 * rssKb) {
        out.push(`process_resident_memory_bytes ${mib(v)} MiB vs VmRSS ${mib(rssKb)} MiB`);
      }
    }
  } else if (procRss) out.push("process_resident_memory_bytes served without --metrics-process");
  return out;
}

/** Stop by PID: SIGTERM, then SIGKILL after `graceMs`. */
async function stop(p: WalrustProcess, graceMs = 15_000): Promise<void> {
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
  try {
    await p.wait();
  } finally {
    clearTimeout(timer);
    live.delete(p);
  }
}

/** The three modes side by side over `n` databases each: one row per mode. */
async function measure(n: number, run: number, windowMs: number): Promise<MetricsResult[]> {
  const all: Instance[] = [];
  try {
    for (const m of MODES) all.push(await launch(m.mode, m.flags, n));
    await Promise.all(all.map((i) => ready(i, 300_000)));
    await sleep(SETTLE_MS);
    const settled = await sampleRss(all, windowMs);

    const served = all.filter((i) => i.url !== undefined);
    const scrapes = new Map<Instance, { text: string; ms: number; bytes: number }[]>(
      served.map((i) => [i, []]),
    );
    const t0 = performance.now();
    for (let k = 0; k < SCRAPES; k++) {
      await sleep(Math.max(0, t0 + k * SCRAPE_EVERY_MS - performance.now()));
      for (const i of served) scrapes.get(i)!.push(await scrape(i.url!));
    }
    const after = await sampleRss(all, windowMs);

    const results: MetricsResult[] = [];
    for (const [k, i] of all.entries()) {
      const mem = (await procMemory(i.p.pid))!;
      const s = scrapes.get(i);
      const problems = s ? check(i, s[0].text, settled[k]) : [];
      const warn = i.p.stderr.split("\n").filter((l) => /\b(WARN|ERROR)\b/.test(l));
      for (const w of warn.slice(0, 3)) problems.push(`log: ${w}`);
      results.push({
        mode: i.mode,
        databases: n,
        run,
        settledKb: settled[k],
        scrapedKb: after[k],
        hwmKb: mem.hwmKb,
        bytes: s?.[0].bytes,
        series: s?.[0].text.split("\n").filter((l) => l && !l.startsWith("#")).length,
        firstScrapeMs: s?.[0].ms,
        medianScrapeMs: s ? median(s.map((x) => x.ms)) : undefined,
        problems,
      });
    }
    return results;
  } finally {
    await Promise.all(all.map((i) => stop(i.p)));
    for (const i of all) {
      await Deno.remove(i.dir, { recursive: true });
      liveDirs.delete(i.dir);
    }
  }
}

function printResults(results: MetricsResult[]): void {
  const base = (r: MetricsResult) =>
    results.find((o) => o.mode === "no-metrics" && o.databases === r.databases && o.run === r.run);
  const delta = (a: number, b: number | undefined) =>
    b === undefined ? "" : `${a - b >= 0 ? "+" : ""}${mib(a - b)}`;
  printTable(
    [
      "config",
      "N",
      "run",
      "settled MiB",
      "Δ",
      "after scrapes MiB",
      "Δ",
      "VmHWM MiB",
      "/metrics bytes",
      "series",
      "1st scrape ms",
      "median scrape ms",
    ],
    results.map((r) => {
      const b = r.mode === "no-metrics" ? undefined : base(r);
      return [
        r.mode,
        String(r.databases),
        String(r.run),
        mib(r.settledKb),
        delta(r.settledKb, b?.settledKb),
        mib(r.scrapedKb),
        delta(r.scrapedKb, b?.scrapedKb),
        mib(r.hwmKb),
        r.bytes !== undefined ? String(r.bytes) : "",
        r.series !== undefined ? String(r.series) : "",
        r.firstScrapeMs !== undefined ? r.firstScrapeMs.toFixed(1) : "",
        r.medianScrapeMs !== undefined ? r.medianScrapeMs.toFixed(1) : "",
      ];
    }),
  );
  console.log(
    "(MiB = median VmRSS of the walrust deno process over the window; Δ = minus --no-metrics of\n" +
      " the same N and run; VmHWM at the end; bytes, series (sample lines) and 1st scrape = the\n" +
      ` first GET /metrics; median over all ${SCRAPES} scrapes; scrape ms = request to last body byte)`,
  );
  const runs = new Set(results.map((r) => r.run)).size;
  if (runs > 1) {
    // The median over runs of each run's own delta (side by side, so the runs share conditions).
    const rows: string[][] = [];
    for (const n of new Set(results.map((r) => r.databases))) {
      for (const mode of MODES.map((m) => m.mode).filter((m) => m !== "no-metrics")) {
        const mine = results.filter((r) => r.mode === mode && r.databases === n);
        const d = (f: (r: MetricsResult) => number) => median(mine.map((r) => f(r) - f(base(r)!)));
        rows.push([
          mode,
          String(n),
          `+${mib(d((r) => r.settledKb))}`.replace("+-", "-"),
          `+${mib(d((r) => r.scrapedKb))}`.replace("+-", "-"),
          median(mine.map((r) => r.medianScrapeMs!)).toFixed(1),
        ]);
      }
    }
    console.log(`\nmedian over ${runs} runs of the delta vs --no-metrics (MiB):`);
    printTable(["config", "N", "Δ settled", "Δ after scrapes", "median scrape ms"], rows);
  }
}

/** Figure: RSS cost of the metrics server with 1 and 100 databases, process collectors or not. */
export async function benchMetrics(opts: BenchOptions): Promise<MetricsResult[]> {
  const counts = opts.quick ? [1, 20] : [1, 100];
  const runs = opts.quick ? 1 : 3;
  const windowMs = opts.quick ? 5_000 : 10_000;
  console.log(
    `\n## RSS cost of the metrics server (file replica, idle databases, ${runs} run` +
      `${runs > 1 ? "s" : ""})\n` +
      `Three watchers side by side per N, each over its own N databases (WAL mode, one table of\n` +
      `10 rows, no writes) and file replica, compaction and retention off: --no-metrics,\n` +
      `--metrics-addr 127.0.0.1:0, and that plus --metrics-process. VmRSS is the median of\n` +
      `samples ${SAMPLE_EVERY_MS} ms apart over ${windowMs / 1000} s starting ${
        SETTLE_MS / 1000
      } ` +
      `s after every database reached the replica,\nthen over ${windowMs / 1000} s after ` +
      `${SCRAPES} scrapes of /metrics ${SCRAPE_EVERY_MS} ms apart.`,
  );
  const onSignal = async () => {
    // Ctrl-C: stop the watchers by PID (SIGKILL after 2 s), then remove their folders.
    await Promise.all([...live].map((p) => stop(p, 2_000)));
    for (const d of liveDirs) Deno.removeSync(d, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const results: MetricsResult[] = [];
    for (let run = 1; run <= runs; run++) {
      for (const n of counts) {
        const rows = await measure(n, run, windowMs);
        results.push(...rows);
        console.log(
          `  run ${run} N=${n}: ` +
            rows.map((r) => `${r.mode} ${mib(r.settledKb)}/${mib(r.scrapedKb)} MiB`).join(", "),
        );
      }
    }
    printResults(results);
    const problems = results.flatMap((r) =>
      r.problems.map((p) => `${r.mode} N=${r.databases} run ${r.run}: ${p}`)
    );
    console.log(
      problems.length === 0
        ? `/metrics check: every family present, one series per database, labels as expected`
        : problems.map((p) => `PROBLEM ${p}`).join("\n"),
    );
    return results;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}
