/** meta.json: durable atomic writes, in-place fixed-size rewrites after uploads, torn records. */
import assert from "node:assert/strict";
import { type LocalMeta, LocalState } from "../../src/engine/localstate.ts";

const META: LocalMeta = {
  remoteTXID: 41,
  snapshotTXID: 7,
  snapshotAt: 1_700_000_000_000,
  checksum: "8a6c5e2d31f0b7c4",
  checksumTXID: 41,
};

async function withState(fn: (s: LocalState, meta: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-localstate-" });
  try {
    const s = new LocalState(`${dir}/app.db`);
    await s.init();
    await fn(s, `${s.dir}/meta.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("meta.json: an in-place rewrite keeps the inode and reads back exactly", async () => {
  await withState(async (s, path) => {
    await s.writeMeta(META);
    const ino = (await Deno.stat(path)).ino;
    for (let i = 0; i < 5; i++) {
      await s.writeMeta({ ...META, remoteTXID: 100 + i }, { durable: false });
    }
    assert.equal((await Deno.stat(path)).ino, ino, "no new file per upload");
    assert.deepEqual(await s.readMeta(), { ...META, remoteTXID: 104 });
  });
});

Deno.test("meta.json: a longer record from an older version is cut to the new one", async () => {
  await withState(async (s, path) => {
    await Deno.writeTextFile(path, JSON.stringify({ ...META, note: "x".repeat(2000) }));
    await s.writeMeta({ ...META, remoteTXID: 5 }, { durable: false });
    assert.deepEqual(await s.readMeta(), { ...META, remoteTXID: 5 });
    assert.ok((await Deno.stat(path)).size < 1000);
  });
});

Deno.test("meta.json: a torn or garbled record reads as no record (the replica decides)", async () => {
  await withState(async (s, path) => {
    await s.writeMeta(META);
    const good = await Deno.readFile(path);
    await Deno.writeFile(path, good.subarray(0, 40));
    assert.deepEqual(await s.readMeta(), { remoteTXID: 0, snapshotTXID: 0, snapshotAt: 0 });
    await Deno.writeFile(path, new Uint8Array([...good.subarray(0, good.length - 1), 0x7d, 0x22]));
    assert.deepEqual(await s.readMeta(), { remoteTXID: 0, snapshotTXID: 0, snapshotAt: 0 });
  });
});

Deno.test("an uploaded level-0 file is kept as the spare and its inode reused by the next one", async () => {
  await withState(async (s) => {
    const a = s.path(0, 1, 1);
    await Deno.writeTextFile(a, "old level-0 bytes");
    const ino = (await Deno.stat(a)).ino;
    await s.recycle(a);
    await assert.rejects(Deno.stat(a), Deno.errors.NotFound);
    assert.equal((await Deno.stat(s.spare)).ino, ino);
    // Only one spare: a second recycled file is deleted.
    const b = s.path(0, 2, 2);
    await Deno.writeTextFile(b, "x");
    await s.recycle(b);
    await assert.rejects(Deno.stat(b), Deno.errors.NotFound);
    assert.equal((await Deno.stat(s.spare)).ino, ino);
    assert.deepEqual(await s.list(0), [], "the spare is not a level-0 file");

    const tmp = `${s.path(0, 3, 3)}.t.tmp`;
    const f = await s.createTemp(tmp);
    await f.write(new TextEncoder().encode("new"));
    f.close();
    assert.equal((await Deno.stat(tmp)).ino, ino, "the spare's inode");
    assert.equal(await Deno.readTextFile(tmp), "new", "truncated: nothing of the old bytes");
    await assert.rejects(Deno.stat(s.spare), Deno.errors.NotFound);
    // No spare left: a fresh file.
    const tmp2 = `${s.path(0, 4, 4)}.t.tmp`;
    (await s.createTemp(tmp2)).close();
    assert.notEqual((await Deno.stat(tmp2)).ino, ino);
    // A crash leaves the spare behind: the next start's init removes it with the temp files.
    await s.recycle(tmp);
    await new LocalState(s.dbPath).init();
    await assert.rejects(Deno.stat(s.spare), Deno.errors.NotFound);
  });
});
