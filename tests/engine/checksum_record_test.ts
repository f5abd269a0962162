/**
 * walrust-post-apply-checksum: every object walrust uploads records the database checksum after
 * it; the engine keeps it current through updates, growth and shrink, and restore proves the
 * rebuilt database against it.
 */
import assert from "node:assert/strict";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess, watchArgs } from "../helpers/walrust.ts";
import { replicaFiles, restoreAndDump, waitCaughtUp } from "../helpers/replica.ts";
import { FileStorage } from "../../src/storage/file.ts";
import { fileChecksum } from "../helpers/checksums.ts";
import { POST_APPLY_CHECKSUM_META } from "../../src/storage/layout.ts";
import { readAll } from "../../src/storage/port.ts";

Deno.test("every uploaded object records the database checksum after it; restore verifies it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-chk-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  const bucket = `file://${root}`;
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    await watch.waitFor("replicating");
    const storage = new FileStorage(root);
    const checkLatest = async (label: string) => {
      await waitCaughtUp(db, root, "app.db");
      const l0 = (await replicaFiles(root, "app.db")).filter((f) => f.level === 0).at(-1)!;
      const key = `app.db/ltx/0/${l0.path.slice(l0.path.lastIndexOf("/") + 1)}`;
      const recorded = (await storage.head(key))?.meta?.[POST_APPLY_CHECKSUM_META];
      assert.ok(recorded, `${label}: ${key} records the checksum`);
      const out = `${dir}/${label}.db`;
      assert.equal(await restoreAndDump(bucket, "app.db", out), await dumpContent(db), label);
      assert.equal(await fileChecksum(out), recorded, `${label}: the restored database has it`);
      return key;
    };
    for (let i = 0; i < 30; i++) await w.exec(`INSERT INTO t (v) VALUES (randomblob(300))`);
    await checkLatest("inserts");
    await w.exec(
      `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200)
       INSERT INTO t (v) SELECT randomblob(2000) FROM c`,
    );
    await checkLatest("growth");
    await w.exec("UPDATE t SET v = randomblob(100) WHERE id % 3 = 0");
    await checkLatest("updates");
    await w.exec("DELETE FROM t WHERE id > 40; VACUUM;");
    const key = await checkLatest("shrink");

    // A record that disagrees with the data: restore refuses (exit 5) and names the object.
    const body = await readAll(await storage.get(key));
    const head = await storage.head(key);
    await storage.put(key, body, {
      ...head!.meta,
      [POST_APPLY_CHECKSUM_META]: "8000000000000001",
    });
    const r = await walrust(["restore", "app.db", "-o", `${dir}/bad.db`, "--bucket", bucket]);
    assert.equal(r.code, 5, r.stderr);
    assert.ok(r.stderr.includes(key), r.stderr);
    await assert.rejects(Deno.stat(`${dir}/bad.db`), Deno.errors.NotFound);
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("files a kill -9 left queued still record the checksum when the next watcher uploads them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-chk-queued-" });
  const db = `${dir}/app.db`;
  // The replica's parent is a regular file at first: every put fails and the snapshot stays
  // in the local queue.
  const blocker = `${dir}/blocker`;
  const root = `${blocker}/replica`;
  const bucket = `file://${root}`;
  const w = await SqliteWriter.start(db);
  let watch: WalrustProcess | undefined;
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    for (let i = 0; i < 20; i++) await w.exec(`INSERT INTO t (v) VALUES (randomblob(500))`);
    await Deno.writeTextFile(blocker, "");
    watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("upload failed");
    watch.kill("SIGKILL");
    await watch.wait();
    const queued = [...Deno.readDirSync(`${dir}/.app.db-walrust/ltx/9`)].map((e) => e.name);
    assert.equal(queued.length, 1, `one snapshot queued locally: ${queued}`);

    await Deno.remove(blocker);
    watch = new WalrustProcess(watchArgs(db, bucket));
    await watch.waitFor("replicating");
    await waitCaughtUp(db, root, "app.db");
    const storage = new FileStorage(root);
    const key = `app.db/ltx/9/${queued[0]}`;
    // The queue goes up in order: the level-0 file first, then the snapshot.
    for (const deadline = Date.now() + 30_000; !(await storage.exists(key));) {
      if (Date.now() > deadline) assert.fail(`${key} never reached the replica`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const recorded = (await storage.head(key))?.meta?.[POST_APPLY_CHECKSUM_META];
    const files = (await replicaFiles(root, "app.db")).map((f) => f.path.slice(root.length));
    assert.ok(
      recorded,
      `${key}, uploaded by the second watcher, records the checksum; replica: ${files}; ` +
        `second watcher:\n${watch.stderr}`,
    );
    const out = `${dir}/restored.db`;
    assert.equal(await restoreAndDump(bucket, "app.db", out), await dumpContent(db));
    // The database at the snapshot's TXID has exactly the recorded checksum.
    const at = `${dir}/at-snapshot.db`;
    const txid = queued[0].slice(17, 33);
    const r = await walrust(["restore", "app.db", "-o", at, "--bucket", bucket, "--txid", txid]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await fileChecksum(at), recorded, "the database at that TXID has it");
  } finally {
    watch?.kill("SIGTERM");
    await watch?.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
