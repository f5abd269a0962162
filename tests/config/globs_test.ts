import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, DatabaseError } from "../../src/errors.ts";
import { expandDatabases, globSegmentToRegExp } from "../../src/config/globs.ts";

/** Run `fn` in a temp dir holding empty files at the given relative paths. */
async function withFiles(files: string[], fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "walrust-globs-" }));
  try {
    for (const f of files) {
      await Deno.mkdir(join(dir, f, ".."), { recursive: true });
      await Deno.writeFile(join(dir, f), new Uint8Array());
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function configErr(re: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${err}`);
    assert.equal(err.exitCode, 2);
    assert.match(err.message, re);
    return true;
  };
}

Deno.test("glob segments: * ? and [classes] translate to anchored RegExps", () => {
  assert.ok(globSegmentToRegExp("*.db").test("app.db"));
  assert.ok(!globSegmentToRegExp("*.db").test("app.db3"));
  assert.ok(globSegmentToRegExp("a?.db").test("a1.db"));
  assert.ok(!globSegmentToRegExp("a?.db").test("a.db"));
  assert.ok(globSegmentToRegExp("[ab].db").test("b.db"));
  assert.ok(!globSegmentToRegExp("[!ab].db").test("a.db"));
  assert.ok(globSegmentToRegExp("[!ab].db").test("c.db"));
  assert.ok(globSegmentToRegExp("t[0-9]*.db").test("t7x.db"));
  assert.ok(globSegmentToRegExp("a+b(1).db").test("a+b(1).db"));
  assert.ok(globSegmentToRegExp("x[").test("x["));
});

Deno.test("globs: match regular files only, sorted, with default prefix = file name", async () => {
  await withFiles(["b.db", "a.db", "c.txt", "dir.db/inner.db"], async (dir) => {
    const dbs = await expandDatabases([{ path: join(dir, "*.db") }], { allowEmptyGlobs: false });
    assert.deepEqual(dbs.map((d) => d.path), [join(dir, "a.db"), join(dir, "b.db")]);
    assert.deepEqual(dbs.map((d) => d.prefix), ["a.db", "b.db"]);
  });
});

Deno.test("globs: SQLite sidecars and hidden state dirs are never matched", async () => {
  await withFiles(
    [
      "app.db",
      "app.db-wal",
      "app.db-shm",
      "app.db-journal",
      ".app.db-walrust/pending.db",
      ".app.db-litestream/x.db",
      "sub/.hidden.db",
    ],
    async (dir) => {
      const flat = await expandDatabases([{ path: join(dir, "app.db*") }], {
        allowEmptyGlobs: false,
      });
      assert.deepEqual(flat.map((d) => d.path), [join(dir, "app.db")]);
      const deep = await expandDatabases([{ path: join(dir, "**/*") }], { allowEmptyGlobs: false });
      assert.deepEqual(deep.map((d) => d.path), [join(dir, "app.db")]);
    },
  );
});

Deno.test("globs: ** matches at any depth, including none", async () => {
  await withFiles(["top.db", "a/mid.db", "a/b/c/deep.db", "a/b/c/notes.txt"], async (dir) => {
    const dbs = await expandDatabases([{ path: join(dir, "**/*.db") }], { allowEmptyGlobs: false });
    assert.deepEqual(dbs.map((d) => d.path), [
      join(dir, "a/b/c/deep.db"),
      join(dir, "a/mid.db"),
      join(dir, "top.db"),
    ]);
    const tail = await expandDatabases([{ path: join(dir, "a/**") }], { allowEmptyGlobs: false });
    assert.deepEqual(tail.map((d) => d.prefix), ["deep.db", "notes.txt", "mid.db"]);
  });
});

Deno.test("globs: a glob matching nothing is a ConfigError naming it, unless allowed", async () => {
  await withFiles(["a.txt"], async (dir) => {
    const pattern = join(dir, "*.db");
    await assert.rejects(
      expandDatabases([{ path: "*.db", line: 7 }], {
        allowEmptyGlobs: false,
        configPath: join(dir, "walrust.toml"),
      }),
      configErr(
        new RegExp(
          `walrust\\.toml:7: databases\\[0\\]\\.path: glob "\\*\\.db" \\(${
            escape(pattern)
          }\\) matched no database files .*allow_empty_globs = true\\)$`,
        ),
      ),
    );
    const dbs = await expandDatabases(
      [{ path: pattern }, { path: join(dir, "a.txt") }],
      { allowEmptyGlobs: true },
    );
    assert.deepEqual(dbs.map((d) => d.prefix), ["a.txt"]);
  });
});

Deno.test("globs: a missing literal path is a DatabaseError (exit 3)", async () => {
  await withFiles([], async (dir) => {
    await assert.rejects(
      expandDatabases([{ path: join(dir, "app.db") }], { allowEmptyGlobs: true }),
      (err: unknown) => {
        assert.ok(err instanceof DatabaseError);
        assert.equal(err.exitCode, 3);
        assert.equal(err.message, `database file not found: ${join(dir, "app.db")}`);
        return true;
      },
    );
    await Deno.mkdir(join(dir, "d.db"));
    await assert.rejects(
      expandDatabases([{ path: join(dir, "d.db") }], { allowEmptyGlobs: false }),
      DatabaseError,
    );
  });
});

Deno.test("globs: relative paths resolve against the config file's directory, else cwd", async () => {
  await withFiles(["conf/data/app.db", "data/app.db"], async (dir) => {
    const viaConfig = await expandDatabases([{ path: "data/app.db" }], {
      allowEmptyGlobs: false,
      configPath: join(dir, "conf/walrust.toml"),
      cwd: "/",
    });
    assert.equal(viaConfig[0].path, join(dir, "conf/data/app.db"));
    const viaCwd = await expandDatabases([{ path: "data/*.db" }], {
      allowEmptyGlobs: false,
      cwd: dir,
    });
    assert.equal(viaCwd[0].path, join(dir, "data/app.db"));
  });
});

Deno.test("globs: {name} in prefix becomes each file's name; overrides carry over", async () => {
  await withFiles(["t/one.db", "t/two.db"], async (dir) => {
    const dbs = await expandDatabases(
      [{
        path: join(dir, "t/*.db"),
        prefix: "tenants/{name}",
        sync: { walSyncIntervalMs: 100 },
        retention: { daily: 3 },
      }],
      { allowEmptyGlobs: false },
    );
    assert.deepEqual(dbs, [
      {
        path: join(dir, "t/one.db"),
        prefix: "tenants/one.db",
        sync: { walSyncIntervalMs: 100 },
        retention: { daily: 3 },
      },
      {
        path: join(dir, "t/two.db"),
        prefix: "tenants/two.db",
        sync: { walSyncIntervalMs: 100 },
        retention: { daily: 3 },
      },
    ]);
    const literal = await expandDatabases([{ path: join(dir, "t/one.db"), prefix: "main" }], {
      allowEmptyGlobs: false,
    });
    assert.equal(literal[0].prefix, "main");
  });
});

Deno.test("globs: a fixed prefix on a glob is rejected", async () => {
  await withFiles(["t/one.db", "t/two.db"], async (dir) => {
    await assert.rejects(
      expandDatabases([{ path: join(dir, "t/*.db"), prefix: "tenants" }], {
        allowEmptyGlobs: false,
      }),
      configErr(
        /prefix cannot be set on a glob that matches several files; use \{name\} or leave it out/,
      ),
    );
  });
});

Deno.test("globs: two files with one prefix are a ConfigError naming both", async () => {
  await withFiles(["east/app.db", "west/app.db"], async (dir) => {
    await assert.rejects(
      expandDatabases([{ path: join(dir, "**/app.db") }], { allowEmptyGlobs: false }),
      configErr(
        new RegExp(
          `${escape(join(dir, "west/app.db"))} and ${
            escape(join(dir, "east/app.db"))
          } .*both map to prefix "app\\.db"`,
        ),
      ),
    );
  });
});

Deno.test("globs: the same file from two entries is a ConfigError naming both", async () => {
  await withFiles(["app.db"], async (dir) => {
    await Deno.symlink(join(dir, "app.db"), join(dir, "link.db"));
    await assert.rejects(
      expandDatabases(
        [{ path: "app.db", line: 2 }, { path: "link.db", prefix: "other", line: 5 }],
        { allowEmptyGlobs: false, configPath: join(dir, "walrust.toml") },
      ),
      configErr(
        new RegExp(
          `:5: databases\\[1\\]\\.path: ${escape(join(dir, "link.db"))} is the same database as ${
            escape(join(dir, "app.db"))
          } from databases\\[0\\] at line 2`,
        ),
      ),
    );
    await assert.rejects(
      expandDatabases([{ path: join(dir, "*.db") }, { path: join(dir, "app.db"), prefix: "x" }], {
        allowEmptyGlobs: false,
      }),
      configErr(/is the same database as/),
    );
  });
});
