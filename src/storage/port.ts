/** The Storage port: the only way walrust touches replica data. Every backend implements it. */

/** One stored object as listed or HEADed. */
export interface ObjectInfo {
  /** Full key relative to the backend root (never starts with "/"). */
  key: string;
  /** Size in bytes. */
  size: number;
  /** Last-modified time (filesystem mtime or S3 LastModified). */
  lastModified: Date;
  /** User metadata (lower-case keys), when the backend returns it (HEAD always; LIST may not). */
  meta?: Record<string, string>;
}

/** A byte range to read. */
export interface ByteRange {
  /** Byte offset of the first byte to read. */
  offset: number;
  /** Number of bytes to read. */
  length: number;
}

/** The storage interface (DESIGN.md §2). Keys use "/" separators and never escape the root. */
export interface Storage {
  /** Human-readable description for messages, e.g. "file:///backups" or "s3://bucket/prefix". */
  readonly description: string;
  /**
   * Write an object atomically: readers see the old object, the new one, or none; never a part.
   * An iterable body may reuse its buffer between chunks: consume (or copy) each chunk before
   * pulling the next.
   */
  put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void>;
  /** Read an object (or a range of it) as a stream of chunks. Throws NotFoundError if absent. */
  get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
  /** Object info, or undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Whether the object exists, where that is cheaper than `head` (no metadata). Optional. */
  exists?(key: string): Promise<boolean>;
  /** Every object whose key starts with `prefix`, in ascending key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Delete keys; missing keys are not an error. */
  delete(keys: string[]): Promise<void>;
  /** Release resources (connections). Optional. */
  close?(): Promise<void>;
}

/** Whether `key` exists: the backend's cheap `exists` where it has one, else `head`. */
export async function objectExists(s: Storage, key: string): Promise<boolean> {
  return s.exists ? await s.exists(key) : (await s.head(key)) !== undefined;
}

/** Read a whole object into memory. For small objects only (headers, test data). */
export async function readAll(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of it) {
    chunks.push(c);
    n += c.length;
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Reject a malformed range (a caller bug, not a storage failure). */
export function checkRange(r: ByteRange): void {
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) {
    throw new RangeError(`range offset must be a non-negative integer, got ${r.offset}`);
  }
  if (!Number.isSafeInteger(r.length) || r.length < 0) {
    throw new RangeError(`range length must be a non-negative integer, got ${r.length}`);
  }
}
