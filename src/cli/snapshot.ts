/** `walrust snapshot DB`: a level-9 snapshot now, through a running watcher or directly. */
import { type CliContext, configOf } from "./context.ts";
import { num, parseFlags, str } from "./args.ts";
import { REPLICA_OPTIONS } from "./replica_flags.ts";
import { ConfigError } from "../errors.ts";
import { resolveRetry } from "../config/schema.ts";
import { snapshot } from "../api.ts";
import { log } from "../observe/log.ts";
import { formatTXID } from "../ltx/names.ts";
import { basename, resolve } from "node:path";
import { Progress } from "./progress.ts";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  timeout: { type: "string" },
  prefix: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
} as const;

/** Run `walrust snapshot DB`. */
export async function runSnapshot(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("snapshot", args, OPTIONS);
  if (positionals.length !== 1) throw new ConfigError("snapshot: expected one database path");
  const dbPath = resolve(positionals[0]);
  const timeoutMs = (num("snapshot", flags, "timeout", { min: 1 }) ?? 120) * 1000;
  const config = await configOf(ctx);
  const name = basename(dbPath);
  const progress = Progress.start(`snapshot ${name}`, { quiet: Boolean(flags.quiet) });
  const r = await snapshot({
    path: dbPath,
    name: str(flags, "prefix"),
    bucket: str(flags, "bucket") ?? config.s3.bucket,
    endpoint: str(flags, "endpoint") ?? config.s3.endpoint,
    region: str(flags, "region") ?? config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
    retry: resolveRetry(config.retry),
    sync: config.sync,
    timeoutMs,
    log,
    onProgress: progress && ((phase, done, total) => {
      progress.phase(phase === "write" ? `snapshot ${name}` : `upload ${name}`);
      progress.update(done, total);
      // The upload's rate counts from here, its wait in the queue included.
      if (phase === "write" && done === total) progress.phase(`upload ${name}`);
    }),
  }).finally(() => progress?.done());
  if (flags.json) {
    ctx.out(
      JSON.stringify({ db_path: dbPath, txid: formatTXID(r.txid), via_watcher: r.viaWatcher }),
    );
  } else {
    const by = r.viaWatcher ? " by the running watcher" : "";
    ctx.out(`snapshot of ${dbPath} at TXID ${r.txid} uploaded${by}`);
  }
  return 0;
}
