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
