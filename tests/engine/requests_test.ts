/**
 * Snapshot requests are polled through the state folder's mtime (one stat that succeeds per
 * database and tick): a request written at any moment is seen on the next poll, also right after
 * the previous poll and in the same millisecond as other writes to the folder.
 */
import assert from "node:assert/strict";
import { LocalState } from "../../src/engine/localstate.ts";
import { SnapshotRequestPoll, takeSnapshotRequest } from "../../src/engine/requests.ts";
import { atomicWriteFile } from "../../src/fsutil.ts";

Deno.test("a snapshot request is seen on the next poll, however soon after another write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-requests-" });
  try {
    const state = new LocalState(`${dir}/app.db`);
    await state.init();
    const poll = new SnapshotRequestPoll(state);
    const id = () => crypto.randomUUID();
    assert.equal(poll.pending(), false);
    for (let round = 0; round < 50; round++) {
      // Another write to the folder (the position record), polled, then the request at once.
      await atomicWriteFile(`${state.dir}/other-${round % 2}`, new Uint8Array([round]));
      assert.equal(poll.pending(), false);
      const want = id();
      await atomicWriteFile(`${state.dir}/snapshot-request`, new TextEncoder().encode(want));
      assert.equal(poll.pending(), true, `round ${round}`);
      assert.equal(takeSnapshotRequest(state), want);
      assert.equal(poll.pending(), false);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
