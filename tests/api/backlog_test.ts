/**
 * Uploads slower than the sync interval: the backlog must stay bounded (each sync waits for the
 * queue and then takes every commit since in one file) instead of growing by one file per
 * interval, and nothing is lost.
 */
import assert from "node:assert/strict";
import { Logger, openReplica, replicate, restore } from "../../mod.ts";
import type { Storage } from "../../src/storage/port.ts";
import { CountingStorage } from "../helpers/counting_storage.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";

const quiet = new Logger({ level: "error" });

/** The real file backend, every put made `ms` slower (a far or busy storage). */
class SlowPuts extends CountingStorage {
  constructor(inner: Storage, readonly ms: number) {
    super(inner);
  }
  override async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    await new Promise((r) => setTimeout(r, this.ms));
    await super.put(key, body, meta);
  }
}

Deno.test("uploads slower than the sync interval: the queue stays short, the restore is exact", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-backlog-" });
  const db = `${dir}/app.db`;
  const w = await SqliteWriter.start(db);
  const plain = await openReplica(`file://${dir}/backups`);
  const bucket = { ...plain, storage: new SlowPuts(plain.storage, 150) };
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    const r = await replicate({
      databases: [db],
      bucket,
      sync: { walSyncIntervalMs: 20 },
      log: quiet,
    });
    let most = 0;
    let commits = 0;
    for (const end = Date.now() + 3_000; Date.now() < end;) {
      await w.exec(`INSERT INTO t (v) VALUES (randomblob(200))`);
      commits++;
      most = Math.max(most, r.status()[0].pendingUploads);
    }
    // 20 ms syncs against 150 ms puts would queue ~7 files for every one uploaded.
    assert.ok(commits > 100, `the app made progress (${commits} commits)`);
    assert.ok(most <= 4, `at most 4 files queued at once (saw ${most})`);
    assert.ok(await r.stop(), "everything uploaded at stop");
    const out = `${dir}/restored.db`;
    await restore({ name: "app.db", output: out, bucket: `file://${dir}/backups` });
    assert.equal(await dumpContent(out), await dumpContent(db));
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
