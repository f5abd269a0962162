/** The logger: level filters from WALRUST_LOG / RUST_LOG, precedence, and the two line formats. */
import assert from "node:assert/strict";
import {
  formatReport,
  levelFromEnv,
  Logger,
  parseLogFilter,
  resolveLevel,
} from "../../src/observe/log.ts";

Deno.test("RUST_LOG filters: the walrust directive wins, other targets are ignored", () => {
  const cases: [string, string | undefined][] = [
    ["debug", "debug"],
    ["walrust=debug", "debug"],
    ["WALRUST=Trace", "trace"],
    ["info,walrust=debug", "debug"],
    ["walrust=debug,info", "debug"],
    ["warn,hyper=trace", "warn"],
    ["other=trace", undefined],
    ["walrust::engine=trace", undefined],
    ["walrust", "trace"],
    ["walrust=off", "error"],
    ["walrust=loud", undefined],
    ["walrust=loud,warn", "warn"],
    [" walrust = warn ", "warn"],
    ["walrust=debug/sync", "debug"],
    ["", undefined],
    [",,", undefined],
  ];
  for (const [raw, want] of cases) assert.equal(parseLogFilter(raw), want, raw);
});

Deno.test("WALRUST_LOG comes before RUST_LOG; a filter that is not ours falls through", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(levelFromEnv(env({})), undefined);
  assert.equal(levelFromEnv(env({ RUST_LOG: "walrust=debug" })), "debug");
  assert.equal(levelFromEnv(env({ WALRUST_LOG: "warn", RUST_LOG: "walrust=debug" })), "warn");
  assert.equal(levelFromEnv(env({ WALRUST_LOG: "hyper=trace", RUST_LOG: "error" })), "error");
  assert.equal(levelFromEnv(env({ RUST_LOG: "other=trace" })), undefined);
});

Deno.test("level precedence: --log-level, --verbose, [log] level, environment, info", () => {
  assert.equal(resolveLevel({}), "info");
  assert.equal(resolveLevel({ env: "trace" }), "trace");
  assert.equal(resolveLevel({ config: "warn", env: "trace" }), "warn");
  assert.equal(resolveLevel({ verbose: true, config: "warn", env: "trace" }), "debug");
  assert.equal(resolveLevel({ flag: "error", verbose: true, config: "warn" }), "error");
});

Deno.test("json lines parse with ts, level, msg and fields; text lines are one line", () => {
  const lines: string[] = [];
  const log = new Logger({ level: "debug", format: "json", write: (l) => lines.push(l) });
  log.info("replicating", { db: "/a b.db", txid: 3 });
  log.trace("hidden");
  log.debug("multi\nline");
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0]);
  assert.equal(first.level, "info");
  assert.equal(first.msg, "replicating");
  assert.equal(first.db, "/a b.db");
  assert.ok(!Number.isNaN(Date.parse(first.ts)));
  assert.equal(JSON.parse(lines[1]).msg, "multi\nline");
  assert.ok(lines.every((l) => !l.includes("\n")));

  lines.length = 0;
  log.format = "text";
  log.warn("slow", { db: "/a b.db", n: 2 });
  assert.match(lines[0], /^\S+Z WARN {2}slow db="\/a b\.db" n=2$/);
});

Deno.test("a command's error and note lines: `error: msg` in text, a log object in json", () => {
  assert.equal(formatReport("text", "error", "boom", { exit_code: 4 }), "error: boom");
  assert.equal(formatReport("text", "note", "fell back"), "note: fell back");
  const e = JSON.parse(formatReport("json", "error", "boom", { exit_code: 4 }));
  assert.deepEqual([e.level, e.msg, e.exit_code], ["error", "boom", 4]);
  assert.equal(JSON.parse(formatReport("json", "note", "fell back")).level, "warn");
});
