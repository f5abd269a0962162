/**
 * S3 backend (AWS and S3-compatible servers) over @aws-sdk/client-s3.
 *
 * The SDK costs ~25 MB RSS and ~40 ms of start-up (toolchain.md §6–7), so it is imported only
 * inside openS3Storage; this module's static imports stay SDK-free (type imports are erased).
 * SDK retries are off: retry, backoff and the circuit breaker live in resilient.ts, which reads
 * `transient` and `status` from the StorageErrors thrown here.
 */

import type * as Sdk from "@aws-sdk/client-s3";
import { AuthError, ConfigError, NotFoundError, StorageError } from "../errors.ts";
import { type ByteRange, checkRange, type ObjectInfo, type Storage } from "./port.ts";
import { emptyBody, reopenable } from "./body.ts";

/** Options for openS3Storage. Unset values come from the AWS_* environment and the SDK chain. */
export interface S3Options {
  bucket: string;
  /** Custom endpoint (MinIO, R2, Ceph, ...); else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Else AWS_REGION; us-east-1 when an endpoint is set, else the SDK's own region chain. */
  region?: string;
  /** Path-style addressing; defaults to true when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Static credentials; when absent the SDK default chain (env, profile, IMDS...) is used. */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Multipart part size in bytes (default 16 MiB, minimum 5 MiB as S3 requires). */
  partSize?: number;
}

const MiB = 1024 * 1024;
const DEFAULT_PART_SIZE = 16 * MiB;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
const DELETE_BATCH = 1000;
const CONNECT_TIMEOUT_MS = 10_000;
const SOCKET_IDLE_TIMEOUT_MS = 120_000;

/** Open an S3 bucket as Storage. Imports the SDK on first use; no request is made here. */
export async function openS3Storage(opts: S3Options): Promise<S3Storage> {
  return await S3Storage.open(opts);
}

/** Storage in one S3 bucket; keys are used as given (callers add the database prefix). */
export class S3Storage implements Storage {
  readonly description: string;
  readonly bucket: string;
  readonly partSize: number;
  #spareParts: PartBuffer[] = [];
  #sdk: typeof Sdk;
  #client: Sdk.S3Client;
  #endpoint: string | undefined;

  private constructor(
    sdk: typeof Sdk,
    opts: S3Options & { partSize: number; endpoint: string | undefined },
  ) {
    this.bucket = opts.bucket;
    this.description = `s3://${opts.bucket}`;
    this.partSize = opts.partSize;
    this.#sdk = sdk;
    this.#endpoint = opts.endpoint;
    this.#client = new sdk.S3Client({
      region: opts.region,
      endpoint: this.#endpoint,
      forcePathStyle: opts.forcePathStyle ?? this.#endpoint !== undefined,
      credentials: opts.accessKeyId
        ? {
          accessKeyId: opts.accessKeyId,
          secretAccessKey: opts.secretAccessKey ?? "",
          sessionToken: opts.sessionToken,
        }
        : undefined,
      // Checksums only where S3 demands them: streamed/trailer checksums break RGW and others.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: CONNECT_TIMEOUT_MS,
        socketTimeout: SOCKET_IDLE_TIMEOUT_MS,
      },
    });
  }

  /** Validate options, import the SDK and build the client. */
  static async open(opts: S3Options): Promise<S3Storage> {
    if (!opts.bucket) throw new ConfigError("S3: bucket name is empty");
    if (!opts.accessKeyId !== !opts.secretAccessKey) {
      throw new ConfigError(
        `s3://${opts.bucket}: accessKeyId and secretAccessKey must be given together`,
      );
    }
    const partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE) {
      throw new ConfigError(
        `s3://${opts.bucket}: part size must be an integer of at least ${MIN_PART_SIZE} bytes`,
      );
    }
    const sdk = await import("@aws-sdk/client-s3");
    // node:process costs ~7 MB RSS too; the SDK pulls in Node compat anyway, so load it here.
    const { env } = await import("node:process");
    const endpoint = nonEmpty(opts.endpoint) ?? nonEmpty(env.AWS_ENDPOINT_URL_S3) ??
      nonEmpty(env.AWS_ENDPOINT_URL);
    if (endpoint !== undefined && !/^https?:$/.test(tryURL(endpoint)?.protocol ?? "")) {
      throw new ConfigError(`s3://${opts.bucket}: endpoint must be an http(s) URL`);
    }
    const region = nonEmpty(opts.region) ?? nonEmpty(env.AWS_REGION) ??
      (endpoint ? "us-east-1" : undefined);
    return new S3Storage(sdk, { ...opts, partSize, endpoint, region });
  }

  /** PutObject up to partSize bytes, multipart above; an iterable is buffered one part at a time. */
  async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    if (body instanceof Uint8Array) {
      if (body.length <= this.partSize) return await this.#putObject(key, body, meta);
      const upload = await this.#startMultipart(key, meta);
      try {
        for (let off = 0; off < body.length; off += this.partSize) {
          await upload.add(body.subarray(off, off + this.partSize));
        }
        await upload.complete();
      } catch (err) {
        await upload.abort();
        throw err;
      }
      return;
    }
    await this.#putIterable(key, body, meta);
  }

  async #putIterable(
    key: string,
    body: AsyncIterable<Uint8Array>,
    meta: Record<string, string> | undefined,
  ): Promise<void> {
    // Reuse part buffers across puts: a fresh, doubling buffer per upload left tens of MB of
    // garbage behind every large snapshot.
    // Streamed bodies are large (small ones come as bytes): size the buffer for a whole part at
    // once rather than doubling through 64 KiB..16 MiB, which left ~2 parts of garbage behind.
    const part = this.#spareParts.pop() ?? new PartBuffer(this.partSize, this.partSize);
    part.reset();
    let upload: Multipart | undefined;
    try {
      for await (const chunk of body) {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`${this.description}: put ${key}: body chunks must be Uint8Array`);
        }
        let off = 0;
        while (off < chunk.length) {
          // A full part goes up only once more bytes arrive, so a body of exactly one part
          // stays a single PutObject.
          if (part.full) {
            upload ??= await this.#startMultipart(key, meta);
            await upload.add(part.bytes());
            part.reset();
          }
          off += part.fill(chunk, off);
        }
      }
      if (upload === undefined) return await this.#putObject(key, part.bytes(), meta);
      await upload.add(part.bytes());
      await upload.complete();
    } catch (err) {
      await upload?.abort();
      throw err;
    } finally {
      if (this.#spareParts.length < MAX_SPARE_PARTS) this.#spareParts.push(part);
    }
  }

  async #putObject(
    key: string,
    body: Uint8Array,
    meta: Record<string, string> | undefined,
  ): Promise<void> {
    await this.#call("put", key, () =>
      this.#client.send(
        new this.#sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          Metadata: meta,
        }),
      ));
  }

  async #startMultipart(key: string, meta: Record<string, string> | undefined): Promise<Multipart> {
    const out = await this.#call("put (create multipart upload)", key, () =>
      this.#client.send(
        new this.#sdk.CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          Metadata: meta,
        }),
      ));
    const uploadId = out.UploadId;
    if (!uploadId) {
      throw new StorageError(`${this.description}: put ${key}: server returned no UploadId`);
    }
    const ids = { Bucket: this.bucket, Key: key, UploadId: uploadId };
    return new Multipart(`${this.description}: put ${key}`, this.partSize, {
      part: async (n, body) => {
        const res = await this.#call(`put (part ${n})`, key, () =>
          this.#client.send(
            new this.#sdk.UploadPartCommand({
              ...ids,
              PartNumber: n,
              Body: body,
              ContentLength: body.length,
            }),
          ));
        if (!res.ETag) {
          throw new StorageError(
            `${this.description}: put ${key}: part ${n} came back without ETag`,
          );
        }
        return res.ETag;
      },
      complete: async (etags) => {
        await this.#call("put (complete multipart upload)", key, () =>
          this.#client.send(
            new this.#sdk.CompleteMultipartUploadCommand({
              ...ids,
              MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
            }),
          ));
      },
      abort: async () => {
        try {
          await this.#client.send(new this.#sdk.AbortMultipartUploadCommand(ids));
        } catch {
          // Best effort: the original failure is what the caller needs to see.
        }
      },
    });
  }

  /** GetObject (ranged when asked) as a stream; NotFoundError when the key is absent. */
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    if (range) checkRange(range);
    if (range && range.length === 0) {
      // "bytes=a-(a-1)" is not a valid range: answer from HEAD (absent -> NotFoundError).
      if (!(await this.head(key))) throw this.#notFound("get", key);
      return emptyBody();
    }
    return reopenable(await this.#open(key, range), () => this.#open(key, range));
  }

  async #open(key: string, range: ByteRange | undefined): Promise<AsyncIterable<Uint8Array>> {
    let out: Sdk.GetObjectCommandOutput;
    try {
      out = await this.#call("get", key, () =>
        this.#client.send(
          new this.#sdk.GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
          }),
        ));
    } catch (err) {
      // Offset at or past the end (or any range of an empty object): empty, per the contract.
      if (range && err instanceof StorageError && err.status === 416) return emptyBody();
      throw err;
    }
    return this.#checked(key, bodyChunks(out.Body), out.ContentLength);
  }

  // Map stream errors, and fail a body cut short (a closed connection can look like an end).
  async *#checked(
    key: string,
    chunks: AsyncIterable<Uint8Array>,
    expected: number | undefined,
  ): AsyncGenerator<Uint8Array> {
    let n = 0;
    try {
      for await (const c of chunks) {
        n += c.length;
        yield c;
      }
    } catch (err) {
      throw this.#mapError("get (reading body)", key, err);
    }
    if (expected !== undefined && n !== expected) {
      throw new StorageError(
        `${this.description}: get ${key}: body ended after ${n} of ${expected} bytes`,
        { transient: true },
      );
    }
  }

  /** HeadObject; undefined on 404 (S3 cannot tell a missing bucket from a missing key here). */
  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.#call(
        "head",
        key,
        () => this.#client.send(new this.#sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key })),
      );
      const meta: Record<string, string> = {};
      for (const [k, v] of Object.entries(out.Metadata ?? {})) meta[k.toLowerCase()] = v;
      return {
        key,
        size: out.ContentLength ?? 0,
        lastModified: out.LastModified ?? new Date(0),
        meta,
      };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** ListObjectsV2 without delimiter, page by page, in the server's (lexicographic) order. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const out = await this.#call("list", prefix, () =>
        this.#client.send(
          new this.#sdk.ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ContinuationToken: token,
          }),
        ));
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  /** DeleteObjects in batches of 1000 (quiet); missing keys are not errors. */
  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const label = batch.length === 1 ? batch[0] : `${batch[0]} (+${batch.length - 1} more)`;
      const out = await this.#call("delete", label, () =>
        this.#client.send(
          new this.#sdk.DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ));
      const errors = out.Errors ?? [];
      if (errors.length > 0) throw this.#deleteError(errors);
    }
  }

  #deleteError(errors: Sdk._Error[]): StorageError {
    const codes = errors.map((e) => e.Code ?? "Unknown");
    const shown = errors.slice(0, 5).map((e) => `${e.Key} (${e.Code ?? "Unknown"})`).join(", ");
    const more = errors.length > 5 ? ` and ${errors.length - 5} more` : "";
    const msg = `${this.description}: delete failed for ${shown}${more}`;
    if (codes.some((c) => AUTH_CODES.has(c))) return new AuthError(msg, { status: 403 });
    // Retrying helps only when every failure was a server-side or throttling one.
    return new StorageError(msg, {
      transient: codes.every((c) => TRANSIENT_CODES.has(c) || THROTTLE_CODES.has(c)),
    });
  }

  /** Destroy the client and its connection pool. */
  close(): Promise<void> {
    this.#client.destroy();
    return Promise.resolve();
  }

  async #call<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.#mapError(op, key, err);
    }
  }

  #notFound(op: string, key: string): NotFoundError {
    return new NotFoundError(`${this.description}: ${op} ${key}: no such key`, { status: 404 });
  }

  #mapError(op: string, key: string, err: unknown): StorageError {
    return s3Error(err, {
      description: this.description,
      bucket: this.bucket,
      endpoint: this.#endpoint,
      op,
      key,
    });
  }
}

/** Where a failed S3 call happened, for s3Error's message. */
export interface S3ErrorContext {
  description: string;
  bucket: string;
  endpoint?: string;
  op: string;
  key: string;
}

/**
 * Map an SDK or network failure to a typed StorageError. Classification uses the HTTP status,
 * the S3/SDK error code or Node errno code, and `$retryable`, never message text; messages carry
 * no SDK text either (S3 messages can echo request details).
 */
export function s3Error(err: unknown, ctx: S3ErrorContext): StorageError {
  if (err instanceof StorageError) return err;
  const e = describe(err);
  const where = `${ctx.description}: ${ctx.op} ${ctx.key}`;
  const http = e.status !== undefined ? `, HTTP ${e.status}` : "";
  const opts = { status: e.status, cause: err };
  if (e.code === "NoSuchBucket") {
    return new StorageError(
      `${where}: bucket "${ctx.bucket}" does not exist (NoSuchBucket${http})`,
      { ...opts, transient: false },
    );
  }
  if (e.code === "NoSuchKey" || e.code === "NotFound" || (e.status === 404 && !e.code404)) {
    return new NotFoundError(`${where}: no such key (${e.code ?? "NotFound"}${http})`, {
      ...opts,
      transient: false,
    });
  }
  if (e.code === "RequestTimeTooSkewed") {
    // Not a credential problem: the SDK has already corrected its clock offset for next time.
    return new StorageError(`${where}: clock skew rejected by server (${e.code}${http})`, {
      ...opts,
      transient: true,
    });
  }
  if (e.status === 401 || e.status === 403 || (e.code && AUTH_CODES.has(e.code))) {
    return new AuthError(`${where}: access denied (${e.code ?? "Forbidden"}${http})`, {
      ...opts,
      transient: false,
    });
  }
  const transient = isTransient(e);
  if (e.status === undefined && e.code && NETWORK_CODES.has(e.code)) {
    return new StorageError(`${where}: cannot reach ${origin(ctx.endpoint) ?? "S3"} (${e.code})`, {
      ...opts,
      transient,
    });
  }
  return new StorageError(`${where}: ${e.code ?? "request failed"}${http}`, { ...opts, transient });
}

/** Adapt an SDK response body (Node Readable, web ReadableStream, bytes) to Uint8Array chunks. */
export async function* bodyChunks(body: unknown): AsyncGenerator<Uint8Array> {
  if (body === undefined || body === null) return;
  if (body instanceof Uint8Array) {
    yield plain(body);
    return;
  }
  if (body instanceof ReadableStream) {
    const reader = body.getReader();
    let done = false;
    try {
      while (true) {
        const r = await reader.read();
        if (r.done) break;
        yield plain(r.value);
      }
      done = true;
    } finally {
      // An early exit by the consumer must release the connection.
      if (!done) await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    return;
  }
  if (isAsyncIterable(body)) {
    let done = false;
    try {
      for await (const c of body) yield plain(c);
      done = true;
    } finally {
      if (!done && hasDestroy(body)) body.destroy();
    }
    return;
  }
  throw new TypeError(`unsupported S3 response body type: ${typeof body}`);
}

// --- multipart ---

interface MultipartOps {
  part(n: number, body: Uint8Array): Promise<string>;
  complete(etags: string[]): Promise<void>;
  abort(): Promise<void>;
}

/** One multipart upload in progress: parts go up in order, one at a time. */
class Multipart {
  #etags: string[] = [];
  constructor(
    private readonly where: string,
    private readonly partSize: number,
    private readonly ops: MultipartOps,
  ) {}

  async add(bytes: Uint8Array): Promise<void> {
    if (this.#etags.length >= MAX_PARTS) {
      throw new StorageError(
        `${this.where}: more than ${MAX_PARTS} parts of ${this.partSize} bytes; raise the part size`,
      );
    }
    this.#etags.push(await this.ops.part(this.#etags.length + 1, bytes));
  }

  complete(): Promise<void> {
    return this.ops.complete(this.#etags);
  }

  abort(): Promise<void> {
    return this.ops.abort();
  }
}

/** Part buffers kept for reuse between puts (one per concurrent upload is typical). */
const MAX_SPARE_PARTS = 2;

/** The one reusable part buffer: grows up to `cap` (small bodies stay small), then is reused. */
class PartBuffer {
  #buf: Uint8Array;
  #n = 0;
  constructor(private readonly cap: number, initial = 64 * 1024) {
    this.#buf = new Uint8Array(Math.min(cap, initial));
  }

  get full(): boolean {
    return this.#n === this.cap;
  }

  /** Copy from `chunk[from..]` as much as fits; returns the number of bytes taken. */
  fill(chunk: Uint8Array, from: number): number {
    const take = Math.min(chunk.length - from, this.cap - this.#n);
    if (this.#n + take > this.#buf.length) {
      const grown = new Uint8Array(
        Math.min(this.cap, Math.max(this.#n + take, this.#buf.length * 2)),
      );
      grown.set(this.#buf.subarray(0, this.#n));
      this.#buf = grown;
    }
    this.#buf.set(chunk.subarray(from, from + take), this.#n);
    this.#n += take;
    return take;
  }

  /** The buffered bytes (a view: valid until the next fill or reset). */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#n);
  }

  reset(): void {
    this.#n = 0;
  }
}

// --- error classification ---

const AUTH_CODES = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "InvalidSecurity",
  "CredentialsProviderError",
]);

const THROTTLE_CODES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "ProvisionedThroughputExceededException",
  "PriorRequestNotComplete",
]);

const TRANSIENT_CODES = new Set([
  "InternalError",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "OperationAborted",
]);

// Socket-level failures (Node errno codes as Deno's node:http reports them). ENOTFOUND is left
// out on purpose: a name that does not resolve is a configuration error, EAI_AGAIN is the
// temporary DNS failure.
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENETRESET",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
]);
const NON_TRANSIENT_NETWORK = new Set(["ENOTFOUND"]);

interface Described {
  status?: number;
  /** S3 error code, SDK error name, or Node errno code. */
  code?: string;
  /** A 404 that is not about the key (e.g. NoSuchUpload). */
  code404: boolean;
  retryable: boolean;
  serverFault: boolean;
}

function describe(err: unknown): Described {
  const o = (typeof err === "object" && err !== null ? err : {}) as Record<string, unknown>;
  const meta = o.$metadata as Record<string, unknown> | undefined;
  const status = typeof meta?.httpStatusCode === "number" ? meta.httpStatusCode : undefined;
  const name = typeof o.name === "string" && o.name !== "Error" && o.name !== "Unknown"
    ? o.name
    : undefined;
  const code = str(o.Code) ?? str(o.code) ?? name;
  return {
    status,
    code,
    code404: code !== undefined && status === 404 && !["NoSuchKey", "NotFound"].includes(code),
    retryable: o.$retryable !== undefined && o.$retryable !== null && o.$retryable !== false,
    serverFault: o.$fault === "server",
  };
}

function isTransient(e: Described): boolean {
  if (e.status !== undefined) {
    if (e.status >= 500 || e.status === 408 || e.status === 429) return true;
  }
  if (e.code && (THROTTLE_CODES.has(e.code) || TRANSIENT_CODES.has(e.code))) return true;
  if (e.code && NETWORK_CODES.has(e.code)) return !NON_TRANSIENT_NETWORK.has(e.code);
  if (e.retryable || e.serverFault) return true;
  return false;
}

// --- small helpers ---

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function tryURL(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

// Scheme, host and port only: never userinfo that could carry credentials.
function origin(endpoint: string | undefined): string | undefined {
  return endpoint ? tryURL(endpoint)?.origin : undefined;
}

function plain(c: unknown): Uint8Array {
  if (!(c instanceof Uint8Array)) {
    throw new TypeError(`S3 response body yielded a ${typeof c}, not bytes`);
  }
  // Buffer subclasses Uint8Array with different slice() semantics; hand out plain views.
  return c.constructor === Uint8Array ? c : new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null &&
    typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}

function hasDestroy(v: unknown): v is { destroy(): void } {
  return typeof (v as { destroy?: unknown }).destroy === "function";
}
