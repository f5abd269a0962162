/**
 * Drop-in for Litestream users, the command line: Litestream's command names, Go-style single-dash
 * flags, LITESTREAM_* credentials, restore by DB_PATH or replica URL, -if-db-not-exists /
 * -if-replica-exists, and `replicate -exec` (the child's exit code, signals, every commit kept).
 */
import assert from "node:assert/strict";
import { walrust, WalrustProcess } from "../helpers/walrust.ts";
import { cliSql, createAppDb, sequentialInsert } from "../helpers/apps.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { requireS3OrSkip, s3Options, uniquePrefix } from "../helpers/s3env.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { openS3Storage } from "../../src/storage/s3.ts";
import { pathExists } from "../../src/fsutil.ts";

const FAST = ["--wal-sync-interval", "0.05", "--no-metrics"];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ls-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A WAL database with the app schema and rows 1..n. */
async function appDb(path: string, n: number): Promise<void> {
  await createAppDb(path);
  for (let i = 1; i <= n; i++) await cliSql(path, sequentialInsert(i));
}

async function rowCount(path: string): Promise<number> {
  return Number((await cliSql(path, "SELECT count(*) FROM t")).trim());
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  return lines[0];
}

/** `replicate -once DB URL`: sync everything once into the replica and exit. */
async function syncOnce(dir: string, db: string, url: string, env?: Record<string, string>) {
  const r = await walrust(["replicate", "-once", ...FAST, db, url], { cwd: dir, env });
  assert.equal(r.code, 0, r.stderr);
}

Deno.test("Litestream's command names work; an unknown command suggests the nearest, exit 2", async () => {
  await withDir(async (dir) => {
    const v = await walrust(["version"], { cwd: dir });
    assert.equal(v.code, 0);
    assert.equal(v.stdout, (await walrust(["--version"], { cwd: dir })).stdout);
    const h = await walrust(["help", "replicate"], { cwd: dir });
    assert.equal(h.code, 0);
    assert.match(h.stdout, /^Usage: walrust replicate/);
    assert.match(h.stdout, /--exec CMD/);
    assert.equal((await walrust(["replicate", "-help"], { cwd: dir })).stdout, h.stdout);
    assert.match((await walrust(["--help"], { cwd: dir })).stdout, /\bdatabases\b/);

    for (
      const [args, want] of [
        [["restor", "x"], /unknown command "restor" \(did you mean restore\?/],
        [["replciate"], /did you mean replicate\?/],
        [["databse"], /did you mean databases\?/],
        [["help", "restor"], /did you mean restore\?/],
        [["status"], /"status" is a Litestream command walrust does not have/],
        [["frobnicate"], /^error: unknown command "frobnicate" \(see 'walrust --help'\)$/],
      ] as const
    ) {
      const r = await walrust([...args], { cwd: dir });
      assert.equal(r.code, 2, args.join(" "));
      assert.match(oneLine(r.stderr), want);
    }

    // databases: the config's databases (a glob expanded) with their replica.
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/a.db`, "");
    await Deno.writeTextFile(
      `${dir}/cfg.toml`,
      `[s3]\nbucket = "file://${dir}/rep"\n\n[[databases]]\npath = "app.db"\n\n` +
        `[[databases]]\npath = "sub/*.db"\nprefix = "x-{name}"\n`,
    );
    const j = await walrust(["databases", "-config=cfg.toml", "-json"], { cwd: dir });
    assert.equal(j.code, 0, j.stderr);
    assert.deepEqual(JSON.parse(j.stdout), [
      { path: `${dir}/app.db`, replica: "file", name: "app.db", url: `file://${dir}/rep/app.db` },
      {
        path: `${dir}/sub/a.db`,
        replica: "file",
        name: "x-a.db",
        url: `file://${dir}/rep/x-a.db`,
      },
    ]);
    const t = await walrust(["databases", "-config", `${dir}/cfg.toml`], { cwd: dir });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout.split("\n")[0], /^path\s+replica\s+name\s+url$/);
    assert.match(t.stdout, new RegExp(`${dir}/sub/a\\.db\\s+file\\s+x-a\\.db`));
  });
});

Deno.test("single-dash flags (-config, -o, -txid, -timestamp, -flag=value) work; unknown ones are our one line", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    const url = `file://${dir}/rep/app.db`;
    await appDb(db, 1);
    await syncOnce(dir, db, url);
    await new Promise((r) => setTimeout(r, 50));
    const between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 50));
    await cliSql(db, sequentialInsert(2));
    await syncOnce(dir, db, url);

    // Node's parser used to answer `-timestamp` with "Unknown option '-t'".
    const bad = await walrust(["restore", "-timestamp", "yesterday", "-o", `${dir}/x.db`, url], {
      cwd: dir,
    });
    assert.equal(bad.code, 2);
    assert.match(oneLine(bad.stderr), /^error: invalid point in time "yesterday"/);
    for (
      const [args, want] of [
        [
          ["restore", "-bogus", url],
          /^error: restore: unknown flag -bogus \(see 'walrust help restore'\)$/,
        ],
        [["restore", "-timestmp=x", url], /unknown flag -timestmp \(did you mean -timestamp\?\)/],
        [["replicate", "--nope"], /^error: replicate: unknown flag --nope/],
        [["ltx", "-lvl", "9", url], /^error: ltx: unknown flag -lvl/],
        [["restore", "-force=maybe", url], /-force is a switch/],
        [["restore", url, "-o"], /-o needs a value/],
      ] as const
    ) {
      const r = await walrust([...args], { cwd: dir });
      assert.equal(r.code, 2, args.join(" "));
      const line = oneLine(r.stderr);
      assert.match(line, want);
      assert.doesNotMatch(line, /Unknown option|ERR_PARSE_ARGS/);
    }

    // -txid with Litestream's 16 hex digits, -o=OUT, -parallelism: TXID 1 has one row.
    const one = `${dir}/one.db`;
    const t = await walrust(
      ["restore", "-txid=0000000000000001", `-o=${one}`, "-parallelism", "8", url],
      { cwd: dir },
    );
    assert.equal(t.code, 0, t.stderr);
    assert.equal(await rowCount(one), 1);
    // -timestamp between the two syncs: the first state.
    const ts = `${dir}/ts.db`;
    const r = await walrust(["restore", "-timestamp", between, "-o", ts, url], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await rowCount(ts), 1);
    // -force=false keeps the refusal, -force=true replaces; -json answers in JSON.
    assert.equal((await walrust(["restore", "-force=false", "-o", ts, url], { cwd: dir })).code, 6);
    const f = await walrust(["restore", "-force=true", "-json", "-o", ts, url], { cwd: dir });
    assert.equal(f.code, 0, f.stderr);
    assert.equal(JSON.parse(f.stdout).txid, "0000000000000002");
    assert.equal(await rowCount(ts), 2);
    // -config before or after the command, in both spellings.
    await Deno.writeTextFile(`${dir}/c.toml`, `[s3]\nbucket = "file://${dir}/rep"\n`);
    const dry = await walrust(["-config", "c.toml", "restore", "-dry-run", "-json", "app.db"], {
      cwd: dir,
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(JSON.parse(dry.stdout).txid, "0000000000000002");
    const dry2 = await walrust(["restore", "app.db", "-dry-run", "-config=c.toml"], { cwd: dir });
    assert.equal(dry2.code, 0, dry2.stderr);
    assert.match(dry2.stdout, /TXID 2/);
  });
});

Deno.test("restore -o OUT DB_PATH goes through the config; -o OUT REPLICA_URL splits the URL; ltx lists files", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const db = `${dir}/data/app.db`;
    await appDb(db, 5);
    // replicate DB_PATH REPLICA_URL: the URL's last segment is the name in the replica.
    await syncOnce(dir, db, `file://${dir}/rep/prod/main`);
    const source = await dumpContent(db);
    assert.ok(await pathExists(`${dir}/rep/prod/main/ltx/9`), "the name comes from the URL");

    const byUrl = `${dir}/by-url.db`;
    const u = await walrust(["restore", "-o", byUrl, `file://${dir}/rep/prod/main`], { cwd: dir });
    assert.equal(u.code, 0, u.stderr);
    assert.equal(await dumpContent(byUrl), source);

    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[s3]\nbucket = "file://${dir}/rep/prod"\n\n[[databases]]\npath = "data/app.db"\nprefix = "main"\n`,
    );
    // A relative DB_PATH from the working directory, and an absolute one.
    for (const arg of ["./data/app.db", db]) {
      const out = `${dir}/by-path-${arg.length}.db`;
      const p = await walrust(["restore", "-o", out, arg], { cwd: dir });
      assert.equal(p.code, 0, p.stderr);
      assert.equal(await dumpContent(out), source);
    }
    // Without -o, DB_PATH itself is the output (Litestream's rule).
    for (const f of [db, `${db}-wal`, `${db}-shm`]) await Deno.remove(f).catch(() => {});
    const self = await walrust(["restore", "data/app.db"], { cwd: dir });
    assert.equal(self.code, 0, self.stderr);
    assert.equal(await dumpContent(db), source);

    // ltx DB_PATH / REPLICA_URL: Litestream's listing (level 0 by default, -level all).
    const l0 = await walrust(["ltx", "data/app.db"], { cwd: dir });
    assert.equal(l0.code, 0, l0.stderr);
    const rows = l0.stdout.trim().split("\n");
    assert.match(rows[0], /^level\s+min_txid\s+max_txid\s+size\s+created$/);
    assert.ok(rows.length > 1 && rows.slice(1).every((r) => r.startsWith("0 ")), l0.stdout);
    const all = await walrust(["ltx", "-level", "all", "-json", `file://${dir}/rep/prod/main`], {
      cwd: dir,
    });
    assert.equal(all.code, 0, all.stderr);
    const files = JSON.parse(all.stdout) as { level: number; min_txid: string }[];
    assert.ok(files.some((f) => f.level === 9 && f.min_txid === "0000000000000001"));
    assert.ok(files.some((f) => f.level === 0));

    // Paths the config does not list, and URLs without -o or without a name.
    const notListed = await walrust(["restore", "-o", `${dir}/n.db`, "/elsewhere/app.db"], {
      cwd: dir,
    });
    assert.equal(notListed.code, 2);
    assert.match(oneLine(notListed.stderr), /is not listed in \[\[databases\]\] of/);
    const noOut = await walrust(["restore", `file://${dir}/rep/prod/main`], { cwd: dir });
    assert.equal(noOut.code, 2);
    assert.match(oneLine(noOut.stderr), /-o OUT is required with a replica URL/);
    const noName = await walrust(["restore", "-o", `${dir}/n.db`, "s3://bucket"], { cwd: dir });
    assert.equal(noName.code, 2);
    assert.match(oneLine(noName.stderr), /names no database/);
  });
});

Deno.test("restore -if-db-not-exists and -if-replica-exists: exit 0 only for an existing db / no backup at all", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    const url = `file://${dir}/rep/app.db`;
    await appDb(db, 3);
    await syncOnce(dir, db, url);

    // An existing output: untouched and exit 0 with the flag; refused (exit 6) without.
    const out = `${dir}/out.db`;
    await Deno.writeTextFile(out, "not a database");
    const skip = await walrust(["restore", "-if-db-not-exists", "-o", out, url], { cwd: dir });
    assert.equal(skip.code, 0, skip.stderr);
    assert.match(skip.stderr, /already exists; nothing restored/);
    assert.equal(await Deno.readTextFile(out), "not a database");
    const json = await walrust(["restore", "--if-db-not-exists", "--json", "-o", out, url], {
      cwd: dir,
    });
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout).skipped, "db_exists");
    assert.equal((await walrust(["restore", "-o", out, url], { cwd: dir })).code, 6);

    // No backup at all: exit 0 and nothing written with the flag; exit 6 without.
    const none = `file://${dir}/rep/none.db`;
    const fresh = `${dir}/fresh.db`;
    const r = await walrust(["restore", "-if-replica-exists", "-o", fresh, none], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no backup of none\.db/);
    assert.equal(await pathExists(fresh), false);
    assert.equal((await walrust(["restore", "-o", fresh, none], { cwd: dir })).code, 6);
    const emptyRoot = `file://${dir}/never-created/app.db`;
    const e = await walrust(["restore", "-if-replica-exists", "-o", fresh, emptyRoot], {
      cwd: dir,
    });
    assert.equal(e.code, 0, e.stderr);
    // A backup that exists but cannot give the target is still a failure.
    const past = await walrust(
      ["restore", "-if-replica-exists", "-txid", "00000000000000ff", "-o", fresh, url],
      { cwd: dir },
    );
    assert.equal(past.code, 6, past.stderr);
    assert.equal(await pathExists(fresh), false);

    // The container entrypoint: first start (no db, no backup) exits 0; later starts restore
    // when the db is missing and leave an existing db alone.
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[s3]\nbucket = "file://${dir}/rep2"\n\n[[databases]]\npath = "live.db"\n`,
    );
    const entry = ["restore", "-if-db-not-exists", "-if-replica-exists", "live.db"];
    const first = await walrust(entry, { cwd: dir });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await pathExists(`${dir}/live.db`), false);
    await appDb(`${dir}/live.db`, 4);
    const rep = await walrust(["replicate", "-once", ...FAST], { cwd: dir });
    assert.equal(rep.code, 0, rep.stderr);
    const source = await dumpContent(`${dir}/live.db`);
    const kept = await walrust(entry, { cwd: dir });
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stderr, /already exists/);
    for (const f of ["live.db", "live.db-wal", "live.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    const restored = await walrust(entry, { cwd: dir });
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(await dumpContent(`${dir}/live.db`), source);
  });
});

const S3 = await requireS3OrSkip();

Deno.test({
  name: "s3: LITESTREAM_ACCESS_KEY_ID/SECRET are used when AWS_* are unset; AWS_* win when set",
  ignore: !S3,
  async fn() {
    const cfg = S3!;
    const prefix = uniquePrefix();
    const url = `s3://${cfg.bucket}/${prefix}app.db`;
    const base = {
      AWS_ENDPOINT_URL_S3: cfg.endpoint,
      AWS_REGION: cfg.region,
      // No other source of credentials: empty AWS_* keys, no shared files.
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials",
      AWS_CONFIG_FILE: "/nonexistent/config",
    };
    const litestream = {
      ...base,
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      LITESTREAM_ACCESS_KEY_ID: cfg.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: cfg.secretAccessKey,
    };
    const wrong = { ...litestream, LITESTREAM_SECRET_ACCESS_KEY: "not-the-secret" };
    try {
      await withDir(async (dir) => {
        const db = `${dir}/app.db`;
        await appDb(db, 3);
        await syncOnce(dir, db, url, litestream);
        const source = await dumpContent(db);
        const out = `${dir}/out.db`;
        const r = await walrust(["restore", "-o", out, url], { cwd: dir, env: litestream });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await dumpContent(out), source);
        // The LITESTREAM_* keys are what signs the requests: a wrong secret is rejected.
        const bad = await walrust(["restore", "-o", `${dir}/bad.db`, url], {
          cwd: dir,
          env: wrong,
        });
        assert.equal(bad.code, 4, bad.stderr);
        // AWS_* set: they win over LITESTREAM_* (Litestream copies only into unset ones).
        const aws = {
          ...wrong,
          AWS_ACCESS_KEY_ID: cfg.accessKeyId,
          AWS_SECRET_ACCESS_KEY: cfg.secretAccessKey,
        };
        const ok = await walrust(["restore", "-o", `${dir}/aws.db`, url], { cwd: dir, env: aws });
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(await dumpContent(`${dir}/aws.db`), source);
      });
    } finally {
      const s3 = await openS3Storage(s3Options(cfg));
      const keys: string[] = [];
      for await (const o of s3.list(prefix)) keys.push(o.key);
      await s3.delete(keys);
      await s3.close();
    }
  },
});

/** The exit code of `p`, failing the test (instead of hanging it) after `ms`. */
async function exitWithin(p: WalrustProcess, ms = 30_000): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`walrust still running after ${ms} ms:\n${p.stderr}`)),
      ms,
    );
  });
  try {
    return await Promise.race([p.wait(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stop the -exec child's process group (its own session: walrust's death leaves it running, and
 * it holds walrust's stdout/stderr open), then walrust.
 */
async function stopAll(p: WalrustProcess): Promise<void> {
  const m = /started the exec process pid=(\d+)/.exec(p.stderr);
  if (m) {
    try {
      Deno.kill(-Number(m[1]), "SIGKILL");
    } catch { /* already gone */ }
  }
  p.kill("SIGKILL");
  await p.wait();
}

Deno.test("replicate without -exec keeps replicating until a signal, like watch", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    await appDb(db, 1);
    const p = new WalrustProcess(["replicate", ...FAST, db, `file://${dir}/rep/app.db`], {
      cwd: dir,
    });
    try {
      await p.waitFor("watching");
      for (let i = 2; i <= 6; i++) {
        await cliSql(db, sequentialInsert(i));
        // Each commit reaches the replica: the process did not stop after starting.
        await waitCaughtUp(db, `${dir}/rep`, "app.db");
      }
      p.kill("SIGTERM");
      assert.equal(await exitWithin(p), 0, p.stderr);
    } finally {
      await stopAll(p);
    }
    const out = `${dir}/out.db`;
    assert.equal((await walrust(["restore", "-o", out, `file://${dir}/rep/app.db`])).code, 0);
    assert.equal(await rowCount(out), 6);
  });
});

/** A shell script that inserts rows `from..to`, one sqlite3 process and transaction each. */
function writerScript(db: string, from: number, to: number, pause = 0): string {
  const lines = [];
  for (let i = from; i <= to; i++) {
    const sql = sequentialInsert(i, "child").replaceAll("'", "'\\''");
    lines.push(`sqlite3 -bail -cmd '.timeout 5000' '${db}' '${sql}' || exit 90`);
    if (pause) lines.push(`sleep ${pause}`);
  }
  return lines.join("\n") + "\n";
}

Deno.test("replicate -exec: the child's exit code is walrust's, and every row it committed is in the replica", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    const url = `file://${dir}/rep/app.db`;
    await createAppDb(db);
    await Deno.writeTextFile(`${dir}/child.sh`, writerScript(db, 1, 40) + "exit 3\n");
    const r = await walrust(["replicate", "-exec", "sh child.sh", ...FAST, db, url], { cwd: dir });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /started the exec process/);
    const out = `${dir}/out.db`;
    assert.equal((await walrust(["restore", "-o", out, url], { cwd: dir })).code, 0);
    assert.equal(await rowCount(out), 40);
    assert.equal(await dumpContent(out), await dumpContent(db));

    // A compound command whose shell exits at once while its background job still writes:
    // walrust waits for the whole process group, and keeps the shell's exit code.
    const db2 = `${dir}/bg.db`;
    const url2 = `file://${dir}/rep/bg.db`;
    await createAppDb(db2);
    await Deno.writeTextFile(`${dir}/bg.sh`, "sleep 0.3\n" + writerScript(db2, 1, 15, 0.02));
    const b = await walrust(["watch", "--exec", "sh bg.sh & exit 5", ...FAST, db2, url2], {
      cwd: dir,
    });
    assert.equal(b.code, 5, b.stderr);
    const out2 = `${dir}/out2.db`;
    assert.equal((await walrust(["restore", "-o", out2, url2], { cwd: dir })).code, 0);
    assert.equal(await rowCount(out2), 15);
    assert.equal(await dumpContent(out2), await dumpContent(db2));

    // A child killed by a signal: 128 + the signal number.
    const k = await walrust(["replicate", "-exec", "kill -KILL $$", ...FAST, db, url], {
      cwd: dir,
    });
    assert.equal(k.code, 137, k.stderr);
    const once = await walrust(["replicate", "-once", "-exec", "true", ...FAST, db, url], {
      cwd: dir,
    });
    assert.equal(once.code, 2);
    assert.match(oneLine(once.stderr), /--once cannot be used with --exec/);
  });
});

Deno.test("replicate -exec: SIGTERM to walrust reaches the child; what it commits on the way out is replicated", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    const url = `file://${dir}/rep/app.db`;
    await appDb(db, 2);
    // The child traps TERM, commits one more row, leaves a marker and exits 42.
    await Deno.writeTextFile(`${dir}/last.sql`, sequentialInsert(99, "on-term") + ";\n");
    await Deno.writeTextFile(
      `${dir}/trap.sh`,
      `trap 'sqlite3 -cmd ".timeout 5000" app.db < last.sql; echo term > marker; exit 42' TERM\n` +
        `touch started\nwhile :; do sleep 0.05; done\n`,
    );
    const p = new WalrustProcess(["replicate", "-exec", "sh trap.sh", ...FAST, db, url], {
      cwd: dir,
    });
    try {
      const deadline = Date.now() + 30_000;
      while (!(await pathExists(`${dir}/started`))) {
        assert.ok(Date.now() < deadline, `child never started:\n${p.stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      p.kill("SIGTERM");
      assert.equal(await exitWithin(p), 42, p.stderr);
    } finally {
      await stopAll(p);
    }
    assert.equal(await Deno.readTextFile(`${dir}/marker`), "term\n");
    assert.match(p.stderr, /forwarding the signal to the exec process/);
    const out = `${dir}/out.db`;
    assert.equal((await walrust(["restore", "-o", out, url], { cwd: dir })).code, 0);
    assert.equal(await rowCount(out), 3);
    assert.equal(await dumpContent(out), await dumpContent(db));
  });
});

Deno.test("replicate -exec: replication failing first stops the child and exits with walrust's code", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    await appDb(db, 1);
    const p = new WalrustProcess(
      ["replicate", "-exec", "sleep 60", ...FAST, db, `file://${dir}/rep/app.db`],
      { cwd: dir },
    );
    let pid = 0;
    try {
      await p.waitFor(/started the exec process pid=(\d+)/);
      pid = Number(/started the exec process pid=(\d+)/.exec(p.stderr)![1]);
      for (const f of [db, `${db}-wal`, `${db}-shm`]) await Deno.remove(f).catch(() => {});
      assert.equal(await exitWithin(p), 3, p.stderr);
    } finally {
      await stopAll(p);
    }
    assert.match(p.stderr, /replication failed; stopping the exec process/);
    // The child is gone (or a zombie waiting for its new parent to reap it).
    let state = "gone";
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    } catch { /* gone */ }
    assert.ok(state === "gone" || state === "Z", `exec child ${pid} still running (${state})`);
  });
});

Deno.test("a litestream.yml as-is: restore DB_PATH, ltx DB_PATH, and its exec: runs the app under replicate", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    await createAppDb(db);
    await Deno.writeTextFile(`${dir}/child.sh`, writerScript(db, 1, 10) + "exit 4\n");
    await Deno.writeTextFile(
      `${dir}/litestream.yml`,
      `exec: sh ${dir}/child.sh\ndbs:\n  - path: ${db}\n    replica:\n` +
        `      url: file://${dir}/rep/app.db\n      sync-interval: 50ms\n`,
    );
    const r = await walrust(["replicate", "-config", "litestream.yml", "--no-metrics"], {
      cwd: dir,
    });
    assert.equal(r.code, 4, r.stderr);
    const out = `${dir}/out.db`;
    const res = await walrust(["restore", "-config", "litestream.yml", "-o", out, db], {
      cwd: dir,
    });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await rowCount(out), 10);
    assert.equal(await dumpContent(out), await dumpContent(db));
    const l = await walrust(["ltx", "-config", "litestream.yml", "-level", "9", db], { cwd: dir });
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /^9\s+0000000000000001\s/m);
  });
});

Deno.test("-no-expand-env reads $ in the config as written; without it $VAR expands", async () => {
  await withDir(async (dir) => {
    // A file whose name has a literal $ in it.
    const db = `${dir}/a$b.db`;
    await appDb(db, 2);
    const cfg = `${dir}/litestream.yml`;
    await Deno.writeTextFile(
      cfg,
      `dbs:\n  - path: ${db}\n    replica:\n      type: file\n      path: ${dir}/rep/a$b.db\n`,
    );
    const env = { b: "" };
    const expanded = await walrust(["replicate", "-config", cfg, "-once", ...FAST], {
      cwd: dir,
      env,
    });
    assert.equal(expanded.code, 3, expanded.stderr);
    assert.match(oneLine(expanded.stderr), /a\.db/);
    for (const flag of ["-no-expand-env", "--no-expand-env"]) {
      const r = await walrust(["replicate", flag, "-config", cfg, "-once", ...FAST], {
        cwd: dir,
        env,
      });
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok(await pathExists(`${dir}/rep/a$b.db/ltx/0`));
    const out = `${dir}/out.db`;
    const r = await walrust(["restore", "-no-expand-env", "-config", cfg, "-o", out, db], {
      cwd: dir,
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await dumpContent(out), await dumpContent(db));
    assert.equal(await rowCount(out), 2);
  });
});

Deno.test("replicate -once -force-snapshot / -enforce-retention, and -restore-if-db-not-exists", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/app.db`;
    const root = `${dir}/rep`;
    const url = `file://${root}/app.db`;
    await appDb(db, 2);
    // A long-lived app connection: the WAL stays, so only the flag makes a new snapshot.
    const app = await SqliteWriter.start(db);
    try {
      for (const flag of ["-force-snapshot", "-enforce-retention"]) {
        const r = await walrust(["replicate", flag, ...FAST, db, url], { cwd: dir });
        assert.equal(r.code, 2, r.stderr);
        assert.match(oneLine(r.stderr), new RegExp(`--${flag.slice(1)} needs --once`));
      }
      await syncOnce(dir, db, url);
      const snapshots = () =>
        [...Deno.readDirSync(`${root}/app.db/ltx/9`)].map((e) => e.name)
          .filter((n) => /^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(n));
      const before = snapshots();
      await app.exec(sequentialInsert(3));
      await syncOnce(dir, db, url);
      assert.deepEqual(snapshots(), before, "a plain -once takes no snapshot");
      await app.exec(sequentialInsert(4));
      const forced = await walrust(["replicate", "-once", "-force-snapshot", ...FAST, db, url], {
        cwd: dir,
      });
      assert.equal(forced.code, 0, forced.stderr);
      assert.equal(
        snapshots().length,
        before.length + 1,
        `${before} -> ${snapshots()}\n${forced.stderr}`,
      );

      // Retention that keeps one snapshot per hour: the older ones of this hour go.
      await Deno.writeTextFile(
        `${dir}/walrust.toml`,
        `[retention]\nenabled = false\npitr_window = "1s"\nhourly = 1\ndaily = 1\nweekly = 1\n` +
          `monthly = 1\n`,
      );
      await new Promise((r) => setTimeout(r, 1100)); // the PITR window must pass the older ones
      await app.exec(sequentialInsert(5));
      const plain = await walrust(["replicate", "-once", "-force-snapshot", ...FAST, db, url], {
        cwd: dir,
      });
      assert.equal(plain.code, 0, plain.stderr);
      assert.ok(snapshots().length >= 3, "retention disabled: -once alone deletes nothing");
      const pruned = await walrust(
        ["replicate", "-once", "-enforce-retention", ...FAST, db, url],
        { cwd: dir },
      );
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.match(pruned.stderr, /retention .*deleted=[1-9]/);
      // Kept: the newest, and the one the 1 s PITR window starts from.
      const kept = snapshots().sort();
      assert.equal(kept.length, 2, kept.join(" "));
    } finally {
      await app.close();
    }
    const source = await dumpContent(db);

    // -restore-if-db-not-exists: the missing database comes back before replication starts.
    for (const f of ["app.db", "app.db-wal", "app.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    await Deno.remove(`${dir}/.app.db-walrust`, { recursive: true });
    const back = await walrust([
      "replicate",
      "-once",
      "-restore-if-db-not-exists",
      ...FAST,
      db,
      url,
    ], {
      cwd: dir,
    });
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stderr, /restored a missing database/);
    assert.equal((await cliSql(db, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal(await dumpContent(db), source);
    // An existing database is left alone; no backup at all is a first start (then: not found).
    const again = await walrust([
      "replicate",
      "-once",
      "-restore-if-db-not-exists",
      ...FAST,
      db,
      url,
    ], {
      cwd: dir,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /restored a missing/);
    const none = await walrust(
      [
        "replicate",
        "-once",
        "-restore-if-db-not-exists",
        ...FAST,
        `${dir}/new.db`,
        `file://${root}/new.db`,
      ],
      { cwd: dir },
    );
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /no backup of a missing database/);
  });
});
