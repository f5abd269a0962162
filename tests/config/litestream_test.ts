import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../src/errors.ts";
import { loadConfig, parseConfig } from "../../src/config/load.ts";
import { goDurationMs, parseLitestreamConfig } from "../../src/config/litestream.ts";
import { toToml } from "../../src/config/convert.ts";
import { parseBucketUrl } from "../../src/storage/url.ts";
import { runConfig } from "../../src/cli/config_cmd.ts";
import {
  type FileConfig,
  resolveLog,
  resolveMaintenance,
  resolveMetrics,
  resolveRetention,
  resolveSync,
} from "../../src/config/schema.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/litestream-yml/", import.meta.url));
const ENV = {
  AWS_ACCESS_KEY_ID: "AKIATESTKEYID",
  LITESTREAM_SECRET_ACCESS_KEY: "expanded-secret-1",
  MINIO_SECRET: "expanded-secret-2",
  BUCKET: "env-bucket",
  DB_PATH: "/data/myapp.db",
  HOME: "/home/tester",
};
const CWD = "/srv/cwd";
const GOOD = [
  "dir-watch.yml",
  "exec.yml",
  "file-replica.yml",
  "levels.yml",
  "many-databases.yml",
  "replicas-list.yml",
  "retention-snapshot.yml",
  "s3-env-credentials.yml",
  "url-replica.yml",
];

function fixture(name: string) {
  const text = Deno.readTextFileSync(join(FIXTURES, name));
  return parseLitestreamConfig(text, { file: name, env: ENV, cwd: CWD });
}

function yaml(text: string, env: Record<string, string> = {}) {
  return parseLitestreamConfig(text, { file: "litestream.yml", env, cwd: CWD }).config;
}

/** Assert that `fn` throws a one-line ConfigError (exit 2) matching `re`. */
function rejects(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${err}`);
    assert.equal(err.exitCode, 2);
    assert.ok(!err.message.includes("\n"), `multi-line message: ${err.message}`);
    assert.match(err.message, re);
    return true;
  });
}

/** Everything a run would use, with defaults and per-database overrides applied. */
function resolved(c: FileConfig) {
  return {
    allowEmptyGlobs: c.allowEmptyGlobs,
    exec: c.exec,
    s3: c.s3,
    uploadConcurrency: c.uploadConcurrency,
    shutdownDrainMs: c.shutdownDrainMs,
    maintenance: resolveMaintenance(c.maintenance),
    metrics: resolveMetrics(c.metrics),
    log: resolveLog(c.log),
    retention: resolveRetention(c.retention),
    databases: c.databases.map((d) => ({
      path: d.path,
      prefix: d.prefix,
      watch: d.watch ?? false,
      sync: resolveSync(c.sync, d.sync),
      retention: resolveRetention(c.retention, d.retention),
    })),
  };
}

function convert(name: string): string {
  const p = fixture(name);
  return toToml(p.config, { header: ["converted"], notes: p.notes, raw: p.raw });
}

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-litestream-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The fixtures, one by one

Deno.test("s3 with env credentials: $VAR and ${VAR} expand, sync-interval is per database", () => {
  const { config, raw } = fixture("s3-env-credentials.yml");
  assert.deepEqual(config.s3, {
    bucket: "s3://env-bucket/backups",
    region: "us-east-1",
    accessKeyId: "AKIATESTKEYID",
    secretAccessKey: "expanded-secret-1",
  });
  assert.deepEqual(config.databases.map((d) => [d.path, d.prefix, d.sync]), [
    ["/var/lib/myapp/app.db", "app.db", { walSyncIntervalMs: 10_000 }],
  ]);
  assert.deepEqual(config.warnings, []);
  assert.equal(raw["s3.secret_access_key"], "${LITESTREAM_SECRET_ACCESS_KEY}");
  assert.equal(raw["s3.bucket"], "s3://${BUCKET}/backups");
});

Deno.test("many databases: global replica settings are defaults, overrides map per database", () => {
  const { config } = fixture("many-databases.yml");
  assert.deepEqual(config.s3, {
    bucket: "s3://backups/prod",
    endpoint: "https://minio.internal:9000",
    region: "us-east-1",
    forcePathStyle: true,
    accessKeyId: "walrust",
    secretAccessKey: "expanded-secret-2",
  });
  assert.equal(config.sync.walSyncIntervalMs, 5000);
  const [users, orders, audit, sessions] = config.databases;
  assert.deepEqual(users.sync, { checkpointIntervalMs: 30_000, busyTimeoutMs: 2000 });
  assert.deepEqual(orders.sync, {
    walSyncIntervalMs: 1000,
    minCheckpointPageCount: 2000,
    walTruncateThresholdPages: 50_000,
    maxSyncWalBytes: 33_554_432,
  });
  assert.equal(audit.path, "/srv/data/audit.db", "sqlite:// prefix stripped");
  assert.deepEqual(
    config.databases.map((d) => d.prefix),
    ["users.db", "orders.db", "audit.db", "sessions.db"],
  );
  assert.equal(sessions.line, 27);
  // part-size appears on two replicas: one warning for the key, not one per database.
  assert.equal(config.warnings!.length, 2);
  assert.match(config.warnings![0], /^many-databases\.yml:23: dbs\[2\]\.monitor-interval: /);
  assert.match(
    config.warnings![1],
    /^many-databases\.yml:26: dbs\[2\]\.replica\.part-size: .*1 more/,
  );
});

Deno.test("file replicas: path: and file:// URLs share one folder as the bucket", () => {
  const { config } = fixture("file-replica.yml");
  assert.deepEqual(config.s3, { bucket: "/mnt/backup/litestream" });
  assert.deepEqual(config.databases.map((d) => d.prefix), ["wiki.db", "search.db"]);
});

Deno.test("dir + pattern: a glob per entry, recursive as **, watch kept, caveat warned", () => {
  const { config } = fixture("dir-watch.yml");
  assert.equal(config.s3.bucket, "s3://tenant-backups");
  const [tenants, shared] = config.databases;
  assert.deepEqual(
    [tenants.path, tenants.prefix, tenants.watch],
    ["/var/lib/tenants/**/*.db", "tenants/{name}", true],
  );
  assert.deepEqual(
    [shared.path, shared.prefix, shared.watch],
    ["/var/lib/shared/*.sqlite", "shared/{name}", undefined],
  );
  assert.equal(config.warnings!.length, 1);
  assert.match(config.warnings![0], /dir-watch\.yml:5: dbs\[0\]\.recursive: .*file name/);
});

Deno.test("snapshot, retention, validation and l0-retention blocks", () => {
  const { config } = fixture("retention-snapshot.yml");
  assert.deepEqual(config.sync, {
    snapshotIntervalMs: 6 * 3_600_000,
    validationIntervalMs: 12 * 3_600_000,
    l0RetentionMs: 600_000,
  });
  assert.deepEqual(config.retention, { pitrWindowMs: 72 * 3_600_000 });
  assert.equal(config.maintenance.retentionEnabled, true);
  const analytics = config.databases[1];
  assert.deepEqual(analytics.sync, { snapshotIntervalMs: 24 * 3_600_000 });
  assert.deepEqual(analytics.retention, { pitrWindowMs: 168 * 3_600_000 });
  // The GFS tiers keep walrust's defaults beyond the window.
  assert.equal(resolveRetention(config.retention).daily, 7);
});

Deno.test("exec, addr, logging and shutdown-sync-timeout", () => {
  const { config, raw } = fixture("exec.yml");
  assert.equal(config.exec, "/usr/local/bin/myapp -addr :8080 -db /data/myapp.db");
  assert.equal(raw.exec, "/usr/local/bin/myapp -addr :8080 -db ${DB_PATH}");
  assert.deepEqual(config.metrics, { enabled: true, host: "0.0.0.0", port: 9090 });
  assert.deepEqual(config.log, { level: "debug", format: "json" });
  assert.equal(config.shutdownDrainMs, 30_000);
  assert.equal(config.databases[0].path, "/data/myapp.db");
  assert.equal(config.s3.bucket, "s3://env-bucket");
  assert.deepEqual(config.warnings, [], "stderr: true is what walrust does anyway");
});

Deno.test("the deprecated replicas: list with one entry reads like replica:", () => {
  const { config } = fixture("replicas-list.yml");
  assert.deepEqual(config.s3, {
    bucket: "s3://old-backups",
    region: "eu-west-1",
    accessKeyId: "AKIAIOSFODNN7EXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  });
  assert.equal(config.databases[0].prefix, "db.sqlite");
  assert.deepEqual(config.warnings, [], "name: is unused by Litestream too");
});

Deno.test("a url: replica with endpoint and region in its query; relative db path from cwd", () => {
  const { config } = fixture("url-replica.yml");
  assert.deepEqual(config.s3, {
    bucket: "s3://app-backups/litestream",
    endpoint: "https://abc123.r2.cloudflarestorage.com",
    region: "auto",
  });
  assert.equal(config.databases[0].path, "/srv/cwd/data/app.db");
  assert.deepEqual(config.warnings, [], "sign-payload: true and skip-verify: false change nothing");
});

Deno.test("levels, anchors with <<, and Litestream keys walrust lacks warn once each", () => {
  const { config } = fixture("levels.yml");
  assert.deepEqual(config.maintenance.compactionLevelsMs, [60_000, 900_000, 6 * 3_600_000]);
  assert.deepEqual(config.databases.map((d) => d.prefix), ["app.db", "jobs.db"]);
  const keys = config.warnings!.map((w) => /^levels\.yml:\d+: (\S+):/.exec(w)?.[1]);
  assert.deepEqual(keys.sort(), [
    "dbs[0].meta-path",
    "dbs[0].replica.sse-customer-key",
    "dbs[0].replica.storage-class",
    "heartbeat-interval",
    "heartbeat-url",
    "mcp-addr",
    "socket",
  ]);
});

Deno.test("a misspelt key exits 2 with its line and the nearest key", () => {
  rejects(
    () => fixture("misspelt.yml"),
    /^misspelt\.yml:5: dbs\[0\]\.replica\.sync-intreval: unknown key .*did you mean sync-interval\?/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    snapshots:\n      interval: 1h\n"),
    /:3: dbs\[0\]\.snapshots: unknown key.*snapshot/,
  );
  rejects(() => yaml("sync_interval: 1s\n"), /:1: sync_interval: .*did you mean sync-interval\?/);
});

// ---------------------------------------------------------------------------------------------
// Conversion

Deno.test("convert: every fixture's walrust.toml loads to the same configuration", () => {
  for (const name of GOOD) {
    const { config } = fixture(name);
    const toml = convert(name);
    const back = parseConfig(toml, {
      file: "walrust.toml",
      path: "/etc/walrust/walrust.toml",
      env: ENV,
    });
    assert.deepEqual(resolved(back), resolved(config), `${name}:\n${toml}`);
    assert.ok(config.databases.length > 0, name);
  }
});

Deno.test("convert: every line is a setting, a table or a comment; unused keys are comments", () => {
  for (const name of GOOD) {
    const { config } = fixture(name);
    const toml = convert(name);
    for (const line of toml.split("\n")) {
      assert.match(line, /^($|#|\[\[?[a-z0-9]+\]\]?$|[a-z_0-9]+ = )/, `${name}: ${line}`);
    }
    for (const w of config.warnings ?? []) {
      const key = /^[^:]+:\d+: (\S+):/.exec(w)![1];
      assert.ok(toml.includes(`# ${key}: `), `${name}: no comment for ${key}`);
    }
  }
  const levels = convert("levels.yml");
  assert.match(
    levels,
    new RegExp(
      "^" + ["#   socket:", "#     enabled: true", "#     path: /var/run/litestream.sock"]
        .join("\\n") +
        "$",
      "m",
    ),
  );
  assert.match(levels, /^# converted$/m);
});

Deno.test("convert: secrets from $VAR stay references, literal secret comments are redacted", () => {
  const all = GOOD.map(convert).join("\n");
  assert.ok(!all.includes("expanded-secret"), "an expanded secret was printed");
  assert.ok(!all.includes("c2VjcmV0LWtleS0zMi1ieXRlcy1sb25n"), "an unused secret was printed");
  assert.match(all, /access_key_id = "\$AWS_ACCESS_KEY_ID"/);
  assert.match(all, /sse-customer-key: <redacted>/);
});

Deno.test("convert: a literal $ survives the round trip", () => {
  const p = parseLitestreamConfig(
    "exec: echo $$HOME\ndbs:\n  - path: /a/b$$c.db\n    replica:\n      url: s3://b/x.db\n",
    { file: "l.yml", env: { HOME: "/root" }, cwd: CWD },
  );
  assert.equal(p.config.exec, "echo $HOME");
  assert.equal(p.config.databases[0].path, "/a/b$c.db");
  const back = parseConfig(toToml(p.config, { raw: p.raw }), {
    file: "w.toml",
    env: { HOME: "/x" },
  });
  assert.equal(back.exec, "echo $HOME");
  assert.equal(back.databases[0].path, "/a/b$c.db");
});

Deno.test("walrust config convert prints the TOML and notes the unused settings", async () => {
  const out: string[] = [];
  const err: string[] = [];
  const ctx = { out: (s: string) => out.push(s), err: (s: string) => err.push(s), verbose: false };
  assert.equal(await runConfig(["convert", join(FIXTURES, "levels.yml")], ctx), 0);
  assert.equal(out.length, 1);
  const back = parseConfig(out[0], { file: "w.toml", env: {} });
  assert.deepEqual(back.maintenance.compactionLevelsMs, [60_000, 900_000, 6 * 3_600_000]);
  assert.match(out[0], /^# walrust\.toml converted from /);
  assert.equal(err.length, 1);
  assert.match(err[0], /7 litestream\.yml setting/);
  await assert.rejects(runConfig(["show"], ctx), ConfigError);
  await assert.rejects(runConfig(["convert", join(FIXTURES, "nope.yml")], ctx), ConfigError);
  await assert.rejects(runConfig(["convert", join(FIXTURES, "misspelt.yml")], ctx), ConfigError);
});

// ---------------------------------------------------------------------------------------------
// Values

Deno.test("Go durations", () => {
  assert.equal(goDurationMs("1h30m"), 5_400_000);
  assert.equal(goDurationMs("500ms"), 500);
  assert.equal(goDurationMs("1.5s"), 1500);
  assert.equal(goDurationMs("2h45m30.5s"), 9_930_500);
  assert.equal(goDurationMs("1500us"), 2);
  assert.equal(goDurationMs("-5s"), -5000);
  assert.equal(goDurationMs("0"), 0);
  assert.equal(goDurationMs("5"), undefined);
  assert.equal(goDurationMs("1d"), undefined);
  assert.equal(goDurationMs(""), undefined);
  const db = (v: string) =>
    `dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a.db\n      sync-interval: ${v}\n`;
  rejects(
    () => yaml(db("30")),
    /:5: dbs\[0\]\.replica\.sync-interval: expected a duration, got "30" \(add a unit, e\.g\. "30s"\)/,
  );
  rejects(() => yaml(db("0s")), /must be at least 1ms/);
  rejects(() => yaml(db("2h")), /at most 3600s/);
  assert.equal(yaml(db('"250ms"')).databases[0].sync.walSyncIntervalMs, 250);
});

Deno.test("YAML 1.1 scalars as Litestream's yaml.v2 reads them", () => {
  const c = yaml("force-path-style: yes\nretention:\n  enabled: off\n");
  assert.equal(c.s3.forcePathStyle, true);
  assert.equal(c.maintenance.retentionEnabled, false);
  rejects(
    () => yaml('retention:\n  enabled: "true"\n'),
    /:2: retention\.enabled: expected true or false.*remove the quotes/,
  );
  const n = yaml(
    "dbs:\n  - path: /a.db\n    min-checkpoint-page-count: 0x10\n    truncate-page-n: 1_000\n",
  );
  assert.deepEqual(n.databases[0].sync, {
    minCheckpointPageCount: 16,
    walTruncateThresholdPages: 1000,
  });
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    truncate-page-n: 1.5\n"),
    /:3: .*expected a whole number/,
  );
  rejects(() => yaml("dbs: [\n"), /^litestream\.yml:\d+: invalid YAML/);
  rejects(() => yaml("addr: :1\naddr: :2\n"), /^litestream\.yml:2: invalid YAML/);
  assert.deepEqual(yaml("").databases, []);
  assert.deepEqual(yaml("# nothing\n").warnings, []);
});

Deno.test("environment expansion: unset is empty, $PID, $$ and bad references", () => {
  const c = yaml("exec: run $PID ${NOPE}x $$HOME\nlogging:\n  level: $LEVEL\n", {
    LEVEL: "WARNING",
  });
  assert.equal(c.exec, `run ${Deno.pid} x $HOME`);
  assert.equal(c.log.level, "warn");
  // An unset variable leaves the key unset, as Litestream's empty value does.
  assert.equal(yaml("l0-retention: $UNSET\n").sync.l0RetentionMs, undefined);
  rejects(
    () => yaml("dbs:\n  - path: ${bad-name}\n"),
    /:2: dbs\[0\]\.path: bad variable reference/,
  );
});

Deno.test("addr: Go host:port, empty host = every interface", () => {
  assert.deepEqual(yaml('addr: ":9090"').metrics, { enabled: true, host: "0.0.0.0", port: 9090 });
  assert.deepEqual(yaml("addr: 127.0.0.1:9091").metrics, {
    enabled: true,
    host: "127.0.0.1",
    port: 9091,
  });
  assert.deepEqual(yaml('addr: "[::1]:9092"').metrics, { enabled: true, host: "::1", port: 9092 });
  rejects(() => yaml("addr: 9090"), /:1: addr: expected host:port/);
});

Deno.test("replica rules: one replica, one bucket, s3 or file, no age", () => {
  const two =
    "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/a\n      - url: file:///x/a\n";
  rejects(() => yaml(two), /:3: dbs\[0\]\.replicas: lists 2 replicas/);
  const both =
    "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n    replicas:\n      - url: s3://b/a\n";
  rejects(() => yaml(both), /dbs\[0\]: cannot specify both replica and replicas/);
  const split =
    "dbs:\n  - path: /a.db\n    replica:\n      url: s3://one/a\n  - path: /b.db\n    replica:\n      url: s3://two/b\n";
  rejects(
    () => yaml(split),
    /:6: dbs\[1\]\.replica: goes to s3:\/\/two but dbs\[0\]\.replica goes to s3:\/\/one/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    replica:\n      url: gs://b/a\n"),
    /:4: dbs\[0\]\.replica\.url: replica type "gs" is not supported/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    replica:\n      type: sftp\n      host: h\n"),
    /sftp replica needs a user/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      age: [x]\n"),
    /:5: dbs\[0\]\.replica\.age: expected a mapping/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b\n"),
    /root of the bucket/,
  );
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n  - path: /b.db\n"),
    /:5: dbs\[1\]: has no replica/,
  );
  rejects(
    () => yaml("bucket: x\ndbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n"),
    /cannot specify url & bucket.*top level/,
  );
  rejects(
    () =>
      yaml("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      access-key-id: k\n"),
    /secret-access-key is missing/,
  );
  rejects(() => yaml("dbs:\n  - path: /a.db\n    dir: /d\n"), /cannot specify both path and dir/);
  rejects(() => yaml("dbs:\n  - dir: /d\n"), /pattern: is required with dir/);
  rejects(
    () => yaml("dbs:\n  - path: /a.db\n    watch: true\n"),
    /watch: can only be used with dir/,
  );
});

Deno.test("S3 URL host forms and path style as Litestream resolves them", () => {
  const one = (url: string) => yaml(`dbs:\n  - path: /a.db\n    replica:\n      url: ${url}\n`).s3;
  assert.deepEqual(one("s3://mybkt.s3.us-west-2.amazonaws.com/db/a.db"), {
    bucket: "s3://mybkt/db",
    region: "us-west-2",
  });
  assert.deepEqual(one("s3://mybkt.localhost:9000/a.db"), {
    bucket: "s3://mybkt",
    endpoint: "http://localhost:9000",
    region: "us-east-1",
  });
  // DigitalOcean from the host: virtual-hosted style, which is not walrust's endpoint default.
  assert.deepEqual(one("s3://space.nyc3.digitaloceanspaces.com/a.db"), {
    bucket: "s3://space",
    endpoint: "https://nyc3.digitaloceanspaces.com",
    region: "nyc3",
    forcePathStyle: false,
  });
  assert.deepEqual(one("s3://b/a.db?endpoint=minio:9000&forcePathStyle=false"), {
    bucket: "s3://b",
    endpoint: "https://minio:9000",
    forcePathStyle: false,
  });
  const w = yaml(
    "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a.db?storageClass=GLACIER\n",
  );
  assert.match(w.warnings![0], /:4: dbs\[0\]\.replica\.url\?storageClass: URL parameter/);
});

Deno.test("local paths: ~ from HOME, relative from the working directory, no glob characters", () => {
  const c = yaml("dbs:\n  - path: ~/app.db\n  - dir: data\n    pattern: '*.db'\n", {
    HOME: "/home/me",
  });
  assert.deepEqual(c.databases.map((d) => d.path), ["/home/me/app.db", "/srv/cwd/data/*.db"]);
  rejects(
    () => yaml("dbs:\n  - path: /data/app[1].db\n"),
    /:2: dbs\[0\]\.path: contains \*, \? or \[/,
  );
  rejects(
    () => yaml("dbs:\n  - dir: /d\n    pattern: sub/*.db\n"),
    /pattern: matches file names only/,
  );
});

// ---------------------------------------------------------------------------------------------
// Finding and routing the file

Deno.test("loadConfig: .yml is read as a litestream.yml, path and warnings recorded", async () => {
  const file = join(FIXTURES, "levels.yml");
  const c = await loadConfig(file, { env: {}, cwd: CWD });
  assert.equal(c.path, file);
  assert.equal(c.warnings!.length, 7);
  assert.equal(c.databases[0].path, "/var/lib/app/app.db");
});

Deno.test("discovery: walrust.toml first, then LITESTREAM_CONFIG, then the default litestream.yml", async () => {
  await inTempDir(async (dir) => {
    const yml = join(dir, "custom.yml");
    await Deno.writeTextFile(yml, "dbs:\n  - path: from-env.db\n");
    const fallback = join(dir, "etc-litestream.yml");
    await Deno.writeTextFile(fallback, "dbs:\n  - path: from-default.db\n");
    const opts = (env: Record<string, string>) => ({ cwd: dir, env, litestreamDefault: fallback });

    let c = await loadConfig(undefined, opts({ LITESTREAM_CONFIG: yml }));
    assert.deepEqual(c.databases.map((d) => d.path), [join(dir, "from-env.db")]);
    assert.equal(c.path, yml);

    c = await loadConfig(undefined, opts({}));
    assert.deepEqual(c.databases.map((d) => d.path), [join(dir, "from-default.db")]);

    await assert.rejects(
      loadConfig(undefined, opts({ LITESTREAM_CONFIG: join(dir, "missing.yml") })),
      (e: unknown) => e instanceof ConfigError && /LITESTREAM_CONFIG/.test(e.message),
    );

    await Deno.writeTextFile(join(dir, "walrust.toml"), '[[databases]]\npath = "toml.db"\n');
    c = await loadConfig(undefined, opts({ LITESTREAM_CONFIG: yml }));
    assert.deepEqual(c.databases.map((d) => d.path), ["toml.db"]);

    await Deno.remove(join(dir, "walrust.toml"));
    await Deno.remove(fallback);
    c = await loadConfig(undefined, opts({}));
    assert.equal(c.path, undefined);
    assert.deepEqual(c.databases, []);
  });
});

Deno.test("a YAML file read as TOML says so; a TOML file named .yml says so", async () => {
  await inTempDir(async (dir) => {
    const text = await Deno.readTextFile(join(FIXTURES, "s3-env-credentials.yml"));
    await Deno.writeTextFile(join(dir, "walrust.toml"), text);
    await assert.rejects(loadConfig("walrust.toml", { cwd: dir, env: ENV }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(
        e.message,
        /^walrust\.toml:\d+: invalid TOML: this looks like YAML; name it \.yml/,
      );
      return true;
    });
    await Deno.writeTextFile(join(dir, "litestream.yml"), '[s3]\nbucket = "s3://b"\n');
    await assert.rejects(loadConfig("litestream.yml", { cwd: dir, env: {} }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /this looks like TOML; name it walrust\.toml/);
      return true;
    });
  });
});

Deno.test("walrust.toml: exec, S3 credentials and watch", () => {
  const toml = (t: string, env: Record<string, string> = {}) =>
    parseConfig(t, { file: "w.toml", env });
  const c = toml(
    'exec = "myapp serve"\n[s3]\naccess_key_id = "$K"\nsecret_access_key = "$S"\n' +
      '[[databases]]\npath = "/d/*.db"\nwatch = true\n',
    { K: "key", S: "secret" },
  );
  assert.equal(c.exec, "myapp serve");
  assert.deepEqual(c.s3, { accessKeyId: "key", secretAccessKey: "secret" });
  assert.equal(c.databases[0].watch, true);
  // Unset variables mean "use the AWS credential chain".
  assert.deepEqual(toml('[s3]\naccess_key_id = "$K"\nsecret_access_key = "$S"\n').s3, {});
  rejects(
    () => toml('[s3]\naccess_key_id = "key"\n'),
    /^w\.toml:2: s3\.access_key_id: is set but secret_access_key/,
  );
  rejects(
    () => toml('[[databases]]\npath = "/d/a.db"\nwatch = true\n'),
    /^w\.toml:3: databases\[0\]\.watch: needs a glob path/,
  );
});

Deno.test("convert: block values shown on one line; $PID is written expanded", () => {
  const p = parseLitestreamConfig(
    "exec: myapp --pid $PID\nheartbeat-url: |\n  https://hc-ping.com/x\nsocket: {enabled: true,\n  path: /s}\n",
    { file: "l.yml", env: {}, cwd: CWD },
  );
  const toml = toToml(p.config, { notes: p.notes, raw: p.raw });
  assert.match(toml, /^exec = "myapp --pid \d+"$/m);
  assert.match(toml, /^# {3}heartbeat-url: "https:\/\/hc-ping\.com\/x\\n"$/m);
  assert.match(toml, /^# {3}socket: \{enabled: true, path: \/s\}$/m);
  assert.equal(parseConfig(toml, { file: "w.toml", env: {} }).exec, p.config.exec);
});

Deno.test("litestream.yml age: (Litestream v0.3's spelling) becomes the database's keys, and converts", () => {
  const text = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      age:\n" +
    "        recipients: [age1aaa, age1bbb]\n        identities:\n          - $AGE_KEY\n";
  const c = yaml(text, { AGE_KEY: "AGE-SECRET-KEY-1XYZ" });
  assert.deepEqual(c.databases[0].age, {
    recipients: ["age1aaa", "age1bbb"],
    identities: ["AGE-SECRET-KEY-1XYZ"],
  });
  const toml = toToml(c);
  assert.match(toml, /age = \{ recipients = \["age1aaa", "age1bbb"\], identities = \[/);
  const back = parseConfig(toml, { file: "walrust.toml" });
  assert.deepEqual(back.databases[0].age, c.databases[0].age);
  rejects(
    () =>
      yaml(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n      age:\n        identities: ['']\n",
      ),
    /age\.identities\[0\]: is empty/,
  );
});

Deno.test("litestream.yml Azure (abs) and SFTP replicas, both spellings, credentials kept apart", () => {
  const abs = yaml(
    "dbs:\n  - path: /a.db\n    replica:\n      url: abs://acct@cont/backups/a.db\n" +
      "      account-key: $KEY\n  - path: /b.db\n    replica:\n      type: abs\n" +
      "      account-name: acct\n      bucket: cont\n      path: backups/b.db\n" +
      "      account-key: $KEY\n",
    { KEY: "c2VjcmV0" },
  );
  assert.equal(abs.s3.bucket, "abs://acct@cont/backups");
  assert.equal(abs.s3.azureAccountKey, "c2VjcmV0");
  assert.deepEqual(abs.databases.map((d) => d.prefix), ["a.db", "b.db"]);
  const sas = yaml(
    "dbs:\n  - path: /a.db\n    replica:\n      url: abs://acct@cont/a.db\n" +
      "      sas-token: sv=1&sig=x\n      endpoint: http://127.0.0.1:1/acct\n",
  );
  assert.equal(sas.s3.azureSasToken, "sv=1&sig=x");
  assert.equal(sas.s3.endpoint, "http://127.0.0.1:1/acct");

  const sftp = yaml(
    "dbs:\n  - path: /a.db\n    replica:\n      type: sftp\n      host: backup.example:2222\n" +
      "      user: walrust\n      path: /srv/backups/a.db\n      key-path: /etc/walrust/id\n" +
      "      host-key: ssh-ed25519 AAAAC3Nza\n",
  );
  assert.equal(sftp.s3.bucket, "sftp://walrust@backup.example:2222/srv/backups");
  assert.equal(sftp.s3.sftpKeyPath, "/etc/walrust/id");
  assert.equal(sftp.s3.sftpHostKey, "ssh-ed25519 AAAAC3Nza");
  assert.equal(sftp.databases[0].prefix, "a.db");
  const url = yaml("dbs:\n  - path: /a.db\n    replica:\n      url: sftp://u:pw@h/x/a.db\n");
  assert.equal(url.s3.bucket, "sftp://u@h/x");
  assert.equal(url.s3.sftpPassword, "pw");
  // The bucket parses as the backend will parse it.
  for (const c of [abs, sas, sftp, url]) parseBucketUrl(c.s3.bucket!);
  // Keys of another backend are warned about as unused, not silently taken.
  const { warnings } = parseLitestreamConfig(
    "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a.db\n      host-key: x\n",
    { file: "litestream.yml", env: {}, cwd: CWD },
  ).config;
  assert.ok(warnings?.some((w) => /host-key.*only used by sftp/.test(w)), String(warnings));
});
