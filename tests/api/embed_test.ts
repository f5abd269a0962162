/**
 * An embedding program's view: everything comes from mod.ts (the test helpers only drive the
 * application's writes and compare content). Two replications in one process, start → stop →
 * start, restore of both, and the typed errors.
 */
import assert from "node:assert/strict";
import {
  ConfigError,
  DatabaseError,
  Logger,
  replicate,
  restore,
  RestoreError,
  snapshot,
} from "../../mod.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { assertHoldsLocks } from "../helpers/proc.ts";

const quiet = new Logger({ level: "error" });

Deno.test("replicate two databases under writes, stop, restore both: each equals its source", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-embed-" });
  const bucket = `file://${dir}/backups`;
  const a = await SqliteWriter.start(`${dir}/a.db`);
  const b = await SqliteWriter.start(`${dir}/b.db`);
  try {
    await a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    await b.exec("CREATE TABLE u (id INTEGER PRIMARY KEY, v BLOB)");
    const r = await replicate({
      databases: [`${dir}/a.db`, { path: `${dir}/b.db`, name: "bee.db" }],
      bucket,
      sync: { walSyncIntervalMs: 50 },
      log: quiet,
    });
    const synced = new Set<string>();
    r.on("sync", (e) => synced.add(e.database));
    for (let i = 0; i < 30; i++) {
      await a.exec(`INSERT INTO t (v) VALUES ('a${i}')`);
      await b.exec(`INSERT INTO u (v) VALUES (randomblob(${100 + i * 50}))`);
    }
    const snap = await r.snapshot(`${dir}/a.db`);
    assert.ok(snap.txid > 0);
    assert.equal(r.status().length, 2);
    assert.ok(await r.stop(), "everything uploaded");
    assert.deepEqual([...synced].sort(), ["a.db", "bee.db"]);
    for (const s of r.status()) assert.equal(s.replicaTXID, s.txid, `${s.name} is all up`);

    const ra = await restore({ name: "a.db", output: `${dir}/a-restored.db`, bucket });
    const rb = await restore({ name: "bee.db", output: `${dir}/b-restored.db`, bucket });
    assert.ok(ra.txid > 0 && rb.txid > 0);
    assert.equal(await dumpContent(`${dir}/a-restored.db`), await dumpContent(`${dir}/a.db`));
    assert.equal(await dumpContent(`${dir}/b-restored.db`), await dumpContent(`${dir}/b.db`));
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start, stop, start in one process: stop gives every lock back, the second run continues", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-embed-" });
  const db = `${dir}/app.db`;
  const bucket = `file://${dir}/backups`;
  const w = await SqliteWriter.start(db);
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const opts = { databases: [db], bucket, sync: { walSyncIntervalMs: 50 }, log: quiet };
    let r = await replicate(opts);
    await w.exec("INSERT INTO t (v) VALUES ('first run')");
    await r.stop();
    // Stopped: no watcher lock (another replication may start) and no read lock pinning the
    // WAL (the app's TRUNCATE checkpoint goes through); the idle connections stay open.
    const ck = await w.checkpoint("TRUNCATE");
    assert.equal(ck.busy, 0, "nothing pins the WAL after stop()");
    await w.exec("INSERT INTO t (v) VALUES ('while stopped')");

    r = await replicate(opts);
    await w.exec("INSERT INTO t (v) VALUES ('second run')");
    const { txid } = await snapshot({ path: db }); // through this process's own replication
    assert.ok(txid > 0);
    await assertHoldsLocks(Deno.pid, db, "second run");
    await assert.rejects(replicate(opts), ConfigError, "a second replication of the same file");
    await r.stop();
    const out = `${dir}/restored.db`;
    await restore({ name: "app.db", output: out, bucket });
    assert.equal(await dumpContent(out), await dumpContent(db));
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two replications in one process (different databases and replicas) run side by side", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-embed-" });
  const writers = await Promise.all(["x", "y"].map((n) => SqliteWriter.start(`${dir}/${n}.db`)));
  try {
    for (const w of writers) await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const [rx, ry] = await Promise.all(["x", "y"].map((n) =>
      replicate({
        databases: [`${dir}/${n}.db`],
        bucket: `file://${dir}/backups-${n}`,
        sync: { walSyncIntervalMs: 50 },
        log: quiet,
      })
    ));
    for (let i = 0; i < 10; i++) {
      for (const w of writers) await w.exec(`INSERT INTO t (v) VALUES ('${i}')`);
    }
    assert.ok(await rx.stop());
    await writers[1].exec("INSERT INTO t (v) VALUES ('y goes on after x stopped')");
    assert.ok(await ry.stop());
    for (const n of ["x", "y"]) {
      const out = `${dir}/${n}-restored.db`;
      await restore({ name: `${n}.db`, output: out, bucket: `file://${dir}/backups-${n}` });
      assert.equal(await dumpContent(out), await dumpContent(`${dir}/${n}.db`));
    }
  } finally {
    for (const w of writers) await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("library errors are the typed classes with the CLI's exit codes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-embed-" });
  try {
    await assert.rejects(
      replicate({ databases: [`${dir}/nope.db`], bucket: `file://${dir}/b`, log: quiet }),
      DatabaseError,
    );
    const e = await restore({
      name: "nothing.db",
      output: `${dir}/x.db`,
      bucket: `file://${dir}/b`,
    })
      .catch((err) => err);
    assert.ok(e instanceof RestoreError, String(e));
    assert.equal(e.exitCode, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the README's library example type-checks against mod.ts", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("## Library"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code, "README has a ```ts block under ## Library");
  const dir = await Deno.makeTempDir({ prefix: "walrust-readme-" });
  try {
    const mod = new URL("../../mod.ts", import.meta.url).href;
    const file = `${dir}/example.ts`;
    await Deno.writeTextFile(file, code.replaceAll(/from "[^"]*mod\.ts"/g, `from "${mod}"`));
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", "--config", config, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
