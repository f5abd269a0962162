/**
 * Client-side encryption with age (https://age-encryption.org/v1): a Storage decorator that
 * encrypts every object it writes for the replica's recipients and decrypts what it reads with
 * the replica's identities, streaming in age's 64 KiB STREAM chunks (never a whole object in
 * memory unless it came as one buffer). Keys and layout stay as they are; each object is a real
 * age file (`age -d -i key.txt` opens it), and its metadata keeps `litestream-timestamp` and
 * adds `walrust-encryption: age`, so point-in-time planning needs no key.
 *
 * A host with recipients only can replicate but cannot read its own backups: reads then fail
 * with ConfigError naming the missing setting. The `age-encryption` package is loaded only when
 * a replica has age keys.
 */
import { ConfigError, IntegrityError } from "../errors.ts";
import { type ByteRange, objectExists, type ObjectInfo, type Storage } from "./port.ts";

/** The age keys of one replica. */
export interface AgeKeys {
  /** Public keys (`age1...`): enough to write. */
  recipients: readonly string[];
  /** Private keys (`AGE-SECRET-KEY-1...`): needed to read (restore, verify, follow, compact). */
  identities: readonly string[];
}

/** Metadata key marking an object as age-encrypted. */
export const ENCRYPTION_META = "walrust-encryption";

/** Every age file starts with this line. */
const AGE_MAGIC = "age-encryption.org/v1\n";
const MAGIC_BYTES = new TextEncoder().encode(AGE_MAGIC);
/** Plaintext bytes per STREAM chunk, and the tag each chunk adds. */
const CHUNK = 64 * 1024;
const TAG = 16;

/** Where to look up a key for messages: the config setting or environment variable. */
const IDENTITY_FIX =
  "set age.identities (or an identity file) in the config, or LITESTREAM_AGE_SECRET_KEY";

type AgeModule = typeof import("age-encryption");
let ageModule: Promise<AgeModule> | undefined;

function age(): Promise<AgeModule> {
  return ageModule ??= import("age-encryption");
}

/** False for a Storage that encrypts but holds no identity to decrypt (replicate-only host). */
export function canRead(storage: Storage): boolean {
  return !(storage instanceof AgeStorage) || storage.keys.identities.length > 0;
}

/** True when `head` (an object's first bytes) begins like an age file. */
export function isAgeCiphertext(head: Uint8Array): boolean {
  if (head.length < MAGIC_BYTES.length) return false;
  for (let i = 0; i < MAGIC_BYTES.length; i++) if (head[i] !== MAGIC_BYTES[i]) return false;
  return true;
}

/** The number of leading bytes `isAgeCiphertext` needs. */
export const AGE_PROBE_BYTES = MAGIC_BYTES.length;

/** True when keys hold at least one recipient or identity (a replica with age on). */
export function hasAgeKeys(keys: AgeKeys | undefined): keys is AgeKeys {
  return !!keys && (keys.recipients.length > 0 || keys.identities.length > 0);
}

/**
 * Parse the lines of an identity file (age-keygen's output: `#` comments and blank lines
 * around one key per line).
 */
export function parseIdentityFile(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
}

/**
 * Check every key and derive the recipients of the identities when none are given (a restore
 * host holds identities only). Throws ConfigError naming the bad entry (never a secret's text).
 */
export async function checkAgeKeys(keys: AgeKeys, where: string): Promise<AgeKeys> {
  const { Decrypter, Encrypter, identityToRecipient } = await age();
  for (const [i, r] of keys.recipients.entries()) {
    try {
      new Encrypter().addRecipient(r);
    } catch (cause) {
      const shown = r.length > 12 ? `${r.slice(0, 12)}...` : r;
      throw new ConfigError(
        `${where}: age recipient ${i + 1} (${JSON.stringify(shown)}) is not an age public key ` +
          "(fix: use the age1... line age-keygen prints as its public key)",
        { cause },
      );
    }
  }
  const identities = keys.identities.map((s) => s.trim().toUpperCase());
  for (const [i, s] of identities.entries()) {
    try {
      new Decrypter().addIdentity(s);
    } catch {
      // The cause would carry the key's text: leave it out.
      throw new ConfigError(
        `${where}: age identity ${i + 1} is not an age secret key ` +
          "(fix: use the AGE-SECRET-KEY-1... line of the file age-keygen wrote)",
      );
    }
  }
  const recipients = keys.recipients.length > 0
    ? [...keys.recipients]
    : await Promise.all(identities.map((s) => identityToRecipient(s)));
  return { recipients, identities };
}

/** A Storage that age-encrypts every object on the way in and decrypts on the way out. */
export class AgeStorage implements Storage {
  readonly description: string;
  /** Bytes of the age header (and nonce) for this recipient set, once measured. */
  #headerBytes?: Promise<number>;

  /** `keys` must have passed `checkAgeKeys` (recipients present). */
  constructor(readonly inner: Storage, readonly keys: AgeKeys) {
    this.description = inner.description;
  }

  async put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    const enc = await this.#encrypter();
    const tagged = { ...meta, [ENCRYPTION_META]: "age" };
    if (body instanceof Uint8Array) {
      // Encrypted whole so the backend below can retry it.
      return await this.inner.put(key, await enc.encrypt(body), tagged);
    }
    const sealed = await enc.encrypt(copyingStream(body));
    await this.inner.put(key, sealed, tagged);
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    if (this.keys.identities.length === 0) {
      throw new ConfigError(
        `${this.description}/${key}: the replica is age-encrypted and no age identity is given ` +
          `to read it (fix: ${IDENTITY_FIX})`,
      );
    }
    const raw = await this.inner.get(key);
    const source = new SourceStream(raw);
    const head = await source.peek(AGE_PROBE_BYTES);
    if (!isAgeCiphertext(head)) {
      await source.cancel();
      throw mixedError(`${this.description}/${key}`, false);
    }
    const { Decrypter } = await age();
    const dec = new Decrypter();
    for (const id of this.keys.identities) dec.addIdentity(id);
    let plain: ReadableStream<Uint8Array>;
    try {
      plain = await dec.decrypt(source.stream);
    } catch (e) {
      await source.cancel();
      throw source.failure(e, `${this.description}/${key}`, "header");
    }
    return decrypted(plain, source, `${this.description}/${key}`, range);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const info = await this.inner.head(key);
    return info && { ...info, size: await this.#plainSize(info.size) };
  }

  exists(key: string): Promise<boolean> {
    return objectExists(this.inner, key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const headerBytes = await this.#measureHeader();
    for await (const o of this.inner.list(prefix)) {
      yield { ...o, size: plainSize(o.size, headerBytes) };
    }
  }

  delete(keys: string[]): Promise<void> {
    return this.inner.delete(keys);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }

  async #encrypter() {
    const { Encrypter } = await age();
    const enc = new Encrypter();
    for (const r of this.keys.recipients) enc.addRecipient(r);
    return enc;
  }

  /** Sizes are listed as the plaintext's: LTX sizes compare with local files and add up. */
  async #plainSize(cipher: number): Promise<number> {
    return plainSize(cipher, await this.#measureHeader());
  }

  #measureHeader(): Promise<number> {
    // An empty plaintext encrypts to header + nonce + one empty final chunk (its tag).
    return this.#headerBytes ??= this.#encrypter().then(async (enc) =>
      (await enc.encrypt(new Uint8Array(0))).length - TAG
    );
  }
}

/**
 * The plaintext size of an age file of `cipher` bytes whose header and nonce take `headerBytes`
 * (exact for files written to the same recipient set; otherwise an estimate).
 */
export function plainSize(cipher: number, headerBytes: number): number {
  const payload = cipher - headerBytes;
  if (payload < TAG) return cipher;
  const chunks = Math.max(1, Math.ceil(payload / (CHUNK + TAG)));
  return payload - chunks * TAG;
}

/** ConfigError for an object whose encryption does not match the replica's settings. */
export function mixedError(where: string, encrypted: boolean): ConfigError {
  return encrypted
    ? new ConfigError(
      `${where} is age-encrypted but this replica has no age keys; a replica is either encrypted ` +
        `or not (fix: configure the replica's age recipients and identities, or use another path)`,
    )
    : new ConfigError(
      `${where} is not age-encrypted but this replica has age keys; a replica is either encrypted ` +
        `or not (fix: remove age from this replica's settings, or replicate to a new path)`,
    );
}

/**
 * Read the first bytes of `key` through the raw backend (no key needed) and throw ConfigError
 * when its encryption differs from `encrypted`. Used at start, before anything is written.
 */
export async function checkObjectEncryption(
  storage: Storage,
  key: string,
  encrypted: boolean,
): Promise<void> {
  const raw = storage instanceof AgeStorage ? storage.inner : storage;
  const head = await readPrefix(await raw.get(key, { offset: 0, length: AGE_PROBE_BYTES }));
  if (isAgeCiphertext(head) !== encrypted) {
    throw mixedError(`${raw.description}/${key}`, !encrypted);
  }
}

async function readPrefix(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const out = new Uint8Array(AGE_PROBE_BYTES);
  let n = 0;
  for await (const c of it) {
    const take = Math.min(c.length, out.length - n);
    out.set(c.subarray(0, take), n);
    n += take;
    if (n === out.length) break;
  }
  return out.subarray(0, n);
}

/** A ReadableStream over a body whose chunks may share one buffer: each is copied once. */
function copyingStream(body: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const r = await it.next();
      if (r.done) c.close();
      else c.enqueue(r.value.slice());
    },
    async cancel() {
      await it.return?.();
    },
  }, { highWaterMark: 0 });
}

/**
 * The raw object as a ReadableStream for the decrypter, remembering its own errors so a
 * storage failure mid-read stays a StorageError and everything else is the object's fault.
 */
class SourceStream {
  readonly stream: ReadableStream<Uint8Array>;
  readonly #it: AsyncIterator<Uint8Array>;
  #ahead: Uint8Array[] = [];
  #error: unknown = undefined;

  constructor(raw: AsyncIterable<Uint8Array>) {
    this.#it = raw[Symbol.asyncIterator]();
    this.stream = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        const next = this.#ahead.shift() ?? await this.#next();
        if (next === undefined) c.close();
        else c.enqueue(next);
      },
      cancel: () => this.cancel(),
    }, { highWaterMark: 0 });
  }

  async #next(): Promise<Uint8Array | undefined> {
    try {
      const r = await this.#it.next();
      return r.done ? undefined : r.value.slice();
    } catch (e) {
      this.#error = e;
      throw e;
    }
  }

  /** The first `n` bytes (fewer at the end), kept to be read again by the stream. */
  async peek(n: number): Promise<Uint8Array> {
    let have = this.#ahead.reduce((s, c) => s + c.length, 0);
    while (have < n) {
      const c = await this.#next();
      if (c === undefined) break;
      this.#ahead.push(c);
      have += c.length;
    }
    const out = new Uint8Array(Math.min(n, have));
    let o = 0;
    for (const c of this.#ahead) {
      if (o === out.length) break;
      const take = Math.min(c.length, out.length - o);
      out.set(c.subarray(0, take), o);
      o += take;
    }
    return out;
  }

  async cancel(): Promise<void> {
    this.#ahead = [];
    await this.#it.return?.().catch(() => {});
  }

  /**
   * What `e`, thrown while decrypting, means: the source's own error, or a bad object (in the
   * header: no identity opens it; in the body: a chunk fails its authentication tag).
   */
  failure(e: unknown, where: string, phase: "header" | "body"): unknown {
    if (this.#error !== undefined && (e === this.#error || isCausedBy(e, this.#error))) {
      return this.#error;
    }
    const why = e instanceof Error ? e.message : String(e);
    const hint = phase === "header"
      ? `none of the age identities given opens it (${why}): wrong key, or a damaged header`
      : `it does not decrypt (${why}): tampered or damaged`;
    return new IntegrityError(`${where}: ${hint}`, { cause: e });
  }
}

function isCausedBy(e: unknown, cause: unknown): boolean {
  for (let c = e, i = 0; c instanceof Error && i < 8; c = c.cause, i++) {
    if (c.cause === cause) return true;
  }
  return false;
}

/** The decrypted stream as chunks, cut to `range`, with decrypt errors made typed. */
async function* decrypted(
  plain: ReadableStream<Uint8Array>,
  source: SourceStream,
  where: string,
  range?: ByteRange,
): AsyncIterable<Uint8Array> {
  const reader = plain.getReader();
  const start = range?.offset ?? 0;
  const end = range ? range.offset + range.length : Infinity;
  let pos = 0;
  try {
    while (pos < end) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throw source.failure(e, where, "body");
      }
      if (r.done) break;
      const c = r.value;
      const from = Math.max(0, start - pos);
      const to = Math.min(c.length, end - pos);
      pos += c.length;
      if (to > from) yield c.subarray(from, to);
    }
  } finally {
    await reader.cancel().catch(() => {});
    await source.cancel();
  }
}
