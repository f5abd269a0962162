import assert from "node:assert/strict";
import { DbFileReader, readAt, readAtSync } from "../../src/sqlite/pagefile.ts";
import { readDbHeader, readDbPage } from "../../src/sqlite/dbfile.ts";
import { readWalHeader } from "../../src/sqlite/wal.ts";
import { SqliteHandle } from "../../src/sqlite/handle.ts";
import { DatabaseError } from "../../src/errors.ts";
import { runSql } from "../helpers/sqlite_writer.ts";

/** Random bytes (getRandomValues gives at most 64 KiB per call). */
function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-pagefile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readAt fills the buffer from any offset and returns a short count only at EOF", async () => {
  await withTemp(async (dir) => {
    const data = randomBytes(300_000);
    await Deno.writeFile(`${dir}/f`, data);
    const f = await Deno.open(`${dir}/f`);
    try {
      const buf = new Uint8Array(200_000);
      assert.equal(await readAt(f, 12345, buf), buf.length);
      assert.deepEqual(buf, data.subarray(12345, 12345 + buf.length));
      assert.equal(await readAt(f, 250_000, buf), 50_000);
      assert.deepEqual(buf.subarray(0, 50_000), data.subarray(250_000));
      assert.equal(await readAt(f, 400_000, buf), 0);
      assert.equal(readAtSync(f, 299_990, buf), 10);
      assert.deepEqual(buf.subarray(0, 10), data.subarray(299_990));
    } finally {
      f.close();
    }
  });
});

Deno.test("concurrent readAt calls on one file never interleave seek and read", async () => {
  await withTemp(async (dir) => {
    const data = randomBytes(1 << 20);
    await Deno.writeFile(`${dir}/f`, data);
    const f = await Deno.open(`${dir}/f`);
    try {
      const offsets = Array.from({ length: 300 }, (_, i) => (i * 7919 * 64) % (data.length - 4096));
      const bufs = offsets.map(() => new Uint8Array(4096));
      await Promise.all(offsets.map((off, i) => readAt(f, off, bufs[i])));
      offsets.forEach((off, i) => assert.deepEqual(bufs[i], data.subarray(off, off + 4096)));
    } finally {
      f.close();
    }
  });
});

/** A WAL-mode database with a table and some committed rows, written by another process. */
async function makeDb(path: string): Promise<void> {
  await runSql(path, "CREATE TABLE t (v); INSERT INTO t VALUES (randomblob(5000))");
}

/** Our watched connection: tables, one committed frame, and the read lock (Litestream's start). */
function watch(path: string): SqliteHandle {
  const h = SqliteHandle.open(path);
  h.ensureLitestreamTables();
  h.bumpSeq();
  h.beginReadLock();
  return h;
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

Deno.test("the fd trap is real: closing a stray descriptor lets the app delete our WAL", async () => {
  // This documents WHY DbFileReader exists; if it ever stops failing this way, the trap is gone.
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    await makeDb(path);
    const h = watch(path);
    try {
      await runSql(path, "INSERT INTO t VALUES (1)"); // a short-lived app connection
      assert.equal(await exists(`${path}-wal`), true, "our connection keeps the WAL alive");

      (await Deno.open(path)).close(); // e.g. a careless Deno.readFile(dbPath)
      await runSql(path, "INSERT INTO t VALUES (2)");
      assert.equal(
        await exists(`${path}-wal`),
        false,
        "the app's close checkpointed and deleted the WAL under our read lock",
      );
    } finally {
      h.closeUnsafeForTests();
    }
  });
});

Deno.test("the Deno trap is real: an async read on the database file drops our locks too", async () => {
  // Deno runs async FsFile methods on a dup() of the descriptor and closes the dup afterwards.
  // If this starts failing, Deno changed that and async reads on the database became safe.
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    await makeDb(path);
    const h = watch(path);
    const reader = DbFileReader.openSync(path);
    try {
      await reader.file.read(new Uint8Array(100)); // async, through the long-lived descriptor
      await runSql(path, "INSERT INTO t VALUES (1)");
      assert.equal(await exists(`${path}-wal`), false, "the async read cost us the WAL");
    } finally {
      h.closeUnsafeForTests();
      reader.closeUnsafeForTests();
    }
  });
});

Deno.test("DbFileReader: one descriptor per database for the process, the WAL survives", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/app.db`;
    await makeDb(path);
    const h = watch(path);
    await Deno.symlink(path, `${dir}/link.db`);
    const reader = await DbFileReader.open(path);
    try {
      const [again, viaLink, viaDots] = await Promise.all([
        DbFileReader.open(path),
        DbFileReader.open(`${dir}/link.db`),
        DbFileReader.open(`${dir}/../${dir.split("/").pop()}/app.db`),
      ]);
      assert.equal(again, reader, "the same reader, not a second descriptor");
      assert.equal(viaLink, reader);
      assert.equal(viaDots, reader);

      // Everything walrust reads from the database file goes through reader.file.
      const header = await readDbHeader(reader.file);
      assert.ok(header?.walMode);
      const page = new Uint8Array(header.pageSize);
      for (let pgno = 1; pgno <= header.pageCount; pgno++) {
        await readDbPage(reader.file, pgno, header.pageSize, page);
      }
      assert.equal(reader.size(), header.pageCount * header.pageSize);
      assert.equal(reader.readAt(0, page), header.pageSize);
      assert.equal(await readAt(reader.file, 0, page), header.pageSize);

      // The -wal file carries no POSIX locks: opening, async reads and closing are harmless.
      const wal = await Deno.open(`${path}-wal`);
      assert.ok(await readWalHeader(wal));
      await wal.read(new Uint8Array(32));
      await wal.stat();
      wal.close();

      await runSql(path, "INSERT INTO t VALUES (3)");
      await runSql(path, "INSERT INTO t VALUES (4)");
      assert.equal(await exists(`${path}-wal`), true, "our locks survived: the WAL is still there");
      assert.ok((await Deno.stat(`${path}-wal`)).size > 32);
    } finally {
      h.closeUnsafeForTests();
      reader.closeUnsafeForTests();
    }
  });
});

Deno.test("DbFileReader.open on a missing file is a DatabaseError", async () => {
  await withTemp(async (dir) => {
    await assert.rejects(DbFileReader.open(`${dir}/none.db`), DatabaseError);
  });
});
