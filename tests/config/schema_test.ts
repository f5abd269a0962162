import assert from "node:assert/strict";
import {
  DEFAULT_RETENTION,
  DEFAULT_RETRY,
  DEFAULT_SYNC,
  resolveCache,
  resolveLog,
  resolveMaintenance,
  resolveMetrics,
  resolveRetention,
  resolveRetry,
  resolveSync,
  type SyncSettings,
} from "../../src/config/schema.ts";

Deno.test("defaults: the documented built-in values", () => {
  assert.deepEqual(resolveSync(), {
    walSyncIntervalMs: 1000,
    snapshotIntervalMs: 3_600_000,
    checkpointIntervalMs: 60_000,
    minCheckpointPageCount: 1000,
    walTruncateThresholdPages: 121_359,
    maxSyncWalBytes: 64 * 1024 * 1024,
    busyTimeoutMs: 5000,
    format: "legacy",
    l0RetentionMs: 300_000,
    onStartup: true,
    validationIntervalMs: 0,
  });
  assert.deepEqual(resolveMaintenance(), {
    compactionLevelsMs: [30_000, 300_000, 3_600_000],
    retentionEnabled: true,
    pruneIntervalMs: 3_600_000,
  });
  assert.deepEqual(resolveRetention(), {
    hourly: 24,
    daily: 7,
    weekly: 12,
    monthly: 12,
    pitrWindowMs: 86_400_000,
  });
  assert.deepEqual(resolveRetry(), {
    maxRetries: 5,
    baseDelayMs: 100,
    maxDelayMs: 30_000,
    circuitBreakerEnabled: true,
    circuitBreakerThreshold: 10,
    circuitBreakerCooldownMs: 60_000,
  });
  assert.deepEqual(resolveCache(), { maxSize: 5 * 1024 ** 3 });
  assert.deepEqual(resolveMetrics(), {
    enabled: true,
    port: 16767,
    host: "127.0.0.1",
    process: false,
    maxLagMs: 60_000,
  });
  assert.deepEqual(resolveLog(), { format: "text", level: "info" });
});

Deno.test("precedence: later layers win, undefined never overrides", () => {
  const global: Partial<SyncSettings> = { walSyncIntervalMs: 2000, snapshotIntervalMs: 60_000 };
  const perDb: Partial<SyncSettings> = { walSyncIntervalMs: 500 };
  // A flag parser hands over keys for every flag, given or not.
  const flags: Partial<SyncSettings> = { walSyncIntervalMs: undefined, busyTimeoutMs: 10 };
  const s = resolveSync(global, perDb, flags);
  assert.equal(s.walSyncIntervalMs, 500);
  assert.equal(s.snapshotIntervalMs, 60_000);
  assert.equal(s.busyTimeoutMs, 10);
  assert.equal(s.checkpointIntervalMs, DEFAULT_SYNC.checkpointIntervalMs);
  assert.equal(resolveSync(global, perDb, { walSyncIntervalMs: 100 }).walSyncIntervalMs, 100);
});

Deno.test("precedence: false and 0 are values, not unset", () => {
  const s = resolveSync({ onStartup: false, walTruncateThresholdPages: 0 });
  assert.equal(s.onStartup, false);
  assert.equal(s.walTruncateThresholdPages, 0);
  assert.equal(resolveRetry({ circuitBreakerEnabled: false }).circuitBreakerEnabled, false);
});

Deno.test("defaults are not mutated by resolving", () => {
  const s = resolveSync({ format: "block" });
  s.walSyncIntervalMs = 1;
  assert.equal(DEFAULT_SYNC.walSyncIntervalMs, 1000);
  assert.equal(DEFAULT_SYNC.format, "legacy");
  assert.throws(() => {
    (DEFAULT_RETENTION as { hourly: number }).hourly = 1;
  });
  assert.equal(resolveRetention(undefined, { daily: 1 }).daily, 1);
  assert.equal(DEFAULT_RETRY.maxRetries, 5);
});
