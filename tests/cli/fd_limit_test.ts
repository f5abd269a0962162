/** `watch` checks `ulimit -n` against its databases at start and says how to raise it. */
import assert from "node:assert/strict";
import { checkFdLimit, FDS_PER_DATABASE, openFileLimits } from "../../src/cli/fd_limit.ts";
import { createAppDb } from "../helpers/apps.ts";
import { ConfigError } from "../../src/errors.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

Deno.test("open-file limits from /proc/self/limits; too low a soft limit is exit 2 with the fix", () => {
  const text = "Limit  Soft Limit  Hard Limit  Units\n" +
    "Max open files            1024                 524288               files     \n";
  assert.deepEqual(openFileLimits(text), { soft: 1024, hard: 524288 });
  assert.deepEqual(
    openFileLimits("Max open files  unlimited  unlimited  files\n"),
    { soft: Infinity, hard: Infinity },
  );
  assert.ok(openFileLimits() !== undefined, "this machine has /proc/self/limits");
  checkFdLimit(100, { soft: 1024, hard: 1024 });
  assert.throws(
    () => checkFdLimit(1000, { soft: 1024, hard: 524288 }),
    (e: Error) => e instanceof ConfigError && /ulimit -n \d+'/.test(e.message),
  );
  assert.throws(
    () => checkFdLimit(1000, { soft: 1024, hard: 2048 }),
    (e: Error) => e instanceof ConfigError && /LimitNOFILE=\d+/.test(e.message),
  );
  assert.ok(FDS_PER_DATABASE >= 4);
});

Deno.test("watch under ulimit -n 100 with 10 databases exits 2 before opening any", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-fdlimit-" });
  try {
    const dbs: string[] = [];
    for (let i = 0; i < 10; i++) {
      dbs.push(`${dir}/d${i}.db`);
      await createAppDb(dbs[i]);
    }
    const cmd = [Deno.execPath(), "run", "-A", "--quiet", "--config", CONFIG, MAIN, "watch", ...dbs]
      .concat(["--bucket", `file://${dir}/replica`, "--no-metrics"]).map((a) => `'${a}'`).join(" ");
    const out = await new Deno.Command("bash", {
      args: ["-c", `ulimit -n 100 && exec ${cmd}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, err);
    assert.match(err, /^error: 10 databases need about \d+ open files .*'ulimit -n' is 100/m);
    assert.ok(!(await Deno.stat(`${dir}/replica`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
