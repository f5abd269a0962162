/**
 * Read the config file: walrust.toml, or a Litestream v0.5 litestream.yml as-is (see
 * ./litestream.ts). Find the file, expand `$VAR`, parse, and validate every key strictly.
 * Every problem becomes a one-line ConfigError `<file>:<line>: <key path>: <problem> (<fix>)`.
 */

import { parse, TomlError } from "smol-toml";
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { byteSize, durationMs } from "./duration.ts";
import { parseBucketUrl } from "../storage/url.ts";
import { globPrefixProblem, isGlobPattern, prefixProblem } from "./globs.ts";
import {
  type AgeSettings,
  type CacheSettings,
  type DatabaseEntry,
  emptyFileConfig,
  type FileConfig,
  type LogLevel,
  type LogSettings,
  type MetricsSettings,
  type ReplicaFollowEntry,
  resolveRetention,
  resolveRetry,
  type RetentionSettings,
  type RetrySettings,
  type S3Settings,
  type SyncSettings,
  WEBHOOK_EVENT_ALIASES,
  WEBHOOK_EVENTS,
  type WebhookEvent,
  type WebhookSettings,
} from "./schema.ts";

/** Options for {@link loadConfig}. */
export interface LoadOptions {
  /** Variables for `$VAR` expansion and LITESTREAM_CONFIG; default the process environment. */
  env?: Record<string, string>;
  /** Base for a relative `path` and for finding `./walrust.toml`; default Deno.cwd(). */
  cwd?: string;
  /** The litestream.yml tried last when no file is named; default /etc/litestream.yml. */
  litestreamDefault?: string;
  /** Expand `$VAR` references in the file (default true; `-no-expand-env` turns it off). */
  expandEnv?: boolean;
}

/** The file name looked for in the working directory when no --config is given. */
export const DEFAULT_CONFIG_NAME = "walrust.toml";

/** Litestream's default config file, used when there is no walrust.toml. */
export const DEFAULT_LITESTREAM_CONFIG = "/etc/litestream.yml";

type Format = "toml" | "yaml";

/** The parser a file name calls for: .yml/.yaml are YAML, .toml is TOML, else `fallback`. */
function formatOf(name: string, fallback: Format): Format {
  if (/\.ya?ml$/i.test(name)) return "yaml";
  if (/\.toml$/i.test(name)) return "toml";
  return fallback;
}

/**
 * Load and validate a config file. A given `path` must exist (YAML when it ends in .yml or
 * .yaml, else TOML). Without one: `./walrust.toml` when present, else the litestream.yml named
 * by LITESTREAM_CONFIG (which must exist), else /etc/litestream.yml when present, else an
 * empty config.
 */
export async function loadConfig(
  path: string | undefined,
  opts: LoadOptions = {},
): Promise<FileConfig> {
  const cwd = opts.cwd ?? Deno.cwd();
  const env = opts.env ?? Deno.env.toObject();
  const how = { env, cwd, expandEnv: opts.expandEnv ?? true };
  if (path !== undefined) {
    const text = await readConfigText(resolve(cwd, path), path, "check the --config path");
    return await parseAny(text!, path, resolve(cwd, path), formatOf(path, "toml"), how);
  }
  const local = resolve(cwd, DEFAULT_CONFIG_NAME);
  const localText = await readConfigText(local, DEFAULT_CONFIG_NAME);
  if (localText !== undefined) {
    return parseAny(localText, DEFAULT_CONFIG_NAME, local, "toml", how);
  }
  const named = env.LITESTREAM_CONFIG;
  if (named) {
    const abs = resolve(cwd, named);
    const text = await readConfigText(abs, named, "it is named by LITESTREAM_CONFIG");
    return await parseAny(text!, named, abs, formatOf(named, "yaml"), how);
  }
  const fallback = opts.litestreamDefault ?? DEFAULT_LITESTREAM_CONFIG;
  const abs = resolve(cwd, fallback);
  const text = await readConfigText(abs, fallback);
  if (text === undefined) return emptyFileConfig();
  return await parseAny(text, fallback, abs, formatOf(fallback, "yaml"), how);
}

/** The file's text; undefined when it does not exist and no `required` fix is given. */
async function readConfigText(
  abs: string,
  file: string,
  required?: string,
): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(abs);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      if (required === undefined) return undefined;
      throw new ConfigError(`config file not found: ${file} (${required})`, { cause: err });
    }
    if (err instanceof Deno.errors.IsADirectory) {
      throw new ConfigError(`config file is a directory: ${file}`, { cause: err });
    }
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

async function parseAny(
  text: string,
  file: string,
  path: string,
  format: Format,
  how: { env: Record<string, string>; cwd: string; expandEnv: boolean },
): Promise<FileConfig> {
  const { env, cwd, expandEnv } = how;
  if (format === "toml") return parseConfig(text, { file, path, env, expandEnv });
  // Imported here so walrust.toml users never load the YAML parser.
  const { parseLitestreamConfig } = await import("./litestream.ts");
  return parseLitestreamConfig(text, { file, path, env, cwd, expandEnv }).config;
}

/** Options for {@link parseConfig}. */
export interface ParseConfigOptions {
  /** Name used in error messages. */
  file: string;
  /** Absolute path of the file (relative paths inside resolve against its directory). */
  path?: string;
  /** Variables for `$VAR` expansion; none when omitted. */
  env?: Record<string, string>;
  /** Expand `$VAR` references (default true); off, the text is read as written. */
  expandEnv?: boolean;
}

/** Validate config text (after `$VAR` expansion) into a FileConfig. */
export function parseConfig(text: string, opts: ParseConfigOptions): FileConfig {
  const expanded = opts.expandEnv === false ? text : expandEnv(text, opts.env ?? {}, opts.file);
  let doc: Table;
  try {
    doc = parse(expanded) as Table;
  } catch (err) {
    if (err instanceof TomlError) {
      if (looksLikeYaml(text)) {
        throw new ConfigError(
          `${opts.file}:${err.line}: invalid TOML: this looks like YAML; name it .yml ` +
            "(or .yaml) to read it as a litestream.yml",
          { cause: err },
        );
      }
      const first = err.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      throw new ConfigError(`${opts.file}:${err.line}:${err.column}: invalid TOML: ${first}`, {
        cause: err,
      });
    }
    throw err;
  }
  const ctx = new Ctx(opts.file, keyLines(expanded), opts.path ? dirname(opts.path) : undefined);
  const config = readRoot(ctx, doc);
  if (opts.path) config.path = opts.path;
  return config;
}

/**
 * True when `text` reads as YAML (`key: value` or `- item` lines) and has no TOML syntax
 * (`[table]` headers, `key = value` lines). Only used to word an error; never to pick a parser.
 */
export function looksLikeYaml(text: string): boolean {
  let yamlish = false;
  for (const line of text.split(/\r?\n/)) {
    const t = line.trim();
    if (t === "" || t.startsWith("#") || t === "---") continue;
    if (/^\[[^\]:]*\]+\s*(#.*)?$/.test(t) || /^[A-Za-z0-9_."'-]+\s*=/.test(t)) return false;
    if (/^-(\s|$)/.test(t) || /^[A-Za-z0-9_."'-]+\s*:(\s|$)/.test(t)) yamlish = true;
  }
  return yamlish;
}

// ---------------------------------------------------------------------------------------------
// Environment expansion

const VAR_NAME = /[A-Za-z_][A-Za-z0-9_]*/y;

/**
 * Replace `$VAR` and `${VAR}` with values from `env` (unset -> ""), `$$` with `$`. A `$` not
 * followed by a name is kept. A malformed `${...}` is a ConfigError naming its line.
 */
export function expandEnv(text: string, env: Record<string, string>, file = "config"): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const d = text.indexOf("$", i);
    if (d < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, d);
    if (text[d + 1] === "$") {
      out += "$";
      i = d + 2;
    } else if (text[d + 1] === "{") {
      const close = text.indexOf("}", d + 2);
      const name = close < 0 ? "" : text.slice(d + 2, close);
      VAR_NAME.lastIndex = 0;
      const m = VAR_NAME.exec(name);
      if (!m || m[0] !== name) {
        const shown = close < 0 || close - d > 40 ? "${" : text.slice(d, close + 1);
        throw new ConfigError(
          `${file}:${lineAt(text, d)}: bad variable reference ${JSON.stringify(shown)} ` +
            "(write ${NAME} with letters, digits and _, or $$ for a literal $)",
        );
      }
      out += env[name] ?? "";
      i = close + 1;
    } else {
      VAR_NAME.lastIndex = d + 1;
      const m = VAR_NAME.exec(text);
      if (m) {
        out += env[m[0]] ?? "";
        i = d + 1 + m[0].length;
      } else {
        out += "$";
        i = d + 1;
      }
    }
  }
  return out;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

// ---------------------------------------------------------------------------------------------
// Key -> line map (best effort: headers, `key =` lines, one-line inline tables)

const BARE_OR_QUOTED = String.raw`(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')`;
const DOTTED = String.raw`${BARE_OR_QUOTED}(?:\s*\.\s*${BARE_OR_QUOTED})*`;
const ARRAY_HEADER = new RegExp(String.raw`^\[\[\s*(${DOTTED})\s*\]\]`);
const TABLE_HEADER = new RegExp(String.raw`^\[\s*(${DOTTED})\s*\]`);
const KEY_LINE = new RegExp(String.raw`^(${DOTTED})\s*=(.*)$`);
const INLINE_KEY = new RegExp(String.raw`(?:^\{|,)\s*(${BARE_OR_QUOTED})\s*=`, "g");

function keySegments(dotted: string): string[] {
  return [...dotted.matchAll(new RegExp(BARE_OR_QUOTED, "g"))].map((m) =>
    m[0].replace(/^["']|["']$/g, "")
  );
}

/** Map of key paths (`sync.format`, `databases[1].path`) to 1-based line numbers. */
export function keyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  const note = (path: string, line: number) => {
    if (!lines.has(path)) lines.set(path, line);
  };
  // Header segments that name an array of tables refer to its latest element.
  const headerPath = (segs: string[]) => {
    let path = "";
    for (const seg of segs) {
      path = path ? `${path}.${seg}` : seg;
      const n = arrayCounts.get(path);
      if (n !== undefined) path = `${path}[${n - 1}]`;
    }
    return path;
  };
  let table = "";
  let openQuote: string | undefined;
  const src = text.split(/\r?\n/);
  for (let i = 0; i < src.length; i++) {
    const n = i + 1;
    const raw = src[i];
    if (openQuote) {
      if (raw.split(openQuote).length % 2 === 0) openQuote = undefined;
      continue;
    }
    const t = raw.trim();
    let m = ARRAY_HEADER.exec(t);
    if (m) {
      const segs = keySegments(m[1]);
      const parent = headerPath(segs.slice(0, -1));
      const name = parent ? `${parent}.${segs.at(-1)}` : segs.at(-1)!;
      const count = (arrayCounts.get(name) ?? 0) + 1;
      arrayCounts.set(name, count);
      table = `${name}[${count - 1}]`;
      note(table, n);
      continue;
    }
    m = TABLE_HEADER.exec(t);
    if (m) {
      table = headerPath(keySegments(m[1]));
      note(table, n);
      continue;
    }
    m = KEY_LINE.exec(t);
    if (!m) continue;
    const key = keySegments(m[1]).join(".");
    const full = table ? `${table}.${key}` : key;
    note(full, n);
    const rest = m[2].trim();
    if (rest.startsWith("{")) {
      for (const k of rest.matchAll(INLINE_KEY)) note(`${full}.${keySegments(k[1])[0]}`, n);
    }
    for (const q of ['"""', "'''"]) {
      if (rest.split(q).length % 2 === 0) openQuote = q;
    }
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

type Table = Record<string, unknown>;
type Read<T> = (ctx: Ctx, path: string, value: unknown) => T;
/** Maps each settings property to its TOML key and reader. */
type Spec<T> = { [K in keyof T]-?: readonly [key: string, read: Read<T[K]>] };

class Ctx {
  constructor(
    readonly file: string,
    readonly lines: Map<string, number>,
    readonly baseDir: string | undefined,
  ) {}

  /** Line of `path`, else of its nearest enclosing key or table. */
  lineOf(path: string): number | undefined {
    for (let p = path; p !== "";) {
      const line = this.lines.get(p);
      if (line !== undefined) return line;
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      p = cut < 0 ? "" : p.slice(0, cut);
    }
    return undefined;
  }

  fail(path: string, problem: string, fix?: string): never {
    const line = this.lineOf(path);
    const where = line === undefined ? this.file : `${this.file}:${line}`;
    throw new ConfigError(`${where}: ${path}: ${problem}${fix ? ` (${fix})` : ""}`);
  }
}

function at(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v instanceof Date) return "a date";
  if (Array.isArray(v)) return "an array";
  return "a table";
}

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function table(ctx: Ctx, path: string, v: unknown): Table {
  if (!isTable(v)) ctx.fail(path, `expected a table, got ${describe(v)}`, `write [${path}]`);
  return v;
}

function tableArray(ctx: Ctx, path: string, v: unknown): Table[] {
  if (!Array.isArray(v)) {
    ctx.fail(path, `expected an array of tables, got ${describe(v)}`, `write [[${path}]] entries`);
  }
  return v.map((item, i) => table(ctx, `${path}[${i}]`, item));
}

// Keys of Rust walrust that have no equivalent here, with what to do instead.
const RETIRED_KEYS: Record<string, string> = {
  max_changes: "not supported; use snapshot_interval",
  max_interval: "not supported; use snapshot_interval",
  on_idle: "not supported; use snapshot_interval",
  prune_after_snapshot: "retention runs automatically; configure [retention]",
  compact_after_snapshot: "retention runs automatically; configure [retention]",
  prune_interval: "it belongs in [retention]",
  compact_interval: "retention runs automatically; configure [retention]",
  uploader_concurrency: "use upload_concurrency in [sync]",
  spool: "use [cache]",
  compaction: 'it is a table of its own: [compaction] levels = ["30s", "5m", "1h"]',
};

/** The allowed key a misspelt `key` most likely meant, if any is close enough. */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  return allowed.find((a) => editDistance(a, key) <= Math.max(1, Math.floor(a.length / 4)));
}

function allowKeys(ctx: Ctx, path: string, t: Table, allowed: readonly string[]): void {
  for (const key of Object.keys(t)) {
    if (allowed.includes(key)) continue;
    const near = closestKey(key, allowed);
    const fix = RETIRED_KEYS[key] ??
      (near ? `did you mean ${near}?` : `allowed here: ${allowed.join(", ")}`);
    ctx.fail(at(path, key), "unknown key", fix);
  }
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function readSpec<T>(ctx: Ctx, path: string, t: Table, spec: Spec<T>, extra: string[] = []) {
  const entries = Object.entries(spec) as [keyof T & string, readonly [string, Read<unknown>]][];
  allowKeys(ctx, path, t, [...entries.map(([, [key]]) => key), ...extra]);
  const out: Partial<T> = {};
  for (const [prop, [key, read]] of entries) {
    if (t[key] === undefined) continue;
    const value = read(ctx, at(path, key), t[key]);
    if (value !== undefined) out[prop] = value as T[keyof T & string];
  }
  return out;
}

const bool: Read<boolean> = (ctx, path, v) => {
  if (typeof v === "boolean") return v;
  const fix = v === "true" || v === "false" ? "remove the quotes" : undefined;
  return ctx.fail(path, `expected true or false, got ${describe(v)}`, fix);
};

const text: Read<string> = (ctx, path, v) => {
  if (typeof v !== "string") return ctx.fail(path, `expected a string, got ${describe(v)}`);
  if (v.trim() === "") {
    return ctx.fail(path, "must not be empty", "remove the key to use the default");
  }
  return v;
};

/** Credentials: a string; empty (an unset `$VAR`) means "not set: use the AWS chain". */
const credential: Read<string | undefined> = (ctx, path, v) => {
  if (typeof v !== "string") return ctx.fail(path, `expected a string, got ${describe(v)}`);
  return v.trim() === "" ? undefined : v;
};

function int(min: number, max = Number.MAX_SAFE_INTEGER): Read<number> {
  return (ctx, path, v) => {
    if (typeof v !== "number" || !Number.isInteger(v)) {
      const fix = typeof v === "string" && /^\s*-?\d+\s*$/.test(v)
        ? "remove the quotes"
        : undefined;
      return ctx.fail(path, `expected a whole number, got ${describe(v)}`, fix);
    }
    if (v < min || v > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
      return ctx.fail(path, `must be ${range}, got ${v}`);
    }
    return v;
  };
}

const HOUR_MS = 3_600_000;

/** Seconds (number, or a duration string) to milliseconds; `positive` excludes 0. */
function seconds(opts: { positive?: boolean; maxMs?: number } = {}): Read<number> {
  return (ctx, path, v) => {
    if (typeof v === "number" && v < 0) return ctx.fail(path, `must not be negative, got ${v}`);
    const ms = typeof v === "number" || typeof v === "string" ? durationMs(v) : undefined;
    if (ms === undefined) {
      return ctx.fail(
        path,
        `expected a number of seconds, got ${describe(v)}`,
        `e.g. 30, 0.5, "500ms", "5m" or "1h30m"`,
      );
    }
    if (opts.positive && ms <= 0) {
      return ctx.fail(path, `must be greater than 0, got ${describe(v)}`);
    }
    if (opts.maxMs !== undefined && ms > opts.maxMs) {
      return ctx.fail(path, `must be at most ${opts.maxMs / 1000} seconds, got ${describe(v)}`);
    }
    return ms;
  };
}

/** Milliseconds: a whole number of ms, or a duration string like "5s". */
const millis: Read<number> = (ctx, path, v) => {
  if (typeof v === "number") return int(0)(ctx, path, v);
  const ms = typeof v === "string"
    ? durationMs(/^\s*\d+\s*$/.test(v) ? `${v.trim()}ms` : v)
    : undefined;
  if (ms === undefined) {
    return ctx.fail(path, `expected milliseconds, got ${describe(v)}`, `e.g. 5000 or "5s"`);
  }
  return ms;
};

function bytes(min: number): Read<number> {
  return (ctx, path, v) => {
    const n = typeof v === "number" || typeof v === "string" ? byteSize(v) : undefined;
    if (n === undefined) {
      return ctx.fail(
        path,
        `expected a size in bytes, got ${describe(v)}`,
        `e.g. 67108864, "64MiB", "500MB" or "5GiB"`,
      );
    }
    if (n < min) return ctx.fail(path, `must be at least ${min} bytes, got ${describe(v)}`);
    return n;
  };
}

function oneOf<T extends string>(values: readonly T[]): Read<T> {
  return (ctx, path, v) => {
    if (typeof v === "string" && (values as readonly string[]).includes(v)) return v as T;
    return ctx.fail(
      path,
      `expected one of ${values.map((x) => `"${x}"`).join(", ")}, got ${describe(v)}`,
    );
  };
}

function httpUrl(ctx: Ctx, path: string, v: unknown): string {
  const s = text(ctx, path, v);
  let url: URL | undefined;
  try {
    url = new URL(s);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return ctx.fail(path, `expected an http:// or https:// URL, got ${describe(v)}`);
  }
  return s;
}

function bucket(ctx: Ctx, path: string, v: unknown): string {
  const s = text(ctx, path, v).trim();
  if (s.startsWith("s3://")) {
    if (s.slice(5).split("/")[0] === "") {
      ctx.fail(path, "missing bucket name", 'write "s3://bucket/prefix"');
    }
    if (/\s/.test(s)) {
      ctx.fail(path, `S3 bucket and prefix must not contain spaces, got ${describe(v)}`);
    }
    return s;
  }
  if (s.startsWith("file://")) {
    if (!s.startsWith("file:///")) {
      ctx.fail(
        path,
        `file URL needs an absolute path, got ${describe(v)}`,
        'write "file:///abs/path"',
      );
    }
    return s;
  }
  if (/^webdavs?:\/\//.test(s)) {
    // The backend parses it in full; here only its shape (a host, no query or spaces).
    if (!/^webdavs?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(s)) {
      ctx.fail(path, `expected webdav://host[:port]/path, got ${describe(v)}`);
    }
    return s;
  }
  if (/^(sftp|abs):\/\//.test(s)) {
    try {
      parseBucketUrl(s);
    } catch (e) {
      ctx.fail(path, e instanceof ConfigError ? e.message : String(e));
    }
    return s;
  }
  if (isAbsolute(s)) return s;
  const fix = /^[a-z0-9][a-z0-9.-]*(\/|$)/.test(s) ? `did you mean "s3://${s}"?` : undefined;
  return ctx.fail(
    path,
    "expected s3://bucket/prefix, abs://account@container/path, webdav://host/path, " +
      `sftp://user@host/path, file:///abs/path or an absolute path, got ${describe(v)}`,
    fix,
  );
}

function localPath(ctx: Ctx, path: string, v: unknown): string {
  const s = text(ctx, path, v);
  return ctx.baseDir ? resolve(ctx.baseDir, s) : resolve(s);
}

// ---------------------------------------------------------------------------------------------
// Schema

const SYNC_SPEC: Spec<SyncSettings> = {
  walSyncIntervalMs: ["wal_sync_interval", seconds({ positive: true, maxMs: HOUR_MS })],
  snapshotIntervalMs: ["snapshot_interval", seconds()],
  checkpointIntervalMs: ["checkpoint_interval", seconds()],
  minCheckpointPageCount: ["min_checkpoint_page_count", int(1)],
  walTruncateThresholdPages: ["wal_truncate_threshold_pages", int(0)],
  maxSyncWalBytes: ["max_sync_wal_bytes", bytes(4096)],
  busyTimeoutMs: ["busy_timeout", millis],
  format: ["format", oneOf(["legacy", "block"] as const)],
  l0RetentionMs: ["l0_retention", seconds()],
  onStartup: ["on_startup", bool],
  validationIntervalMs: ["validation_interval", seconds()],
};

const RETENTION_SPEC: Spec<RetentionSettings> = {
  hourly: ["hourly", int(0)],
  daily: ["daily", int(0)],
  weekly: ["weekly", int(0)],
  monthly: ["monthly", int(0)],
  pitrWindowMs: ["pitr_window", seconds()],
};

const RETRY_SPEC: Spec<RetrySettings> = {
  maxRetries: ["max_retries", int(0, 100)],
  baseDelayMs: ["base_delay_ms", int(0)],
  maxDelayMs: ["max_delay_ms", int(0)],
  circuitBreakerEnabled: ["circuit_breaker_enabled", bool],
  circuitBreakerThreshold: ["circuit_breaker_threshold", int(1)],
  circuitBreakerCooldownMs: ["circuit_breaker_cooldown_ms", int(0)],
};

const S3_SPEC: Spec<S3Settings> = {
  bucket: ["bucket", bucket],
  endpoint: ["endpoint", httpUrl],
  region: ["region", text],
  forcePathStyle: ["force_path_style", bool],
  accessKeyId: ["access_key_id", credential],
  secretAccessKey: ["secret_access_key", credential],
  webdavUsername: ["webdav_username", credential],
  webdavPassword: ["webdav_password", credential],
  azureAccountKey: ["azure_account_key", credential],
  azureSasToken: ["azure_sas_token", credential],
  sftpPassword: ["sftp_password", credential],
  sftpKeyPath: ["sftp_key_path", localPath],
  sftpHostKey: ["sftp_host_key", text],
};

const CACHE_SPEC: Spec<CacheSettings> = {
  maxSize: ["max_size", bytes(1)],
  path: ["path", localPath],
};

const METRICS_SPEC: Spec<MetricsSettings> = {
  enabled: ["enabled", bool],
  port: ["port", int(0, 65535)],
  host: ["host", text],
  process: ["process", bool],
  maxLagMs: ["max_lag", seconds({ positive: true })],
};

const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug", "trace"];
const LOG_SPEC: Spec<LogSettings> = {
  format: ["format", oneOf(["text", "json"] as const)],
  level: ["level", oneOf(LOG_LEVELS)],
};

/** Property -> TOML key of each settings table, for writing walrust.toml (see ./convert.ts). */
export const TOML_KEYS = {
  sync: tomlKeys(SYNC_SPEC),
  retention: tomlKeys(RETENTION_SPEC),
  retry: tomlKeys(RETRY_SPEC),
  s3: tomlKeys(S3_SPEC),
  cache: tomlKeys(CACHE_SPEC),
  metrics: tomlKeys(METRICS_SPEC),
  log: tomlKeys(LOG_SPEC),
} as const;

function tomlKeys<T>(spec: Spec<T>): { readonly [K in keyof T]-?: string } {
  const out: Record<string, string> = {};
  for (const [prop, [key]] of Object.entries(spec) as [string, readonly [string, unknown]][]) {
    out[prop] = key;
  }
  return out as { readonly [K in keyof T]-?: string };
}

const ROOT_KEYS = [
  "allow_empty_globs",
  "exec",
  "s3",
  "age",
  "sync",
  "retention",
  "compaction",
  "retry",
  "cache",
  "metrics",
  "log",
  "webhooks",
  "databases",
  "replicas",
];

function readRoot(ctx: Ctx, doc: Table): FileConfig {
  allowKeys(ctx, "", doc, ROOT_KEYS);
  const config = emptyFileConfig();
  if (doc.allow_empty_globs !== undefined) {
    config.allowEmptyGlobs = bool(ctx, "allow_empty_globs", doc.allow_empty_globs);
  }
  const section = (key: string) => (doc[key] === undefined ? {} : table(ctx, key, doc[key]));

  if (doc.exec !== undefined) config.exec = text(ctx, "exec", doc.exec);
  config.s3 = readSpec(ctx, "s3", section("s3"), S3_SPEC);
  if (doc.age !== undefined) config.age = readAge(ctx, "age", table(ctx, "age", doc.age));
  if ((config.s3.accessKeyId === undefined) !== (config.s3.secretAccessKey === undefined)) {
    const [set, unset] = config.s3.accessKeyId === undefined
      ? ["secret_access_key", "access_key_id"]
      : ["access_key_id", "secret_access_key"];
    ctx.fail(
      `s3.${set}`,
      `is set but ${unset} is not (or is empty)`,
      "set both, or neither to use the AWS credential chain",
    );
  }

  const sync = section("sync");
  config.sync = readSpec(ctx, "sync", sync, SYNC_SPEC, ["upload_concurrency", "shutdown_drain"]);
  if (sync.upload_concurrency !== undefined) {
    config.uploadConcurrency = int(1, 256)(ctx, "sync.upload_concurrency", sync.upload_concurrency);
  }
  if (sync.shutdown_drain !== undefined) {
    config.shutdownDrainMs = seconds()(ctx, "sync.shutdown_drain", sync.shutdown_drain);
  }

  const retention = section("retention");
  config.retention = readSpec(ctx, "retention", retention, RETENTION_SPEC, [
    "enabled",
    "prune_interval",
  ]);
  checkRetention(ctx, "retention", resolveRetention(config.retention));
  if (retention.enabled !== undefined) {
    config.maintenance.retentionEnabled = bool(ctx, "retention.enabled", retention.enabled);
  }
  if (retention.prune_interval !== undefined) {
    config.maintenance.pruneIntervalMs = seconds()(
      ctx,
      "retention.prune_interval",
      retention.prune_interval,
    );
  }
  const compaction = section("compaction");
  allowKeys(ctx, "compaction", compaction, ["levels"]);
  if (compaction.levels !== undefined) {
    config.maintenance.compactionLevelsMs = compactionLevels(ctx, compaction.levels);
  }
  config.retry = readSpec(ctx, "retry", section("retry"), RETRY_SPEC);
  checkRetry(ctx, config.retry);
  config.cache = readSpec(ctx, "cache", section("cache"), CACHE_SPEC);
  config.metrics = readSpec(ctx, "metrics", section("metrics"), METRICS_SPEC);
  config.log = readSpec(ctx, "log", section("log"), LOG_SPEC);

  if (doc.webhooks !== undefined) {
    config.webhooks = tableArray(ctx, "webhooks", doc.webhooks).map((t, i) =>
      readWebhook(ctx, `webhooks[${i}]`, t)
    );
  }
  if (doc.databases !== undefined) {
    config.databases = tableArray(ctx, "databases", doc.databases).map((t, i) =>
      readDatabase(ctx, `databases[${i}]`, t, config.retention)
    );
  }
  if (doc.replicas !== undefined) {
    config.replicas = tableArray(ctx, "replicas", doc.replicas).map((t, i) =>
      readReplicaFollow(ctx, `replicas[${i}]`, t)
    );
    const seen = new Set<string>();
    for (const [i, r] of config.replicas.entries()) {
      if (seen.has(r.local)) {
        ctx.fail(
          `replicas[${i}].local`,
          `${r.local} is followed twice`,
          "one local path per entry",
        );
      }
      seen.add(r.local);
    }
  }
  return config;
}

function readReplicaFollow(ctx: Ctx, path: string, t: Table): ReplicaFollowEntry {
  allowKeys(ctx, path, t, ["source", "local", "interval"]);
  for (const key of ["source", "local"]) {
    if (t[key] === undefined) {
      ctx.fail(path, `missing required key ${key}`, 'e.g. source = "s3://bucket/app.db"');
    }
  }
  const local = text(ctx, at(path, "local"), t.local);
  const entry: ReplicaFollowEntry = {
    source: text(ctx, at(path, "source"), t.source),
    local: isAbsolute(local) ? local : resolve(ctx.baseDir ?? Deno.cwd(), local),
  };
  if (t.interval !== undefined) {
    entry.intervalMs = seconds({ positive: true })(ctx, at(path, "interval"), t.interval);
  }
  return entry;
}

/** `levels = ["30s", "5m", "1h"]`: the intervals of levels 1..n (at most 8; [] = no compaction). */
function compactionLevels(ctx: Ctx, v: unknown): number[] {
  const path = "compaction.levels";
  if (!Array.isArray(v)) {
    return ctx.fail(
      path,
      `expected an array of intervals, got ${describe(v)}`,
      'e.g. ["30s", "5m", "1h"]',
    );
  }
  if (v.length > 8) ctx.fail(path, `at most 8 levels (1..8; 9 holds snapshots), got ${v.length}`);
  return v.map((x, i) => seconds({ positive: true })(ctx, `${path}[${i}]`, x));
}

function checkRetention(ctx: Ctx, path: string, r: RetentionSettings): void {
  if (r.hourly + r.daily + r.weekly + r.monthly === 0 && r.pitrWindowMs === 0) {
    ctx.fail(
      path,
      "keeps nothing",
      "set pitr_window or at least one of hourly/daily/weekly/monthly above 0",
    );
  }
}

function checkRetry(ctx: Ctx, retry: Partial<RetrySettings>): void {
  const r = resolveRetry(retry);
  if (r.baseDelayMs > r.maxDelayMs) {
    const key = retry.baseDelayMs !== undefined ? "base_delay_ms" : "max_delay_ms";
    ctx.fail(
      `retry.${key}`,
      `base_delay_ms (${r.baseDelayMs}) is above max_delay_ms (${r.maxDelayMs})`,
    );
  }
}

function readWebhook(ctx: Ctx, path: string, t: Table): WebhookSettings {
  allowKeys(ctx, path, t, ["url", "events", "secret"]);
  if (t.url === undefined) ctx.fail(path, "missing required key url", 'add url = "https://..."');
  const hook: WebhookSettings = {
    url: httpUrl(ctx, at(path, "url"), t.url),
    events: [...WEBHOOK_EVENTS],
  };
  if (t.events !== undefined) hook.events = readEvents(ctx, at(path, "events"), t.events);
  if (t.secret !== undefined) hook.secret = text(ctx, at(path, "secret"), t.secret);
  return hook;
}

function readEvents(ctx: Ctx, path: string, v: unknown): WebhookEvent[] {
  if (!Array.isArray(v)) {
    return ctx.fail(path, `expected an array of event names, got ${describe(v)}`);
  }
  if (v.length === 0) return ctx.fail(path, "is empty", "leave events out to receive every event");
  const events: WebhookEvent[] = [];
  for (const [i, name] of v.entries()) {
    const known = typeof name === "string"
      ? (WEBHOOK_EVENT_ALIASES[name] ?? WEBHOOK_EVENTS.find((e) => e === name))
      : undefined;
    if (!known) {
      ctx.fail(
        `${path}[${i}]`,
        `unknown event ${describe(name)}`,
        `known: ${WEBHOOK_EVENTS.join(", ")}`,
      );
    }
    if (!events.includes(known)) events.push(known);
  }
  return events;
}

function readDatabase(
  ctx: Ctx,
  path: string,
  t: Table,
  globalRetention: Partial<RetentionSettings>,
): DatabaseEntry {
  const sync = readSpec(ctx, path, t, SYNC_SPEC, ["path", "prefix", "retention", "watch", "age"]);
  if (t.path === undefined) {
    ctx.fail(path, "missing required key path", 'add path = "/data/app.db"');
  }
  const entry: DatabaseEntry = { path: text(ctx, at(path, "path"), t.path), sync };
  const line = ctx.lineOf(at(path, "path"));
  if (line !== undefined) entry.line = line;
  if (t.prefix !== undefined) {
    const prefix = text(ctx, at(path, "prefix"), t.prefix);
    const bad = prefixProblem(prefix) ?? globPrefixProblem(entry.path, prefix);
    if (bad) ctx.fail(at(path, "prefix"), bad);
    entry.prefix = prefix;
  }
  if (t.watch !== undefined && bool(ctx, at(path, "watch"), t.watch)) {
    if (!isGlobPattern(entry.path)) {
      ctx.fail(at(path, "watch"), "needs a glob path", 'e.g. path = "/data/tenants/*.db"');
    }
    entry.watch = true;
  }
  if (t.retention !== undefined) {
    const rpath = at(path, "retention");
    entry.retention = readSpec(ctx, rpath, table(ctx, rpath, t.retention), RETENTION_SPEC);
    checkRetention(ctx, rpath, resolveRetention(globalRetention, entry.retention));
  }
  if (t.age !== undefined) {
    entry.age = readAge(ctx, at(path, "age"), table(ctx, at(path, "age"), t.age));
  }
  return entry;
}

/** `[age]` or a database's `age = {...}`: recipients, identities, identity_file. */
function readAge(ctx: Ctx, path: string, t: Table): AgeSettings {
  allowKeys(ctx, path, t, ["recipients", "identities", "identity_file"]);
  const out: AgeSettings = {};
  // Values are never shown in messages: identities are secrets.
  const keys = (key: string, want: string): string[] | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    const list = typeof v === "string" ? [v] : v;
    if (!Array.isArray(list) || list.some((x) => typeof x !== "string" || x.trim() === "")) {
      return ctx.fail(at(path, key), `expected a list of ${want}`, `e.g. ${key} = ["..."]`);
    }
    return (list as string[]).map((x) => x.trim());
  };
  const recipients = keys("recipients", "age public keys (age1...)");
  if (recipients) out.recipients = recipients;
  const identities = keys("identities", "age secret keys (AGE-SECRET-KEY-1...)");
  if (identities) out.identities = identities;
  const files = keys("identity_file", "identity file paths");
  if (files) {
    out.identityFiles = files.map((f, i) =>
      localPath(ctx, `${at(path, "identity_file")}[${i}]`, f)
    );
  }
  return out;
}
