/**
 * All walrust benchmarks:
 * `deno task bench [--only ltx|rss|lag|restore|requests|idle|compaction|metrics|progress|follower|age]
 * [--quick]`.
 * The LTX codec benchmark (scripts/bench/ltx.ts) runs first when that file exists.
 */

import { parseArgs } from "node:util";
import { benchLag, benchRestore, benchRss } from "./replication.ts";
import { benchRequests } from "./requests.ts";
import { benchIdle } from "./idle.ts";
import { benchCompaction } from "./compaction.ts";
import { benchMetrics } from "./metrics.ts";
import { benchProgress } from "./progress.ts";
import { benchFollower } from "./follower.ts";
import { benchAge } from "./age.ts";
import { s3TestConfig } from "../../tests/helpers/s3env.ts";

const NAMES = [
  "ltx",
  "rss",
  "lag",
  "restore",
  "requests",
  "idle",
  "compaction",
  "metrics",
  "progress",
  "follower",
  "age",
] as const;
type Name = typeof NAMES[number];

/** Parse the flags; exits with usage on anything unknown. */
function options(): { only?: Name; quick: boolean } {
  const { values } = parseArgs({
    // `deno task bench -- --quick` forwards the "--" itself.
    args: Deno.args.filter((a) => a !== "--"),
    options: { only: { type: "string" }, quick: { type: "boolean", default: false } },
  });
  const only = values.only;
  if (only !== undefined && !(NAMES as readonly string[]).includes(only)) {
    console.error(`usage: run.ts [--only ${NAMES.join("|")}] [--quick]`);
    Deno.exit(2);
  }
  return { only: only as Name | undefined, quick: values.quick ?? false };
}

/** Run the codec benchmark from ltx.ts if it exists (it is written separately). */
async function runLtx(): Promise<void> {
  const url = new URL("./ltx.ts", import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    console.log("(scripts/bench/ltx.ts not present; LTX codec benchmark skipped)");
    return;
  }
  // A computed specifier keeps type checking of this file independent of ltx.ts.
  const mod = await import(url.href) as { benchLtx?: () => Promise<void> };
  if (typeof mod.benchLtx !== "function") throw new Error("ltx.ts does not export benchLtx()");
  await mod.benchLtx();
}

async function conditions(quick: boolean): Promise<string> {
  const text = async (cmd: string, args: string[]) => {
    try {
      const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
      return new TextDecoder().decode(o.stdout).trim();
    } catch {
      return "?";
    }
  };
  const sqlite = await text("python3", ["-c", "import sqlite3; print(sqlite3.sqlite_version)"]);
  return `# walrust benchmarks (${quick ? "quick" : "full"} mode), ${new Date().toISOString()}\n` +
    `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ` +
    `${Deno.build.os} ${Deno.osRelease()}, ` +
    `${(Deno.systemMemoryInfo().total / 2 ** 30).toFixed(1)} GiB RAM, load average ` +
    `${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}, writers: python3 sqlite ${sqlite}`;
}

const { only, quick } = options();
console.log(await conditions(quick));
const want = (n: Name) => only === undefined || only === n;
if (want("ltx")) await runLtx();
if (want("rss")) await benchRss({ quick });
if (want("lag")) await benchLag({ quick });
if (want("restore")) await benchRestore({ quick });
if (want("requests")) {
  if (s3TestConfig()) await benchRequests({ quick });
  else console.log("\n## S3 requests: skipped (start scripts/s3-test-server.sh first)");
}
if (want("idle")) await benchIdle({ quick });
if (want("compaction")) await benchCompaction({ quick });
if (want("metrics")) await benchMetrics({ quick });
if (want("progress")) await benchProgress({ quick });
if (want("follower")) await benchFollower({ quick });
if (want("age")) await benchAge({ quick });
console.log(`\nload average at the end: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
