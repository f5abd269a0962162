/**
 * Operations on one key, one after the other: backends whose put is two steps (the body and its
 * metadata sidecar, each moved into place) must not interleave two puts of one key, or the
 * metadata read back could belong to the other put's body.
 */
export class PerKeySerial {
  readonly #tails = new Map<string, Promise<void>>();

  /** Run `fn` after every earlier call for `key` has settled; its own result is returned. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key) ?? Promise.resolve();
    const mine = before.then(fn);
    const tail: Promise<void> = mine.then(() => {}, () => {}).finally(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    this.#tails.set(key, tail);
    return mine;
  }
}
