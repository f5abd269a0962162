import assert from "node:assert/strict";
import { runLtxCommand } from "../../src/cli/ltx.ts";
import { ConfigError, RestoreError } from "../../src/errors.ts";

const VECTORS = new URL("../fixtures/vectors/", import.meta.url).pathname;
const SNAP = VECTORS + "ltx/c4096-chain/0000000000000001-0000000000000001.ltx";
const INC = VECTORS + "ltx/c4096-chain/0000000000000002-0000000000000002.ltx";
const LEGACY = VECTORS + "ltx/legacy4096/0000000000000001-0000000000000001.ltx";
const BAD = VECTORS + "corrupt/pages-out-of-order.ltx";

async function run(args: string[], verbose = false) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runLtxCommand(args, {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    verbose,
  });
  return { code, out, err };
}

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-cli-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ltx verify: valid files print ok and exit 0", async () => {
  const r = await run(["verify", SNAP, INC, LEGACY]);
  assert.equal(r.code, 0);
  assert.deepEqual(r.out, ["ok"]);
  const v = await run(["verify", SNAP], true);
  assert.equal(v.out.length, 2);
  assert.match(v.out[0], /: ok \(11 pages/);
});

Deno.test("ltx verify: a corrupt file is named with its problem, exit 5", async () => {
  const r = await run(["verify", SNAP, BAD]);
  assert.equal(r.code, 5);
  assert.equal(r.out.length, 1);
  assert.equal(r.out[0], `${BAD}: page 3 after page 4: pages must ascend`);
});

Deno.test("ltx verify: missing file, directory, truncated and random bytes", async () => {
  await withDir(async (dir) => {
    const trunc = `${dir}/trunc.ltx`;
    const bytes = await Deno.readFile(INC);
    await Deno.writeFile(trunc, bytes.subarray(0, 5000));
    const rnd = `${dir}/random.ltx`;
    await Deno.writeFile(rnd, crypto.getRandomValues(new Uint8Array(3000)));
    const r = await run(["verify", `${dir}/missing.ltx`, dir, trunc, rnd]);
    assert.equal(r.code, 5);
    assert.equal(r.out.length, 4);
    assert.equal(r.out[0], `${dir}/missing.ltx: no such file`);
    assert.equal(r.out[1], `${dir}: is a directory`);
    assert.match(r.out[2], new RegExp(`^${trunc}: page \\d+ at offset \\d+: .*past the end`));
    assert.match(r.out[3], new RegExp(`^${rnd}: magic 0x[0-9a-f]{8}: not an LTX file`));
    const missingOnly = await run(["verify", `${dir}/missing.ltx`]);
    assert.equal(missingOnly.code, 1);
  });
});

Deno.test("ltx dump --json: parses, with 64-bit values as 16 hex digits", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(VECTORS + "ltx/manifest.json"));
  const want = manifest.files.find((f: { file: string }) =>
    f.file === "legacy4096/0000000000000001-0000000000000001.ltx"
  );
  const r = await run(["dump", LEGACY, "--json"]);
  assert.equal(r.code, 0);
  assert.equal(r.out.length, 1);
  const d = JSON.parse(r.out[0]);
  assert.equal(d.size, want.size);
  assert.equal(d.encoding, "legacy");
  assert.equal(d.header.minTXID, want.header.minTXID);
  assert.equal(d.header.timestamp, want.header.timestamp);
  assert.equal(d.header.nodeID, want.header.nodeID);
  assert.equal(d.trailer.fileChecksum, want.fileChecksum);
  assert.equal(d.trailer.postApplyChecksum, want.postApplyChecksum);
  assert.equal(d.pages.length, want.pageCount);
  for (let i = 0; i < d.pages.length; i++) {
    const [got, exp] = [d.pages[i], want.frames[i]];
    assert.equal(got.pgno, exp.pgno);
    assert.equal(got.flags, exp.pageHeaderFlags);
    assert.equal(got.offset, exp.offset);
    assert.equal(got.compressedSize, exp.compressedSize);
    assert.equal(got.lz4Frame.flg, exp.lz4Frame.flg);
  }
  assert.deepEqual(d.index[0], { pgno: 1, offset: 100, size: want.frames[0].frameSize });
});

Deno.test("ltx dump: text output lists header, frames and trailer", async () => {
  const r = await run(["dump", SNAP]);
  assert.equal(r.code, 0);
  const text = r.out.join("\n");
  assert.match(text, /commit +11/);
  assert.match(text, /minTXID +0000000000000001/);
  assert.match(text, /^ +1 0x0001 +100 +337 +327$/m);
  assert.match(text, /fileChecksum +ba3673e9f6dd2748/);
  assert.match(text, /index: 11 entries/);
});

Deno.test("ltx dump: a corrupt file throws an LtxError naming it", async () => {
  await assert.rejects(run(["dump", BAD]), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.ok(e.message.startsWith(`${BAD}: `));
    return true;
  });
  await assert.rejects(run(["dump", SNAP, INC]), ConfigError);
});

Deno.test("ltx list: one row per file, text and JSON", async () => {
  const r = await run(["list", SNAP, INC]);
  assert.equal(r.code, 0);
  assert.equal(r.out.length, 3);
  assert.match(r.out[0], /^FILE +MIN_TXID +MAX_TXID +COMMIT +PAGE_SIZE +PAGES +TIMESTAMP +SIZE$/);
  assert.match(r.out[2], /0000000000000002 +0000000000000002 +38 +4096 +32 +2026-\S+Z +90409$/);
  const j = await run(["list", "--json", SNAP, INC]);
  const rows = JSON.parse(j.out[0]);
  assert.deepEqual(rows[0], {
    file: SNAP,
    minTXID: "0000000000000001",
    maxTXID: "0000000000000001",
    commit: 11,
    pageSize: 4096,
    pages: 11,
    timestamp: "2026-01-05T10:01:01.292Z",
    size: 25067,
  });
  const bad = await run(["list", SNAP, BAD]);
  assert.equal(bad.code, 5);
  assert.equal(bad.out.length, 2);
  assert.equal(bad.err.length, 1);
  assert.ok(bad.err[0].startsWith(`${BAD}: `));
});

Deno.test("ltx apply: builds the database; refuses an existing OUT without --force", async () => {
  await withDir(async (dir) => {
    const out = `${dir}/out.db`;
    const r = await run(["apply", "--db", out, SNAP, INC]);
    assert.equal(r.code, 0);
    assert.match(r.out[0], /applied 2 file\(s\) up to TXID 0000000000000002: 38 pages of 4096/);
    assert.deepEqual(
      await Deno.readFile(out),
      await Deno.readFile(VECTORS + "ltx/c4096-chain/db-txid-0000000000000002.db"),
    );
    await assert.rejects(run(["apply", "--db", out, SNAP]), RestoreError);
    const again = await run(["apply", "--db", out, "--force", SNAP]);
    assert.equal(again.code, 0);
    assert.equal((await Deno.stat(out)).size, 11 * 4096);
  });
});

Deno.test("ltx: usage errors are ConfigErrors; help prints usage", async () => {
  for (
    const args of [
      [],
      ["bogus"],
      ["verify", "--bogus", SNAP],
      ["verify"],
      ["dump"],
      ["list", "--db", "x", SNAP],
      ["apply", SNAP],
      ["apply", "--db"],
    ]
  ) {
    await assert.rejects(run(args), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${args.join(" ")}: ${e}`);
      assert.equal(e.exitCode, 2);
      assert.ok(!e.message.includes("\n"), e.message);
      assert.match(e.message, /walrust help ltx/);
      return true;
    });
  }
  for (const h of ["help", "--help", "-h"]) {
    const r = await run([h]);
    assert.equal(r.code, 0);
    assert.match(r.out[0], /^Usage: walrust ltx .*\n +walrust ltx verify FILE/);
  }
});
