import assert from "node:assert/strict";
import { healthOf } from "../../src/observe/health.ts";

const NOW = Date.UTC(2026, 11, 1, 12);
const db = (over: Record<string, unknown> = {}) => ({
  name: "app.db",
  txid: 10,
  replicaTXID: 10,
  pendingUploads: 0,
  lagSeconds: 0,
  lastSyncAt: new Date(NOW - 500),
  ...over,
});
const ok = { breaker: "closed", stats: { lastSuccessAt: NOW - 1000 } };
const inputs = { now: NOW, startedAt: NOW - 90_000, maxLagMs: 60_000, errorsLastHour: () => 2 };

Deno.test("health: caught up and storage answering is healthy", () => {
  const h = healthOf([db()], ok, inputs);
  assert.equal(h.status, "healthy");
  assert.equal(h.uptime_seconds, 90);
  assert.deepEqual(h.databases["app.db"], {
    status: "healthy",
    txid: 10,
    replica_txid: 10,
    lag_seconds: 0,
    last_sync: new Date(NOW - 500).toISOString(),
    errors_last_hour: 2,
  });
  assert.deepEqual(h.storage, {
    reachable: true,
    breaker: "closed",
    last_success: new Date(NOW - 1000).toISOString(),
  });
});

Deno.test("health: storage failing is degraded, then unhealthy past max_lag", () => {
  const failing = (ms: number) => ({ breaker: "open", stats: { failingSince: NOW - ms } });
  const h = healthOf([db({ pendingUploads: 3, lagSeconds: 5 })], failing(5_000), inputs);
  assert.equal(h.status, "degraded");
  assert.equal(h.databases["app.db"].status, "degraded");
  assert.equal(h.storage.reachable, false);
  assert.equal(healthOf([db()], failing(61_000), inputs).status, "unhealthy");
});

Deno.test("health: lag past max_lag or a stopped database is unhealthy", () => {
  assert.equal(healthOf([db({ lagSeconds: 61 })], ok, inputs).status, "unhealthy");
  const stopped = healthOf([db(), db({ name: "b.db", failed: "deleted" })], ok, inputs);
  assert.equal(stopped.status, "unhealthy");
  assert.equal(stopped.databases["app.db"].status, "healthy");
  assert.equal(stopped.databases["b.db"].error, "deleted");
});
