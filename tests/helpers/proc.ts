/**
 * Linux /proc checks for the SQLite traps of DESIGN.md §3: a replicator that closed a file
 * descriptor on the database has lost its POSIX locks, and one that reads a deleted `-wal` or
 * `-shm` sees its fd point at "... (deleted)".
 */
import { AssertionError } from "node:assert/strict";

/** One lock line of /proc/locks. */
export interface ProcLock {
  /** POSIX, FLOCK, OFDLCK, LEASE, ... */
  type: string;
  /** READ or WRITE. */
  mode: string;
  pid: number;
  major: number;
  minor: number;
  inode: bigint;
  start: string;
  end: string;
}

/** Parse one lock line as /proc/locks and fdinfo print it; undefined for other lines. */
function parseLock(line: string): ProcLock | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 8 || f[1] === "->") return undefined;
  const [maj, min, ino] = f[5].split(":");
  if (ino === undefined) return undefined;
  return {
    type: f[1],
    mode: f[3],
    pid: Number(f[4]),
    major: parseInt(maj, 16),
    minor: parseInt(min, 16),
    inode: BigInt(ino),
    start: f[6],
    end: f[7],
  };
}

/**
 * Every granted lock in /proc/locks (blocked waiters, the "->" lines, are left out). A read of
 * more than a page is not atomic: a line can be skipped while other processes lock and unlock.
 */
export async function procLocks(): Promise<ProcLock[]> {
  const out: ProcLock[] = [];
  for (const line of (await Deno.readTextFile("/proc/locks")).split("\n")) {
    const l = parseLock(line);
    if (l) out.push(l);
  }
  return out;
}

/** Major and minor number of a Linux dev_t as stat returns it (glibc's encoding). */
export function decodeDev(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

interface FileId {
  major: number;
  minor: number;
  inode: bigint;
}

async function fileId(path: string): Promise<FileId> {
  const st = await Deno.stat(path);
  return { ...decodeDev(st.dev), inode: BigInt(st.ino ?? -1) };
}

const sameFile = (l: ProcLock, id: FileId) =>
  l.major === id.major && l.minor === id.minor && l.inode === id.inode;

/**
 * The locks set through `pid`'s open fds on a file, from /proc/<pid>/fdinfo (one small read
 * each, so unlike a long /proc/locks it cannot skip a line).
 */
async function fdinfoLocks(pid: number, id: FileId): Promise<ProcLock[]> {
  const out: ProcLock[] = [];
  for await (const e of Deno.readDir(`/proc/${pid}/fd`)) {
    let info: string;
    try {
      const st = await Deno.stat(`/proc/${pid}/fd/${e.name}`);
      const d = decodeDev(st.dev);
      if (d.major !== id.major || d.minor !== id.minor || BigInt(st.ino ?? -1) !== id.inode) {
        continue;
      }
      info = await Deno.readTextFile(`/proc/${pid}/fdinfo/${e.name}`);
    } catch {
      continue; // closed while we listed
    }
    for (const line of info.split("\n")) {
      if (!line.startsWith("lock:")) continue;
      const l = parseLock(line.slice(5));
      if (l) out.push(l);
    }
  }
  return out;
}

/**
 * The POSIX locks `pid` holds on the file at `path` (matched by device and inode), as
 * /proc/locks and the fdinfo of `pid`'s fds on that file show them.
 */
export async function posixLocksOn(pid: number, path: string): Promise<ProcLock[]> {
  const id = await fileId(path);
  const mine = (l: ProcLock) => l.type === "POSIX" && l.pid === pid && sameFile(l, id);
  const listed = (await procLocks()).filter(mine);
  if (listed.length > 0) return listed;
  return (await fdinfoLocks(pid, id)).filter(mine);
}

/** The locks `pid` set through its own fds on the file at `path`, from /proc/<pid>/fdinfo. */
export async function fdinfoLocksOn(pid: number, path: string): Promise<ProcLock[]> {
  return await fdinfoLocks(pid, await fileId(path));
}

/**
 * `pid` owns a POSIX lock on the database file and on its `-shm` file: the locks SQLite takes
 * through its connection are still there, so no fd on them was closed behind SQLite's back.
 */
export async function assertHoldsLocks(pid: number, dbPath: string, label = ""): Promise<void> {
  const at = label ? ` (${label})` : "";
  for (const path of [dbPath, `${dbPath}-shm`]) {
    let held: ProcLock[];
    try {
      held = await posixLocksOn(pid, path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new AssertionError({ message: `${path} does not exist${at}` });
      }
      throw e;
    }
    if (held.length === 0) {
      const id = await fileId(path);
      const others = (await procLocks()).filter((l) => sameFile(l, id))
        .map((l) => `${l.type} ${l.mode} pid ${l.pid} bytes ${l.start}-${l.end}`);
      throw new AssertionError({
        message: `process ${pid} holds no POSIX lock on ${path}${at} (neither /proc/locks nor ` +
          `its fdinfo shows one); locks on that file now: ${others.join(", ") || "none"}`,
      });
    }
  }
}

/** The targets of `pid`'s open file descriptors that were deleted ("... (deleted)"). */
export async function deletedFds(pid: number): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = await Deno.readLink(`/proc/${pid}/fd/${e.name}`);
    } catch {
      continue; // closed while we listed
    }
    if (target.endsWith(" (deleted)")) out.push(`fd ${e.name} -> ${target}`);
  }
  return out;
}

/** No file descriptor of `pid` points at a deleted file. */
export async function assertNoDeletedFds(pid: number, label = ""): Promise<void> {
  const bad = await deletedFds(pid);
  if (bad.length > 0) {
    const at = label ? ` (${label})` : "";
    throw new AssertionError({
      message: `process ${pid} reads deleted files${at}:\n${bad.join("\n")}`,
    });
  }
}

/** Whether `pid` has a handler installed for SIGTERM (bit 14 of SigCgt in /proc/<pid>/status). */
export async function catchesSigterm(pid: number): Promise<boolean> {
  let status: string;
  try {
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return false; // exited
  }
  const line = status.split("\n").find((l) => l.startsWith("SigCgt:"));
  if (!line) return false;
  return (BigInt("0x" + line.slice(7).trim()) & (1n << 14n)) !== 0n;
}
