/**
 * Read a Litestream v0.5 `litestream.yml` as-is into a FileConfig: the same keys, Go durations,
 * `$VAR` expansion and global replica defaults. Keys Litestream has that walrust does not
 * implement become warnings (FileConfig.warnings); keys Litestream does not have are
 * ConfigErrors naming the line. The key mapping is documented in docs/litestream-config.md.
 *
 * `$VAR` / `${VAR}` are expanded in each value after parsing (Litestream expands the whole file
 * first): the same result for values, while line numbers stay those of the file and the
 * unexpanded text is kept for `walrust config convert`.
 */

import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { closestKey, expandEnv } from "./load.ts";
import { isGlobPattern, prefixProblem } from "./globs.ts";
import type { TomlNote } from "./convert.ts";
import {
  type AgeSettings,
  type DatabaseEntry,
  emptyFileConfig,
  type FileConfig,
  type LogLevel,
  type SyncSettings,
} from "./schema.ts";

/** Options for {@link parseLitestreamConfig}. */
export interface LitestreamOptions {
  /** Name used in messages. */
  file: string;
  /** Absolute path of the file, recorded as FileConfig.path. */
  path?: string;
  /** Variables for `$VAR` expansion (`$PID` is added); none when omitted. */
  env?: Record<string, string>;
  /** Base for relative database and replica paths (Litestream: the working directory). */
  cwd?: string;
  /** Expand `$VAR` references (default true; Litestream's `-no-expand-env` turns it off). */
  expandEnv?: boolean;
}

/** A litestream.yml read into walrust terms. */
export interface LitestreamConfig {
  /** The settings; `warnings` lists each key read but not used. */
  config: FileConfig;
  /** Comment lines for a converted walrust.toml: every key that does not map, with its text. */
  notes: TomlNote[];
  /** TOML key path -> the value as written, `$VAR` references unexpanded (see TomlExtras.raw). */
  raw: Record<string, string>;
}

/** Parse and validate litestream.yml text. Throws ConfigError (exit 2) naming file:line. */
export function parseLitestreamConfig(text: string, opts: LitestreamOptions): LitestreamConfig {
  const env = { ...(opts.env ?? {}) };
  env.PID ??= String(Deno.pid);
  const r = new Reader(opts.file, text, env, opts.cwd ?? Deno.cwd(), env.HOME ?? homedir());
  r.expandVars = opts.expandEnv ?? true;
  const root = r.document();
  const config = root ? readRoot(r, root) : emptyFileConfig();
  if (opts.path) config.path = opts.path;
  config.warnings = r.warnings();
  return { config, notes: r.notes, raw: r.raw };
}

// ---------------------------------------------------------------------------------------------
// The document as a small tree: aliases resolved, `<<` merges applied, lines attached

type Span = readonly [start: number, end: number];

interface YScalar {
  kind: "scalar";
  /** The value before `$VAR` expansion (quotes and escapes already decoded). */
  text: string;
  /** Unquoted: typed like YAML 1.1 plain scalars (yes/no are booleans, 0x10 is 16). */
  plain: boolean;
  line: number;
}

interface YMap {
  kind: "map";
  entries: YEntry[];
  line: number;
}

interface YSeq {
  kind: "seq";
  items: (YNode | undefined)[];
  line: number;
}

type YNode = YScalar | YMap | YSeq;

interface YEntry {
  key: string;
  line: number;
  /** Undefined for null (`key:`, `key: ~`). */
  value?: YNode;
  /** Where the key and its value are written (an alias stays `*name`). */
  keySpan: Span;
  valueSpan?: Span;
}

const NULLS = new Set(["", "~", "null", "Null", "NULL"]);
const TRUE = new Set(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"]);
const FALSE = new Set(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"]);

/** A located string value: expanded, and as written. */
interface Str {
  value: string;
  raw: string;
  line: number;
}

class Reader {
  readonly notes: TomlNote[] = [];
  readonly raw: Record<string, string> = {};
  readonly #lc = new LineCounter();
  readonly #warned = new Map<string, { line: number; path: string; why: string; n: number }>();
  #doc?: Document;
  /** Whether `$VAR` references are expanded (off: every value is taken as written). */
  expandVars = true;

  constructor(
    readonly file: string,
    readonly text: string,
    readonly env: Record<string, string>,
    readonly cwd: string,
    readonly home: string | undefined,
  ) {}

  lineOf(offset: number): number {
    return this.#lc.linePos(offset).line;
  }

  fail(line: number | undefined, path: string, problem: string, fix?: string): never {
    const where = line === undefined ? this.file : `${this.file}:${line}`;
    throw new ConfigError(
      `${where}: ${path ? `${path}: ` : ""}${problem}${fix ? ` (${fix})` : ""}`,
    );
  }

  /** The root mapping, or undefined for an empty file. */
  document(): YMap | undefined {
    const doc = parseDocument(this.text, {
      schema: "failsafe",
      merge: false,
      uniqueKeys: true,
      prettyErrors: false,
      lineCounter: this.#lc,
    });
    this.#doc = doc;
    const err = doc.errors[0];
    if (err) {
      const line = this.lineOf(err.pos[0]);
      const fix = looksLikeToml(this.text)
        ? "this looks like TOML; name it walrust.toml"
        : undefined;
      this.fail(line, "", `invalid YAML: ${err.message.split("\n")[0]}`, fix);
    }
    const root = this.node(doc.contents, 0);
    if (root === undefined) return undefined;
    if (root.kind !== "map") {
      const fix = looksLikeToml(this.text)
        ? "this looks like TOML; name it walrust.toml"
        : undefined;
      this.fail(root.line, "", "expected a mapping of settings (dbs:, addr:, ...)", fix);
    }
    return root;
  }

  node(n: unknown, depth: number): YNode | undefined {
    if (depth > 100) this.fail(undefined, "", "aliases nest too deeply (an alias loop?)");
    if (n === null || n === undefined) return undefined;
    if (isAlias(n)) return this.node(n.resolve(this.#doc!), depth + 1);
    const line = this.lineOf(rangeOf(n)[0]);
    if (isScalar(n)) {
      const plain = n.type === "PLAIN";
      const text = String(n.value ?? "");
      if (plain && NULLS.has(text)) return undefined;
      return { kind: "scalar", text, plain, line };
    }
    if (isSeq(n)) return { kind: "seq", items: n.items.map((x) => this.node(x, depth + 1)), line };
    if (isMap(n)) {
      const entries: YEntry[] = [];
      const merged: YEntry[] = [];
      for (const pair of n.items) {
        if (!isScalar(pair.key)) this.fail(line, "", "only plain keys are supported");
        const key = String(pair.key.value);
        const keySpan = rangeOf(pair.key);
        const valueSpan = pair.value ? rangeOf(pair.value) : undefined;
        if (key === "<<" && pair.key.type === "PLAIN") {
          merged.push(...this.mergeSource(pair.value, depth));
          continue;
        }
        const value = this.node(pair.value, depth + 1);
        entries.push({ key, line: this.lineOf(keySpan[0]), value, keySpan, valueSpan });
      }
      // `<<: *defaults`: the mapping's own keys win, then earlier merges over later ones.
      for (const e of merged) {
        if (!entries.some((x) => x.key === e.key)) entries.push(e);
      }
      return { kind: "map", entries, line };
    }
    return this.fail(line, "", "unsupported YAML node");
  }

  mergeSource(v: unknown, depth: number): YEntry[] {
    const sources = isSeq(v) ? v.items : [v];
    const out: YEntry[] = [];
    for (const s of sources) {
      const m = this.node(s, depth + 1);
      if (m?.kind !== "map") this.fail(m?.line, "<<", "a merge needs a mapping (<<: *anchor)");
      for (const e of m.entries) if (!out.some((x) => x.key === e.key)) out.push(e);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Typed values

  /** The expanded text of a scalar; undefined when it is empty or a YAML null. */
  expand(s: YScalar, path: string): string | undefined {
    let v: string;
    try {
      v = this.expandVars ? expandEnv(s.text, this.env, this.file) : s.text;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.fail(
        s.line,
        path,
        "bad variable reference",
        "write $NAME or ${NAME} with letters, digits and _, or $$ for a literal $",
      );
    }
    return v === "" || (s.plain && NULLS.has(v)) ? undefined : v;
  }

  scalar(e: YEntry | undefined, path: string): YScalar | undefined {
    if (e?.value === undefined) return undefined;
    if (e.value.kind !== "scalar") {
      this.fail(e.line, path, `expected a single value, got a ${kindName(e.value)}`);
    }
    return e.value;
  }

  string(e: YEntry | undefined, path: string): Str | undefined {
    const s = this.scalar(e, path);
    const value = s && this.expand(s, path);
    return value === undefined ? undefined : { value, raw: s!.text, line: e!.line };
  }

  bool(e: YEntry | undefined, path: string): boolean | undefined {
    const s = this.scalar(e, path);
    const v = s && this.expand(s, path);
    if (v === undefined) return undefined;
    if (s!.plain && TRUE.has(v)) return true;
    if (s!.plain && FALSE.has(v)) return false;
    const fix = !s!.plain && (TRUE.has(v) || FALSE.has(v)) ? "remove the quotes" : undefined;
    return this.fail(e!.line, path, `expected true or false, got ${JSON.stringify(v)}`, fix);
  }

  int(e: YEntry | undefined, path: string, min: number, max = Number.MAX_SAFE_INTEGER) {
    const s = this.scalar(e, path);
    const v = s && this.expand(s, path);
    if (v === undefined) return undefined;
    const n = s!.plain ? yamlInt(v) : undefined;
    if (n === undefined) {
      const fix = !s!.plain && yamlInt(v) !== undefined ? "remove the quotes" : undefined;
      return this.fail(e!.line, path, `expected a whole number, got ${JSON.stringify(v)}`, fix);
    }
    if (n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER
        ? `at least ${min}`
        : `between ${min} and ${max}`;
      return this.fail(e!.line, path, `must be ${range}, got ${n}`);
    }
    return n;
  }

  /** A Go duration ("500ms", "1h30m") in milliseconds, checked against `min` and `maxMs`. */
  duration(e: YEntry | undefined, path: string, min: 0 | 1, maxMs?: number): number | undefined {
    const s = this.scalar(e, path);
    const v = s && this.expand(s, path);
    if (v === undefined) return undefined;
    const ms = goDurationMs(v);
    if (ms === undefined) {
      const fix = /^\s*-?\d+(\.\d+)?\s*$/.test(v)
        ? `add a unit, e.g. "${v.trim()}s"`
        : 'a Go duration such as "500ms", "30s", "5m" or "1h30m"';
      return this.fail(e!.line, path, `expected a duration, got ${JSON.stringify(v)}`, fix);
    }
    if (ms < min) {
      const want = min === 0 ? "must not be negative" : "must be at least 1ms";
      return this.fail(e!.line, path, `${want}, got ${JSON.stringify(v)}`);
    }
    if (maxMs !== undefined && ms > maxMs) {
      return this.fail(e!.line, path, `must be at most ${maxMs / 1000}s in walrust, got ${v}`);
    }
    return ms;
  }

  map(e: YEntry | undefined, path: string, keys: readonly string[]): YMap | undefined {
    if (e?.value === undefined) return undefined;
    if (e.value.kind !== "map") {
      this.fail(e.line, path, `expected a mapping (nested keys), got a ${kindName(e.value)}`);
    }
    this.checkKeys(e.value, path, keys);
    return e.value;
  }

  seq(e: YEntry | undefined, path: string): YSeq | undefined {
    if (e?.value === undefined) return undefined;
    if (e.value.kind !== "seq") {
      this.fail(e.line, path, `expected a list, got a ${kindName(e.value)}`);
    }
    return e.value;
  }

  /** Keys Litestream does not have are errors, with the nearest known key as the fix. */
  checkKeys(m: YMap, path: string, allowed: readonly string[]): void {
    for (const e of m.entries) {
      if (allowed.includes(e.key)) continue;
      const near = closestKey(e.key, allowed) ?? closestKey(e.key.replaceAll("_", "-"), allowed);
      this.fail(
        e.line,
        at(path, e.key),
        "unknown key (Litestream has no such setting)",
        near ? `did you mean ${near}?` : `allowed here: ${allowed.join(", ")}`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Settings read but not used

  /**
   * Note a key walrust does not use: a comment for the converted TOML, and (unless `quiet`,
   * for keys that change nothing) one warning per key, however many databases repeat it.
   */
  unused(e: YEntry, path: string, why: string, db: number | undefined, quiet = false): void {
    this.unusedAt(e.line, path, why, db, this.source(e), quiet);
  }

  /** {@link unused} for a setting that is not a key of its own (a URL parameter). */
  unusedAt(
    line: number,
    path: string,
    why: string,
    db: number | undefined,
    source: string[],
    quiet = false,
  ): void {
    this.notes.push({ db, lines: [`${path}: not used by walrust: ${why}`, ...source] });
    if (!quiet) this.#warn(line, path, why);
  }

  #warn(line: number, path: string, why: string): void {
    const key = path.replace(/\[\d+\]/g, "[]");
    const seen = this.#warned.get(key);
    if (seen) seen.n++;
    else this.#warned.set(key, { line, path, why, n: 1 });
  }

  /** A note that is not about an unused key (a setting mapped with a difference). */
  caveat(line: number, path: string, why: string, db: number | undefined): void {
    this.notes.push({ db, lines: [`${path}: ${why}`] });
    this.#warn(line, path, why);
  }

  warnings(): string[] {
    return [...this.#warned.values()].map((w) =>
      `${this.file}:${w.line}: ${w.path}: ${w.why}` +
      (w.n > 1 ? ` (and ${w.n - 1} more like it)` : "")
    );
  }

  /** The key and value as written, secrets redacted, for a comment. */
  source(e: YEntry): string[] {
    if (!e.valueSpan || e.value === undefined) return [`  ${e.key}:`];
    const [start, end] = e.valueSpan;
    let written = this.text.slice(start, end).replace(/\s+$/, "");
    // Block scalars and flow collections are shown on one line.
    if (e.value.kind === "scalar" && written.includes("\n")) written = JSON.stringify(e.value.text);
    if (/^[[{]/.test(written)) written = written.replace(/\s*\n\s*/g, " ");
    if (!written.includes("\n")) {
      const secret = SECRET_KEYS.has(e.key) && !/^["']?\$\{?[A-Za-z_]\w*\}?["']?$/.test(written);
      return [`  ${e.key}: ${secret ? "<redacted>" : written}`];
    }
    const lineStart = this.text.lastIndexOf("\n", start - 1) + 1;
    const lines = this.text.slice(lineStart, end).replace(/\s+$/, "").split(/\r?\n/);
    const indent = Math.min(
      ...lines.filter((l) => l.trim() !== "").map((l) => l.length - l.trimStart().length),
    );
    return [`  ${e.key}:`, ...lines.map((l) => `    ${l.slice(indent)}`)];
  }

  /** A local path as Litestream reads it: `sqlite://` stripped, `~/` expanded, made absolute. */
  localPath(s: Str, path: string): string {
    let p = s.value.replace(/^sqlite3?:\/\//, "");
    if (p === "~" || p.startsWith("~/")) {
      if (!this.home) this.fail(s.line, path, `cannot expand ${p}: no home directory`);
      p = join(this.home, p.slice(1));
    }
    return isAbsolute(p) ? resolve(p) : resolve(this.cwd, p);
  }
}

/**
 * Whether a value's unexpanded text is worth keeping: it refers to a variable, and not to
 * `$PID`, which walrust.toml does not expand (the value is then written expanded).
 */
function keepsRaw(raw: string): boolean {
  return raw.includes("$") && !/\$\{?PID(?![A-Za-z0-9_])/.test(raw);
}

function rangeOf(n: unknown): Span {
  const range = (n as { range?: [number, number, number] }).range;
  return range ? [range[0], range[1]] : [0, 0];
}

function kindName(n: YNode): string {
  return n.kind === "map" ? "mapping" : n.kind === "seq" ? "list" : "value";
}

function at(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function get(m: YMap | undefined, key: string): YEntry | undefined {
  return m?.entries.find((e) => e.key === key);
}

/** True when `text` has TOML headers or `key = value` lines. */
function looksLikeToml(text: string): boolean {
  return /^\s*(\[[^\]]+\]|[A-Za-z0-9_."-]+\s*=)/m.test(text);
}

/** A YAML 1.1 plain integer (as Go's yaml.v2 reads one: 0x hex, 0 octal, _ separators). */
function yamlInt(s: string): number | undefined {
  const m = /^([-+]?)(0b[01_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+|[1-9][0-9_]*|0)$/.exec(s.trim());
  if (!m) return undefined;
  const body = m[2].replaceAll("_", "");
  let n: number;
  if (body.startsWith("0b")) n = parseInt(body.slice(2), 2);
  else if (body.startsWith("0x")) n = parseInt(body.slice(2), 16);
  else if (body.length > 1 && body.startsWith("0")) n = parseInt(body.replace(/^0o?/, ""), 8);
  else n = Number(body);
  if (!Number.isSafeInteger(n)) return undefined;
  return m[1] === "-" ? -n : n;
}

const GO_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3,
  "\u03bcs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const GO_DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/y;

/** Milliseconds (rounded) of a Go duration string, or undefined when it is not one. */
export function goDurationMs(s: string): number | undefined {
  let t = s.trim();
  let sign = 1;
  if (t.startsWith("-") || t.startsWith("+")) {
    if (t[0] === "-") sign = -1;
    t = t.slice(1);
  }
  if (t === "0") return 0;
  if (t === "") return undefined;
  let total = 0;
  let pos = 0;
  while (pos < t.length) {
    GO_DURATION_PART.lastIndex = pos;
    const m = GO_DURATION_PART.exec(t);
    if (!m) return undefined;
    total += Number(m[1]) * GO_UNIT_MS[m[2]];
    pos = GO_DURATION_PART.lastIndex;
  }
  const ms = Math.round(total);
  return Number.isSafeInteger(ms) ? (sign < 0 && ms !== 0 ? -ms : ms) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Keys

const HOUR_MS = 3_600_000;

/** Replica settings walrust uses (also allowed at the top level as defaults for every replica). */
const REPLICA_SETTINGS = [
  "sync-interval",
  "validation-interval",
  "access-key-id",
  "secret-access-key",
  "region",
  "bucket",
  "endpoint",
  "force-path-style",
];

const S3_ONLY = "not supported by walrust's S3 client";
/** Replica settings Litestream has and walrust ignores, with why; `quietIf` = its no-op value. */
const REPLICA_UNUSED: Record<string, { why: string; quietIf?: boolean }> = {
  "max-sync-ltx-files": { why: "walrust uploads every pending L0 file each sync" },
  "auto-recover": {
    why: "walrust takes a new snapshot whenever continuity is lost",
    quietIf: false,
  },
  "sign-payload": { why: S3_ONLY, quietIf: true },
  "require-content-md5": { why: S3_ONLY, quietIf: true },
  "skip-verify": { why: "TLS certificates are always verified", quietIf: false },
  "storage-class": { why: "objects use the bucket's default storage class" },
  "part-size": { why: "walrust chooses multipart part sizes itself" },
  concurrency: { why: "use upload_concurrency in walrust.toml's [sync]" },
  "sse-customer-algorithm": { why: "server-side encryption options are not supported" },
  "sse-customer-key": { why: "server-side encryption options are not supported" },
  "sse-customer-key-path": { why: "server-side encryption options are not supported" },
  "sse-kms-key-id": { why: "server-side encryption options are not supported" },
};
const OTHER_BACKEND =
  "walrust replicates to S3 (and S3-compatible stores), Azure Blob Storage, WebDAV, SFTP or files";
/** Keys of the Azure (`type: abs`) and SFTP replicas; elsewhere they are unused. */
const ABS_KEYS = ["account-name", "account-key", "sas-token"] as const;
const SFTP_KEYS = ["host", "user", "password", "key-path", "host-key"] as const;
for (
  const key of [
    "concurrent-writes",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
  ]
) REPLICA_UNUSED[key] = { why: OTHER_BACKEND };

/** Values never shown in a comment unless they are a `$VAR` reference. */
const SECRET_KEYS = new Set([
  "secret-access-key",
  "sse-customer-key",
  "account-key",
  "sas-token",
  "password",
  "webdav-password",
  "jwt",
  "seed",
  "nkey",
  "token",
]);

const ROOT_UNUSED: Record<string, string> = {
  "mcp-addr": "walrust has no MCP server",
  "heartbeat-url": "walrust sends no heartbeat pings; [[webhooks]] report failures instead",
  "heartbeat-interval": "walrust sends no heartbeat pings",
  "l0-retention-check-interval": "walrust applies l0-retention when it compacts",
  "verify-compaction": "not implemented",
  "shutdown-sync-interval": "walrust drains uploads on shutdown without a retry interval",
};

const ROOT_KEYS = [
  "dbs",
  "addr",
  "levels",
  "snapshot",
  "validation",
  "l0-retention",
  "retention",
  "exec",
  "logging",
  "shutdown-sync-timeout",
  "socket",
  "age",
  ...ABS_KEYS,
  ...SFTP_KEYS,
  ...Object.keys(ROOT_UNUSED),
  ...REPLICA_SETTINGS,
  ...Object.keys(REPLICA_UNUSED),
];

const DB_UNUSED: Record<string, { why: string; quietIf?: boolean }> = {
  "meta-path": { why: "walrust keeps its state in .<db>-walrust/ beside the database" },
  "meta-dir": { why: "walrust keeps its state in .<db>-walrust/ beside each database" },
  "monitor-interval": { why: "walrust checks each WAL on its own scheduler tick" },
  "restore-if-db-not-exists": {
    why: "not read per database; the flag `walrust replicate -restore-if-db-not-exists` " +
      "restores every missing database",
    quietIf: false,
  },
};

const DB_KEYS = [
  "path",
  "dir",
  "pattern",
  "recursive",
  "watch",
  "snapshot",
  "checkpoint-interval",
  "busy-timeout",
  "min-checkpoint-page-count",
  "truncate-page-n",
  "max-sync-wal-bytes",
  "replica",
  "replicas",
  ...Object.keys(DB_UNUSED),
];

const REPLICA_KEYS = [
  "type",
  "name",
  "path",
  "url",
  "age",
  ...ABS_KEYS,
  ...SFTP_KEYS,
  "webdav-url",
  "webdav-username",
  "webdav-password",
  ...REPLICA_SETTINGS,
  ...Object.keys(REPLICA_UNUSED),
];

// ---------------------------------------------------------------------------------------------
// The top level

function readRoot(r: Reader, root: YMap): FileConfig {
  r.checkKeys(root, "", ROOT_KEYS);
  const config = emptyFileConfig();
  const globals = readReplicaSettings(r, root, "", undefined);
  for (const key of [...ABS_KEYS, ...SFTP_KEYS]) {
    const e = get(root, key);
    if (e?.value !== undefined) {
      r.unused(
        e,
        key,
        "walrust reads it on the replica (replica: or replicas:), not here",
        undefined,
      );
    }
  }
  if (globals.syncIntervalMs !== undefined) config.sync.walSyncIntervalMs = globals.syncIntervalMs;
  if (globals.age) config.age = globals.age;
  if (globals.validationIntervalMs !== undefined) {
    config.sync.validationIntervalMs = globals.validationIntervalMs;
  }

  const addr = r.string(get(root, "addr"), "addr");
  if (addr) config.metrics = { ...config.metrics, ...metricsAddr(r, addr) };

  const levelsEntry = get(root, "levels");
  const levels = r.seq(levelsEntry, "levels");
  if (levels) {
    if (levels.items.length > 8) {
      r.fail(
        levelsEntry!.line,
        "levels",
        `at most 8 levels (9 holds snapshots), got ${levels.items.length}`,
      );
    }
    config.maintenance.compactionLevelsMs = levels.items.map((item, i) => {
      const path = `levels[${i}]`;
      if (item?.kind !== "map") {
        r.fail(item?.line ?? levelsEntry!.line, path, "expected {interval: 30s}");
      }
      r.checkKeys(item, path, ["interval"]);
      const ms = r.duration(get(item, "interval"), `${path}.interval`, 1);
      if (ms === undefined) r.fail(item.line, path, "missing interval", "e.g. interval: 5m");
      return ms;
    });
  }

  const snapshot = r.map(get(root, "snapshot"), "snapshot", ["interval", "retention"]);
  const interval = r.duration(get(snapshot, "interval"), "snapshot.interval", 1);
  if (interval !== undefined) config.sync.snapshotIntervalMs = interval;
  const keep = r.duration(get(snapshot, "retention"), "snapshot.retention", 1);
  if (keep !== undefined) config.retention.pitrWindowMs = keep;

  const validation = r.map(get(root, "validation"), "validation", ["interval"]);
  const check = r.duration(get(validation, "interval"), "validation.interval", 0);
  if (check !== undefined) config.sync.validationIntervalMs = check;

  const l0 = r.duration(get(root, "l0-retention"), "l0-retention", 0);
  if (l0 !== undefined) config.sync.l0RetentionMs = l0;

  const retention = r.map(get(root, "retention"), "retention", ["enabled"]);
  const enabled = r.bool(get(retention, "enabled"), "retention.enabled");
  if (enabled !== undefined) config.maintenance.retentionEnabled = enabled;

  const drain = r.duration(get(root, "shutdown-sync-timeout"), "shutdown-sync-timeout", 0);
  if (drain !== undefined) config.shutdownDrainMs = drain;

  const exec = r.string(get(root, "exec"), "exec");
  if (exec) {
    config.exec = exec.value;
    if (keepsRaw(exec.raw)) r.raw.exec = exec.raw;
  }

  readLogging(r, root, config);
  readSocket(r, root);
  for (const [key, why] of Object.entries(ROOT_UNUSED)) {
    const e = get(root, key);
    if (e?.value === undefined) continue;
    const quiet = key === "verify-compaction" && r.bool(e, key) === false;
    r.unused(e, key, why, undefined, quiet);
  }

  const dbsEntry = get(root, "dbs");
  const dbs = r.seq(dbsEntry, "dbs");
  const read = (dbs?.items ?? []).map((item, i) => {
    if (item?.kind !== "map") {
      return r.fail(
        item?.line ?? dbsEntry!.line,
        `dbs[${i}]`,
        "expected a database (- path: /data/app.db)",
      );
    }
    return readDb(r, item, i, globals);
  });
  config.databases = read.map((d) => d.entry);
  placeReplicas(r, config, read, globals);
  return config;
}

function metricsAddr(r: Reader, addr: Str): { enabled: boolean; host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr.value.trim());
  if (!m || Number(m[3]) > 65535) {
    r.fail(
      addr.line,
      "addr",
      `expected host:port, got ${JSON.stringify(addr.value)}`,
      'e.g. ":9090" or "127.0.0.1:9090"',
    );
  }
  // Go's ":9090" listens on every interface.
  const host = m[1] ?? m[2] ?? "";
  return { enabled: true, host: host === "" ? "0.0.0.0" : host, port: Number(m[3]) };
}

const LEVELS: Record<string, LogLevel> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
};

function readLogging(r: Reader, root: YMap, config: FileConfig): void {
  const logging = r.map(get(root, "logging"), "logging", ["level", "type", "stderr", "source"]);
  if (!logging) return;
  const level = r.string(get(logging, "level"), "logging.level");
  if (level) {
    const l = LEVELS[level.value.toLowerCase()];
    if (!l) {
      r.fail(
        level.line,
        "logging.level",
        `unknown level ${JSON.stringify(level.value)}`,
        "trace, debug, info, warn or error",
      );
    }
    config.log.level = l;
  }
  const type = r.string(get(logging, "type"), "logging.type");
  if (type) {
    if (type.value === "json" || type.value === "text") config.log.format = type.value;
    else if (type.value === "pretty") {
      config.log.format = "text";
      r.unused(
        get(logging, "type")!,
        "logging.type",
        'walrust has no "pretty" logs; text is used',
        undefined,
      );
    } else {
      r.fail(
        type.line,
        "logging.type",
        `unknown type ${JSON.stringify(type.value)}`,
        "text or json",
      );
    }
  }
  // walrust always logs to stderr; Litestream's default is stdout.
  const stderr = get(logging, "stderr");
  if (stderr?.value !== undefined) {
    const onStderr = r.bool(stderr, "logging.stderr");
    r.unused(
      stderr,
      "logging.stderr",
      "walrust always logs to stderr",
      undefined,
      onStderr === true,
    );
  }
  const source = get(logging, "source");
  if (source?.value !== undefined) {
    const on = r.bool(source, "logging.source");
    r.unused(
      source,
      "logging.source",
      "log lines carry no source location",
      undefined,
      on === false,
    );
  }
}

function readSocket(r: Reader, root: YMap): void {
  const e = get(root, "socket");
  const socket = r.map(e, "socket", ["enabled", "path", "permissions"]);
  if (!socket) return;
  const on = r.bool(get(socket, "enabled"), "socket.enabled") ?? false;
  r.string(get(socket, "path"), "socket.path");
  r.string(get(socket, "permissions"), "socket.permissions");
  const why = "walrust has no control socket (sync, start, stop, register commands)";
  r.unused(e!, "socket", why, undefined, !on);
}

// ---------------------------------------------------------------------------------------------
// Replicas

/** The replica settings walrust uses, from the top level (defaults) or one replica. */
interface ReplicaSettings {
  syncIntervalMs?: number;
  validationIntervalMs?: number;
  accessKeyId?: Str;
  secretAccessKey?: Str;
  region?: Str;
  bucket?: Str;
  endpoint?: Str;
  forcePathStyle?: boolean;
  /** Line of the force-path-style key, when set. */
  forcePathStyleLine?: number;
  /** `age:` (Litestream v0.3): the replica's encryption keys. */
  age?: AgeSettings;
}

function readReplicaSettings(
  r: Reader,
  m: YMap,
  path: string,
  db: number | undefined,
): ReplicaSettings {
  const s: ReplicaSettings = {};
  s.syncIntervalMs = r.duration(get(m, "sync-interval"), at(path, "sync-interval"), 1, HOUR_MS);
  s.validationIntervalMs = r.duration(
    get(m, "validation-interval"),
    at(path, "validation-interval"),
    0,
  );
  s.accessKeyId = r.string(get(m, "access-key-id"), at(path, "access-key-id"));
  s.secretAccessKey = r.string(get(m, "secret-access-key"), at(path, "secret-access-key"));
  s.region = r.string(get(m, "region"), at(path, "region"));
  s.bucket = r.string(get(m, "bucket"), at(path, "bucket"));
  s.endpoint = r.string(get(m, "endpoint"), at(path, "endpoint"));
  const fps = get(m, "force-path-style");
  s.forcePathStyle = r.bool(fps, at(path, "force-path-style"));
  if (s.forcePathStyle !== undefined) s.forcePathStyleLine = fps!.line;

  for (const [key, { why, quietIf }] of Object.entries(REPLICA_UNUSED)) {
    const e = get(m, key);
    if (e?.value === undefined) continue;
    const quiet = quietIf !== undefined && e.value.kind === "scalar" &&
      r.bool(e, at(path, key)) === quietIf;
    r.unused(e, at(path, key), why, db, quiet);
  }
  const ageEntry = get(m, "age");
  const age = r.map(ageEntry, at(path, "age"), ["identities", "recipients"]);
  if (age) {
    // Litestream v0.3's spelling; identities are secrets and never shown in a message.
    const keys = (k: "identities" | "recipients") => {
      const list = r.seq(get(age, k), at(path, `age.${k}`));
      return (list?.items ?? []).map((item, i) => {
        const where = at(path, `age.${k}[${i}]`);
        const line = item?.line ?? ageEntry!.line;
        const v = r.string({ key: k, line, value: item, keySpan: ageEntry!.keySpan }, where);
        if (!v || v.value.trim() === "") r.fail(line, where, "is empty");
        return v.value.trim();
      });
    };
    s.age = { recipients: keys("recipients"), identities: keys("identities") };
  }
  return s;
}

/** Where one database's replica goes. */
type Target =
  | {
    kind: "s3";
    bucket: string;
    /** The bucket name as written, when it used `$VAR`. */
    rawBucket?: string;
    /** TOML key path -> text as written with `$VAR` (region, endpoint, credentials). */
    raw: Record<string, string>;
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    accessKeyId?: Str;
    secretAccessKey?: Str;
  }
  | { kind: "file" }
  | {
    kind: "webdav";
    /** `webdav://host[:port]` or `webdavs://...`: the server; the path is the remote. */
    origin: string;
    username?: Str;
    password?: Str;
  }
  | {
    kind: "abs";
    /** `abs://ACCOUNT@CONTAINER` (or `abs://CONTAINER`: the account from the environment). */
    origin: string;
    accountKey?: Str;
    sasToken?: Str;
    endpoint?: string;
  }
  | {
    kind: "sftp";
    /** `sftp://user@host[:port]`; the path is the remote (absolute on the server). */
    origin: string;
    password?: Str;
    keyPath?: string;
    hostKey?: Str;
  };

interface ReplicaRead {
  target: Target;
  /** The replica's own settings (for the database's sync overrides). */
  own: ReplicaSettings;
  /** Path segments below the bucket (S3) or from the filesystem root (file). */
  remote: string[];
  line: number;
  path: string;
}

function readReplica(
  r: Reader,
  e: YEntry,
  path: string,
  globals: ReplicaSettings,
  db: number,
): ReplicaRead {
  const m = r.map(e, path, REPLICA_KEYS);
  if (!m) return r.fail(e.line, path, "is empty", "e.g. url: s3://bucket/app.db");
  const own = readReplicaSettings(r, m, path, db);
  const name = get(m, "name");
  if (name?.value !== undefined) {
    r.unused(name, at(path, "name"), "deprecated and unused", db, true);
  }
  const url = r.string(get(m, "url"), at(path, "url"));
  const typeKey = r.string(get(m, "type"), at(path, "type"));
  const localPath = r.string(get(m, "path"), at(path, "path"));

  const scheme = url && /^(\w+):\/\//.exec(url.value)?.[1].toLowerCase();
  if (url && !scheme) {
    r.fail(
      url.line,
      at(path, "url"),
      `replica url needs a scheme, got ${JSON.stringify(url.value)}`,
      "e.g. s3://bucket/app.db or file:///backups/app.db",
    );
  }
  if (localPath && /^\w+:\/\//.test(localPath.value)) {
    r.fail(localPath.line, at(path, "path"), "replica path cannot be a URL", "put it in url:");
  }
  const webdavUrl = r.string(get(m, "webdav-url"), at(path, "webdav-url"));
  const type = scheme === "webdavs" ? "webdav" : scheme ?? typeKey?.value ??
    (webdavUrl ? "webdav" : "file");
  if (type === "webdav") {
    return { own, ...readWebdav(r, m, path, { url, webdavUrl, localPath }) };
  }
  for (const [kind, keys] of [["abs", ABS_KEYS], ["sftp", SFTP_KEYS]] as const) {
    if (type === kind) continue;
    for (const key of keys) {
      const e = get(m, key);
      if (e?.value !== undefined) r.unused(e, at(path, key), `only used by ${kind} replicas`, db);
    }
  }
  if (type === "abs") return { own, ...readAbs(r, m, path, { url, localPath, own, globals }) };
  if (type === "sftp") return { own, ...readSftp(r, m, path, { url, localPath }) };
  if (type !== "s3" && type !== "file") {
    r.fail(
      (url ?? typeKey)?.line ?? e.line,
      at(path, url ? "url" : "type"),
      `replica type ${JSON.stringify(type)} is not supported by walrust`,
      OTHER_BACKEND,
    );
  }
  if (url && localPath) {
    r.fail(localPath.line, at(path, "path"), `cannot specify url & path for a ${type} replica`);
  }
  if (type === "file") {
    const p = url ? fileUrlPath(url.value) : localPath && r.localPath(localPath, at(path, "path"));
    if (!p) r.fail(e.line, path, "file replica path required", "add path: /backups/app.db");
    const remote = segments(r, p, (url ?? localPath!).line, path);
    return { target: { kind: "file" }, own, remote, line: e.line, path };
  }
  return { own, ...readS3(r, e.line, path, db, { ...own, url, localPath }, globals) };
}

/**
 * A WebDAV replica: `url: webdav://host/path` (`webdavs://` for HTTPS), or Litestream's
 * `webdav-url: http(s)://host/base` with `path:` below it; `webdav-username`/`webdav-password`.
 */
function readWebdav(
  r: Reader,
  m: YMap,
  path: string,
  o: { url?: Str; webdavUrl?: Str; localPath?: Str },
): Omit<ReplicaRead, "own"> {
  const given = o.url ?? o.webdavUrl;
  if (!given) {
    return r.fail(m.line, path, "webdav replica needs a URL", "add url: webdav://host/path");
  }
  const u = urlOf(r, given, at(path, o.url ? "url" : "webdav-url"));
  const secure = u.protocol === "https:" || u.protocol === "webdavs:";
  if (!["http:", "https:", "webdav:", "webdavs:"].includes(u.protocol) || u.hostname === "") {
    r.fail(
      given.line,
      at(path, o.url ? "url" : "webdav-url"),
      `expected webdav://host/path or http(s)://host/path, got ${JSON.stringify(given.value)}`,
    );
  }
  const segs = (p: string) =>
    p.split("/").filter((x) => x !== "").map((x) => decodeURIComponent(x));
  const remote = [...segs(u.pathname), ...(o.localPath ? segs(o.localPath.value) : [])];
  const target: Target = { kind: "webdav", origin: `${secure ? "webdavs" : "webdav"}://${u.host}` };
  const user = r.string(get(m, "webdav-username"), at(path, "webdav-username"));
  const pass = r.string(get(m, "webdav-password"), at(path, "webdav-password"));
  if (user) target.username = user;
  if (pass) target.password = pass;
  return { target, remote, line: m.line, path };
}

/**
 * An Azure Blob Storage replica: `url: abs://ACCOUNT@CONTAINER/path`, or `type: abs` with
 * `account-name`, `bucket` (the container) and `path`; `account-key`, `sas-token`, `endpoint`.
 */
function readAbs(
  r: Reader,
  m: YMap,
  path: string,
  o: { url?: Str; localPath?: Str; own: ReplicaSettings; globals: ReplicaSettings },
): Omit<ReplicaRead, "own"> {
  const str = (k: string) => r.string(get(m, k), at(path, k));
  let account = str("account-name")?.value;
  let container = (o.own.bucket ?? o.globals.bucket)?.value;
  let remote: string[] = [];
  let endpoint = (o.own.endpoint ?? o.globals.endpoint)?.value;
  if (o.url) {
    const u = urlOf(r, o.url, at(path, "url"), "e.g. abs://account@container/app.db");
    if (u.password !== "") {
      r.fail(
        o.url.line,
        at(path, "url"),
        "the account key does not belong in the URL",
        "use account-key:",
      );
    }
    if (u.username !== "") account = decodeURIComponent(u.username);
    container = decodeURIComponent(u.hostname);
    remote = segments(r, decodeURIComponent(u.pathname), o.url.line, at(path, "url"));
    endpoint ??= u.searchParams.get("endpoint") ?? undefined;
  } else if (o.localPath) {
    remote = segments(r, o.localPath.value, o.localPath.line, at(path, "path"));
  }
  if (!container) {
    r.fail(m.line, path, "abs replica needs a container", "add url: abs://account@container/path");
  }
  const target: Target = {
    kind: "abs",
    origin: `abs://${account ? `${encodeURIComponent(account)}@` : ""}${container}`,
  };
  const key = str("account-key");
  const sas = str("sas-token");
  if (key) target.accountKey = key;
  if (sas) target.sasToken = sas;
  if (endpoint) target.endpoint = endpointWithScheme(endpoint);
  return { target, remote, line: m.line, path };
}

/**
 * An SFTP replica: `url: sftp://user[:password]@host[:port]/abs/path`, or `type: sftp` with
 * `host` (`host:port`), `user`, `path`; `password`, `key-path`, `host-key`.
 */
function readSftp(
  r: Reader,
  m: YMap,
  path: string,
  o: { url?: Str; localPath?: Str },
): Omit<ReplicaRead, "own"> {
  const str = (k: string) => r.string(get(m, k), at(path, k));
  let user = str("user")?.value;
  let host = str("host")?.value;
  let password = str("password");
  let remote: string[] = [];
  if (o.url) {
    const u = urlOf(r, o.url, at(path, "url"), "e.g. sftp://user@host/backups");
    if (u.username !== "") user = decodeURIComponent(u.username);
    if (u.password !== "") {
      password = { value: decodeURIComponent(u.password), raw: o.url.raw, line: o.url.line };
    }
    host = u.host;
    remote = segments(r, decodeURIComponent(u.pathname), o.url.line, at(path, "url"));
  } else if (o.localPath) {
    remote = segments(r, o.localPath.value, o.localPath.line, at(path, "path"));
  }
  if (!host) r.fail(m.line, path, "sftp replica needs a host", "add host: backup.example.com:22");
  if (!user) r.fail(m.line, path, "sftp replica needs a user", "add user: backup");
  if (/[\s/@]/.test(host)) r.fail(m.line, path, `bad sftp host ${JSON.stringify(host)}`);
  const target: Target = { kind: "sftp", origin: `sftp://${encodeURIComponent(user)}@${host}` };
  if (password) target.password = password;
  const keyPath = str("key-path");
  if (keyPath) target.keyPath = r.localPath(keyPath, at(path, "key-path"));
  const hostKey = str("host-key");
  if (hostKey) target.hostKey = hostKey;
  return { target, remote, line: m.line, path };
}

/** A replica URL parsed, or a failure naming the key (and an example, when given). */
function urlOf(r: Reader, url: Str, path: string, example?: string): URL {
  try {
    return new URL(url.value);
  } catch {
    return r.fail(url.line, path, "not a valid URL", example);
  }
}

function readS3(
  r: Reader,
  line: number,
  path: string,
  db: number,
  own: ReplicaSettings & { url?: Str; localPath?: Str },
  globals: ReplicaSettings,
): Omit<ReplicaRead, "own"> {
  // Litestream's SetDefaults: a replica's unset settings come from the top level.
  const pick = <K extends keyof ReplicaSettings>(k: K) => own[k] ?? globals[k];
  const bucketSetting = pick("bucket");
  const regionSetting = pick("region");
  const endpointSetting = pick("endpoint");
  const explicitStyle = pick("forcePathStyle");
  let bucket = bucketSetting?.value;
  let rawBucket = bucketSetting && keepsRaw(bucketSetting.raw) ? bucketSetting.raw : undefined;
  let region = regionSetting?.value;
  let endpoint = endpointSetting?.value;
  let remotePath = own.localPath?.value ?? "";
  // Path style by default when an endpoint is set, as Litestream (and walrust's S3 client) do.
  let style = explicitStyle ?? endpoint !== undefined;
  let styleInUrl = false;
  let regionFromUrl = false;
  if (own.url) {
    if (bucketSetting) {
      r.fail(
        own.url.line,
        at(path, "url"),
        "cannot specify url & bucket for an s3 replica",
        own.bucket ? "remove bucket:" : "bucket: is set at the top level; remove it there",
      );
    }
    const u = parseS3Url(r, own.url, at(path, "url"), db);
    bucket = u.bucket;
    rawBucket = u.rawBucket;
    region ??= u.region;
    endpoint ??= u.endpoint;
    remotePath = u.path;
    if (!style) style = u.pathStyle;
    if (u.region !== undefined && region === u.region) regionFromUrl = true;
    styleInUrl = u.styleInQuery;
  }
  if (!bucket) {
    r.fail(line, path, "bucket required for an s3 replica", "add url: s3://bucket/app.db");
  }
  if (/[\s/]/.test(bucket)) r.fail(line, path, `bad bucket name ${JSON.stringify(bucket)}`);
  if (endpoint !== undefined) endpoint = endpointWithScheme(endpoint);
  if (explicitStyle === undefined && endpoint && PATH_STYLE_HOSTS.test(hostOf(endpoint))) {
    style = true;
  }

  const target: Target = { kind: "s3", bucket, raw: {} };
  if (rawBucket) target.rawBucket = rawBucket;
  if (endpoint !== undefined) target.endpoint = endpoint;
  if (region !== undefined) target.region = region;
  const raw = (key: string, s: Str | undefined, value: string | undefined) => {
    if (s && s.value === value && keepsRaw(s.raw)) target.raw[key] = s.raw;
  };
  raw("s3.endpoint", endpointSetting, endpoint);
  if (!regionFromUrl) raw("s3.region", regionSetting, region);
  // Recorded only when it differs from walrust's own default (path style iff an endpoint).
  if (explicitStyle !== undefined || styleInUrl || style !== (endpoint !== undefined)) {
    target.forcePathStyle = style;
  }
  const key = pick("accessKeyId");
  const secret = pick("secretAccessKey");
  if (!key !== !secret) {
    const missing = key ? "secret-access-key" : "access-key-id";
    r.fail(
      (key ?? secret)!.line,
      path,
      `${missing} is missing (or empty)`,
      "set both access-key-id and secret-access-key, or neither to use the AWS credential chain",
    );
  }
  if (key) target.accessKeyId = key;
  if (secret) target.secretAccessKey = secret;
  raw("s3.access_key_id", key, key?.value);
  raw("s3.secret_access_key", secret, secret?.value);
  const where = (own.url ?? own.localPath)?.line ?? line;
  return { target, remote: segments(r, remotePath, where, path), line, path };
}

interface S3Url extends S3Host {
  rawBucket?: string;
  path: string;
  styleInQuery: boolean;
}

/** `s3://bucket/path?endpoint=..&region=..&forcePathStyle=..`, with Litestream's host rules. */
function parseS3Url(r: Reader, url: Str, path: string, db: number): S3Url {
  const rest = url.value.slice(url.value.indexOf("://") + 3);
  const [beforeQuery, query = ""] = splitOnce(rest, "?");
  const [host, remote = ""] = splitOnce(beforeQuery, "/");
  if (host.startsWith("arn:")) {
    r.fail(
      url.line,
      path,
      "S3 access point ARNs are not supported by walrust",
      "use the bucket name",
    );
  }
  const h = s3Host(host);
  const out: S3Url = { ...h, path: remote, styleInQuery: false };
  const rawHost = splitOnce(splitOnce(url.raw.slice(url.raw.indexOf("://") + 3), "?")[0], "/")[0];
  if (keepsRaw(rawHost) && h.bucket === host) out.rawBucket = rawHost;
  let styleParam: string | undefined;
  for (const [k, v] of new URLSearchParams(query)) {
    if (k === "endpoint") {
      out.endpoint = endpointWithScheme(v);
      out.pathStyle = true;
    } else if (k === "region") out.region = v;
    else if (k === "forcePathStyle" || k === "force-path-style") styleParam = v;
    else {
      const why = "URL parameter not supported by walrust";
      r.unusedAt(url.line, `${path}?${k}`, why, db, [`  ${k}=${v}`]);
    }
  }
  if (styleParam !== undefined) {
    out.pathStyle = styleParam === "true";
    out.styleInQuery = true;
  }
  return out;
}

interface S3Host {
  bucket: string;
  region?: string;
  endpoint?: string;
  pathStyle: boolean;
}

/** Litestream's S3 host forms: a bucket, AWS virtual hosts, DO, B2, Filebase, Scaleway, host:port. */
function s3Host(host: string): S3Host {
  if (host.includes(":") && !host.includes(".com")) {
    // MinIO style bucket.host:port.
    const dot = host.indexOf(".");
    if (dot < 0) return { bucket: "", endpoint: `http://${host}`, pathStyle: true };
    const endpoint = `http://${host.slice(dot + 1)}`;
    return { bucket: host.slice(0, dot), region: "us-east-1", endpoint, pathStyle: true };
  }
  let m = /^(.+)\.s3(?:[.-]([^.]+))?\.amazonaws\.com$/.exec(host);
  if (m) return { bucket: m[1], region: m[2], pathStyle: false };
  m = /^(?:(.+)\.)?([^.]+)\.digitaloceanspaces\.com$/.exec(host);
  if (m) {
    const endpoint = `https://${m[2]}.digitaloceanspaces.com`;
    return { bucket: m[1] ?? "", region: m[2], endpoint, pathStyle: false };
  }
  m = /^(?:(.+)\.)?s3\.([^.]+)\.backblazeb2\.com$/.exec(host);
  if (m) {
    const endpoint = `https://s3.${m[2]}.backblazeb2.com`;
    return { bucket: m[1] ?? "", region: m[2], endpoint, pathStyle: true };
  }
  m = /^(?:(.+)\.)?s3\.filebase\.com$/.exec(host);
  if (m) return { bucket: m[1] ?? "", endpoint: "https://s3.filebase.com", pathStyle: false };
  m = /^(?:(.+)\.)?s3\.([^.]+)\.scw\.cloud$/.exec(host);
  if (m) {
    const endpoint = `https://s3.${m[2]}.scw.cloud`;
    return { bucket: m[1] ?? "", region: m[2], endpoint, pathStyle: false };
  }
  return { bucket: host, pathStyle: false };
}

/** Providers Litestream always addresses path-style (unless force-path-style says otherwise). */
const PATH_STYLE_HOSTS = /(^s3\.filebase\.com|\.backblazeb2\.com|\.supabase\.co)$/;

function hostOf(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, "").split(/[/?#]/, 1)[0].replace(/:\d+$/, "")
    .toLowerCase();
}

/** Litestream adds http:// to local hosts and https:// to everything else. */
function endpointWithScheme(endpoint: string): string {
  if (/^https?:\/\//i.test(endpoint)) return endpoint;
  const host = hostOf(endpoint);
  const local = host === "localhost" || host === "127.0.0.1" || /^(10|192\.168)\./.test(host) ||
    /^172\.(1[6-9]|2\d|3[01])\./.test(host) || host.endsWith(".local") ||
    host.endsWith(".localhost");
  return `${local ? "http" : "https"}://${endpoint}`;
}

function fileUrlPath(url: string): string {
  const rest = splitOnce(url.slice(url.indexOf("://") + 3), "?")[0];
  const p = rest.startsWith("/") ? rest : `/${rest}`;
  return resolve(decodeURIComponent(p));
}

function splitOnce(s: string, sep: string): [string, string?] {
  const i = s.indexOf(sep);
  return i < 0 ? [s] : [s.slice(0, i), s.slice(i + 1)];
}

function segments(r: Reader, p: string, line: number, path: string): string[] {
  const parts = p.split("/").filter((x) => x !== "" && x !== ".");
  if (parts.includes("..")) {
    r.fail(line, path, `replica path ${JSON.stringify(p)} must not contain ".."`);
  }
  return parts;
}

function sameTarget(a: Target, b: Target): boolean {
  if (a.kind === "file" || b.kind === "file") return a.kind === b.kind;
  if (a.kind === "webdav" || b.kind === "webdav") {
    return a.kind === "webdav" && b.kind === "webdav" && a.origin === b.origin &&
      a.username?.value === b.username?.value && a.password?.value === b.password?.value;
  }
  if (a.kind === "abs" || b.kind === "abs") {
    return a.kind === "abs" && b.kind === "abs" && a.origin === b.origin &&
      a.endpoint === b.endpoint && a.accountKey?.value === b.accountKey?.value &&
      a.sasToken?.value === b.sasToken?.value;
  }
  if (a.kind === "sftp" || b.kind === "sftp") {
    return a.kind === "sftp" && b.kind === "sftp" && a.origin === b.origin &&
      a.password?.value === b.password?.value && a.keyPath === b.keyPath &&
      a.hostKey?.value === b.hostKey?.value;
  }
  return a.bucket === b.bucket && a.endpoint === b.endpoint && a.region === b.region &&
    a.forcePathStyle === b.forcePathStyle && a.accessKeyId?.value === b.accessKeyId?.value &&
    a.secretAccessKey?.value === b.secretAccessKey?.value;
}

function describeTarget(t: Target): string {
  if (t.kind === "file") return "a file replica";
  if (t.kind === "webdav" || t.kind === "abs" || t.kind === "sftp") return t.origin;
  const extra = [t.endpoint && `endpoint ${t.endpoint}`, t.region && `region ${t.region}`]
    .filter(Boolean).join(", ");
  return `s3://${t.bucket}${extra ? ` (${extra})` : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Databases

interface DbRead {
  entry: DatabaseEntry;
  /** A `dir:` entry: its replica path is a folder holding one replica per file. */
  dir: boolean;
  replica?: ReplicaRead;
  line: number;
}

function readDb(r: Reader, m: YMap, i: number, globals: ReplicaSettings): DbRead {
  const path = `dbs[${i}]`;
  r.checkKeys(m, path, DB_KEYS);
  const file = r.string(get(m, "path"), `${path}.path`);
  const dir = r.string(get(m, "dir"), `${path}.dir`);
  const pattern = r.string(get(m, "pattern"), `${path}.pattern`);
  const recursiveEntry = get(m, "recursive");
  const recursive = r.bool(recursiveEntry, `${path}.recursive`) ?? false;
  const watch = r.bool(get(m, "watch"), `${path}.watch`) ?? false;
  if (file && dir) r.fail(dir.line, path, "cannot specify both path and dir");
  if (!file && !dir) {
    r.fail(m.line, path, "must specify either path or dir", "add path: /data/app.db");
  }
  if (dir && !pattern) {
    r.fail(dir.line, `${path}.pattern`, "is required with dir", 'e.g. pattern: "*.db"');
  }
  if (watch && !dir) r.fail(get(m, "watch")!.line, `${path}.watch`, "can only be used with dir");
  if (get(m, "meta-dir")?.value !== undefined && !dir) {
    r.fail(get(m, "meta-dir")!.line, `${path}.meta-dir`, "can only be used with dir");
  }
  if (get(m, "meta-dir")?.value !== undefined && get(m, "meta-path")?.value !== undefined) {
    r.fail(get(m, "meta-dir")!.line, path, "cannot specify both meta-path and meta-dir");
  }

  let dbPath: string;
  if (file) {
    dbPath = r.localPath(file, `${path}.path`);
    if (isGlobPattern(dbPath)) {
      r.fail(
        file.line,
        `${path}.path`,
        "contains *, ? or [, which walrust would read as a pattern",
        "use dir: and pattern:",
      );
    }
    if (keepsRaw(file.raw) && file.value === dbPath) r.raw[`databases[${i}].path`] = file.raw;
  } else {
    const base = r.localPath(dir!, `${path}.dir`);
    if (isGlobPattern(base)) {
      r.fail(dir!.line, `${path}.dir`, "contains *, ? or [, which walrust would read as a pattern");
    }
    if (pattern!.value.includes("/")) {
      r.fail(pattern!.line, `${path}.pattern`, "matches file names only; it must not contain /");
    }
    dbPath = recursive ? join(base, "**", pattern!.value) : join(base, pattern!.value);
  }
  const entry: DatabaseEntry = { path: dbPath, sync: {}, line: (file ?? dir)!.line };
  if (watch) entry.watch = true;
  if (recursive) {
    r.caveat(
      recursiveEntry!.line,
      `${path}.recursive`,
      "databases in subfolders are stored under their file name alone ({name}), not under " +
        "their path below dir as Litestream does",
      i,
    );
  }

  const sync: Partial<SyncSettings> = entry.sync;
  const set = <K extends keyof SyncSettings>(k: K, v: SyncSettings[K] | undefined) => {
    if (v !== undefined) sync[k] = v;
  };
  set(
    "checkpointIntervalMs",
    r.duration(get(m, "checkpoint-interval"), `${path}.checkpoint-interval`, 0),
  );
  set("busyTimeoutMs", r.duration(get(m, "busy-timeout"), `${path}.busy-timeout`, 0));
  set(
    "minCheckpointPageCount",
    r.int(get(m, "min-checkpoint-page-count"), `${path}.min-checkpoint-page-count`, 1),
  );
  // Litestream reads truncate-page-n 0 as "the default", walrust's 0 means "never".
  const truncate = r.int(get(m, "truncate-page-n"), `${path}.truncate-page-n`, 0);
  if (truncate) sync.walTruncateThresholdPages = truncate;
  set("maxSyncWalBytes", r.int(get(m, "max-sync-wal-bytes"), `${path}.max-sync-wal-bytes`, 4096));

  const snapshot = r.map(get(m, "snapshot"), `${path}.snapshot`, ["interval", "retention"]);
  set("snapshotIntervalMs", r.duration(get(snapshot, "interval"), `${path}.snapshot.interval`, 1));
  const keep = r.duration(get(snapshot, "retention"), `${path}.snapshot.retention`, 1);
  if (keep !== undefined) entry.retention = { pitrWindowMs: keep };

  for (const [key, { why, quietIf }] of Object.entries(DB_UNUSED)) {
    const e = get(m, key);
    if (e?.value === undefined) continue;
    const quiet = quietIf !== undefined && r.bool(e, `${path}.${key}`) === quietIf;
    r.unused(e, `${path}.${key}`, why, i, quiet);
  }

  const out: DbRead = { entry, dir: dir !== undefined, line: entry.line! };
  const single = get(m, "replica");
  const list = get(m, "replicas");
  const items = r.seq(list, `${path}.replicas`)?.items ?? [];
  if (single?.value !== undefined && items.length > 0) {
    r.fail(list!.line, path, "cannot specify both replica and replicas", "keep replica:");
  }
  if (items.length > 1) {
    r.fail(
      list!.line,
      `${path}.replicas`,
      `lists ${items.length} replicas; walrust (like Litestream v0.5) replicates each database to one`,
      "keep one entry, or use replica:",
    );
  }
  let replicaEntry: YEntry | undefined = single?.value !== undefined ? single : undefined;
  let replicaPath = `${path}.replica`;
  if (items.length === 1) {
    replicaEntry = {
      key: "replicas",
      line: items[0]?.line ?? list!.line,
      value: items[0],
      keySpan: list!.keySpan,
    };
    replicaPath = `${path}.replicas[0]`;
  }
  if (replicaEntry) {
    out.replica = readReplica(r, replicaEntry, replicaPath, globals, i);
    set("walSyncIntervalMs", out.replica.own.syncIntervalMs);
    set("validationIntervalMs", out.replica.own.validationIntervalMs);
    if (out.replica.own.age) entry.age = out.replica.own.age;
  }
  return out;
}

/**
 * One bucket for all databases: every replica must go to the same place. The bucket URL takes
 * the replica paths' common folder; each database's prefix is the rest of its path.
 */
function placeReplicas(r: Reader, config: FileConfig, dbs: DbRead[], globals: ReplicaSettings) {
  const placed = dbs.filter((d) => d.replica);
  if (placed.length === 0) {
    // No replica anywhere: walrust then needs --bucket; keep the top-level S3 settings.
    if (globals.bucket) config.s3.bucket = `s3://${globals.bucket.value}`;
    if (globals.endpoint) config.s3.endpoint = endpointWithScheme(globals.endpoint.value);
    if (globals.region) config.s3.region = globals.region.value;
    if (globals.forcePathStyle !== undefined) config.s3.forcePathStyle = globals.forcePathStyle;
    if (globals.accessKeyId && globals.secretAccessKey) {
      setCredentials(r, config, globals.accessKeyId, globals.secretAccessKey);
    }
    return;
  }
  const missing = dbs.find((d) => !d.replica);
  if (missing) {
    const i = dbs.indexOf(missing);
    r.fail(
      missing.line,
      `dbs[${i}]`,
      "has no replica",
      "add replica: (Litestream needs one for every database)",
    );
  }
  const first = placed[0].replica!;
  for (const d of placed.slice(1)) {
    if (!sameTarget(first.target, d.replica!.target)) {
      r.fail(
        d.replica!.line,
        d.replica!.path,
        `goes to ${describeTarget(d.replica!.target)} but ${first.path} goes to ${
          describeTarget(first.target)
        }`,
        "walrust replicates all databases of one config to one bucket; run one walrust per bucket",
      );
    }
  }
  // A file-per-database replica keeps its last segment as the prefix; a dir: replica is a folder.
  const candidates = dbs.map((d) => d.dir ? d.replica!.remote : d.replica!.remote.slice(0, -1));
  let common = candidates[0];
  for (const c of candidates.slice(1)) {
    let n = 0;
    while (n < common.length && n < c.length && common[n] === c[n]) n++;
    common = common.slice(0, n);
  }
  dbs.forEach((d) => {
    const rest = d.replica!.remote.slice(common.length);
    if (!d.dir && rest.length === 0) {
      r.fail(
        d.replica!.line,
        d.replica!.path,
        "replicates to the root of the bucket, which walrust cannot name",
        "give the replica a path, e.g. url: s3://bucket/app.db",
      );
    }
    const prefix = d.dir ? [...rest, "{name}"].join("/") : rest.join("/");
    const bad = prefixProblem(prefix);
    if (bad) {
      r.fail(d.replica!.line, d.replica!.path, `remote name ${JSON.stringify(prefix)} ${bad}`);
    }
    d.entry.prefix = prefix;
  });

  const base = common.join("/");
  const t = first.target;
  if (t.kind === "file") {
    config.s3.bucket = `/${base}`;
    return;
  }
  if (t.kind === "webdav") {
    config.s3.bucket = `${t.origin}${base ? `/${base}` : ""}`;
    if (t.username) config.s3.webdavUsername = t.username.value;
    if (t.password) config.s3.webdavPassword = t.password.value;
    if (t.username && keepsRaw(t.username.raw)) r.raw["s3.webdav_username"] = t.username.raw;
    if (t.password && keepsRaw(t.password.raw)) r.raw["s3.webdav_password"] = t.password.raw;
    return;
  }
  if (t.kind === "abs") {
    config.s3.bucket = `${t.origin}${base ? `/${base}` : ""}`;
    if (t.endpoint) config.s3.endpoint = t.endpoint;
    if (t.accountKey) config.s3.azureAccountKey = t.accountKey.value;
    if (t.sasToken) config.s3.azureSasToken = t.sasToken.value;
    if (t.accountKey && keepsRaw(t.accountKey.raw)) {
      r.raw["s3.azure_account_key"] = t.accountKey.raw;
    }
    if (t.sasToken && keepsRaw(t.sasToken.raw)) r.raw["s3.azure_sas_token"] = t.sasToken.raw;
    return;
  }
  if (t.kind === "sftp") {
    // An SFTP path is absolute on the server.
    config.s3.bucket = `${t.origin}/${base}`;
    if (t.password) config.s3.sftpPassword = t.password.value;
    if (t.keyPath) config.s3.sftpKeyPath = t.keyPath;
    if (t.hostKey) config.s3.sftpHostKey = t.hostKey.value;
    if (t.password && keepsRaw(t.password.raw)) r.raw["s3.sftp_password"] = t.password.raw;
    return;
  }
  config.s3.bucket = `s3://${t.bucket}${base ? `/${base}` : ""}`;
  if (t.rawBucket) {
    r.raw["s3.bucket"] = `s3://${t.rawBucket}${base ? `/${base.replaceAll("$", "$$")}` : ""}`;
  }
  if (t.endpoint !== undefined) config.s3.endpoint = t.endpoint;
  if (t.region !== undefined) config.s3.region = t.region;
  if (t.forcePathStyle !== undefined) config.s3.forcePathStyle = t.forcePathStyle;
  if (t.accessKeyId && t.secretAccessKey) {
    setCredentials(r, config, t.accessKeyId, t.secretAccessKey);
  }
  Object.assign(r.raw, t.raw);
}

function setCredentials(r: Reader, config: FileConfig, key: Str, secret: Str): void {
  config.s3.accessKeyId = key.value;
  config.s3.secretAccessKey = secret.value;
  if (keepsRaw(key.raw)) r.raw["s3.access_key_id"] = key.raw;
  if (keepsRaw(secret.raw)) r.raw["s3.secret_access_key"] = secret.raw;
}
