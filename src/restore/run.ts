/** A whole restore: check the output, plan, apply; re-plan around files found corrupt. */

import { RestoreError } from "../errors.ts";
import { formatTXID as txidHex } from "../ltx/names.ts";
import type { DbReplica } from "../storage/replica.ts";
import {
  type ApplyOptions,
  applyPlan,
  checkRestoreOutput,
  CorruptFileError,
  type RestoreResult,
} from "./apply.ts";
import { planRestore, type RestorePlan, type Target } from "./plan.ts";

/** A corrupt file the restore left out, and the plan it continues with. */
export interface FallbackInfo {
  /** Key of the corrupt LTX file left out. */
  key: string;
  /** What was wrong with it. */
  reason: string;
  /** The plan tried next, which does not use `key`. */
  plan: RestorePlan;
}

/** Options for restoreWithFallback. */
export interface RunOptions extends ApplyOptions {
  /** Header reads in flight at once while planning time targets. */
  concurrency?: number;
  /** How many corrupt files may be planned around before giving up; default 8. */
  maxFallbacks?: number;
  /** Called before each retry without a corrupt file. */
  onFallback?(info: FallbackInfo): void;
}

/** What restoreWithFallback produced: the result, the plan that made it, the files left out. */
export interface RunResult extends RestoreResult {
  /** The plan that produced the restored database. */
  plan: RestorePlan;
  /** Corrupt files planned around, in the order they were found (empty when none). */
  fallbacks: FallbackInfo[];
}

const DEFAULT_MAX_FALLBACKS = 8;

/**
 * Restore `target` into `outPath`. When a file of the plan proves corrupt, plan again without
 * it (another snapshot or level may cover the same TXIDs) and retry, as long as the new plan
 * reaches the same TXID; otherwise the corruption error stands (exit 5). A recorded-checksum
 * mismatch or a failed integrity_check is never planned around: no file is to blame.
 */
export async function restoreWithFallback(
  db: DbReplica,
  target: Target,
  outPath: string,
  opts: RunOptions = {},
): Promise<RunResult> {
  await checkRestoreOutput(outPath, opts);
  const max = opts.maxFallbacks ?? DEFAULT_MAX_FALLBACKS;
  const exclude = new Set<string>();
  const fallbacks: FallbackInfo[] = [];
  let plan = await planRestore(db, target, { concurrency: opts.concurrency });
  const txid = plan.txid;
  for (;;) {
    let bad: CorruptFileError;
    try {
      return { ...await applyPlan(db.storage, plan, outPath, opts), plan, fallbacks };
    } catch (e) {
      if (!(e instanceof CorruptFileError)) throw e;
      bad = e;
    }
    if (fallbacks.length >= max) {
      throw again(bad, `gave up after planning around ${fallbacks.length} corrupt file(s)`);
    }
    exclude.add(bad.key);
    const next = await replan(db, target, opts.concurrency, exclude);
    if (next === undefined || next.txid !== txid) {
      throw again(bad, `no restore plan without it reaches TXID ${txidHex(txid)}`);
    }
    const info = { key: bad.key, reason: bad.reason, plan: next };
    fallbacks.push(info);
    opts.onFallback?.(info);
    plan = next;
  }
}

/** The plan without `exclude`, or undefined when none can be made (gap, no base). */
async function replan(
  db: DbReplica,
  target: Target,
  concurrency: number | undefined,
  exclude: ReadonlySet<string>,
): Promise<RestorePlan | undefined> {
  try {
    return await planRestore(db, target, { concurrency, exclude });
  } catch (e) {
    if (e instanceof RestoreError) return undefined;
    throw e;
  }
}

/** The same corruption error, saying why no fallback helped. */
function again(e: CorruptFileError, note: string): CorruptFileError {
  return new CorruptFileError(e.key, e.reason, { cause: e, note });
}
