/**
 * Streaming k-way merge of LTX files into one (spec §1.12, the behaviour of superfly/ltx's
 * Compactor). Each input is decoded page by page in ascending pgno; at most one page per input
 * is held at a time, so memory follows the number of inputs, not their size.
 *
 * Output header: minTXID of the first input, maxTXID and commit of the last, pre-apply checksum
 * of the first, post-apply of the last, flags shared by all inputs, WAL fields and node ID zero.
 * For every pgno the copy from the newest input holding it wins; pages above the final commit
 * are dropped. One deliberate difference from the reference: a page that a later input cut off
 * (its commit fell below the pgno) and that the database later regrew without rewriting is
 * emitted as zeros, as applying the chain would leave it, instead of its stale old content.
 */

import { IntegrityError, LtxError, WalrustError } from "../errors.ts";
import { LtxDecoder, type LtxFrame, type LtxTrailer, readLtxFile } from "./decoder.ts";
import { type ByteSink, LtxEncoder, type LtxFormat } from "./encoder.ts";
import { isSnapshot, lockPgno, type LtxHeader, tracksChecksums } from "./header.ts";
import { formatTXID } from "./names.ts";

/** One LTX file to merge: a name for error messages and a way to stream its bytes. */
export interface CompactInput {
  /** Names the file in every error about it (a path or an object key). */
  name: string;
  /** Start streaming the file's bytes; called once. */
  open(): Promise<AsyncIterable<Uint8Array>>;
}

/** How the compacted file is written. */
export interface CompactOptions {
  /** Page encoding of the output; default the encoder's ("legacy", readable by every v0.5.x). */
  format?: LtxFormat;
  /**
   * Header timestamp: "latest" (default, the newest input's, as superfly/ltx and Litestream
   * write it), "earliest" (the oldest input's), or an explicit ms-since-epoch value.
   */
  timestamp?: "latest" | "earliest" | number;
}

/** What was written. */
export interface CompactResult {
  /** Header of the compacted file. */
  header: LtxHeader;
  /** Bytes written through the sink. */
  size: number;
  /** Page frames in the compacted file. */
  pages: number;
}

/** An input read from a local file. */
export function fileInput(path: string): CompactInput {
  return { name: path, open: () => Promise.resolve(readLtxFile(path)) };
}

/**
 * Merge `inputs` (oldest first, contiguous or overlapping TXID ranges, one page size) into one
 * LTX file written through `write`. Every input is read to its end and fully verified; on any
 * error the sink has received no trailer, so the partial output is not a valid LTX file.
 */
export async function compactLtx(
  inputs: CompactInput[],
  write: ByteSink,
  opts: CompactOptions = {},
): Promise<CompactResult> {
  if (inputs.length === 0) throw new WalrustError("compactLtx: at least one input is required");
  const decs: LtxDecoder[] = [];
  try {
    for (const input of inputs) {
      decs.push(await LtxDecoder.open(await input.open(), { name: input.name }));
    }
    const headers = decs.map((d) => d.header);
    checkChain(inputs, headers);
    const header = outputHeader(headers, opts.timestamp ?? "latest");
    const enc = new LtxEncoder(header, write, opts.format ? { format: opts.format } : {});
    const trailers = await mergePages(inputs, decs, header, enc);
    const post = tracksChecksums(header) ? trailers[trailers.length - 1].postApplyChecksum : 0n;
    let done: { size: number; pageCount: number };
    try {
      done = await enc.finish(post);
    } catch (e) {
      if (!(e instanceof LtxError)) throw e;
      throw new LtxError(e.kind, `compacting ${span(inputs)}: ${e.message}`, { cause: e });
    }
    return { header, size: done.size, pages: done.pageCount };
  } finally {
    // Releases the sources of inputs not read to the end (a no-op for finished ones).
    await Promise.all(decs.map((d) => d.cancel().catch(() => {})));
  }
}

function span(inputs: CompactInput[]): string {
  const a = inputs[0].name;
  return inputs.length === 1 ? a : `${a} .. ${inputs[inputs.length - 1].name}`;
}

function range(h: LtxHeader): string {
  return `${formatTXID(h.minTXID)}-${formatTXID(h.maxTXID)}`;
}

/** Same page size and checksum flag throughout; each file continues the one before it. */
function checkChain(inputs: CompactInput[], headers: LtxHeader[]): void {
  for (let i = 1; i < headers.length; i++) {
    const p = headers[i - 1];
    const h = headers[i];
    const pair = `${inputs[i - 1].name} (TXIDs ${range(p)}) and ${inputs[i].name} (TXIDs ${
      range(h)
    })`;
    if (h.pageSize !== p.pageSize) {
      throw new IntegrityError(
        `cannot compact ${pair}: page sizes ${p.pageSize} and ${h.pageSize} differ`,
      );
    }
    if (h.minTXID > p.maxTXID + 1) {
      throw new IntegrityError(
        `cannot compact ${pair}: TXIDs ${formatTXID(p.maxTXID + 1)}-${
          formatTXID(h.minTXID - 1)
        } are missing between them`,
      );
    }
    if (h.maxTXID <= p.maxTXID) {
      throw new IntegrityError(
        `cannot compact ${pair}: the second does not end after the first (inputs go oldest first)`,
      );
    }
    if (tracksChecksums(h) !== tracksChecksums(p)) {
      const which = (x: LtxHeader) => tracksChecksums(x) ? "tracks" : "does not track";
      throw new IntegrityError(
        `cannot compact ${pair}: the first ${which(p)} database checksums, the second ${which(h)}`,
      );
    }
  }
}

function outputHeader(headers: LtxHeader[], ts: CompactOptions["timestamp"]): LtxHeader {
  const first = headers[0];
  const last = headers[headers.length - 1];
  let timestamp: number;
  if (ts === "latest") timestamp = last.timestamp;
  else if (ts === "earliest") timestamp = Math.min(...headers.map((h) => h.timestamp));
  else if (typeof ts === "number") timestamp = ts;
  else throw new WalrustError(`compactLtx: unknown timestamp option ${JSON.stringify(ts)}`);
  // WAL position and salts describe one L0 file's source; a merged file has none (§1.9).
  return {
    flags: first.flags,
    pageSize: first.pageSize,
    commit: last.commit,
    minTXID: first.minTXID,
    maxTXID: last.maxTXID,
    timestamp,
    preApplyChecksum: first.preApplyChecksum,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
  };
}

/** The current page of one input, keyed for the merge. */
interface Head {
  pgno: number;
  /** Input index: higher is newer. */
  idx: number;
  data: Uint8Array;
}

/** Binary min-heap by pgno, the newest input first among equal pgnos. */
class HeadHeap {
  readonly #a: Head[] = [];

  get size(): number {
    return this.#a.length;
  }

  peek(): Head | undefined {
    return this.#a[0];
  }

  push(h: Head): void {
    const a = this.#a;
    a.push(h);
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!before(a[i], a[up])) break;
      [a[i], a[up]] = [a[up], a[i]];
      i = up;
    }
  }

  pop(): Head | undefined {
    const a = this.#a;
    const top = a[0];
    const end = a.pop();
    if (a.length > 0 && end !== undefined) {
      a[0] = end;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l], a[m])) m = l;
        if (r < a.length && before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(x: Head, y: Head): boolean {
  return x.pgno < y.pgno || (x.pgno === y.pgno && x.idx > y.idx);
}

/**
 * Write the merged pages into `enc`; returns each input's trailer (every input is decoded to
 * its end and finished as soon as its pages run out, which verifies its file checksum).
 */
async function mergePages(
  inputs: CompactInput[],
  decs: LtxDecoder[],
  out: LtxHeader,
  enc: LtxEncoder,
): Promise<LtxTrailer[]> {
  const n = decs.length;
  const final = out.commit;
  const snapshot = isSnapshot(out);
  const lock = lockPgno(out.pageSize);
  // cutAfter[i]: the lowest commit of inputs i.. — a page from an input before i that lies above
  // it was truncated away by then, so only zeros can remain of it.
  const cutAfter = new Array<number>(n + 1);
  cutAfter[n] = Infinity;
  for (let i = n - 1; i >= 0; i--) cutAfter[i] = Math.min(cutAfter[i + 1], decs[i].header.commit);
  // Pages no input holds: at or below this, applying over a base keeps the base's copy.
  const untouched = cutAfter[0];
  let zero: Uint8Array | undefined;
  const zeros = () => zero ??= new Uint8Array(out.pageSize);

  const its = decs.map((d) => d.pages()[Symbol.asyncIterator]());
  const trailers = new Array<LtxTrailer>(n);
  const heap = new HeadHeap();
  const advance = async (i: number): Promise<void> => {
    const r: IteratorResult<LtxFrame> = await its[i].next();
    if (!r.done) {
      heap.push({ pgno: r.value.pgno, idx: i, data: r.value.data });
      return;
    }
    trailers[i] = (await decs[i].finish()).trailer;
  };
  for (let i = 0; i < n; i++) await advance(i);

  /** Pages in (prev, until) that no input holds. */
  const fillHoles = async (prev: number, until: number): Promise<void> => {
    const end = Math.min(until - 1, final);
    for (let p = Math.max(prev + 1, untouched + 1); p <= end; p++) {
      if (p === lock) continue;
      if (snapshot) {
        throw new IntegrityError(
          `cannot compact ${span(inputs)} into a snapshot: page ${p} (commit ${final}) is in ` +
            `no input`,
        );
      }
      await enc.encodePage(p, zeros());
    }
  };

  let prev = 0;
  while (heap.size > 0) {
    const win = heap.pop()!;
    await advance(win.idx);
    // Older copies of the same page lose, but are still decoded to verify their input.
    while (heap.peek()?.pgno === win.pgno) await advance(heap.pop()!.idx);
    const p = win.pgno;
    if (p > final) continue; // cut off by the last input's commit
    await fillHoles(prev, p);
    prev = p;
    await enc.encodePage(p, p <= cutAfter[win.idx + 1] ? win.data : zeros());
  }
  await fillHoles(prev, final + 1);
  return trailers;
}
