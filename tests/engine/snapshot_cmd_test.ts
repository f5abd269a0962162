/** `walrust snapshot DB`: directly when no watcher runs, through the watcher when one does. */
import assert from "node:assert/strict";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess, watchArgs } from "../helpers/walrust.ts";
import { replicaFiles, restoreAndDump, waitCaughtUp } from "../helpers/replica.ts";

Deno.test("snapshot without a watcher syncs and writes a level-9 snapshot at the current TXID", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-snap-" });
  const db = `${dir}/app.db`;
  const bucket = `file://${dir}/replica`;
  const w = await SqliteWriter.start(db);
  try {
    await w.exec(
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');",
    );
    const first = await walrust(["snapshot", db, "--bucket", bucket]);
    assert.equal(first.code, 0, first.stderr);
    await w.exec("INSERT INTO t (v) VALUES ('c')");
    const second = await walrust(["snapshot", db, "--bucket", bucket]);
    assert.equal(second.code, 0, second.stderr);
    const snaps = (await replicaFiles(`${dir}/replica`, "app.db")).filter((f) => f.level === 9);
    assert.equal(snaps.length, 2, JSON.stringify(snaps));
    assert.ok(snaps[1].maxTXID > snaps[0].maxTXID);
    assert.equal(await restoreAndDump(bucket, "app.db", `${dir}/r.db`), await dumpContent(db));
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshot while a watcher runs asks the watcher and waits for it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-snap-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  const bucket = `file://${root}`;
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(watchArgs(db, bucket));
  try {
    await w.exec(
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a');",
    );
    await watch.waitFor("replicating");
    await w.exec("INSERT INTO t (v) VALUES ('b')");
    await waitCaughtUp(db, root, "app.db");
    const before = (await replicaFiles(root, "app.db")).filter((f) => f.level === 9).length;
    const r = await walrust(["snapshot", db, "--bucket", bucket, "--timeout", "20"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /running watcher/);
    await waitCaughtUp(db, root, "app.db");
    await new Promise((res) => setTimeout(res, 300));
    const after = (await replicaFiles(root, "app.db")).filter((f) => f.level === 9).length;
    assert.equal(after, before + 1);
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
