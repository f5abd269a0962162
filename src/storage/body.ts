/** Object bodies as the backends hand them out. */

/** A body with no bytes. */
export async function* emptyBody(): AsyncGenerator<Uint8Array> {}

/**
 * A body whose first iteration reads the already opened `first` and every later one opens the
 * object again (iterating twice reads it twice, as re-opening a file does).
 */
export function reopenable(
  first: AsyncIterable<Uint8Array>,
  open: () => Promise<AsyncIterable<Uint8Array>>,
): AsyncIterable<Uint8Array> {
  let fresh: AsyncIterable<Uint8Array> | undefined = first;
  return {
    [Symbol.asyncIterator]: () => {
      const p = fresh ? Promise.resolve(fresh) : open();
      fresh = undefined;
      return delegate(p);
    },
  };
}

async function* delegate(p: Promise<AsyncIterable<Uint8Array>>): AsyncGenerator<Uint8Array> {
  yield* await p;
}
