/** Run the walrust CLI as a real subprocess (tests of behaviour across processes). */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const V8_FLAGS = "--v8-flags=--max-semi-space-size=1";

/** `watch DB --bucket BUCKET` with the short batching window the tests use (50 ms). */
export function watchArgs(db: string, bucket: string, extra: string[] = []): string[] {
  return ["watch", db, "--bucket", bucket, "--wal-sync-interval", "0.05", ...extra];
}

/** The result of a finished walrust run. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function command(args: string[], opts: { cwd?: string; env?: Record<string, string> }) {
  return new Deno.Command(Deno.execPath(), {
    // Launched exactly as `deno task walrust` launches it (see docs/decisions.md: V8 flags).
    args: ["run", "-A", "--quiet", V8_FLAGS, "--config", CONFIG, MAIN, ...args],
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Run walrust to completion. */
export async function walrust(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const out = await command(args, opts).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A long-running walrust process (e.g. `watch`), collecting its stderr. */
export class WalrustProcess {
  #child: Deno.ChildProcess;
  #stderr = "";
  #stdout = "";
  #done: Promise<Deno.CommandStatus>;
  readonly pid: number;

  constructor(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
    this.#child = command(args, opts).spawn();
    this.pid = this.#child.pid;
    const collect = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      const dec = new TextDecoder();
      for await (const c of s) add(dec.decode(c));
    };
    const a = collect(this.#child.stderr, (t) => (this.#stderr += t));
    const b = collect(this.#child.stdout, (t) => (this.#stdout += t));
    this.#done = Promise.all([a, b]).then(() => this.#child.status);
  }

  /** Everything printed to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }
  get stdout(): string {
    return this.#stdout;
  }

  /** Wait until stderr contains `text` (or the process exits / times out). */
  async waitFor(text: string | RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.#done.then(() => (exited = true));
    while (Date.now() < deadline) {
      const hit = typeof text === "string" ? this.#stderr.includes(text) : text.test(this.#stderr);
      if (hit) return;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(
      `walrust did not print ${text} within ${timeoutMs} ms; stderr:\n${this.#stderr}`,
    );
  }

  /** Send a signal. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch { /* already exited */ }
  }

  /** Wait for exit; returns the exit code. */
  async wait(): Promise<number> {
    return (await this.#done).code;
  }
}
