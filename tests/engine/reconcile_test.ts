/** The start-up decision against the replica (reconcile.ts) and the checkpoint policy, one rule per test. */
import assert from "node:assert/strict";
import { chainEnd, type ChainFile, reconcile } from "../../src/engine/reconcile.ts";
import { checkpointDue } from "../../src/engine/checkpoint.ts";
import { DEFAULT_SYNC } from "../../src/config/schema.ts";

const l0 = (txid: number, size = 100): ChainFile => ({
  level: 0,
  minTXID: txid,
  maxTXID: txid,
  size,
});
const snap = (txid: number): ChainFile => ({ level: 9, minTXID: 1, maxTXID: txid, size: 5000 });
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => l0(a + i));

Deno.test("chainEnd: the newest snapshot extended greedily; 0 when nothing starts at TXID 1", () => {
  assert.equal(chainEnd([]), 0);
  assert.equal(chainEnd(range(2, 5)), 0);
  assert.equal(chainEnd(range(1, 5)), 5);
  assert.equal(chainEnd([snap(3), ...range(4, 6), l0(8)]), 6);
  assert.equal(chainEnd([snap(10), ...range(1, 4)]), 10);
  assert.equal(chainEnd([{ level: 1, minTXID: 1, maxTXID: 7, size: 1 }, l0(8)]), 8);
});

Deno.test("reconcile: a replica that continues the local queue is uploaded to as it is", () => {
  const d = reconcile([snap(3), ...range(1, 5)], {
    txid: 8,
    queue: range(6, 8),
    lastUploaded: l0(5),
  });
  assert.deepEqual(d, { kind: "continue", replicaTXID: 5 });
});

Deno.test("reconcile: an idle restart with nothing queued continues", () => {
  assert.deepEqual(reconcile(range(1, 5), { txid: 5, queue: [], lastUploaded: l0(5) }), {
    kind: "continue",
    replicaTXID: 5,
  });
});

Deno.test("reconcile: a first start against an empty replica continues (the resume snapshots)", () => {
  assert.deepEqual(reconcile([], { txid: 0, queue: [] }), { kind: "continue", replicaTXID: 0 });
});

Deno.test("reconcile: an empty replica (bucket switched) with nothing queued gets a snapshot", () => {
  const d = reconcile([], { txid: 12, queue: [], lastUploaded: l0(12) });
  assert.equal(d.kind, "snapshot");
  assert.equal(d.kind === "snapshot" && d.afterTXID, 12);
});

Deno.test("reconcile: an empty replica takes a queue that starts from TXID 1 (storage was down at the first start)", () => {
  const d = reconcile([], { txid: 3, queue: [l0(1), snap(1), l0(2), l0(3)] });
  assert.deepEqual(d, { kind: "continue", replicaTXID: 0 });
});

Deno.test("reconcile: a replica ahead of local state gets a snapshot above its newest TXID", () => {
  const d = reconcile(range(1, 40), { txid: 30, queue: [], lastUploaded: l0(30) });
  assert.equal(d.kind, "snapshot");
  assert.equal(d.kind === "snapshot" && d.afterTXID, 40);
  assert.equal(d.kind === "snapshot" && d.alarming, true);
});

Deno.test("reconcile: no local state and a replica with data: snapshot above it, not alarming", () => {
  const d = reconcile(range(1, 9), { txid: 0, queue: [] });
  assert.deepEqual(d.kind === "snapshot" && [d.afterTXID, d.alarming], [9, false]);
});

Deno.test("reconcile: a replica whose file at our TXID differs (another writer) has diverged", () => {
  const d = reconcile([...range(1, 4), l0(5, 999)], { txid: 5, queue: [], lastUploaded: l0(5) });
  assert.equal(d.kind, "snapshot");
  assert.equal(d.kind === "snapshot" && d.afterTXID, 5);
});

Deno.test("reconcile: a replica with a gap (files lost) gets a snapshot", () => {
  const d = reconcile([snap(2), ...range(1, 3), ...range(6, 9)], {
    txid: 9,
    queue: [],
    lastUploaded: l0(9),
  });
  assert.equal(d.kind, "snapshot");
  assert.equal(d.kind === "snapshot" && d.afterTXID, 9);
});

Deno.test("reconcile: a replica behind whose end the queue does not reach gets a snapshot", () => {
  const d = reconcile(range(1, 3), { txid: 9, queue: range(7, 9), lastUploaded: l0(6) });
  assert.equal(d.kind, "snapshot");
  assert.equal(d.kind === "snapshot" && d.afterTXID, 9);
});

Deno.test("reconcile: a replica behind that the queue bridges is continued", () => {
  const d = reconcile(range(1, 6), { txid: 9, queue: range(5, 9), lastUploaded: l0(4) });
  assert.deepEqual(d, { kind: "continue", replicaTXID: 6 });
});

Deno.test("checkpointDue: TRUNCATE past the threshold, PASSIVE past the page count or the interval", () => {
  const s = DEFAULT_SYNC;
  const base = { frames: 0, sinceCheckpointMs: 0, syncedSinceCheckpoint: false };
  assert.equal(checkpointDue(s, base), undefined);
  assert.equal(checkpointDue(s, { ...base, frames: s.walTruncateThresholdPages }), "TRUNCATE");
  assert.equal(checkpointDue(s, { ...base, frames: s.minCheckpointPageCount }), "PASSIVE");
  const later = {
    frames: 5,
    sinceCheckpointMs: s.checkpointIntervalMs,
    syncedSinceCheckpoint: true,
  };
  assert.equal(checkpointDue(s, later), "PASSIVE");
  assert.equal(checkpointDue(s, { ...later, syncedSinceCheckpoint: false }), undefined);
});

Deno.test("reconcile: a listing taken while the last upload was in flight misses it; still continues", () => {
  // The upload of TXID 6 finished after the listing began: not listed, no longer queued.
  const d = reconcile([snap(3), ...range(1, 5)], {
    txid: 6,
    queue: [],
    lastUploaded: l0(6),
    uploadedWhileListing: l0(6),
  });
  assert.deepEqual(d, { kind: "continue", replicaTXID: 6 });
  // The same file uploaded before the listing (to another replica, say) is not taken on trust.
  const other = reconcile([snap(3), ...range(1, 5)], { txid: 6, queue: [], lastUploaded: l0(6) });
  assert.equal(other.kind, "snapshot");
});

Deno.test("reconcile: an emptied replica is not trusted to hold the last upload", () => {
  const d = reconcile([], { txid: 1, queue: [], lastUploaded: l0(1) });
  assert.equal(d.kind, "snapshot");
});
