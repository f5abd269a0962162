/**
 * A long compaction says how far it got in the log (a watcher's stderr is a log stream): input
 * bytes read of the level's total, rate and ETA, growing, never a line at 100 %; the merged file
 * restores exactly.
 */
import assert from "node:assert/strict";
import { walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb } from "../helpers/apps.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { LevelCompactor } from "../../src/engine/compactor.ts";
import { LocalState } from "../../src/engine/localstate.ts";
import { resolveSync } from "../../src/config/schema.ts";
import { Logger } from "../../src/observe/log.ts";
import { openReplica } from "../../src/storage/open.ts";
import { DbReplica } from "../../src/storage/replica.ts";

Deno.test("compaction of a level logs its progress: bytes read grow, rate and ETA, then the merge restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-compact-progress-" });
  try {
    const db = `${dir}/app.db`;
    const bucket = `file://${dir}/replica`;
    await Deno.writeTextFile(`${dir}/walrust.toml`, `[compaction]\nlevels = []\n`);
    await createAppDb(db);
    // A long-lived app connection keeps the WAL between the runs: each run adds level-0 files.
    const app = await SqliteWriter.start(db);
    const once = async () => {
      const r = await walrust([
        "--config",
        `${dir}/walrust.toml`,
        "watch",
        db,
        "--bucket",
        bucket,
        "--once",
      ]);
      assert.equal(r.code, 0, r.stderr);
    };
    await once(); // the snapshot: level-0 files it covers are not merged
    for (let round = 0; round < 4; round++) {
      await app.exec(
        "INSERT INTO t (tag, v) WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60) SELECT 'p', randomblob(3000) FROM s",
      );
      await once();
    }
    await app.close();
    const replica = await openReplica(bucket);
    const dbr = DbReplica.of(replica, "app.db");
    const l0 = await dbr.ltxFiles(0);
    const above = l0.filter((f) => f.minTXID > 1);
    assert.ok(above.length >= 4, JSON.stringify(l0));
    const total = above.reduce((n, f) => n + f.size, 0);

    const lines: Record<string, unknown>[] = [];
    const log = new Logger({
      level: "info",
      format: "json",
      write: (l) => lines.push(JSON.parse(l)),
    });
    const compactor = new LevelCompactor({
      replica: dbr,
      state: new LocalState(db),
      levelsMs: [1],
      l0RetentionMs: 0,
      format: resolveSync({}).format,
      log,
      dbPath: db,
      progressLogMs: 0, // every chunk read: a real level logs every 10 s
    });
    compactor.seed(await dbr.files());
    const round = await compactor.run(Date.now() + 60_000);
    assert.equal(round.compacted.length, 1, JSON.stringify(await dbr.files()));

    const progress = lines.filter((l) => l.msg === "compaction progress");
    assert.ok(progress.length >= 2, JSON.stringify(lines));
    let last = 0;
    for (const p of progress) {
      assert.equal(p.db, db);
      assert.equal(p.level, 1);
      assert.equal(p.total_bytes, total);
      const done = Number(p.done_bytes);
      assert.ok(done > last && done < total, JSON.stringify(p));
      last = done;
      assert.ok(Number(p.percent) >= 0 && Number(p.percent) < 100);
      assert.ok(Number(p.mb_per_s) > 0 && Number(p.eta_seconds) >= 0, JSON.stringify(p));
    }

    // Only the snapshot and the merged file remain: the restore must go through the merge.
    await dbr.deleteLtx(above);
    const source = await dumpContent(db);
    const r = await walrust(["restore", "app.db", "-o", `${dir}/out.db`, "--bucket", bucket]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await cliSql(`${dir}/out.db`, "PRAGMA integrity_check")).trim(), "ok");
    assert.equal(await dumpContent(`${dir}/out.db`), source);
    await replica.storage.close?.();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
