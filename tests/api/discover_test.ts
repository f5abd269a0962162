/**
 * Directory watching through the library: databases created while replication runs join it (a
 * file that is not a WAL database yet is retried), a deleted one leaves quietly without failing
 * the replication, and each created database restores exactly.
 */
import assert from "node:assert/strict";
import { replicate, restore } from "../../mod.ts";
import { Logger } from "../../src/observe/log.ts";
import { cliSql } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";

async function until(what: string, fn: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("discover: databases created while running join, a deleted one leaves, each restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-discover-" });
  const data = `${dir}/data`;
  await Deno.mkdir(data);
  const bucket = `file://${dir}/replica`;
  const lines: string[] = [];
  const log = new Logger({ level: "info", write: (l) => lines.push(l) });
  const scan = () =>
    Promise.resolve(
      [...Deno.readDirSync(data)].filter((e) => e.isFile && e.name.endsWith(".db"))
        .map((e) => `${data}/${e.name}`),
    );
  const r = await replicate({
    databases: [],
    bucket,
    discover: scan,
    discoverIntervalMs: 100,
    sync: { walSyncIntervalMs: 50 },
    log,
  });
  let failed: unknown;
  r.failed.catch((e) => (failed = e));
  try {
    // A file that is not a WAL database yet (rollback journal) waits until it is one.
    await cliSql(`${data}/a.db`, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    await until("a.db noticed", () => lines.some((l) => l.includes("not ready to replicate")));
    assert.equal(r.status().length, 0);
    await cliSql(`${data}/a.db`, "PRAGMA journal_mode=WAL; INSERT INTO t (v) VALUES ('a1')");
    await until("a.db joined", () => r.status().some((s) => s.name === "a.db"));
    await cliSql(
      `${data}/b.db`,
      "PRAGMA journal_mode=WAL; CREATE TABLE u (x); INSERT INTO u VALUES (1)",
    );
    await until("b.db joined", () => r.status().some((s) => s.name === "b.db"));
    await cliSql(`${data}/a.db`, "INSERT INTO t (v) VALUES ('a2')");
    await cliSql(`${data}/b.db`, "INSERT INTO u VALUES (2)");
    const aBefore = await dumpContent(`${data}/a.db`);
    await r.syncNow();
    await until("a.db uploaded", () => {
      const a = r.status().find((s) => s.name === "a.db")!;
      return a.pendingUploads === 0 && a.replicaTXID === a.txid;
    });
    for (const f of ["a.db", "a.db-wal", "a.db-shm"]) {
      await Deno.remove(`${data}/${f}`).catch(() => {});
    }
    await until("a.db left", () => !r.status().some((s) => s.name === "a.db"));
    assert.deepEqual(r.databases, [`${data}/b.db`]);
    assert.equal(failed, undefined, "a deleted discovered database does not fail the replication");
    assert.ok(!lines.some((l) => l.includes("ERROR")), lines.join("\n"));

    assert.ok(await r.stop());
    for (const name of ["a.db", "b.db"]) {
      const out = `${dir}/${name}.restored`;
      await restore({ name, output: out, bucket });
      assert.deepEqual(integrityCheck(out), ["ok"]);
      const want = name === "a.db" ? aBefore : await dumpContent(`${data}/b.db`);
      assert.equal(await dumpContent(out), want, name);
    }
  } finally {
    await r.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch with [[databases]] watch = true replicates a database created after the start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watchdir-" });
  await Deno.mkdir(`${dir}/data`);
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[s3]\nbucket = "file://${dir}/replica"\n[sync]\nwal_sync_interval = 0.1\n` +
      `[[databases]]\npath = "data/*.db"\nwatch = true\n`,
  );
  const watch = new WalrustProcess(["--config", `${dir}/walrust.toml`, "watch", "--no-metrics"]);
  try {
    await watch.waitFor("watching");
    const db = `${dir}/data/new.db`;
    await cliSql(db, "PRAGMA journal_mode=WAL; CREATE TABLE t (v); INSERT INTO t VALUES ('x')");
    await watch.waitFor("replicating a new database");
    await cliSql(db, "INSERT INTO t VALUES ('y')");
    await waitCaughtUp(db, `${dir}/replica`, "new.db");
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, watch.stderr);
    const out = `${dir}/restored.db`;
    await restore({ name: "new.db", output: out, bucket: `file://${dir}/replica` });
    assert.equal(await dumpContent(out), await dumpContent(db));
  } finally {
    watch.kill("SIGKILL");
    await watch.wait();
    await Deno.remove(dir, { recursive: true });
  }
});
