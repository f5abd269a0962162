/**
 * S3 requests made by `walrust watch`, counted by an HTTP-aware proxy in front of the test RGW:
 * one idle database, and one database taking one transaction per second. Prints requests per
 * hour by method (PUT/GET/HEAD/POST/DELETE) and LIST (GET with list-type=2).
 *
 * Needs a running test server: `scripts/s3-test-server.sh start`.
 */
import { WalrustProcess } from "../../tests/helpers/walrust.ts";
import { SqliteWriter } from "../../tests/helpers/sqlite_writer.ts";
import { s3TestConfig } from "../../tests/helpers/s3env.ts";

interface Counts {
  [op: string]: number;
}

/** A TCP proxy that parses HTTP/1.1 requests (headers + Content-Length body) to count them. */
function countingProxy(target: { hostname: string; port: number }, counts: Counts) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect(target);
      conns.add(client);
      conns.add(upstream);
      (async () => {
        let buf = new Uint8Array(0);
        let skip = 0; // body bytes of the current request still to pass
        const chunk = new Uint8Array(64 * 1024);
        try {
          for (;;) {
            const n = await client.read(chunk);
            if (n === null) break;
            await upstream.write(chunk.subarray(0, n));
            let data = chunk.subarray(0, n);
            while (data.length > 0) {
              if (skip > 0) {
                const k = Math.min(skip, data.length);
                skip -= k;
                data = data.subarray(k);
                continue;
              }
              const joined = new Uint8Array(buf.length + data.length);
              joined.set(buf);
              joined.set(data, buf.length);
              const text = new TextDecoder("latin1").decode(joined);
              const end = text.indexOf("\r\n\r\n");
              if (end < 0) {
                buf = joined;
                break;
              }
              const head = text.slice(0, end);
              const [method, path] = head.split(" ");
              const op = method === "GET" && /[?&]list-type=2/.test(path) ? "LIST" : method;
              counts[op] = (counts[op] ?? 0) + 1;
              const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
              skip = m ? Number(m[1]) : 0;
              data = joined.subarray(end + 4);
              buf = new Uint8Array(0);
            }
          }
        } catch { /* closed */ }
        upstream.close();
        client.close();
      })();
      (async () => {
        const chunk = new Uint8Array(64 * 1024);
        try {
          for (;;) {
            const n = await upstream.read(chunk);
            if (n === null) break;
            let off = 0;
            while (off < n) off += await client.write(chunk.subarray(off, n));
          }
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Run one scenario for `seconds` and return the counts. */
async function scenario(name: string, seconds: number, writesPerSecond: number) {
  const cfg = s3TestConfig();
  if (!cfg) throw new Error("no S3 test server: run scripts/s3-test-server.sh start");
  const target = new URL(cfg.endpoint);
  const dir = await Deno.makeTempDir({ prefix: "walrust-bench-req-" });
  const db = `${dir}/app.db`;
  const w = await SqliteWriter.start(db);
  await w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('x');");
  const startup: Counts = {};
  const steady: Counts = {};
  let counts = startup;
  const proxy = countingProxy(
    { hostname: target.hostname, port: Number(target.port || 80) },
    new Proxy({} as Counts, {
      get: (_, k: string) => counts[k],
      set: (_, k: string, v: number) => ((counts[k] = v), true),
    }),
  );
  const env = {
    AWS_ACCESS_KEY_ID: cfg.accessKeyId,
    AWS_SECRET_ACCESS_KEY: cfg.secretAccessKey,
    AWS_REGION: cfg.region,
    AWS_ENDPOINT_URL_S3: proxy.url,
  };
  const bucket = `s3://${cfg.bucket}/bench-req-${Date.now().toString(36)}`;
  const watch = new WalrustProcess(["watch", db, "--bucket", bucket], { env });
  try {
    await watch.waitFor("replicating", 60_000);
    await new Promise((r) => setTimeout(r, 3000)); // first snapshot uploads
    counts = steady;
    const end = Date.now() + seconds * 1000;
    let i = 0;
    while (Date.now() < end) {
      if (writesPerSecond > 0) await w.exec(`INSERT INTO t (v) VALUES ('row ${i++}')`);
      await new Promise((r) => setTimeout(r, writesPerSecond > 0 ? 1000 / writesPerSecond : 1000));
    }
  } finally {
    watch.kill("SIGTERM");
    await watch.wait();
    proxy.close();
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
  const perHour = Object.fromEntries(
    Object.entries(steady).map(([k, v]) => [k, Math.round(v * 3600 / seconds)]),
  );
  return { name, seconds, startup, steady, perHour };
}

/** Print requests per hour for an idle database and one taking one transaction per second. */
export async function benchRequests(opts: { quick?: boolean } = {}): Promise<void> {
  const seconds = opts.quick ? 20 : 120;
  console.log(
    `\n## S3 requests (counted by an HTTP proxy in front of Ceph RGW), ${seconds} s each`,
  );
  for (const [name, wps] of [["idle database", 0], ["1 transaction/s", 1]] as const) {
    const r = await scenario(name, seconds, wps);
    console.log(
      `${r.name}: startup ${JSON.stringify(r.startup)}; steady ${JSON.stringify(r.steady)} ` +
        `=> per hour ${JSON.stringify(r.perHour)}`,
    );
  }
}

if (import.meta.main) await benchRequests({ quick: Deno.args.includes("--quick") });
