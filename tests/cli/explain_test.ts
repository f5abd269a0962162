import assert from "node:assert/strict";
import { estimateMonth } from "../../src/cli/explain.ts";
import { resolveMaintenance, resolveRetention, resolveSync } from "../../src/config/schema.ts";
import { cliSql, createAppDb } from "../helpers/apps.ts";
import { walrust } from "../helpers/walrust.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

const sync = resolveSync();
const maintenance = resolveMaintenance();
const retention = resolveRetention();

Deno.test("explain: a month at one sync per second with the defaults", () => {
  const e = estimateMonth(sync, maintenance, retention, {
    dbBytes: 10e6,
    l0PerHour: 3600,
    l0BytesPerHour: 3600 * 4096,
  });
  // Uploads: 3600 L0 + 120 L1 + 12 L2 + 1 L3 + 1 snapshot per hour, 730 hours.
  assert.equal(e.puts, 730 * (3600 + 120 + 12 + 1 + 1));
  // Level 2 reads the 120 L1 files an hour, level 3 the 12 L2 files.
  assert.equal(e.gets, 730 * (120 + 12));
  // 24 hourly (the PITR window's 25 include them), 6 more daily, 11 weekly, 11 monthly.
  assert.equal(e.snapshotsKept, 25 + 6 + 11 + 11);
  assert.ok(e.storageBytes >= e.snapshotsKept * 10e6);
});

Deno.test("explain: an idle database costs no compaction or upload requests", () => {
  const e = estimateMonth(sync, maintenance, retention, { dbBytes: 1e6, l0PerHour: 0 });
  assert.equal(e.puts, 0);
  assert.equal(e.gets, 0);
  assert.equal(e.heads, 0);
  // Retention still lists hourly.
  assert.equal(e.lists, 730 * 2);
});

Deno.test("explain: compaction off and retention off", () => {
  const e = estimateMonth(
    sync,
    resolveMaintenance({ compactionLevelsMs: [], retentionEnabled: false }),
    retention,
    { dbBytes: 1e6, l0PerHour: 60, l0BytesPerHour: 60 * 1000 },
  );
  assert.equal(e.puts, 730 * (60 + 1));
  assert.equal(e.gets, 0);
  assert.equal(e.deletes, 0);
});

Deno.test("explain (CLI): settings, schedule and estimate in text and --json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-explain-" });
  const db = `${dir}/app.db`;
  const bucket = `file://${dir}/replica`;
  try {
    await createAppDb(db);
    await cliSql(db, "INSERT INTO t (tag, v) VALUES ('a', 'one')");
    const once = await walrust(["watch", db, "--bucket", bucket, "--once"]);
    assert.equal(once.code, 0, once.stderr);
    const text = await walrust(["explain", db, "--bucket", bucket]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /compaction +L1 every 30s, L2 every 5m, L3 every 1h/);
    assert.match(text.stdout, /per month +~/);
    const json = await walrust(["explain", db, "--bucket", bucket, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const [entry] = JSON.parse(json.stdout);
    assert.equal(entry.name, "app.db");
    assert.ok(entry.observed.l0PerHour >= 1, json.stdout);
    assert.ok(entry.monthly_estimate.puts > 0);
    const missing = await walrust(["explain", `${dir}/nope.db`, "--json"]);
    assert.equal(missing.code, 3);
    assert.equal(JSON.parse(missing.stdout).exit_code, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore shows progress on a terminal and not in a pipe", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-progress-" });
  const db = `${dir}/app.db`;
  const bucket = `file://${dir}/replica`;
  try {
    await createAppDb(db);
    await cliSql(
      db,
      "INSERT INTO t (tag, v) SELECT 'p', hex(randomblob(2000)) FROM generate_series(1, 3000)",
    );
    const once = await walrust(["watch", db, "--bucket", bucket, "--once"]);
    assert.equal(once.code, 0, once.stderr);
    const piped = await walrust(["restore", "app.db", "-o", `${dir}/piped.db`, "--bucket", bucket]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.doesNotMatch(piped.stderr, /MB\/s/);
    // Under a pseudo-terminal (script(1)) the progress line appears on stderr.
    const cmd = [
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      "--config",
      CONFIG,
      MAIN,
      "restore",
      "app.db",
      "-o",
      `${dir}/tty.db`,
      "--bucket",
      bucket,
    ].map((a) => `'${a}'`).join(" ");
    const out = await new Deno.Command("script", {
      args: ["-q", "-e", "-c", cmd, "/dev/null"],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const tty = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, tty);
    assert.match(tty, /restore app\.db .*MB\/s/);
    assert.match(tty, /restored app\.db to /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
