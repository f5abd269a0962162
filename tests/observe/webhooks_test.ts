/** WebhookSender against a real local receiver: signature, payload, retries, filtering, queue. */

import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { WEBHOOK_EVENTS, type WebhookSettings } from "../../src/config/schema.ts";
import { Logger } from "../../src/observe/log.ts";
import { signBody, WebhookSender, type WebhookSenderOptions } from "../../src/observe/webhooks.ts";
import { VERSION } from "../../src/version.ts";
import { type FaultServer, startFaultServer } from "../helpers/http_fault_server.ts";

const dec = new TextDecoder();

interface Rig {
  server: FaultServer;
  sender: WebhookSender;
  delays: number[];
  logs: string[];
  /** Bodies received on `path`, parsed. */
  received(path?: string): Record<string, unknown>[];
}

async function withRig(
  hooks: (url: string) => WebhookSettings[],
  fn: (r: Rig) => Promise<void>,
  opts: WebhookSenderOptions & { slowMs?: number } = {},
): Promise<void> {
  const server = await startFaultServer({ slowMs: opts.slowMs });
  const delays: number[] = [];
  const logs: string[] = [];
  const sender = new WebhookSender(hooks(server.url), {
    sleep: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    log: new Logger({ level: "debug", write: (l) => logs.push(l) }),
    ...opts,
  });
  const received = (path = "/hook") =>
    server.requests.filter((q) => q.path === path).map((q) => JSON.parse(dec.decode(q.body)));
  try {
    await fn({ server, sender, delays, logs, received });
  } finally {
    await server.close(); // ends slow answers, so the flush below returns at once
    await sender.flush(5000);
  }
}

const hook = (url: string, over: Partial<WebhookSettings> = {}): WebhookSettings => ({
  url: `${url}/hook`,
  events: [...WEBHOOK_EVENTS],
  ...over,
});

Deno.test("delivers a signed JSON payload that verifies independently", async () => {
  const secret = "whsec-test-0123456789";
  await withRig((u) => [hook(u, { secret })], async (r) => {
    r.sender.send("upload_failed", {
      database: "/data/app.db",
      error: "s3://b/p: put 0000/x.ltx: HTTP 503",
      attempts: 6,
      context: { key: "0000/x.ltx", level: 0 },
    });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 1);
    const req = r.server.requests[0];
    assert.equal(req.method, "POST");
    assert.equal(req.headers.get("content-type"), "application/json");
    assert.equal(req.headers.get("user-agent"), `walrust/${VERSION}`);

    const header = req.headers.get("x-walrust-signature") ?? "";
    assert.match(header, /^sha256=[0-9a-f]{64}$/);
    assert.equal(header.length, 71);
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    const mac = Uint8Array.from(header.slice(7).match(/../g)!.map((h) => parseInt(h, 16)));
    assert.ok(await crypto.subtle.verify("HMAC", key, mac, req.body), "HMAC of the exact body");
    assert.equal(await signBody(secret, dec.decode(req.body)), header);

    const p = JSON.parse(dec.decode(req.body));
    assert.deepEqual(Object.keys(p).sort(), [
      "attempts",
      "context",
      "database",
      "error",
      "event",
      "timestamp",
      "version",
    ]);
    assert.equal(p.event, "upload_failed");
    assert.equal(p.database, "/data/app.db");
    assert.equal(p.error, "s3://b/p: put 0000/x.ltx: HTTP 503");
    assert.equal(p.attempts, 6);
    assert.equal(p.version, VERSION);
    assert.deepEqual(p.context, { key: "0000/x.ltx", level: 0 });
    assert.match(p.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.ok(Math.abs(Date.parse(p.timestamp) - Date.now()) < 60_000);
  });
});

Deno.test("no signature header without a secret; defaults for error and attempts", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.sender.send("circuit_breaker_closed", { database: "db" });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 1);
    assert.equal(r.server.requests[0].headers.has("x-walrust-signature"), false);
    const [p] = r.received();
    assert.equal(p.error, "");
    assert.equal(p.attempts, 1);
    assert.equal("context" in p, false);
  });
});

Deno.test("retried when the receiver fails with 500, then 200", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.script(["500", "503", "429"]);
    r.sender.send("auth_failure", { database: "db", error: "denied" });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 4, "3 failures + 1 success");
    assert.equal(r.sender.stats.delivered, 1);
    assert.equal(r.delays.length, 3);
    r.delays.forEach((d, k) => assert.ok(d >= 0 && d <= 500 * 2 ** k, `delay ${k}: ${d}`));
  });
});

Deno.test("gives up after maxAttempts and logs one warning without the URL path", async () => {
  await withRig((u) => [{ ...hook(u), url: `${u}/hook?token=T0PS3CRET` }], async (r) => {
    r.server.setMode("503");
    r.sender.send("auth_failure", { database: "db" });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 3);
    assert.equal(r.sender.stats.failed, 1);
    const warns = r.logs.filter((l) => l.includes("webhook delivery failed"));
    assert.equal(warns.length, 1);
    assert.ok(!warns[0].includes("T0PS3CRET"));
  }, { maxAttempts: 3 });
});

Deno.test("400 is not retried", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.setMode("400");
    r.sender.send("upload_failed", { database: "db" });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 1);
    assert.equal(r.delays.length, 0);
    assert.equal(r.sender.stats.failed, 1);
  });
});

Deno.test("a network error is retried", async () => {
  const gone = await startFaultServer();
  await gone.close();
  const delays: number[] = [];
  const sender = new WebhookSender([hook(gone.url)], {
    maxAttempts: 3,
    sleep: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    log: new Logger({ write: () => {} }),
  });
  sender.send("upload_failed", { database: "db" });
  await sender.flush();
  assert.equal(delays.length, 2);
  assert.equal(sender.stats.failed, 1);
});

Deno.test("a receiver slower than the timeout counts as a failed attempt", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.setMode("slow");
    r.sender.send("upload_failed", { database: "db" });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 2);
    assert.equal(r.sender.stats.failed, 1);
  }, { timeoutMs: 100, maxAttempts: 2, slowMs: 10_000 });
});

Deno.test("only subscribed events are sent", async () => {
  await withRig((u) => [
    { url: `${u}/a`, events: ["auth_failure"] },
    { url: `${u}/b`, events: ["upload_failed", "corruption_detected"] },
  ], async (r) => {
    r.sender.send("upload_failed", { database: "db" });
    r.sender.send("wal_size_exceeded", { database: "db" });
    r.sender.send("auth_failure", { database: "db" });
    await r.sender.flush();
    assert.deepEqual(r.received("/a").map((p) => p.event), ["auth_failure"]);
    assert.deepEqual(r.received("/b").map((p) => p.event), ["upload_failed"]);
    assert.equal(r.server.requests.length, 2);
  });
});

Deno.test("a hook subscribed with the sync_failed alias receives upload_failed", async () => {
  await withRig((u) => {
    const cfg = parseConfig(
      `[[webhooks]]\nurl = "${u}/hook"\nevents = ["sync_failed"]\n`,
      { file: "walrust.toml" },
    );
    return cfg.webhooks;
  }, async (r) => {
    r.sender.send("upload_failed", { database: "db" });
    r.sender.send("auth_failure", { database: "db" });
    await r.sender.flush();
    assert.deepEqual(r.received().map((p) => p.event), ["upload_failed"]);
  });
});

Deno.test("send() returns before a slow receiver answers", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.setMode("slow");
    const result: unknown = r.sender.send("corruption_detected", { database: "db" });
    assert.equal(result, undefined, "not a promise the caller could be made to await");
    assert.equal(r.server.responses, 0, "the receiver has not answered yet");
    assert.equal(r.sender.stats.pending, 1);
    await r.sender.flush();
    assert.equal(r.server.responses, 1);
    assert.equal(r.sender.stats.delivered, 1);
  }, { slowMs: 300 });
});

Deno.test("flush() is bounded by its deadline", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.setMode("slow");
    r.sender.send("upload_failed", { database: "db" });
    await r.sender.flush(50);
    assert.equal(r.sender.stats.pending, 1, "returned while the delivery was still in flight");
  }, { slowMs: 10_000 });
});

Deno.test("the queue is bounded: the oldest pending deliveries are dropped, one warning", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.server.setMode("slow");
    for (let i = 0; i < 10; i++) r.sender.send("upload_failed", { database: `db${i}` });
    assert.equal(r.sender.stats.dropped, 6, "1 in flight + 3 queued of 10");
    assert.equal(r.logs.filter((l) => l.includes("webhook queue full")).length, 1);
    r.server.setMode("ok");
    await r.sender.flush();
    assert.deepEqual(r.received().map((p) => p.database), ["db0", "db7", "db8", "db9"]);
  }, { concurrency: 1, maxPending: 3, slowMs: 200 });
});

Deno.test("the payload error and context are redacted, secrets included", async () => {
  const secret = "whsec-never-in-body";
  await withRig((u) => [hook(u, { secret })], async (r) => {
    r.sender.send("upload_failed", {
      database: "db",
      error: `GET https://b/k?X-Amz-Signature=abcdef0123456789 failed (${secret})`,
      context: { url: "https://user:pa55word@host/x", nested: ["AWS_SECRET_ACCESS_KEY=zzzzzzzz"] },
    });
    await r.sender.flush();
    const text = dec.decode(r.server.requests[0].body);
    for (const s of ["abcdef0123456789", secret, "pa55word", "zzzzzzzz"]) {
      assert.ok(!text.includes(s), `${s} in ${text}`);
    }
    assert.match(JSON.parse(text).error, /X-Amz-Signature=\[REDACTED\]/);
  });
});

Deno.test("send() never throws, even for a context JSON cannot encode", async () => {
  await withRig((u) => [hook(u)], async (r) => {
    r.sender.send("upload_failed", { database: "db", context: { n: 1n } });
    await r.sender.flush();
    assert.equal(r.server.requests.length, 0);
    assert.equal(r.logs.filter((l) => l.includes("webhook not sent")).length, 1);
  });
});
