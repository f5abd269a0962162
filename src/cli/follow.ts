/**
 * `walrust replicate SOURCE --local PATH`: a read replica. (Litestream's `replicate`, which
 * replicates TO storage, is `walrust watch`; only the form with `--local` comes here.)
 */
import { type CliContext, configOf } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import { isReplicaUrl, replicaFromFlags, splitReplicaUrl } from "./replica_flags.ts";
import { ConfigError } from "../errors.ts";
import { parseDurationMs } from "../config/duration.ts";
import { follow, type Following } from "../api.ts";
import { log } from "../observe/log.ts";
import { type MetricsSettings, resolveMetrics } from "../config/schema.ts";
import type { Replica } from "../storage/open.ts";
import { VERSION } from "../version.ts";
import { METRICS_OPTIONS, metricsFlags } from "./metrics_flags.ts";

const OPTIONS = {
  ...METRICS_OPTIONS,
  local: { type: "string" },
  interval: { type: "string" },
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
} as const;

/** True when `replicate` arguments ask for the follower (`--local`/`-local` is given). */
export function isFollowerForm(args: readonly string[]): boolean {
  return args.some((a) => /^--?local(=|$)/.test(a));
}

/**
 * `walrust replicate` without databases of its own and a config with `[[replicas]]`: the
 * follower. A config with both `[[databases]]` and `[[replicas]]` is ambiguous (exit 2).
 */
export async function configFollows(args: readonly string[], ctx: CliContext): Promise<boolean> {
  // Any positional argument (a value after a flag that takes one is not) means watch's forms.
  const takesValue = (a: string) => {
    const name = a.replace(/^--?/, "");
    const spec = (OPTIONS as Record<string, { type: string } | undefined>)[name];
    return !a.includes("=") && (spec?.type === "string" || a === "-b");
  };
  for (let i = 0; i < args.length; i++) {
    if (!args[i].startsWith("-")) return false;
    if (takesValue(args[i])) i++;
  }
  const config = await configOf(ctx);
  if (config.replicas.length === 0) return false;
  if (config.databases.length > 0) {
    throw new ConfigError(
      "replicate: the config has both [[databases]] (replicated by 'walrust watch') and " +
        "[[replicas]] (followed by 'walrust replicate'); run 'walrust watch' for the first, and " +
        "give the second its own config file",
    );
  }
  return true;
}

/** One database to follow. */
interface Target {
  source: string;
  local: string;
  intervalMs: number;
}

/**
 * Run the followers (`SOURCE --local PATH`, or every `[[replicas]]` entry) until SIGINT or
 * SIGTERM. A copy written by something else stops its follower (exit 5 once all stopped); the
 * others go on.
 */
export async function runFollow(args: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags("replicate", args, OPTIONS);
  const flagMetrics = metricsFlags(flags);
  const config = await configOf(ctx);
  const interval = str(flags, "interval");
  const flagInterval = interval === undefined ? undefined : parseDurationMs(interval, "--interval");
  if (flagInterval !== undefined && !(flagInterval > 0)) {
    throw new ConfigError(`replicate: --interval must be positive`);
  }
  const local = str(flags, "local");
  let targets: Target[];
  if (local !== undefined) {
    if (!local) throw new ConfigError("replicate: --local needs a path (the read replica's file)");
    if (positionals.length !== 1) {
      throw new ConfigError(
        "replicate: expected one SOURCE (s3://bucket/prefix/DB, file:///path/DB, or NAME with " +
          "--bucket) before --local PATH",
      );
    }
    targets = [{ source: positionals[0], local, intervalMs: flagInterval ?? 1000 }];
  } else {
    if (positionals.length > 0) {
      throw new ConfigError("replicate: SOURCE needs --local PATH (or use [[replicas]] entries)");
    }
    targets = config.replicas.map((r) => ({
      source: r.source,
      local: r.local,
      intervalMs: flagInterval ?? r.intervalMs ?? 1000,
    }));
  }
  const resolved: Resolved[] = [];
  for (const t of targets) {
    let bucketUrl: string | undefined;
    let name = t.source;
    if (isReplicaUrl(name)) {
      if (str(flags, "bucket") !== undefined) {
        throw new ConfigError("replicate: give a SOURCE URL or --bucket, not both");
      }
      ({ bucket: bucketUrl, name } = splitReplicaUrl(name));
    }
    const replica = await replicaFromFlags("replicate", flags, ctx, config, undefined, bucketUrl);
    resolved.push({ replica, name, local: t.local, intervalMs: t.intervalMs });
  }
  return await followUntilStopped(resolved, resolveMetrics(config.metrics, flagMetrics));
}

/** One follower, its replica opened. */
export interface Resolved {
  replica: Replica;
  name: string;
  local: string;
  intervalMs: number;
}

/**
 * Follow every target until SIGINT or SIGTERM (also `restore -f`): /metrics and /health when
 * `metrics.enabled`; a copy written by something else stops its follower (exit 5 once all
 * stopped), the others go on.
 */
export async function followUntilStopped(
  targets: Resolved[],
  m: MetricsSettings,
): Promise<number> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  const running: Following[] = [];
  try {
    for (const t of targets) {
      let f: Following;
      try {
        f = await follow({
          bucket: t.replica,
          name: t.name,
          local: t.local,
          intervalMs: t.intervalMs,
          log,
          signal: stop.signal,
        });
      } catch (e) {
        // SIGTERM while waiting for a first backup: a clean stop, not a failure.
        if (!stop.signal.aborted) throw e;
        log.info("stopped before following began", { db: t.local });
        return 0;
      }
      running.push(f);
      log.info("following", {
        db: t.local,
        source: `${t.replica.url}/${t.name}`,
        interval_ms: t.intervalMs,
      });
    }
    const server = m.enabled
      ? await (await import("../observe/follower_metrics.ts")).serveFollowerMetrics(
        () => running.map((f) => f.status()),
        { host: m.host, port: m.port, maxLagMs: m.maxLagMs, version: VERSION, log },
      )
      : undefined;
    const stopped = new Promise<void>((r) => stop.signal.addEventListener("abort", () => r()));
    let first: unknown;
    const failures = running.map((f) =>
      f.failed.catch((e) => {
        first ??= e;
      })
    );
    await Promise.race([stopped, Promise.all(failures)]);
    await server?.close();
    for (const f of running) await f.stop();
    if (first !== undefined && running.length > 0 && !stop.signal.aborted) throw first;
    for (const f of running) {
      const s = f.status();
      log.info("stopped following", { db: s.path, txid: s.txid, applied: s.applied });
    }
    return 0;
  } finally {
    for (const f of running) await f.stop();
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSignal);
  }
}
