/**
 * Maintenance inside a real `walrust watch` on a file replica: validation finds a replica that
 * lost a file (ERROR, a new snapshot, then passes again), and compaction continues a replica
 * that Litestream v0.5 started without breaking any of its recorded restore points.
 */
import assert from "node:assert/strict";
import { SqliteWriter } from "../helpers/sqlite_writer.ts";
import { walrust, WalrustProcess } from "../helpers/walrust.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { copyTree, VECTORS } from "../helpers/vectors.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { openReplica } from "../../src/storage/open.ts";
import { DbReplica } from "../../src/storage/replica.ts";
import { restore } from "../../mod.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Wait until `fn` holds, polling; fails naming `what` with the watcher's log. */
async function until(what: string, fn: () => boolean | Promise<boolean>, watch: WalrustProcess) {
  const deadline = Date.now() + 60_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${watch.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

Deno.test("validation inside watch: a replica that lost a file is found, re-snapshotted, then passes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-validate-" });
  const db = `${dir}/app.db`;
  const root = `${dir}/replica`;
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[sync]\nwal_sync_interval = 0.1\nvalidation_interval = 1\nsnapshot_interval = 0\n` +
      `[compaction]\nlevels = []\n[retention]\nenabled = false\n`,
  );
  const w = await SqliteWriter.start(db);
  const watch = new WalrustProcess(
    ["--config", `${dir}/walrust.toml`, "watch", db, "--bucket", `file://${root}`],
  );
  try {
    await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    for (let i = 1; i <= 20; i++) {
      await w.exec(`INSERT INTO t (v) VALUES ('row ${i}')`);
      await waitCaughtUp(db, root, "app.db");
    }
    await until(
      "a validation that passes",
      () => watch.stderr.includes("validation passed"),
      watch,
    );
    assert.doesNotMatch(watch.stderr, /validation failed/);

    // Lose a level-0 file in the middle of the chain (a bucket lifecycle rule, a bad script).
    const l0 = [...Deno.readDirSync(`${root}/app.db/ltx/0`)].map((e) => e.name)
      .filter((n) => /^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(n)).sort();
    await Deno.remove(`${root}/app.db/ltx/0/${l0[Math.floor(l0.length / 2)]}`);
    await w.exec("INSERT INTO t (v) VALUES ('after the loss')");
    await until("the failure", () => watch.stderr.includes("replica validation failed"), watch);
    await until(
      "a new snapshot",
      () => /snapshot .*reason="replica validation failed"/.test(watch.stderr),
      watch,
    );
    const passed = count(watch.stderr, "validation passed");
    await w.exec("INSERT INTO t (v) VALUES ('after the snapshot')");
    await until(
      "a validation that passes again",
      () => count(watch.stderr, "validation passed") > passed,
      watch,
    );

    await waitCaughtUp(db, root, "app.db");
    const out = `${dir}/restored.db`;
    await restore({ name: "app.db", output: out, bucket: `file://${root}` });
    assert.deepEqual(integrityCheck(out), ["ok"]);
    assert.equal(await dumpContent(out), await dumpContent(db));
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

interface TimestampRestore {
  name: string;
  timestamp: string;
  expect: "ok" | "error";
  restoredDbSha256?: string;
}

Deno.test("compaction continues a replica Litestream v0.5 started; its restore points still restore exactly", async () => {
  const set = `${VECTORS}/litestream-replica/`;
  const manifest = JSON.parse(await Deno.readTextFile(`${set}manifest.json`));
  const dir = await Deno.makeTempDir({ prefix: "walrust-lscompact-" });
  const root = `${dir}/bucket`;
  const bucket = `file://${root}`;
  await copyTree(`${set}replica`, `${root}/ls`);
  await Deno.mkdir(`${dir}/db`);
  const db = `${dir}/db/ls`;
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[sync]\nwal_sync_interval = 0.1\nl0_retention = 0\n` +
      `[compaction]\nlevels = ["1s", "2s", "3s"]\n[retention]\nenabled = false\n`,
  );
  const replica = await openReplica(bucket);
  const before = await DbReplica.of(replica, "ls").files();
  const lsMax = Math.max(...before.map((f) => f.maxTXID));
  const r0 = await walrust(["restore", "ls", "-o", db, "--bucket", bucket]);
  assert.equal(r0.code, 0, r0.stderr);
  const w = await SqliteWriter.start(db, { journalMode: "wal" });
  const watch = new WalrustProcess([
    "--config",
    `${dir}/walrust.toml`,
    "watch",
    db,
    "--bucket",
    bucket,
  ]);
  try {
    await watch.waitFor("watching");
    const tables = await w.query("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1");
    const table = String(tables[0][0]);
    await w.exec(`CREATE TABLE ours (id INTEGER PRIMARY KEY, v TEXT)`);
    for (let i = 0; i < 30; i++) await w.exec(`INSERT INTO ours (v) VALUES ('${"x".repeat(100)}')`);
    const finalTXID = await waitCaughtUp(db, root, "ls");
    const dbr = DbReplica.of(replica, "ls");
    await until(
      "level 3 to cover our writes",
      async () => (await dbr.ltxFiles(3)).some((f) => f.maxTXID >= finalTXID),
      watch,
    );
    const files = await dbr.files();
    // Our level-1 files continue Litestream's (after the snapshot our start took above it).
    const lsL1 = Math.max(...before.filter((f) => f.level === 1).map((f) => f.maxTXID));
    const ours = files.filter((f) => f.level === 1 && f.minTXID > lsL1);
    assert.ok(ours.length > 0, "our level-1 files follow Litestream's");
    assert.ok(!files.some((f) => f.level === 1 && f.minTXID <= lsL1 && f.maxTXID > lsL1));
    // Litestream wrote no level 3: ours merges its level-2 files (from TXID 1) with ours.
    const l3 = files.filter((f) => f.level === 3);
    assert.ok(l3.some((f) => f.minTXID === 1), "our L3 merged Litestream's level-2 files");
    assert.ok(l3.some((f) => f.maxTXID > lsMax), "and ours");
    assert.ok(table.length > 0);

    for (const t of manifest.timestampRestores as TimestampRestore[]) {
      if (t.expect !== "ok") continue;
      const out = `${dir}/${t.name}.db`;
      await restore({ name: "ls", output: out, bucket, at: t.timestamp });
      assert.equal(await sha256(out), t.restoredDbSha256, t.name);
    }
    const latest = `${dir}/latest.db`;
    await restore({ name: "ls", output: latest, bucket });
    assert.deepEqual(integrityCheck(latest), ["ok"]);
    assert.equal(await dumpContent(latest), await dumpContent(db));
    assert.doesNotMatch(watch.stderr, /ERROR/);
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
