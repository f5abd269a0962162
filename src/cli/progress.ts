/**
 * Progress of long work on a terminal: one line on stderr, rewritten in place at most 5 times a
 * second ("restore app.db  52.4/300.0 MB  61.2 MB/s  ETA 4s"; work counted in objects reads
 * "prune app.db  1200/4000 files  950 files/s  ETA 3s"), cleared when the work ends.
 * Silent unless stderr is a terminal, and with --quiet.
 */

import { log } from "../observe/log.ts";

/** What a progress line counts. */
export type ProgressUnit = "bytes" | "files";

/** A progress line for one piece of work. */
export class Progress {
  #label: string;
  #unit: ProgressUnit;
  readonly #write: (s: string) => void;
  #started = performance.now();
  #last = 0;
  #shown = false;

  private constructor(label: string, unit: ProgressUnit, write: (s: string) => void) {
    this.#label = label;
    this.#unit = unit;
    this.#write = write;
  }

  /** A progress line on stderr when it is a terminal and not `quiet`; otherwise undefined. */
  static start(
    label: string,
    opts: { quiet?: boolean; unit?: ProgressUnit } = {},
  ): Progress | undefined {
    if (opts.quiet || !Deno.stderr.isTerminal()) return undefined;
    const enc = new TextEncoder();
    const p = new Progress(
      label,
      opts.unit ?? "bytes",
      (s) => Deno.stderr.writeSync(enc.encode(s)),
    );
    // A log line (a snapshot taken, a retry) goes on its own line; the next update redraws.
    log.interrupt = () => p.#clear();
    return p;
  }

  /** For tests: a progress line written through `write`. */
  static to(label: string, write: (s: string) => void, unit: ProgressUnit = "bytes"): Progress {
    return new Progress(label, unit, write);
  }

  /** Go on with another phase of the same work (its own label, unit, rate and ETA). */
  phase(label: string, unit: ProgressUnit = this.#unit): void {
    if (label === this.#label && unit === this.#unit) return;
    this.#label = label;
    this.#unit = unit;
    this.#started = performance.now();
    this.#last = 0;
  }

  /** Report `done` of `total` bytes; redraws at most every 200 ms. */
  update(done: number, total: number): void {
    const now = performance.now();
    if (now - this.#last < 200 && done < total) return;
    this.#last = now;
    const secs = (now - this.#started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? Math.ceil((total - done) / rate) : 0;
    const line = this.#unit === "bytes"
      ? `${mb(done)}/${mb(total)} MB  ${mb(rate)} MB/s`
      : `${done}/${total} files  ${Math.round(rate)} files/s`;
    this.#write(`\r\x1b[2K${this.#label}  ${line}  ETA ${eta}s`);
    this.#shown = true;
  }

  /** Clear the line (call once the work ended, successfully or not). */
  done(): void {
    this.#clear();
    if (log.interrupt) log.interrupt = undefined;
  }

  #clear(): void {
    if (this.#shown) this.#write("\r\x1b[2K");
    this.#shown = false;
    this.#last = 0;
  }
}

function mb(n: number): string {
  return (n / 1e6).toFixed(1);
}
