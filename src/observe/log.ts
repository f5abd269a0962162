/** One-line structured logging: text or JSON, level from WALRUST_LOG or RUST_LOG. */

export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

/** The log levels, most to least severe. */
export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug", "trace"];

/** True when `s` names a log level. */
export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(ORDER, s);
}

/** Options for a Logger; each has a default. */
export interface LogOptions {
  /** Most verbose level printed (default: WALRUST_LOG, then RUST_LOG, then "info"). */
  level?: LogLevel;
  /** Plain text lines or one JSON object per line (default "text"). */
  format?: "text" | "json";
  /** Where each line goes (default: stderr). */
  write?: (line: string) => void;
}

/** A logger writing one line per event to stderr. */
export class Logger {
  /** Most verbose level printed; may be changed at any time. */
  level: LogLevel;
  /** Plain text lines or one JSON object per line. */
  format: "text" | "json";
  #write: (line: string) => void;
  /** Called before each line is written (a progress line on the terminal clears itself). */
  interrupt: (() => void) | undefined;

  /** A logger with `opts` applied over the defaults. */
  constructor(opts: LogOptions = {}) {
    this.level = opts.level ?? levelFromEnv() ?? "info";
    this.format = opts.format ?? "text";
    this.#write = opts.write ?? ((line) => console.error(line));
  }

  /** True when messages at `level` are printed. */
  enabled(level: LogLevel): boolean {
    return ORDER[level] <= ORDER[this.level];
  }

  /** Log one event with optional fields. */
  log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    this.interrupt?.();
    const ts = new Date().toISOString();
    if (this.format === "json") {
      this.#write(JSON.stringify({ ts, level, msg, ...fields }));
      return;
    }
    this.#write(`${ts} ${level.toUpperCase().padEnd(5)} ${msg}${textFields(fields)}`);
  }

  /** Log at level error. */
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }
  /** Log at level warn. */
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }
  /** Log at level info. */
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }
  /** Log at level debug. */
  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }
  /** Log at level trace. */
  trace(msg: string, fields?: Record<string, unknown>): void {
    this.log("trace", msg, fields);
  }
}

/**
 * A command's own stderr line, shown at every level: `error: msg` / `note: msg` in text (the
 * one-line form scripts grep for), one log object (level error / warn) in JSON.
 */
export function formatReport(
  format: "text" | "json",
  kind: "error" | "note",
  msg: string,
  fields: Record<string, unknown> = {},
): string {
  if (format === "text") return `${kind}: ${msg}`;
  const level: LogLevel = kind === "error" ? "error" : "warn";
  return JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields });
}

function textFields(fields: Record<string, unknown>): string {
  const extra = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(" ");
  return extra ? " " + extra : "";
}

/**
 * The level an env_logger-style filter gives walrust: `debug`, `walrust=debug`,
 * `info,walrust=debug` (the `walrust` directive wins over a bare default), `walrust` alone
 * (trace). Directives for other targets (`hyper=trace`, `walrust::x=debug`) and unknown levels
 * are ignored; `off` counts as error, since errors are always printed.
 */
export function parseLogFilter(raw: string): LogLevel | undefined {
  let bare: LogLevel | undefined;
  let ours: LogLevel | undefined;
  for (const part of raw.split(",")) {
    const d = part.split("/")[0].trim().toLowerCase(); // "/regex" filters do not change the level
    if (d === "") continue;
    const eq = d.indexOf("=");
    const target = eq < 0 ? (isLevelWord(d) ? undefined : d) : d.slice(0, eq).trim();
    const value = eq < 0 ? (target === undefined ? d : "trace") : d.slice(eq + 1).trim();
    const level = value === "off" ? "error" : isLogLevel(value) ? value : undefined;
    if (level === undefined) continue;
    if (target === undefined) bare = level;
    else if (target === "walrust") ours = level;
  }
  return ours ?? bare;
}

function isLevelWord(s: string): boolean {
  return s === "off" || isLogLevel(s);
}

/** The level from WALRUST_LOG, else RUST_LOG (see {@link parseLogFilter}); undefined if neither. */
export function levelFromEnv(
  get: (name: string) => string | undefined = (name) => Deno.env.get(name),
): LogLevel | undefined {
  for (const name of ["WALRUST_LOG", "RUST_LOG"]) {
    let raw: string | undefined;
    try {
      raw = get(name);
    } catch {
      return undefined; // no env permission: defaults
    }
    const level = raw ? parseLogFilter(raw) : undefined;
    if (level !== undefined) return level;
  }
  return undefined;
}

/**
 * The effective level: an explicit flag, then `--verbose` (debug), then the config file, then
 * WALRUST_LOG / RUST_LOG, then info.
 */
export function resolveLevel(o: {
  flag?: LogLevel;
  verbose?: boolean;
  config?: LogLevel;
  env?: LogLevel;
}): LogLevel {
  return o.flag ?? (o.verbose ? "debug" : undefined) ?? o.config ?? o.env ?? "info";
}

/** The process-wide logger (commands may reconfigure it). */
export const log = new Logger();
