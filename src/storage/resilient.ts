/**
 * Retry with full-jitter backoff and a circuit breaker around any Storage backend.
 *
 * Classification is by type only: a StorageError with `transient === true` is retried;
 * AuthError / 401 / 403, NotFoundError and other non-transient errors are not. Anything that is
 * not a StorageError (a bug, a failing caller-supplied body) is neither retried nor counted.
 *
 * The breaker counts failed operations (after their retries), not attempts. Unlike walrust's
 * breaker it re-opens when the half-open probe fails and lets exactly one probe through.
 */

import type { RetrySettings } from "../config/schema.ts";
import { AuthError, NotFoundError, StorageError } from "../errors.ts";
import { log as defaultLog, type Logger } from "../observe/log.ts";
import { redact } from "../observe/redact.ts";
import { type ByteRange, objectExists, type ObjectInfo, type Storage } from "./port.ts";

export { redact };

/** Circuit breaker state. */
export type BreakerState = "closed" | "open" | "half-open";

/** Callbacks fired by ResilientStorage (webhooks and metrics hang off these). */
export interface ResilienceEvents {
  /** The breaker went from closed to open (not fired again when a failed probe re-opens it). */
  onBreakerOpen?(info: { failures: number; lastError: string }): void;
  /** A half-open probe succeeded and the breaker closed. */
  onBreakerClosed?(): void;
  /** Credentials were rejected (AuthError, 401 or 403); the operation was not retried. */
  onAuthFailure?(err: StorageError): void;
  /** Attempt number `attempt` (1-based) failed and will be retried after `delayMs`. */
  onRetry?(
    info: { op: string; key?: string; attempt: number; delayMs: number; error: StorageError },
  ): void;
  /** Logger for breaker state changes; the process logger when omitted. */
  log?: Logger;
}

/** Thrown without touching storage while the breaker is open or a half-open probe is running. */
export class CircuitOpenError extends StorageError {
  /** When the breaker lets a probe through (undefined while a probe is already in flight). */
  readonly until?: Date;
  constructor(message: string, until?: Date, cause?: unknown) {
    super(message, { transient: true, cause });
    this.until = until;
  }
}

/** Options for {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker (>= 1). */
  threshold: number;
  /** Open -> half-open after this many milliseconds. */
  cooldownMs: number;
  now?: () => number;
  /** Called on every state change, after the change. */
  onChange?: (from: BreakerState, to: BreakerState) => void;
}

/**
 * Closed -> open after `threshold` consecutive failures; open fails fast for `cooldownMs`; then
 * half-open admits exactly one probe at a time: success closes, failure re-opens with a fresh
 * cooldown.
 *
 * `acquire()` returns a ticket (the state generation); passing it back to success/failure/release
 * makes results of calls admitted under an earlier state (e.g. in flight when the breaker opened)
 * count for nothing, so a stale success cannot close a breaker whose probe is still running.
 */
export class CircuitBreaker {
  readonly threshold: number;
  readonly cooldownMs: number;
  #now: () => number;
  #onChange?: (from: BreakerState, to: BreakerState) => void;
  #state: BreakerState = "closed";
  #failures = 0;
  #openUntil = 0;
  #probing = false;
  #gen = 0;

  constructor(opts: CircuitBreakerOptions) {
    if (!Number.isInteger(opts.threshold) || opts.threshold < 1) {
      throw new RangeError(
        `circuit breaker threshold must be an integer >= 1, got ${opts.threshold}`,
      );
    }
    if (!(opts.cooldownMs >= 0)) {
      throw new RangeError(`circuit breaker cooldown must be >= 0 ms, got ${opts.cooldownMs}`);
    }
    this.threshold = opts.threshold;
    this.cooldownMs = opts.cooldownMs;
    this.#now = opts.now ?? Date.now;
    this.#onChange = opts.onChange;
  }

  /** Current state; an open breaker whose cooldown has passed reports "half-open". */
  get state(): BreakerState {
    if (this.#state === "open" && this.#now() >= this.#openUntil) return "half-open";
    return this.#state;
  }

  /** Consecutive failures counted so far (reset by a success). */
  get failures(): number {
    return this.#failures;
  }

  /** End of the current cooldown, when open. */
  get openUntil(): Date | undefined {
    return this.#state === "open" ? new Date(this.#openUntil) : undefined;
  }

  /** Admit one call or throw CircuitOpenError (transient) when the breaker refuses it. */
  acquire(): number {
    if (this.#state === "open") {
      if (this.#now() < this.#openUntil) {
        const until = new Date(this.#openUntil);
        throw new CircuitOpenError(
          `circuit breaker open until ${until.toISOString()} ` +
            `after ${this.#failures} consecutive failures`,
          until,
        );
      }
      this.#move("half-open");
    }
    if (this.#state === "half-open") {
      if (this.#probing) {
        throw new CircuitOpenError("circuit breaker open: a half-open probe is in flight");
      }
      this.#probing = true;
    }
    return this.#gen;
  }

  /** The admitted call reached storage and got an answer. */
  success(ticket: number = this.#gen): void {
    if (ticket !== this.#gen) return;
    this.#failures = 0;
    if (this.#state === "half-open") this.#move("closed");
  }

  /** The admitted call failed (after its retries). */
  failure(ticket: number = this.#gen): void {
    if (ticket !== this.#gen) return;
    this.#failures++;
    if (this.#state === "half-open") this.#move("open");
    else if (this.#state === "closed" && this.#failures >= this.threshold) this.#move("open");
  }

  /** The admitted call ended without telling anything about storage; frees the probe slot. */
  release(ticket: number = this.#gen): void {
    if (ticket !== this.#gen) return;
    if (this.#state === "half-open") this.#probing = false;
  }

  #move(to: BreakerState): void {
    const from = this.#state;
    this.#state = to;
    this.#gen++;
    this.#probing = false;
    if (to === "open") this.#openUntil = this.#now() + this.cooldownMs;
    this.#onChange?.(from, to);
  }
}

/** Test hooks for {@link ResilientStorage}. */
export interface ResilientOptions {
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

// Attempts made by the operation that finally threw each error (for webhook `attempts`).
const ATTEMPTS = new WeakMap<object, number>();

/** Attempts (first try + retries) made by the ResilientStorage operation that threw `err`. */
export function attemptsOf(err: unknown): number | undefined {
  return typeof err === "object" && err !== null ? ATTEMPTS.get(err) : undefined;
}

/** Full-jitter delay before retry number `retry` (0-based): uniform in [0, min(max, base*2^retry)). */
export function backoffDelay(
  retry: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(retry, 30));
  return random() * cap;
}

/** True for credential rejections: AuthError, or any StorageError with status 401/403. */
export function isAuthError(err: unknown): err is StorageError {
  return err instanceof AuthError ||
    (err instanceof StorageError && (err.status === 401 || err.status === 403));
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What to do with an error from one attempt. */
type Verdict = { retry: true; delayMs: number } | { retry: false };

/** What a ResilientStorage has seen (metrics and health read it; never reset). */
export interface StorageStats {
  /** Operations started, by operation (put, get, head, delete, list). */
  requests: Record<string, number>;
  /** Attempts retried, by operation. */
  retries: Record<string, number>;
  /** Operations that failed for good (after their retries), by operation. */
  failures: Record<string, number>;
  /** When storage last answered (ms). */
  lastSuccessAt?: number;
  /** Since when operations have failed without storage answering (ms); unset once it answers. */
  failingSince?: number;
}

/** Any Storage with retries and (unless disabled) a circuit breaker in front of it. */
export class ResilientStorage implements Storage {
  readonly description: string;
  readonly breaker: CircuitBreaker | undefined;
  readonly inner: Storage;
  /** Request, retry and failure counts, and the last success. */
  readonly stats: StorageStats = { requests: {}, retries: {}, failures: {} };
  #settings: RetrySettings;
  #events: ResilienceEvents;
  #log: Logger;
  #sleep: (ms: number) => Promise<void>;
  #random: () => number;
  #lastError = "";

  constructor(
    inner: Storage,
    settings: RetrySettings,
    events: ResilienceEvents = {},
    opts: ResilientOptions = {},
  ) {
    this.inner = inner;
    this.description = inner.description;
    this.#settings = settings;
    this.#events = events;
    this.#log = events.log ?? defaultLog;
    this.#sleep = opts.sleep ?? defaultSleep;
    this.#random = opts.random ?? Math.random;
    this.breaker = settings.circuitBreakerEnabled
      ? new CircuitBreaker({
        threshold: settings.circuitBreakerThreshold,
        cooldownMs: settings.circuitBreakerCooldownMs,
        now: opts.now,
        onChange: (from, to) => this.#breakerChanged(from, to),
      })
      : undefined;
  }

  /** Put; a Uint8Array body is retried, a stream body gets exactly one attempt (not replayable). */
  put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    return this.#run("put", key, body instanceof Uint8Array, () => this.inner.put(key, body, meta));
  }

  /** Get; opening the stream is retried, failures while reading it propagate. */
  get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    return this.#run("get", key, true, () => this.inner.get(key, range));
  }

  /** Head; undefined (absent) counts as a success for the breaker. */
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.#run("head", key, true, () => this.inner.head(key));
  }

  /** Exists (the inner backend's, else head); retried like head. */
  exists(key: string): Promise<boolean> {
    return this.#run("head", key, true, () => objectExists(this.inner, key));
  }

  /** Delete (idempotent, so retried). */
  delete(keys: string[]): Promise<void> {
    const label = keys.length <= 1 ? keys[0] : `${keys[0]} (+${keys.length - 1} more)`;
    return this.#run("delete", label, true, () => this.inner.delete(keys));
  }

  /** List; retried only while nothing has been yielded, later failures propagate. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    count(this.stats.requests, "list");
    const ticket = this.#acquire("list", prefix);
    const probe = this.breaker?.state === "half-open";
    for (let attempt = 1;; attempt++) {
      const it = this.inner.list(prefix)[Symbol.asyncIterator]();
      let first: IteratorResult<ObjectInfo>;
      try {
        first = await it.next();
      } catch (err) {
        const v = this.#judge(err, ticket, "list", prefix, attempt, !probe);
        if (!v.retry) throw err;
        await this.#sleep(v.delayMs);
        continue;
      }
      this.breaker?.success(ticket);
      this.#answered();
      if (first.done) return;
      let finished = false;
      try {
        yield first.value;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        finished = true;
      } finally {
        // The consumer stopped early (or a later page failed): let the backend clean up.
        if (!finished) await it.return?.().catch(() => {});
      }
      return;
    }
  }

  /** Close the inner backend. */
  async close(): Promise<void> {
    await this.inner.close?.();
  }

  async #run<T>(op: string, key: string | undefined, replayable: boolean, fn: () => Promise<T>) {
    count(this.stats.requests, op);
    const ticket = this.#acquire(op, key);
    // A probe gets one attempt: it exists to learn whether storage is back, not to wait for it.
    const retryable = replayable && this.breaker?.state !== "half-open";
    for (let attempt = 1;; attempt++) {
      try {
        const value = await fn();
        this.breaker?.success(ticket);
        this.#answered();
        return value;
      } catch (err) {
        const v = this.#judge(err, ticket, op, key, attempt, retryable);
        if (!v.retry) throw err;
        await this.#sleep(v.delayMs);
      }
    }
  }

  #acquire(op: string, key: string | undefined): number {
    if (!this.breaker) return 0;
    try {
      return this.breaker.acquire();
    } catch (err) {
      if (!(err instanceof CircuitOpenError)) throw err;
      const last = this.#lastError ? `; last error: ${this.#lastError}` : "";
      throw new CircuitOpenError(
        `${this.description}: ${op}${key !== undefined ? " " + key : ""}: ${err.message}${last}`,
        err.until,
        err,
      );
    }
  }

  /** Classify one failed attempt: retry (with the delay), or record the outcome and give up. */
  #judge(
    err: unknown,
    ticket: number,
    op: string,
    key: string | undefined,
    attempt: number,
    retryable: boolean,
  ): Verdict {
    if (!(err instanceof StorageError)) {
      this.breaker?.release(ticket);
      return { retry: false };
    }
    if (err instanceof NotFoundError) {
      this.breaker?.success(ticket); // storage answered
      this.#answered();
      return { retry: false };
    }
    const auth = isAuthError(err);
    if (auth) this.#fire("onAuthFailure", () => this.#events.onAuthFailure?.(err));
    const more = retryable && err.transient && !auth && attempt <= this.#settings.maxRetries &&
      // Another operation opened the breaker meanwhile: stop hammering a storage that is down.
      this.breaker?.state !== "open";
    if (!more) {
      count(this.stats.failures, op);
      this.stats.failingSince ??= Date.now();
      ATTEMPTS.set(err, attempt);
      this.#lastError = redact(err.message);
      this.breaker?.failure(ticket);
      return { retry: false };
    }
    const delayMs = backoffDelay(
      attempt - 1,
      this.#settings.baseDelayMs,
      this.#settings.maxDelayMs,
      this.#random,
    );
    count(this.stats.retries, op);
    this.#fire("onRetry", () => this.#events.onRetry?.({ op, key, attempt, delayMs, error: err }));
    return { retry: true, delayMs };
  }

  #answered(): void {
    this.stats.lastSuccessAt = Date.now();
    this.stats.failingSince = undefined;
  }

  #breakerChanged(from: BreakerState, to: BreakerState): void {
    const b = this.breaker;
    const fields = { storage: redact(this.description), failures: b?.failures };
    if (to === "open") {
      const until = b?.openUntil?.toISOString();
      if (from === "closed") {
        this.#log.error("storage circuit breaker opened", {
          ...fields,
          until,
          error: this.#lastError,
        });
        const info = { failures: b?.failures ?? 0, lastError: this.#lastError };
        this.#fire("onBreakerOpen", () => this.#events.onBreakerOpen?.(info));
      } else {
        this.#log.warn("storage circuit breaker re-opened: probe failed", {
          ...fields,
          until,
          error: this.#lastError,
        });
      }
    } else if (to === "half-open") {
      this.#log.info("storage circuit breaker half-open: sending one probe", fields);
    } else {
      this.#log.info("storage circuit breaker closed", { storage: fields.storage });
      this.#fire("onBreakerClosed", () => this.#events.onBreakerClosed?.());
    }
  }

  // A throwing callback must not turn a storage result into a different failure.
  #fire(name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.warn(`resilience callback ${name} threw`, {
        error: redact(err instanceof Error ? err.message : String(err)),
      });
    }
  }
}

function count(m: Record<string, number>, op: string): void {
  m[op] = (m[op] ?? 0) + 1;
}
