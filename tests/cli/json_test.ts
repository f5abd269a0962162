/**
 * Logs and scripting, through the real CLI: JSON log lines, the level from flags, config and
 * RUST_LOG, global options after the command, and `--json` on success and on failure.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type RunResult, walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb } from "../helpers/apps.ts";
import { requireS3OrSkip } from "../helpers/s3env.ts";

const HEX16 = /^[0-9a-f]{16}$/;

interface Fixture {
  dir: string;
  db: string;
  root: string;
  bucket: string;
  /** Run walrust in the fixture's folder (so no ./walrust.toml from elsewhere is read). */
  run: (args: string[], env?: Record<string, string>) => Promise<RunResult>;
}

/** A WAL database with two transactions, replicated once to a file replica. */
async function withReplica(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-json-cli-" });
  try {
    const db = join(dir, "app.db");
    const root = join(dir, "bucket");
    const bucket = `file://${root}`;
    const run = (args: string[], env: Record<string, string> = {}) =>
      walrust(args, { cwd: dir, env: { WALRUST_LOG: "", RUST_LOG: "", ...env } });
    await createAppDb(db);
    await cliSql(
      db,
      "INSERT INTO t (tag, n) VALUES ('a', 1); INSERT INTO t (tag, n) VALUES ('b', 2)",
    );
    const w = await run(["watch", db, "--bucket", bucket, "--once"]);
    assert.equal(w.code, 0, w.stderr);
    await fn({ dir, db, root, bucket, run });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every stderr line as a parsed JSON log object (fails on any line that is not one). */
function jsonLines(stderr: string): Record<string, unknown>[] {
  const lines = stderr.split("\n").filter((l) => l !== "");
  return lines.map((l) => {
    const o = JSON.parse(l);
    assert.equal(typeof o.ts, "string", l);
    assert.ok(["error", "warn", "info", "debug", "trace"].includes(o.level), l);
    assert.equal(typeof o.msg, "string", l);
    return o;
  });
}

/** Text log lines at `level` (`TIME LEVEL msg ...`). */
function textLevel(stderr: string, level: string): string[] {
  return stderr.split("\n").filter((l) => new RegExp(`^\\S+ ${level.toUpperCase()} `).test(l));
}

/** The one-line `{"error", "exit_code"}` a failed --json command prints on stdout. */
function failure(r: RunResult, code: number, what: string): Record<string, unknown> {
  assert.equal(r.code, code, `${what}: ${r.stderr}`);
  const lines = r.stdout.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `${what}: stdout ${r.stdout}`);
  const o = JSON.parse(lines[0]);
  assert.equal(typeof o.error, "string", what);
  assert.ok(o.error.length > 0, what);
  assert.equal(o.exit_code, code, what);
  assert.equal(r.stderr.trim().split("\n").at(-1), `error: ${o.error}`, what);
  return o;
}

Deno.test("watch --once --log-format json (after the command): every stderr line is JSON", async () => {
  await withReplica(async ({ db, bucket, run }) => {
    await cliSql(db, "INSERT INTO t (tag, n) VALUES ('c', 3)");
    const r = await run(["watch", db, "--bucket", bucket, "--once", "--log-format", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stderr);
    assert.ok(lines.some((l) => l.level === "info"), r.stderr);
    assert.ok(!lines.some((l) => l.level === "debug"), "info is the default level");
    assert.equal(r.stdout, "");
  });
});

Deno.test("RUST_LOG in its walrust=LEVEL form sets the level; other targets do not", async () => {
  await withReplica(async ({ db, bucket, run }) => {
    const args = ["watch", db, "--bucket", bucket, "--once", "--log-format=json"];
    const debugLines = async (env: Record<string, string>) => {
      const r = await run(args, env);
      assert.equal(r.code, 0, r.stderr);
      return jsonLines(r.stderr).filter((l) => l.level === "debug").length;
    };
    assert.ok(await debugLines({ RUST_LOG: "walrust=debug" }) > 0);
    assert.ok(await debugLines({ RUST_LOG: "info,walrust=debug" }) > 0);
    assert.equal(await debugLines({ RUST_LOG: "other=trace" }), 0);
    assert.equal(await debugLines({ WALRUST_LOG: "info", RUST_LOG: "walrust=debug" }), 0);
    assert.ok(await debugLines({ WALRUST_LOG: "debug" }) > 0);
  });
});

Deno.test("--log-level and --verbose work after the command name", async () => {
  await withReplica(async ({ db, bucket, run }) => {
    const debug = await run(["watch", db, "--bucket", bucket, "--once", "--log-level", "debug"]);
    assert.equal(debug.code, 0, debug.stderr);
    assert.ok(textLevel(debug.stderr, "debug").length > 0, debug.stderr);
    const warn = await run(["watch", db, "--once", "--log-level=warn", "--bucket", bucket]);
    assert.equal(warn.code, 0, warn.stderr);
    assert.deepEqual(textLevel(warn.stderr, "info"), [], warn.stderr);
    const v = await run(["watch", db, "--bucket", bucket, "--once", "-v"]);
    assert.ok(textLevel(v.stderr, "debug").length > 0, v.stderr);

    const bad = await run(["list", "--bucket", bucket, "--log-level", "loud"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr.trim(), /^error: --log-level expects error, warn, info, debug, trace/);
    const stack = await run(["list", "nope", "--bucket", bucket, "--verbose"]);
    assert.equal(stack.code, 6);
    assert.match(stack.stderr, /\n\s+at /, "--verbose after the command prints the stack");
  });
});

Deno.test("--config / -c after the command; precedence flag > [log] > WALRUST_LOG", async () => {
  await withReplica(async ({ dir, db, bucket, run }) => {
    const cfg = join(dir, "logs.toml");
    await Deno.writeTextFile(cfg, `[log]\nformat = "json"\nlevel = "debug"\n`);
    const debugCount = (r: RunResult) => {
      assert.equal(r.code, 0, r.stderr);
      return jsonLines(r.stderr).filter((l) => l.level === "debug").length;
    };
    // [log] level beats the environment.
    assert.ok(
      debugCount(await run(["list", "--bucket", bucket, "-c", cfg], { WALRUST_LOG: "error" })) > 0,
    );
    // --log-level beats [log] level; --config=FILE works after the command too.
    assert.equal(
      debugCount(await run(["list", "--bucket", bucket, `--config=${cfg}`, "--log-level", "info"])),
      0,
    );
    const w = await run(["watch", db, "--bucket", bucket, "--once", "--config", cfg]);
    assert.ok(debugCount(w) > 0, "watch read the config given after the command");
    // [log] format applies to the final error line as well.
    const failed = await run(["list", "nope", "--bucket", bucket, "--config", cfg]);
    assert.equal(failed.code, 6);
    const last = jsonLines(failed.stderr).at(-1)!;
    assert.deepEqual([last.level, last.exit_code], ["error", 6]);
  });
});

Deno.test("with --log-format json a failing command's last stderr line is a JSON error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-json-cli-" });
  try {
    const cases: [string[], number][] = [
      [["list", "--bucket", `file://${dir}/missing`, "--log-format", "json"], 4],
      [["--log-format", "json", "watch", "--bogus"], 2],
      [["restore", "x", "--log-format", "json"], 2],
      [
        ["snapshot", join(dir, "none.db"), "--bucket", `file://${dir}/b`, "--log-format", "json"],
        3,
      ],
    ];
    for (const [args, code] of cases) {
      const r = await walrust(args, { cwd: dir });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      const lines = jsonLines(r.stderr);
      const last = lines.at(-1)!;
      assert.equal(last.level, "error", r.stderr);
      assert.equal(last.exit_code, code, r.stderr);
      assert.ok(!r.stderr.includes("error: "), r.stderr);
    }
    // The text form stays one line with exit 2 when global options come first.
    for (const args of [["watch", "--log-format", "text", "--bogus"], ["list", "-c", "x", "-x"]]) {
      const text = await walrust(args, { cwd: dir });
      assert.equal(text.code, 2);
      const lines = text.stderr.trim().split("\n");
      assert.equal(lines.length, 1, text.stderr);
      assert.match(lines[0], new RegExp(`^error: ${args[0]}: .*${args.at(-1)}.*help ${args[0]}`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--json on success: every command prints parseable JSON with 16-hex TXIDs", async () => {
  await withReplica(async ({ dir, db, root, bucket, run }) => {
    const ok = async (args: string[]) => {
      const r = await run([...args, "--json"]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    const [listed] = await ok(["list", "--bucket", bucket]);
    assert.equal(listed.name, "app.db");
    assert.match(listed.txid, HEX16);
    const files = await ok(["list", "app.db", "--bucket", bucket]);
    assert.ok(files.length > 0);
    for (const f of files) {
      assert.match(f.min_txid, HEX16);
      assert.match(f.max_txid, HEX16);
    }
    const restored = await ok(["restore", "app.db", "-o", join(dir, "r.db"), "--bucket", bucket]);
    assert.equal(restored.txid, listed.txid);
    assert.equal(restored.db_path, join(dir, "r.db"));
    assert.equal(restored.integrity_check, "ok");
    assert.ok(restored.files >= 1 && restored.bytes > 0 && restored.restore_seconds >= 0);
    const plan = await ok(["restore", "app.db", "--dry-run", "--bucket", bucket]);
    assert.equal(plan.txid, listed.txid);
    assert.match(plan.files[0].max_txid, HEX16);
    const verified = await ok(["verify", "app.db", "--bucket", bucket]);
    assert.equal(verified.ok, true);
    assert.equal(verified.txid, listed.txid);
    assert.match(verified.window.oldest_txid, HEX16);
    assert.equal(verified.window.newest_txid, listed.txid);
    assert.equal("error" in verified, false);
    const pruned = await ok(["prune", "app.db", "--bucket", bucket]);
    assert.equal(pruned.dry_run, true);
    assert.match(pruned.earliest_txid, HEX16);
    const snap = await ok(["snapshot", db, "--bucket", bucket]);
    assert.match(snap.txid, HEX16);
    assert.ok(parseInt(snap.txid, 16) >= parseInt(listed.txid, 16));
    // `--txid` takes the JSON form back.
    const back = await ok([
      "restore",
      "app.db",
      "-o",
      join(dir, "t.db"),
      "--txid",
      listed.txid,
      "--bucket",
      bucket,
    ]);
    assert.equal(back.txid, listed.txid);

    const l0 = join(root, "app.db", "ltx", "0");
    const ltx = [...Deno.readDirSync(l0)].filter((e) => /^[0-9a-f-]+\.ltx$/.test(e.name))
      .map((e) => join(l0, e.name));
    const checked = await ok(["ltx", "verify", ...ltx]);
    assert.equal(checked.length, ltx.length);
    for (const c of checked) {
      assert.equal(c.ok, true);
      assert.match(c.maxTXID, HEX16);
    }
  });
});

Deno.test("--json on failure: one {error, exit_code} line on stdout, exit code unchanged", async () => {
  await withReplica(async ({ dir, db, bucket, run }) => {
    const missing = `file://${dir}/no-such-dir`;
    const noBucket = failure(
      await run(["list", "--bucket", missing, "--json"]),
      4,
      "missing bucket",
    );
    assert.match(noBucket.error as string, /no-such-dir does not exist \(fix: /);
    failure(
      await run(["list", "app.db", "--bucket", missing, "--json"]),
      4,
      "missing bucket, NAME",
    );
    const unknown = failure(
      await run(["list", "nope", "--bucket", bucket, "--json"]),
      6,
      "list NAME",
    );
    assert.match(unknown.error as string, /no backup of nope at /);
    failure(
      await run(["restore", "nope", "-o", join(dir, "x.db"), "--bucket", bucket, "--json"]),
      6,
      "restore",
    );
    await Deno.writeTextFile(join(dir, "exists.db"), "");
    failure(
      await run(["restore", "app.db", "-o", join(dir, "exists.db"), "--bucket", bucket, "--json"]),
      6,
      "restore onto a file",
    );
    failure(
      await run(["snapshot", join(dir, "none.db"), "--bucket", bucket, "--json"]),
      3,
      "snapshot",
    );
    failure(await run(["prune", "nope", "--bucket", bucket, "--json"]), 6, "prune");
    failure(await run(["list", "--bogus", "--bucket", bucket, "--json"]), 2, "unknown flag");
    failure(
      await run(["ltx", "dump", join(dir, "none.ltx"), "--json"]),
      1,
      "ltx dump of a missing file",
    );
    const v = failure(
      await run(["verify", "app.db", "--txid", "zz", "--bucket", bucket, "--json"]),
      2,
      "verify usage",
    );
    assert.equal(v.ok, false);
    assert.equal(v.name, "app.db");

    // Not restorable is a report, not a thrown error: still one object with error and exit_code.
    const nv = await run(["verify", "nope", "--bucket", bucket, "--json"]);
    assert.equal(nv.code, 6, nv.stderr);
    const report = JSON.parse(nv.stdout);
    assert.deepEqual([report.ok, report.exit_code, typeof report.error], [false, 6, "string"]);

    const lv = await run(["ltx", "verify", db, join(dir, "none.ltx"), "--json"]);
    const rows = JSON.parse(lv.stdout);
    assert.equal(lv.code, Math.max(...rows.map((r: { exit_code: number }) => r.exit_code)));
    assert.ok(lv.code !== 0);
    assert.deepEqual(rows.map((r: { ok: boolean }) => r.ok), [false, false]);

    // The text form of `list NAME` exits as the JSON form does.
    const text = await run(["list", "nope", "--bucket", bucket]);
    assert.equal(text.code, 6);
    assert.equal(text.stdout, "");
    assert.match(text.stderr.trim(), /^error: no backup of nope at /);
  });
});

Deno.test("list on an S3 bucket that does not exist: exit 4 naming the bucket", async (t) => {
  const cfg = await requireS3OrSkip();
  await t.step({
    name: "NoSuchBucket",
    ignore: !cfg,
    fn: async () => {
      const env = {
        AWS_ACCESS_KEY_ID: cfg!.accessKeyId,
        AWS_SECRET_ACCESS_KEY: cfg!.secretAccessKey,
        AWS_REGION: cfg!.region,
      };
      const bucket = `walrust-missing-${crypto.randomUUID().slice(0, 8)}`;
      const args = ["list", "--bucket", `s3://${bucket}/p`, "--endpoint", cfg!.endpoint];
      const text = await walrust(args, { env });
      assert.equal(text.code, 4, text.stderr);
      const line = text.stderr.trim().split("\n");
      assert.equal(line.length, 1, text.stderr);
      assert.match(line[0], new RegExp(`^error: .*"${bucket}" does not exist .*\\(fix: `));
      const o = failure(await walrust([...args, "--json"], { env }), 4, "NoSuchBucket");
      assert.match(o.error as string, new RegExp(bucket));
    },
  });
});

Deno.test("no ANSI colour on stdout or stderr when they are not a terminal, even without NO_COLOR", async () => {
  await withReplica(async ({ dir, db, bucket }) => {
    const env = Deno.env.toObject();
    delete env.NO_COLOR;
    const main = new URL("../../main.ts", import.meta.url).pathname;
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const raw = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", "--config", config, main, ...args],
        cwd: dir,
        clearEnv: true,
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return dec.decode(out.stdout) + dec.decode(out.stderr);
    };
    const outputs = [
      await raw(["watch", db, "--bucket", bucket, "--once", "--log-level", "debug"]),
      await raw(["list", "--bucket", bucket]),
      await raw(["list", "nope", "--bucket", bucket, "--verbose"]),
      await raw(["restore", "nope", "-o", join(dir, "x.db"), "--bucket", bucket, "--json"]),
    ];
    for (const o of outputs) {
      assert.ok(o.length > 0);
      assert.ok(!o.includes("\x1b["), JSON.stringify(o));
    }
  });
});
