/**
 * SFTP test configuration: from WALRUST_TEST_SFTP_URL + WALRUST_SFTP_KEY_PATH +
 * WALRUST_TEST_SFTP_HOST_KEY + WALRUST_TEST_SFTP_DIR, else from a running
 * `scripts/sftp-test-server.sh`. Tests that need SFTP are skipped (loudly) when no server answers,
 * and fail instead when WALRUST_REQUIRE_SERVERS=1 (CI).
 */

import { requireOrSkip, scriptExports } from "./server_env.ts";

/** Where the test SFTP server is, how to log in, how to know it, and the directory it serves. */
export interface SftpTestConfig {
  /** sftp://user@host:port/abs/path/walrust-test-runs (no trailing slash; the path is absolute). */
  url: string;
  /** The client's private key (OpenSSH format, no passphrase). */
  keyPath: string;
  /** The server's public host key line, "ssh-ed25519 AAAA...". */
  hostKey: string;
  /** The directory the server serves; the URL's path lies below it. */
  dir: string;
}

const SCRIPT = new URL("../../scripts/sftp-test-server.sh", import.meta.url).pathname;

/** The SFTP test config from the environment, else from `sftp-test-server.sh env`. */
export function sftpTestConfig(): SftpTestConfig | undefined {
  return fromVars((k) => Deno.env.get(k)) ?? fromScript();
}

function fromVars(get: (k: string) => string | undefined): SftpTestConfig | undefined {
  const url = get("WALRUST_TEST_SFTP_URL");
  const keyPath = get("WALRUST_SFTP_KEY_PATH");
  const hostKey = get("WALRUST_TEST_SFTP_HOST_KEY");
  const dir = get("WALRUST_TEST_SFTP_DIR");
  if (!url || !keyPath || !hostKey || !dir) return undefined;
  return { url: url.replace(/\/+$/, ""), keyPath, hostKey: hostKey.trim(), dir };
}

function fromScript(): SftpTestConfig | undefined {
  const vars = scriptExports(SCRIPT);
  return vars && fromVars((k) => vars.get(k));
}

/**
 * The config when an SSH server answers. Otherwise: throws when WALRUST_REQUIRE_SERVERS=1,
 * else prints one loud notice and returns undefined (use it as `ignore: !cfg`).
 */
export function requireSftpOrSkip(): Promise<SftpTestConfig | undefined> {
  return requireOrSkip({
    what: "SFTP",
    cfg: sftpTestConfig(),
    missing: "no SFTP configured (set WALRUST_TEST_SFTP_URL, WALRUST_SFTP_KEY_PATH, " +
      "WALRUST_TEST_SFTP_HOST_KEY and WALRUST_TEST_SFTP_DIR, or run scripts/sftp-test-server.sh start)",
    reach: unreachable,
    requireVar: "WALRUST_REQUIRE_SERVERS",
  });
}

const BANNER_TIMEOUT_MS = 5000;

// Reachable means an SSH server: a TCP connect whose first bytes are the "SSH-2.0" banner.
async function unreachable(cfg: SftpTestConfig): Promise<string | undefined> {
  const u = new URL(cfg.url);
  const hostname = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = u.port === "" ? 22 : Number(u.port);
  const endpoint = `${u.hostname}:${port}`;
  let conn: Deno.TcpConn | undefined;
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("no SSH banner within 5 s"), BANNER_TIMEOUT_MS);
  });
  const banner = (async (): Promise<string | undefined> => {
    const c = await Deno.connect({ hostname, port });
    if (done) { // a connect that outlived the timeout
      c.close();
      return "timed out";
    }
    conn = c;
    const buf = new Uint8Array(256);
    let seen = "";
    while (seen.length < 7) {
      const n = await c.read(buf);
      if (n === null) return "closed before the SSH banner";
      seen += new TextDecoder().decode(buf.subarray(0, n));
    }
    return seen.startsWith("SSH-2.0") ? undefined : "answered without an SSH-2.0 banner";
  })().catch((err: unknown) => (err as Error).name);
  try {
    const why = await Promise.race([banner, timeout]);
    return why === undefined ? undefined : `the SFTP endpoint ${endpoint} does not answer (${why})`;
  } finally {
    done = true;
    clearTimeout(timer);
    if (conn !== undefined) {
      try {
        conn.close(); // ends a pending read, so the await below is short
      } catch {
        // already closed
      }
      await banner;
    }
  }
}

const RUN = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
let made = 0;

/** A fresh replica URL below cfg.url, unique to this test process and call (no trailing slash). */
export function uniqueSftpUrl(cfg: SftpTestConfig): string {
  return `${cfg.url}/${RUN}-${++made}`;
}
