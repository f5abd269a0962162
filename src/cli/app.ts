/** The CLI dispatcher: global flags, command lookup, help, and error-to-exit-code mapping. */
import { ConfigError, exitCodeOf, WalrustError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { log } from "../observe/log.ts";
import type { CliContext, Command } from "./context.ts";
import { COMMANDS } from "./commands.ts";

const GLOBAL_HELP =
  `walrust ${VERSION} — continuous SQLite replication to object storage (Litestream v0.5 compatible)

Usage: walrust [--config FILE] [--verbose] [--log-format text|json] <command> [args]

Commands:
${"{commands}"}

Global options:
  -c, --config FILE      configuration file (default: ./walrust.toml if present)
  -v, --verbose          print stack traces on errors, debug logging
      --log-format F     text (default) or json
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

/** Run walrust with `argv` (without the program name); returns the exit code. */
export async function run(
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: (s) => console.log(s),
    err: (s) => console.error(s),
  },
): Promise<number> {
  const ctx: CliContext = { out: io.out, err: io.err, verbose: false };
  try {
    let i = 0;
    // Global flags come before the command name.
    for (; i < argv.length; i++) {
      const a = argv[i];
      if (a === "-v" || a === "--verbose") ctx.verbose = true;
      else if (a === "-V" || a === "--version" || a === "version") {
        io.out(`walrust ${VERSION}`);
        return 0;
      } else if (a === "-h" || a === "--help") {
        io.out(globalHelp());
        return 0;
      } else if (a === "-c" || a === "--config") {
        const v = argv[++i];
        if (v === undefined) throw new ConfigError("--config needs a file path");
        ctx.configPath = v;
      } else if (a.startsWith("--config=")) ctx.configPath = a.slice("--config=".length);
      else if (a === "--log-format" || a.startsWith("--log-format=")) {
        const v = a.includes("=") ? a.split("=")[1] : argv[++i];
        if (v !== "text" && v !== "json") {
          throw new ConfigError(`--log-format expects text or json, got "${v ?? ""}"`);
        }
        ctx.logFormat = v;
      } else break;
    }
    if (ctx.verbose) log.level = "debug";
    if (ctx.logFormat) log.format = ctx.logFormat;
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
      if (!cmd) throw new ConfigError(`unknown command "${target}" (see 'walrust --help')`);
      io.out(cmd.usage);
      return 0;
    }
    if (name.startsWith("-")) {
      throw new ConfigError(`unknown option "${name}" (see 'walrust --help')`);
    }
    const cmd = findCommand(name);
    if (!cmd) throw new ConfigError(`unknown command "${name}" (see 'walrust --help')`);
    if (rest.includes("-h") || rest.includes("--help")) {
      io.out(cmd.usage);
      return 0;
    }
    return await cmd.run(rest, ctx);
  } catch (e) {
    reportError(e, ctx);
    return exitCodeOf(e);
  }
}

/** Print an error as one line (plus the stack with --verbose). */
export function reportError(e: unknown, ctx: CliContext): void {
  if (e instanceof WalrustError) {
    ctx.err(`error: ${e.message}`);
  } else if (e instanceof Error) {
    ctx.err(`error: ${e.message.split("\n")[0]}`);
  } else {
    ctx.err(`error: ${String(e)}`);
  }
  if (ctx.verbose && e instanceof Error && e.stack) ctx.err(e.stack);
}
