/**
 * Restore throughput with and without the terminal progress line: a database (300 MB full, 60 MB
 * quick) replicated to a file replica with `watch --once`, then restored alternately in a pipe
 * (no progress) and under a pseudo-terminal (script(1): progress drawn), three times each.
 */
import { printTable } from "./replication.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const RUN = [Deno.execPath(), "run", "-A", "--quiet", "--config", CONFIG, MAIN];

const BUILD = String.raw`
import os, sqlite3, sys
path, mb = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL").fetchall()
c.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v BLOB)")
rows = mb * 1000 * 1000 // 4000
c.execute("BEGIN")
for i in range(rows):
    c.execute("INSERT INTO b (v) VALUES (?)", (os.urandom(2000) + bytes(2000),))
c.execute("COMMIT")
c.close()
`;

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

/** Print restore MB/s in a pipe and on a terminal. */
export async function benchProgress(opts: { quick: boolean }): Promise<void> {
  const mb = opts.quick ? 60 : 300;
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-progress-" });
  try {
    const db = `${dir}/app.db`;
    const build = await run("python3", ["-c", BUILD, db, String(mb)]);
    if (build.code !== 0) throw new Error(`building the database failed: ${build.out}`);
    const bucket = `file://${dir}/replica`;
    const once = await run(RUN[0], [...RUN.slice(1), "watch", db, "--bucket", bucket, "--once"]);
    if (once.code !== 0) throw new Error(`watch --once failed: ${once.out}`);
    const bytes = (await Deno.stat(db)).size;
    const times: Record<string, number[]> = { pipe: [], terminal: [] };
    for (let i = 0; i < 3; i++) {
      for (const mode of ["pipe", "terminal"] as const) {
        const out = `${dir}/r-${mode}-${i}.db`;
        const args = [...RUN, "restore", "app.db", "-o", out, "--bucket", bucket];
        const t0 = performance.now();
        const r = mode === "pipe" ? await run(args[0], args.slice(1)) : await run("script", [
          "-q",
          "-e",
          "-c",
          args.map((a) => `'${a}'`).join(" "),
          "/dev/null",
        ]);
        const secs = (performance.now() - t0) / 1000;
        if (r.code !== 0) throw new Error(`restore (${mode}) failed: ${r.out}`);
        if (mode === "terminal" && !/MB\/s/.test(r.out)) throw new Error("no progress line drawn");
        if (mode === "pipe" && /MB\/s/.test(r.out)) throw new Error("progress drawn in a pipe");
        times[mode].push(secs);
        await Deno.remove(out);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `\n## Restore with and without the progress line (${(bytes / 1e6).toFixed(0)} MB, file ` +
        "replica, whole process time, median of 3, alternating)",
    );
    const rows = (["pipe", "terminal"] as const).map((m) => [
      m === "pipe" ? "pipe (no progress)" : "terminal (progress)",
      median(times[m]).toFixed(2),
      (bytes / 1e6 / median(times[m])).toFixed(1),
    ]);
    printTable(["restore to", "seconds", "MB/s"], rows);
    console.log(`ratio terminal/pipe: ${(median(times.terminal) / median(times.pipe)).toFixed(3)}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
