/**
 * Progress of long work on a terminal: one line on stderr, rewritten in place at most 5 times a
 * second ("restore app.db  52.4/300.0 MB  61.2 MB/s  ETA 4s"), cleared when the work ends.
 * Silent unless stderr is a terminal, and with --quiet.
 */

/** A progress line for one piece of work. */
export class Progress {
  readonly #label: string;
  readonly #write: (s: string) => void;
  readonly #started = performance.now();
  #last = 0;
  #shown = false;

  private constructor(label: string, write: (s: string) => void) {
    this.#label = label;
    this.#write = write;
  }

  /** A progress line on stderr when it is a terminal and not `quiet`; otherwise undefined. */
  static start(label: string, opts: { quiet?: boolean } = {}): Progress | undefined {
    if (opts.quiet || !Deno.stderr.isTerminal()) return undefined;
    const enc = new TextEncoder();
    return new Progress(label, (s) => Deno.stderr.writeSync(enc.encode(s)));
  }

  /** For tests: a progress line written through `write`. */
  static to(label: string, write: (s: string) => void): Progress {
    return new Progress(label, write);
  }

  /** Report `done` of `total` bytes; redraws at most every 200 ms. */
  update(done: number, total: number): void {
    const now = performance.now();
    if (now - this.#last < 200 && done < total) return;
    this.#last = now;
    const secs = (now - this.#started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? Math.ceil((total - done) / rate) : 0;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    this.#write(
      `\r\x1b[2K${this.#label}  ${mb(done)}/${mb(total)} MB  ${mb(rate)} MB/s  ETA ${eta}s`,
    );
    this.#shown = true;
  }

  /** Clear the line (call once the work ended, successfully or not). */
  done(): void {
    if (this.#shown) this.#write("\r\x1b[2K");
    this.#shown = false;
  }
}
