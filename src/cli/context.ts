/** What every command receives: output channels, global options, the config file once loaded. */
import { formatReport, log, type LogLevel } from "../observe/log.ts";
import type { FileConfig } from "../config/schema.ts";

/** Output channels and the global options, given before or after the command name. */
export interface CliContext {
  out: (s: string) => void;
  err: (s: string) => void;
  verbose: boolean;
  /** `--config FILE`, if given. */
  configPath?: string;
  /** `--no-expand-env`: read `$VAR` in the config file as written. */
  noExpandEnv?: boolean;
  /** Log format from `--log-format`. */
  logFormat?: "text" | "json";
  /** Log level from `--log-level`. */
  logLevel?: LogLevel;
  /** The config file, once loaded (see {@link configOf}). */
  config?: FileConfig;
  /**
   * Extra fields for the `--json` failure object the dispatcher prints on stdout, set by a
   * command that knows more about the failure (verify: its name and errors list).
   */
  jsonFailure?: Record<string, unknown>;
}

/** A command: parses its own arguments and returns an exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Takes `--json`: a failure then also prints `{"error", "exit_code"}` on stdout. */
  json?: boolean;
  /** Reads walrust.toml (its [log] section applies before the command runs). */
  config?: boolean;
  run(args: string[], ctx: CliContext): Promise<number>;
}

/** The config file named by `--config` (or ./walrust.toml), loaded once per run. */
export async function configOf(ctx: CliContext): Promise<FileConfig> {
  // Imported here so `--help` and `ltx` never load the TOML parser.
  const { loadConfig } = await import("../config/load.ts");
  return ctx.config ??= await loadConfig(ctx.configPath, { expandEnv: !ctx.noExpandEnv });
}

/** Print a note on stderr: `note: msg`, or a JSON warn line with `--log-format json`. */
export function note(ctx: { err: (s: string) => void }, msg: string): void {
  ctx.err(formatReport(log.format, "note", msg));
}

/** Print an error line on stderr: `error: msg`, or a JSON error line with `--log-format json`. */
export function errorLine(
  ctx: { err: (s: string) => void },
  msg: string,
  fields?: Record<string, unknown>,
): void {
  ctx.err(formatReport(log.format, "error", msg, fields));
}
