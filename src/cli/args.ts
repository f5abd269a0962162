/** Argument parsing shared by commands: node:util parseArgs with errors mapped to ConfigError. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConfigError } from "../errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flags: strings, booleans or repeated strings, keyed by long name. */
export type Flags = Record<string, string | boolean | string[] | undefined>;

/** Parse `args` strictly; unknown flags and missing values become a one-line ConfigError. */
export function parseFlags(
  command: string,
  args: string[],
  options: Options,
): { flags: Flags; positionals: string[] } {
  try {
    const r = parseArgs({
      args: joinDashValues(args, options),
      options,
      strict: true,
      allowPositionals: true,
    });
    return { flags: r.values as Flags, positionals: r.positionals };
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new ConfigError(`${command}: ${msg} (see 'walrust help ${command}')`);
  }
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
 * `--point-in-time -15m`: parseArgs calls a value starting with "-" ambiguous. For options that
 * take a value, a following "-<digit>..." is that value (relative times, negative numbers).
 */
function joinDashValues(args: string[], options: Options): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = args[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-\d/.test(next)) {
      out.push(a.startsWith("--") ? `${a}=${next}` : `${a}${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}
