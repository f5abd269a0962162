/**
 * A TCP proxy on 127.0.0.1 in front of a real server, for outage tests: `block()` drops every
 * connection and refuses new ones (the port looks dead), `unblock()` serves again on the same port.
 */

/** A running proxy. */
export class TcpProxy {
  /** Bytes forwarded from clients to the server so far (to wait for traffic, not for time). */
  bytesUp = 0;
  #listener: Deno.Listener | undefined;
  #conns = new Set<Deno.Conn>();
  #blocked = false;
  readonly port: number;

  private constructor(readonly target: { hostname: string; port: number }, port: number) {
    this.port = port;
  }

  /** Start a proxy to `target` on a free local port. */
  static start(target: { hostname: string; port: number }): TcpProxy {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = new TcpProxy(target, (l.addr as Deno.NetAddr).port);
    p.#serve(l);
    return p;
  }

  /** The proxy's URL, e.g. for an S3 endpoint. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #serve(l: Deno.Listener): void {
    this.#listener = l;
    (async () => {
      try {
        for await (const c of l) this.#pipe(c);
      } catch { /* listener closed */ }
    })();
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    if (this.#blocked) {
      client.close();
      return;
    }
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.target);
    } catch {
      client.close();
      return;
    }
    // Like a direct connection: without it every small request waits for a delayed ACK (~40 ms).
    for (const c of [client, upstream]) (c as Deno.TcpConn).setNoDelay?.(true);
    this.#conns.add(client);
    this.#conns.add(upstream);
    const close = () => {
      for (const c of [client, upstream]) {
        this.#conns.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      }
    };
    const copy = async (from: Deno.Conn, to: Deno.Conn, up: boolean) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
          if (up) this.bytesUp += n;
        }
      } catch { /* reset */ }
      close();
    };
    copy(client, upstream, true);
    copy(upstream, client, false);
  }

  /** Refuse and drop everything until unblock(). */
  block(): void {
    this.#blocked = true;
    this.#listener?.close();
    this.#listener = undefined;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    this.#conns.clear();
  }

  /** Serve again on the same port. */
  unblock(): void {
    this.#blocked = false;
    if (!this.#listener) this.#serve(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
  }

  /** Stop for good. */
  close(): void {
    this.block();
  }
}
