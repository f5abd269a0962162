/**
 * `walrust restore` as a subprocess on a copy of the real Litestream v0.5 replica: outputs it
 * refuses (inside the file replica, a database a running walrust replicates), the recorded
 * checksum and --no-checksum-record, and the note printed when a corrupt file is planned around.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { walrust } from "../helpers/walrust.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";
import { copyTree, VECTORS } from "../helpers/vectors.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { FileStorage } from "../../src/storage/file.ts";
import { POST_APPLY_CHECKSUM_META } from "../../src/storage/layout.ts";

const SET = join(VECTORS, "litestream-replica");
const manifest = JSON.parse(Deno.readTextFileSync(join(SET, "manifest.json")));
const LATEST_SHA: string = manifest.latestRestore.restoredDbSha256;
const SNAP_26 = "ltx/9/0000000000000001-0000000000000026.ltx";
const L0_0D = "ltx/0/000000000000000d-000000000000000d.ltx";

interface Fixture {
  /** The bucket's root directory; the vector is the database "ls" in it. */
  root: string;
  bucket: string;
  /** An empty folder outside the replica. */
  out: string;
  dir: string;
}

async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-cli-" });
  try {
    const root = join(dir, "replica");
    await copyTree(join(SET, "replica"), join(root, "ls"));
    const out = join(dir, "out");
    await Deno.mkdir(out);
    await fn({ root, bucket: `file://${root}`, out, dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** Every file under `dir` with its sha256: the replica must come out of a refusal unchanged. */
async function treeHashes(dir: string, base = dir): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) Object.assign(out, await treeHashes(p, base));
    else out[p.slice(base.length)] = e.isSymlink ? "symlink" : await sha256File(p);
  }
  return out;
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Restored at the latest TXID: the vector's bytes, its content, integrity ok. */
async function checkLatest(path: string, expectDump: string): Promise<void> {
  assert.equal(await sha256File(path), LATEST_SHA);
  assert.equal(await dumpContent(path), expectDump);
  assert.deepEqual(integrityCheck(path), ["ok"]);
}

/** The content of the vector's final source database, as dumpContent prints it. */
async function expectedDump(dir: string): Promise<string> {
  const copy = join(dir, "source-final.db");
  await Deno.copyFile(join(SET, manifest.sourceFinal.file), copy);
  try {
    return await dumpContent(copy);
  } finally {
    await Deno.remove(copy);
  }
}

function flipMiddle(path: string): void {
  const bytes = Deno.readFileSync(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x10;
  Deno.writeFileSync(path, bytes);
}

// ---- inside the replica ----

Deno.test("restore refuses an output inside the file replica, directly or through symlinks", async () => {
  await withFixture(async ({ root, bucket, out, dir }) => {
    const before = await treeHashes(root);
    const ltx = join(root, "ls", SNAP_26);
    await Deno.symlink(join(root, "ls", "ltx", "0"), join(out, "linkdir"));
    await Deno.symlink(ltx, join(out, "linkfile.db"));
    const cases: [string, string | undefined][] = [
      [ltx, undefined], // an LTX file itself
      [join(root, "new.db"), undefined], // a new file at the root
      [join(out, "linkdir", "x.db"), join(root, "ls", "ltx", "0", "x.db")], // symlinked directory
      [join(out, "linkfile.db"), ltx], // a symlink to an LTX file
    ];
    for (const [target, resolved] of cases) {
      const r = await walrust(["restore", "ls", "-o", target, "--bucket", bucket, "--force"]);
      assert.equal(r.code, 6, `${target}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.ok(r.stderr.includes(target) && r.stderr.includes(root), r.stderr);
      if (resolved) assert.ok(r.stderr.includes(resolved), r.stderr);
    }
    assert.deepEqual(await treeHashes(root), before, "the replica was modified");
    assert.deepEqual(await names(out), ["linkdir", "linkfile.db"]);

    // A sibling whose name merely starts with the replica's is outside it.
    const sibling = `${root}-restored`;
    await Deno.mkdir(sibling);
    const ok = await walrust(["restore", "ls", "-o", `${sibling}/app.db`, "--bucket", bucket]);
    assert.equal(ok.code, 0, ok.stderr);
    await checkLatest(`${sibling}/app.db`, await expectedDump(dir));
  });
});

// ---- a running watcher ----

/** A child process holding the watcher lock (exclusive flock) on `path`, as walrust watch does. */
async function lockInChild(dir: string, path: string): Promise<Deno.ChildProcess> {
  const script = join(dir, "hold_lock.ts");
  await Deno.writeTextFile(
    script,
    `const f = Deno.openSync(Deno.args[0], { read: true });
if (!f.tryLockSync(true)) throw new Error("lock busy");
console.log("locked");
setInterval(() => {}, 1 << 30); // hold it until killed
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", script, path],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("locked")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`lock holder exited early: ${seen}`);
    seen += value;
  }
  reader.releaseLock();
  return child;
}

Deno.test("restore refuses a database a running walrust replicates; after it stops, --force works", async () => {
  await withFixture(async ({ bucket, out, dir }) => {
    const app = join(out, "app.db");
    // An older state first, so that the final restore visibly replaces it.
    const first = await walrust(["restore", "ls", "-o", app, "--bucket", bucket, "--txid", "0x14"]);
    assert.equal(first.code, 0, first.stderr);
    const older = await sha256File(app);
    assert.notEqual(older, LATEST_SHA);
    await Deno.symlink(app, join(out, "link.db"));

    const child = await lockInChild(dir, app);
    try {
      for (const [target, force] of [[app, false], [app, true], [join(out, "link.db"), true]]) {
        const args = ["restore", "ls", "-o", `${target}`, "--bucket", bucket];
        if (force) args.push("--force");
        const r = await walrust(args);
        assert.equal(r.code, 6, `${args.join(" ")}: ${r.stderr}`);
        assert.ok(
          r.stderr.includes(
            `${target} is being replicated by a running walrust process; stop it first ` +
              "(restoring over a live database would corrupt it)",
          ),
          r.stderr,
        );
      }
      assert.equal(await sha256File(app), older, "the live database was touched");
      assert.deepEqual(await names(out), ["app.db", "link.db"]);
    } finally {
      Deno.kill(child.pid, "SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    }

    const r = await walrust(["restore", "ls", "-o", app, "--bucket", bucket, "--force"]);
    assert.equal(r.code, 0, r.stderr);
    await checkLatest(app, await expectedDump(dir));
  });
});

// ---- the recorded checksum ----

Deno.test("a recorded-checksum mismatch exits 5 naming the object and --no-checksum-record", async () => {
  await withFixture(async ({ root, bucket, out, dir }) => {
    const key = `ls/${SNAP_26}`;
    const storage = new FileStorage(root);
    const body = await Deno.readFile(join(root, key));
    await storage.put(key, body, { [POST_APPLY_CHECKSUM_META]: "8000000000000001" });

    const bad = join(out, "bad.db");
    const r = await walrust(["restore", "ls", "-o", bad, "--bucket", bucket]);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.ok(r.stderr.includes(key), r.stderr);
    assert.ok(r.stderr.includes("8000000000000001"), r.stderr);
    assert.ok(r.stderr.includes("to restore anyway: --no-checksum-record"), r.stderr);
    assert.deepEqual(await names(out), []);

    const ok = await walrust([
      "restore",
      "ls",
      "-o",
      bad,
      "--bucket",
      bucket,
      "--no-checksum-record",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, "");
    await checkLatest(bad, await expectedDump(dir));

    const help = await walrust(["help", "restore"]);
    assert.match(help.stdout, /--no-checksum-record/);
  });
});

// ---- planning around a corrupt file ----

Deno.test("a corrupt newest snapshot: one note on stderr, the same database restored", async () => {
  await withFixture(async ({ root, bucket, out, dir }) => {
    flipMiddle(join(root, "ls", SNAP_26));
    const want = await expectedDump(dir);
    for (const extra of [[], ["--txid", "0x26"]]) {
      const path = join(out, `app${extra.length}.db`);
      const r = await walrust(["restore", "ls", "-o", path, "--bucket", bucket, ...extra]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0],
        /^note: ls\/ltx\/9\/0000000000000001-0000000000000026\.ltx is corrupt \(.+\); restoring without it from snapshot ls\/ltx\/9\/0000000000000001-000000000000001b\.ltx and 2 later file\(s\)$/,
      );
      assert.match(r.stdout, /at TXID 38 /);
      await checkLatest(path, want);
    }
    assert.deepEqual(await names(out), ["app0.db", "app2.db"]);
  });
});

Deno.test("a corrupt L0 file nothing else covers: exit 5 naming it, no output", async () => {
  await withFixture(async ({ root, bucket, out }) => {
    flipMiddle(join(root, "ls", L0_0D));
    const r = await walrust([
      "restore",
      "ls",
      "-o",
      join(out, "x.db"),
      "--bucket",
      bucket,
      "--txid",
      "0x10",
    ]);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.ok(r.stderr.includes(`ls/${L0_0D}`), r.stderr);
    assert.ok(!r.stderr.includes("note:"), r.stderr);
    assert.deepEqual(await names(out), []);
  });
});
