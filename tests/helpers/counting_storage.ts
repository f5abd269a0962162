/** A Storage wrapper for tests and benchmarks: forwards every call, counts reads. */
import type { ByteRange, ObjectInfo, Storage } from "../../src/storage/port.ts";

/** A Storage that forwards every call and counts reads (a ranged get counts as one read). */
export class CountingStorage implements Storage {
  readonly description: string;
  gets = 0;
  bytes = 0;
  lists = 0;
  heads = 0;
  readonly keys = new Set<string>();

  constructor(readonly inner: Storage) {
    this.description = inner.description;
  }

  put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    return this.inner.put(key, body, meta);
  }

  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    this.gets++;
    this.keys.add(key);
    const it = await this.inner.get(key, range);
    const add = (n: number) => (this.bytes += n);
    return (async function* () {
      for await (const c of it) {
        add(c.length);
        yield c;
      }
    })();
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    this.heads++;
    return this.inner.head(key);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    this.lists++;
    return this.inner.list(prefix);
  }

  delete(keys: string[]): Promise<void> {
    return this.inner.delete(keys);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
