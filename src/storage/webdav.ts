/**
 * The WebDAV backend (`webdav://host/path`, `webdavs://` for HTTPS), over plain `fetch`: PUT to a
 * hidden temporary name then MOVE (readers see the old object or the new one), GET with Range,
 * PROPFIND Depth 1 (walked recursively) to list, DELETE, MKCOL for parent collections. Keys use
 * Litestream's file layout (`<db>/ltx/<level>/<min>-<max>.ltx`), so Litestream reads the replica.
 *
 * Metadata (the LTX timestamp, walrust's checksum record) lives in a hidden JSON sidecar
 * `.<name>.walrust-meta` beside the object, written before the object is moved into place: WebDAV
 * dead properties are not supported by every server. Listings skip every name starting with ".".
 * Credentials go only into the Authorization header, never into messages.
 */
import { AuthError, NotFoundError, StorageError } from "../errors.ts";
import type { ByteRange, ObjectInfo, Storage } from "./port.ts";
import { PerKeySerial } from "./serial.ts";
import { parseSidecar, sidecarKey, splitKey } from "./sidecar.ts";
import { emptyBody } from "./body.ts";

/** Where the replica is and how to log in. */
export interface WebdavOptions {
  /** Base URL of the replica's collection: `http(s)://host:port/path`. */
  endpoint: string;
  username?: string;
  password?: string;
  /** Abort a request after this long (ms; default 60 000). */
  timeoutMs?: number;
}

/** A Storage on a WebDAV collection. */
export class WebdavStorage implements Storage {
  readonly description: string;
  readonly #base: URL;
  readonly #auth?: string;
  readonly #timeoutMs: number;
  /** Collections made or being made (concurrent puts share one MKCOL per collection). */
  readonly #made = new Map<string, Promise<void>>();
  /** The base path's own collections, made once (a fresh replica path does not exist yet). */
  #baseMade?: Promise<void>;
  /** Puts of one key, one after the other (body and sidecar are two moves). */
  readonly #serial = new PerKeySerial();

  constructor(o: WebdavOptions) {
    const base = new URL(o.endpoint);
    base.username = "";
    base.password = "";
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.#base = base;
    const scheme = base.protocol === "https:" ? "webdavs" : "webdav";
    this.description = `${scheme}://${base.host}${base.pathname.replace(/\/$/, "")}`;
    if (o.username !== undefined || o.password !== undefined) {
      this.#auth = "Basic " + btoa(`${o.username ?? ""}:${o.password ?? ""}`);
    }
    this.#timeoutMs = o.timeoutMs ?? 60_000;
  }

  /**
   * The body and its sidecar are two MOVEs: puts of one key are serialised in this process, so
   * the metadata read back is always that of the body's put (one walrust writes a key at a time).
   */
  put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    return this.#serial.run(key, () => this.#put(key, body, meta));
  }

  async #put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    const { dir, name } = splitKey(key);
    await this.#mkcols(dir);
    const tmp = `${dir}.${name}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    const sidecar = sidecarKey(key);
    if (meta && Object.keys(meta).length > 0) {
      await this.#putAndMove(sidecar, new TextEncoder().encode(JSON.stringify(meta)));
    } else {
      await this.#delete(sidecar);
    }
    await this.#request("PUT", tmp, {
      body: body instanceof Uint8Array ? body as Uint8Array<ArrayBuffer> : toStream(body),
      ok: [200, 201, 204],
    });
    await this.#move(tmp, key);
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    if (range && range.length <= 0) return emptyBody();
    const headers: Record<string, string> = {};
    if (range) headers.Range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    // A collection is no object: servers answer its GET with 405 (rclone) or a redirect to
    // "key/" (Apache).
    const res = await this.#request("GET", key, {
      headers,
      ok: [200, 206, 301, 302, 404, 405, 416],
    });
    if ([301, 302, 404, 405].includes(res.status)) {
      await res.body?.cancel();
      throw new NotFoundError(`${this.description}/${key}: not found`, { status: 404 });
    }
    if (res.status === 416) {
      await res.body?.cancel();
      // Past the end: empty, unless the key is not an object at all.
      if (!(await this.head(key))) {
        throw new NotFoundError(`${this.description}/${key}: not found`, { status: 404 });
      }
      return emptyBody();
    }
    const body = res.body ? chunks(res.body) : emptyBody();
    // A server that ignores Range sends the whole object: cut the range out of it.
    if (range && res.status === 200) return slice(body, range);
    return body;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const res = await this.#request("PROPFIND", key, {
      headers: { Depth: "0" },
      body: PROPFIND_BODY,
      ok: [207, 404],
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    const [entry] = parseMultistatus(await res.text());
    if (!entry || entry.collection) return undefined;
    const info: ObjectInfo = { key, size: entry.size, lastModified: entry.lastModified };
    info.meta = await this.#meta(key);
    return info;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const cut = prefix.lastIndexOf("/");
    const dir = cut < 0 ? "" : prefix.slice(0, cut + 1);
    const found: ObjectInfo[] = [];
    await this.#walk(dir, prefix, found);
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* found;
  }

  async delete(keys: string[]): Promise<void> {
    // One listing per folder says which keys are objects (a DELETE of a collection would remove
    // everything below it: a prefix of keys is no object) and which have a metadata sidecar.
    const byDir = new Map<string, string[]>();
    for (const key of keys) {
      const { dir } = splitKey(key);
      byDir.set(dir, [...(byDir.get(dir) ?? []), key]);
    }
    for (const [dir, inDir] of byDir) {
      const files = await this.#filesIn(dir);
      for (const key of inDir) {
        const { name } = splitKey(key);
        if (files.has(name)) await this.#delete(key);
        const sidecar = sidecarKey(key);
        if (files.has(splitKey(sidecar).name)) await this.#delete(sidecar);
      }
    }
  }

  /** Names of the non-collection entries of folder `dir` (hidden ones included). */
  async #filesIn(dir: string): Promise<Set<string>> {
    const res = await this.#request("PROPFIND", dir, {
      headers: { Depth: "1" },
      body: PROPFIND_BODY,
      ok: [207, 404],
    });
    const out = new Set<string>();
    if (res.status === 404) {
      await res.body?.cancel();
      return out;
    }
    for (const e of parseMultistatus(await res.text())) {
      if (e.collection) continue;
      const key = this.#keyOf(e.path);
      if (key !== undefined && splitKey(key).dir === dir) out.add(splitKey(key).name);
    }
    return out;
  }

  /** Every object below collection `dir` whose key starts with `prefix`. */
  async #walk(dir: string, prefix: string, out: ObjectInfo[]): Promise<void> {
    const res = await this.#request("PROPFIND", dir, {
      headers: { Depth: "1" },
      body: PROPFIND_BODY,
      ok: [207, 404],
    });
    if (res.status === 404) {
      await res.body?.cancel();
      return;
    }
    const here = this.#keyOf(new URL(res.url || this.#url(dir)).pathname) ?? dir;
    for (const e of parseMultistatus(await res.text())) {
      const key = this.#keyOf(e.path);
      if (key === undefined) continue;
      const bare = key.replace(/\/$/, "");
      if (bare === here.replace(/\/$/, "") || !bare.startsWith(dir)) continue; // the collection itself
      const name = bare.slice(bare.lastIndexOf("/") + 1);
      if (name.startsWith(".")) continue; // temporaries and metadata sidecars
      if (e.collection) {
        const sub = `${bare}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) await this.#walk(sub, prefix, out);
      } else if (bare.startsWith(prefix)) {
        out.push({ key: bare, size: e.size, lastModified: e.lastModified });
      }
    }
  }

  /** The key of a path on the server, or undefined outside the base. */
  #keyOf(path: string): string | undefined {
    let p: string;
    try {
      p = decodeURIComponent(path);
    } catch {
      return undefined;
    }
    const base = decodeURIComponent(this.#base.pathname);
    return p.startsWith(base) ? p.slice(base.length) : undefined;
  }

  async #meta(key: string): Promise<Record<string, string>> {
    const res = await this.#request("GET", sidecarKey(key), { ok: [200, 404] });
    if (res.status === 404) {
      await res.body?.cancel();
      return {};
    }
    return parseSidecar(await res.text());
  }

  async #putAndMove(key: string, body: Uint8Array<ArrayBuffer>): Promise<void> {
    const { dir, name } = splitKey(key);
    const tmp = `${dir}.${name.replace(/^\./, "")}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    await this.#request("PUT", tmp, { body, ok: [200, 201, 204] });
    await this.#move(tmp, key);
  }

  async #move(from: string, to: string): Promise<void> {
    await this.#request("MOVE", from, {
      headers: { Destination: this.#url(to).href, Overwrite: "T" },
      ok: [201, 204],
    });
  }

  async #delete(key: string): Promise<void> {
    const res = await this.#request("DELETE", key, { ok: [200, 204, 404] });
    await res.body?.cancel();
  }

  /** Create every missing collection of `dir` ("a/b/"), parents first, the base's included. */
  async #mkcols(dir: string): Promise<void> {
    this.#baseMade ??= this.#mkbase().catch((e) => {
      this.#baseMade = undefined;
      throw e;
    });
    await this.#baseMade;
    const parts = dir.split("/").filter((x) => x !== "");
    let path = "";
    for (const part of parts) {
      path += `${part}/`;
      const key = path;
      let made = this.#made.get(key);
      if (!made) {
        made = this.#request("MKCOL", key, { ok: [201, 405, 301] }).then(
          async (res) => void await res.body?.cancel(),
          (e) => {
            this.#made.delete(key);
            throw e;
          },
        );
        this.#made.set(key, made);
      }
      await made;
    }
  }

  async #mkbase(): Promise<void> {
    const parts = this.#base.pathname.split("/").filter((x) => x !== "");
    let path = "/";
    for (const part of parts) {
      path += `${part}/`;
      const res = await this.#request("MKCOL", "", {
        ok: [201, 405, 301],
        url: new URL(path, this.#base),
      });
      await res.body?.cancel();
    }
  }

  #url(key: string): URL {
    const path = key.split("/").map((s) => encodeURIComponent(s)).join("/");
    return new URL(path, this.#base);
  }

  async #request(
    method: string,
    key: string,
    o: {
      headers?: Record<string, string>;
      body?: BodyInit;
      ok: number[];
      /** Another URL than the key's (the base path's collections). */
      url?: URL;
    },
  ): Promise<Response> {
    const headers: Record<string, string> = { ...o.headers };
    if (this.#auth) headers.Authorization = this.#auth;
    if (o.body !== undefined && method === "PROPFIND") headers["Content-Type"] = "application/xml";
    const where = `${this.description}/${key}`;
    // 423 Locked: another request of ours holds the server's lock on that path for a moment
    // (two puts making one collection at once); a short wait is enough. Only a replayable
    // body can be sent again.
    for (let attempt = 0;; attempt++) {
      const res = await this.#send(method, key, headers, o, where);
      const replayable = o.body === undefined || !(o.body instanceof ReadableStream);
      if (res.status !== 423 || attempt >= 6 || !replayable) {
        return await this.#check(res, o, method, where);
      }
      await res.body?.cancel().catch(() => {});
      await new Promise((r) => setTimeout(r, 10 * 2 ** attempt));
    }
  }

  async #send(
    method: string,
    key: string,
    headers: Record<string, string>,
    o: { body?: BodyInit; url?: URL },
    where: string,
  ): Promise<Response> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.#timeoutMs);
    let res: Response;
    try {
      res = await fetch(o.url ?? this.#url(key), {
        method,
        headers,
        body: o.body,
        signal: ctl.signal,
        redirect: "manual",
        ...(o.body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (cause) {
      clearTimeout(timer);
      const why = ctl.signal.aborted ? `timed out after ${this.#timeoutMs} ms` : "request failed";
      throw new StorageError(`${where}: ${method} ${why}`, { transient: true, cause });
    }
    // The timeout covers the answer's headers; a large body streams for as long as it takes.
    clearTimeout(timer);
    return res;
  }

  async #check(
    res: Response,
    o: { ok: number[] },
    method: string,
    where: string,
  ): Promise<Response> {
    if (o.ok.includes(res.status)) return res;
    await res.body?.cancel().catch(() => {});
    const msg = `${where}: ${method} answered HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(`${msg} (check the WebDAV username and password)`, {
        status: res.status,
      });
    }
    const transient = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new StorageError(msg, { transient, status: res.status });
  }
}

const PROPFIND_BODY = `<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>`;

interface DavEntry {
  path: string;
  collection: boolean;
  size: number;
  lastModified: Date;
}

/** The responses of a PROPFIND multistatus body (any namespace prefix). */
export function parseMultistatus(xml: string): DavEntry[] {
  const out: DavEntry[] = [];
  const tag = (name: string) =>
    new RegExp(`<(?:[\\w-]+:)?${name}(?:\\s[^>]*)?>([\\s\\S]*?)</(?:[\\w-]+:)?${name}>`, "i");
  for (const part of xml.split(/<(?:[\w-]+:)?response(?:\s[^>]*)?>/i).slice(1)) {
    const href = tag("href").exec(part)?.[1]?.trim();
    if (!href) continue;
    const path = href.startsWith("http") ? new URL(href).pathname : href;
    const type = tag("resourcetype").exec(part)?.[1] ?? "";
    const size = Number(tag("getcontentlength").exec(part)?.[1]?.trim() ?? "0");
    const modified = tag("getlastmodified").exec(part)?.[1]?.trim();
    const at = modified ? new Date(modified) : new Date(0);
    out.push({
      path: decodeEntities(path),
      collection: /<(?:[\w-]+:)?collection(?:\s[^>]*)?\/?>/i.test(type),
      size: Number.isFinite(size) ? size : 0,
      lastModified: Number.isNaN(at.getTime()) ? new Date(0) : at,
    });
  }
  return out;
}

function decodeEntities(s: string): string {
  return s.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'");
}

function toStream(it: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array<ArrayBuffer>> {
  const iter = it[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(ctl) {
      const { value, done } = await iter.next();
      // The body contract lets the source reuse its buffer: copy each chunk before the next.
      if (done) ctl.close();
      else ctl.enqueue(value.slice());
    },
    async cancel() {
      await iter.return?.();
    },
  });
}

async function* chunks(body: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

async function* slice(it: AsyncIterable<Uint8Array>, r: ByteRange): AsyncIterable<Uint8Array> {
  let pos = 0;
  const end = r.offset + r.length;
  for await (const c of it) {
    const from = Math.max(r.offset - pos, 0);
    const to = Math.min(end - pos, c.length);
    if (to > from) yield c.subarray(from, to);
    pos += c.length;
    if (pos >= end) return;
  }
}
