/** `walrust snapshot DB`: a level-9 snapshot now, through a running watcher or directly. */
import type { CliContext } from "./context.ts";
import { num, parseFlags, str } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags } from "./replica_flags.ts";
import { ConfigError, WalrustError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import { DEFAULT_SYNC, resolveSync } from "../config/schema.ts";
import { databasePrefix } from "../storage/open.ts";
import { Replicator, UploadPool } from "../engine/db.ts";
import { LocalState } from "../engine/localstate.ts";
import { readWatcherInfo, requestSnapshot } from "../engine/requests.ts";
import { isWatched } from "../sqlite/watchlock.ts";
import { log } from "../observe/log.ts";
import { resolve } from "node:path";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  timeout: { type: "string" },
  prefix: { type: "string" },
} as const;

/** Run `walrust snapshot DB`. */
export async function runSnapshot(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("snapshot", args, OPTIONS);
  if (positionals.length !== 1) throw new ConfigError("snapshot: expected one database path");
  const dbPath = resolve(positionals[0]);
  const timeoutMs = (num("snapshot", flags, "timeout", { min: 1 }) ?? 120) * 1000;
  const config = await loadConfig(ctx.configPath);
  if (isWatched(dbPath)) {
    return await viaWatcher(dbPath, str(flags, "bucket") ?? config.s3.bucket, timeoutMs, ctx);
  }
  const replica = await replicaFromFlags("snapshot", flags, ctx, config);
  const name = str(flags, "prefix") ?? dbPath.slice(dbPath.lastIndexOf("/") + 1);
  let r: Replicator;
  try {
    r = await Replicator.open({
      dbPath,
      prefix: databasePrefix(replica, name),
      replica,
      sync: resolveSync(DEFAULT_SYNC, config.sync),
      pool: new UploadPool(4),
      log,
    });
  } catch (e) {
    // A watcher started between the check and the open.
    if (e instanceof ConfigError && isWatched(dbPath)) {
      return await viaWatcher(dbPath, str(flags, "bucket"), timeoutMs, ctx);
    }
    throw e;
  }
  const { txid } = await r.snapshot("requested");
  if (!(await r.drainUploads(Date.now() + timeoutMs))) {
    throw new WalrustError(
      `snapshot: uploads did not finish within ${timeoutMs / 1000}s; they stay queued locally`,
    );
  }
  ctx.out(`snapshot of ${dbPath} at TXID ${txid} uploaded`);
  return 0;
}

/**
 * A watcher holds the database: ask it (through its state directory) and wait until the
 * snapshot is uploaded. A different replica than the watcher's is refused, not silently ignored.
 */
async function viaWatcher(
  dbPath: string,
  bucket: string | undefined,
  timeoutMs: number,
  ctx: CliContext,
): Promise<number> {
  const state = new LocalState(dbPath);
  const info = await readWatcherInfo(state);
  if (bucket !== undefined && info && !sameReplica(bucket, info.replica)) {
    throw new ConfigError(
      `snapshot: ${dbPath} is replicated by a running watcher (pid ${info.pid}) to ` +
        `${info.replica}, not ${bucket}; run snapshot without --bucket to snapshot there, or stop ` +
        "the watcher first",
    );
  }
  const answer = await requestSnapshot(state, timeoutMs);
  if (!answer) {
    throw new WalrustError(
      `snapshot: the running watcher did not upload a snapshot within ${timeoutMs / 1000}s`,
    );
  }
  if ("error" in answer) throw new WalrustError(`snapshot: the watcher failed: ${answer.error}`);
  ctx.out(`snapshot of ${dbPath} at TXID ${answer.txid} uploaded by the running watcher`);
  return 0;
}

/** The same replica, whether given as file:///path, a plain path, or with a trailing slash. */
function sameReplica(a: string, b: string): boolean {
  const norm = (u: string) => {
    const s = u.replace(/\/+$/, "");
    if (s.startsWith("file://")) return resolve(s.slice("file://".length));
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return resolve(s);
    return s;
  };
  return norm(a) === norm(b);
}
