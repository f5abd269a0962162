/** The replica flags shared by restore, list and snapshot: --bucket, --endpoint, --region. */
import type { CliContext } from "./context.ts";
import { type Flags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import { openReplica, type Replica } from "../storage/open.ts";

export const REPLICA_OPTIONS = {
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
} as const;

/** Open the replica named by flags, falling back to [s3] in the config file. */
export async function replicaFromFlags(
  command: string,
  flags: Flags,
  ctx: CliContext,
): Promise<Replica> {
  const config = await loadConfig(ctx.configPath);
  const bucket = str(flags, "bucket") ?? config.s3.bucket;
  if (!bucket) {
    throw new ConfigError(
      `${command}: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix)`,
    );
  }
  return await openReplica(bucket, {
    endpoint: str(flags, "endpoint") ?? config.s3.endpoint,
    region: str(flags, "region") ?? config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
  });
}
