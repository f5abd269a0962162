import assert from "node:assert/strict";
import { integrityCheck, openReadOnly, SqliteHandle } from "../../src/sqlite/handle.ts";
import { walFrameSize } from "../../src/sqlite/wal.ts";
import { DatabaseError, ExitCode } from "../../src/errors.ts";
import { runSql, SqliteWriter } from "../helpers/sqlite_writer.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-handle-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** An application writer (another process) with autocheckpoint off and a short busy timeout. */
async function app(path: string): Promise<SqliteWriter> {
  const w = await SqliteWriter.start(path, { autocheckpoint: 0, busyTimeoutMs: 100 });
  await w.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)");
  return w;
}

async function insert(w: SqliteWriter, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await w.exec("INSERT INTO t (v) VALUES (randomblob(500))");
}

async function walSize(path: string): Promise<number> {
  return (await Deno.stat(`${path}-wal`)).size;
}

async function seq(w: SqliteWriter): Promise<number | null> {
  const rows = await w.query("SELECT seq FROM _litestream_seq WHERE id = 1");
  return rows.length ? Number(rows[0][0]) : null;
}

Deno.test("the read lock pins the WAL: another process's TRUNCATE is busy until release", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path);
    try {
      h.ensureLitestreamTables();
      await insert(w, 5);
      h.beginReadLock();
      assert.equal(h.holdsReadLock(), true);
      await insert(w, 5);
      const before = await walSize(path);
      const pinned = await w.checkpoint("TRUNCATE");
      assert.equal(pinned.busy, 1);
      assert.ok(pinned.checkpointed < pinned.log, "frames past our read mark stay in the WAL");
      assert.equal(await walSize(path), before, "the WAL was not truncated");

      h.releaseReadLock();
      assert.equal(h.holdsReadLock(), false);
      assert.deepEqual(await w.checkpoint("TRUNCATE"), { busy: 0, log: 0, checkpointed: 0 });
      assert.equal(await walSize(path), 0);
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("checkpoint() returns SQLite's counts and re-takes the read lock", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path);
    try {
      h.ensureLitestreamTables();
      h.beginReadLock();
      await insert(w, 7);
      const frames = (await walSize(path) - 32) / walFrameSize(h.pageSize());
      assert.ok(Number.isInteger(frames) && frames > 7);
      assert.deepEqual(h.checkpoint("PASSIVE"), { busy: 0, log: frames, checkpointed: frames });
      assert.equal(h.holdsReadLock(), true);

      // The re-taken lock really holds: the app's own TRUNCATE cannot get past it.
      await insert(w, 3);
      assert.equal((await w.checkpoint("TRUNCATE")).busy, 1);
      assert.ok(await walSize(path) > 0);

      assert.deepEqual(h.checkpoint("TRUNCATE"), { busy: 0, log: 0, checkpointed: 0 });
      assert.equal(await walSize(path), 0);
      assert.equal(h.holdsReadLock(), true);
      assert.equal(h.checkpoint("PASSIVE").busy, 0);
      assert.equal(h.holdsReadLock(), true, "re-taken even when it was already released");
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("a database not in WAL mode is refused with exit code 3 and the fix", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/rollback.db`;
    await runSql(path, "CREATE TABLE t (v); INSERT INTO t VALUES (1)", { journalMode: "delete" });
    let caught: unknown;
    try {
      SqliteHandle.open(path);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof DatabaseError);
    assert.equal(caught.exitCode, ExitCode.Database);
    assert.match(caught.message, /journal_mode=delete/);
    assert.match(caught.message, /PRAGMA journal_mode=WAL/);
    assert.ok(caught.message.includes(path));
    // Refused, not converted: the header still says rollback journal (1, 1).
    const header = await Deno.readFile(path);
    assert.deepEqual([header[18], header[19]], [1, 1]);
  });
});

Deno.test("a missing database is an error, and is not created", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/missing.db`;
    assert.throws(() => SqliteHandle.open(path), (e: unknown) => {
      return e instanceof DatabaseError && e.exitCode === 3 && /does not exist/.test(e.message);
    });
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  });
});

Deno.test("ensureLitestreamTables is idempotent; bumpSeq commits while the read lock is held", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path, { busyTimeoutMs: 2000 });
    try {
      assert.equal(h.journalMode(), "wal");
      assert.equal(h.pageSize(), 4096);
      h.ensureLitestreamTables();
      h.ensureLitestreamTables();
      const tables = await w.query(
        "SELECT name FROM sqlite_master WHERE name LIKE '\\_litestream%' ESCAPE '\\' ORDER BY name",
      );
      assert.deepEqual(tables, [["_litestream_lock"], ["_litestream_seq"]]);
      assert.equal(await seq(w), null);
      h.bumpSeq();
      assert.equal(await seq(w), 1);
      h.beginReadLock();
      h.bumpSeq();
      h.bumpSeq();
      assert.equal(await seq(w), 3, "visible to another process: committed, not in our read txn");
      assert.equal(h.holdsReadLock(), true);
      h.ensureLitestreamTables();
      assert.equal(h.holdsReadLock(), true);
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("beginReadLock without the Litestream tables is a DatabaseError and holds nothing", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path);
    try {
      assert.throws(() => h.beginReadLock(), DatabaseError);
      assert.equal(h.holdsReadLock(), false);
      await insert(w, 2);
      assert.equal((await w.checkpoint("TRUNCATE")).busy, 0, "no transaction left open");
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("the write barrier blocks application commits until released; commit bumps seq", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path);
    try {
      h.ensureLitestreamTables();
      h.beginReadLock();
      h.beginWriteBarrier();
      assert.equal(h.holdsWriteBarrier(), true);
      await assert.rejects(insert(w, 1), /database is locked/);
      assert.equal(h.checkpoint("PASSIVE").busy, 0, "PASSIVE runs under our own barrier");
      assert.throws(() => h.bumpSeq(), DatabaseError, "a bump inside the barrier would be lost");
      h.releaseWriteBarrier();
      assert.equal(h.holdsWriteBarrier(), false);
      await insert(w, 1);
      assert.deepEqual(await w.query("SELECT count(*) FROM _litestream_lock"), [[0]]);

      assert.equal(await seq(w), null);
      h.beginWriteBarrier();
      await assert.rejects(insert(w, 1), /database is locked/);
      h.commitWriteBarrier();
      assert.equal(h.holdsWriteBarrier(), false);
      assert.equal(await seq(w), 1, "the bump inside the barrier is committed");
      await insert(w, 1);
      assert.throws(() => h.commitWriteBarrier(), DatabaseError);
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("dataVersion moves on other connections' commits, not on our own bumps", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path);
    try {
      h.ensureLitestreamTables();
      h.beginReadLock();
      const v0 = h.dataVersion();
      h.bumpSeq();
      h.beginWriteBarrier();
      h.commitWriteBarrier();
      assert.equal(h.dataVersion(), v0, "our own commits");
      assert.equal(h.checkpoint("PASSIVE").busy, 0);
      assert.equal(h.dataVersion(), v0, "a PASSIVE checkpoint changes no content");
      await insert(w, 1);
      const v1 = h.dataVersion();
      assert.notEqual(v1, v0, "another process committed");
      assert.equal(h.dataVersion(), v1);
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});

Deno.test("integrityCheck: ok for a sound copy, not ok for a damaged one, no side files", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/src.db`;
    await runSql(
      path,
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t (v); " +
        "INSERT INTO t (v) SELECT hex(randomblob(200)) FROM " +
        "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 200) " +
        "SELECT i FROM r)",
    );
    const bytes = await Deno.readFile(path);
    assert.deepEqual([bytes[18], bytes[19]], [2, 2], "a WAL-mode file, like a restore output");
    await Deno.mkdir(`${dir}/check`);
    await Deno.writeFile(`${dir}/check/good.db`, bytes);
    assert.deepEqual(integrityCheck(`${dir}/check/good.db`), ["ok"]);

    const ro = openReadOnly(`${dir}/check/good.db`);
    try {
      assert.deepEqual(ro.stats(), { pageSize: 4096, pageCount: bytes.length / 4096 });
    } finally {
      ro.close();
    }

    // Damage a leaf page in the middle of the table (keep its page header intact).
    const bad = bytes.slice();
    const page = Math.floor(bytes.length / 4096 / 2);
    bad.fill(0x41, page * 4096 + 2000, page * 4096 + 2100);
    bad.fill(0, page * 4096 + 8, page * 4096 + 40);
    await Deno.writeFile(`${dir}/check/bad.db`, bad);
    let result: string[] | undefined;
    try {
      result = integrityCheck(`${dir}/check/bad.db`);
    } catch (e) {
      assert.ok(e instanceof DatabaseError, String(e));
    }
    assert.notDeepEqual(result, ["ok"]);

    const names = [...Deno.readDirSync(`${dir}/check`)].map((e) => e.name).sort();
    assert.deepEqual(names, ["bad.db", "good.db"], "no -wal or -shm left beside the files");
    assert.throws(() => integrityCheck(`${dir}/check/none.db`), DatabaseError);
  });
});

Deno.test("truncateWalIfIdle truncates only a wholly backfilled WAL with nothing appended since our read lock", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    const w = await app(path);
    const h = SqliteHandle.open(path, { busyTimeoutMs: 2000 });
    const wal = () => walSize(path);
    try {
      h.ensureLitestreamTables();
      await insert(w, 3);
      h.beginReadLock();
      await insert(w, 3); // frames past our read mark
      const before = await wal();
      assert.equal(h.truncateWalIfIdle(2000).busy, 1, "frames past our mark: refused");
      assert.equal(await wal(), before);

      // Our checkpoint window: everything backfilled while no app commit can land.
      h.beginWriteBarrier();
      const ck = h.checkpoint("PASSIVE");
      h.releaseWriteBarrier();
      assert.equal(ck.log, ck.checkpointed);
      assert.equal(h.holdsReadLock(), true);
      assert.equal(h.truncateWalIfIdle(2000).busy, 0);
      assert.equal(await wal(), 0, "truncated");

      await insert(w, 2); // appended after our read lock: never backfilled behind our back
      const grown = await wal();
      assert.ok(grown > 0);
      assert.equal(h.truncateWalIfIdle(2000).busy, 1);
      assert.equal(await wal(), grown);
      assert.equal((await w.checkpoint("TRUNCATE")).busy, 1, "nor by the app");
      assert.deepEqual(await w.query("SELECT count(*) FROM t"), [[8]]);
    } finally {
      h.closeUnsafeForTests();
      await w.kill();
    }
  });
});
