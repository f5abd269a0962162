/**
 * A pull-based byte reader over an AsyncIterable of chunks with arbitrary boundaries.
 *
 * Reads return views that stay valid only until the next call that may fetch more data
 * (`fill`, `read`, `readToEnd`). Requests inside one source chunk are served without copying;
 * a request that straddles chunks is assembled in a reused, growing scratch buffer.
 */

const EMPTY = new Uint8Array(0);

/** Buffered reader used by the LTX decoder. */
export class ByteReader {
  #it: AsyncIterator<Uint8Array>;
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  #scratch: Uint8Array = EMPTY;
  #inScratch = false;
  #eof = false;
  #consumed = 0;

  /** Wrap a chunk source; the source is pulled lazily. */
  constructor(src: AsyncIterable<Uint8Array>) {
    this.#it = src[Symbol.asyncIterator]();
  }

  /** Absolute offset of the next unread byte. */
  get offset(): number {
    return this.#consumed;
  }

  /** Bytes buffered and not yet consumed. */
  get available(): number {
    return this.#end - this.#pos;
  }

  /** All buffered, unconsumed bytes (a view; nothing is consumed). */
  peek(): Uint8Array {
    return this.#buf.subarray(this.#pos, this.#end);
  }

  /** The next `n` bytes if already buffered (consumed), else undefined. */
  take(n: number): Uint8Array | undefined {
    if (this.#end - this.#pos < n) return undefined;
    const v = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.#consumed += n;
    return v;
  }

  /** The next `n` bytes (consumed), or undefined when the source ends first. */
  async read(n: number): Promise<Uint8Array | undefined> {
    if (!(await this.fill(n))) return undefined;
    return this.take(n);
  }

  /** Make at least `n` bytes available; false if the source ends first. */
  async fill(n: number): Promise<boolean> {
    if (this.#end - this.#pos >= n) return true;
    if (this.#eof) return false;
    if (this.#end === this.#pos) {
      // Nothing buffered: a chunk that covers the request is used in place.
      for (;;) {
        const chunk = await this.#next();
        if (chunk === undefined) return false;
        if (chunk.length === 0) continue;
        if (chunk.length >= n) {
          this.#buf = chunk;
          this.#pos = 0;
          this.#end = chunk.length;
          this.#inScratch = false;
          return true;
        }
        this.#toScratch(chunk, n);
        break;
      }
    } else {
      this.#toScratch(EMPTY, n);
    }
    while (this.#end - this.#pos < n) {
      const chunk = await this.#next();
      if (chunk === undefined) return false;
      this.#append(chunk);
    }
    return true;
  }

  /**
   * Everything up to the end of the source, but at most `limit` bytes; `more` tells whether
   * bytes beyond the limit exist.
   */
  async readToEnd(limit: number): Promise<{ bytes: Uint8Array; more: boolean }> {
    while (!this.#eof && this.#end - this.#pos <= limit) {
      const want = this.#end - this.#pos + 1;
      if (!(await this.fill(want))) break;
    }
    const avail = this.#end - this.#pos;
    const n = Math.min(avail, limit);
    const bytes = this.take(n) ?? EMPTY;
    return { bytes, more: avail > limit };
  }

  /** Stop reading: tell the source we are done (closes a file behind it). */
  async close(): Promise<void> {
    if (this.#eof) return;
    this.#eof = true;
    this.#buf = EMPTY;
    this.#pos = this.#end = 0;
    await this.#it.return?.();
  }

  async #next(): Promise<Uint8Array | undefined> {
    if (this.#eof) return undefined;
    const r = await this.#it.next();
    if (r.done) {
      this.#eof = true;
      return undefined;
    }
    return r.value;
  }

  /** Move the unread bytes to the front of the scratch buffer, then append `chunk`. */
  #toScratch(chunk: Uint8Array, need: number): void {
    const rest = this.#end - this.#pos;
    const cap = Math.max(need, rest + chunk.length);
    if (this.#scratch.length >= cap) {
      if (this.#inScratch) this.#scratch.copyWithin(0, this.#pos, this.#end);
      else this.#scratch.set(this.#buf.subarray(this.#pos, this.#end), 0);
    } else {
      const next = new Uint8Array(Math.max(cap, 2 * this.#scratch.length, 4096));
      next.set(this.#buf.subarray(this.#pos, this.#end), 0);
      this.#scratch = next;
    }
    this.#buf = this.#scratch;
    this.#inScratch = true;
    this.#pos = 0;
    this.#end = rest;
    this.#append(chunk);
  }

  #append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#end + chunk.length > this.#scratch.length) {
      const next = new Uint8Array(Math.max(this.#end + chunk.length, 2 * this.#scratch.length));
      next.set(this.#scratch.subarray(this.#pos, this.#end), 0);
      this.#end -= this.#pos;
      this.#pos = 0;
      this.#scratch = next;
      this.#buf = next;
    }
    this.#scratch.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}
