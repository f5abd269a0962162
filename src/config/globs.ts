/** Turn `[[databases]]` paths (literal or glob) into concrete database files and remote prefixes. */

import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { ConfigError, DatabaseError } from "../errors.ts";
import type { AgeSettings, RetentionSettings, SyncSettings } from "./schema.ts";

/** A database path before expansion. */
export interface DatabaseSpec {
  path: string;
  prefix?: string;
  sync?: Partial<SyncSettings>;
  retention?: Partial<RetentionSettings>;
  /** age keys replacing the global ones for this database. */
  age?: AgeSettings;
  /** Directory watching: the glob may match nothing now; new files are looked for while running. */
  watch?: boolean;
  /** Line in the config file, for error messages. */
  line?: number;
}

/** One concrete database to replicate. */
export interface ResolvedDatabase {
  /** Absolute path of the database file. */
  path: string;
  /** Remote name (object key prefix). */
  prefix: string;
  sync: Partial<SyncSettings>;
  retention?: Partial<RetentionSettings>;
  /** age keys replacing the global ones for this database. */
  age?: AgeSettings;
}

/** Options for {@link expandDatabases}. */
export interface ExpandOptions {
  /** Skip globs that match nothing instead of failing (the caller warns). */
  allowEmptyGlobs: boolean;
  /** Base for relative paths when there is no config file; default Deno.cwd(). */
  cwd?: string;
  /** The config file the entries came from: relative paths resolve against its directory. */
  configPath?: string;
}

const GLOB_CHARS = /[*?[]/;
const NAME_PLACEHOLDER = "{name}";
// SQLite sidecars that sit beside a database but are never databases themselves.
const SIDECAR = /-(wal|shm|journal)$/;
// Local state directories of walrust and Litestream: never descend into or match inside them.
const STATE_DIR = /-(walrust|litestream)$/;

/** True when a path contains glob characters (`*`, `?`, `[`). */
export function isGlobPattern(path: string): boolean {
  return GLOB_CHARS.test(path);
}

/** Why `prefix` cannot be a remote database name, or undefined when it can. */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === "") return "must not be empty";
  if (prefix.startsWith("/") || prefix.endsWith("/")) return "must not start or end with /";
  if (prefix.includes("\\")) return "must use / as separator, not \\";
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(prefix)) return "must not contain control characters";
  for (const seg of prefix.split("/")) {
    if (seg === "" || seg === "." || seg === "..") return `must not contain a "${seg}" segment`;
  }
  const placeholder = /\{[^}]*\}/.exec(prefix.replaceAll(NAME_PLACEHOLDER, ""));
  if (placeholder) return `unknown placeholder ${placeholder[0]} (only {name} is supported)`;
  return undefined;
}

/** Why a glob entry's prefix is unusable (a fixed name for many files), or undefined. */
export function globPrefixProblem(path: string, prefix: string | undefined): string | undefined {
  if (prefix === undefined || !isGlobPattern(path) || prefix.includes(NAME_PLACEHOLDER)) {
    return undefined;
  }
  return "prefix cannot be set on a glob that matches several files; use {name} or leave it out";
}

/** RegExp for one glob path segment: `*` any run, `?` one char, `[a-z]`/`[!a-z]` a class. */
export function globSegmentToRegExp(segment: string): RegExp {
  let re = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = segment.slice(i + 1, end);
      const negate = body[0] === "!" || body[0] === "^";
      if (negate) body = body.slice(1);
      re += `[${negate ? "^" : ""}${body.replace(/[\\\]^]/g, "\\$&")}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Every regular file matching an absolute glob pattern, sorted. `**` matches any depth. */
export async function globFiles(pattern: string): Promise<string[]> {
  const segments = pattern.split(sep).filter((s) => s !== "");
  // A trailing "**" means every file below.
  if (segments.at(-1) === "**") segments.push("*");
  const first = segments.findIndex((s) => isGlobPattern(s));
  const root = sep + segments.slice(0, first < 0 ? segments.length : first).join(sep);
  if (first < 0) return (await isRegularFile(root)) ? [root] : [];
  const found = new Set<string>();
  await walk(root, segments.slice(first), found);
  return [...found].sort();
}

async function walk(dir: string, rest: string[], found: Set<string>): Promise<void> {
  const [head, ...tail] = rest;
  if (head === "**") {
    await walk(dir, tail, found);
    for (const entry of await listDir(dir)) {
      // Symlinked directories are not followed, so a link loop cannot trap the walk.
      if (entry.isDirectory && !hidden(entry.name)) await walk(join(dir, entry.name), rest, found);
    }
    return;
  }
  if (!isGlobPattern(head)) {
    const next = join(dir, head);
    if (tail.length === 0) {
      if (!SIDECAR.test(head) && (await isRegularFile(next))) found.add(next);
    } else await walk(next, tail, found);
    return;
  }
  const re = globSegmentToRegExp(head);
  // Like a shell, wildcards do not match a leading dot unless the pattern starts with one.
  const dotOk = head.startsWith(".");
  for (const entry of await listDir(dir)) {
    if (!re.test(entry.name) || (!dotOk && entry.name.startsWith("."))) continue;
    if (STATE_DIR.test(entry.name)) continue;
    const next = join(dir, entry.name);
    if (tail.length > 0) {
      if (entry.isDirectory || entry.isSymlink) await walk(next, tail, found);
    } else if (!SIDECAR.test(entry.name) && (await isRegularFile(next))) found.add(next);
  }
}

function hidden(name: string): boolean {
  return name.startsWith(".") || STATE_DIR.test(name);
}

async function listDir(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) out.push(entry);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return [];
    throw err;
  }
  return out;
}

async function isRegularFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw err;
  }
}

/**
 * The literal (non-glob) entries as the files and prefixes {@link expandDatabases} gives them,
 * without checking that the files exist (`replicate -restore-if-db-not-exists` restores those
 * that do not).
 */
export function literalDatabases(
  entries: DatabaseSpec[],
  opts: Omit<ExpandOptions, "allowEmptyGlobs">,
): { path: string; prefix: string }[] {
  const base = opts.configPath
    ? dirname(resolve(opts.cwd ?? Deno.cwd(), opts.configPath))
    : (opts.cwd ?? Deno.cwd());
  return entries.filter((e) => !isGlobPattern(e.path)).map((e) => {
    const path = isAbsolute(e.path) ? resolve(e.path) : resolve(base, e.path);
    return {
      path,
      prefix: (e.prefix ?? NAME_PLACEHOLDER).replaceAll(NAME_PLACEHOLDER, basename(path)),
    };
  });
}

/**
 * Expand database entries into concrete files: globs to sorted regular files, literal paths
 * checked to exist, prefixes defaulted to the base name (`{name}` substituted), and duplicate
 * files or prefixes rejected. Relative paths resolve against the config file's directory.
 */
export async function expandDatabases(
  entries: DatabaseSpec[],
  opts: ExpandOptions,
): Promise<ResolvedDatabase[]> {
  const base = opts.configPath
    ? dirname(resolve(opts.cwd ?? Deno.cwd(), opts.configPath))
    : (opts.cwd ?? Deno.cwd());
  const where = (i: number, key: string) => {
    const line = entries[i].line;
    if (opts.configPath === undefined) return `database ${JSON.stringify(entries[i].path)}`;
    return `${opts.configPath}${line === undefined ? "" : `:${line}`}: databases[${i}].${key}`;
  };

  const out: ResolvedDatabase[] = [];
  const byRealPath = new Map<string, { index: number; path: string }>();
  const byPrefix = new Map<string, { index: number; path: string }>();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const abs = isAbsolute(entry.path) ? resolve(entry.path) : resolve(base, entry.path);
    let files: string[];
    if (isGlobPattern(entry.path)) {
      const bad = globPrefixProblem(entry.path, entry.prefix);
      if (bad) throw new ConfigError(`${where(i, "prefix")}: ${bad}`);
      files = await globFiles(abs);
      if (files.length === 0) {
        if (opts.allowEmptyGlobs || entry.watch) continue;
        throw new ConfigError(
          `${where(i, "path")}: glob ${JSON.stringify(entry.path)}` +
            `${entry.path === abs ? "" : ` (${abs})`} matched no database files ` +
            `(create them first, fix the pattern, or set allow_empty_globs = true)`,
        );
      }
    } else {
      await requireDatabaseFile(abs);
      files = [abs];
    }

    for (const file of files) {
      const prefix = (entry.prefix ?? NAME_PLACEHOLDER).replaceAll(
        NAME_PLACEHOLDER,
        basename(file),
      );
      const bad = prefixProblem(prefix);
      if (bad) {
        throw new ConfigError(`${where(i, "prefix")}: prefix ${JSON.stringify(prefix)} ${bad}`);
      }
      // Compare real paths so a symlink or "a/../b" cannot replicate one file twice.
      const real = await Deno.realPath(file);
      const sameFile = byRealPath.get(real);
      if (sameFile) {
        throw new ConfigError(
          `${where(i, "path")}: ${file} is the same database as ${sameFile.path} from ${
            describeEntry(entries, sameFile.index, opts)
          } (list each database once)`,
        );
      }
      const samePrefix = byPrefix.get(prefix);
      if (samePrefix) {
        throw new ConfigError(
          `${where(i, "prefix")}: ${file} and ${samePrefix.path} (${
            describeEntry(entries, samePrefix.index, opts)
          }) both map to prefix ${JSON.stringify(prefix)} (give them distinct prefixes)`,
        );
      }
      byRealPath.set(real, { index: i, path: file });
      byPrefix.set(prefix, { index: i, path: file });
      const db: ResolvedDatabase = { path: file, prefix, sync: { ...entry.sync } };
      if (entry.retention) db.retention = { ...entry.retention };
      if (entry.age) db.age = entry.age;
      out.push(db);
    }
  }
  return out;
}

function describeEntry(entries: DatabaseSpec[], i: number, opts: ExpandOptions): string {
  const line = entries[i].line;
  return opts.configPath === undefined
    ? `database ${JSON.stringify(entries[i].path)}`
    : `databases[${i}]${line === undefined ? "" : ` at line ${line}`}`;
}

async function requireDatabaseFile(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      throw new DatabaseError(`database file not found: ${path}`, { cause: err });
    }
    throw new DatabaseError(`cannot stat database file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!info.isFile) throw new DatabaseError(`database path is not a regular file: ${path}`);
}
