/** Test helpers around a watched database and its filesystem replica. */
import { decodeHeader, HEADER_SIZE } from "../../src/ltx/header.ts";
import { parseLtxName } from "../../src/ltx/names.ts";
import { walrust } from "./walrust.ts";
import { dumpContent } from "./sqlite_writer.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { readWalHeader, scanWal } from "../../src/sqlite/wal.ts";

/** End of the last committed frame in the current WAL generation (32 when empty, 0 when absent). */
async function committedWalEnd(
  dbPath: string,
): Promise<{ end: number; salt1: number; salt2: number }> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(`${dbPath}-wal`);
  } catch {
    return { end: 0, salt1: 0, salt2: 0 };
  }
  try {
    const h = await readWalHeader(f);
    if (!h) return { end: 0, salt1: 0, salt2: 0 };
    const scan = await scanWal(f, h, { offset: 32 });
    return { end: scan.endOffset, salt1: h.salt1, salt2: h.salt2 };
  } finally {
    f.close();
  }
}

/** The local state directory of a database. */
export function stateDir(dbPath: string): string {
  const i = dbPath.lastIndexOf("/");
  return `${dbPath.slice(0, i)}/.${dbPath.slice(i + 1)}-walrust`;
}

/** Header of an LTX file on disk. */
export async function ltxHeader(path: string) {
  const f = await Deno.open(path);
  try {
    const b = new Uint8Array(HEADER_SIZE);
    let n = 0;
    while (n < HEADER_SIZE) {
      const r = await f.read(b.subarray(n));
      if (r === null) break;
      n += r;
    }
    return decodeHeader(b);
  } finally {
    f.close();
  }
}

/** Every LTX file under a file replica root: [{level, min, max, path}] sorted. */
export async function replicaFiles(root: string, prefix: string) {
  const out: { level: number; minTXID: number; maxTXID: number; path: string }[] = [];
  for (let level = 0; level <= 9; level++) {
    const dir = `${root}/${prefix}/ltx/${level}`;
    try {
      for await (const e of Deno.readDir(dir)) {
        const n = parseLtxName(e.name);
        if (n) out.push({ level, ...n, path: `${dir}/${e.name}` });
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return out.sort((a, b) => a.level - b.level || a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
}

/**
 * Wait until the watcher has copied everything in the WAL and uploaded it: the newest local
 * level-0 file ends at the WAL's last committed frame and the replica holds its TXID.
 */
export async function waitCaughtUp(
  dbPath: string,
  root: string | undefined,
  prefix: string,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const wal = await committedWalEnd(dbPath);
    const local = await listLocal(stateDir(dbPath));
    const newest = local.at(-1);
    if (newest) {
      try {
        const h = await ltxHeader(newest.path);
        // A file replica is checked directly; otherwise the watcher's record of confirmed uploads.
        const remoteMax = root !== undefined
          ? Math.max(
            0,
            ...(await replicaFiles(root, prefix)).filter((f) => f.level === 0).map((f) =>
              f.maxTXID
            ),
          )
          : await confirmedRemoteTXID(dbPath);
        const end = h.walOffset + h.walSize;
        last = `wal=${wal.end} end=${end} local=${h.maxTXID} remote=${remoteMax}`;
        const sameWal = wal.end === 0 || (h.walSalt1 === wal.salt1 && h.walSalt2 === wal.salt2);
        if (sameWal && (end === wal.end || wal.end === 0) && remoteMax >= h.maxTXID) {
          return h.maxTXID;
        }
      } catch { /* file replaced under us; retry */ }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`replica did not catch up with ${dbPath} within ${timeoutMs} ms (${last})`);
}

async function confirmedRemoteTXID(dbPath: string): Promise<number> {
  try {
    return Number(
      JSON.parse(await Deno.readTextFile(`${stateDir(dbPath)}/meta.json`)).remoteTXID,
    ) || 0;
  } catch {
    return 0;
  }
}

async function listLocal(dir: string) {
  const out: { maxTXID: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/ltx/0`)) {
      const n = parseLtxName(e.name);
      if (n) out.push({ maxTXID: n.maxTXID, path: `${dir}/ltx/0/${e.name}` });
    }
  } catch { /* not yet */ }
  return out.sort((a, b) => a.maxTXID - b.maxTXID);
}

/** Restore with the CLI and return the restored content dump (after checking integrity). */
export async function restoreAndDump(
  bucket: string,
  name: string,
  out: string,
  extra: string[] = [],
  env?: Record<string, string>,
): Promise<string> {
  const r = await walrust(["restore", name, "-o", out, "--bucket", bucket, ...extra], { env });
  if (r.code !== 0) throw new Error(`restore failed (${r.code}): ${r.stderr}`);
  const ic = integrityCheck(out);
  if (ic.length !== 1 || ic[0] !== "ok") throw new Error(`integrity_check: ${ic.join("; ")}`);
  return await dumpContent(out);
}
