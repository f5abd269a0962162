import assert from "node:assert/strict";
import { estimateMonth } from "../../src/cli/explain.ts";
import { resolveMaintenance, resolveRetention, resolveSync } from "../../src/config/schema.ts";
import { cliSql, createAppDb } from "../helpers/apps.ts";
import { walrust } from "../helpers/walrust.ts";
import { SqliteWriter } from "../helpers/sqlite_writer.ts";

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

/** Run walrust under a pseudo-terminal (script(1)): stdout and stderr both arrive on its stdout. */
async function underPty(args: string[]): Promise<{ code: number; tty: string }> {
  const cmd = [Deno.execPath(), "run", "-A", "--quiet", "--config", CONFIG, MAIN, ...args]
    .map((a) => `'${a}'`).join(" ");
  const out = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", cmd, "/dev/null"],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, tty: new TextDecoder().decode(out.stdout) };
}

Deno.test("restore, verify, snapshot and prune show progress on a terminal, not in a pipe or with -q", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-progress-" });
  const db = `${dir}/app.db`;
  const bucket = `file://${dir}/replica`;
  await createAppDb(db);
  // The app keeps its connection: the WAL stays, and snapshot writes the file itself.
  const app = await SqliteWriter.start(db);
  try {
    await cliSql(
      db,
      "INSERT INTO t (tag, v) SELECT 'p', hex(randomblob(2000)) FROM generate_series(1, 3000)",
    );
    const once = await walrust(["watch", db, "--bucket", bucket, "--once"]);
    assert.equal(once.code, 0, once.stderr);
    const cases: [string[], RegExp, RegExp][] = [
      [
        ["restore", "app.db", "-o", `${dir}/OUT.db`, "--bucket", bucket],
        /restore app\.db .*MB\/s .*ETA/,
        /restored app\.db to /,
      ],
      [["verify", "app.db", "--bucket", bucket], /verify app\.db .*MB\/s/, /\bok\b|restorable/i],
      [["snapshot", db, "--bucket", bucket], /snapshot app\.db .*MB\/s/, /uploaded/],
      [["snapshot", db, "--bucket", bucket], /upload app\.db .*MB\/s/, /uploaded/],
      [
        ["prune", "app.db", "--bucket", bucket],
        /prune app\.db: reading snapshot headers +\d+\/\d+ files .*files\/s/,
        /kept/,
      ],
    ];
    // A snapshot of a TXID already snapshotted is the existing one: each run writes first.
    const write = (a: string[]) =>
      a[0] === "snapshot" ? cliSql(db, "UPDATE t SET n = coalesce(n, 0) + 1 WHERE id < 100") : "";
    for (const [i, [args, progress, result]] of cases.entries()) {
      const a = args.map((x) => x.replace("OUT", `tty-${i}`));
      await write(a);
      const tty = await underPty(a);
      assert.equal(tty.code, 0, tty.tty);
      assert.match(tty.tty, progress, a.join(" "));
      assert.match(tty.tty, result);
      await write(a);
      const quiet = await underPty([...a.map((x) => x.replace(`tty-${i}`, `quiet-${i}`)), "-q"]);
      assert.equal(quiet.code, 0, quiet.tty);
      assert.doesNotMatch(quiet.tty, /\/s /, `${a.join(" ")} -q`);
      await write(a);
      const piped = await walrust(a.map((x) => x.replace(`tty-${i}`, `piped-${i}`)));
      assert.equal(piped.code, 0, piped.stderr);
      assert.doesNotMatch(piped.stderr, /\/s /, `${a.join(" ")} in a pipe`);
      assert.match(piped.stdout + piped.stderr, result);
    }
  } finally {
    await app.close();
    await Deno.remove(dir, { recursive: true });
  }
});
