/**
 * WebDAV test configuration: from WALRUST_TEST_WEBDAV_URL + WALRUST_WEBDAV_USERNAME/PASSWORD +
 * WALRUST_TEST_WEBDAV_DIR, else from a running `scripts/webdav-test-server.sh`. Tests that need
 * WebDAV are skipped (loudly) when no server answers, and fail instead when
 * WALRUST_REQUIRE_SERVERS=1 (CI).
 */

import { requireOrSkip, scriptExports } from "./server_env.ts";

/** Where the test WebDAV server is, how to log in, and the local directory it serves. */
export interface WebdavTestConfig {
  /** webdav://host:port/walrust-test-runs (no trailing slash). */
  url: string;
  username: string;
  password: string;
  /** The directory the server serves; the URL's path is relative to it. */
  dir: string;
}

const SCRIPT = new URL("../../scripts/webdav-test-server.sh", import.meta.url).pathname;

/** The WebDAV test config from the environment, else from `webdav-test-server.sh env`. */
export function webdavTestConfig(): WebdavTestConfig | undefined {
  return fromVars((k) => Deno.env.get(k)) ?? fromScript();
}

function fromVars(get: (k: string) => string | undefined): WebdavTestConfig | undefined {
  const url = get("WALRUST_TEST_WEBDAV_URL");
  const username = get("WALRUST_WEBDAV_USERNAME");
  const password = get("WALRUST_WEBDAV_PASSWORD");
  const dir = get("WALRUST_TEST_WEBDAV_DIR");
  if (!url || !username || !password || !dir) return undefined;
  return { url: url.replace(/\/+$/, ""), username, password, dir };
}

function fromScript(): WebdavTestConfig | undefined {
  const vars = scriptExports(SCRIPT);
  return vars && fromVars((k) => vars.get(k));
}

/**
 * The config when a WebDAV server answers. Otherwise: throws when WALRUST_REQUIRE_SERVERS=1,
 * else prints one loud notice and returns undefined (use it as `ignore: !cfg`).
 */
export function requireWebdavOrSkip(): Promise<WebdavTestConfig | undefined> {
  return requireOrSkip({
    what: "WEBDAV",
    cfg: webdavTestConfig(),
    missing: "no WebDAV configured (set WALRUST_TEST_WEBDAV_URL, WALRUST_WEBDAV_USERNAME, " +
      "WALRUST_WEBDAV_PASSWORD and WALRUST_TEST_WEBDAV_DIR, or run scripts/webdav-test-server.sh start)",
    reach: unreachable,
    requireVar: "WALRUST_REQUIRE_SERVERS",
  });
}

// The server root: webdav:// is spoken over http, webdavs:// over https.
function rootOf(url: string): string {
  const u = new URL(url);
  return `${u.protocol === "webdavs:" ? "https" : "http"}://${u.host}/`;
}

// Any HTTP answer counts; only a failed connection or a timeout means "not there".
async function unreachable(cfg: WebdavTestConfig): Promise<string | undefined> {
  const endpoint = rootOf(cfg.url);
  try {
    const res = await fetch(endpoint, {
      method: "PROPFIND",
      headers: {
        Depth: "0",
        Authorization: `Basic ${btoa(`${cfg.username}:${cfg.password}`)}`,
      },
      signal: AbortSignal.timeout(5000),
    });
    await res.body?.cancel();
    return undefined;
  } catch (err) {
    return `the WebDAV endpoint ${endpoint} does not answer (${(err as Error).name})`;
  }
}

const RUN = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
let made = 0;

/** A fresh replica URL below cfg.url, unique to this test process and call (no trailing slash). */
export function uniqueWebdavUrl(cfg: WebdavTestConfig): string {
  return `${cfg.url}/${RUN}-${++made}`;
}
