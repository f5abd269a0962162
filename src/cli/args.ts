/**
 * Argument parsing shared by commands. Accepts our GNU-style flags (`--name value`,
 * `--name=value`, `-o OUT`) and the spellings Go's flag package gives Litestream users
 * (`-name value`, `-name=value`, `-bool=false`). Every mistake is a one-line ConfigError.
 */
import { ConfigError } from "../errors.ts";

/** One option: a string value or a boolean switch, with an optional one-letter short form. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
}

type Options = Readonly<Record<string, OptionSpec>>;

/** Parsed flags: strings or booleans, keyed by long name. */
export type Flags = Record<string, string | boolean | string[] | undefined>;

/** Go's strconv.ParseBool spellings, which `-flag=value` on a boolean accepts. */
const TRUE = new Set(["1", "t", "T", "true", "TRUE", "True"]);
const FALSE = new Set(["0", "f", "F", "false", "FALSE", "False"]);

/**
 * Parse `args` strictly: flags may come before, between or after positionals; everything after
 * `--` is positional. A string flag takes the next token unless that looks like another flag
 * (write `--name=-x` for such a value); `-<digit>...` is a value (relative times like `-15m`).
 */
export function parseFlags(
  command: string,
  args: string[],
  options: Options,
): { flags: Flags; positionals: string[] } {
  const flags: Flags = {};
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) if (o.short) byShort.set(o.short, name);
  const fail = (msg: string): never => {
    throw new ConfigError(`${command}: ${msg} (see 'walrust help ${command.split(" ")[0]}')`);
  };
  const unknown = (token: string): never => {
    const name = token.replace(/^-+/, "").split("=")[0];
    const dashes = token.startsWith("--") ? "--" : "-";
    const near = nearest(name, Object.keys(options));
    const hint = near ? ` (did you mean ${dashes}${near}?)` : "";
    return fail(`unknown flag ${token.split("=")[0]}${hint}`);
  };

  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-" || /^-\d/.test(a)) {
      positionals.push(a);
      continue;
    }
    const dashes = a.startsWith("--") ? 2 : 1;
    const eq = a.indexOf("=");
    const name = a.slice(dashes, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : a.slice(eq + 1);
    // A long name, with one dash (Go) or two; a single letter with one dash is a short flag.
    const long = name.length > 1 || dashes === 2
      ? (Object.hasOwn(options, name) ? name : undefined)
      : byShort.get(name);
    if (long !== undefined) {
      const spelled = `${"-".repeat(dashes)}${name}`;
      if (options[long].type === "boolean") {
        if (inline === undefined) flags[long] = true;
        else if (TRUE.has(inline)) flags[long] = true;
        else if (FALSE.has(inline)) flags[long] = false;
        else fail(`${spelled} is a switch: give it alone or as ${spelled}=true|false`);
        continue;
      }
      let value = inline;
      if (value === undefined) {
        const next = args[i + 1];
        if (next === undefined || (next.startsWith("-") && next !== "-" && !/^-\d/.test(next))) {
          fail(`${spelled} needs a value`);
        }
        value = next;
        i++;
      }
      flags[long] = value;
      continue;
    }
    if (dashes === 2) unknown(a);
    // `-o/tmp/x.db`: a short string flag with a path attached (`-oname` reads as Go's long
    // flag -oname, unknown); `-qf`: boolean shorts together.
    const first = byShort.get(a[1]);
    if (first !== undefined && options[first].type === "string" && /^-.[^A-Za-z]/.test(a)) {
      flags[first] = a.slice(2);
      continue;
    }
    const letters = [...a.slice(1)].map((c) => byShort.get(c));
    if (eq < 0 && letters.every((n) => n !== undefined && options[n].type === "boolean")) {
      for (const n of letters) flags[n!] = true;
      continue;
    }
    unknown(a);
  }
  return { flags, positionals };
}

/** A string flag's value, or undefined. */
export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

/** A numeric flag (seconds, pages, ...): must be a finite number >= min. */
export function num(
  command: string,
  flags: Flags,
  name: string,
  opts: { min?: number; integer?: boolean } = {},
): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (
    v.trim() === "" || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min)
  ) {
    const what = opts.integer ? "a whole number" : "a number";
    const min = opts.min !== undefined ? ` >= ${opts.min}` : "";
    throw new ConfigError(`${command}: --${name} expects ${what}${min}, got "${v}"`);
  }
  return n;
}

/**
 * The candidate closest to `word` (edit distance with transpositions), when close enough to be
 * a likely typo: at most 2 edits and fewer than half its letters, or `word` a prefix of it.
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 0.5 : distance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best === undefined) return undefined;
  return bestD <= 2 && bestD < best.length / 2 ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, swaps. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** True for `--json`/`-json` (or `=true`): lets the dispatcher answer a failure in JSON. */
export function isJsonFlag(a: string): boolean {
  const m = /^--?json(?:=(.*))?$/.exec(a);
  return m !== null && (m[1] === undefined || TRUE.has(m[1]));
}
