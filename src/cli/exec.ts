/**
 * `replicate -exec CMD`: the application walrust runs as its child while it replicates.
 *
 * CMD runs through `sh -c` in its own process group. A simple command (one program and its
 * arguments) is run as `exec CMD`, so the application itself is the child: its exit code is
 * exact and signals reach it directly (dash, a common /bin/sh, would otherwise fork it and die
 * of a forwarded SIGTERM while the application still shuts down). Signals go to the whole group,
 * so a compound command's programs get them too; and the child counts as running until no
 * process of its group is left, so nothing it started can still commit once replication stops.
 */

const GROUP_POLL_MS = 100;

/** A running `-exec` command. */
export class ExecChild {
  /** Process ID of the child, also the ID of its process group. */
  readonly pid: number;
  /**
   * Resolves with the child's exit code (its own, or 128 + the number of the signal that ended
   * it) once it and every other process of its group have exited.
   */
  readonly exited: Promise<number>;
  #running = true;

  private constructor(child: Deno.ChildProcess) {
    this.pid = child.pid;
    this.exited = (async () => {
      // Deno reports a death by signal as code 128 + signal number, the shell convention.
      const { code } = await child.status;
      while (await groupAlive(child.pid)) await sleep(GROUP_POLL_MS);
      this.#running = false;
      return code;
    })();
  }

  /** Start `command` through `sh -c`, sharing walrust's stdin, stdout, stderr and environment. */
  static start(command: string): ExecChild {
    const script = isSimpleCommand(command) ? `exec ${command}` : command;
    const child = new Deno.Command("sh", {
      args: ["-c", script],
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      detached: true, // its own session and process group
    }).spawn();
    return new ExecChild(child);
  }

  /** True until the child and every process of its group have exited. */
  get running(): boolean {
    return this.#running;
  }

  /** Send `sig` to the child's process group (the child and whatever it started). */
  signal(sig: Deno.Signal): void {
    if (!this.#running) return;
    try {
      Deno.kill(-this.pid, sig);
    } catch {
      // No such group any more: the last member exited since the check.
    }
  }

  /** SIGTERM to the group, SIGKILL after `graceMs` if it is still running; its exit code. */
  async terminate(graceMs: number): Promise<number> {
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (this.#running) this.signal("SIGKILL");
    return await this.exited;
  }
}

const RESERVED = new Set([
  "if",
  "then",
  "else",
  "elif",
  "fi",
  "do",
  "done",
  "case",
  "esac",
  "while",
  "until",
  "for",
  "in",
  "!",
  "time",
  "function",
  "select",
  "exec", // already replaces the shell
]);

/**
 * True when `command` is one program with its arguments (quotes, escapes, `$VAR`, `$(...)` and
 * redirections allowed), which `exec` can replace the shell with; false for lists, pipes,
 * background jobs, subshells, groups, leading assignments and reserved words.
 */
export function isSimpleCommand(command: string): boolean {
  const c = command.trim();
  if (c === "") return false;
  let quote: "'" | '"' | undefined;
  let subst = 0; // depth of $( ... ), whose insides run before the exec
  for (let i = 0; i < c.length; i++) {
    const ch = c[i];
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      continue;
    }
    if (ch === "\\") {
      i++;
      continue;
    }
    if (ch === "$" && c[i + 1] === "(") {
      subst++;
      i++;
      continue;
    }
    if (subst > 0 && ch === ")") {
      subst--;
      continue;
    }
    if (quote === '"' || subst > 0) {
      if (quote === '"' && ch === '"') quote = undefined;
      continue;
    }
    if (ch === "'" || ch === '"') {
      quote = ch;
      continue;
    }
    const redirect = ch === "&" && (c[i - 1] === ">" || c[i - 1] === "<"); // 2>&1
    if (!redirect && ";&|\n{}()".includes(ch)) return false;
  }
  if (quote !== undefined || subst > 0) return false;
  const first = c.split(/\s+/, 1)[0];
  if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(first)) return false;
  return !RESERVED.has(first);
}

/** Whether any process other than a zombie is still in process group `pgid` (Linux /proc). */
async function groupAlive(pgid: number): Promise<boolean> {
  let entries: AsyncIterable<Deno.DirEntry>;
  try {
    entries = Deno.readDir("/proc");
  } catch {
    return false; // no /proc: only the child itself was waited for
  }
  try {
    for await (const e of entries) {
      if (!/^\d+$/.test(e.name)) continue;
      let stat: string;
      try {
        stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      } catch {
        continue; // exited while we listed
      }
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[2]) === pgid && f[0] !== "Z") return true;
    }
  } catch {
    return false;
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
