import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, parseConfig } from "../../src/config/load.ts";
import {
  DEFAULT_SHUTDOWN_DRAIN_MS,
  DEFAULT_UPLOAD_CONCURRENCY,
  resolveCache,
  resolveLog,
  resolveMetrics,
  resolveRetention,
  resolveRetry,
  resolveSync,
} from "../../src/config/schema.ts";

const EXAMPLE = fileURLToPath(new URL("../../walrust.toml.example", import.meta.url));

Deno.test("walrust.toml.example loads as shipped and states the built-in defaults", async () => {
  const c = await loadConfig(EXAMPLE, { env: {} });
  assert.equal(c.allowEmptyGlobs, false);
  assert.deepEqual(c.s3, {});
  assert.deepEqual(c.databases, []);
  assert.deepEqual(c.webhooks, []);
  // Every value written in the example equals the default it documents.
  assert.deepEqual(resolveSync(c.sync), resolveSync());
  assert.equal(Object.keys(c.sync).length, Object.keys(resolveSync()).length);
  assert.equal(c.uploadConcurrency, DEFAULT_UPLOAD_CONCURRENCY);
  assert.equal(c.shutdownDrainMs, DEFAULT_SHUTDOWN_DRAIN_MS);
  assert.deepEqual(resolveRetention(c.retention), resolveRetention());
  assert.equal(Object.keys(c.retention).length, Object.keys(resolveRetention()).length);
  assert.deepEqual(resolveRetry(c.retry), resolveRetry());
  assert.equal(Object.keys(c.retry).length, Object.keys(resolveRetry()).length);
  assert.deepEqual(resolveCache(c.cache), resolveCache());
  assert.deepEqual(resolveMetrics(c.metrics), resolveMetrics());
  assert.deepEqual(c.metrics, resolveMetrics());
  assert.deepEqual(resolveLog(c.log), resolveLog());
  assert.deepEqual(c.log, resolveLog());
});

Deno.test("walrust.toml.example: every commented-out setting is valid when enabled", async () => {
  const text = await Deno.readTextFile(EXAMPLE);
  // Optional settings are "#key = ..." / "#[table]" (no space); prose comments are "# ...".
  const enabled = text.replace(/^#(?=[^\s#])/gm, "");
  assert.notEqual(enabled, text);
  const c = parseConfig(enabled, {
    file: "walrust.toml.example",
    path: join(Deno.cwd(), "walrust.toml"),
    env: { WALRUST_WEBHOOK_SECRET: "hush" },
  });
  assert.equal(c.s3.bucket, "s3://my-bucket/walrust");
  assert.equal(c.s3.forcePathStyle, true);
  assert.equal(c.cache.path, "/var/lib/walrust");
  assert.equal(c.webhooks.length, 1);
  assert.equal(c.webhooks[0].secret, "hush");
  assert.equal(c.databases.length, 2);
  assert.equal(c.databases[0].sync.walSyncIntervalMs, 100);
  assert.deepEqual(c.databases[0].retention, { hourly: 48, pitrWindowMs: 172_800_000 });
  assert.equal(c.databases[1].prefix, "tenants/{name}");
  assert.equal(c.databases[1].sync.format, "block");
  assert.equal(c.age?.recipients?.length, 1);
  assert.equal(c.age?.identityFiles?.[0], "/etc/walrust/age.key");
});
