/**
 * What the test-server helpers (s3env, webdavenv, sftpenv, azureenv) share: reading a server
 * script's `env` output, and the rule for a server that is not there (skip loudly, or fail when
 * the run requires servers, as CI does).
 */

/** The `export NAME=value` lines of `bash SCRIPT env`; undefined when it cannot run or fails. */
export function scriptExports(script: string): Map<string, string> | undefined {
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command("bash", {
      args: [script, "env"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
  } catch {
    return undefined; // no bash
  }
  if (!out.success) return undefined;
  const vars = new Map<string, string>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) vars.set(m[1], m[2]);
  }
  return vars;
}

const warned = new Set<string>();

/**
 * `cfg` when it is set and `reach` finds the server (resolves undefined). Otherwise: throws when
 * the variable `requireVar` is "1", else prints one loud notice per `what` and returns undefined
 * (use it as `ignore: !cfg`).
 */
export async function requireOrSkip<T>(o: {
  /** For the notice: "S3", "WEBDAV", ... */
  what: string;
  cfg: T | undefined;
  /** Why there is no config, with the fix. */
  missing: string;
  /** Why the server does not answer, or undefined when it does. */
  reach(cfg: T): Promise<string | undefined>;
  requireVar: "WALRUST_REQUIRE_S3" | "WALRUST_REQUIRE_SERVERS";
}): Promise<T | undefined> {
  const problem = o.cfg === undefined ? o.missing : await o.reach(o.cfg);
  if (problem === undefined) return o.cfg;
  if (Deno.env.get(o.requireVar) === "1") throw new Error(`${o.requireVar}=1 but ${problem}`);
  if (!warned.has(o.what)) {
    warned.add(o.what);
    console.error(`\n!!! SKIPPING ${o.what} TESTS: ${problem}\n`);
  }
  return undefined;
}
