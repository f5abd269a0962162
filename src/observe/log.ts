/** One-line structured logging: text or JSON, level from WALRUST_LOG or RUST_LOG. */

export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

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
    const ts = new Date().toISOString();
    if (this.format === "json") {
      this.#write(JSON.stringify({ ts, level, msg, ...fields }));
      return;
    }
    const extra = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(" ");
    this.#write(`${ts} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? " " + extra : ""}`);
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
}

/** Read the level from WALRUST_LOG, else RUST_LOG (accepts "walrust=debug" forms). */
export function levelFromEnv(): LogLevel | undefined {
  let raw: string | undefined;
  try {
    raw = Deno.env.get("WALRUST_LOG") ?? Deno.env.get("RUST_LOG");
  } catch {
    return undefined;
  }
  if (!raw) return undefined;
  for (const part of raw.split(",")) {
    const v = (part.includes("=") ? part.split("=")[1] : part).trim().toLowerCase();
    if (v in ORDER) return v as LogLevel;
  }
  return undefined;
}

/** The process-wide logger (commands may reconfigure it). */
export const log = new Logger();
