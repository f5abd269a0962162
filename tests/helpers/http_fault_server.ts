/**
 * A real HTTP server on 127.0.0.1 whose failures tests switch on and off, plus `HttpStorage`, a
 * minimal Storage that talks to it over real sockets and maps HTTP status to typed errors the way
 * the S3 backend does (5xx/408/429/network/timeout -> transient StorageError, 401/403 ->
 * AuthError, 404 -> NotFoundError, other 4xx -> permanent StorageError).
 *
 * In "ok" mode the server keeps objects in a Map (PUT/GET/HEAD/DELETE on /o/<key>, GET
 * /list?prefix=&after=&limit= returns a JSON page) and answers 200 to any other POST (webhook
 * receiver). Every request is recorded before the mode decides the answer.
 */

import { AuthError, NotFoundError, StorageError } from "../../src/errors.ts";
import { type ByteRange, type ObjectInfo, readAll, type Storage } from "../../src/storage/port.ts";

/** How the server answers. "slow" waits `slowMs` (cut short by close()), then acts as "ok". */
export type FaultMode = "ok" | "500" | "503" | "slow" | "403" | "400" | "429";

/** One request as received. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Headers;
  body: Uint8Array<ArrayBuffer>;
}

/** A running fault server. */
export interface FaultServer {
  url: string;
  port: number;
  /** Answer every following request this way. */
  setMode(mode: FaultMode): void;
  /** Answer the next requests with these modes, one each, before falling back to setMode's. */
  script(modes: FaultMode[]): void;
  requests: RecordedRequest[];
  /** Responses fully sent so far (a slow request counts once its answer is out). */
  readonly responses: number;
  close(): Promise<void>;
}

interface Stored {
  body: Uint8Array<ArrayBuffer>;
  meta: Record<string, string>;
  lastModified: Date;
}

const META_PREFIX = "x-meta-";

/** Start a fault server on 127.0.0.1 (port 0); `slowMs` is the "slow" mode delay (default 1000). */
export async function startFaultServer(opts: { slowMs?: number } = {}): Promise<FaultServer> {
  const slowMs = opts.slowMs ?? 1000;
  let mode: FaultMode = "ok";
  const scripted: FaultMode[] = [];
  const requests: RecordedRequest[] = [];
  const objects = new Map<string, Stored>();
  const closing = new AbortController();
  let responses = 0;

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const body = new Uint8Array(await req.arrayBuffer());
    requests.push({
      method: req.method,
      path: url.pathname + url.search,
      headers: req.headers,
      body,
    });
    const m = scripted.shift() ?? mode;
    if (m === "slow") await wait(slowMs, closing.signal);
    const res = m === "ok" || m === "slow"
      ? answer(req.method, url, body, req.headers, objects)
      : new Response(`fault ${m}`, { status: Number(m) });
    responses++;
    return res;
  };

  const ready = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => ready.resolve(port),
  }, handler);
  const port = await ready.promise;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setMode(m) {
      mode = m;
    },
    script(modes) {
      scripted.push(...modes);
    },
    requests,
    get responses() {
      return responses;
    },
    async close() {
      closing.abort();
      await server.shutdown();
    },
  };
}

/** Sleep `ms`, or less when the server closes. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

function answer(
  method: string,
  url: URL,
  body: Uint8Array<ArrayBuffer>,
  headers: Headers,
  objects: Map<string, Stored>,
): Response {
  if (url.pathname === "/list" && method === "GET") {
    const prefix = url.searchParams.get("prefix") ?? "";
    const after = url.searchParams.get("after") ?? "";
    const limit = Number(url.searchParams.get("limit") ?? "1000");
    const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
    const page = keys.slice(0, limit).map((k) => {
      const o = objects.get(k)!;
      return { key: k, size: o.body.length, lastModified: o.lastModified.toISOString() };
    });
    return Response.json({ items: page, more: keys.length > limit });
  }
  if (!url.pathname.startsWith("/o/")) {
    return method === "POST" ? new Response("ok") : new Response("no route", { status: 400 });
  }
  const key = decodeURIComponent(url.pathname.slice(3));
  const o = objects.get(key);
  switch (method) {
    case "PUT": {
      const meta: Record<string, string> = {};
      for (const [k, v] of headers) {
        if (k.startsWith(META_PREFIX)) meta[k.slice(META_PREFIX.length)] = v;
      }
      objects.set(key, { body, meta, lastModified: new Date() });
      return new Response(null, { status: 200 });
    }
    case "GET":
    case "HEAD": {
      if (!o) return new Response(null, { status: 404 });
      const h = new Headers({ "x-size": String(o.body.length) });
      for (const [k, v] of Object.entries(o.meta)) h.set(META_PREFIX + k, v);
      h.set("last-modified", o.lastModified.toUTCString());
      return new Response(method === "GET" ? o.body : null, { status: 200, headers: h });
    }
    case "DELETE":
      objects.delete(key);
      return new Response(null, { status: 204 });
    default:
      return new Response("bad method", { status: 400 });
  }
}

/** Options for {@link HttpStorage}. */
export interface HttpStorageOptions {
  /** Per-request timeout (AbortSignal.timeout); a timeout is transient. */
  timeoutMs?: number;
  /** Items per list page (to exercise failures between pages). */
  pageSize?: number;
  /**
   * Appended to every request URL and (like a careless backend would) quoted in error messages,
   * so tests can check that the resilience layer redacts what it logs.
   */
  query?: string;
}

/** A Storage over HTTP against a fault server. Not a mock of S3: real requests, real failures. */
export class HttpStorage implements Storage {
  readonly description: string;
  #base: string;
  #opts: HttpStorageOptions;

  constructor(baseUrl: string, opts: HttpStorageOptions = {}) {
    this.#base = baseUrl;
    this.#opts = opts;
    this.description = `${baseUrl}/bucket`;
  }

  async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta: Record<string, string> = {},
  ): Promise<void> {
    const headers = new Headers();
    for (const [k, v] of Object.entries(meta)) headers.set(META_PREFIX + k, v);
    const payload = body instanceof Uint8Array ? body : await readAll(body);
    const res = await this.#request("put", key, `/o/${encodeURIComponent(key)}`, {
      method: "PUT",
      headers,
      body: payload as BodyInit,
    });
    await res.body?.cancel();
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.#request("get", key, `/o/${encodeURIComponent(key)}`, { method: "GET" });
    const all = new Uint8Array(await res.arrayBuffer());
    const part = range ? all.subarray(range.offset, range.offset + range.length) : all;
    return (async function* () {
      if (part.length > 0) yield part;
    })();
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    let res: Response;
    try {
      res = await this.#request("head", key, `/o/${encodeURIComponent(key)}`, { method: "HEAD" });
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    const meta: Record<string, string> = {};
    for (const [k, v] of res.headers) {
      if (k.startsWith(META_PREFIX)) meta[k.slice(META_PREFIX.length)] = v;
    }
    return {
      key,
      size: Number(res.headers.get("x-size")),
      lastModified: new Date(res.headers.get("last-modified") ?? 0),
      meta,
    };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let after = "";
    for (;;) {
      const q = new URLSearchParams({
        prefix,
        after,
        limit: String(this.#opts.pageSize ?? 1000),
      });
      const res = await this.#request("list", prefix, `/list?${q}`, { method: "GET" });
      const page = await res.json() as {
        items: { key: string; size: number; lastModified: string }[];
        more: boolean;
      };
      for (const it of page.items) {
        yield { key: it.key, size: it.size, lastModified: new Date(it.lastModified) };
        after = it.key;
      }
      if (!page.more) return;
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      const res = await this.#request("delete", key, `/o/${encodeURIComponent(key)}`, {
        method: "DELETE",
      });
      await res.body?.cancel();
    }
  }

  async #request(op: string, key: string, path: string, init: RequestInit): Promise<Response> {
    const q = this.#opts.query;
    const url = this.#base + path + (q ? (path.includes("?") ? "&" : "?") + q : "");
    const where = `${this.description}: ${op} ${key}`;
    let res: Response;
    try {
      res = await fetch(url, {
        ...init,
        signal: this.#opts.timeoutMs ? AbortSignal.timeout(this.#opts.timeoutMs) : undefined,
      });
    } catch (err) {
      const name = err instanceof Error ? err.name : "Error";
      const timeout = name === "TimeoutError";
      throw new StorageError(
        `${where}: ${timeout ? "timed out" : "cannot connect"} (${name}; ${url})`,
        { transient: true, status: timeout ? 408 : undefined, cause: err },
      );
    }
    if (res.ok) return res;
    await res.body?.cancel();
    const s = res.status;
    const msg = `${where}: HTTP ${s} (${url})`;
    if (s === 404) throw new NotFoundError(`${where}: no such key`, { status: s });
    if (s === 401 || s === 403) {
      throw new AuthError(`${where}: access denied (HTTP ${s})`, { status: s });
    }
    throw new StorageError(msg, { status: s, transient: s >= 500 || s === 408 || s === 429 });
  }
}
