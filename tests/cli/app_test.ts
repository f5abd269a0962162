/** The CLI surface: version, help, unknown commands and flags, error lines, the bundled file. */
import assert from "node:assert/strict";
import { walrust } from "../helpers/walrust.ts";
import { dumpContent, SqliteWriter } from "../helpers/sqlite_writer.ts";

Deno.test("--version and --help print and exit 0; help per command", async () => {
  const v = await walrust(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^walrust \d+\.\d+\.\d+/);
  const h = await walrust(["--help"]);
  assert.equal(h.code, 0);
  for (const c of ["watch", "restore", "list", "snapshot", "ltx"]) {
    assert.match(h.stdout, new RegExp(`\\b${c}\\b`));
  }
  for (const c of ["watch", "restore", "list", "snapshot", "ltx"]) {
    const r = await walrust(["help", c]);
    assert.equal(r.code, 0, c);
    assert.match(r.stdout, /^Usage: walrust /);
    const dash = await walrust([c, "--help"]);
    assert.equal(dash.stdout, r.stdout);
  }
});

Deno.test("unknown commands and flags are one line plus a hint, exit 2", async () => {
  for (const args of [["bogus"], ["watch", "--bogus"], ["restore", "x", "--nope"], ["--nope"]]) {
    const r = await walrust(args);
    assert.equal(r.code, 2, args.join(" "));
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^error: .*(help|--help)/);
  }
});

Deno.test("errors are one line; --verbose adds the stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const quiet = await walrust(["ltx", "verify", `${dir}/missing.ltx`]);
    assert.notEqual(quiet.code, 0);
    assert.ok(!/\n\s+at /.test(quiet.stderr + quiet.stdout), quiet.stderr);
    const r = await walrust([
      "restore",
      "x",
      "-o",
      `${dir}/o.db`,
      "--bucket",
      `file://${dir}/none`,
    ]);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    const v = await walrust([
      "--verbose",
      "restore",
      "x",
      "-o",
      `${dir}/o.db`,
      "--bucket",
      `file://${dir}/none`,
    ]);
    assert.equal(v.code, 6);
    assert.match(v.stderr, /\n\s+at /, "stack trace with --verbose");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the bundled single file replicates and restores with only deno on PATH", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-bundle-" });
  try {
    const root = new URL("../../", import.meta.url).pathname;
    const js = `${dir}/walrust.js`;
    const b = await new Deno.Command(Deno.execPath(), {
      // ssh2's optional native addons (*.node) stay out: it falls back to its JS crypto.
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "deno",
        "--minify",
        "--external",
        "*.node",
        "-o",
        js,
        `${root}main.ts`,
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(b.success, new TextDecoder().decode(b.stderr));
    // Run it from an empty directory with no config, as a user would.
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-config", "--v8-flags=--max-semi-space-size=1", js, ...args],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
    const db = `${dir}/app.db`;
    const w = await SqliteWriter.start(db);
    await w.exec(
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');",
    );
    await w.kill();
    const watch = await run(["watch", db, "--bucket", `file://${dir}/rep`, "--once"]);
    assert.equal(watch.code, 0, new TextDecoder().decode(watch.stderr));
    const restore = await run([
      "restore",
      "app.db",
      "-o",
      `${dir}/r.db`,
      "--bucket",
      `file://${dir}/rep`,
    ]);
    assert.equal(restore.code, 0, new TextDecoder().decode(restore.stderr));
    assert.equal(await dumpContent(`${dir}/r.db`), await dumpContent(db));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a relative time after a space (--point-in-time -15m) is a value, not a flag", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // An empty replica: parsing must succeed and the restore fail for lack of backups (exit 6).
    const bucket = `file://${dir}/none`;
    const r = await walrust([
      "restore",
      "x",
      "-o",
      `${dir}/o.db`,
      "-b",
      bucket,
      "--point-in-time",
      "-15m",
    ]);
    assert.equal(r.code, 6, r.stderr);
    assert.doesNotMatch(r.stderr, /ambiguous/);
    const bad = await walrust([
      "restore",
      "x",
      "-o",
      `${dir}/o.db`,
      "-b",
      bucket,
      "--point-in-time",
      "-15q",
    ]);
    assert.equal(bad.code, 2, bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
