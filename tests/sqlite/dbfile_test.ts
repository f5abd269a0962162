import assert from "node:assert/strict";
import { lockPgno, parseDbHeader, readDbHeader, readDbPage } from "../../src/sqlite/dbfile.ts";
import { DatabaseError } from "../../src/errors.ts";
import { runSql, SqliteWriter } from "../helpers/sqlite_writer.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-dbfile-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function header(path: string) {
  const f = await Deno.open(path);
  try {
    return await readDbHeader(f);
  } finally {
    f.close();
  }
}

Deno.test("readDbHeader reports page size, page count and WAL mode of a real database", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/a.db`;
    const w = await SqliteWriter.start(path, { pageSize: 8192 });
    try {
      await w.exec(
        "CREATE TABLE t (v); INSERT INTO t SELECT randomblob(3000) FROM " +
          "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 40) " +
          "SELECT i FROM r)",
      );
      await w.checkpoint("TRUNCATE");
      const pages = Number((await w.query("PRAGMA page_count"))[0][0]);
      const h = await header(path);
      assert.ok(h);
      assert.equal(h.pageSize, 8192);
      assert.equal(h.pageCount, pages);
      assert.equal(h.walMode, true);
      assert.ok(h.changeCounter > 0);
    } finally {
      await w.kill();
    }
  });
});

Deno.test("readDbHeader: 65536-byte pages (stored as 1) and a rollback-journal database", async () => {
  await withTemp(async (dir) => {
    await runSql(`${dir}/big.db`, "CREATE TABLE t (v); INSERT INTO t VALUES (1)", {
      pageSize: 65536,
      journalMode: "delete",
    });
    const raw = (await Deno.readFile(`${dir}/big.db`)).subarray(16, 18);
    assert.deepEqual([...raw], [0, 1]);
    const h = await header(`${dir}/big.db`);
    assert.equal(h?.pageSize, 65536);
    assert.equal(h?.walMode, false);
    assert.equal(h?.pageCount, 2);
  });
});

Deno.test("readDbHeader: undefined for short files and files that are not SQLite", async () => {
  await withTemp(async (dir) => {
    await Deno.writeFile(`${dir}/empty.db`, new Uint8Array());
    assert.equal(await header(`${dir}/empty.db`), undefined);
    await Deno.writeFile(`${dir}/junk.db`, new Uint8Array(4096).fill(7));
    assert.equal(await header(`${dir}/junk.db`), undefined);
    const b = new Uint8Array(100);
    b.set(new TextEncoder().encode("SQLite format 3\0"));
    b[16] = 0x03; // 768: not a power of two
    assert.equal(parseDbHeader(b, 4096), undefined);
  });
});

Deno.test("readDbPage reads whole pages and refuses pages past the end", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/a.db`;
    await runSql(path, "CREATE TABLE t (v); INSERT INTO t VALUES (randomblob(10000))");
    const bytes = await Deno.readFile(path);
    const pageSize = 4096;
    const count = bytes.length / pageSize;
    assert.ok(count >= 4);
    const f = await Deno.open(path);
    try {
      const page = new Uint8Array(pageSize);
      for (let pgno = 1; pgno <= count; pgno++) {
        await readDbPage(f, pgno, pageSize, page);
        assert.deepEqual(page, bytes.subarray((pgno - 1) * pageSize, pgno * pageSize));
      }
      await assert.rejects(readDbPage(f, count + 1, pageSize, page), DatabaseError);
      await assert.rejects(readDbPage(f, 0, pageSize, page), DatabaseError);
    } finally {
      f.close();
    }
  });
});

Deno.test("lockPgno is the page holding byte 2^30", () => {
  assert.equal(lockPgno(4096), 262145);
  assert.equal(lockPgno(512), 2097153);
  assert.equal(lockPgno(65536), 16385);
  for (const ps of [512, 1024, 4096, 65536]) {
    const first = (lockPgno(ps) - 1) * ps;
    assert.ok(first <= 0x40000000 && 0x40000000 < first + ps);
  }
});
