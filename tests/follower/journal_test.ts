/**
 * The rollback journal walrust writes before overwriting pages of a follower's copy is one SQLite
 * plays back: a batch interrupted after the journal went hot (pages half-written, the database
 * grown) is undone by the next connection that opens the file, exactly to the state before it;
 * a journal that never went hot (the count still 0) undoes nothing because nothing was written.
 */
import assert from "node:assert/strict";
import { RollbackJournal } from "../../src/follower/journal.ts";
import { cliSql } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";

const PAGE = 4096;

async function rollbackDb(path: string): Promise<void> {
  await cliSql(
    path,
    "PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE; " +
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); " +
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 40) " +
      "INSERT INTO t (v) SELECT randomblob(300) FROM s;",
  );
}

function readPage(f: Deno.FsFile, pgno: number): Uint8Array {
  const b = new Uint8Array(PAGE);
  f.seekSync((pgno - 1) * PAGE, Deno.SeekMode.Start);
  let n = 0;
  while (n < PAGE) n += f.readSync(b.subarray(n)) ?? PAGE;
  return b;
}

function writePage(f: Deno.FsFile, pgno: number, data: Uint8Array): void {
  f.seekSync((pgno - 1) * PAGE, Deno.SeekMode.Start);
  let n = 0;
  while (n < data.length) n += f.writeSync(data.subarray(n));
}

Deno.test("SQLite plays back walrust's hot journal: a half-written, grown batch is undone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-journal-" });
  try {
    const db = `${dir}/copy.db`;
    await rollbackDb(db);
    const before = await dumpContent(db);
    const pages = (await Deno.stat(db)).size / PAGE;
    const f = Deno.openSync(db, { read: true, write: true });
    const j = RollbackJournal.create(db, PAGE, pages);
    const touched = [1, 2, pages];
    for (const pgno of touched) j.add(pgno, readPage(f, pgno));
    j.commit();
    // The batch dies half-way: garbage over journaled pages, and two pages past the old end.
    for (const pgno of [1, 2]) writePage(f, pgno, crypto.getRandomValues(new Uint8Array(PAGE)));
    writePage(f, pages + 2, new Uint8Array(PAGE).fill(7));
    f.syncSync();
    f.close();
    assert.ok(Deno.statSync(`${db}-journal`).size > 0);
    // The next opener (read-write) rolls it back.
    assert.equal((await cliSql(db, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal(await dumpContent(db), before);
    assert.equal((await Deno.stat(db)).size, pages * PAGE, "truncated back to the old size");
    assert.ok(!(await Deno.stat(`${db}-journal`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a journal that never went hot restores nothing and harms nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-journal-cold-" });
  try {
    const db = `${dir}/copy.db`;
    await rollbackDb(db);
    const before = await dumpContent(db);
    const pages = (await Deno.stat(db)).size / PAGE;
    const f = Deno.openSync(db, { read: true });
    const j = RollbackJournal.create(db, PAGE, pages);
    j.add(2, readPage(f, 2)); // killed before commit(): the header still counts 0 records
    f.close();
    assert.equal((await cliSql(db, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal(await dumpContent(db), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
