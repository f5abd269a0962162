/** What the benchmarks share: /proc readers, a percentile, the tool process, Litestream configs. */

let clockTicks = 0;

/** USER_HZ, the unit of /proc/<pid>/stat and /proc/stat times. */
export async function ticksPerSecond(): Promise<number> {
  if (clockTicks === 0) {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output()
      .catch(() => undefined);
    clockTicks = Number(new TextDecoder().decode(out?.stdout ?? new Uint8Array()).trim()) || 100;
  }
  return clockTicks;
}

/** utime + stime of `pid` in clock ticks; throws once it has exited. */
export async function procTicks(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which may itself contain spaces or parentheses.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (f[0] === "Z" || f[0] === "X") throw new Error(`process ${pid} has exited`);
  return Number(f[11]) + Number(f[12]);
}

/** Busy clock ticks of the whole machine (all CPUs), from /proc/stat. */
export async function machineBusyTicks(): Promise<number> {
  const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return total - v[3] - (v[4] ?? 0); // minus idle and iowait
}

/** Number of open file descriptors of `pid`. */
export async function fdCount(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** The p-th percentile (nearest rank) of an ascending array; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** A long-running tool started through bash (for the fd limit); its output goes to a file. */
export class ToolProcess {
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly pid: number;
  #exited = false;

  constructor(cmd: string[], readonly logPath: string, cwd: string) {
    // exec: the bash PID becomes the tool's PID, so /proc/<pid> is the tool itself.
    const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ' +
      'log="$1"; shift; exec "$@" >"$log" 2>&1';
    this.#child = new Deno.Command("bash", {
      args: ["-c", script, "bash", logPath, ...cmd],
      cwd,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.pid = this.#child.pid;
    this.#status = this.#child.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Its output so far. */
  async log(): Promise<string> {
    return await Deno.readTextFile(this.logPath).catch(() => "");
  }

  /** SIGTERM, then SIGKILL after `graceMs`; returns the exit code. */
  async stop(graceMs = 15_000): Promise<number> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* already gone */ }
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, graceMs);
    try {
      return (await this.#status).code;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * `dir/litestream.yml` for Litestream 0.3 over `dir/dbs/<name>` to file replicas under
 * `dir/replica/`; monitor-interval (how often it checks the WAL) and sync-interval (how often the
 * replica is written) both at `intervalS`. Returns its path.
 */
export async function writeLitestreamConfig(
  dir: string,
  names: string[],
  intervalS: number,
): Promise<string> {
  const iv = `${Math.round(intervalS * 1000)}ms`;
  const lines = ["dbs:"];
  for (const n of names) {
    lines.push(
      `  - path: ${dir}/dbs/${n}`,
      `    monitor-interval: ${iv}`,
      `    replicas:`,
      `      - type: file`,
      `        path: ${dir}/replica/${n}`,
      `        sync-interval: ${iv}`,
    );
  }
  const path = `${dir}/litestream.yml`;
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}
