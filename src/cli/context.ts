/** What every command receives: output channels and global options. */
export interface CliContext {
  out: (s: string) => void;
  err: (s: string) => void;
  verbose: boolean;
  /** `--config FILE` given before the command, if any. */
  configPath?: string;
  /** Log format from `--log-format`. */
  logFormat?: "text" | "json";
}

/** A command: parses its own arguments and returns an exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[], ctx: CliContext): Promise<number>;
}
