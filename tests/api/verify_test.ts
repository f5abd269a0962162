/**
 * `verify()` from mod.ts on copies of the golden Litestream v0.5 replica: the report of a good
 * replica, of one whose newest snapshot is corrupt (an integrity failure, with the plan that
 * restores without it), and the temporary folder refused inside the replica.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, ExitCode, verify } from "../../mod.ts";
import { copyTree, rejects, VECTORS } from "../helpers/vectors.ts";
import { ltxHeader, replicaFiles } from "../helpers/replica.ts";

const SET = join(VECTORS, "litestream-replica");
const manifest = JSON.parse(Deno.readTextFileSync(join(SET, "manifest.json")));
const LATEST = parseInt(manifest.latestRestore.restoredTXID, 16);
const SNAP_26 = "ls/ltx/9/0000000000000001-0000000000000026.ltx";
const SNAP_1B = "ls/ltx/9/0000000000000001-000000000000001b.ltx";

async function withReplica(fn: (root: string, tmp: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-api-" });
  try {
    const root = join(dir, "replica");
    await copyTree(join(SET, "replica"), join(root, "ls"));
    const tmp = join(dir, "tmp");
    await Deno.mkdir(tmp);
    await fn(root, tmp);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "verify left its temporary folder behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("verify(): a good replica reports ok with the latest TXID, the window and the plan's files", async () => {
  await withReplica(async (root, tmp) => {
    const r = await verify({ name: "ls", bucket: `file://${root}`, tempDir: tmp });
    assert.equal(r.ok, true);
    assert.equal(r.exitCode, ExitCode.Ok);
    assert.deepEqual(r.target, { kind: "latest" });
    assert.equal(r.txid, LATEST);
    assert.equal(r.filesChecked, 1); // the newest snapshot holds the latest state
    assert.equal(r.bytes, Deno.statSync(join(root, SNAP_26)).size);
    assert.equal(r.window.oldest?.txid, 1);
    assert.equal(r.window.newest?.txid, LATEST);
    assert.ok(r.window.oldest!.time! < r.window.newest!.time!);
    // The state's time is the earliest header time of the files ending at it (the L0 that
    // committed it), not the later snapshot's.
    const ending = (await replicaFiles(root, "ls")).filter((f) => f.maxTXID === LATEST);
    const times = await Promise.all(ending.map(async (f) => (await ltxHeader(f.path)).timestamp));
    assert.ok(ending.length > 1 && new Set(times).size > 1, "the vector has several times");
    assert.equal(r.timestamp?.getTime(), Math.min(...times));
    assert.equal(r.window.newest?.time?.getTime(), Math.min(...times));
    assert.deepEqual(r.errors, []);
    assert.equal(r.fallback, undefined);
  });
});

Deno.test("verify(): a corrupt newest snapshot is exit 5 naming it, with the older plan that restores", async () => {
  await withReplica(async (root, tmp) => {
    const path = join(root, SNAP_26);
    const bytes = await Deno.readFile(path);
    bytes[bytes.length >> 1] ^= 0x01;
    await Deno.writeFile(path, bytes);
    const r = await verify({ name: "ls", bucket: `file://${root}`, tempDir: tmp });
    assert.equal(r.ok, false);
    assert.equal(r.exitCode, ExitCode.Integrity);
    assert.equal(r.restored, true);
    assert.equal(r.txid, LATEST);
    assert.deepEqual(r.errors.map((e) => [e.key, e.exitCode]), [[SNAP_26, 5]]);
    assert.match(r.errors[0].error, /checksum/);
    assert.equal(r.fallback?.restorable, true);
    assert.equal(r.fallback?.plan?.files[0].key, SNAP_1B);
    assert.equal(r.fallback?.plan?.txid, LATEST);
  });
});

Deno.test("verify(): a temporary folder inside the file replica is refused (ConfigError), nothing left there", async () => {
  await withReplica(async (root) => {
    const before = [...Deno.readDirSync(root)].map((e) => e.name);
    await rejects(
      () => verify({ name: "ls", bucket: `file://${root}`, tempDir: root }),
      ConfigError,
      "inside the file replica",
    );
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), before);
  });
});
