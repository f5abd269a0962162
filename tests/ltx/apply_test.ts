import assert from "node:assert/strict";
import { LtxError, RestoreError } from "../../src/errors.ts";
import { applyLtxChain } from "../../src/ltx/apply.ts";
import { CHECKSUM_FLAG, DatabaseChecksum } from "../../src/ltx/checksum.ts";
import { LtxEncoder } from "../../src/ltx/encoder.ts";
import type { LtxHeader } from "../../src/ltx/header.ts";

const ROOT = new URL("../fixtures/vectors/ltx/", import.meta.url).pathname;
const C = (n: number, m = n) =>
  `${ROOT}c4096-chain/${n.toString(16).padStart(16, "0")}-${m.toString(16).padStart(16, "0")}.ltx`;
const N512 = (n: number) =>
  `${ROOT}n512-hundreds/${n.toString(16).padStart(16, "0")}-${
    n.toString(16).padStart(16, "0")
  }.ltx`;

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeLtx(
  path: string,
  h: LtxHeader,
  pages: [number, Uint8Array][],
  post?: bigint,
): Promise<void> {
  const f = await Deno.open(path, { write: true, createNew: true });
  try {
    const enc = new LtxEncoder(h, async (c) => {
      let o = 0;
      while (o < c.length) o += await f.write(c.subarray(o));
    }, { format: "block" });
    for (const [p, d] of pages) await enc.encodePage(p, d);
    await enc.finish(post);
  } finally {
    f.close();
  }
}

function header(over: Partial<LtxHeader>): LtxHeader {
  return {
    flags: 0,
    pageSize: 4096,
    commit: 11,
    minTXID: 2,
    maxTXID: 2,
    timestamp: 0,
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
    ...over,
  };
}

Deno.test("apply: refuses an existing output without force, replaces it with force", async () => {
  await withDir(async (dir) => {
    const out = `${dir}/out.db`;
    await Deno.writeTextFile(out, "keep me");
    await assert.rejects(applyLtxChain([C(1)], out), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.match(e.message, /already exists/);
      return true;
    });
    assert.equal(await Deno.readTextFile(out), "keep me");
    const r = await applyLtxChain([C(1)], out, { force: true });
    assert.deepEqual(r, { commit: 11, pageSize: 4096, txid: 1 });
    assert.deepEqual(
      await Deno.readFile(out),
      await Deno.readFile(`${ROOT}c4096-chain/db-txid-0000000000000001.db`),
    );
    await assert.rejects(applyLtxChain([C(1)], dir, { force: true }), RestoreError);
  });
});

Deno.test("apply: chain rules — snapshot first, no gaps, max must advance, same page size", async () => {
  await withDir(async (dir) => {
    const out = `${dir}/out.db`;
    const cases: [string[], RegExp][] = [
      [[], /no LTX files/],
      [[C(2)], /must start with a snapshot/],
      [[C(1), C(3)], /do not continue/], // gap: TXID 2 missing
      [[C(1), C(2, 3), C(3)], /do not continue/], // max does not advance
      [[C(1), N512(2)], /page size 512 differs/],
    ];
    for (const [files, re] of cases) {
      await assert.rejects(applyLtxChain(files, out), (e: unknown) => {
        assert.ok(e instanceof RestoreError, String(e));
        assert.match(e.message, re);
        return true;
      });
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    }
    await assert.rejects(applyLtxChain([C(1), C(2), C(2, 3)], out), LtxError);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "temp file removed after a failure");
    // Overlap passes the TXID rule, but with tracked checksums the compacted 2-3 file's
    // pre-apply checksum (the state after TXID 1) no longer matches after TXID 2.
    await assert.rejects(applyLtxChain([C(1), C(2), C(2, 3)], out), (e: unknown) => {
      assert.ok(e instanceof LtxError && e.kind === "checksum", String(e));
      return true;
    });
    // NoChecksum files (as Litestream writes them) may overlap: 1, 2, then 2-3.
    const x = new Uint8Array(4096).fill(1);
    const y = new Uint8Array(4096).fill(2);
    const z = new Uint8Array(4096).fill(3);
    const nc = { flags: 2, commit: 2 };
    await writeLtx(`${dir}/a.ltx`, header({ ...nc, minTXID: 1, maxTXID: 1 }), [[1, x], [2, x]]);
    await writeLtx(`${dir}/b.ltx`, header({ ...nc, minTXID: 2, maxTXID: 2 }), [[2, y]]);
    await writeLtx(`${dir}/c.ltx`, header({ ...nc, minTXID: 2, maxTXID: 3 }), [[1, z], [2, y]]);
    const r = await applyLtxChain([`${dir}/a.ltx`, `${dir}/b.ltx`, `${dir}/c.ltx`], out);
    assert.equal(r.txid, 3);
    const db = await Deno.readFile(out);
    assert.deepEqual(db.subarray(0, 4096), z);
    assert.deepEqual(db.subarray(4096), y);
  });
});

Deno.test("apply: pre-apply and post-apply database checksums are checked", async () => {
  await withDir(async (dir) => {
    const db1 = await Deno.readFile(`${ROOT}c4096-chain/db-txid-0000000000000001.db`);
    const sum1 = new DatabaseChecksum(4096);
    for (let p = 1; p <= 11; p++) sum1.add(p, db1.subarray((p - 1) * 4096, p * 4096));
    const page = new Uint8Array(4096).fill(7);
    // The right post-apply checksum after replacing page 11 with `page`.
    const sum2 = new DatabaseChecksum(4096);
    for (let p = 1; p <= 10; p++) sum2.add(p, db1.subarray((p - 1) * 4096, p * 4096));
    sum2.add(11, page);

    const good = `${dir}/good.ltx`;
    await writeLtx(good, header({ preApplyChecksum: sum1.value() }), [[11, page]], sum2.value());
    await applyLtxChain([C(1), good], `${dir}/ok.db`);

    const badPre = `${dir}/bad-pre.ltx`;
    await writeLtx(
      badPre,
      header({ preApplyChecksum: CHECKSUM_FLAG | 1n }),
      [[11, page]],
      sum2.value(),
    );
    await assert.rejects(applyLtxChain([C(1), badPre], `${dir}/x.db`), (e: unknown) => {
      assert.ok(e instanceof LtxError && e.kind === "checksum");
      assert.match(e.message, /bad-pre\.ltx: pre-apply checksum/);
      return true;
    });

    const badPost = `${dir}/bad-post.ltx`;
    await writeLtx(
      badPost,
      header({ preApplyChecksum: sum1.value() }),
      [[11, page]],
      CHECKSUM_FLAG | 1n,
    );
    await assert.rejects(applyLtxChain([C(1), badPost], `${dir}/x.db`), (e: unknown) => {
      assert.ok(e instanceof LtxError && e.kind === "checksum");
      assert.match(e.message, /bad-post\.ltx: post-apply checksum/);
      return true;
    });
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["bad-post.ltx", "bad-pre.ltx", "good.ltx", "ok.db"],
    );
  });
});

Deno.test("apply: growth without page writes reads as zeros and keeps the checksum right", async () => {
  await withDir(async (dir) => {
    const db1 = await Deno.readFile(`${ROOT}c4096-chain/db-txid-0000000000000001.db`);
    const sum1 = new DatabaseChecksum(4096);
    for (let p = 1; p <= 11; p++) sum1.add(p, db1.subarray((p - 1) * 4096, p * 4096));
    const grown = new Uint8Array(13 * 4096);
    grown.set(db1);
    const sum2 = new DatabaseChecksum(4096);
    for (let p = 1; p <= 13; p++) sum2.add(p, grown.subarray((p - 1) * 4096, p * 4096));
    const f = `${dir}/grow.ltx`;
    await writeLtx(f, header({ commit: 13, preApplyChecksum: sum1.value() }), [], sum2.value());
    await applyLtxChain([C(1), f], `${dir}/out.db`);
    assert.deepEqual(await Deno.readFile(`${dir}/out.db`), grown);
  });
});

Deno.test("apply: an output in a missing directory is a RestoreError naming it", async () => {
  await withDir(async (dir) => {
    await assert.rejects(applyLtxChain([C(1)], `${dir}/no/such/out.db`), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.match(e.message, /no\/such\/out\.db: cannot create: its directory does not exist/);
      return true;
    });
  });
});
