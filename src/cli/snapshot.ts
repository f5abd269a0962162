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
  const replica = await replicaFromFlags("snapshot", flags, ctx);
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
    if (e instanceof ConfigError) return await viaWatcher(dbPath, timeoutMs, ctx);
    throw e;
  }
  const txid = await r.snapshot("requested");
  if (!(await r.drainUploads(Date.now() + timeoutMs))) {
    throw new WalrustError(
      `snapshot: uploads did not finish within ${timeoutMs / 1000}s; they stay queued locally`,
    );
  }
  ctx.out(`snapshot of ${dbPath} at TXID ${txid} uploaded`);
  return 0;
}

/** A watcher holds the database: leave it a request file and wait until it is handled. */
async function viaWatcher(dbPath: string, timeoutMs: number, ctx: CliContext): Promise<number> {
  const state = new LocalState(dbPath);
  await Deno.writeTextFile(state.snapshotRequestPath, String(Date.now()));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(state.snapshotRequestPath);
    } catch {
      ctx.out(`snapshot of ${dbPath} taken by the running watcher`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new WalrustError(
    `snapshot: the running watcher did not take the snapshot within ${timeoutMs / 1000}s`,
  );
}
