/**
 * `walrust config convert [FILE]`: print the walrust.toml equivalent of a litestream.yml, each
 * setting walrust does not use kept as a comment.
 */
import type { CliContext } from "./context.ts";
import { note } from "./context.ts";
import { parseFlags } from "./args.ts";
import { ConfigError } from "../errors.ts";
import { dirname, join, resolve } from "node:path";
import { DEFAULT_LITESTREAM_CONFIG, parseConfig } from "../config/load.ts";
import { parseLitestreamConfig } from "../config/litestream.ts";
import { toToml } from "../config/convert.ts";
import { VERSION } from "../version.ts";

const USAGE = "walrust config convert [litestream.yml] > walrust.toml";

/** Run `walrust config SUBCOMMAND ...`; only `convert` exists. */
export async function runConfig(args: string[], ctx: CliContext): Promise<number> {
  const { positionals } = parseFlags("config", args, {});
  const [sub, file, ...extra] = positionals;
  if (sub !== "convert") {
    const got = sub === undefined ? "no subcommand" : `unknown subcommand "${sub}"`;
    throw new ConfigError(`config: ${got} (usage: ${USAGE})`);
  }
  if (extra.length > 0) {
    throw new ConfigError(`config convert: one file at a time, got ${positionals.length - 1}`);
  }
  const env = Deno.env.toObject();
  const name = file ?? ctx.configPath ?? (env.LITESTREAM_CONFIG || DEFAULT_LITESTREAM_CONFIG);
  const path = resolve(name);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ConfigError(`config convert: ${name} not found (usage: ${USAGE})`, { cause: err });
    }
    throw new ConfigError(`config convert: cannot read ${name}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (/\.toml$/i.test(name)) {
    throw new ConfigError(
      `config convert: ${name} is already a walrust.toml (give a litestream.yml)`,
    );
  }
  const parsed = parseLitestreamConfig(text, { file: name, path, env });
  const toml = toToml(parsed.config, {
    header: [
      `walrust.toml converted from ${name} by walrust ${VERSION} (walrust config convert).`,
      "Settings not written here keep walrust's defaults; some differ from Litestream's",
      "(snapshots hourly, snapshots kept by hourly/daily/weekly/monthly tiers, metrics on",
      "127.0.0.1:16767): see docs/litestream-config.md.",
      "Comments naming a litestream.yml key are settings walrust does not use.",
    ],
    notes: parsed.notes,
    raw: parsed.raw,
  });
  // Never print a file that would not load: read it back as walrust would.
  parseConfig(toml, {
    file: "converted walrust.toml",
    path: join(dirname(path), "walrust.toml"),
    env,
  });
  ctx.out(toml.replace(/\n$/, ""));
  const unused = parsed.config.warnings?.length ?? 0;
  if (unused > 0) {
    note(ctx, `${unused} litestream.yml setting(s) have no walrust equivalent; see the comments`);
  }
  return 0;
}
