import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFoundError, StorageError } from "../../src/errors.ts";
import { FileStorage, isInternalName } from "../../src/storage/file.ts";
import { parseTimestampMeta, timestampMeta } from "../../src/storage/layout.ts";
import { readAll } from "../../src/storage/port.ts";
import { storageContract } from "./contract.ts";

storageContract({
  name: "file",
  async make() {
    const dir = await Deno.makeTempDir({ prefix: "walrust-file-contract-" });
    return {
      storage: new FileStorage(dir),
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});

/** Run `fn` with a FileStorage rooted at `<tmp>/root`; `tmp` is removed afterwards. */
async function withStorage(fn: (s: FileStorage, root: string, tmp: string) => Promise<void>) {
  const tmp = await Deno.makeTempDir({ prefix: "walrust-file-test-" });
  const root = join(tmp, "root");
  await Deno.mkdir(root);
  try {
    await fn(new FileStorage(root), root, tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Every file name under `dir`, recursively, as relative paths (raw disk view). */
async function diskFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, rel))) {
    const p = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await diskFiles(dir, p));
    else out.push(p);
  }
  return out.sort();
}

async function keys(s: FileStorage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of s.list(prefix)) out.push(o.key);
  return out;
}

Deno.test("file: description and root are absolute", () => {
  const s = new FileStorage("relative/dir");
  assert.equal(s.root, join(Deno.cwd(), "relative/dir"));
  assert.equal(s.description, `file://${join(Deno.cwd(), "relative/dir")}`);
});

Deno.test("file: keys escaping the root are rejected", async () => {
  await withStorage(async (s, root, tmp) => {
    await Deno.writeTextFile(join(tmp, "x"), "outside");
    const bad = [
      "../x",
      "/abs",
      "a/../../b",
      "..",
      ".",
      "a/./b",
      "a//b",
      "a/",
      "",
      "a\\..\\..\\b",
      "x\0y",
      "a/.b.1-0123456789abcdef.tmp",
      ".b.12.walrust-meta",
    ];
    for (const key of bad) {
      const ops: [string, () => Promise<unknown>][] = [
        ["put", () => s.put(key, Uint8Array.of(1))],
        ["get", () => s.get(key)],
        ["head", () => s.head(key)],
        ["delete", () => s.delete(["ok", key])],
      ];
      for (const [op, run] of ops) {
        await assert.rejects(run, (err: unknown) => {
          assert.ok(err instanceof StorageError, `${op} ${JSON.stringify(key)}: StorageError`);
          assert.ok(!(err instanceof NotFoundError), `${op}: not a NotFoundError`);
          assert.equal(err.transient, false);
          assert.ok(err.message.includes(JSON.stringify(key)), `message names the key`);
          return true;
        });
      }
    }
    // Nothing was written anywhere, and the file outside the root is untouched.
    assert.deepEqual(await diskFiles(tmp), ["x"]);
    assert.equal(await Deno.readTextFile(join(tmp, "x")), "outside");
    assert.deepEqual(await keys(s, "../"), []);
    assert.deepEqual(await keys(s, ".."), []);
    assert.deepEqual(await keys(s, "/"), []);
    assert.deepEqual(await diskFiles(root), []);
  });
});

Deno.test("file: an interrupted write leaves no partial object", async () => {
  await withStorage(async (s, root) => {
    const v1 = new Uint8Array(100_000).fill(7);
    await s.put("db/obj", v1, { "walrust-v": "1", ...timestampMeta(1_600_000_000_000) });
    const boom = new Error("body failed halfway");
    async function* failing(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < 4; i++) yield new Uint8Array(65_536).fill(9);
      throw boom;
    }
    // The body's own error reaches the caller unchanged.
    await assert.rejects(() => s.put("db/obj", failing(), { "walrust-v": "2" }), (e) => e === boom);
    await assert.rejects(() => s.put("db/new", failing()), (e) => e === boom);
    const info = await s.head("db/obj");
    assert.equal(info?.size, 100_000);
    assert.equal(info?.meta?.["walrust-v"], "1");
    assert.equal(info?.lastModified.getTime(), 1_600_000_000_000);
    assert.deepEqual(await readAll(await s.get("db/obj")), v1);
    assert.equal(await s.head("db/new"), undefined);
    assert.deepEqual(await keys(s, ""), ["db/obj"]);
    const leftovers = (await diskFiles(root)).filter((p) => p.endsWith(".tmp"));
    assert.deepEqual(leftovers, [], "temp files are removed after a failed put");
  });
});

Deno.test("file: a killed writer leaves the previous version intact", async () => {
  await withStorage(async (s, root, tmp) => {
    const v1 = new Uint8Array(50_000).fill(3);
    await s.put("db/obj", v1, { "walrust-v": "1" });
    const script = join(tmp, "writer.ts");
    const fileTs = new URL("../../src/storage/file.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { FileStorage } from ${JSON.stringify(fileTs)};
const s = new FileStorage(${JSON.stringify(root)});
async function* slow() {
  for (let i = 0; i < 100000; i++) {
    yield new Uint8Array(65536).fill(5);
    await new Promise((r) => setTimeout(r, 5));
  }
}
await s.put("db/obj", slow(), { "walrust-v": "2" });
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-config", "--no-lock", script],
      cwd: tmp,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      // Wait until the child is mid-write: a temp file exists and has data.
      const deadline = Date.now() + 30_000;
      let temp: string | undefined;
      while (temp === undefined) {
        assert.ok(Date.now() < deadline, "the writer never started writing");
        for await (const e of Deno.readDir(join(root, "db"))) {
          if (e.name.endsWith(".tmp") && (await Deno.stat(join(root, "db", e.name))).size > 0) {
            temp = e.name;
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      child.kill("SIGKILL");
      await child.stderr.cancel();
      await child.status;
    }
    assert.deepEqual(await readAll(await s.get("db/obj")), v1);
    const info = await s.head("db/obj");
    assert.equal(info?.size, 50_000);
    assert.equal(info?.meta?.["walrust-v"], "1");
    assert.deepEqual(await keys(s, ""), ["db/obj"], "the crash leftover is not listed");
    assert.ok((await diskFiles(root)).some((p) => p.endsWith(".tmp")), "the crash left a temp");
    assert.equal(await s.cleanupTemp("db/", 60_000), 0, "a fresh temp file is kept");
    assert.ok(await s.cleanupTemp("db/", 0) >= 1);
    assert.deepEqual((await diskFiles(root)).filter((p) => p.endsWith(".tmp")), []);
    assert.equal((await s.head("db/obj"))?.meta?.["walrust-v"], "1", "cleanup keeps live meta");
  });
});

Deno.test("file: mtime equals litestream-timestamp", async () => {
  await withStorage(async (s, root) => {
    for (const ms of [1_700_000_000_123, 1_600_000_000_000, 86_400_001]) {
      await s.put("db/ltx/0/k", Uint8Array.of(1, 2, 3), timestampMeta(ms));
      const st = await Deno.stat(join(root, "db/ltx/0/k"));
      assert.equal(st.mtime?.getTime(), ms);
      const info = await s.head("db/ltx/0/k");
      assert.equal(info?.lastModified.getTime(), ms);
      assert.equal(info?.meta?.["litestream-timestamp"], timestampMeta(ms)["litestream-timestamp"]);
      const listed = [];
      for await (const o of s.list("db/")) listed.push(o);
      assert.equal(listed[0].lastModified.getTime(), ms);
    }
    // The canonical timestamp lives only in the mtime: no sidecar is written for it.
    assert.deepEqual(await diskFiles(root), ["db/ltx/0/k"]);
    // A finer timestamp keeps its exact text (sidecar) and the ms part as mtime.
    await s.put("db/n", Uint8Array.of(1), { "litestream-timestamp": "2023-11-14T22:13:20.1239Z" });
    assert.equal((await Deno.stat(join(root, "db/n"))).mtime?.getTime(), 1_700_000_000_123);
    const n = await s.head("db/n");
    assert.equal(n?.meta?.["litestream-timestamp"], "2023-11-14T22:13:20.1239Z");
    // Without a timestamp, head derives one from the mtime.
    const before = Date.now() - 2000;
    await s.put("db/plain", Uint8Array.of(1));
    const p = parseTimestampMeta((await s.head("db/plain"))?.meta?.["litestream-timestamp"]);
    assert.ok(p !== undefined && p >= before && p <= Date.now() + 2000);
  });
});

Deno.test("file: temp and sidecar files are never listed", async () => {
  await withStorage(async (s, root) => {
    await s.put("db/a", Uint8Array.of(1), { "walrust-post-apply-checksum": "abc" });
    await s.put("db/b", Uint8Array.of(2));
    const onDisk = await diskFiles(root);
    assert.ok(onDisk.some((p) => p.startsWith("db/.a.") && p.endsWith(".walrust-meta")), "sidecar");
    const freshTemp = `.c.${Date.now().toString(36)}-0123456789abcdef.tmp`;
    const oldTemp = `.c.${(Date.now() - 3_600_000).toString(36)}-0123456789abcdef.tmp`;
    const orphan = ".gone.12345.walrust-meta";
    for (const name of [freshTemp, oldTemp, orphan]) {
      await Deno.writeTextFile(join(root, "db", name), "{}");
    }
    await Deno.utime(join(root, "db", orphan), new Date(0), new Date(0));
    assert.deepEqual(await keys(s, ""), ["db/a", "db/b"]);
    assert.deepEqual(await keys(s, "db/."), []);
    assert.ok([freshTemp, oldTemp, orphan].every(isInternalName));
    assert.ok(!isInternalName("0000000000000001-0000000000000001.ltx"));
    // Default cleanup removes the old temp file and the orphaned sidecar only.
    assert.equal(await s.cleanupTemp(""), 2);
    const left = await diskFiles(join(root, "db"));
    assert.ok(left.includes(freshTemp));
    assert.ok(!left.includes(oldTemp) && !left.includes(orphan));
    assert.equal((await s.head("db/a"))?.meta?.["walrust-post-apply-checksum"], "abc");
    // Delete removes the object's sidecar too.
    await s.delete(["db/a"]);
    assert.deepEqual(
      (await diskFiles(root)).filter((p) => p.endsWith(".walrust-meta")),
      [],
    );
  });
});

Deno.test("file: list orders by UTF-8 bytes beyond ASCII", async () => {
  await withStorage(async (s) => {
    const want = ["u/z", "u/\u00e9", "u/\uff21", "u/\u{1f600}"]; // 7a, c3.., ef.., f0..
    for (const k of [...want].reverse()) await s.put(k, Uint8Array.of(1));
    assert.deepEqual(await keys(s, "u/"), want);
  });
});

Deno.test("file: a directory at a key is not an object", async () => {
  await withStorage(async (s, root) => {
    await Deno.mkdir(join(root, "d/sub"), { recursive: true });
    await assert.rejects(() => s.get("d/sub"), NotFoundError);
    assert.equal(await s.head("d/sub"), undefined);
    await s.delete(["d/sub"]);
    assert.ok((await Deno.stat(join(root, "d/sub"))).isDirectory, "delete leaves directories");
    assert.deepEqual(await keys(s, ""), []);
  });
});

Deno.test("file: a sidecar of another version is ignored", async () => {
  await withStorage(async (s, root) => {
    await s.put("k", Uint8Array.of(1, 2, 3), { "walrust-x": "old" });
    // Another program replaces the file (new inode, same size).
    await Deno.writeFile(join(root, "k.new"), Uint8Array.of(4, 5, 6));
    await Deno.rename(join(root, "k.new"), join(root, "k"));
    assert.equal((await s.head("k"))?.meta?.["walrust-x"], undefined);
    // Rewritten in place (same inode, other size).
    await s.put("j", Uint8Array.of(1, 2, 3), { "walrust-x": "old" });
    await Deno.writeFile(join(root, "j"), Uint8Array.of(4, 5, 6, 7));
    assert.equal((await s.head("j"))?.meta?.["walrust-x"], undefined);
    assert.equal((await s.head("j"))?.size, 4);
  });
});

Deno.test("file: filesystem errors become StorageError naming the key", async () => {
  await withStorage(async (s) => {
    await s.put("f/x", Uint8Array.of(1));
    await assert.rejects(() => s.put("f/x/y", Uint8Array.of(2)), (err: unknown) => {
      assert.ok(err instanceof StorageError && !(err instanceof NotFoundError));
      assert.equal(err.transient, false);
      assert.ok(err.message.includes("put f/x/y"), err.message);
      return true;
    });
    // Below a file, nothing exists: reads are "not found", not failures.
    assert.equal(await s.head("f/x/y"), undefined);
    await assert.rejects(() => s.get("f/x/y"), NotFoundError);
    await s.delete(["f/x/y"]);
    assert.deepEqual(await keys(s, "f/x/"), []);
  });
});

Deno.test({
  name: "file: permission denied is a StorageError",
  ignore: Deno.build.os === "windows" || Deno.uid() === 0, // root ignores file modes
  async fn() {
    await withStorage(async (s, root) => {
      await s.put("ro/a", Uint8Array.of(1));
      await Deno.chmod(join(root, "ro"), 0o555);
      try {
        await assert.rejects(() => s.put("ro/b", Uint8Array.of(1)), (err: unknown) => {
          assert.ok(err instanceof StorageError && !(err instanceof NotFoundError));
          assert.equal(err.transient, false);
          assert.ok(err.message.includes("ro/b"));
          return true;
        });
      } finally {
        await Deno.chmod(join(root, "ro"), 0o755);
      }
    });
  },
});

/**
 * Descriptors of this process open on files under `dir` (Linux), to catch leaked handles. Other
 * tests run in the same process at once, so only descriptors on this test's files count.
 */
function openFdsUnder(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(dir)) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

Deno.test({
  name: "file: get closes the file on early break and error",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await withStorage(async (s, root) => {
      await s.put("big", new Uint8Array(1 << 20));
      const before = openFdsUnder(root);
      const unread = await s.get("big"); // never iterated: holds nothing
      for await (const chunk of await s.get("big")) {
        assert.equal(chunk.length, 65_536);
        break;
      }
      await assert.rejects(async () => {
        for await (const _ of await s.get("big")) throw new Error("consumer failed");
      });
      let n = 0;
      for await (const c of await s.get("big", { offset: 10, length: 200_000 })) n += c.length;
      assert.equal(n, 200_000);
      assert.equal(openFdsUnder(root), before);
      assert.equal(before, 0);
      assert.ok(unread);
    });
  },
});

Deno.test("file: put creates the root and parent directories", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "walrust-file-test-" });
  try {
    const s = new FileStorage(join(tmp, "not/yet/there"));
    await s.put("app.db/ltx/0/k", Uint8Array.of(1, 2));
    assert.deepEqual(await readAll(await s.get("app.db/ltx/0/k")), Uint8Array.of(1, 2));
    assert.deepEqual(await diskFiles(tmp), ["not/yet/there/app.db/ltx/0/k"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
