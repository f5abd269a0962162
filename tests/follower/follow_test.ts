/**
 * Read replicas, end to end with real processes: a primary app writing transfers (the total is
 * an invariant), `walrust watch` replicating it, `walrust replicate SOURCE --local PATH`
 * following it, and a reader process querying the local copy in a tight loop. The reader must
 * never see a broken invariant, a corrupt page or a lasting lock error, also across kill -9 of
 * the follower mid-batch (SQLite rolls the batch back from walrust's journal).
 */
import assert from "node:assert/strict";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { cliSql } from "../helpers/apps.ts";
import { WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { openTestS3, requireS3OrSkip, type S3TestConfig } from "../helpers/s3env.ts";

const ACCOUNTS = 50;
const TOTAL = ACCOUNTS * 1000;

/** A reader process: `SELECT count(*), sum(bal)` in a tight loop on the local copy. */
const READER = String.raw`
import json, sqlite3, sys, time
path, total, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
reads = violations = hot = 0
errors = []
end = time.time() + seconds
while time.time() < end:
    try:
        c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        for _ in range(20):
            n, s = c.execute("SELECT count(*), sum(bal) FROM acct").fetchone()
            if s != total:
                violations += 1
            reads += 1
        if reads % 400 == 0:
            r = c.execute("PRAGMA quick_check").fetchone()[0]
            if r != "ok":
                errors.append("quick_check: " + r)
        c.close()
    except Exception as e:
        # A read-only connection cannot roll back the journal a killed follower left ("attempt
        # to write a readonly database") and refuses to read: counted apart, never a wrong read.
        if "readonly" in str(e):
            hot += 1
        else:
            errors.append(str(e))
print(json.dumps({"reads": reads, "violations": violations, "errors": errors[:5],
                  "nerrors": len(errors), "hot": hot}))
`;

interface ReaderResult {
  reads: number;
  violations: number;
  errors: string[];
  nerrors: number;
  /** Reads refused while a killed follower's journal waited to be rolled back. */
  hot: number;
}

function startReader(path: string, seconds: number): Promise<ReaderResult> {
  const p = new Deno.Command("python3", {
    args: ["-c", READER, path, String(TOTAL), String(seconds)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return p.then((o) => {
    if (!o.success) throw new Error(new TextDecoder().decode(o.stderr));
    return JSON.parse(new TextDecoder().decode(o.stdout));
  });
}

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function primary(dir: string) {
  const db = `${dir}/primary.db`;
  const app = await SqliteWriter.start(db);
  await app.exec("CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL, note BLOB)");
  for (let i = 1; i <= ACCOUNTS; i++) {
    await app.exec(`INSERT INTO acct VALUES (${i}, 1000, randomblob(${i % 7 === 0 ? 3000 : 100}))`);
  }
  return { db, app };
}

/** One transfer between two accounts: the total never changes. */
async function transfer(app: SqliteWriter, i: number, big = false): Promise<void> {
  const a = (i * 7) % ACCOUNTS + 1;
  const b = (i * 13 + 5) % ACCOUNTS + 1;
  const note = big ? `, note = randomblob(${200_000 + (i % 5) * 50_000})` : "";
  await app.exec(
    `BEGIN; UPDATE acct SET bal = bal - ${i % 9 + 1}${note} WHERE id = ${a}; ` +
      `UPDATE acct SET bal = bal + ${i % 9 + 1} WHERE id = ${b}; COMMIT;`,
  );
}

function follower(source: string, local: string): WalrustProcess {
  return new WalrustProcess(["replicate", source, "--local", local, "--interval", "200ms"]);
}

/** Where the primary replicates and the follower reads: a file replica, or RGW. */
interface Backend {
  bucket: string;
  source: string;
  env?: Record<string, string>;
  cleanup(): Promise<void>;
}

function fileBackend(dir: string): Backend {
  return {
    bucket: `file://${dir}/replica`,
    source: `file://${dir}/replica/primary.db`,
    cleanup: () => Promise.resolve(),
  };
}

async function rgwBackend(c: S3TestConfig): Promise<Backend> {
  const t = await openTestS3(c);
  return {
    bucket: `s3://${c.bucket}/${t.prefix.replace(/\/$/, "")}`,
    source: `s3://${c.bucket}/${t.prefix}primary.db`,
    env: {
      AWS_ACCESS_KEY_ID: c.accessKeyId,
      AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
      AWS_REGION: c.region,
      AWS_ENDPOINT_URL_S3: c.endpoint,
    },
    cleanup: () => t.cleanup(),
  };
}

/** Until the follower's copy has the primary's latest TXID and content. */
async function converged(local: string, db: string): Promise<void> {
  const want = await dumpContent(db);
  await until("the follower equals the primary", async () => (await dumpContent(local)) === want);
}

async function followUnderWrites(dir: string, b: Backend, exitFive: boolean): Promise<void> {
  const local = `${dir}/local.db`;
  const { db, app } = await primary(dir);
  const watch = new WalrustProcess(
    ["watch", db, "--bucket", b.bucket, "--wal-sync-interval", "0.2", "--no-metrics"],
    { env: b.env },
  );
  let f: WalrustProcess | undefined;
  try {
    await watch.waitFor("replicating");
    f = new WalrustProcess(["replicate", b.source, "--local", local, "--interval", "200ms"], {
      env: b.env,
    });
    await f.waitFor("following");
    const reader = startReader(local, 6);
    const started = Date.now();
    for (let i = 0; Date.now() - started < 5000; i++) {
      await transfer(app, i, i % 10 === 0);
      await new Promise((r) => setTimeout(r, 20));
    }
    const stoppedAt = Date.now();
    await converged(local, db);
    const lag = Date.now() - stoppedAt;
    const r = await reader;
    assert.ok(r.reads > 200, JSON.stringify(r));
    assert.equal(r.violations, 0, JSON.stringify(r));
    assert.equal(r.nerrors, 0, JSON.stringify(r));
    assert.equal(r.hot, 0, JSON.stringify(r));
    assert.ok(lag < 2000, `caught up ${lag} ms after the last commit`);
    assert.equal((await cliSql(local, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal((await cliSql(local, "PRAGMA journal_mode")).trim(), "delete");
    if (exitFive) {
      // The copy is the follower's alone: a write from outside stops it with exit 5.
      await cliSql(local, "UPDATE acct SET bal = bal + 1 WHERE id = 1");
      await transfer(app, 99_999);
      assert.equal(await f.wait(), 5, f.stderr);
      assert.match(f.stderr, /written by something other than walrust/);
    }
  } finally {
    await app.close();
    f?.kill("SIGKILL");
    await f?.wait();
    watch.kill("SIGTERM");
    await watch.wait();
  }
}

Deno.test("a follower at 200 ms keeps a reader's invariant and equals the primary within 2 s", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-follow-" });
  try {
    await followUnderWrites(dir, fileBackend(dir), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const S3 = await requireS3OrSkip();

Deno.test({
  name: "s3: a follower of an RGW replica keeps the invariant and catches up within 2 s",
  ignore: !S3,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "walrust-follow-s3-" });
    const b = await rgwBackend(S3!);
    try {
      await followUnderWrites(dir, b, false);
    } finally {
      await b.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kill -9 of the follower mid-batch: readers keep the invariant, the restart catches up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-follow-kill-" });
  const root = `${dir}/replica`;
  const local = `${dir}/local.db`;
  const { db, app } = await primary(dir);
  const watch = new WalrustProcess(
    ["watch", db, "--bucket", `file://${root}`, "--wal-sync-interval", "0.05", "--no-metrics"],
  );
  let f: WalrustProcess | undefined;
  try {
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "primary.db");
    f = follower(`file://${root}/primary.db`, local);
    await f.waitFor("following");
    let i = 0;
    let hot = 0;
    for (let round = 0; round < 4; round++) {
      const reader = startReader(local, 3);
      // Big transactions, uploaded before the follower's next poll: each of its batches is long
      // enough to be killed inside. Watch (synchronously) for the batch's journal, then kill.
      for (let n = 0; n < 8; n++) await transfer(app, i++, true);
      await waitCaughtUp(db, root, "primary.db");
      const journal = `${local}-journal`;
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline) {
        try {
          Deno.statSync(journal);
          break;
        } catch { /* not yet */ }
      }
      f.kill("SIGKILL");
      await f.wait();
      if (await Deno.stat(journal).then(() => true, () => false)) hot++;
      const r = await reader;
      assert.equal(r.violations, 0, `round ${round}: ${JSON.stringify(r)}`);
      assert.equal(r.nerrors, 0, `round ${round}: ${JSON.stringify(r)}`);
      // Whatever the kill interrupted, the copy a reader opens now is one committed state.
      assert.equal((await cliSql(local, "PRAGMA integrity_check")).trim(), "ok");
      assert.equal((await cliSql(local, "SELECT sum(bal) FROM acct")).trim(), String(TOTAL));
      f = follower(`file://${root}/primary.db`, local);
      await f.waitFor("following");
    }
    assert.ok(hot >= 1, "at least one kill landed inside a batch (a hot journal was left)");
    await waitCaughtUp(db, root, "primary.db");
    const want = await dumpContent(db);
    await until("caught up after the restarts", async () => (await dumpContent(local)) === want);
    assert.doesNotMatch(f.stderr, /re-bootstrapping/);
  } finally {
    await app.close();
    f?.kill("SIGKILL");
    await f?.wait();
    watch.kill("SIGTERM");
    await watch.wait();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("[[replicas]]: one process follows two databases; /metrics and /health report each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-follow-config-" });
  const root = `${dir}/replica`;
  const dbs = [`${dir}/a.db`, `${dir}/b.db`];
  const apps: SqliteWriter[] = [];
  let f: WalrustProcess | undefined;
  let watch: WalrustProcess | undefined;
  try {
    for (const db of dbs) {
      const app = await SqliteWriter.start(db);
      await app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
      apps.push(app);
    }
    await Deno.writeTextFile(
      `${dir}/follow.toml`,
      `[s3]\nbucket = "file://${root}"\n` +
        `[[replicas]]\nsource = "a.db"\nlocal = "copies/a.db"\ninterval = "100ms"\n` +
        `[[replicas]]\nsource = "file://${root}/b.db"\nlocal = "copies/b.db"\ninterval = 0.1\n`,
    );
    await Deno.mkdir(`${dir}/copies`);
    watch = new WalrustProcess(
      [
        "watch",
        ...dbs,
        "--bucket",
        `file://${root}`,
        "--wal-sync-interval",
        "0.05",
        "--no-metrics",
      ],
    );
    await watch.waitFor("watching");
    for (const db of dbs) await waitCaughtUp(db, root, db.slice(dir.length + 1));
    f = new WalrustProcess([
      "--config",
      `${dir}/follow.toml`,
      "replicate",
      "--metrics-addr",
      "127.0.0.1:0",
    ]);
    await f.waitFor("serving metrics and health");
    const url = /url=(http:\/\/\S+)\/metrics/.exec(f.stderr)![1];
    for (let i = 0; i < 10; i++) {
      for (const app of apps) await app.exec(`INSERT INTO t (v) VALUES ('row ${i}')`);
    }
    for (const [i, db] of dbs.entries()) {
      const name = db.slice(dir.length + 1);
      await waitCaughtUp(db, root, name);
      await converged(`${dir}/copies/${name}`, db);
      assert.equal(
        (await cliSql(`${dir}/copies/${name}`, "SELECT count(*) FROM t")).trim(),
        "10",
        `${i}`,
      );
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const name of ["a.db", "b.db"]) {
      const lag = new RegExp(
        `walrust_follower_lag_seconds\\{database="${dir}/copies/${name}"\\} ([0-9.]+)`,
      ).exec(metrics);
      assert.ok(lag && Number(lag[1]) < 5, metrics);
      assert.match(metrics, new RegExp(`walrust_follower_txid\\{database="[^"]*${name}"\\} [1-9]`));
    }
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    const body = await health.json();
    assert.equal(body.status, "healthy");
    assert.deepEqual(Object.keys(body.followers).sort(), [
      `${dir}/copies/a.db`,
      `${dir}/copies/b.db`,
    ]);
    f.kill("SIGTERM");
    assert.equal(await f.wait(), 0, f.stderr);
    assert.match(f.stderr, /stopped following/);
  } finally {
    for (const app of apps) await app.close();
    f?.kill("SIGKILL");
    await f?.wait();
    watch?.kill("SIGTERM");
    await watch?.wait();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore -f -follow-interval (Litestream's follow mode) follows, stops on SIGTERM, continues", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-f-" });
  const root = `${dir}/replica`;
  const out = `${dir}/out.db`;
  const { db, app } = await primary(dir);
  const watch = new WalrustProcess(
    ["watch", db, "--bucket", `file://${root}`, "--wal-sync-interval", "0.05", "--no-metrics"],
  );
  const source = `file://${root}/primary.db`;
  let f: WalrustProcess | undefined;
  try {
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "primary.db");
    for (const flag of [["-txid", "1"], ["--dry-run"]]) {
      const bad = new WalrustProcess(["restore", "-f", ...flag, "-o", out, source]);
      assert.equal(await bad.wait(), 2, bad.stderr);
    }
    f = new WalrustProcess(["restore", "-f", "-follow-interval", "100ms", "-o", out, source]);
    await f.waitFor("following");
    for (let i = 0; i < 10; i++) await transfer(app, i);
    await waitCaughtUp(db, root, "primary.db");
    await converged(out, db);
    f.kill("SIGTERM");
    assert.equal(await f.wait(), 0, f.stderr);
    // A second run continues the same copy (no new bootstrap) and catches up again.
    for (let i = 10; i < 20; i++) await transfer(app, i);
    f = new WalrustProcess(["restore", "-f", "-follow-interval", "100ms", "-o", out, source]);
    await waitCaughtUp(db, root, "primary.db");
    await converged(out, db);
    assert.doesNotMatch(f.stderr, /bootstrapped/);
    assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
  } finally {
    await app.close();
    f?.kill("SIGTERM");
    await f?.wait();
    watch.kill("SIGTERM");
    await watch.wait();
    await Deno.remove(dir, { recursive: true });
  }
});
