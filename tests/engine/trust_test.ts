/**
 * Issue 7's refusals and file-change rules, each against real processes: a second watcher through
 * another name, snapshot to another replica, files replaced or deleted under a running watcher,
 * and the app's last connection closing while walrust holds the database.
 */
import assert from "node:assert/strict";
import { dumpContent, runSql, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess, watchArgs } from "../helpers/walrust.ts";
import { replicaFiles, restoreAndDump, waitCaughtUp } from "../helpers/replica.ts";
import { Replicator, UploadPool } from "../../src/engine/db.ts";
import { openReplica } from "../../src/storage/open.ts";
import { resolveSync } from "../../src/config/schema.ts";
import { Logger } from "../../src/observe/log.ts";
import { ConfigError } from "../../src/errors.ts";
import { rejects } from "../helpers/vectors.ts";
import { assertHoldsLocks } from "../helpers/proc.ts";

const SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "walrust-trust-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  await runSql(db, `${SCHEMA}; INSERT INTO t (v) VALUES ('first');`);
  return { dir, db, root, bucket: `file://${root}` };
}

Deno.test("a second watcher on the same database through a symlink or a hard link is refused (exit 2)", async () => {
  const { dir, db, bucket } = await setup();
  await Deno.symlink(db, `${dir}/sym.db`);
  await Deno.link(db, `${dir}/hard.db`);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    for (const other of [`${dir}/sym.db`, `${dir}/hard.db`]) {
      const r = await walrust(["watch", other, "--bucket", `file://${dir}/other`, "--once"]);
      assert.equal(r.code, 2, `${other}: ${r.stderr}`);
      assert.match(r.stderr, /already replicating/);
    }
  } finally {
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("in one process, a second replication of the same file under another name is refused", async () => {
  const { dir, db, bucket } = await setup();
  await Deno.link(db, `${dir}/hard.db`);
  const replica = await openReplica(bucket);
  const opts = (dbPath: string) => ({
    dbPath,
    prefix: "app.db",
    replica,
    sync: resolveSync({ onStartup: false }),
    pool: new UploadPool(1),
    log: new Logger({ level: "error" }),
  });
  const r = await Replicator.open(opts(db));
  try {
    await rejects(() => Replicator.open(opts(`${dir}/hard.db`)), ConfigError, "already");
  } finally {
    // Let the background uploads finish first: they write into the folder removed below.
    await r.drainUploads(Date.now() + 20_000);
    await r.stop();
    r.release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the app's last connection closing while walrust holds the database keeps the WAL and walrust's locks", async () => {
  const { dir, db, bucket } = await setup();
  const replica = await openReplica(bucket);
  const r = await Replicator.open({
    dbPath: db,
    prefix: "app.db",
    replica,
    sync: resolveSync({ onStartup: false }),
    pool: new UploadPool(1),
    log: new Logger({ level: "error" }),
  });
  try {
    for (let i = 0; i < 5; i++) {
      await runSql(db, `INSERT INTO t (v) VALUES ('close ${i}')`); // opens, writes, closes
      await r.sync();
      await Deno.stat(`${db}-wal`); // still there: our connections count as connections
      await assertHoldsLocks(Deno.pid, db, `after close ${i}`); // the database and the -shm
    }
    await r.checkpoint("TRUNCATE");
    await runSql(db, `INSERT INTO t (v) VALUES ('after truncate')`);
    await r.sync();
    assert.equal(r.stats.checksumMismatches, 0);
  } finally {
    await r.stop();
  }
  assert.equal(await drainAndDump(r, bucket, dir), await dumpContent(db));
  await Deno.remove(dir, { recursive: true });
});

async function drainAndDump(r: Replicator, bucket: string, dir: string): Promise<string> {
  assert.ok(await r.drainUploads(Date.now() + 20_000), "uploads drained");
  return await restoreAndDump(bucket, "app.db", `${dir}/restored.db`);
}

Deno.test("snapshot through a running watcher answers after the upload with its TXID; another replica is refused (exit 2)", async () => {
  const { dir, db, root, bucket } = await setup();
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    const wrong = await walrust(["snapshot", db, "--bucket", `file://${dir}/elsewhere`]);
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(wrong.stderr, /running watcher/);
    await assert.rejects(Deno.stat(`${dir}/elsewhere`), Deno.errors.NotFound);

    await runSql(db, "INSERT INTO t (v) VALUES ('before the snapshot')");
    const r = await walrust(["snapshot", db, "--timeout", "20"]);
    assert.equal(r.code, 0, r.stderr);
    const txid = Number(/at TXID (\d+)/.exec(r.stdout)?.[1]);
    assert.ok(txid > 0, r.stdout);
    // When the command returns the snapshot is already in the replica.
    const snaps = (await replicaFiles(root, "app.db")).filter((f) => f.level === 9);
    assert.ok(snaps.some((f) => f.maxTXID === txid), JSON.stringify(snaps));
  } finally {
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database replaced under a running watcher is re-opened with one warning and a snapshot", async () => {
  const { dir, db, root, bucket } = await setup();
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    await runSql(db, "INSERT INTO t (v) VALUES ('old database')");
    await waitCaughtUp(db, root, "app.db");
    // A deploy puts another database in place (with its sidecars gone, as a restore does).
    const other = `${dir}/new.db`;
    await runSql(other, `${SCHEMA}; INSERT INTO t (v) VALUES ('new database');`);
    await Deno.remove(`${db}-wal`);
    await Deno.remove(`${db}-shm`);
    await Deno.rename(other, db);
    await runSql(db, "INSERT INTO t (v) VALUES ('written after the swap')");
    await watch.waitFor("database file was replaced");
    await waitCaughtUp(db, root, "app.db");
    assert.equal(await restoreAndDump(bucket, "app.db", `${dir}/r.db`), await dumpContent(db));
    assert.equal((watch.stderr.match(/database file was replaced; re-opening/g) ?? []).length, 1);
  } finally {
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database deleted under a running watcher stops it with exit 3, saying so", async () => {
  const { dir, db, bucket } = await setup();
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    for (const f of [db, `${db}-wal`, `${db}-shm`]) await Deno.remove(f);
    assert.equal(await watch.wait(), 3, watch.stderr);
    assert.match(watch.stderr, /was deleted/);
  } finally {
    watch.kill("SIGKILL");
    await watch.wait();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a -wal deleted under a running watcher (same database file) stops it with exit 3", async () => {
  const { dir, db, bucket } = await setup();
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await watch.waitFor("replicating");
    await Deno.remove(`${db}-wal`);
    await w.exec("INSERT INTO t (v) VALUES ('into a new wal')");
    assert.equal(await watch.wait(), 3, watch.stderr);
    assert.match(watch.stderr, /-wal file was deleted or replaced/);
  } finally {
    watch.kill("SIGKILL");
    await watch.wait();
    await w.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("in process: the start-up decision follows the replica (empty → snapshot, ahead → above it, same → resume)", async () => {
  const { dir, db, bucket } = await setup();
  const log = new Logger({ level: "error" });
  const start = async (b: string) =>
    await Replicator.open({
      dbPath: db,
      prefix: "app.db",
      replica: await openReplica(b),
      sync: resolveSync({}),
      pool: new UploadPool(1),
      log,
    });
  const stop = async (r: Replicator) => {
    assert.ok(await r.drainUploads(Date.now() + 20_000));
    await r.stop();
    r.release();
  };
  try {
    let r = await start(bucket);
    await runSql(db, "INSERT INTO t (v) VALUES ('one')");
    await r.sync();
    const first = r.txid;
    await stop(r);

    // The same replica: resume from the position record, no snapshot.
    r = await start(bucket);
    assert.equal(r.stats.snapshotsWritten, 0, "resumed without a snapshot");
    assert.equal(r.txid, first);
    await stop(r);

    // An empty replica (the bucket switched): a snapshot, above nothing.
    const other = `file://${dir}/other`;
    r = await start(other);
    assert.equal(r.stats.snapshotsWritten, 1, "the empty replica got a snapshot");
    await stop(r);
    assert.equal(await restoreAndDump(other, "app.db", `${dir}/other.db`), await dumpContent(db));

    // A replica ahead of local state (another writer went on): a snapshot above its newest TXID.
    for (let i = 0; i < 3; i++) {
      await runSql(db, `INSERT INTO t (v) VALUES ('elsewhere ${i}')`);
      const once = await walrust(["watch", db, "--bucket", bucket, "--once"]);
      assert.equal(once.code, 0, once.stderr);
    }
    const ahead = Math.max(
      ...(await replicaFiles(`${dir}/replica`, "app.db")).map((f) => f.maxTXID),
    );
    await Deno.remove(`${dir}/.app.db-walrust`, { recursive: true }); // local state lost
    r = await start(bucket);
    assert.equal(r.txid, ahead + 1, "continues above the replica, never over its history");
    await stop(r);
    assert.equal(await restoreAndDump(bucket, "app.db", `${dir}/latest.db`), await dumpContent(db));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
