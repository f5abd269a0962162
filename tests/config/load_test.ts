import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../src/errors.ts";
import { loadConfig, parseConfig } from "../../src/config/load.ts";
import { type FileConfig, resolveRetention, resolveSync } from "../../src/config/schema.ts";

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-config-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Load `toml` as ./walrust.toml in a temp dir. */
function load(toml: string, env: Record<string, string> = {}): Promise<FileConfig> {
  return inTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "walrust.toml"), toml);
    return await loadConfig("walrust.toml", { cwd: dir, env });
  });
}

/** Assert that loading `toml` fails with a one-line ConfigError matching `re`. */
async function rejects(toml: string, re: RegExp, env: Record<string, string> = {}) {
  await assert.rejects(load(toml, env), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${err}`);
    assert.equal(err.exitCode, 2);
    assert.ok(!err.message.includes("\n"), `multi-line message: ${err.message}`);
    assert.match(err.message, re);
    return true;
  });
}

Deno.test("discovery: no --config and no ./walrust.toml gives an empty config", async () => {
  await inTempDir(async (dir) => {
    const c = await loadConfig(undefined, { cwd: dir, env: {} });
    assert.equal(c.path, undefined);
    assert.deepEqual(c.sync, {});
    assert.deepEqual(c.databases, []);
    assert.equal(c.allowEmptyGlobs, false);
  });
});

Deno.test("discovery: ./walrust.toml is used when present", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "walrust.toml"), "[sync]\nwal_sync_interval = 3\n");
    const c = await loadConfig(undefined, { cwd: dir, env: {} });
    assert.equal(c.path, join(dir, "walrust.toml"));
    assert.equal(c.sync.walSyncIntervalMs, 3000);
  });
});

Deno.test("discovery: a missing --config file is a ConfigError naming it", async () => {
  await inTempDir(async (dir) => {
    await assert.rejects(loadConfig("nope/walrust.toml", { cwd: dir, env: {} }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, /config file not found: nope\/walrust\.toml/);
      return true;
    });
  });
});

Deno.test("an empty file sets nothing", async () => {
  const c = await load("");
  assert.deepEqual(c.sync, {});
  assert.deepEqual(c.retention, {});
  assert.deepEqual(c.webhooks, []);
  assert.deepEqual(resolveSync(c.sync), resolveSync());
});

Deno.test("every key is read into camelCase settings", async () => {
  const c = await load(`
allow_empty_globs = true
[s3]
bucket = "s3://b/p"
endpoint = "http://127.0.0.1:7480"
region = "eu-west-1"
force_path_style = true
[sync]
wal_sync_interval = 0.1
snapshot_interval = "2h"
checkpoint_interval = 30
min_checkpoint_page_count = 10
wal_truncate_threshold_pages = 0
max_sync_wal_bytes = "1MiB"
busy_timeout = 250
format = "block"
l0_retention = "10m"
on_startup = false
upload_concurrency = 8
shutdown_drain = 2.5
[retention]
hourly = 1
daily = 2
weekly = 3
monthly = 0
pitr_window = "1d"
[retry]
max_retries = 0
base_delay_ms = 10
max_delay_ms = 20
circuit_breaker_enabled = false
circuit_breaker_threshold = 3
circuit_breaker_cooldown_ms = 1000
[cache]
max_size = "500MB"
path = "state"
[metrics]
enabled = false
port = 9090
host = "0.0.0.0"
[log]
format = "json"
level = "debug"
`);
  assert.equal(c.allowEmptyGlobs, true);
  assert.deepEqual(c.s3, {
    bucket: "s3://b/p",
    endpoint: "http://127.0.0.1:7480",
    region: "eu-west-1",
    forcePathStyle: true,
  });
  assert.deepEqual(c.sync, {
    walSyncIntervalMs: 100,
    snapshotIntervalMs: 7_200_000,
    checkpointIntervalMs: 30_000,
    minCheckpointPageCount: 10,
    walTruncateThresholdPages: 0,
    maxSyncWalBytes: 1024 * 1024,
    busyTimeoutMs: 250,
    format: "block",
    l0RetentionMs: 600_000,
    onStartup: false,
  });
  assert.equal(c.uploadConcurrency, 8);
  assert.equal(c.shutdownDrainMs, 2500);
  assert.deepEqual(c.retention, {
    hourly: 1,
    daily: 2,
    weekly: 3,
    monthly: 0,
    pitrWindowMs: 86_400_000,
  });
  assert.deepEqual(c.retry, {
    maxRetries: 0,
    baseDelayMs: 10,
    maxDelayMs: 20,
    circuitBreakerEnabled: false,
    circuitBreakerThreshold: 3,
    circuitBreakerCooldownMs: 1000,
  });
  assert.equal(c.cache.maxSize, 500_000_000);
  assert.ok(c.cache.path?.endsWith("/state") && c.cache.path.startsWith("/"), c.cache.path);
  assert.deepEqual(c.metrics, { enabled: false, port: 9090, host: "0.0.0.0" });
  assert.deepEqual(c.log, { format: "json", level: "debug" });
});

Deno.test("precedence: default < [sync] < [[databases]] < flags; unset flags change nothing", async () => {
  const c = await load(`
[sync]
wal_sync_interval = 2
snapshot_interval = 600
[[databases]]
path = "/data/a.db"
wal_sync_interval = 0.5
retention = { daily = 1 }
`);
  const db = c.databases[0];
  const fromFile = resolveSync(c.sync, db.sync);
  assert.equal(fromFile.walSyncIntervalMs, 500); // per-database beats [sync]
  assert.equal(fromFile.snapshotIntervalMs, 600_000); // [sync] beats default
  assert.equal(fromFile.checkpointIntervalMs, 60_000); // default
  const unsetFlags = { walSyncIntervalMs: undefined, snapshotIntervalMs: undefined };
  assert.deepEqual(resolveSync(c.sync, db.sync, unsetFlags), fromFile);
  assert.equal(resolveSync(c.sync, db.sync, { walSyncIntervalMs: 50 }).walSyncIntervalMs, 50);
  const r = resolveRetention(c.retention, db.retention);
  assert.equal(r.daily, 1);
  assert.equal(r.hourly, 24);
});

Deno.test("unknown keys are errors with file:line in every section", async () => {
  const cases: [string, RegExp][] = [
    ["bogus = 1\n", /^walrust\.toml:1: bogus: unknown key/],
    ["[nope]\nx = 1\n", /^walrust\.toml:1: nope: unknown key/],
    [
      '[s3]\nbucket = "/b"\nbuckit = 1\n',
      /^walrust\.toml:3: s3\.buckit: unknown key \(did you mean bucket\?\)$/,
    ],
    [
      "[sync]\n\nwal_sync_intervall = 1\n",
      /^walrust\.toml:3: sync\.wal_sync_intervall: unknown key \(did you mean wal_sync_interval\?\)$/,
    ],
    [
      "[sync]\nmax_changes = 5\n",
      /^walrust\.toml:2: sync\.max_changes: unknown key \(not supported/,
    ],
    ["[retention]\nyearly = 1\n", /^walrust\.toml:2: retention\.yearly: unknown key/],
    ["[retry]\nattempts = 1\n", /^walrust\.toml:2: retry\.attempts: unknown key/],
    ["[cache]\nenabled = true\n", /^walrust\.toml:2: cache\.enabled: unknown key/],
    ['[metrics]\nbind = "x"\n', /^walrust\.toml:2: metrics\.bind: unknown key/],
    ["[log]\ncolor = true\n", /^walrust\.toml:2: log\.color: unknown key/],
    [
      '[[webhooks]]\nurl = "https://a"\n[[webhooks]]\nurl = "https://b"\nheaders = 1\n',
      /^walrust\.toml:5: webhooks\[1\]\.headers: unknown key/,
    ],
    [
      '[[databases]]\npath = "/a.db"\n\n[[databases]]\npath = "/b.db"\nreplica = "x"\n',
      /^walrust\.toml:6: databases\[1\]\.replica: unknown key/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nretention = { hourly = 1, yearly = 2 }\n',
      /^walrust\.toml:3: databases\[0\]\.retention\.yearly: unknown key/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nupload_concurrency = 2\n',
      /^walrust\.toml:3: databases\[0\]\.upload_concurrency: unknown key/,
    ],
  ];
  for (const [toml, re] of cases) await rejects(toml, re);
});

Deno.test("wrong types name the key, the line and the value", async () => {
  await rejects(
    '# comment\n\n[s3]\nbucket = "s3://b"\n\n[sync]\nwal_sync_interval = "fast"\n',
    /^walrust\.toml:7: sync\.wal_sync_interval: expected a number of seconds, got "fast" \(/,
  );
  await rejects(
    '[sync]\non_startup = "true"\n',
    /^walrust\.toml:2: sync\.on_startup: expected true or false, got "true" \(remove the quotes\)$/,
  );
  await rejects(
    '[retry]\nmax_retries = "5"\n',
    /^walrust\.toml:2: retry\.max_retries: expected a whole number, got "5" \(remove the quotes\)$/,
  );
  await rejects(
    "[retry]\nmax_retries = 1.5\n",
    /retry\.max_retries: expected a whole number, got 1\.5/,
  );
  await rejects("sync = 5\n", /^walrust\.toml:1: sync: expected a table, got 5/);
  await rejects(
    '[databases]\npath = "/a.db"\n',
    /^walrust\.toml:1: databases: expected an array of tables, got a table/,
  );
  await rejects("[s3]\nregion = 1\n", /^walrust\.toml:2: s3\.region: expected a string, got 1$/);
  await rejects(
    "[sync]\nbusy_timeout = true\n",
    /sync\.busy_timeout: expected milliseconds, got true/,
  );
  await rejects(
    '[cache]\nmax_size = "huge"\n',
    /^walrust\.toml:2: cache\.max_size: expected a size in bytes, got "huge"/,
  );
  await rejects(
    "[sync]\nsnapshot_interval = 2024-01-01\n",
    /sync\.snapshot_interval: expected a number of seconds, got a date/,
  );
});

Deno.test("out-of-range and malformed values are errors", async () => {
  const cases: [string, RegExp][] = [
    ["[sync]\nwal_sync_interval = 0\n", /sync\.wal_sync_interval: must be greater than 0, got 0/],
    [
      "[sync]\nwal_sync_interval = 3601\n",
      /sync\.wal_sync_interval: must be at most 3600 seconds, got 3601/,
    ],
    [
      "[sync]\nsnapshot_interval = -5\n",
      /^walrust\.toml:2: sync\.snapshot_interval: must not be negative, got -5$/,
    ],
    ["[sync]\ncheckpoint_interval = -1\n", /sync\.checkpoint_interval: must not be negative/],
    [
      "[sync]\nmin_checkpoint_page_count = 0\n",
      /sync\.min_checkpoint_page_count: must be >= 1, got 0/,
    ],
    [
      "[sync]\nwal_truncate_threshold_pages = -1\n",
      /sync\.wal_truncate_threshold_pages: must be >= 0/,
    ],
    ["[sync]\nmax_sync_wal_bytes = 100\n", /sync\.max_sync_wal_bytes: must be at least 4096 bytes/],
    [
      '[sync]\nformat = "zstd"\n',
      /^walrust\.toml:2: sync\.format: expected one of "legacy", "block", got "zstd"$/,
    ],
    [
      "[sync]\nupload_concurrency = 0\n",
      /sync\.upload_concurrency: must be between 1 and 256, got 0/,
    ],
    ["[sync]\nbusy_timeout = -1\n", /sync\.busy_timeout: must be >= 0/],
    ["[retention]\nhourly = -1\n", /retention\.hourly: must be >= 0/],
    [
      "[retention]\nhourly = 0\ndaily = 0\nweekly = 0\nmonthly = 0\npitr_window = 0\n",
      /^walrust\.toml:1: retention: keeps nothing/,
    ],
    [
      "[retry]\nbase_delay_ms = 5000\nmax_delay_ms = 100\n",
      /^walrust\.toml:2: retry\.base_delay_ms: base_delay_ms \(5000\) is above max_delay_ms \(100\)$/,
    ],
    ["[retry]\ncircuit_breaker_threshold = 0\n", /retry\.circuit_breaker_threshold: must be >= 1/],
    ["[metrics]\nport = 70000\n", /metrics\.port: must be between 0 and 65535, got 70000/],
    [
      '[log]\nlevel = "verbose"\n',
      /log\.level: expected one of "error", "warn", "info", "debug", "trace", got "verbose"/,
    ],
    ['[log]\nformat = "xml"\n', /log\.format: expected one of "text", "json"/],
    [
      '[s3]\nbucket = "my-bucket/prefix"\n',
      /s3\.bucket: expected s3:\/\/bucket\/prefix, abs:\/\/account@container\/path, webdav:\/\/host\/path, sftp:\/\/user@host\/path, file:\/\/\/abs\/path or an absolute path, got "my-bucket\/prefix" \(did you mean "s3:\/\/my-bucket\/prefix"\?\)/,
    ],
    ['[s3]\nbucket = "webdav://host/x?y"\n', /s3\.bucket: expected webdav:\/\/host\[:port\]\/path/],
    ['[s3]\nbucket = "s3://"\n', /s3\.bucket: missing bucket name/],
    [
      '[s3]\nbucket = "s3://my bucket"\n',
      /s3\.bucket: S3 bucket and prefix must not contain spaces/,
    ],
    ['[s3]\nbucket = "file://relative"\n', /s3\.bucket: file URL needs an absolute path/],
    ['[s3]\nbucket = ""\n', /s3\.bucket: must not be empty/],
    [
      '[s3]\nendpoint = "localhost:9000"\n',
      /s3\.endpoint: expected an http:\/\/ or https:\/\/ URL/,
    ],
    [
      '[[webhooks]]\nurl = "ftp://x"\n',
      /^walrust\.toml:2: webhooks\[0\]\.url: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"$/,
    ],
    [
      '[[webhooks]]\nevents = ["upload_failed"]\n',
      /^walrust\.toml:1: webhooks\[0\]: missing required key url/,
    ],
    [
      '[[webhooks]]\nurl = "https://x"\nevents = ["upload_failed", "boom"]\n',
      /^walrust\.toml:3: webhooks\[0\]\.events\[1\]: unknown event "boom" \(known: upload_failed, /,
    ],
    ['[[webhooks]]\nurl = "https://x"\nevents = []\n', /webhooks\[0\]\.events: is empty/],
    ['[[webhooks]]\nurl = "https://x"\nsecret = ""\n', /webhooks\[0\]\.secret: must not be empty/],
    [
      '[[databases]]\nprefix = "a"\n',
      /^walrust\.toml:1: databases\[0\]: missing required key path/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nprefix = "../x"\n',
      /^walrust\.toml:3: databases\[0\]\.prefix: must not contain a "\.\." segment$/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nprefix = "/x"\n',
      /databases\[0\]\.prefix: must not start or end with \//,
    ],
    [
      '[[databases]]\npath = "/a.db"\nprefix = "t/{nmae}"\n',
      /databases\[0\]\.prefix: unknown placeholder \{nmae\}/,
    ],
    [
      '[[databases]]\npath = "/data/*.db"\nprefix = "tenants"\n',
      /^walrust\.toml:3: databases\[0\]\.prefix: prefix cannot be set on a glob that matches several files; use \{name\} or leave it out$/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nretention = { hourly = 0, daily = 0, weekly = 0, monthly = 0, pitr_window = 0 }\n',
      /^walrust\.toml:3: databases\[0\]\.retention: keeps nothing/,
    ],
    [
      '[[databases]]\npath = "/a.db"\nwal_sync_interval = 0\n',
      /^walrust\.toml:3: databases\[0\]\.wal_sync_interval: must be greater than 0/,
    ],
  ];
  for (const [toml, re] of cases) await rejects(toml, re);
});

Deno.test("env: $VAR and ${VAR} expand before parsing; unset is empty; $$ is $", async () => {
  const c = await load(
    `[s3]
bucket = "s3://$BUCKET/\${PREFIX}x"
region = "r$UNSET_VAR"
[sync]
wal_sync_interval = $INTERVAL
[[webhooks]]
url = "https://h/$$HOOK"
secret = "\${SECRET}"
`,
    { BUCKET: "bkt", PREFIX: "pre/", INTERVAL: "0.25", SECRET: "s3cr3t" },
  );
  assert.equal(c.s3.bucket, "s3://bkt/pre/x");
  assert.equal(c.s3.region, "r");
  assert.equal(c.sync.walSyncIntervalMs, 250);
  assert.equal(c.webhooks[0].url, "https://h/$HOOK");
  assert.equal(c.webhooks[0].secret, "s3cr3t");
});

Deno.test("env: a malformed ${...} is an error with its line", async () => {
  await rejects(
    '[s3]\nregion = "${1BAD}"\n',
    /^walrust\.toml:2: bad variable reference "\$\{1BAD\}"/,
  );
  await rejects('[s3]\n\nregion = "${OPEN"\n', /^walrust\.toml:3: bad variable reference/);
});

Deno.test("env: the process environment is the default source", async () => {
  await inTempDir(async (dir) => {
    Deno.env.set("WALRUST_CONFIG_TEST_REGION", "ap-south-1");
    try {
      await Deno.writeTextFile(
        join(dir, "w.toml"),
        '[s3]\nregion = "$WALRUST_CONFIG_TEST_REGION"\n',
      );
      assert.equal((await loadConfig("w.toml", { cwd: dir })).s3.region, "ap-south-1");
    } finally {
      Deno.env.delete("WALRUST_CONFIG_TEST_REGION");
    }
  });
});

Deno.test("syntax errors: one line with smol-toml's line and column", async () => {
  await rejects(
    '[sync]\nwal_sync_interval = 1\nformat = = "x"\n',
    /^walrust\.toml:3:\d+: invalid TOML: /,
  );
  await rejects("[sync]\n[sync]\n", /^walrust\.toml:2:\d+: invalid TOML: /);
});

Deno.test("webhooks: events default to all; sync_failed is normalised to upload_failed", async () => {
  const c = await load(`
[[webhooks]]
url = "https://a.example/hook"
[[webhooks]]
url = "http://b.example/hook"
events = ["sync_failed", "upload_failed", "circuit_breaker_closed"]
secret = "k"
`);
  assert.equal(c.webhooks[0].events.length, 8);
  assert.ok(c.webhooks[0].events.includes("validation_failed"));
  assert.equal(c.webhooks[0].secret, undefined);
  assert.deepEqual(c.webhooks[1].events, ["upload_failed", "circuit_breaker_closed"]);
  assert.equal(c.webhooks[1].secret, "k");
});

Deno.test("databases: entries keep path, prefix, overrides and their line", async () => {
  const c = await load(`[sync]
snapshot_interval = 60

[[databases]]
path = "data/app.db"

[[databases]]
prefix = "tenants/{name}"
path = "/srv/tenants/*.db"
format = "block"
retention = { hourly = 2, pitr_window = "1h" }
`);
  assert.equal(c.databases.length, 2);
  assert.deepEqual(c.databases[0], { path: "data/app.db", sync: {}, line: 5 });
  assert.deepEqual(c.databases[1], {
    path: "/srv/tenants/*.db",
    prefix: "tenants/{name}",
    sync: { format: "block" },
    retention: { hourly: 2, pitrWindowMs: 3_600_000 },
    line: 9,
  });
});

Deno.test("[compaction] levels and [retention] enabled / prune_interval; validation_interval", () => {
  const c = parseConfig(
    `[sync]
validation_interval = "10m"
[compaction]
levels = ["10s", 60, "1h"]
[retention]
enabled = false
prune_interval = "30m"
`,
    { file: "walrust.toml", env: {} },
  );
  assert.equal(c.sync.validationIntervalMs, 600_000);
  assert.deepEqual(c.maintenance, {
    compactionLevelsMs: [10_000, 60_000, 3_600_000],
    retentionEnabled: false,
    pruneIntervalMs: 1_800_000,
  });
  assert.deepEqual(
    parseConfig("[compaction]\nlevels = []\n", { file: "walrust.toml", env: {} }).maintenance,
    {
      compactionLevelsMs: [],
    },
  );
  const bad = (text: string, re: RegExp) =>
    assert.throws(
      () => parseConfig(text, { file: "walrust.toml", env: {} }),
      (e: Error) => re.test(e.message),
    );
  bad('[compaction]\nlevels = "30s"\n', /compaction\.levels.*expected an array of intervals/);
  bad('[compaction]\nlevels = ["0s"]\n', /compaction\.levels\[0\].*greater than 0/);
  bad("[compaction]\nlevel = []\n", /compaction\.level.*did you mean levels/);
  bad("[sync]\nprune_interval = 5\n", /prune_interval.*belongs in \[retention\]/);
});

Deno.test("[age] and a database's age: recipients, identities, identity_file (relative to the config)", async () => {
  const c = await load(
    `[age]\nrecipients = ["age1aaa"]\nidentity_file = "keys/age.txt"\n` +
      `[[databases]]\npath = "/a.db"\n[[databases]]\npath = "/b.db"\nage = {}\n` +
      `[[databases]]\npath = "/c.db"\nage = { identities = ["AGE-SECRET-KEY-1X"] }\n`,
  );
  assert.equal(c.age?.recipients?.[0], "age1aaa");
  assert.ok(c.age?.identityFiles?.[0].endsWith("/keys/age.txt"));
  assert.ok(c.age?.identityFiles?.[0].startsWith("/"));
  assert.equal(c.databases[0].age, undefined);
  assert.deepEqual(c.databases[1].age, {});
  assert.deepEqual(c.databases[2].age, { identities: ["AGE-SECRET-KEY-1X"] });
  await rejects(`[age]\nrecipient = ["age1aaa"]\n`, /age\.recipient: unknown key.*recipients/);
  await rejects(`[age]\nidentities = [1]\n`, /age\.identities: expected a list of age secret keys/);
});
