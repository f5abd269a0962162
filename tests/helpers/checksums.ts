/**
 * Cross-check of the `walrust-post-apply-checksum` records of a file replica: every L0 and L9
 * object's record must be the LTX database checksum of the database restored at its maxTXID.
 * One pass: each start point (an L9 snapshot, or the L0 that begins at TXID 1) is applied into
 * a scratch file and the L0 files after it are applied on top in TXID order, checking each.
 */
import { AssertionError } from "node:assert/strict";
import { FileStorage } from "../../src/storage/file.ts";
import { POST_APPLY_CHECKSUM_META, SNAPSHOT_LEVEL } from "../../src/storage/layout.ts";
import { LtxDecoder } from "../../src/ltx/decoder.ts";
import { lockPgno } from "../../src/ltx/header.ts";
import { DatabaseChecksum } from "../../src/ltx/checksum.ts";
import { formatHex64, formatTXID } from "../../src/ltx/names.ts";
import { replicaFiles } from "./replica.ts";

interface Obj {
  key: string;
  level: number;
  minTXID: number;
  maxTXID: number;
}

/** Scratch database the chain is applied to. */
class Scratch {
  pageSize = 0;
  commit = 0;
  txid = 0;

  private constructor(readonly path: string, readonly file: Deno.FsFile) {}

  static async create(dir: string): Promise<Scratch> {
    const path = `${dir}/chain.db`;
    return new Scratch(path, await Deno.open(path, { read: true, write: true, create: true }));
  }

  /** Empty the file: a start point rebuilds the database from nothing. */
  async reset(): Promise<void> {
    await this.file.truncate(0);
    this.pageSize = 0;
    this.commit = 0;
    this.txid = 0;
  }

  /** Apply one LTX object's pages, then cut the file to its commit size. */
  async apply(storage: FileStorage, key: string): Promise<void> {
    const src = await storage.get(key);
    const dec = await LtxDecoder.open(src, { name: key });
    const h = dec.header;
    if (this.pageSize !== 0 && h.pageSize !== this.pageSize) {
      throw new AssertionError({
        message: `${key}: page size ${h.pageSize} after ${this.pageSize}`,
      });
    }
    for await (const { pgno, data } of dec.pages()) {
      await this.writeAt((pgno - 1) * h.pageSize, data);
    }
    await dec.finish();
    await this.file.truncate(h.commit * h.pageSize);
    const lock = lockPgno(h.pageSize);
    if (h.commit >= lock) await this.writeAt((lock - 1) * h.pageSize, new Uint8Array(h.pageSize));
    this.pageSize = h.pageSize;
    this.commit = h.commit;
    this.txid = h.maxTXID;
  }

  /** LTX database checksum of pages 1..commit. */
  async checksum(): Promise<string> {
    const sum = new DatabaseChecksum(this.pageSize);
    const page = new Uint8Array(this.pageSize);
    await this.file.seek(0, Deno.SeekMode.Start);
    for (let p = 1; p <= this.commit; p++) {
      let got = 0;
      while (got < page.length) {
        const r = await this.file.read(page.subarray(got));
        if (r === null) break;
        got += r;
      }
      // A page never written reads as a hole: zeros, like SQLite would see them.
      page.fill(0, got);
      sum.add(p, page);
    }
    return formatHex64(sum.value());
  }

  private async writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    await this.file.seek(offset, Deno.SeekMode.Start);
    let o = 0;
    while (o < bytes.length) o += await this.file.write(bytes.subarray(o));
  }

  close(): void {
    this.file.close();
  }
}

/**
 * Check every recorded post-apply checksum of the L0 and L9 objects under `<root>/<prefix>/ltx`
 * against the database rebuilt at that object's maxTXID. Throws an AssertionError naming the key
 * and both values on a mismatch, and on an L0 that no start point leads to. Returns how many
 * records were checked.
 */
/** The LTX database checksum (16 hex) of a database file with no WAL (a restored one). */
export async function fileChecksum(path: string, pageSize = 4096): Promise<string> {
  const data = await Deno.readFile(path);
  const sum = new DatabaseChecksum(pageSize);
  for (let p = 1; p * pageSize <= data.length; p++) {
    sum.add(p, data.subarray((p - 1) * pageSize, p * pageSize));
  }
  return formatHex64(sum.value());
}

export async function checkRecordedChecksums(
  root: string,
  prefix: string,
): Promise<{ checked: number }> {
  const storage = new FileStorage(root);
  const objs: Obj[] = (await replicaFiles(root, prefix))
    .filter((f) => f.level === 0 || (f.level === SNAPSHOT_LEVEL && f.minTXID === 1))
    .map((f) => ({
      key: `${prefix}/ltx/${f.level}/${f.path.slice(f.path.lastIndexOf("/") + 1)}`,
      level: f.level,
      minTXID: f.minTXID,
      maxTXID: f.maxTXID,
    }));
  // TXID order; at one TXID the snapshot comes first, so an L0 ending there is checked
  // against the state the snapshot set up.
  objs.sort((a, b) =>
    a.maxTXID - b.maxTXID || (b.level === SNAPSHOT_LEVEL ? 1 : 0) -
      (a.level === SNAPSHOT_LEVEL ? 1 : 0) ||
    a.minTXID - b.minTXID
  );
  const dir = await Deno.makeTempDir({ prefix: "walrust-chk-chain-" });
  const scratch = await Scratch.create(dir);
  let checked = 0;
  let started = false;
  try {
    for (const o of objs) {
      const name = `${o.key} (TXIDs ${formatTXID(o.minTXID)}-${formatTXID(o.maxTXID)})`;
      const start = o.level === SNAPSHOT_LEVEL || o.minTXID === 1;
      if (start) {
        await scratch.reset();
        await scratch.apply(storage, o.key);
        started = true;
      } else if (!started) {
        throw new AssertionError({ message: `${name}: no snapshot or TXID-1 file before it` });
      } else if (o.maxTXID === scratch.txid) {
        // Ends where a snapshot just put the chain: compare with that state, nothing to apply.
      } else if (o.minTXID > scratch.txid + 1) {
        throw new AssertionError({
          message: `${name}: gap after TXID ${formatTXID(scratch.txid)} with no snapshot`,
        });
      } else {
        await scratch.apply(storage, o.key);
      }
      const recorded = (await storage.head(o.key))?.meta?.[POST_APPLY_CHECKSUM_META];
      if (recorded === undefined) continue;
      const actual = await scratch.checksum();
      if (actual !== recorded) {
        throw new AssertionError({
          message: `${name}: recorded post-apply checksum ${recorded}, but the database ` +
            `rebuilt at TXID ${formatTXID(o.maxTXID)} has ${actual}`,
          actual,
          expected: recorded,
        });
      }
      checked++;
    }
  } finally {
    scratch.close();
    await Deno.remove(dir, { recursive: true });
  }
  return { checked };
}
