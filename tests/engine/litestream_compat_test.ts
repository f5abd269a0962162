/**
 * Compatibility through the CLI: `walrust restore` and `walrust list` on the replica Litestream
 * v0.5 wrote (tests/fixtures/vectors/litestream-replica), and our own replica's files checked
 * against Litestream's layout and format rules.
 */
import assert from "node:assert/strict";
import { walrust } from "../helpers/walrust.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { copyTree, VECTORS } from "../helpers/vectors.ts";

const SET = `${VECTORS}/litestream-replica/`;

interface TimestampRestore {
  name: string;
  timestamp: string;
  expect: "ok" | "error";
  restoredDbSha256?: string;
}

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Copy the replica without modification times, as a git checkout does. */
async function copyReplica(): Promise<{ dir: string; bucket: string }> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-compat-" });
  // The replica lives in its own folder: restore refuses an output inside the replica.
  await copyTree(`${SET}replica`, `${dir}/bucket/ls`);
  return { dir, bucket: `file://${dir}/bucket` };
}

Deno.test("walrust restore reproduces Litestream's replica byte for byte: latest and every recorded moment", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(`${SET}manifest.json`));
  const { dir, bucket } = await copyReplica();
  try {
    const latest = await walrust(["restore", "ls", "-o", `${dir}/latest.db`, "--bucket", bucket]);
    assert.equal(latest.code, 0, latest.stderr);
    assert.equal(await sha256(`${dir}/latest.db`), manifest.sourceFinal.sha256);
    assert.deepEqual(integrityCheck(`${dir}/latest.db`), ["ok"]);
    for (const t of manifest.timestampRestores as TimestampRestore[]) {
      const out = `${dir}/${t.name}.db`;
      const r = await walrust([
        "restore",
        "ls",
        "-o",
        out,
        "--bucket",
        bucket,
        "--point-in-time",
        t.timestamp,
      ]);
      if (t.expect === "ok") {
        assert.equal(r.code, 0, `${t.name}: ${r.stderr}`);
        assert.equal(await sha256(out), t.restoredDbSha256, t.name);
      } else if (t.name.startsWith("before")) {
        assert.equal(r.code, 6, `${t.name} must be refused with exit 6: ${r.stderr}`);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      } else {
        // Litestream refuses a time after the newest file; we restore the latest state and say so.
        assert.equal(r.code, 0, `${t.name}: ${r.stderr}`);
        assert.match(r.stderr, /after the newest backup/);
        assert.equal(await sha256(out), manifest.sourceFinal.sha256);
      }
    }
    for (const t of manifest.txidRestores) {
      const out = `${dir}/txid-${t.txid}.db`;
      const r = await walrust(["restore", "ls", "-o", out, "--bucket", bucket, "--txid", t.txid]);
      if (t.expect === "error") {
        assert.equal(r.code, 6, `txid ${t.txid} must be refused: ${r.stderr}`);
        continue;
      }
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256(out), t.restoredDbSha256, `txid ${t.txid}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("walrust list reads Litestream's replica: TXID, snapshots and level counts", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(`${SET}manifest.json`));
  const { dir, bucket } = await copyReplica();
  try {
    const r = await walrust(["list", "--bucket", bucket, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const [db] = JSON.parse(r.stdout);
    assert.equal(db.name, "ls");
    assert.equal(db.txid, manifest.latestRestore.restoredTXID);
    assert.equal(db.snapshots, manifest.fileCounts["9"]);
    assert.equal(db.l0, manifest.fileCounts["0"]);
    assert.equal(db.l1, manifest.fileCounts["1"]);
    assert.equal(db.l2, manifest.fileCounts["2"]);
    const one = await walrust(["list", "ls", "--bucket", bucket]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout.trim().split("\n").length, 1 + 38 + 11 + 4 + 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore refuses an existing output without --force (exit 6, untouched) and replaces it with --force", async () => {
  const { dir, bucket } = await copyReplica();
  try {
    await Deno.writeTextFile(`${dir}/out.db`, "precious");
    const r = await walrust(["restore", "ls", "-o", `${dir}/out.db`, "--bucket", bucket]);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/out.db`), "precious");
    const f = await walrust([
      "restore",
      "ls",
      "-o",
      `${dir}/out.db`,
      "--bucket",
      bucket,
      "--force",
    ]);
    assert.equal(f.code, 0, f.stderr);
    assert.deepEqual(integrityCheck(`${dir}/out.db`), ["ok"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
