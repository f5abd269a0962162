/**
 * ResilientStorage over real HTTP: retries, classification by type, backoff bounds and the
 * circuit breaker (including the two walrust bugs we must not copy: a breaker that never re-opens
 * and an unlimited half-open state).
 */

import assert from "node:assert/strict";
import { DEFAULT_RETRY, type RetrySettings } from "../../src/config/schema.ts";
import { AuthError, ExitCode, exitCodeOf, NotFoundError, StorageError } from "../../src/errors.ts";
import { Logger } from "../../src/observe/log.ts";
import { readAll, type Storage } from "../../src/storage/port.ts";
import {
  attemptsOf,
  backoffDelay,
  CircuitBreaker,
  CircuitOpenError,
  redact,
  ResilientStorage,
} from "../../src/storage/resilient.ts";
import {
  type FaultServer,
  HttpStorage,
  type HttpStorageOptions,
  startFaultServer,
} from "../helpers/http_fault_server.ts";

const enc = new TextEncoder();

/** Everything a test needs: a server, a wrapped HttpStorage, a fake clock and event records. */
interface Rig {
  server: FaultServer;
  storage: ResilientStorage;
  delays: number[];
  clock: { now: number };
  events: {
    opened: { failures: number; lastError: string }[];
    closed: number;
    auth: StorageError[];
    retries: { op: string; attempt: number; delayMs: number }[];
  };
  logs: string[];
  /** Requests that reached the server with this method (and path prefix). */
  count(method?: string, pathPrefix?: string): number;
}

async function withRig(
  settings: Partial<RetrySettings>,
  fn: (r: Rig) => Promise<void>,
  opts: { http?: HttpStorageOptions; slowMs?: number; random?: () => number } = {},
): Promise<void> {
  const server = await startFaultServer({ slowMs: opts.slowMs });
  const delays: number[] = [];
  const clock = { now: Date.parse("2025-01-01T00:00:00Z") };
  const logs: string[] = [];
  const events: Rig["events"] = { opened: [], closed: 0, auth: [], retries: [] };
  const storage = new ResilientStorage(
    new HttpStorage(server.url, opts.http),
    { ...DEFAULT_RETRY, ...settings },
    {
      onBreakerOpen: (i) => events.opened.push(i),
      onBreakerClosed: () => events.closed++,
      onAuthFailure: (e) => events.auth.push(e),
      onRetry: (i) => events.retries.push({ op: i.op, attempt: i.attempt, delayMs: i.delayMs }),
      log: new Logger({ level: "debug", format: "text", write: (l) => logs.push(l) }),
    },
    {
      sleep: (ms) => {
        delays.push(ms);
        return Promise.resolve();
      },
      random: opts.random ?? (() => 0.5),
      now: () => clock.now,
    },
  );
  const count = (method?: string, pathPrefix = "") =>
    server.requests.filter((q) =>
      (method === undefined || q.method === method) && q.path.startsWith(pathPrefix)
    ).length;
  try {
    await fn({ server, storage, delays, clock, events, logs, count });
  } finally {
    await server.close();
  }
}

const body = (s: string) => enc.encode(s);

async function rejects<T extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => T) {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    return err;
  }
  assert.fail(`expected ${cls.name}, but the call succeeded`);
}

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

/** Fail `n` operations (each with all its retries) against a 503 server. */
async function failOps(r: Rig, n: number): Promise<void> {
  r.server.setMode("503");
  for (let i = 0; i < n; i++) await rejects(r.storage.put(`f/${i}`, body("x")), StorageError);
}

Deno.test("retries a 503 and then succeeds: attempts = failures + 1", async () => {
  await withRig({ maxRetries: 5 }, async (r) => {
    r.server.script(["503", "503"]);
    await r.storage.put("a/b", body("hello"));
    assert.equal(r.count("PUT"), 3);
    assert.deepEqual(r.events.retries.map((x) => x.attempt), [1, 2]);
    assert.equal(new TextDecoder().decode(await readAll(await r.storage.get("a/b"))), "hello");
    assert.equal(r.storage.breaker?.failures, 0);
  });
});

Deno.test("gives up after max_retries with the last error, exit code 4", async () => {
  await withRig({ maxRetries: 3 }, async (r) => {
    r.server.script(["500", "500", "500"]);
    r.server.setMode("503");
    const err = await rejects(r.storage.put("k", body("x")), StorageError);
    assert.equal(r.count("PUT"), 4);
    assert.equal(err.status, 503, "the error of the last attempt");
    assert.equal(err.transient, true);
    assert.equal(exitCodeOf(err), ExitCode.Storage);
    assert.equal(attemptsOf(err), 4);
    assert.match(err.message, /\/bucket: put k: HTTP 503/, "names the bucket and the operation");
    assert.equal(r.delays.length, 3);
  });
});

Deno.test("403 is an AuthError: one request, no retry, onAuthFailure fired", async () => {
  await withRig({ maxRetries: 5 }, async (r) => {
    r.server.setMode("403");
    const err = await rejects(r.storage.put("k", body("x")), AuthError);
    assert.equal(r.count(), 1);
    assert.equal(r.delays.length, 0);
    assert.deepEqual(r.events.auth, [err]);
    assert.equal(exitCodeOf(err), ExitCode.Storage);
  });
});

Deno.test("404 is not retried and counts as a success for the breaker", async () => {
  await withRig({ maxRetries: 5, circuitBreakerThreshold: 1 }, async (r) => {
    await rejects(r.storage.get("missing"), NotFoundError);
    assert.equal(r.count("GET"), 1);
    assert.equal(await r.storage.head("missing"), undefined);
    assert.equal(r.count("HEAD"), 1);
    assert.equal(r.storage.breaker?.state, "closed");
    assert.equal(r.storage.breaker?.failures, 0);
  });
});

Deno.test("other 4xx is not retried", async () => {
  await withRig({ maxRetries: 5 }, async (r) => {
    r.server.setMode("400");
    const err = await rejects(r.storage.delete(["k"]), StorageError);
    assert.equal(err.transient, false);
    assert.equal(r.count(), 1);
  });
});

Deno.test("backoff delays follow the full-jitter bounds", async () => {
  const settings = { maxRetries: 6, baseDelayMs: 100, maxDelayMs: 1000 };
  const caps = [100, 200, 400, 800, 1000, 1000];
  // random() close to 1 puts every delay at its cap: a wrong exponent or cap shows up.
  await withRig(settings, async (r) => {
    r.server.setMode("503");
    await rejects(r.storage.put("k", body("x")), StorageError);
    assert.equal(r.delays.length, 6);
    r.delays.forEach((d, k) => {
      assert.ok(d <= caps[k], `delay ${k} = ${d} > ${caps[k]}`);
      assert.ok(d >= caps[k] * 0.99, `delay ${k} = ${d} is not scaled by random() from ${caps[k]}`);
    });
    assert.deepEqual(r.events.retries.map((x) => x.delayMs), r.delays);
  }, { random: () => 0.999999 });
  await withRig(settings, async (r) => {
    r.server.setMode("503");
    await rejects(r.storage.put("k", body("x")), StorageError);
    assert.deepEqual(r.delays, [0, 0, 0, 0, 0, 0], "full jitter starts at 0");
  }, { random: () => 0 });
  for (let k = 0; k < 40; k++) {
    const d = backoffDelay(k, 100, 30_000);
    assert.ok(d >= 0 && d <= Math.min(30_000, 100 * 2 ** k), `k=${k}: ${d}`);
  }
});

Deno.test("breaker opens after N consecutive failed operations, then fails fast", async () => {
  await withRig({ maxRetries: 1, circuitBreakerThreshold: 3 }, async (r) => {
    await failOps(r, 2);
    assert.equal(r.storage.breaker?.state, "closed", "2 < threshold");
    assert.equal(r.count("PUT"), 4, "failed operations count after their retries");
    await failOps(r, 1);
    assert.equal(r.storage.breaker?.state, "open");
    assert.equal(r.events.opened.length, 1);
    assert.equal(r.events.opened[0].failures, 3);
    assert.match(r.events.opened[0].lastError, /HTTP 503/);

    const before = r.server.requests.length;
    r.server.setMode("ok");
    for (
      const call of [
        () => r.storage.put("x", body("x")),
        () => r.storage.get("x"),
        () => r.storage.head("x"),
        () => r.storage.delete(["x"]),
        () => drain(r.storage.list("")),
      ]
    ) {
      const err = await rejects(call(), CircuitOpenError);
      assert.ok(err instanceof StorageError && err.transient);
      assert.match(err.message, /circuit breaker open until 2025-01-01T00:01:00\.000Z/);
    }
    assert.equal(r.server.requests.length, before, "no request reaches the server while open");
    assert.equal(r.events.opened.length, 1, "fired once per transition, not per call");
    assert.equal(r.logs.filter((l) => l.includes("circuit breaker opened")).length, 1);
  });
});

Deno.test("a success in between resets the consecutive count", async () => {
  await withRig({ maxRetries: 0, circuitBreakerThreshold: 3 }, async (r) => {
    await failOps(r, 2);
    r.server.setMode("ok");
    await r.storage.put("ok", body("x"));
    await failOps(r, 2);
    assert.equal(r.storage.breaker?.state, "closed");
    await failOps(r, 1);
    assert.equal(r.storage.breaker?.state, "open");
  });
});

Deno.test("half-open lets exactly one probe through when 5 calls race; success closes", async () => {
  await withRig({ maxRetries: 0, circuitBreakerThreshold: 2 }, async (r) => {
    await failOps(r, 2);
    assert.equal(r.storage.breaker?.state, "open");
    r.clock.now += 60_000;
    assert.equal(r.storage.breaker?.state, "half-open");
    r.server.setMode("slow"); // the probe stays in flight while the others arrive
    const before = r.server.requests.length;
    const results = await Promise.allSettled(
      [0, 1, 2, 3, 4].map((i) => r.storage.put(`race/${i}`, body("x"))),
    );
    assert.equal(r.server.requests.length - before, 1, "exactly one request reached the server");
    assert.equal(results.filter((x) => x.status === "fulfilled").length, 1);
    for (const x of results) {
      if (x.status === "rejected") assert.ok(x.reason instanceof CircuitOpenError);
    }
    assert.equal(r.storage.breaker?.state, "closed");
    assert.equal(r.events.closed, 1);
    assert.equal(r.logs.filter((l) => l.includes("circuit breaker closed")).length, 1);
    await r.storage.put("after", body("x"));
    assert.equal(r.server.requests.length - before, 2, "closed: calls flow again");
  }, { slowMs: 100 });
});

Deno.test("a failed probe re-opens the breaker with a fresh cooldown", async () => {
  await withRig({ maxRetries: 3, circuitBreakerThreshold: 2 }, async (r) => {
    await failOps(r, 2);
    r.clock.now += 60_000;
    const before = r.server.requests.length;
    const err = await rejects(r.storage.put("probe", body("x")), StorageError);
    assert.ok(!(err instanceof CircuitOpenError));
    assert.equal(r.server.requests.length - before, 1, "the probe is one attempt");
    assert.equal(r.storage.breaker?.state, "open");
    assert.equal(
      r.storage.breaker?.openUntil?.getTime(),
      r.clock.now + 60_000,
      "a new cooldown from the probe failure",
    );
    r.server.setMode("ok");
    r.clock.now += 59_999;
    await rejects(r.storage.put("x", body("x")), CircuitOpenError);
    await rejects(r.storage.head("x"), CircuitOpenError);
    assert.equal(r.server.requests.length - before, 1, "no requests during the new cooldown");
    assert.equal(r.events.opened.length, 1, "one open event per outage");
    assert.equal(r.logs.filter((l) => l.includes("re-opened")).length, 1);
    r.clock.now += 1;
    await r.storage.put("x", body("x"));
    assert.equal(r.storage.breaker?.state, "closed");
    assert.equal(r.events.closed, 1);
  });
});

Deno.test("a stale result from before the breaker opened does not close it", () => {
  let now = 0;
  const b = new CircuitBreaker({ threshold: 1, cooldownMs: 10, now: () => now });
  const stale = b.acquire();
  b.failure(b.acquire());
  assert.equal(b.state, "open");
  now = 10;
  const probe = b.acquire();
  assert.equal(b.state, "half-open");
  b.success(stale);
  b.failure(stale);
  assert.equal(b.state, "half-open", "stale outcomes are ignored");
  assert.throws(() => b.acquire(), CircuitOpenError, "the probe still holds the slot");
  b.success(probe);
  assert.equal(b.state, "closed");
});

Deno.test("a non-storage error is not retried, not counted, and frees the probe slot", async () => {
  await withRig({ maxRetries: 5, circuitBreakerThreshold: 1 }, async (r) => {
    await failOps(r, 1);
    r.clock.now += 60_000;
    r.server.setMode("ok");
    const bad = (async function* () {
      yield body("a");
      throw new TypeError("caller's body broke");
    })();
    const before = r.server.requests.length;
    await rejects(r.storage.put("k", bad), TypeError);
    assert.equal(r.server.requests.length, before);
    assert.equal(r.storage.breaker?.state, "half-open");
    await r.storage.put("k", body("x"));
    assert.equal(r.storage.breaker?.state, "closed");
  });
});

Deno.test("disabled breaker never opens", async () => {
  await withRig(
    { maxRetries: 1, circuitBreakerEnabled: false, circuitBreakerThreshold: 1 },
    async (r) => {
      assert.equal(r.storage.breaker, undefined);
      await failOps(r, 5);
      assert.equal(r.count("PUT"), 10, "every operation reaches the server with its retry");
      assert.equal(r.events.opened.length, 0);
    },
  );
});

Deno.test("a put with an AsyncIterable body is not retried but is counted", async () => {
  await withRig({ maxRetries: 5, circuitBreakerThreshold: 2 }, async (r) => {
    r.server.setMode("503");
    const stream = (async function* () {
      yield body("part1");
      yield body("part2");
    })();
    const err = await rejects(r.storage.put("k", stream), StorageError);
    assert.equal(err.status, 503);
    assert.equal(r.count("PUT"), 1);
    assert.equal(r.delays.length, 0);
    assert.equal(r.storage.breaker?.failures, 1);
  });
});

Deno.test("get retries opening the stream", async () => {
  await withRig({ maxRetries: 2 }, async (r) => {
    await r.storage.put("g", body("payload"));
    r.server.script(["503"]);
    const data = await readAll(await r.storage.get("g", { offset: 1, length: 3 }));
    assert.equal(new TextDecoder().decode(data), "ayl");
    assert.equal(r.count("GET"), 2);
  });
});

Deno.test("list retries before the first item, not after", async () => {
  await withRig({ maxRetries: 3 }, async (r) => {
    for (const k of ["p/1", "p/2", "p/3", "p/4", "p/5"]) await r.storage.put(k, body(k));
    r.server.script(["503"]);
    const keys: string[] = [];
    for await (const o of r.storage.list("p/")) keys.push(o.key);
    assert.deepEqual(keys, ["p/1", "p/2", "p/3", "p/4", "p/5"]);
    assert.equal(r.count("GET", "/list"), 1 + 3, "one failed first page, then three pages");

    const listed = r.count("GET", "/list");
    r.server.script(["ok", "503"]); // the second page fails after two items were yielded
    const seen: string[] = [];
    const err = await rejects(
      (async () => {
        for await (const o of r.storage.list("p/")) seen.push(o.key);
      })(),
      StorageError,
    );
    assert.equal(err.status, 503);
    assert.deepEqual(seen, ["p/1", "p/2"]);
    assert.equal(r.count("GET", "/list") - listed, 2, "no retry after items were yielded");
  }, { http: { pageSize: 2 } });
});

Deno.test("a timed-out request is transient and retried", async () => {
  await withRig({ maxRetries: 2 }, async (r) => {
    r.server.setMode("slow");
    const err = await rejects(r.storage.head("k"), StorageError);
    assert.equal(err.transient, true);
    assert.equal(err.status, 408);
    assert.equal(r.count("HEAD"), 3);
  }, { http: { timeoutMs: 100 }, slowMs: 10_000 });
});

Deno.test("a refused connection is transient and retried", async () => {
  const server = await startFaultServer();
  const url = server.url;
  await server.close();
  const retries: number[] = [];
  const s: Storage = new ResilientStorage(
    new HttpStorage(url),
    { ...DEFAULT_RETRY, maxRetries: 2 },
    { onRetry: (i) => retries.push(i.attempt), log: new Logger({ write: () => {} }) },
    { sleep: () => Promise.resolve() },
  );
  const err = await rejects(s.put("k", body("x")), StorageError);
  assert.equal(err.transient, true);
  assert.deepEqual(retries, [1, 2]);
});

Deno.test("redact() strips secrets", () => {
  const cases: [string, string][] = [
    ["AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCY env", "wJalrXUtnFEMI"],
    ['{"AWS_SECRET_ACCESS_KEY":"abcd1234secret"}', "abcd1234secret"],
    ["aws_secret_access_key: hunter2hunter2", "hunter2hunter2"],
    [
      "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIDEXAMPLE%2F2025" +
      "&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
      "fe5f80f77d5fa3",
    ],
    [
      "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, " +
      "SignedHeaders=host, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
      "AKIDEXAMPLE/2025",
    ],
    ["connect https://admin:p4ssw0rd@example.com/path failed", "p4ssw0rd"],
    ["literal secret my-webhook-secret here", "my-webhook-secret"],
  ];
  for (const [text, secret] of cases) {
    const out = redact(text, ["my-webhook-secret"]);
    assert.ok(!out.includes(secret), `${secret} survived in ${out}`);
    assert.match(out, /\[REDACTED\]/);
  }
  // The Authorization header's signature goes too, and ordinary text is left alone.
  assert.ok(!redact(cases[4][0]).includes("5d672d79c15b"));
  assert.equal(redact("put 0000/0001-0002.ltx: HTTP 503"), "put 0000/0001-0002.ltx: HTTP 503");
});

Deno.test("logs, breaker info and fail-fast errors carry no credentials", async () => {
  const sig = "X-Amz-Signature=deadbeefcafef00d";
  await withRig({ maxRetries: 0, circuitBreakerThreshold: 1 }, async (r) => {
    await failOps(r, 1);
    assert.equal(r.storage.breaker?.state, "open");
    const err = await rejects(r.storage.put("k", body("x")), CircuitOpenError);
    assert.match(r.events.opened[0].lastError, /HTTP 503/);
    for (const text of [...r.logs, r.events.opened[0].lastError, err.message]) {
      assert.ok(!text.includes("deadbeefcafef00d"), `secret in: ${text}`);
    }
    assert.ok(r.logs.length > 0);
  }, { http: { query: sig } });
});
