/**
 * What a follower downloads and how it catches up: bytes per one-row update of a 50 MB database
 * (proportional to the changed pages, through a counting storage wrapper), level-0 files
 * compacted away (continues from level 1, no re-bootstrap), a gap (files pruned while it was
 * behind: re-bootstrap from the newest snapshot), and another database at the source
 * (re-bootstrap). The primary is a real app connection replicated by `walrust watch --once`.
 */
import assert from "node:assert/strict";
import { follow } from "../../mod.ts";
import { LevelCompactor } from "../../src/engine/compactor.ts";
import { LocalState } from "../../src/engine/localstate.ts";
import { resolveSync } from "../../src/config/schema.ts";
import { Logger } from "../../src/observe/log.ts";
import { openReplica, type Replica } from "../../src/storage/open.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import { CountingStorage } from "../helpers/counting_storage.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { cliSql } from "../helpers/apps.ts";
import { walrust, WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";

/** A primary database with a long-lived app connection, replicated on demand with --once. */
class Primary {
  private constructor(
    readonly db: string,
    readonly bucket: string,
    readonly app: SqliteWriter,
    readonly config: string,
  ) {}

  static async create(dir: string, name = "app.db"): Promise<Primary> {
    const db = `${dir}/${name}`;
    const config = `${dir}/walrust.toml`;
    await Deno.writeTextFile(config, `[compaction]\nlevels = []\n[retention]\nenabled = false\n`);
    const app = await SqliteWriter.start(db);
    await app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
    return new Primary(db, `file://${dir}/replica`, app, config);
  }

  async sync(extra: string[] = []): Promise<void> {
    const r = await walrust(
      ["--config", this.config, "watch", this.db, "--bucket", this.bucket, "--once", ...extra],
    );
    assert.equal(r.code, 0, r.stderr);
  }
}

const quiet = new Logger({ level: "warn" });

async function counted(bucket: string): Promise<{ replica: Replica; storage: CountingStorage }> {
  const replica = await openReplica(bucket);
  const storage = new CountingStorage(replica.storage);
  return { replica: { ...replica, storage }, storage };
}

Deno.test("bytes downloaded per one-row update of a 50 MB database follow the changed pages", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-follow-bytes-" });
  const p = await Primary.create(dir);
  let watch: WalrustProcess | undefined;
  try {
    // 50 MB in 50,000 rows of 1 KB: a one-row update changes one leaf page.
    await p.app.exec(
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50000) " +
        "INSERT INTO t (v, n) SELECT randomblob(1000), 0 FROM s",
    );
    watch = new WalrustProcess(
      ["--config", p.config, "watch", p.db, "--bucket", p.bucket, "--wal-sync-interval", "0.05"],
    );
    await watch.waitFor("replicating");
    await waitCaughtUp(p.db, `${dir}/replica`, "app.db");
    const { replica, storage } = await counted(p.bucket);
    const local = `${dir}/local.db`;
    const f = await follow({
      bucket: replica,
      name: "app.db",
      local,
      intervalMs: 60_000,
      log: quiet,
      checkEveryMs: 60_000,
    });
    try {
      const boot = storage.bytes;
      assert.ok(boot > 45e6, `bootstrap read ${boot} bytes`);
      const per: number[] = [];
      for (let i = 1; i <= 5; i++) {
        await p.app.exec(`UPDATE t SET n = ${i} WHERE id = ${i * 7919}`);
        await waitCaughtUp(p.db, `${dir}/replica`, "app.db");
        const before = storage.bytes;
        assert.equal(await f.pollNow(), 1);
        per.push(storage.bytes - before);
      }
      // One row changes one leaf page (plus page 1): a few KB per update, not 50 MB.
      for (const b of per) assert.ok(b < 32 * 1024, `bytes per update: ${per.join(", ")}`);
      assert.equal(await dumpContent(local), await dumpContent(p.db));
      assert.equal(f.status().rebootstraps, 0);
    } finally {
      await f.stop();
    }
  } finally {
    await p.app.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compacted level 0 serves from level 1; a gap and another database re-bootstrap", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-follow-catchup-" });
  const p = await Primary.create(dir);
  try {
    await p.app.exec("INSERT INTO t (v, n) VALUES ('first', 1)");
    await p.sync();
    const local = `${dir}/local.db`;
    const replica = await openReplica(p.bucket);
    const dbr = DbReplica.of(replica, "app.db");
    const f = await follow({
      bucket: replica,
      name: "app.db",
      local,
      intervalMs: 60_000,
      log: quiet,
      checkEveryMs: 0,
    });
    try {
      // Several transactions while the follower does not poll, then compaction into level 1
      // and the level-0 files it covers deleted (l0_retention passed).
      for (let i = 0; i < 4; i++) {
        await p.app.exec(`INSERT INTO t (v, n) VALUES (randomblob(5000), ${i})`);
        await p.sync();
      }
      const compactor = new LevelCompactor({
        replica: dbr,
        state: new LocalState(p.db),
        levelsMs: [1],
        l0RetentionMs: 0,
        format: resolveSync({}).format,
        log: quiet,
        dbPath: p.db,
      });
      compactor.seed(await dbr.files());
      const round = await compactor.run(Date.now() + 60_000);
      assert.equal(round.compacted.length, 1);
      const l1 = round.compacted[0];
      const l0 = await dbr.ltxFiles(0);
      // As compaction's level-0 expiry does: every covered file but the newest.
      const newest = Math.max(...l0.map((x) => x.maxTXID));
      await dbr.deleteLtx(
        l0.filter((x) => x.minTXID >= l1.minTXID && x.maxTXID <= l1.maxTXID && x.maxTXID < newest),
      );
      assert.ok((await f.pollNow()) >= 1);
      assert.equal(f.status().txid, l1.maxTXID);
      assert.equal(f.status().rebootstraps, 0, "level 1 served without a re-bootstrap");
      assert.equal(await dumpContent(local), await dumpContent(p.db));

      // A gap: the next level-0 files are lost and a newer snapshot exists.
      await p.app.exec("INSERT INTO t (v, n) VALUES ('lost', 10)");
      await p.sync();
      await p.app.exec("INSERT INTO t (v, n) VALUES ('after', 11)");
      await p.sync(["--force-snapshot"]);
      const behind = f.status().txid;
      await dbr.deleteLtx((await dbr.ltxFiles(0)).filter((x) => x.minTXID > behind));
      await f.pollNow();
      assert.equal(f.status().rebootstraps, 1);
      assert.equal(await dumpContent(local), await dumpContent(p.db));
      assert.equal((await cliSql(local, "PRAGMA integrity_check")).trim(), "ok");
    } finally {
      await f.stop();
    }

    // Another database at the source (the replica deleted and started over, TXIDs from 1):
    // the follower's history is gone; it re-bootstraps to the new one.
    const old = await dumpContent(local);
    await Deno.remove(`${dir}/replica`, { recursive: true });
    await p.app.close();
    for (const s of ["", "-wal", "-shm"]) await Deno.remove(p.db + s).catch(() => {});
    await Deno.remove(`${dir}/.app.db-walrust`, { recursive: true });
    const q = await Primary.create(dir);
    await q.app.exec("INSERT INTO t (v, n) VALUES ('another database', 99)");
    await q.sync();
    const f2 = await follow({
      bucket: p.bucket,
      name: "app.db",
      local,
      intervalMs: 60_000,
      log: quiet,
      checkEveryMs: 0,
    });
    try {
      await f2.pollNow();
      assert.equal(f2.status().rebootstraps, 1);
      const now = await dumpContent(local);
      assert.notEqual(now, old);
      assert.equal(now, await dumpContent(q.db));
    } finally {
      await f2.stop();
      await q.app.close();
    }
  } finally {
    await p.app.close().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
