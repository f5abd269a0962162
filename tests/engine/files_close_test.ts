/**
 * A deleted database of a watched directory gives its descriptors back, checked in the watcher's
 * /proc/<pid>/fd, and closing them harms nothing: a new database created at the same path (its
 * app holding frames in the new `-wal`) keeps its WAL and replicates, and a database renamed
 * inside the folder is picked up under its new name with the watcher's locks on it.
 */
import assert from "node:assert/strict";
import { restore } from "../../mod.ts";
import { cliSql } from "../helpers/apps.ts";
import { assertHoldsLocks, deletedFds } from "../helpers/proc.ts";
import { waitCaughtUp } from "../helpers/replica.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";
import { WalrustProcess } from "../helpers/walrust.ts";

async function until(what: string, fn: () => boolean | Promise<boolean>, w: WalrustProcess) {
  const deadline = Date.now() + 30_000;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${w.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The watcher's descriptors on deleted files named `name` (any sidecar) in `data`. */
async function heldDeleted(pid: number, data: string, name: string): Promise<string[]> {
  return (await deletedFds(pid)).filter((l) => l.includes(`${data}/${name}`));
}

function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

function removeDb(path: string): void {
  for (const f of ["", "-wal", "-shm"]) {
    try {
      Deno.removeSync(path + f);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

Deno.test("a deleted watched database closes its files; a new one at its path and a renamed one replicate safely", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-files-close-" });
  const data = `${dir}/data`;
  const root = `${dir}/replica`;
  await Deno.mkdir(data);
  await Deno.writeTextFile(
    `${dir}/walrust.toml`,
    `[s3]\nbucket = "file://${root}"\n[sync]\nwal_sync_interval = 0.1\n` +
      `[[databases]]\npath = "data/*.db"\nwatch = true\n`,
  );
  const watch = new WalrustProcess(["--config", `${dir}/walrust.toml`, "watch", "--no-metrics"]);
  let app: SqliteWriter | undefined;
  try {
    await watch.waitFor("watching");
    const pid = watch.pid;
    // Tenants come and go: each leaves nothing open behind.
    const base = fdCount(pid);
    for (let i = 0; i < 4; i++) {
      const db = `${data}/t${i}.db`;
      await cliSql(db, "PRAGMA journal_mode=WAL; CREATE TABLE t (v); INSERT INTO t VALUES (1)");
      await waitCaughtUp(db, root, `t${i}.db`);
      removeDb(db);
      await until(
        `t${i}.db's descriptors closed`,
        async () => (await heldDeleted(pid, data, `t${i}.db`)).length === 0,
        watch,
      );
    }
    assert.ok(fdCount(pid) <= base + 2, `fds ${base} -> ${fdCount(pid)}`);

    // The same name again, while the watcher still holds the old file: frozen (SIGSTOP) so the
    // old set closes only after the new database and its app's uncheckpointed -wal exist.
    const x = `${data}/x.db`;
    await cliSql(x, "PRAGMA journal_mode=WAL; CREATE TABLE t (v); INSERT INTO t VALUES ('old')");
    await waitCaughtUp(x, root, "x.db");
    Deno.kill(pid, "SIGSTOP");
    try {
      removeDb(x);
      app = await SqliteWriter.start(x, { autocheckpoint: 0 });
      await app.exec("CREATE TABLE t (v)");
      for (let i = 0; i < 20; i++) await app.exec(`INSERT INTO t VALUES ('new ${i}')`);
      assert.ok((await heldDeleted(pid, data, "x.db")).length > 0, "the old x.db is still held");
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    const wal = Deno.statSync(`${x}-wal`);
    assert.ok(wal.size > 0);
    await until(
      "the old x.db closed",
      async () => (await heldDeleted(pid, data, "x.db")).length === 0,
      watch,
    );
    const after = Deno.statSync(`${x}-wal`);
    assert.equal(after.ino, wal.ino, "the new database's -wal is the same file");
    assert.ok(after.size >= wal.size, "and it kept its frames");
    await app.exec("INSERT INTO t VALUES ('after')");
    await waitCaughtUp(x, root, "x.db");
    await assertHoldsLocks(pid, x, "the new x.db");

    // A tenant renamed inside the folder (with its sidecars, the app stopped): its new name
    // replicates from the same file, with the watcher's locks on it.
    const r = `${data}/r.db`;
    const s = `${data}/s.db`;
    await cliSql(r, "PRAGMA journal_mode=WAL; CREATE TABLE t (v); INSERT INTO t VALUES ('r')");
    await waitCaughtUp(r, root, "r.db");
    Deno.kill(pid, "SIGSTOP");
    try {
      Deno.renameSync(r, s);
      for (const f of ["-wal", "-shm"]) {
        try {
          Deno.renameSync(r + f, s + f);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    await cliSql(s, "INSERT INTO t VALUES ('s')");
    await waitCaughtUp(s, root, "s.db");
    await assertHoldsLocks(pid, s, "the renamed s.db");

    const source = await dumpContent(x);
    await app.close();
    app = undefined;
    watch.kill("SIGTERM");
    assert.equal(await watch.wait(), 0, watch.stderr);
    for (const [name, path] of [["x.db", x], ["s.db", s]]) {
      const out = `${dir}/${name}.restored`;
      await restore({ name, output: out, bucket: `file://${root}` });
      assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
      assert.equal(await dumpContent(out), name === "x.db" ? source : await dumpContent(path));
    }
    assert.match(await dumpContent(x), /after/);
  } finally {
    await app?.close();
    watch.kill("SIGKILL");
    await watch.wait();
    await Deno.remove(dir, { recursive: true });
  }
});
