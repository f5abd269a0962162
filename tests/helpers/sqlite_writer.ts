/**
 * Drive a real SQLite writer in ANOTHER process (python3's stdlib sqlite3, SQLite 3.40 here,
 * a different SQLite copy from node:sqlite's), for tests that need an application writing to a
 * database walrust watches.
 *
 * ```ts
 * const w = await SqliteWriter.start(dbPath);          // WAL mode, autocheckpoint on (1000)
 * await w.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
 * await w.exec("INSERT INTO t VALUES (?)", [new Uint8Array(8)]);
 * const rows = await w.query("SELECT count(*) FROM t"); // [[2]]
 * await w.checkpoint("TRUNCATE");                        // { busy, log, checkpointed }
 * await w.kill();                                        // SIGKILL: connection never closed
 * ```
 * Values cross the pipe as JSON; blobs go in as Uint8Array and come back as lower-case hex.
 */

/** A value bound to or returned from SQL. Returned blobs are hex strings. */
export type SqlValue = null | number | string | Uint8Array;

/** How the child opens the database. */
export interface WriterOptions {
  /** Journal mode set at start: "wal" (default), "delete" to make a non-WAL database, or "keep". */
  journalMode?: "wal" | "delete" | "keep";
  /** PRAGMA wal_autocheckpoint in pages; default: SQLite's own (1000). 0 disables. */
  autocheckpoint?: number;
  /** PRAGMA page_size, applied before anything else (takes effect on a new database). */
  pageSize?: number;
  /** PRAGMA cache_size (pages); small values make big transactions spill frames into the WAL. */
  cacheSize?: number;
  /** Busy timeout in ms; default 5000. */
  busyTimeoutMs?: number;
}

/** The result of a checkpoint run by the writer. */
export interface WriterCheckpoint {
  busy: number;
  log: number;
  checkpointed: number;
}

const CHILD = String.raw`
import json, os, sqlite3, sys
path, opts = sys.argv[1], json.loads(sys.argv[2])
conn = sqlite3.connect(path, timeout=opts.get("busyTimeoutMs", 5000) / 1000,
                       isolation_level=None, check_same_thread=False)
if opts.get("pageSize"):
    conn.execute("PRAGMA page_size=%d" % int(opts["pageSize"]))
mode = opts.get("journalMode", "wal")
if mode != "keep":
    conn.execute("PRAGMA journal_mode=%s" % ("WAL" if mode == "wal" else "DELETE")).fetchall()
if opts.get("autocheckpoint") is not None:
    conn.execute("PRAGMA wal_autocheckpoint=%d" % int(opts["autocheckpoint"]))
if opts.get("cacheSize") is not None:
    conn.execute("PRAGMA cache_size=%d" % int(opts["cacheSize"]))

def split(sql):
    out, cur = [], ""
    for piece in sql.split(";"):
        cur += piece + ";"
        if sqlite3.complete_statement(cur):
            if cur.strip(" \t\r\n;"):
                out.append(cur)
            cur = ""
    if cur.strip(" \t\r\n;"):
        out.append(cur)
    return out

def decode(v):
    return bytes.fromhex(v["hex"]) if isinstance(v, dict) else v

def encode(v):
    return v.hex() if isinstance(v, (bytes, bytearray, memoryview)) else v

def run(req):
    cur = conn.cursor()
    if "params" in req:
        cur.execute(req["sql"], [decode(p) for p in req["params"]])
    else:
        for stmt in split(req["sql"]):
            cur.execute(stmt)
    return [[encode(v) for v in row] for row in cur.fetchall()]

reply = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())
reply({"ready": True, "pid": os.getpid(),
       "journalMode": conn.execute("PRAGMA journal_mode").fetchone()[0]})
for line in sys.stdin:
    req = json.loads(line)
    if req.get("op") == "close":
        conn.close()
        reply({"ok": True, "rows": []})
        break
    try:
        reply({"ok": True, "rows": run(req)})
    except sqlite3.Error as e:
        reply({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
`;

/** A long-lived SQLite connection in a python3 child process. */
export class SqliteWriter {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: Promise<string>;
  #queue: Promise<unknown> = Promise.resolve();
  #exited = false;
  /** The journal mode the child reported after opening ("wal" unless asked otherwise). */
  journalMode = "";

  private constructor(readonly dbPath: string, child: Deno.ChildProcess) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#lines = lines(child.stdout)[Symbol.asyncIterator]();
    this.#stderr = new Response(child.stderr).text();
  }

  /** The child's process id (for kill -9 from elsewhere). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Start a child with an open connection to `dbPath` (created if missing), WAL by default. */
  static async start(dbPath: string, opts: WriterOptions = {}): Promise<SqliteWriter> {
    const child = new Deno.Command("python3", {
      args: ["-c", CHILD, dbPath, JSON.stringify(opts)],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = new SqliteWriter(dbPath, child);
    const first = await w.#lines.next();
    if (first.done) {
      await w.#reap();
      throw new Error(`sqlite writer for ${dbPath} failed to start: ${await w.#stderr}`);
    }
    const ready = JSON.parse(first.value) as { journalMode: string };
    w.journalMode = ready.journalMode;
    return w;
  }

  /** Run one or more statements in the child and wait until they finish. Throws on SQL errors. */
  async exec(sql: string, params?: SqlValue[]): Promise<void> {
    await this.query(sql, params);
  }

  /** Run statements and return the rows of the last one (blobs as hex strings). */
  query(sql: string, params?: SqlValue[]): Promise<(null | number | string)[][]> {
    const req: Record<string, unknown> = { sql };
    if (params) req.params = params.map((p) => p instanceof Uint8Array ? { hex: hex(p) } : p);
    return this.#request(req);
  }

  /** `PRAGMA wal_checkpoint(mode)` in the child. */
  async checkpoint(
    mode: "PASSIVE" | "FULL" | "RESTART" | "TRUNCATE" = "TRUNCATE",
  ): Promise<WriterCheckpoint> {
    const [row] = await this.query(`PRAGMA wal_checkpoint(${mode})`);
    return { busy: Number(row[0]), log: Number(row[1]), checkpointed: Number(row[2]) };
  }

  /** Close the connection cleanly (as the last connection it checkpoints and deletes the WAL). */
  async close(): Promise<void> {
    if (this.#exited) return;
    try {
      await this.#request({ op: "close" });
    } finally {
      await this.#reap();
    }
  }

  /** SIGKILL the child (its connection is never closed) and wait for it to exit. */
  async kill(): Promise<void> {
    if (this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#reap();
  }

  #request(req: Record<string, unknown>): Promise<(null | number | string)[][]> {
    const run = this.#queue.then(async () => {
      if (this.#exited) throw new Error(`sqlite writer ${this.pid} has exited`);
      await this.#stdin.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
      const line = await this.#lines.next();
      if (line.done) {
        await this.#reap();
        throw new Error(`sqlite writer ${this.pid} died: ${await this.#stderr}`);
      }
      const res = JSON.parse(line.value) as {
        ok: boolean;
        rows: (null | number | string)[][];
        error?: string;
      };
      if (!res.ok) throw new Error(`sqlite writer: ${res.error} (sql: ${String(req.sql)})`);
      return res.rows;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reap(): Promise<void> {
    if (this.#exited) return;
    this.#exited = true;
    try {
      await this.#stdin.close();
    } catch {
      // the pipe is already broken when the child died
    }
    await this.#child.status;
    // Drain stdout so the stream resource is released.
    while (!(await this.#lines.next()).done) { /* discard */ }
    await this.#stderr;
  }
}

/** Run SQL in a one-shot child (open, run, close). Sets WAL mode unless told otherwise. */
export async function runSql(dbPath: string, sql: string, opts: WriterOptions = {}): Promise<void> {
  const w = await SqliteWriter.start(dbPath, opts);
  try {
    await w.exec(sql);
  } finally {
    await w.close();
  }
}

const DUMP = String.raw`
import os, sqlite3, sys, json
from urllib.parse import quote
path, tables = sys.argv[1], json.loads(sys.argv[2])
# A WAL-mode file without a -wal is open nowhere: immutable avoids creating -wal/-shm beside a
# copy. A rollback-journal file (a follower's copy) may be mid-batch: read it under its locks.
with open(path, "rb") as f:
    wal_mode = f.read(20)[18:19] == b"\x02"
mode = "immutable=1" if wal_mode and not os.path.exists(path + "-wal") else "mode=ro"
uri = "file:%s?%s" % (quote(os.path.abspath(path)), mode)
conn = sqlite3.connect(uri, uri=True)
q = lambda s: '"' + s.replace('"', '""') + '"'
enc = lambda v: "x'" + v.hex() + "'" if isinstance(v, bytes) else repr(v)
out = []
schema = conn.execute(
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
    "AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY type, name").fetchall()
for t, name, tbl, sql in schema:
    out.append("%s %s %s: %s" % (t, name, tbl, sql))
names = [r[1] for r in schema if r[0] == "table"]
if tables is not None:
    names = [n for n in names if n in tables]
for name in names:
    n = len(conn.execute("SELECT * FROM %s LIMIT 0" % q(name)).description)
    order = ", ".join(str(i + 1) for i in range(n))
    for row in conn.execute("SELECT * FROM %s ORDER BY %s" % (q(name), order)):
        out.append("%s|%s" % (name, "|".join(enc(v) for v in row)))
conn.close()
sys.stdout.write("\n".join(out) + "\n")
`;

/**
 * Deterministic text dump of a database (schema, then every row sorted by all columns),
 * excluding `_litestream_*` tables, for comparing a source with a restore. `tables` limits rows.
 */
export async function dumpContent(dbPath: string, tables?: string[]): Promise<string> {
  const out = await new Deno.Command("python3", {
    args: ["-c", DUMP, dbPath, JSON.stringify(tables ?? null)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`dumpContent ${dbPath}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
  if (pending) yield pending;
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
