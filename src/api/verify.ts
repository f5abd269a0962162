/**
 * `verify()`: prove that a database's replica restores. Plans the target, decodes every file of
 * the plan while restoring it into a temporary folder, runs `PRAGMA integrity_check`, compares the
 * recorded database checksum, and reports the restorable window. Unlike `restore()`, a corrupt
 * file is never planned around silently: it is an error, and the report says whether another plan
 * would still restore the target without it.
 */
import { join } from "node:path";
import { verifyLtx } from "../ltx/decoder.ts";
import { formatTXID as txidHex } from "../ltx/names.ts";
import { checkRestoreOutput, CorruptFileError } from "../restore/apply.ts";
import {
  fileTimestamp,
  GapError,
  listLtxFiles,
  type LtxFileRef,
  planRestore,
  type RestorePlan,
} from "../restore/plan.ts";
import { restoreWithFallback, type RunResult } from "../restore/run.ts";
import type { Target } from "../restore/time.ts";
import { POST_APPLY_CHECKSUM_META } from "../storage/layout.ts";
import type { Replica } from "../storage/open.ts";
import { DbReplica } from "../storage/replica.ts";
import { ConfigError, ExitCode, IntegrityError, RestoreError } from "../errors.ts";
import { replicaOf, type ReplicaOptions } from "./replica.ts";
import { targetOf, type TargetOptions } from "./restore.ts";

/** Options for {@link verify}. */
export interface VerifyOptions extends ReplicaOptions, TargetOptions {
  /** The database's name in the replica (by default its file name, e.g. "app.db"). */
  name: string;
  /** Also decode every other LTX file of the database, not only the plan's (default false). */
  all?: boolean;
  /** Where the temporary restore folder is made (default: the system's temp directory). */
  tempDir?: string;
  /** Files decoded at once by `all` (default 4). */
  concurrency?: number;
  /** Called as the restore consumes LTX bytes: (bytes read so far, total bytes of the plan). */
  onProgress?: (done: number, total: number) => void;
}

/** One thing verify found wrong. */
export interface VerifyProblem {
  /** The object at fault, when one file is (a corrupt file); absent for a gap or a failed check. */
  key?: string;
  /** What is wrong (without the key). */
  error: string;
  /** 5 for damage (corrupt file, gap, failed check), 6 for a target nothing can restore. */
  exitCode: typeof ExitCode.Integrity | typeof ExitCode.Restore;
}

/** A restorable state: its TXID and the header time of the file that ends there. */
export interface RestorablePoint {
  /** The state's TXID. */
  txid: number;
  /** When it was committed (the LTX header timestamp), when the header could be read. */
  time?: Date;
}

/** After a corrupt file in the plan: whether another plan restored the target without it. */
export interface FallbackOutcome {
  /** True when a plan without the corrupt file(s) restored the target and passed every check. */
  restorable: boolean;
  /** That plan, when there was one. */
  plan?: RestorePlan;
  /** One line for people: where the target restores from without the file, or why it does not. */
  note: string;
}

/** What {@link verify} found. */
export interface VerifyReport {
  /** True when the target restored from its plan with no problem anywhere (exit code 0). */
  ok: boolean;
  /** 0 ok; 5 any integrity problem (even when a fallback restored the target); 6 nothing restorable. */
  exitCode: typeof ExitCode.Ok | typeof ExitCode.Integrity | typeof ExitCode.Restore;
  /** The database's name in the replica. */
  name: string;
  /** The replica, as a URL. */
  replica: string;
  /** What was verified: the latest state, a TXID, or a moment. */
  target: Target;
  /** True when the target state was restored and checked (perhaps by a fallback plan). */
  restored: boolean;
  /** The TXID restored, when `restored`. */
  txid?: number;
  /** When `txid` was reached: the earliest header time of the files ending at it. */
  timestamp?: Date;
  /** LTX files decoded in full. */
  filesChecked: number;
  /** Their total size in bytes. */
  bytes: number;
  /** Size of the restored database in bytes, when `restored`. */
  databaseBytes?: number;
  /** Time the restore (decoding, writing, integrity_check) took, in milliseconds. */
  restoreMs: number;
  /** "matched": the recorded `walrust-post-apply-checksum` was reproduced; "absent": none recorded. */
  checksumRecord?: "matched" | "absent";
  /** The earliest state (oldest file from TXID 1, a snapshot) and the newest one the files plan to. */
  window: { oldest?: RestorablePoint; newest?: RestorablePoint };
  /** Set when a file of the plan was corrupt: whether the target restores without it. */
  fallback?: FallbackOutcome;
  /** Everything found wrong, in the order found. */
  errors: VerifyProblem[];
}

const DEFAULT_CONCURRENCY = 4;

/**
 * Verify that `name` in the replica restores at the target (latest by default): decode every file
 * the plan needs (CRCs, header rules, TXID continuity, snapshot completeness), restore into a
 * temporary folder that is removed afterwards, run `PRAGMA integrity_check`, and compare the
 * recorded database checksum. With `all`, every other LTX file of the database is decoded too.
 * Integrity problems are reported, not thrown; storage failures (StorageError) and bad options
 * (ConfigError) are thrown.
 *
 * ```ts
 * import { verify } from "./mod.ts";
 * const r = await verify({ name: "app.db", bucket: "file:///backups", all: true });
 * if (!r.ok) for (const e of r.errors) console.error(e.key ?? "", e.error);
 * console.log(`TXID ${r.txid}: ${r.filesChecked} files, oldest ${r.window.oldest?.time}`);
 * ```
 */
export async function verify(o: VerifyOptions): Promise<VerifyReport> {
  const target = targetOf(o);
  const replica = await replicaOf(o);
  try {
    return await verifyReplica(replica, o, target);
  } finally {
    if (typeof o.bucket === "string") await replica.storage.close?.();
  }
}

async function verifyReplica(
  replica: Replica,
  o: VerifyOptions,
  target: Target,
): Promise<VerifyReport> {
  const db = DbReplica.of(replica, o.name);
  const storage = db.storage;
  const errors: VerifyProblem[] = [];
  const checked = new Map<string, number>(); // key -> size of every file decoded in full
  const tmp = await Deno.makeTempDir({ dir: o.tempDir, prefix: "walrust-verify-" });
  let run: RunResult | undefined;
  let gap: GapError | undefined;
  let fallback: FallbackOutcome | undefined;
  let restoreMs = 0;
  let files: LtxFileRef[];
  try {
    const out = join(tmp, "restored.db");
    await refuseTempInReplica(out, tmp, replica.fileRoot);
    files = await listLtxFiles(db);
    const corrupt: { key: string; reason: string }[] = [];
    let why = "no other plan reaches the same TXID";
    const started = performance.now();
    try {
      run = await restoreWithFallback(db, target, out, {
        integrity: "full",
        checkRecordedChecksum: true,
        replicaRoot: replica.fileRoot,
        onFallback: (f) => corrupt.push(f),
        onProgress: o.onProgress,
      });
    } catch (e) {
      if (e instanceof CorruptFileError) corrupt.push(e);
      else if (e instanceof GapError) {
        // A gap right at the start (no base at all) leaves nothing restorable; later, it is damage.
        gap = e;
        const code = e.last === 0 ? ExitCode.Restore : ExitCode.Integrity;
        errors.push({ error: e.message, exitCode: code });
      } else if (e instanceof RestoreError) {
        errors.push({ error: e.message, exitCode: ExitCode.Restore });
      } else if (e instanceof IntegrityError) {
        errors.push({ error: e.message, exitCode: ExitCode.Integrity });
        why = "the plan without it failed its checks";
      } else throw e;
    } finally {
      restoreMs = performance.now() - started;
    }
    for (const c of corrupt) {
      errors.push({ key: c.key, error: c.reason, exitCode: ExitCode.Integrity });
      checked.set(c.key, sizeOf(files, c.key));
    }
    if (corrupt.length > 0) fallback = fallbackOutcome(run, corrupt.length, why);
    for (const f of run?.plan.files ?? []) checked.set(f.key, f.size);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }

  if (o.all) {
    const rest = files.filter((f) => !checked.has(f.key));
    await decodeAll(storage, rest, Math.max(1, o.concurrency ?? DEFAULT_CONCURRENCY), (f, e) => {
      checked.set(f.key, f.size);
      if (e !== undefined) errors.push({ key: f.key, error: e, exitCode: ExitCode.Integrity });
    });
  }

  const last = run?.plan.files.at(-1);
  const latest = target.kind === "latest" && run ? run.plan : await latestPlan(db);
  const newest = latest ??
    (gap && gap.last > 0 ? await planTo(db, gap.last) : undefined);
  const exitCode = errors.some((e) => e.exitCode === ExitCode.Integrity)
    ? ExitCode.Integrity
    : run
    ? ExitCode.Ok
    : ExitCode.Restore;
  return {
    ok: exitCode === ExitCode.Ok,
    exitCode,
    name: o.name,
    replica: replica.url,
    target,
    restored: run !== undefined,
    txid: run?.txid,
    timestamp: run ? await timeOfTxid(storage, files, run.txid) : undefined,
    filesChecked: checked.size,
    bytes: [...checked.values()].reduce((a, b) => a + b, 0),
    databaseBytes: run?.bytes,
    restoreMs: Math.round(restoreMs),
    checksumRecord: last
      ? ((await storage.head(last.key))?.meta?.[POST_APPLY_CHECKSUM_META] !== undefined
        ? "matched"
        : "absent")
      : undefined,
    window: {
      oldest: await oldestPoint(storage, files),
      newest: newest && newest.files.length > 0
        ? { txid: newest.txid, time: await timeOfTxid(storage, files, newest.txid) }
        : undefined,
    },
    fallback,
    errors,
  };
}

/** The restore writes into `tmp`: it must not lie inside a file replica (a bad `tempDir`). */
async function refuseTempInReplica(out: string, tmp: string, root?: string): Promise<void> {
  try {
    await checkRestoreOutput(out, { replicaRoot: root });
  } catch (e) {
    if (!(e instanceof RestoreError)) throw e;
    throw new ConfigError(
      `verify: the temporary folder ${tmp} lies inside the file replica ${root}; ` +
        "choose another parent folder (--temp-dir, or TMPDIR)",
      { cause: e },
    );
  }
}

/** Whether the restore got past the corrupt files, in words an operator can act on. */
function fallbackOutcome(run: RunResult | undefined, n: number, why: string): FallbackOutcome {
  const it = n === 1 ? "it" : `these ${n} files`;
  if (!run) return { restorable: false, note: `not restorable without ${it}: ${why}` };
  const [first, ...rest] = run.plan.files;
  const base = first.level === 9 ? `snapshot ${first.key}` : first.key;
  const from = rest.length === 0 ? base : `${base} and ${rest.length} later file(s)`;
  return { restorable: true, plan: run.plan, note: `restorable without ${it} from ${from}` };
}

/** Decode each file in full, `concurrency` at a time; `done` gets each file's defect, if any. */
async function decodeAll(
  storage: Replica["storage"],
  files: LtxFileRef[],
  concurrency: number,
  done: (f: LtxFileRef, error?: string) => void,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const f = files[next++];
      try {
        const s = await verifyLtx(await storage.get(f.key));
        const h = s.header;
        done(
          f,
          h.minTXID === f.minTXID && h.maxTXID === f.maxTXID
            ? undefined
            : `header holds TXIDs ${txidHex(h.minTXID)}-${txidHex(h.maxTXID)}, the key names ` +
              `${txidHex(f.minTXID)}-${txidHex(f.maxTXID)}`,
        );
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        done(f, e.message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
}

/** The plan for the latest state, or undefined when there is none (a gap, no base, no files). */
async function latestPlan(db: DbReplica): Promise<RestorePlan | undefined> {
  return await planOrUndefined(db, { kind: "latest" });
}

/** The plan ending at `txid`, or undefined. */
async function planTo(db: DbReplica, txid: number): Promise<RestorePlan | undefined> {
  return await planOrUndefined(db, { kind: "txid", txid });
}

async function planOrUndefined(
  db: DbReplica,
  target: Target,
): Promise<RestorePlan | undefined> {
  try {
    return await planRestore(db, target);
  } catch (e) {
    if (e instanceof RestoreError || e instanceof IntegrityError) return undefined;
    throw e;
  }
}

/** The earliest restorable state: the oldest file starting at TXID 1 (a snapshot, or the first L0). */
async function oldestPoint(
  storage: Replica["storage"],
  files: LtxFileRef[],
): Promise<RestorablePoint | undefined> {
  let best: LtxFileRef | undefined;
  for (const f of files) {
    if (f.minTXID !== 1) continue;
    if (!best || f.maxTXID < best.maxTXID || (f.maxTXID === best.maxTXID && f.level > best.level)) {
      best = f;
    }
  }
  return best
    ? { txid: best.maxTXID, time: await timeOfTxid(storage, files, best.maxTXID) }
    : undefined;
}

/**
 * When `txid` was reached: the earliest header time of the files ending there (a snapshot or a
 * compacted file taken later carries a later time than the file that committed it).
 */
async function timeOfTxid(
  storage: Replica["storage"],
  files: LtxFileRef[],
  txid: number,
): Promise<Date | undefined> {
  let t: number | undefined;
  for (const f of files) {
    if (f.maxTXID !== txid) continue;
    const d = await timeOf(storage, f);
    if (d !== undefined && (t === undefined || d.getTime() < t)) t = d.getTime();
  }
  return t === undefined ? undefined : new Date(t);
}

/** A file's header time; undefined when its header does not decode (reported elsewhere). */
async function timeOf(storage: Replica["storage"], f: LtxFileRef): Promise<Date | undefined> {
  try {
    return new Date(await fileTimestamp(storage, f));
  } catch (e) {
    if (e instanceof IntegrityError) return undefined;
    throw e;
  }
}

function sizeOf(files: LtxFileRef[], key: string): number {
  return files.find((f) => f.key === key)?.size ?? 0;
}
