/**
 * Webhook delivery: signed JSON POSTs, queued and retried in the background so that a slow or
 * dead receiver never blocks replication nor grows memory without bound.
 */

import {
  WEBHOOK_EVENT_ALIASES,
  type WebhookEvent,
  type WebhookSettings,
} from "../config/schema.ts";
import { VERSION } from "../version.ts";
import { log as defaultLog, type Logger } from "./log.ts";
import { redact, redactDeep } from "./redact.ts";

/** The JSON body of every webhook. */
export interface WebhookPayload {
  event: WebhookEvent;
  database: string;
  error: string;
  attempts: number;
  /** RFC 3339 UTC. */
  timestamp: string;
  /** walrust version. */
  version: string;
  context?: Record<string, unknown>;
}

/** Options for {@link WebhookSender}; everything but the first four exists for tests. */
export interface WebhookSenderOptions {
  /** Per-attempt timeout (default 10000). */
  timeoutMs?: number;
  /** Attempts per delivery, first included (default 5). */
  maxAttempts?: number;
  /** Full-jitter backoff base (default 500); capped at maxDelayMs. */
  baseDelayMs?: number;
  fetch?: typeof fetch;
  log?: Logger;
  /** Backoff cap (default 30000). */
  maxDelayMs?: number;
  /** Queued deliveries beyond those in flight (default 100); the oldest is dropped when full. */
  maxPending?: number;
  /** Deliveries in flight at once (default 4). */
  concurrency?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

interface Delivery {
  hook: WebhookSettings;
  event: WebhookEvent;
  body: Uint8Array<ArrayBuffer>;
}

/** The HTTP header carrying the body's HMAC. */
export const SIGNATURE_HEADER = "X-Walrust-Signature";

const encoder = new TextEncoder();

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** "sha256=<hex HMAC-SHA256 of body (UTF-8) keyed by secret>", the X-Walrust-Signature value. */
export async function signBody(secret: string, body: string | Uint8Array): Promise<string> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), bytes as BufferSource);
  return `sha256=${toHex(mac)}`;
}

/** scheme://host[:port] only: webhook paths and queries often embed tokens (Slack, Discord). */
function hookLabel(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid url)";
  }
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends webhook events to every subscribed `[[webhooks]]` receiver, in the background. */
export class WebhookSender {
  #hooks: WebhookSettings[];
  #secrets: string[];
  #timeoutMs: number;
  #maxAttempts: number;
  #baseDelayMs: number;
  #maxDelayMs: number;
  #maxPending: number;
  #concurrency: number;
  #fetch: typeof fetch;
  #log: Logger;
  #sleep: (ms: number) => Promise<void>;
  #random: () => number;
  #keys = new Map<string, Promise<CryptoKey>>();
  #queue: Delivery[] = [];
  #active = 0;
  #dropped = 0;
  #delivered = 0;
  #failed = 0;
  #warnedFull = false;
  #idleWaiters: (() => void)[] = [];

  constructor(hooks: WebhookSettings[], opts: WebhookSenderOptions = {}) {
    // Config already resolves aliases; do it again for hooks built in code.
    this.#hooks = hooks.map((h) => ({
      ...h,
      events: [...new Set(h.events.map((e) => WEBHOOK_EVENT_ALIASES[e] ?? e))],
    }));
    this.#secrets = hooks.flatMap((h) => (h.secret ? [h.secret] : []));
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    this.#baseDelayMs = opts.baseDelayMs ?? 500;
    this.#maxDelayMs = opts.maxDelayMs ?? 30_000;
    this.#maxPending = Math.max(1, opts.maxPending ?? 100);
    this.#concurrency = Math.max(1, opts.concurrency ?? 4);
    this.#fetch = opts.fetch ?? fetch;
    this.#log = opts.log ?? defaultLog;
    this.#sleep = opts.sleep ?? defaultSleep;
    this.#random = opts.random ?? Math.random;
  }

  /** Counters: delivered (2xx), failed (gave up), dropped (queue full), pending (queued). */
  get stats(): { delivered: number; failed: number; dropped: number; pending: number } {
    return {
      delivered: this.#delivered,
      failed: this.#failed,
      dropped: this.#dropped,
      pending: this.#queue.length + this.#active,
    };
  }

  /** Queue delivery to every hook subscribed to event; never throws, never blocks the caller. */
  send(
    event: WebhookEvent,
    p: { database: string; error?: string; attempts?: number; context?: Record<string, unknown> },
  ): void {
    try {
      const hooks = this.#hooks.filter((h) => h.events.includes(event));
      if (hooks.length === 0) return;
      const payload: WebhookPayload = {
        event,
        database: p.database,
        error: redact(p.error ?? "", this.#secrets),
        attempts: p.attempts ?? 1,
        timestamp: new Date().toISOString(),
        version: VERSION,
      };
      if (p.context !== undefined) {
        payload.context = redactDeep(p.context, this.#secrets) as Record<string, unknown>;
      }
      const body = encoder.encode(JSON.stringify(payload));
      for (const hook of hooks) this.#enqueue({ hook, event, body });
      this.#pump();
    } catch (err) {
      // e.g. a context that JSON cannot encode
      this.#log.warn("webhook not sent", { event, error: this.#errText(err) });
    }
  }

  /** Wait for in-flight deliveries (tests, shutdown), bounded by deadline. */
  flush(timeoutMs = 10_000): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        resolve();
      }, timeoutMs);
      this.#idleWaiters.push(done);
    });
  }

  #idle(): boolean {
    return this.#queue.length === 0 && this.#active === 0;
  }

  #enqueue(d: Delivery): void {
    if (this.#queue.length >= this.#maxPending) {
      const old = this.#queue.shift();
      this.#dropped++;
      if (!this.#warnedFull) {
        this.#warnedFull = true;
        this.#log.warn("webhook queue full; dropping the oldest deliveries", {
          pending: this.#maxPending,
          dropped_event: old?.event,
        });
      }
    }
    this.#queue.push(d);
  }

  #pump(): void {
    while (this.#active < this.#concurrency && this.#queue.length > 0) {
      const d = this.#queue.shift()!;
      this.#active++;
      this.#deliver(d)
        .catch((err) => this.#log.warn("webhook delivery crashed", { error: this.#errText(err) }))
        .finally(() => {
          this.#active--;
          this.#pump();
          if (this.#idle()) {
            this.#warnedFull = false;
            const waiters = this.#idleWaiters;
            this.#idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    }
  }

  async #deliver(d: Delivery): Promise<void> {
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      "User-Agent": `walrust/${VERSION}`,
    };
    if (d.hook.secret) {
      const mac = await crypto.subtle.sign("HMAC", await this.#key(d.hook.secret), d.body);
      headers[SIGNATURE_HEADER] = `sha256=${toHex(mac)}`;
    }
    let reason = "";
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      let retryable: boolean;
      try {
        const res = await this.#fetch(d.hook.url, {
          method: "POST",
          headers,
          body: d.body,
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
        await res.body?.cancel().catch(() => {});
        if (res.ok) {
          this.#delivered++;
          return;
        }
        reason = `HTTP ${res.status}`;
        retryable = res.status >= 500 || res.status === 429;
      } catch (err) {
        reason = this.#errText(err); // network error or timeout
        retryable = true;
      }
      if (!retryable || attempt === this.#maxAttempts) break;
      const cap = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** Math.min(attempt - 1, 30));
      await this.#sleep(this.#random() * cap);
    }
    this.#failed++;
    this.#log.warn("webhook delivery failed", {
      event: d.event,
      url: hookLabel(d.hook.url),
      error: reason,
    });
  }

  #key(secret: string): Promise<CryptoKey> {
    let k = this.#keys.get(secret);
    if (!k) {
      k = hmacKey(secret);
      this.#keys.set(secret, k);
    }
    return k;
  }

  #errText(err: unknown): string {
    const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    // fetch errors quote the full URL, whose path may itself be a token.
    let out = redact(text, this.#secrets);
    for (const h of this.#hooks) out = out.split(h.url).join(hookLabel(h.url));
    return out;
  }
}
