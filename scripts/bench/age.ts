/**
 * What age encryption costs, encrypted against plain in one run (`deno task bench --only age`):
 * - restore MB/s and peak RSS of one large database (500 MB; 50 MB with --quick), the two
 *   replicas restored alternately so machine noise hits both;
 * - CPU seconds of `watch` over 100 databases with one small transaction per database per
 *   second, plain and encrypted, alternately.
 */
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import {
  type BenchOptions,
  buildRestoreDb,
  printTable,
  rssRun,
  summarize,
  timedWalrust,
} from "./replication.ts";

/** The age figures: restore and CPU per sync, encrypted vs plain. */
export async function benchAge(opts: BenchOptions): Promise<void> {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const ageToml = `[age]\nrecipients = ["${recipient}"]\nidentities = ["${identity}"]\n`;
  await restoreFigures(opts, ageToml);
  await cpuFigures(opts, ageToml);
}

async function restoreFigures(opts: BenchOptions, ageToml: string): Promise<void> {
  const target = opts.quick ? 50e6 : 500e6;
  const runs = opts.quick ? 1 : 3;
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-age-" });
  try {
    const db = `${dir}/big.db`;
    buildRestoreDb(db, target);
    const configs = {
      plain: `${dir}/plain.toml`,
      age: `${dir}/age.toml`,
    };
    await Deno.writeTextFile(configs.plain, `[s3]\nbucket = "file://${dir}/plain"\n`);
    await Deno.writeTextFile(configs.age, `[s3]\nbucket = "file://${dir}/age"\n${ageToml}`);
    const snap: Record<string, number> = {};
    for (const [kind, config] of Object.entries(configs)) {
      const r = await timedWalrust(["--config", config, "watch", db, "--once"]);
      if (r.code !== 0) throw new Error(`watch --once (${kind}) failed: ${r.stderr}`);
      snap[kind] = r.ms;
    }
    const source = summarize(db);
    const dbBytes = source.pages * 4096;
    const rows: string[][] = [];
    const results: Record<string, { ms: number; hwmKb: number }[]> = { plain: [], age: [] };
    for (let i = 0; i < runs; i++) {
      for (const [kind, config] of Object.entries(configs)) {
        const out = `${dir}/out-${kind}-${i}.db`;
        const r = await timedWalrust(["--config", config, "restore", "big.db", "-o", out]);
        if (r.code !== 0) throw new Error(`restore (${kind}) failed: ${r.stderr}`);
        const s = summarize(out);
        if (s.digest !== source.digest) {
          throw new Error(`restore (${kind}) differs from the source`);
        }
        results[kind].push({ ms: r.ms, hwmKb: r.hwmKb });
        rows.push([
          `${kind} run ${i + 1}`,
          r.ms.toFixed(0),
          (dbBytes / 1e6 / (r.ms / 1000)).toFixed(1),
          (r.hwmKb / 1024).toFixed(1),
        ]);
        await Deno.remove(out);
      }
    }
    console.log(
      `\n## age: restore of a ${(dbBytes / 1e6).toFixed(0)} MB database, encrypted vs plain ` +
        `(file backend, CLI wall time incl. startup and integrity_check; first snapshot ` +
        `plain ${snap.plain.toFixed(0)} ms, encrypted ${snap.age.toFixed(0)} ms)\n`,
    );
    printTable(["run", "wall ms", "MB/s", "peak RSS MiB"], rows);
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const p = med(results.plain.map((x) => x.ms));
    const a = med(results.age.map((x) => x.ms));
    console.log(
      `median MB/s: plain ${(dbBytes / 1e6 / (p / 1000)).toFixed(1)}, encrypted ` +
        `${(dbBytes / 1e6 / (a / 1000)).toFixed(1)} (encrypted/plain time ${
          (a / p).toFixed(2)
        }); ` +
        `peak RSS MiB: plain ${(med(results.plain.map((x) => x.hwmKb)) / 1024).toFixed(1)}, ` +
        `encrypted ${(med(results.age.map((x) => x.hwmKb)) / 1024).toFixed(1)}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function cpuFigures(opts: BenchOptions, ageToml: string): Promise<void> {
  const n = opts.quick ? 20 : 100;
  const seconds = opts.quick ? 15 : 60;
  const runs = opts.quick ? 1 : 2;
  const rows: string[][] = [];
  const per: Record<string, number[]> = { plain: [], age: [] };
  for (let i = 0; i < runs; i++) {
    for (const [kind, extra] of [["plain", ""], ["age", ageToml]] as const) {
      const r = await rssRun(n, seconds, extra);
      if (r.exitCode !== 0 || r.problems.length > 0) {
        throw new Error(`watch (${kind}) ended badly: ${r.exitCode} ${r.problems.join("; ")}`);
      }
      const msPerCommit = (r.cpuSeconds * 1000) / Math.max(1, r.commits);
      per[kind].push(msPerCommit);
      rows.push([
        `${kind} run ${i + 1}`,
        String(r.commits),
        r.cpuSeconds.toFixed(1),
        msPerCommit.toFixed(2),
        (r.final.rssKb / 1024).toFixed(1),
      ]);
    }
  }
  console.log(
    `\n## age: CPU of watch over ${n} databases, one transaction per database per second for ` +
      `${seconds} s, encrypted vs plain\n`,
  );
  printTable(["run", "commits", "CPU s", "CPU ms per commit", "RSS MiB"], rows);
  const avg = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  console.log(
    `CPU per commit: plain ${avg(per.plain).toFixed(2)} ms, encrypted ${
      avg(per.age).toFixed(2)
    } ms ` +
      `(ratio ${(avg(per.age) / avg(per.plain)).toFixed(2)})`,
  );
}
