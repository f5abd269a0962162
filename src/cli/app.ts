/** The CLI dispatcher: global flags, command lookup, help, and error-to-exit-code mapping. */
import { ConfigError, exitCodeOf } from "../errors.ts";
import { VERSION } from "../version.ts";
import { isLogLevel, levelFromEnv, log, LOG_LEVELS, resolveLevel } from "../observe/log.ts";
import { type CliContext, type Command, configOf, errorLine } from "./context.ts";
import { COMMANDS, LITESTREAM_ONLY } from "./commands.ts";
import { isJsonFlag, nearest } from "./args.ts";

const GLOBAL_HELP =
  `walrust ${VERSION} — continuous SQLite replication to object storage (Litestream v0.5 compatible)

Usage: walrust [global options] <command> [args] [global options]

Commands:
${"{commands}"}

Global options (before or after the command; -config, -log-level etc. work too):
  -c, --config FILE      configuration file (default: ./walrust.toml if present)
      --no-expand-env    read $VAR and \${VAR} in the config file as written
  -v, --verbose          print stack traces on errors, debug logging
      --log-format F     text (default) or json: one JSON object per stderr line
      --log-level L      error, warn, info (default), debug or trace
                         (else [log] level, else WALRUST_LOG or RUST_LOG=walrust=L)
  -V, --version          print the version
  -h, --help             print this help

Run 'walrust help <command>' for a command's options.
Exit codes: 0 ok, 1 general, 2 config, 3 database, 4 storage, 5 integrity, 6 restore.`;

/** Global help text listing every command. */
export function globalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n");
  return GLOBAL_HELP.replace("{commands}", lines);
}

function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** The error for a command name we do not have: a Litestream-only one, or the nearest match. */
function unknownCommand(name: string): ConfigError {
  const instead = Object.hasOwn(LITESTREAM_ONLY, name) ? LITESTREAM_ONLY[name] : undefined;
  if (instead) {
    return new ConfigError(`"${name}" is a Litestream command walrust does not have: ${instead}`);
  }
  const near = nearest(name, [...COMMANDS.map((c) => c.name), "help"]);
  const hint = near ? `did you mean ${near}? ` : "";
  return new ConfigError(`unknown command "${name}" (${hint}see 'walrust --help')`);
}

const HELP_FLAGS = new Set(["-h", "--help", "-help"]);
const VERSION_FLAGS = new Set(["-V", "--version", "-version"]);

/**
 * Litestream's start-up rule: LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY are
 * copied into the AWS_* variables the S3 SDK reads, each only when that one is unset (or
 * empty). The `-exec` child inherits them, as under Litestream.
 */
export function applyLitestreamEnv(): void {
  const pairs = [
    ["LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
    ["LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
  ] as const;
  try {
    for (const [from, to] of pairs) {
      const v = Deno.env.get(from);
      if (v && !Deno.env.get(to)) Deno.env.set(to, v);
    }
  } catch (e) {
    // Without --allow-env there is nothing to copy from or to.
    if (!(e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied)) {
      throw e;
    }
  }
}

/** Run walrust with `argv` (without the program name); returns the exit code. */
export async function run(
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: (s) => console.log(s),
    err: (s) => console.error(s),
  },
): Promise<number> {
  const ctx: CliContext = { out: io.out, err: io.err, verbose: false };
  let json = false;
  try {
    applyLitestreamEnv();
    let i = 0;
    for (; i < argv.length; i++) {
      const a = argv[i];
      if (VERSION_FLAGS.has(a)) {
        io.out(`walrust ${VERSION}`);
        return 0;
      } else if (HELP_FLAGS.has(a)) {
        io.out(globalHelp());
        return 0;
      }
      const used = takeGlobal(argv, i, ctx);
      if (used === 0) break;
      i += used - 1;
    }
    const name = argv[i];
    const rest = argv.slice(i + 1);
    if (name === undefined) {
      io.err(globalHelp());
      return 2;
    }
    if (name === "help") {
      const target = rest[0];
      if (!target) {
        io.out(globalHelp());
        return 0;
      }
      const cmd = findCommand(target);
      if (!cmd) throw unknownCommand(target);
      io.out(cmd.usage);
      return 0;
    }
    if (name.startsWith("-")) {
      throw new ConfigError(`unknown option "${name}" (see 'walrust --help')`);
    }
    const cmd = findCommand(name);
    if (!cmd) throw unknownCommand(name);
    // Known before anything can fail, so even a bad flag answers in JSON.
    json = cmd.json === true && beforeTerminator(rest).some(isJsonFlag);
    if (beforeTerminator(rest).some((a) => HELP_FLAGS.has(a))) {
      io.out(cmd.usage);
      return 0;
    }
    const args = stripGlobals(rest, ctx);
    applyLogSettings(ctx);
    if (cmd.config) await applyConfigLog(ctx);
    log.debug("walrust starting", { version: VERSION, command: name, config: ctx.configPath });
    return await cmd.run(args, ctx);
  } catch (e) {
    if (ctx.logFormat) log.format = ctx.logFormat;
    const code = exitCodeOf(e);
    reportError(e, ctx, code);
    if (json) {
      ctx.out(JSON.stringify({ ...ctx.jsonFailure, error: errorMessage(e), exit_code: code }));
    }
    return code;
  }
}

/**
 * If `argv[i]` is a global option, record it in `ctx` and return how many tokens it used (1 or
 * 2); else 0. Command options never take a value starting with "-" (the parser calls that
 * ambiguous), so a global flag cannot be mistaken for another option's value.
 */
function takeGlobal(argv: string[], i: number, ctx: CliContext): number {
  // Go's flag package takes -name as well as --name; Litestream users write -config.
  const a = /^-[a-z]{2}/.test(argv[i]) ? `-${argv[i]}` : argv[i];
  if (a === "-v" || a === "--verbose") {
    ctx.verbose = true;
    return 1;
  }
  if (a === "--no-expand-env") {
    ctx.noExpandEnv = true;
    return 1;
  }
  const opt =
    ["--config", "--log-format", "--log-level"].find((o) => a === o || a.startsWith(`${o}=`)) ??
      (a === "-c" ? "--config" : undefined);
  if (opt === undefined) return 0;
  const inline = a.includes("=") ? a.slice(a.indexOf("=") + 1) : undefined;
  const v = inline ?? argv[i + 1];
  const used = inline === undefined ? 2 : 1;
  if (opt === "--config") {
    if (v === undefined || v === "") throw new ConfigError("--config needs a file path");
    ctx.configPath = v;
  } else if (opt === "--log-format") {
    if (v !== "text" && v !== "json") {
      throw new ConfigError(`--log-format expects text or json, got "${v ?? ""}"`);
    }
    ctx.logFormat = v;
  } else {
    const level = v?.toLowerCase();
    if (level === undefined || !isLogLevel(level)) {
      throw new ConfigError(`--log-level expects ${LOG_LEVELS.join(", ")}, got "${v ?? ""}"`);
    }
    ctx.logLevel = level;
  }
  return used;
}

/** The command's own arguments, with global options given after the command name taken out. */
function stripGlobals(args: string[], ctx: CliContext): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") {
      out.push(...args.slice(i));
      break;
    }
    const used = takeGlobal(args, i, ctx);
    if (used === 0) out.push(args[i]);
    else i += used - 1;
  }
  return out;
}

function beforeTerminator(args: string[]): string[] {
  const end = args.indexOf("--");
  return end < 0 ? args : args.slice(0, end);
}

/**
 * Set the process logger from the flags and, when given, the config file's [log] section.
 * Precedence: --log-level, --verbose, [log] level, WALRUST_LOG, RUST_LOG, info; --log-format,
 * [log] format, text.
 */
function applyLogSettings(
  ctx: CliContext,
  config: { level?: typeof log.level; format?: typeof log.format } = {},
): void {
  log.level = resolveLevel({
    flag: ctx.logLevel,
    verbose: ctx.verbose,
    config: config.level,
    env: levelFromEnv(),
  });
  log.format = ctx.logFormat ?? config.format ?? "text";
}

/**
 * Apply [log] from the config file before the command starts, so its every line has the
 * configured format. A config that does not load is left for the command to report where it
 * reads it (after its own flags are checked).
 */
async function applyConfigLog(ctx: CliContext): Promise<void> {
  try {
    const config = await configOf(ctx);
    applyLogSettings(ctx, config.log);
    // litestream.yml keys walrust does not act on: one WARN each, never silently ignored.
    for (const w of config.warnings ?? []) log.warn(w);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

/**
 * Print the final error as one line on stderr: `error: ...` in text, one JSON object with
 * `exit_code` in JSON. --verbose adds the stack (after the line, or as a `stack` field).
 */
export function reportError(e: unknown, ctx: CliContext, code = exitCodeOf(e)): void {
  const stack = ctx.verbose && e instanceof Error && e.stack ? e.stack : undefined;
  if (log.format === "json") {
    errorLine(ctx, errorMessage(e), { exit_code: code, stack });
    return;
  }
  errorLine(ctx, errorMessage(e));
  if (stack) ctx.err(stack);
}
