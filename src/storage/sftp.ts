/**
 * The SFTP backend (`sftp://user@host:port/abs/path`) over `ssh2-sftp-client`, imported lazily:
 * writes go to a hidden temporary name and are renamed into place (`posix-rename`, atomic on the
 * server), reads stream (with a byte range), listings walk the folders. Keys use Litestream's file
 * layout; metadata lives in a hidden `.<name>.walrust-meta` sidecar as on WebDAV. One connection,
 * opened on first use and again after it broke. The host key is checked when one is given.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import { Readable } from "node:stream";
import Client from "ssh2-sftp-client";
import { AuthError, NotFoundError, StorageError } from "../errors.ts";
import type { ByteRange, ObjectInfo, Storage } from "./port.ts";
import { PerKeySerial } from "./serial.ts";
import { parseSidecar, sidecarKey, splitKey } from "./sidecar.ts";
import { emptyBody } from "./body.ts";

/** Where the replica is and how to log in. */
export interface SftpOptions {
  host: string;
  port: number;
  username: string;
  /** Absolute folder of the replica on the server. */
  root: string;
  password?: string;
  /** A private key (OpenSSH format). */
  privateKey?: string;
  /** The server's public key line (`ssh-ed25519 AAAA...`): the connection is refused otherwise. */
  hostKey?: string;
  /** Told once when no host key is given (the connection is then not authenticated). */
  warn?: (msg: string) => void;
}

const NETWORK = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_NOT_CONNECTED",
  "ERR_GENERIC_CLIENT",
  "ERR_BAD_AUTH",
]);

/** A Storage on a folder of an SFTP server. */
export class SftpStorage implements Storage {
  readonly description: string;
  readonly #o: SftpOptions;
  readonly #root: string;
  #client?: Promise<Client>;
  #warned = false;
  readonly #serial = new PerKeySerial();
  /** Folders made or being made (concurrent puts share one mkdir per folder). */
  readonly #made = new Map<string, Promise<void>>();
  /** Per connection: rejects once it closed, failing the requests still waiting on it. */
  readonly #lost = new WeakMap<Client, Promise<never>>();

  constructor(o: SftpOptions) {
    this.#o = o;
    this.#root = o.root.replace(/\/+$/, "") || "/";
    this.description = `sftp://${o.username}@${o.host}:${o.port}${this.#root}`;
  }

  /** Puts of one key run one after the other (body and sidecar are two renames). */
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
    const path = this.#path(key);
    const folder = this.#path(dir).replace(/\/+$/, "") || "/";
    const tmp = `${folder}/.${name}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    const sidecar = this.#path(sidecarKey(key));
    await this.#run(key, async (c) => {
      await this.#mkdir(c, folder);
      if (meta && Object.keys(meta).length > 0) {
        const mtmp = `${sidecar}.tmp-${crypto.randomUUID().slice(0, 8)}`;
        await c.put(Buffer.from(JSON.stringify(meta)), mtmp);
        await c.posixRename(mtmp, sidecar);
      } else if (await c.exists(sidecar)) {
        await c.delete(sidecar, true);
      }
      const src = body instanceof Uint8Array
        ? Buffer.from(body.buffer, body.byteOffset, body.byteLength)
        // The body contract lets the source reuse its buffer: copy each chunk.
        : Readable.from((async function* () {
          for await (const chunk of body) yield Buffer.from(chunk);
        })());
      await c.put(src, tmp);
      await c.posixRename(tmp, path);
    });
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const path = this.#path(key);
    return await this.#run(key, async (c) => {
      const st = await c.exists(path);
      if (st !== "-") throw new NotFoundError(`${this.description}/${key}: not found`);
      if (range && range.length <= 0) return emptyBody();
      if (range) {
        const size = (await c.stat(path)).size;
        if (range.offset >= size) return emptyBody();
        const end = Math.min(size, range.offset + range.length) - 1;
        return settled(c.createReadStream(path, { start: range.offset, end }));
      }
      return settled(c.createReadStream(path));
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#path(key);
    return await this.#run(key, async (c) => {
      if ((await c.exists(path)) !== "-") return undefined;
      const st = await c.stat(path);
      const sidecar = this.#path(sidecarKey(key));
      const meta = (await c.exists(sidecar)) === "-"
        ? parseSidecar(String(await c.get(sidecar)))
        : {};
      return { key, size: st.size, lastModified: new Date(st.modifyTime), meta };
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const cut = prefix.lastIndexOf("/");
    const dir = cut < 0 ? "" : prefix.slice(0, cut + 1);
    const found: ObjectInfo[] = [];
    await this.#run(prefix, (c) => this.#walk(c, dir, prefix, found));
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    yield* found;
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      await this.#run(key, async (c) => {
        const path = this.#path(key);
        if ((await c.exists(path)) === "-") await c.delete(path, true);
        const sidecar = this.#path(sidecarKey(key));
        if ((await c.exists(sidecar)) === "-") await c.delete(sidecar, true);
      });
    }
  }

  async close(): Promise<void> {
    const c = this.#client;
    this.#client = undefined;
    if (c) await (await c.catch(() => undefined))?.end().catch(() => {});
  }

  /** Make `folder` and its parents once per connection, shared by concurrent puts. */
  #mkdir(c: Client, folder: string): Promise<void> {
    let made = this.#made.get(folder);
    if (!made) {
      made = (async () => {
        if ((await c.exists(folder)) === "d") return;
        const parent = folder.slice(0, folder.lastIndexOf("/"));
        if (parent) await this.#mkdir(c, parent);
        try {
          await c.mkdir(folder);
        } catch (e) {
          if ((await c.exists(folder)) !== "d") throw e; // made meanwhile by someone else: fine
        }
      })().catch((e) => {
        this.#made.delete(folder);
        throw e;
      });
      this.#made.set(folder, made);
    }
    return made;
  }

  async #walk(c: Client, dir: string, prefix: string, out: ObjectInfo[]): Promise<void> {
    const folder = this.#path(dir).replace(/\/+$/, "") || "/";
    if ((await c.exists(folder)) !== "d") return;
    for (const e of await c.list(folder)) {
      if (e.name.startsWith(".")) continue; // temporaries and metadata sidecars
      const key = `${dir}${e.name}`;
      if (e.type === "d") {
        const sub = `${key}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) await this.#walk(c, sub, prefix, out);
      } else if (e.type === "-" && key.startsWith(prefix)) {
        out.push({ key, size: e.size, lastModified: new Date(e.modifyTime) });
      }
    }
  }

  #path(key: string): string {
    return `${this.#root === "/" ? "" : this.#root}/${key}`;
  }

  /** Run `fn` on a connected client; a broken connection is dropped and the error typed. */
  async #run<T>(key: string, fn: (c: Client) => Promise<T>): Promise<T> {
    let c: Client;
    try {
      c = await (this.#client ??= this.#connect());
    } catch (e) {
      this.#client = undefined;
      throw e instanceof StorageError ? e : this.#error(key, "connect", e);
    }
    try {
      // A request in flight when the connection drops may never settle on its own.
      return await Promise.race([fn(c), this.#lost.get(c)!]);
    } catch (e) {
      if (e instanceof StorageError) throw e;
      const err = this.#error(key, "request", e);
      if (err.transient) {
        this.#client = undefined;
        this.#made.clear();
        await c.end().catch(() => {});
      }
      throw err;
    }
  }

  async #connect(): Promise<Client> {
    const o = this.#o;
    if (!o.hostKey && !this.#warned) {
      this.#warned = true;
      o.warn?.(
        `${this.description}: the server's host key is not checked (set the host key to ` +
          "refuse a server that is not the one you mean)",
      );
    }
    const expected = o.hostKey ? hostKeyBlob(o.hostKey) : undefined;
    // The library's default listeners print to stdout/stderr (it would break --json output).
    const c = new Client("walrust", { error: () => {}, end: () => {}, close: () => {} });
    // The library adds listeners per operation: concurrent puts pass Node's warning limit of 10.
    (c as unknown as { client: { setMaxListeners(n: number): void } }).client.setMaxListeners(256);
    // Offer our login methods one by one; running out of them is what a refused login is (the
    // library's error says so only in its message).
    const methods: Record<string, unknown>[] = [];
    if (o.privateKey) methods.push({ type: "publickey", username: o.username, key: o.privateKey });
    if (o.password !== undefined) {
      methods.push({ type: "password", username: o.username, password: o.password });
    }
    let refused = false;
    const authHandler = (_left: unknown, _partial: unknown, next: (m: unknown) => void) => {
      const m = methods.shift();
      if (!m) refused = true;
      next(m ?? false);
    };
    const failed = (e: unknown) =>
      refused
        ? new AuthError(
          `${this.description}: the server refused the login (check the key or password)`,
        )
        : e;
    // Our own socket with Nagle off: with it on, every small SFTP request waited ~40 ms for the
    // server's delayed ACK (20 stats: 880 ms; without: 7 ms).
    const sock = net.connect(o.port, o.host);
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", () => resolve());
      sock.once("error", reject);
    }).catch((e: unknown) => {
      sock.destroy();
      throw e;
    });
    await c.connect({
      sock,
      host: o.host,
      port: o.port,
      username: o.username,
      authHandler,
      readyTimeout: 20_000,
      // A server that stops answering (no FIN, no RST) ends the connection after ~30 s.
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      hostVerifier: expected
        ? (key: Buffer) => Buffer.compare(Buffer.from(key), expected) === 0
        : undefined,
    }).catch((e: unknown) => {
      throw failed(e);
    });
    const ssh = (c as unknown as { client: { once(ev: string, fn: () => void): void } }).client;
    const current = this.#client; // this connection's promise (set by #run before it resolved)
    const lost = new Promise<never>((_, reject) => {
      const gone = () => {
        reject(
          new StorageError(`${this.description}: the connection closed`, { transient: true }),
        );
        if (this.#client === current) {
          this.#client = undefined;
          this.#made.clear();
        }
      };
      ssh.once("close", gone);
      ssh.once("end", gone);
    });
    lost.catch(() => {}); // observed by the requests racing it, if any
    this.#lost.set(c, lost);
    return c;
  }

  #error(key: string, what: string, e: unknown): StorageError {
    const code = (e as { code?: unknown })?.code;
    const level = (e as { level?: unknown })?.level;
    const msg = `${this.description}/${key}: ${what} failed (${
      typeof code === "string" || typeof code === "number" ? code : "error"
    })`;
    if (level === "client-authentication") {
      return new AuthError(`${msg}: the server refused the login (check the key or password)`);
    }
    if (level === "client-socket" || level === "client-timeout" || NETWORK.has(String(code))) {
      return new StorageError(msg, { transient: true, cause: e });
    }
    return new StorageError(msg, { cause: e });
  }
}

/** The key bytes of a public key line (`type base64 [comment]`). */
function hostKeyBlob(line: string): Buffer {
  const b64 = line.trim().split(/\s+/)[1] ?? line.trim();
  return Buffer.from(b64, "base64");
}

/** The read stream's chunks; it is closed (its handle released) before the iteration ends. */
async function* settled(rs: Readable): AsyncIterable<Uint8Array> {
  const closed = new Promise<void>((resolve) => rs.once("close", () => resolve()));
  // Errors reach the caller through the iteration; a late one (the connection ending while the
  // handle closes) must not escape as an unhandled event.
  rs.on("error", () => {});
  try {
    for await (const chunk of rs) yield chunk as Uint8Array;
  } finally {
    rs.destroy();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
  }
}
