/**
 * The replica flags shared by restore, list and snapshot (--bucket, --endpoint, --region), and
 * how a command-line database argument (NAME, DB_PATH or replica URL) finds its replica.
 */
import { basename, dirname, isAbsolute, resolve, sep } from "node:path";
import type { CliContext } from "./context.ts";
import { type Flags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { loadConfig } from "../config/load.ts";
import { globFiles, globSegmentToRegExp, isGlobPattern, prefixProblem } from "../config/globs.ts";
import { resolveRetry } from "../config/schema.ts";
import type { AgeSettings, FileConfig, S3Settings } from "../config/schema.ts";
import { ageKeysOf } from "../config/age.ts";
import { openReplica, type Replica } from "../storage/open.ts";
import { WebhookSender } from "../observe/webhooks.ts";
import { attemptsOf } from "../storage/resilient.ts";
import { log } from "../observe/log.ts";

export const REPLICA_OPTIONS = {
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
} as const;

/** [s3] with the static credentials the config loader may provide (litestream.yml keys). */
type S3WithCredentials = S3Settings & { accessKeyId?: string; secretAccessKey?: string };

/**
 * Open the replica named by flags (or by `bucketUrl`, e.g. from a replica URL argument),
 * falling back to [s3] in the config file for the bucket, endpoint, region and credentials;
 * encrypted with `dbAge` (a database's own keys), else `[age]`, else the LITESTREAM_AGE_* keys.
 */
export async function replicaFromFlags(
  command: string,
  flags: Flags,
  ctx: CliContext,
  config?: FileConfig,
  webhooks?: WebhookSender,
  bucketUrl?: string,
  dbAge?: AgeSettings,
): Promise<Replica> {
  config ??= await loadConfig(ctx.configPath, { expandEnv: !ctx.noExpandEnv });
  const bucket = bucketUrl ?? str(flags, "bucket") ?? config.s3.bucket;
  if (!bucket) {
    throw new ConfigError(
      `${command}: no replica given (fix: --bucket file:///path/to/backups or s3://bucket/prefix)`,
    );
  }
  const s3 = config.s3 as S3WithCredentials;
  return await openReplica(
    bucket,
    {
      endpoint: str(flags, "endpoint") ?? s3.endpoint,
      region: str(flags, "region") ?? s3.region,
      forcePathStyle: s3.forcePathStyle,
      accessKeyId: s3.accessKeyId || undefined,
      secretAccessKey: s3.secretAccessKey || undefined,
      webdavUsername: s3.webdavUsername || undefined,
      webdavPassword: s3.webdavPassword || undefined,
      azureAccountKey: s3.azureAccountKey || undefined,
      azureSasToken: s3.azureSasToken || undefined,
      sftpPassword: s3.sftpPassword || undefined,
      sftpKeyPath: s3.sftpKeyPath || undefined,
      sftpHostKey: s3.sftpHostKey || undefined,
    },
    {
      retry: resolveRetry(config.retry),
      events: webhooks ? storageWebhookEvents(webhooks, bucket) : { log },
    },
    await ageKeysOf(config.age, dbAge),
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

/** True when `arg` is a URL (`s3://...`, `file://...`): Litestream's test, a scheme and `//`. */
export function isReplicaUrl(arg: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]+:\/\//.test(arg);
}

/**
 * Split a Litestream replica URL into the bucket URL and the database's name: the last path
 * segment is the name (`s3://bucket/path/db` -> `s3://bucket/path` and `db`); a query string
 * (`?endpoint=...`) stays with the bucket.
 */
export function splitReplicaUrl(url: string): { bucket: string; name: string } {
  const q = url.search(/[?#]/);
  const base = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? "" : url.slice(q);
  const pathStart = base.indexOf("/", base.indexOf("//") + 2);
  const trimmed = base.replace(/\/+$/, "");
  const cut = trimmed.lastIndexOf("/");
  if (pathStart < 0 || cut < pathStart) {
    throw new ConfigError(
      `replica URL ${url} names no database (fix: s3://bucket/path/DB or file:///path/DB)`,
    );
  }
  let name: string;
  try {
    name = decodeURIComponent(trimmed.slice(cut + 1));
  } catch (cause) {
    throw new ConfigError(`replica URL ${url}: bad percent-encoding`, { cause });
  }
  const bucketPart = trimmed.slice(0, cut);
  // "file:///db" keeps its root: the bucket is "file:///".
  const bucket = bucketPart.endsWith(":/") || bucketPart.endsWith("//")
    ? `${bucketPart}/`
    : bucketPart;
  return { bucket: bucket + query, name };
}

/** A database named on the command line, before its replica is opened. */
export interface DatabaseArg {
  /** The database's name (key prefix) in the replica. */
  name: string;
  /** The bucket URL to use instead of --bucket / [s3] bucket (from a replica URL). */
  bucketUrl?: string;
  /** The database file, when the argument was a path listed in the config. */
  dbPath?: string;
  /** The argument was a replica URL. */
  fromUrl: boolean;
  /** The age keys of its [[databases]] entry, when it sets its own. */
  age?: AgeSettings;
}

/**
 * Resolve a NAME, DB_PATH or REPLICA_URL argument, as Litestream's restore and ltx take it:
 * a URL gives its bucket and name; a path listed in [[databases]] (literally or by a glob)
 * gives that database's name; anything else is a name in the replica of --bucket / [s3].
 */
export async function resolveDatabaseArg(
  command: string,
  arg: string,
  flags: Flags,
  config: FileConfig,
): Promise<DatabaseArg> {
  if (isReplicaUrl(arg)) {
    if (str(flags, "bucket") !== undefined) {
      throw new ConfigError(`${command}: give a replica URL or --bucket, not both`);
    }
    const { bucket, name } = splitReplicaUrl(arg);
    return { name, bucketUrl: bucket, fromUrl: true };
  }
  const listed = await findConfigured(config, arg);
  if (listed) return { name: listed.name, dbPath: listed.path, fromUrl: false, age: listed.age };
  const bad = prefixProblem(arg);
  if (bad !== undefined) {
    const where = config.path ? `[[databases]] of ${config.path}` : "a config file (none loaded)";
    throw new ConfigError(
      `${command}: database ${arg} is not listed in ${where} (fix: give its NAME in the ` +
        `replica, a replica URL like s3://bucket/path/NAME, or --config FILE that lists it)`,
    );
  }
  return { name: arg, fromUrl: false };
}

/** One [[databases]] entry resolved to a file path, for listing and lookups. */
export interface ConfiguredDatabase {
  /** Absolute path of the database file (for an unmatched glob: the pattern). */
  path: string;
  /** Its name in the replica (an unmatched glob keeps `{name}`). */
  name: string;
  /** The entry's own age keys, when it sets them. */
  age?: AgeSettings;
}

/** The directory relative [[databases]] paths resolve against: the config file's, else cwd. */
function configBase(config: FileConfig): string {
  return config.path ? dirname(config.path) : Deno.cwd();
}

function nameFor(prefix: string | undefined, file: string): string {
  return (prefix ?? "{name}").replaceAll("{name}", basename(file));
}

/** Every database the config lists: literal paths as written, globs expanded to their files. */
export async function configuredDatabases(config: FileConfig): Promise<ConfiguredDatabase[]> {
  const base = configBase(config);
  const out: ConfiguredDatabase[] = [];
  for (const e of config.databases) {
    const abs = isAbsolute(e.path) ? resolve(e.path) : resolve(base, e.path);
    if (!isGlobPattern(e.path)) {
      out.push({ path: abs, name: nameFor(e.prefix, abs) });
      continue;
    }
    const files = await globFiles(abs);
    if (files.length === 0) out.push({ path: abs, name: e.prefix ?? "{name}" });
    for (const f of files) out.push({ path: f, name: nameFor(e.prefix, f) });
  }
  return out;
}

/** The [[databases]] entry whose path (or glob) is `arg`, resolved against the working dir. */
async function findConfigured(
  config: FileConfig,
  arg: string,
): Promise<ConfiguredDatabase | undefined> {
  if (config.databases.length === 0) return undefined;
  const want = resolve(arg);
  const real = await realPathOr(want);
  const base = configBase(config);
  for (const e of config.databases) {
    const abs = isAbsolute(e.path) ? resolve(e.path) : resolve(base, e.path);
    const hit = isGlobPattern(e.path)
      ? globMatches(abs, want)
      : abs === want || (await realPathOr(abs)) === real;
    if (hit) return { path: want, name: nameFor(e.prefix, want), age: e.age };
  }
  return undefined;
}

async function realPathOr(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    return path; // a database not restored yet has no real path
  }
}

/** Whether absolute `path` matches absolute glob `pattern` (`**` any depth), without I/O. */
export function globMatches(pattern: string, path: string): boolean {
  const pat = pattern.split(sep).filter((s) => s !== "");
  const segs = path.split(sep).filter((s) => s !== "");
  const match = (i: number, j: number): boolean => {
    if (i === pat.length) return j === segs.length;
    if (pat[i] === "**") {
      for (let k = j; k <= segs.length; k++) if (match(i + 1, k)) return true;
      return false;
    }
    if (j === segs.length) return false;
    const ok = isGlobPattern(pat[i])
      ? globSegmentToRegExp(pat[i]).test(segs[j]) &&
        (pat[i].startsWith(".") || !segs[j].startsWith("."))
      : pat[i] === segs[j];
    return ok && match(i + 1, j + 1);
  };
  return match(0, 0);
}
