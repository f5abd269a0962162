/**
 * Application workloads in other processes, for the torture suite: one-shot writers (the sqlite3
 * CLI and python3) and a background loop on a long-lived SqliteWriter that counts the
 * transactions SQLite acknowledged.
 */
import { runSql, type SqliteWriter } from "./sqlite_writer.ts";

/** The table every workload writes: `tag` says who wrote a row, `v` is its payload. */
export const APP_SCHEMA =
  `CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, n INTEGER, v BLOB);`;

/**
 * Run SQL through the sqlite3 CLI in a new process (open, run, close). The `.timeout` matters:
 * walrust briefly holds the write lock while it checkpoints.
 */
export async function cliSql(dbPath: string, sql: string): Promise<string> {
  const out = await new Deno.Command("sqlite3", {
    args: ["-bail", "-cmd", ".timeout 5000", dbPath, sql],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `sqlite3 ${dbPath} exited ${out.code}: ${dec.decode(out.stderr)} (sql: ${sql})`,
    );
  }
  return dec.decode(out.stdout);
}

/** Run SQL in a one-shot python3 process (open, run, close), keeping the journal mode. */
export async function pySql(dbPath: string, sql: string): Promise<void> {
  await runSql(dbPath, sql, { journalMode: "keep" });
}

/** Create a WAL database with the app schema, from a process that then exits. */
export async function createAppDb(dbPath: string): Promise<void> {
  await runSql(dbPath, APP_SCHEMA);
}

/** The deterministic payload of row `id` in sequential workloads (see `sequentialInsert`). */
export function sequentialPayload(id: number): string {
  return `row-${id}-${"x".repeat(id % 97)}`;
}

/** SQL inserting row `id` with its deterministic payload, so any prefix of rows is checkable. */
export function sequentialInsert(id: number, tag = "seq"): string {
  return `INSERT INTO t (id, tag, n, v) VALUES (${id}, '${tag}', ${id}, '${
    sequentialPayload(id)
  }')`;
}

/**
 * A loop running `step(i)` (i = 0, 1, ...) on a writer until stopped. `acked` counts the steps
 * that returned, i.e. the transactions SQLite acknowledged as committed.
 */
export class WriterLoop {
  acked = 0;
  #stop = false;
  readonly #done: Promise<void>;

  constructor(
    readonly writer: SqliteWriter,
    step: (w: SqliteWriter, i: number) => Promise<void>,
    opts: { pauseMs?: number } = {},
  ) {
    this.#done = (async () => {
      while (!this.#stop) {
        await step(writer, this.acked);
        this.acked++;
        if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
      }
    })();
    // Surfaced by stop(); keep an early failure from being an unhandled rejection meanwhile.
    this.#done.catch(() => {});
  }

  /** Stop after the current step; rethrows the error that ended the loop, if any. */
  async stop(): Promise<number> {
    this.#stop = true;
    await this.#done;
    return this.acked;
  }

  /** Wait until at least `n` steps were acknowledged (or the loop failed). */
  async waitAcked(n: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let failed: unknown;
    this.#done.catch((e) => (failed = e ?? new Error("writer loop failed")));
    while (this.acked < n) {
      if (failed !== undefined) throw failed;
      if (Date.now() > deadline) {
        throw new Error(`writer loop acknowledged ${this.acked} of ${n} within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Random integer in [lo, hi]. */
export function randInt(lo: number, hi: number): number {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}
