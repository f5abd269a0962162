/**
 * Write a FileConfig as walrust.toml text (`walrust config convert`). Only settings that are set
 * are written, so the file loads back to the same configuration; everything else keeps its
 * built-in default.
 */

import { TOML_KEYS } from "./load.ts";
import type {
  AgeSettings,
  DatabaseEntry,
  FileConfig,
  RetentionSettings,
  SyncSettings,
  WebhookSettings,
} from "./schema.ts";

/** Comment lines for the output: at the top (`db` undefined) or inside one [[databases]] entry. */
export interface TomlNote {
  /** Index into FileConfig.databases; undefined = top of the file. */
  db?: number;
  /** Lines without the leading "# ". */
  lines: string[];
}

/** What {@link toToml} adds to the settings themselves. */
export interface TomlExtras {
  /** Comment lines for the head of the file, without the leading "# ". */
  header?: string[];
  /** Comments about settings that were not converted. */
  notes?: TomlNote[];
  /**
   * Text to write instead of a string value, by TOML key path (`exec`, `s3.access_key_id`,
   * `s3.bucket`, `databases[0].path`): the source's `$VAR` references, kept unexpanded so
   * secrets are never printed. Written as-is, so a `$` in it is a reference.
   */
  raw?: Record<string, string>;
}

/** Format `config` as walrust.toml; loading the result gives back the same settings. */
export function toToml(config: FileConfig, extras: TomlExtras = {}): string {
  const w = new Writer(extras.raw ?? {});
  for (const line of extras.header ?? []) w.comment(line);
  if (extras.header?.length) w.blank();
  const notes = extras.notes ?? [];

  if (config.allowEmptyGlobs) w.key("", "allow_empty_globs", config.allowEmptyGlobs);
  if (config.exec !== undefined) w.key("", "exec", config.exec);
  for (const note of notes.filter((n) => n.db === undefined)) w.note(note.lines);

  w.table("s3", config.s3, TOML_KEYS.s3);
  if (config.age) w.section("[age]", ageLines(config.age));
  const sync = syncLines(w, "sync", config.sync);
  if (config.uploadConcurrency !== undefined) {
    sync.push(`upload_concurrency = ${config.uploadConcurrency}`);
  }
  if (config.shutdownDrainMs !== undefined) {
    sync.push(`shutdown_drain = ${value(duration(config.shutdownDrainMs))}`);
  }
  w.section("[sync]", sync);

  const levels = config.maintenance.compactionLevelsMs;
  if (levels !== undefined) {
    w.section("[compaction]", [`levels = [${levels.map((ms) => value(duration(ms))).join(", ")}]`]);
  }
  const retention: string[] = [];
  if (config.maintenance.retentionEnabled !== undefined) {
    retention.push(`enabled = ${config.maintenance.retentionEnabled}`);
  }
  if (config.maintenance.pruneIntervalMs !== undefined) {
    retention.push(`prune_interval = ${value(duration(config.maintenance.pruneIntervalMs))}`);
  }
  retention.push(...retentionPairs(config.retention).map(([k, v]) => `${k} = ${v}`));
  w.section("[retention]", retention);
  w.table("retry", config.retry, TOML_KEYS.retry);
  w.table("cache", config.cache, TOML_KEYS.cache);
  w.table("metrics", config.metrics, TOML_KEYS.metrics);
  w.table("log", config.log, TOML_KEYS.log);

  for (const hook of config.webhooks) w.section("[[webhooks]]", webhookLines(w, hook));
  config.databases.forEach((db, i) => {
    w.section("[[databases]]", databaseLines(w, db, i));
    for (const note of notes.filter((n) => n.db === i)) w.note(note.lines);
  });
  return w.text();
}

class Writer {
  readonly #lines: string[] = [];
  constructor(readonly raw: Record<string, string>) {}

  comment(line: string): void {
    this.#lines.push(line === "" ? "#" : `# ${commentSafe(line)}`);
  }

  note(lines: string[]): void {
    for (const line of lines) this.comment(line);
  }

  blank(): void {
    if (this.#lines.length > 0 && this.#lines.at(-1) !== "") this.#lines.push("");
  }

  /** `key = value`, or the raw text recorded for `path.key`. */
  pair(path: string, key: string, v: unknown): string {
    const full = path ? `${path}.${key}` : key;
    const raw = this.raw[full];
    return `${key} = ${raw !== undefined && typeof v === "string" ? quote(raw) : value(v)}`;
  }

  key(path: string, key: string, v: unknown): void {
    this.#lines.push(this.pair(path, key, v));
  }

  section(header: string, lines: string[]): void {
    if (lines.length === 0 && !header.startsWith("[[")) return;
    this.blank();
    this.#lines.push(header, ...lines);
  }

  /** A settings table: every set property under its TOML key, durations as "1h30m" strings. */
  table<T extends object>(name: string, t: T, keys: { readonly [K in keyof T]-?: string }): void {
    const lines: string[] = [];
    for (const [prop, key] of Object.entries(keys) as [keyof T & string, string][]) {
      const v = t[prop];
      if (v === undefined) continue;
      lines.push(this.pair(name, key, typeof v === "number" ? scalar(prop, key, v) : v));
    }
    this.section(`[${name}]`, lines);
  }

  text(): string {
    while (this.#lines.at(-1) === "") this.#lines.pop();
    return this.#lines.join("\n") + "\n";
  }
}

function syncLines(w: Writer, path: string, sync: Partial<SyncSettings>): string[] {
  const lines: string[] = [];
  for (const [prop, key] of Object.entries(TOML_KEYS.sync) as [keyof SyncSettings, string][]) {
    const v = sync[prop];
    if (v !== undefined) {
      lines.push(w.pair(path, key, typeof v === "number" ? scalar(prop, key, v) : v));
    }
  }
  return lines;
}

function retentionPairs(r: Partial<RetentionSettings>): [string, string][] {
  const out: [string, string][] = [];
  for (
    const [prop, key] of Object.entries(TOML_KEYS.retention) as [keyof RetentionSettings, string][]
  ) {
    const v = r[prop];
    if (v !== undefined) out.push([key, value(scalar(prop, key, v))]);
  }
  return out;
}

function webhookLines(w: Writer, hook: WebhookSettings): string[] {
  const lines = [w.pair("", "url", hook.url)];
  lines.push(`events = [${hook.events.map((e) => value(e)).join(", ")}]`);
  if (hook.secret !== undefined) lines.push(w.pair("", "secret", hook.secret));
  return lines;
}

function databaseLines(w: Writer, db: DatabaseEntry, i: number): string[] {
  const path = `databases[${i}]`;
  const lines = [w.pair(path, "path", db.path)];
  if (db.prefix !== undefined) lines.push(w.pair(path, "prefix", db.prefix));
  if (db.watch) lines.push("watch = true");
  lines.push(...syncLines(w, path, db.sync));
  if (db.retention) {
    const pairs = retentionPairs(db.retention).map(([k, v]) => `${k} = ${v}`);
    if (pairs.length > 0) lines.push(`retention = { ${pairs.join(", ")} }`);
  }
  if (db.age) lines.push(`age = { ${ageLines(db.age).join(", ")} }`);
  return lines;
}

/** The `[age]` keys (or a database's inline `age`). */
function ageLines(a: AgeSettings): string[] {
  const list = (xs: string[]) => `[${xs.map(value).join(", ")}]`;
  const out: string[] = [];
  if (a.recipients?.length) out.push(`recipients = ${list(a.recipients)}`);
  if (a.identities?.length) out.push(`identities = ${list(a.identities)}`);
  if (a.identityFiles?.length) out.push(`identity_file = ${list(a.identityFiles)}`);
  return out;
}

/**
 * A number as the TOML reader wants it: properties in ms whose key is not `*_ms` are read as
 * seconds or a duration string, so they are written as one ("1h30m", "500ms").
 */
function scalar(prop: string, key: string, v: number): number | string {
  return prop.endsWith("Ms") && !key.endsWith("_ms") ? duration(v) : v;
}

/** Milliseconds as a duration string the TOML reader accepts; 0 stays a number. */
function duration(ms: number): number | string {
  if (ms === 0) return 0;
  let rest = ms;
  let out = "";
  for (const [unit, name] of [[3_600_000, "h"], [60_000, "m"], [1000, "s"], [1, "ms"]] as const) {
    const n = Math.floor(rest / unit);
    if (n > 0) out += `${n}${name}`;
    rest -= n * unit;
  }
  return out;
}

function value(v: unknown): string {
  if (typeof v === "string") return quote(v.replaceAll("$", "$$"));
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new TypeError(`cannot write ${typeof v} as a TOML value`);
}

/** A TOML basic string (JSON escapes are TOML escapes; DEL must be escaped too). */
function quote(s: string): string {
  return JSON.stringify(s).replaceAll("\u007f", "\\u007F");
}

/** A comment is expanded like the rest of the file: keep a malformed `${` from failing it. */
function commentSafe(s: string): string {
  return s.replace(/\$\{(?![A-Za-z_][A-Za-z0-9_]*\})/g, "$$${");
}
