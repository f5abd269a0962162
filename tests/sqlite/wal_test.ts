import assert from "node:assert/strict";
import {
  parseWalHeader,
  readFrameHeader,
  readWalHeader,
  readWalPage,
  scanWal,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  walChecksum,
  walFrameSize,
  type WalHeader,
  type WalScan,
} from "../../src/sqlite/wal.ts";
import { readDbPage } from "../../src/sqlite/dbfile.ts";
import { DatabaseError } from "../../src/errors.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";

async function assertDatabaseError(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, DatabaseError);
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-wal-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A writer with autocheckpoint off, so every commit stays in the WAL until asked. */
async function startWriter(dir: string, name = "app.db"): Promise<SqliteWriter> {
  const w = await SqliteWriter.start(`${dir}/${name}`, { autocheckpoint: 0 });
  await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
  return w;
}

/** One transaction touching a few pages: a row insert plus an update of older rows. */
async function commitRows(w: SqliteWriter, count: number, blob = 700): Promise<void> {
  for (let i = 0; i < count; i++) {
    await w.exec(
      `BEGIN; INSERT INTO t (v, n) VALUES (randomblob(${blob}), ${i}); ` +
        `UPDATE t SET n = n + 1 WHERE id % 7 = ${i % 7}; COMMIT`,
    );
  }
}

async function pageCount(w: SqliteWriter): Promise<number> {
  return Number((await w.query("PRAGMA page_count"))[0][0]);
}

async function scanFile(path: string, opts?: { offset?: number; header?: WalHeader }) {
  const f = await Deno.open(path);
  try {
    const header = opts?.header ?? await readWalHeader(f);
    assert.ok(header, `no valid WAL header in ${path}`);
    return await scanWal(f, header, { offset: opts?.offset ?? WAL_HEADER_SIZE });
  } finally {
    f.close();
  }
}

interface RawFrame {
  offset: number;
  pgno: number;
  commit: number;
}

/** Frames parsed naively (no checksum), independent of scanWal, for cross-checking. */
function rawFrames(wal: Uint8Array, pageSize: number): RawFrame[] {
  const v = new DataView(wal.buffer, wal.byteOffset, wal.byteLength);
  const out: RawFrame[] = [];
  const fs = walFrameSize(pageSize);
  for (let off = WAL_HEADER_SIZE; off + fs <= wal.length; off += fs) {
    out.push({ offset: off, pgno: v.getUint32(off), commit: v.getUint32(off + 4) });
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameScan(a: WalScan, b: WalScan): void {
  assert.deepEqual(a.endOffset, b.endOffset);
  assert.deepEqual(a.commit, b.commit);
  assert.deepEqual(a.checksum, b.checksum);
  assert.deepEqual(a.commitFrames, b.commitFrames);
  assert.deepEqual([...a.pages].sort(byKey), [...b.pages].sort(byKey));
}

function byKey(a: [number, number], b: [number, number]): number {
  return a[0] - b[0];
}

Deno.test("scanWal from 32 finds exactly the committed pages, newest frame each", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 30);
      const walPath = `${dir}/app.db-wal`;
      const wal = await Deno.readFile(walPath);
      const scan = await scanFile(walPath);
      const pageSize = scan.header.pageSize;
      assert.deepEqual(pageSize, 4096);
      // x86 SQLite writes native (little-endian) checksums: magic 0x377f0682.
      assert.deepEqual(scan.header.bigEndianChecksum, false);
      assert.deepEqual(new DataView(wal.buffer).getUint32(0), 0x377f0682);

      assert.deepEqual(scan.stop, "end");
      assert.deepEqual(scan.endOffset, wal.length, "every frame is committed");
      assert.deepEqual(scan.commit, await pageCount(w));
      assert.deepEqual(scan.commitFrames, 31, "CREATE TABLE + 30 transactions");

      const raw = rawFrames(wal, pageSize);
      assert.deepEqual(raw.filter((f) => f.commit !== 0).length, 31);
      const newest = new Map<number, number>();
      for (const f of raw) newest.set(f.pgno, f.offset);
      assert.deepEqual([...scan.pages].sort(byKey), [...newest].sort(byKey));

      // Page bytes from the WAL equal the database file after a checkpoint by the writer.
      const fromWal = new Map<number, Uint8Array>();
      const wf = await Deno.open(walPath);
      for (const [pgno, off] of scan.pages) {
        const b = new Uint8Array(pageSize);
        await readWalPage(wf, off, pageSize, b);
        fromWal.set(pgno, b);
      }
      wf.close();
      assert.deepEqual(await w.checkpoint("TRUNCATE"), { busy: 0, log: 0, checkpointed: 0 });
      const db = await Deno.open(`${dir}/app.db`);
      try {
        assert.deepEqual((await db.stat()).size, scan.commit * pageSize);
        const b = new Uint8Array(pageSize);
        for (const [pgno, page] of fromWal) {
          await readDbPage(db, pgno, pageSize, b);
          assert.deepEqual(b, page, `page ${pgno}`);
        }
      } finally {
        db.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("pages past the last commit's database size are dropped (the database shrank)", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 40, 3000);
      await w.exec("DELETE FROM t WHERE id > 3");
      await w.exec("VACUUM");
      const walPath = `${dir}/app.db-wal`;
      const scan = await scanFile(walPath);
      const size = await pageCount(w);
      assert.equal(scan.commit, size);
      const raw = rawFrames(await Deno.readFile(walPath), scan.header.pageSize);
      assert.ok(raw.some((f) => f.pgno > size), "the WAL holds frames for pages now cut off");
      assert.ok(scan.pages.size > 0);
      for (const pgno of scan.pages.keys()) assert.ok(pgno <= size, `page ${pgno} > ${size}`);
    } finally {
      await w.kill();
    }
  });
});

Deno.test("readFrameHeader and readWalPage read one frame; a short frame is an error", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 2);
      const wal = await Deno.readFile(`${dir}/app.db-wal`);
      const f = await Deno.open(`${dir}/app.db-wal`);
      try {
        const header = (await readWalHeader(f))!;
        const last = wal.length - walFrameSize(header.pageSize);
        const fh = await readFrameHeader(f, last);
        assert.ok(fh);
        assert.deepEqual(fh.salt1, header.salt1);
        assert.deepEqual(fh.salt2, header.salt2);
        assert.deepEqual(fh.commit, await pageCount(w), "the last frame is a commit frame");
        assert.deepEqual(await readFrameHeader(f, wal.length - 10), undefined);
        const page = new Uint8Array(header.pageSize);
        await readWalPage(f, last, header.pageSize, page);
        assert.deepEqual(page, wal.subarray(last + WAL_FRAME_HEADER_SIZE));
        await assertDatabaseError(readWalPage(f, last + 8, header.pageSize, page));
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("resume from endOffset, with or without the saved checksum, gives the rest", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 10);
      const walPath = `${dir}/app.db-wal`;
      const first = await scanFile(walPath);
      await commitRows(w, 12);
      const f = await Deno.open(walPath);
      try {
        const header = (await readWalHeader(f))!;
        const withSum = await scanWal(f, header, {
          offset: first.endOffset,
          salt1: header.salt1,
          salt2: header.salt2,
          checksum: first.checksum,
        });
        const loaded = await scanWal(f, header, { offset: first.endOffset });
        sameScan(withSum, loaded);
        const full = await scanWal(f, header, { offset: WAL_HEADER_SIZE });
        assert.deepEqual(withSum.endOffset, full.endOffset);
        assert.deepEqual(withSum.checksum, full.checksum);
        assert.deepEqual(withSum.commit, full.commit);
        assert.deepEqual(first.commitFrames + withSum.commitFrames, full.commitFrames);
        assert.deepEqual(withSum.commitFrames, 12);
        for (const off of withSum.pages.values()) {
          assert.ok(off >= first.endOffset, "no old frames");
        }
        for (const [pgno, off] of full.pages) {
          if (off >= first.endOffset) assert.deepEqual(withSum.pages.get(pgno), off);
          else assert.deepEqual(first.pages.get(pgno), off);
        }
        // Nothing new: resuming at the end returns no frames and keeps the checksum.
        const none = await scanWal(f, header, { offset: full.endOffset });
        assert.deepEqual(none.endOffset, full.endOffset);
        assert.deepEqual(none.pages.size, 0);
        assert.deepEqual(none.commit, 0);
        assert.deepEqual(none.checksum, full.checksum);
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("maxBytes stops at a commit boundary and the chunks add up to the full scan", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 25);
      const f = await Deno.open(`${dir}/app.db-wal`);
      try {
        const header = (await readWalHeader(f))!;
        const full = await scanWal(f, header, { offset: WAL_HEADER_SIZE });
        const merged = new Map<number, number>();
        let offset = WAL_HEADER_SIZE, checksum: [number, number] | undefined, chunks = 0;
        let frames = 0;
        for (;;) {
          const s = await scanWal(f, header, { offset, checksum, maxBytes: 3 * 4120 });
          chunks++;
          frames += s.commitFrames;
          for (const [p, o] of s.pages) merged.set(p, o);
          if (!s.limited) break;
          assert.deepEqual(s.stop, "limit");
          assert.ok(s.endOffset - offset >= 3 * 4120);
          const fh = await readFrameHeader(f, s.endOffset - walFrameSize(header.pageSize));
          assert.notDeepEqual(fh?.commit, 0, "a limited scan ends on a commit frame");
          offset = s.endOffset;
          checksum = s.checksum;
        }
        assert.ok(chunks > 3, `expected several chunks, got ${chunks}`);
        assert.deepEqual(frames, full.commitFrames);
        assert.deepEqual(offset <= full.endOffset, true);
        assert.deepEqual([...merged].sort(byKey), [...full.pages].sort(byKey));
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("torn tail: garbage, half frames and bad frames after the last commit are ignored", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    let wal: Uint8Array;
    try {
      await commitRows(w, 5);
      // Last transaction spans many frames (a 30 KB blob).
      await w.exec("INSERT INTO t (v, n) VALUES (randomblob(30000), -1)");
      wal = await Deno.readFile(`${dir}/app.db-wal`);
    } finally {
      await w.kill();
    }
    const good = await scanFile(`${dir}/app.db-wal`);
    const pageSize = good.header.pageSize;
    const fs = walFrameSize(pageSize);
    assert.deepEqual(good.endOffset, wal.length);
    const copy = `${dir}/copy-wal`;
    const check = async (bytes: Uint8Array, stop: string) => {
      await Deno.writeFile(copy, bytes);
      const s = await scanFile(copy);
      sameScan(s, good);
      assert.deepEqual(s.stop, stop);
    };
    await check(concat(wal, crypto.getRandomValues(new Uint8Array(1000))), "partial");
    await check(concat(wal, wal.subarray(wal.length - fs, wal.length - fs / 2)), "partial");
    // A whole, well-salted copy of the last frame: the rolling checksum no longer matches.
    await check(concat(wal, wal.subarray(wal.length - fs)), "checksum");
    await check(concat(wal, crypto.getRandomValues(new Uint8Array(fs * 2))), "salt");

    // Cut inside the multi-frame transaction: the scan ends at the commit before it.
    const raw = rawFrames(wal, pageSize);
    const commits = raw.filter((f) => f.commit !== 0);
    const prevCommit = commits[commits.length - 2];
    const txStart = prevCommit.offset + fs;
    assert.ok((wal.length - txStart) / fs >= 8, "the last transaction has many frames");
    for (const cut of [txStart + 3 * fs, txStart + 5 * fs + 100, wal.length - 1]) {
      await Deno.writeFile(copy, wal.subarray(0, cut));
      const s = await scanFile(copy);
      assert.deepEqual(s.endOffset, txStart);
      assert.deepEqual(s.commit, prevCommit.commit);
      assert.deepEqual(s.commitFrames, commits.length - 1);
      for (const off of s.pages.values()) assert.ok(off < txStart);
    }

    // A flipped byte inside a committed frame: SQLite would stop there, so do we.
    const damaged = wal.slice();
    const victim = raw[Math.floor(raw.length / 2)];
    damaged[victim.offset + WAL_FRAME_HEADER_SIZE + 100] ^= 0xff;
    await Deno.writeFile(copy, damaged);
    const s = await scanFile(copy);
    assert.deepEqual(s.stop, "checksum");
    assert.ok(s.endOffset <= victim.offset);
    const lastGood = commits.filter((c) => c.offset < victim.offset).at(-1)!;
    assert.deepEqual(s.endOffset, lastGood.offset + fs);
  });
});

Deno.test("frames of an uncommitted transaction spilled by SQLite are not returned", async () => {
  await withTemp(async (dir) => {
    const w = await SqliteWriter.start(`${dir}/app.db`, { autocheckpoint: 0, cacheSize: 5 });
    try {
      await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
      await commitRows(w, 3);
      const walPath = `${dir}/app.db-wal`;
      const before = await scanFile(walPath);
      const committedSize = (await Deno.stat(walPath)).size;
      // A big open transaction overflows the 5-page cache, so SQLite writes its frames to the WAL.
      await w.exec(
        "BEGIN; INSERT INTO t (v, n) SELECT randomblob(1000), 0 FROM " +
          "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 300) " +
          "SELECT i FROM r)",
      );
      const spilled = (await Deno.stat(walPath)).size;
      assert.ok(spilled > committedSize + 20 * 4120, `expected spilled frames, WAL ${spilled}`);
      const during = await scanFile(walPath);
      sameScan(during, before);
      assert.deepEqual(during.endOffset, committedSize);

      await w.exec("COMMIT");
      const after = await scanFile(walPath, { offset: before.endOffset });
      assert.deepEqual(after.commitFrames, 1);
      assert.deepEqual(after.endOffset, (await Deno.stat(walPath)).size);
      assert.deepEqual(after.commit, await pageCount(w));
    } finally {
      await w.kill();
    }
  });
});

Deno.test("salt change: after the writer's TRUNCATE the old position matches nothing", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 8);
      const walPath = `${dir}/app.db-wal`;
      const old = await scanFile(walPath);
      assert.deepEqual((await w.checkpoint("TRUNCATE")).busy, 0);
      assert.deepEqual((await Deno.stat(walPath)).size, 0);
      await commitRows(w, 12);
      const f = await Deno.open(walPath);
      try {
        const header = (await readWalHeader(f))!;
        assert.notDeepEqual([header.salt1, header.salt2], [old.header.salt1, old.header.salt2]);
        assert.ok(
          old.endOffset < (await f.stat()).size,
          "the new WAL has grown past the old offset",
        );
        const stale = await scanWal(f, header, {
          offset: old.endOffset,
          salt1: old.header.salt1,
          salt2: old.header.salt2,
          checksum: old.checksum,
        });
        assert.deepEqual(stale.stop, "stale");
        assert.deepEqual(stale.pages.size, 0);
        assert.deepEqual(stale.endOffset, old.endOffset);
        // The old header object no longer describes the file: its salts match no frame.
        const withOldHeader = await scanWal(f, old.header, { offset: WAL_HEADER_SIZE });
        assert.deepEqual(withOldHeader.stop, "salt");
        assert.deepEqual(withOldHeader.commitFrames, 0);

        const fresh = await scanWal(f, header, { offset: WAL_HEADER_SIZE });
        assert.deepEqual(fresh.commitFrames, 12);
        assert.deepEqual(fresh.endOffset, (await f.stat()).size);
        assert.deepEqual(fresh.commit, await pageCount(w));
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("salt change: after RESTART the new frames end where old-generation frames begin", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      await commitRows(w, 20);
      const walPath = `${dir}/app.db-wal`;
      const old = await scanFile(walPath);
      assert.deepEqual((await w.checkpoint("RESTART")).busy, 0);
      await commitRows(w, 2);
      const size = (await Deno.stat(walPath)).size;
      assert.deepEqual(size, old.endOffset, "RESTART reuses the file without truncating it");
      const f = await Deno.open(walPath);
      try {
        const header = (await readWalHeader(f))!;
        assert.deepEqual(header.salt1, (old.header.salt1 + 1) >>> 0, "salt-1 is incremented");
        const fresh = await scanWal(f, header, { offset: WAL_HEADER_SIZE });
        assert.deepEqual(fresh.commitFrames, 2);
        assert.deepEqual(fresh.stop, "salt");
        assert.ok(fresh.endOffset < size);
        // The old saved position (previous frame still carries old salts) is refused as stale
        // because the header says the WAL was restarted.
        const stale = await scanWal(f, header, {
          offset: old.endOffset - walFrameSize(header.pageSize),
          salt1: old.header.salt1,
          salt2: old.header.salt2,
        });
        assert.deepEqual(stale.stop, "stale");
        assert.deepEqual(stale.pages.size, 0);
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("scanWal rejects an offset that is not frame aligned", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    try {
      const f = await Deno.open(`${dir}/app.db-wal`);
      try {
        const header = (await readWalHeader(f))!;
        await assertDatabaseError(scanWal(f, header, { offset: 33 }));
        await assertDatabaseError(scanWal(f, header, { offset: 0 }));
      } finally {
        f.close();
      }
    } finally {
      await w.kill();
    }
  });
});

Deno.test("parseWalHeader refuses short input, bad magic, bad version and bad checksum", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    let wal: Uint8Array;
    try {
      wal = await Deno.readFile(`${dir}/app.db-wal`);
    } finally {
      await w.kill();
    }
    const h = wal.slice(0, WAL_HEADER_SIZE);
    assert.ok(parseWalHeader(h));
    assert.deepEqual(parseWalHeader(h.subarray(0, 31)), undefined);
    for (const at of [0, 3, 7, 9, 17, 23, 24, 31]) {
      const bad = h.slice();
      bad[at] ^= 0x10;
      assert.deepEqual(parseWalHeader(bad), undefined, `byte ${at} flipped`);
    }
  });
});

/** The WAL checksum computed by python, independently of our code. */
async function pythonChecksum(dir: string, data: Uint8Array, bigEndian: boolean) {
  const file = `${dir}/ck.bin`;
  await Deno.writeFile(file, data);
  const code = `
import struct, sys
b = open(sys.argv[1], "rb").read(); fmt = ">II" if sys.argv[2] == "be" else "<II"
s0 = s1 = 0
for i in range(0, len(b), 8):
    w0, w1 = struct.unpack_from(fmt, b, i)
    s0 = (s0 + w0 + s1) & 0xffffffff
    s1 = (s1 + w1 + s0) & 0xffffffff
print(s0, s1)`;
  const out = await new Deno.Command("python3", {
    args: ["-c", code, file, bigEndian ? "be" : "le"],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
}

Deno.test("walChecksum matches an independent implementation in both byte orders", async () => {
  await withTemp(async (dir) => {
    const data = crypto.getRandomValues(new Uint8Array(4096 + 24));
    for (const be of [false, true]) {
      const expected = await pythonChecksum(dir, data, be);
      assert.deepEqual(walChecksum(data, be, 0, 0), expected);
      // Cumulative: two halves chained equal the whole; an unaligned view works too.
      const [a, b] = walChecksum(data.subarray(0, 24), be, 0, 0);
      assert.deepEqual(walChecksum(data.subarray(24), be, a, b), expected);
      const shifted = new Uint8Array(data.length + 3).subarray(3);
      shifted.set(data);
      assert.deepEqual(walChecksum(shifted, be, 0, 0), expected);
    }
    // Known vector: words (1, 2) little-endian -> s0 = 1, s1 = 2 + 1 = 3.
    const unit = new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]);
    assert.deepEqual(walChecksum(unit, false, 0, 0), [1, 3]);
    assert.deepEqual(walChecksum(unit, true, 0, 0), [0x01000000, 0x03000000]);
    // s0 = 0xffffffff + 1 + 1 = 2^32 + 1 -> 1; s1 = 1 + 2 + 1 = 4.
    assert.deepEqual(walChecksum(unit, false, 0xffffffff, 1), [1, 4], "wraps modulo 2^32");
  });
});

/** Rewrite a WAL's magic and every checksum in the chosen byte order, with our walChecksum. */
function reencode(wal: Uint8Array, pageSize: number, bigEndian: boolean, lie = false): Uint8Array {
  const out = wal.slice();
  const v = new DataView(out.buffer);
  v.setUint32(0, bigEndian ? 0x377f0683 : 0x377f0682);
  // `lie`: flip the magic but keep computing frame checksums in the other order.
  const order = lie ? !bigEndian : bigEndian;
  let [s0, s1] = walChecksum(out.subarray(0, 24), bigEndian, 0, 0);
  v.setUint32(24, s0);
  v.setUint32(28, s1);
  const fs = walFrameSize(pageSize);
  for (let off = WAL_HEADER_SIZE; off + fs <= out.length; off += fs) {
    [s0, s1] = walChecksum(out.subarray(off, off + 8), order, s0, s1);
    [s0, s1] = walChecksum(out.subarray(off + 24, off + fs), order, s0, s1);
    v.setUint32(off + 16, s0);
    v.setUint32(off + 20, s1);
  }
  return out;
}

Deno.test("WAL checksums we compute are the ones SQLite writes (LE) and accepts (BE)", async () => {
  await withTemp(async (dir) => {
    const w = await startWriter(dir);
    let wal: Uint8Array, db: Uint8Array;
    try {
      await commitRows(w, 6);
      // Copy while the writer is idle and nothing is checkpointed: all data is in the WAL.
      wal = await Deno.readFile(`${dir}/app.db-wal`);
      db = await Deno.readFile(`${dir}/app.db`);
    } finally {
      await w.kill();
    }
    const source = await dumpContent(`${dir}/app.db`);
    assert.ok(source.split("\n").filter((l) => l.startsWith("t|")).length === 6);

    assert.deepEqual(reencode(wal, 4096, false), wal, "our LE checksums equal SQLite's bytes");

    const recover = async (name: string, walBytes: Uint8Array) => {
      await Deno.mkdir(`${dir}/${name}`);
      await Deno.writeFile(`${dir}/${name}/c.db`, db);
      await Deno.writeFile(`${dir}/${name}/c.db-wal`, walBytes);
      return await dumpContent(`${dir}/${name}/c.db`);
    };
    const be = reencode(wal, 4096, true);
    assert.notDeepEqual(be, wal);
    assert.deepEqual(parseWalHeader(be)?.bigEndianChecksum, true);
    assert.deepEqual((await scanFile(await write(`${dir}/be-wal`, be))).commitFrames, 7);
    assert.deepEqual(await recover("be", be), source, "SQLite recovers our big-endian WAL");
    // Control: magic says big-endian but frames are summed little-endian -> SQLite ignores them.
    assert.notDeepEqual(await recover("lie", reencode(wal, 4096, true, true)), source);
  });
});

async function write(path: string, bytes: Uint8Array): Promise<string> {
  await Deno.writeFile(path, bytes);
  return path;
}
