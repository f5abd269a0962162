/**
 * Talking to a running watcher through its state directory: who is watching (pid, replica) and
 * on-demand snapshot requests (`walrust snapshot` while `watch` runs), answered after the
 * snapshot is uploaded, with its TXID.
 */
import { atomicWriteFile, removeIfExists } from "../fsutil.ts";
import type { LocalState } from "./localstate.ts";

/** What a running watcher says about itself. */
export interface WatcherInfo {
  pid: number;
  /** The replica URL as the user gave it. */
  replica: string;
  /** The database's key prefix in the replica. */
  prefix: string;
}

/** The answer to a snapshot request. */
export type SnapshotAnswer = { txid: number } | { error: string };

const INFO = "watcher.json";
const REQUEST = "snapshot-request";
const enc = new TextEncoder();

/** Record who watches this database (overwritten at each start). */
export async function writeWatcherInfo(state: LocalState, info: WatcherInfo): Promise<void> {
  await atomicWriteFile(`${state.dir}/${INFO}`, enc.encode(JSON.stringify(info)));
}

/** The watcher's record, when one was written. */
export async function readWatcherInfo(state: LocalState): Promise<WatcherInfo | undefined> {
  try {
    const v = JSON.parse(await Deno.readTextFile(`${state.dir}/${INFO}`));
    if (typeof v.pid === "number" && typeof v.replica === "string") return v as WatcherInfo;
  } catch { /* absent or unreadable */ }
  return undefined;
}

/** Ask the watcher for a snapshot; resolves with its answer, or undefined on timeout. */
export async function requestSnapshot(
  state: LocalState,
  timeoutMs: number,
): Promise<SnapshotAnswer | undefined> {
  const id = crypto.randomUUID();
  await atomicWriteFile(`${state.dir}/${REQUEST}`, enc.encode(id));
  const answer = `${state.dir}/snapshot-done-${id}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const v = JSON.parse(await Deno.readTextFile(answer)) as SnapshotAnswer;
      await removeIfExists(answer);
      return v;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) && !(e instanceof SyntaxError)) throw e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

/** Recheck for a request file this often even when the state folder looks unchanged (ms). */
const RECHECK_MS = 10_000;

/**
 * Cheap polling for snapshot requests, for the idle loop over many databases: a request is a file
 * renamed into the state folder, which changes the folder's mtime, so one stat of the folder that
 * succeeds replaces a stat of the request file that fails (a thrown NotFound costs 10 times more:
 * at 1,000 idle databases it was half of walrust's CPU). An mtime within the last few ms is not
 * trusted (Deno reports ms; a request in the same ms would be missed), and every RECHECK_MS the
 * file is looked for anyway (filesystems with coarse timestamps).
 */
export class SnapshotRequestPoll {
  #seen = -1;
  #checkedAt = 0;

  constructor(readonly state: LocalState) {}

  /** True when a snapshot request is waiting. */
  pending(now = Date.now()): boolean {
    let mtime: number;
    try {
      mtime = Deno.statSync(this.state.dir).mtime?.getTime() ?? -1;
    } catch {
      return false;
    }
    if (mtime === this.#seen && mtime > 0 && now - this.#checkedAt < RECHECK_MS) return false;
    this.#seen = now - mtime > 5 ? mtime : -1;
    this.#checkedAt = now;
    return hasSnapshotRequest(this.state);
  }
}

/** True when a snapshot request is waiting (a stat of the request file). */
export function hasSnapshotRequest(state: LocalState): boolean {
  try {
    Deno.statSync(`${state.dir}/${REQUEST}`);
    return true;
  } catch {
    return false;
  }
}

/** The id of a pending snapshot request (taken: the request file is removed), if any. */
export function takeSnapshotRequest(state: LocalState): string | undefined {
  let id: string;
  try {
    id = Deno.readTextFileSync(`${state.dir}/${REQUEST}`).trim();
  } catch {
    return undefined;
  }
  try {
    Deno.removeSync(`${state.dir}/${REQUEST}`);
  } catch { /* raced with a new request: it is handled next time */ }
  return /^[0-9a-f-]{36}$/.test(id) ? id : undefined;
}

/** Answer request `id`. */
export async function answerSnapshotRequest(
  state: LocalState,
  id: string,
  answer: SnapshotAnswer,
): Promise<void> {
  await atomicWriteFile(`${state.dir}/snapshot-done-${id}`, enc.encode(JSON.stringify(answer)));
}
