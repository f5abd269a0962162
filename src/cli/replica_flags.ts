/** The replica flags shared by restore, list and snapshot: --bucket, --endpoint, --region. */
import type { CliContext } from "./context.ts";
import { type Flags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import { resolveRetry } from "../config/schema.ts";
import type { FileConfig } from "../config/schema.ts";
import { openReplica, type Replica } from "../storage/open.ts";
import { WebhookSender } from "../observe/webhooks.ts";
import { attemptsOf } from "../storage/resilient.ts";
import { log } from "../observe/log.ts";

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
  config?: FileConfig,
  webhooks?: WebhookSender,
): Promise<Replica> {
  config ??= await loadConfig(ctx.configPath);
  const bucket = str(flags, "bucket") ?? config.s3.bucket;
  if (!bucket) {
    throw new ConfigError(
      `${command}: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix)`,
    );
  }
  return await openReplica(
    bucket,
    {
      endpoint: str(flags, "endpoint") ?? config.s3.endpoint,
      region: str(flags, "region") ?? config.s3.region,
      forcePathStyle: config.s3.forcePathStyle,
    },
    {
      retry: resolveRetry(config.retry),
      events: webhooks ? storageWebhookEvents(webhooks, bucket) : { log },
    },
  );
}

/** The webhook sender configured by [[webhooks]] (none configured: sends nothing). */
export function webhookSender(config: FileConfig): WebhookSender {
  return new WebhookSender(config.webhooks, { log });
}

/** Storage events that become webhooks: breaker transitions and rejected credentials. */
export function storageWebhookEvents(hooks: WebhookSender, bucket: string) {
  return {
    onBreakerOpen: (info: { failures: number; lastError: string }) =>
      hooks.send("circuit_breaker_open", {
        database: "*",
        error: info.lastError,
        attempts: info.failures,
        context: { bucket },
      }),
    onBreakerClosed: () =>
      hooks.send("circuit_breaker_closed", { database: "*", context: { bucket } }),
    onAuthFailure: (err: Error) =>
      hooks.send("auth_failure", {
        database: "*",
        error: err.message,
        attempts: attemptsOf(err) ?? 1,
        context: { bucket },
      }),
    log,
  };
}
