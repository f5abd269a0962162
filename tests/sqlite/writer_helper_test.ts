// The other-process SQLite writer used by end-to-end tests behaves as documented.
import assert from "node:assert/strict";
import { dumpContent, runSql, SqliteWriter } from "../helpers/sqlite_writer.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-writer-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

Deno.test("SqliteWriter: WAL mode, blobs, errors, and kill leaves the WAL behind", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/a.db`;
    const w = await SqliteWriter.start(path);
    try {
      assert.equal(w.journalMode, "wal");
      assert.ok(w.pid > 0 && w.pid !== Deno.pid);
      assert.deepEqual(await w.query("PRAGMA wal_autocheckpoint"), [[1000]], "SQLite's default");
      await w.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB); INSERT INTO t VALUES (1, x'00ff')",
      );
      await w.exec("INSERT INTO t VALUES (?, ?)", [2, new Uint8Array([1, 2, 3])]);
      assert.deepEqual(await w.query("SELECT id, b FROM t ORDER BY id"), [[1, "00ff"], [
        2,
        "010203",
      ]]);
      await assert.rejects(w.exec("INSERT INTO nope VALUES (1)"), /no such table: nope/);
      // An open transaction across calls (statements run one by one, never auto-committed).
      await w.exec("BEGIN; INSERT INTO t VALUES (3, NULL)");
      assert.deepEqual(await w.query("SELECT count(*) FROM t"), [[3]]);
      await w.exec("ROLLBACK");
      assert.deepEqual(await w.query("SELECT count(*) FROM t"), [[2]]);
    } finally {
      await w.kill();
    }
    assert.equal(await exists(`${path}-wal`), true, "SIGKILL: no close, no checkpoint");
    await w.kill(); // idempotent
  });
});

Deno.test("SqliteWriter.close as the last connection checkpoints and removes the WAL", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/a.db`;
    const w = await SqliteWriter.start(path, { autocheckpoint: 0 });
    await w.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    assert.equal(await exists(`${path}-wal`), true);
    await w.close();
    assert.equal(await exists(`${path}-wal`), false);
    await assert.rejects(w.exec("SELECT 1"), /exited/);
  });
});

Deno.test("dumpContent is ordered and ignores _litestream tables; runSql is one-shot", async () => {
  await withTemp(async (dir) => {
    const a = `${dir}/a.db`, b = `${dir}/b.db`;
    const schema = "CREATE TABLE t (k TEXT, v BLOB); CREATE INDEX tk ON t (k);";
    await runSql(a, schema + "INSERT INTO t VALUES ('b', x'01'), ('a', NULL), ('c', 2.5)");
    await runSql(
      b,
      schema + "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);" +
        "INSERT INTO _litestream_seq VALUES (1, 9);" +
        "INSERT INTO t VALUES ('c', 2.5), ('b', x'01'), ('a', NULL)",
    );
    const dump = await dumpContent(a);
    assert.equal(dump, await dumpContent(b));
    assert.match(dump, /t\|'a'\|None\nt\|'b'\|x'01'\nt\|'c'\|2\.5/);
    assert.match(dump, /index tk t: CREATE INDEX tk ON t \(k\)/);
    await runSql(b, "UPDATE t SET v = x'02' WHERE k = 'b'");
    assert.notEqual(dump, await dumpContent(b));
    assert.equal(
      await dumpContent(a, []),
      dump.split("\n").filter((l) => !l.startsWith("t|")).join("\n"),
    );
  });
});
