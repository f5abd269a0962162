/**
 * The Azure Blob Storage backend (`abs://ACCOUNT@CONTAINER/path`, Litestream's URL form) over
 * @azure/storage-blob. Objects are block blobs named `<root>/<key>`, so Litestream reads the
 * replica (it uses the file layout `<path>/ltx/<level>/<min>-<max>.ltx` on Azure too).
 *
 * - put: a body of up to one block (8 MiB) is one Put Blob; a larger one is staged block by block
 *   (one block buffered at a time) and committed with Put Block List. A blob changes only at that
 *   commit, so readers see the old object or the new one, never a part.
 * - Metadata names must be C# identifiers on Azure (no "-"). Our names are lower-case letters,
 *   digits and "-": `litestream-timestamp` is stored as `litestreamtimestamp` (Litestream's own
 *   name, abs/replica_client.go `MetadataKeyTimestamp`), every other "-" as "_"
 *   (`walrust-post-apply-checksum` -> `walrust_post_apply_checksum`). head() maps them back, so
 *   it returns exactly the names that were put. A name with "_" or upper case cannot round-trip
 *   and is refused (RangeError).
 * - delete: Blob Batch (256 deletes per request) with a shared key; one Delete Blob per key
 *   (8 at a time) with a SAS token, or when the server refuses batches.
 * - list and head skip the directory markers of hierarchical-namespace (ADLS Gen2) accounts
 *   (metadata `hdi_isfolder=true`): a prefix of keys is no object.
 * - Errors: 401/403 AuthError, 404 NotFoundError (a missing container is a plain, permanent
 *   StorageError), network failures, timeouts, 408/429/5xx transient StorageErrors. The SDK's
 *   retries are off (one try): resilient.ts retries. Messages carry the operation, the key and
 *   the service's error code, never SDK text (it can echo request URLs, and with them a SAS).
 */
import {
  AnonymousCredential,
  type BlobClient,
  BlobServiceClient,
  type ContainerClient,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { AuthError, ConfigError, NotFoundError, StorageError } from "../errors.ts";
import { TIMESTAMP_META_KEY } from "./layout.ts";
import { type ByteRange, checkRange, type ObjectInfo, type Storage } from "./port.ts";
import { emptyBody, reopenable } from "./body.ts";

/** Where the replica is and how to sign requests. */
export interface AzureOptions {
  /** Storage account name. */
  accountName: string;
  /** Blob container (must exist). */
  container: string;
  /** Path inside the container: "" or "a/b" (slashes at the ends are ignored). */
  root: string;
  /** Shared key of the account (base64). */
  accountKey?: string;
  /** SAS token (with or without the leading "?"); used instead of the key when both are set. */
  sasToken?: string;
  /** Blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1; default https://<account>.blob.core.windows.net. */
  endpoint?: string;
  /** Give up on a request after this long without an answer (ms; default 60 000). */
  timeoutMs?: number;
  /** Blobs per list page (default 5000, the service maximum); tests use small pages. */
  pageSize?: number;
}

const MiB = 1024 * 1024;
/** Blocks staged per streamed put: also the largest body sent as a single Put Blob. */
const BLOCK_SIZE = 8 * MiB;
const MAX_BLOCKS = 50_000;
/** Deletes per Blob Batch request (the service's limit). */
const BATCH_SIZE = 256;
const DELETE_CONCURRENCY = 8;
const DEFAULT_TIMEOUT_MS = 60_000;
/** An upload gets this much more time per byte sent (1 s per 64 KiB, ~0.5 Mbit/s at worst). */
const UPLOAD_MS_PER_BYTE = 1000 / (64 * 1024);
/** Block buffers kept for reuse between puts. */
const MAX_SPARE_BLOCKS = 2;
/** Litestream's name for the timestamp on Azure (no "-" allowed there). */
const AZURE_TIMESTAMP_META = "litestreamtimestamp";

/** A Storage in one Azure Blob Storage container, below an optional path. */
export class AzureStorage implements Storage {
  readonly description: string;
  readonly #container: ContainerClient;
  /** "" or "a/b/": prepended to every key. */
  readonly #prefix: string;
  readonly #origin: string;
  readonly #timeoutMs: number;
  readonly #pageSize: number;
  /** Blob Batch is tried while true; a server that refuses it gets single deletes. */
  #batch: boolean;
  #spare: Uint8Array[] = [];

  constructor(o: AzureOptions) {
    if (!o.accountName) throw new ConfigError("abs: the storage account name is empty");
    if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(o.container)) {
      throw new ConfigError(
        `abs: container name ${JSON.stringify(o.container)} is not valid on Azure ` +
          "(3-63 lower-case letters, digits and single hyphens)",
      );
    }
    const root = o.root.replace(/^\/+|\/+$/g, "");
    this.#prefix = root === "" ? "" : `${root}/`;
    this.description = `abs://${o.accountName}@${o.container}${root === "" ? "" : "/" + root}`;
    const endpoint = (o.endpoint || `https://${o.accountName}.blob.core.windows.net`)
      .replace(/\/+$/, "");
    const url = tryURL(endpoint);
    if (!url || !/^https?:$/.test(url.protocol) || url.search !== "" || url.username !== "") {
      throw new ConfigError(
        `${this.description}: endpoint must be an http(s) URL without query or user info ` +
          "(pass a SAS token on its own)",
      );
    }
    this.#origin = url.origin;
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#pageSize = o.pageSize ?? 5000;
    const sas = o.sasToken?.replace(/^\?/, "");
    let service: BlobServiceClient;
    // One try per call: retries, backoff and the circuit breaker are resilient.ts's.
    const options = {
      retryOptions: { maxTries: 1 },
      userAgentOptions: { userAgentPrefix: "walrust" },
    };
    if (sas) {
      service = new BlobServiceClient(`${endpoint}?${sas}`, new AnonymousCredential(), options);
    } else if (o.accountKey) {
      const key = new StorageSharedKeyCredential(o.accountName, o.accountKey);
      service = new BlobServiceClient(endpoint, key, options);
    } else {
      throw new ConfigError(`${this.description}: an account key or a SAS token is required`);
    }
    // Batch subrequests are signed with the shared key; a SAS would have to ride on each one.
    this.#batch = !sas;
    this.#container = service.getContainerClient(o.container);
  }

  /** Put Blob up to one block; staged blocks and one commit above (an iterable is buffered one block at a time). */
  async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    const metadata = toAzureMeta(meta);
    if (body instanceof Uint8Array) {
      if (body.length <= BLOCK_SIZE) return await this.#upload(key, body, metadata);
      const blocks = this.#blocks(key);
      for (let off = 0; off < body.length; off += BLOCK_SIZE) {
        await blocks.stage(body.subarray(off, off + BLOCK_SIZE));
      }
      return await blocks.commit(metadata);
    }
    const buf = this.#spare.pop() ?? new Uint8Array(BLOCK_SIZE);
    try {
      let n = 0;
      let blocks: Blocks | undefined;
      for await (const chunk of body) {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`${this.description}: put ${key}: body chunks must be Uint8Array`);
        }
        let off = 0;
        while (off < chunk.length) {
          // A full block goes up only once more bytes arrive: a body of exactly one block stays
          // a single Put Blob.
          if (n === BLOCK_SIZE) {
            blocks ??= this.#blocks(key);
            await blocks.stage(buf);
            n = 0;
          }
          const take = Math.min(chunk.length - off, BLOCK_SIZE - n);
          buf.set(chunk.subarray(off, off + take), n);
          n += take;
          off += take;
        }
      }
      if (blocks === undefined) return await this.#upload(key, buf.subarray(0, n), metadata);
      await blocks.stage(buf.subarray(0, n));
      await blocks.commit(metadata);
    } finally {
      if (this.#spare.length < MAX_SPARE_BLOCKS) this.#spare.push(buf);
    }
  }

  async #upload(key: string, body: Uint8Array, metadata: Record<string, string>): Promise<void> {
    await this.#call(
      "put",
      key,
      sendTime(this.#timeoutMs, body.length),
      (signal) =>
        this.#blob(key).getBlockBlobClient().upload(body, body.length, {
          metadata,
          blobHTTPHeaders: { blobContentType: "application/octet-stream" },
          abortSignal: signal,
        }),
    );
  }

  /** A staged upload of `key`: Put Block per block (sent before it resolves), then Put Block List. */
  #blocks(key: string): Blocks {
    const blob = this.#blob(key).getBlockBlobClient();
    return new Blocks(`${this.description}: put ${key}`, {
      stage: (id, body, n) =>
        this.#call(
          `put (block ${n})`,
          key,
          sendTime(this.#timeoutMs, body.length),
          (signal) => blob.stageBlock(id, body, body.length, { abortSignal: signal }),
        ),
      commit: (ids, metadata) =>
        this.#call(
          "put (commit block list)",
          key,
          this.#timeoutMs,
          (signal) =>
            blob.commitBlockList(ids, {
              metadata,
              blobHTTPHeaders: { blobContentType: "application/octet-stream" },
              abortSignal: signal,
            }),
        ),
    });
  }

  /** Get Blob (ranged when asked) as a stream; NotFoundError from this call when absent. */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    if (range) checkRange(range);
    if (range && range.length === 0) {
      if (!(await this.head(key))) {
        throw new NotFoundError(`${this.description}: get ${key}: no such blob`, { status: 404 });
      }
      return emptyBody();
    }
    return reopenable(await this.#open(key, range), () => this.#open(key, range));
  }

  async #open(key: string, range: ByteRange | undefined): Promise<AsyncIterable<Uint8Array>> {
    const dog = new Watchdog(this.#timeoutMs);
    dog.arm();
    let res;
    try {
      // maxRetryRequests 0: a broken body fails here instead of being re-fetched by the SDK.
      res = await this.#blob(key).download(range?.offset ?? 0, range?.length, {
        abortSignal: dog.signal,
        maxRetryRequests: 0,
      });
    } catch (err) {
      const e = this.#error("get", key, err, dog);
      // A range at or past the end (or any range of an empty blob): empty, per the contract.
      if (range && e.status === 416) return emptyBody();
      throw e;
    } finally {
      dog.disarm();
    }
    const body = res.readableStreamBody as AsyncIterable<unknown> | undefined;
    if (!body) return emptyBody();
    return this.#read(key, body, res.contentLength, dog);
  }

  // The watchdog runs only while waiting for the server, not while the consumer holds a chunk.
  async *#read(
    key: string,
    body: AsyncIterable<unknown>,
    expected: number | undefined,
    dog: Watchdog,
  ): AsyncGenerator<Uint8Array> {
    const it = body[Symbol.asyncIterator]();
    let n = 0;
    let done = false;
    try {
      for (;;) {
        dog.arm();
        let r: IteratorResult<unknown>;
        try {
          r = await it.next();
        } catch (err) {
          throw this.#error("get (reading body)", key, err, dog);
        } finally {
          dog.disarm();
        }
        if (r.done) break;
        const c = r.value;
        if (!(c instanceof Uint8Array)) {
          throw new StorageError(`${this.description}: get ${key}: body chunk is not bytes`);
        }
        n += c.length;
        yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
      }
      done = true;
    } finally {
      // The consumer stopped early: drop the connection rather than drain the body.
      if (!done) {
        dog.abort();
        await it.return?.().catch(() => {});
      }
    }
    if (expected !== undefined && n !== expected) {
      throw new StorageError(
        `${this.description}: get ${key}: body ended after ${n} of ${expected} bytes`,
        { transient: true },
      );
    }
  }

  /** Get Blob Properties; undefined when the blob is absent (a missing container throws). */
  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const p = await this.#call(
        "head",
        key,
        this.#timeoutMs,
        (signal) => this.#blob(key).getProperties({ abortSignal: signal }),
      );
      if (isFolder(p.metadata)) return undefined;
      return {
        key,
        size: p.contentLength ?? 0,
        lastModified: p.lastModified ?? new Date(0),
        meta: fromAzureMeta(p.metadata),
      };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** List Blobs (flat, with metadata) page by page, in the service's (lexicographic) order. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const dog = new Watchdog(this.#timeoutMs);
    const pages = this.#container
      .listBlobsFlat({
        prefix: this.#prefix + prefix,
        includeMetadata: true,
        abortSignal: dog.signal,
      })
      .byPage({ maxPageSize: this.#pageSize });
    for (;;) {
      dog.arm();
      let r;
      try {
        r = await pages.next();
      } catch (err) {
        throw this.#error("list", prefix, err, dog);
      } finally {
        dog.disarm();
      }
      if (r.done) return;
      for (const b of r.value.segment.blobItems) {
        if (!b.name.startsWith(this.#prefix + prefix) || isFolder(b.metadata)) continue;
        yield {
          key: b.name.slice(this.#prefix.length),
          size: b.properties.contentLength ?? 0,
          lastModified: b.properties.lastModified,
          meta: fromAzureMeta(b.metadata),
        };
      }
    }
  }

  /** Delete keys (absent ones are fine): Blob Batch where possible, else 8 single deletes at a time. */
  async delete(keys: string[]): Promise<void> {
    const todo = [...new Set(keys)];
    for (let i = 0; i < todo.length; i += BATCH_SIZE) {
      const batch = todo.slice(i, i + BATCH_SIZE);
      if (!(this.#batch && await this.#deleteBatch(batch))) await this.#deleteEach(batch);
    }
  }

  /** One Blob Batch of deletes; false when the server refuses batches (then never again). */
  async #deleteBatch(keys: string[]): Promise<boolean> {
    const label = keys.length === 1 ? keys[0] : `${keys[0]} (+${keys.length - 1} more)`;
    let res;
    try {
      res = await this.#call(
        "delete (batch)",
        label,
        this.#timeoutMs,
        (signal) =>
          this.#container.getBlobBatchClient().deleteBlobs(keys.map((k) => this.#blob(k)), {
            deleteSnapshots: "include",
            abortSignal: signal,
          }),
      );
    } catch (err) {
      if (
        err instanceof AzureError && !err.transient && err.code !== "ContainerNotFound" &&
        [400, 404, 405, 501].includes(err.status ?? 0)
      ) {
        this.#batch = false;
        return false;
      }
      throw err;
    }
    const failed: { key: string; status: number; code?: string }[] = [];
    res.subResponses.forEach((s, i) => {
      if (s.status >= 200 && s.status < 300) return;
      if (s.status === 404 && s.errorCode !== "ContainerNotFound") return; // already gone
      failed.push({ key: keys[i] ?? "?", status: s.status, code: s.errorCode });
    });
    if (failed.length > 0) {
      const shown = failed.slice(0, 5).map((f) => `${f.key} (${f.code ?? "HTTP " + f.status})`);
      const more = failed.length > 5 ? ` and ${failed.length - 5} more` : "";
      const first = failed[0];
      throw classify(
        `${this.description}: delete failed for ${shown.join(", ")}${more}`,
        first.status,
        first.code,
      );
    }
    return true;
  }

  async #deleteEach(keys: string[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++];
        try {
          await this.#call(
            "delete",
            key,
            this.#timeoutMs,
            (signal) => this.#blob(key).delete({ deleteSnapshots: "include", abortSignal: signal }),
          );
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, keys.length) }, worker));
  }

  /** Nothing to release: the SDK's HTTP client and its idle keep-alive sockets are shared. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  #blob(key: string): BlobClient {
    return this.#container.getBlobClient(this.#prefix + key);
  }

  /** Run one SDK call with a deadline, mapping its failure to a typed StorageError. */
  async #call<T>(
    op: string,
    key: string,
    timeoutMs: number,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const dog = new Watchdog(timeoutMs);
    dog.arm();
    try {
      return await fn(dog.signal);
    } catch (err) {
      throw this.#error(op, key, err, dog);
    } finally {
      dog.disarm();
    }
  }

  #error(op: string, key: string, err: unknown, dog?: Watchdog): AzureError {
    if (err instanceof AzureError) return err;
    const where = `${this.description}: ${op} ${key}`;
    if (dog?.fired) {
      return new AzureError(`${where}: no answer within ${dog.ms} ms`, { transient: true });
    }
    const { status, code } = describe(err);
    if (status === undefined) {
      // No HTTP answer at all: refused, reset, DNS, TLS, aborted.
      return new AzureError(`${where}: cannot reach ${this.#origin} (${code ?? "network error"})`, {
        transient: true,
        code,
      });
    }
    if (status === 404 && code === "ContainerNotFound") {
      return new AzureError(
        `${where}: the container does not exist (ContainerNotFound, HTTP 404)`,
        { status, code },
      );
    }
    return classify(`${where}: ${code ?? "request failed"}`, status, code);
  }
}

/** A StorageError that remembers the service's error code (for the batch fallback). */
class AzureError extends StorageError {
  readonly code?: string;
  constructor(message: string, o: { transient?: boolean; status?: number; code?: string }) {
    super(message, { transient: o.transient, status: o.status });
    this.code = o.code;
  }
}

// Typed by HTTP status: never by message text.
function classify(msg: string, status: number, code: string | undefined): StorageError {
  const what = `${msg} (HTTP ${status})`;
  if (status === 401 || status === 403) {
    return new AuthError(`${what}: check the account key or SAS token`, { status });
  }
  if (status === 404) return new NotFoundError(what, { status });
  const transient = status === 408 || status === 429 || status >= 500;
  return new AzureError(what, { transient, status, code });
}

/** Status and service error code of an SDK error (RestError), or the errno-like code of another. */
function describe(err: unknown): { status?: number; code?: string } {
  if (typeof err !== "object" || err === null) return {};
  const e = err as { statusCode?: unknown; code?: unknown; details?: unknown; name?: unknown };
  const status = typeof e.statusCode === "number" && e.statusCode > 0 ? e.statusCode : undefined;
  // HEAD answers carry the code only in x-ms-error-code, which the SDK puts in details.
  const detail = typeof e.details === "object" && e.details !== null
    ? (e.details as { errorCode?: unknown }).errorCode
    : undefined;
  const raw = typeof e.code === "string" ? e.code : typeof detail === "string" ? detail : undefined;
  const name = typeof e.name === "string" && e.name !== "RestError" && e.name !== "Error"
    ? e.name
    : undefined;
  // Codes are identifiers ("BlobNotFound", "ECONNREFUSED"): anything else is not shown.
  const code = raw !== undefined && /^[A-Za-z0-9_]{1,64}$/.test(raw) ? raw : name;
  return { status, code };
}

interface BlockOps {
  stage(id: string, body: Uint8Array, n: number): Promise<unknown>;
  commit(ids: string[], metadata: Record<string, string>): Promise<unknown>;
}

/** The blocks of one put in progress, staged in order. */
class Blocks {
  readonly #ids: string[] = [];
  readonly #tag = crypto.randomUUID().slice(0, 8);
  constructor(private readonly where: string, private readonly ops: BlockOps) {}

  async stage(bytes: Uint8Array): Promise<void> {
    const n = this.#ids.length;
    if (n >= MAX_BLOCKS) {
      throw new StorageError(
        `${this.where}: more than ${MAX_BLOCKS} blocks of ${BLOCK_SIZE} bytes`,
      );
    }
    // Every block id of a blob must have the same length: a fixed-width index.
    const id = btoa(`${this.#tag}-${n.toString().padStart(6, "0")}`);
    await this.ops.stage(id, bytes, n);
    this.#ids.push(id);
  }

  async commit(metadata: Record<string, string>): Promise<void> {
    await this.ops.commit(this.#ids, metadata);
  }
}

/** Our metadata names -> Azure's (see the module comment). */
export function toAzureMeta(meta: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta ?? {})) {
    if (!/^[a-z][a-z0-9-]*$/.test(k)) {
      throw new RangeError(
        `metadata name ${JSON.stringify(k)}: Azure needs lower-case letters, digits and "-"`,
      );
    }
    out[k === TIMESTAMP_META_KEY ? AZURE_TIMESTAMP_META : k.replaceAll("-", "_")] = v;
  }
  return out;
}

/** Azure's metadata names -> ours (lower case; Azure compares names case-insensitively). */
export function fromAzureMeta(meta: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta ?? {})) {
    const name = k.toLowerCase();
    out[name === AZURE_TIMESTAMP_META ? TIMESTAMP_META_KEY : name.replaceAll("_", "-")] = v;
  }
  return out;
}

/**
 * A directory marker of an account with a hierarchical namespace (ADLS Gen2): listed as a blob,
 * but no object (a key that is only a prefix of other keys is none).
 */
function isFolder(meta: Record<string, string> | undefined): boolean {
  return meta?.hdi_isfolder === "true";
}

/** Aborts its signal when armed and not disarmed within `ms`. */
class Watchdog {
  readonly ms: number;
  readonly #ctl = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  fired = false;
  constructor(ms: number) {
    this.ms = ms;
  }
  get signal(): AbortSignal {
    return this.#ctl.signal;
  }
  arm(): void {
    this.disarm();
    this.#timer = setTimeout(() => {
      this.fired = true;
      this.#ctl.abort();
    }, this.ms);
  }
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
  /** Abort now (not a timeout): tears down a body nobody reads any more. */
  abort(): void {
    this.disarm();
    this.#ctl.abort();
  }
}

/** The time an upload of `bytes` may take before it counts as stalled. */
function sendTime(timeoutMs: number, bytes: number): number {
  return Math.ceil(timeoutMs + bytes * UPLOAD_MS_PER_BYTE);
}

function tryURL(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}
