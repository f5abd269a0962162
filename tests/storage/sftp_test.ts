/**
 * The SFTP backend against a real OpenSSH server (a second sshd on a loopback port, started by
 * scripts/sftp-test-server.sh): the storage contract unchanged, the URL forms, the host key
 * checked when given (a wrong one is refused), a refused login is AuthError, and a replication
 * round trip through the CLI on an `sftp://` URL.
 */
import assert from "node:assert/strict";
import { AuthError, StorageError } from "../../src/errors.ts";
import { SftpStorage } from "../../src/storage/sftp.ts";
import { parseBucketUrl, redactBucketUrl } from "../../src/storage/url.ts";
import { storageContract } from "./contract.ts";
import { outageLosesNothing } from "../helpers/outage.ts";
import { requireSftpOrSkip, type SftpTestConfig, uniqueSftpUrl } from "../helpers/sftpenv.ts";
import { walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb, sequentialInsert } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";

const cfg = await requireSftpOrSkip();

function storageAt(c: SftpTestConfig, url: string, hostKey: string | undefined = c.hostKey) {
  const loc = parseBucketUrl(url);
  if (loc.kind !== "sftp") throw new Error(`not an sftp URL: ${url}`);
  return new SftpStorage({
    host: loc.host,
    port: loc.port,
    username: loc.username,
    root: loc.root,
    privateKey: Deno.readTextFileSync(c.keyPath),
    hostKey,
  });
}

storageContract({
  name: "sftp",
  ignore: !cfg,
  make() {
    const url = uniqueSftpUrl(cfg!);
    const storage = storageAt(cfg!, url);
    const root = (parseBucketUrl(url) as { root: string }).root;
    return Promise.resolve({
      storage,
      cleanup: async () => {
        await storage.close();
        await Deno.remove(root, { recursive: true }).catch(() => {});
      },
    });
  },
});

Deno.test("sftp URLs: user, port, absolute path; the password never shown", () => {
  const a = parseBucketUrl("sftp://backup@10.0.0.5:2222/srv/backups/prod");
  assert.deepEqual(a, {
    kind: "sftp",
    host: "10.0.0.5",
    port: 2222,
    username: "backup",
    root: "/srv/backups/prod",
    prefix: "",
  });
  const b = parseBucketUrl("sftp://me:s3cret@host/x");
  assert.equal(b.kind === "sftp" && b.password, "s3cret");
  assert.equal(b.kind === "sftp" && b.port, 22);
  assert.equal(redactBucketUrl("sftp://me:s3cret@host/x"), "sftp://me@host/x");
  assert.throws(() => parseBucketUrl("sftp://host/x"), /no user/);
});

Deno.test({
  name: "sftp: a wrong host key is refused; a refused login is AuthError; no key, no secret shown",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const url = uniqueSftpUrl(c);
    const wrong =
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGjDXbFvQ2yC0x2kqJcH5VvGk7nI7o2r7tZ1N6bVd8Zo";
    const bad = storageAt(c, url, wrong);
    const e = await bad.head("x").then(() => undefined, (e) => e);
    assert.ok(e instanceof StorageError, String(e));
    await bad.close();
    const loc = parseBucketUrl(url);
    if (loc.kind !== "sftp") throw new Error("sftp");
    const secret = "marker-secret-91c2";
    const nologin = new SftpStorage({
      host: loc.host,
      port: loc.port,
      username: loc.username,
      root: loc.root,
      password: secret,
      hostKey: c.hostKey,
    });
    const a = await nologin.head("x").then(() => undefined, (e) => e);
    assert.ok(a instanceof AuthError, String(a));
    assert.ok(!a.message.includes(secret));
    await nologin.close();
  },
});

Deno.test({
  name: "sftp: watch replicates to an sftp:// URL and restore rebuilds the database exactly",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-sftp-rt-" });
    const url = uniqueSftpUrl(c);
    const env = { WALRUST_SFTP_KEY_PATH: c.keyPath, WALRUST_SFTP_HOST_KEY: c.hostKey };
    try {
      const db = `${dir}/app.db`;
      await createAppDb(db);
      for (let i = 1; i <= 20; i++) await cliSql(db, sequentialInsert(i));
      const once = await walrust(["watch", db, "--bucket", url, "--once", "--no-metrics"], { env });
      assert.equal(once.code, 0, once.stderr);
      const moment = new Date();
      const momentDump = await dumpContent(db);
      for (let i = 21; i <= 30; i++) await cliSql(db, sequentialInsert(i));
      const again = await walrust(["watch", db, "--bucket", url, "--once", "--no-metrics"], {
        env,
      });
      assert.equal(again.code, 0, again.stderr);
      const out = `${dir}/out.db`;
      const r = await walrust(["restore", "app.db", "-o", out, "--bucket", url], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
      assert.equal(await dumpContent(out), await dumpContent(db));
      // Point in time: the state of the first run, from the LTX headers' timestamps.
      const pit = `${dir}/pit.db`;
      const p = await walrust(
        ["restore", "app.db", "-o", pit, "--timestamp", moment.toISOString(), "--bucket", url],
        { env },
      );
      assert.equal(p.code, 0, p.stderr);
      assert.equal((await cliSql(pit, "PRAGMA integrity_check")).trim(), "ok");
      assert.equal(await dumpContent(pit), momentDump);
      // Litestream's file layout on the server's file system.
      const root = (parseBucketUrl(url) as { root: string }).root;
      const l0 = [...Deno.readDirSync(`${root}/app.db/ltx/0`)].map((e) => e.name)
        .filter((n) => !n.startsWith(".")).sort();
      assert.ok(l0.length >= 2 && l0.every((n) => /^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(n)));
      // Without a host key: one WARN, and it still works.
      const warned = await walrust(["list", "--bucket", url], {
        env: { WALRUST_SFTP_KEY_PATH: c.keyPath },
      });
      assert.equal(warned.code, 0, warned.stderr);
      assert.equal((warned.stderr.match(/host key is not checked/g) ?? []).length, 1);
      await Deno.remove(root, { recursive: true });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const OUTAGE_S = 30;

Deno.test({
  name: `sftp: a ${OUTAGE_S} s outage under writes, with watch killed -9 during it, loses nothing`,
  ignore: !cfg,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = cfg!;
    const direct = uniqueSftpUrl(c);
    const target = new URL(direct);
    await outageLosesNothing({
      target: { hostname: target.hostname, port: Number(target.port || 22) },
      // The SSH connection drops mid-session; new ones are refused.
      viaProxy: (port) => ["--bucket", direct.replace(`@${target.host}/`, `@127.0.0.1:${port}/`)],
      direct: ["--bucket", direct],
      env: { WALRUST_SFTP_KEY_PATH: c.keyPath, WALRUST_SFTP_HOST_KEY: c.hostKey },
      seconds: OUTAGE_S,
      cleanup: () =>
        Deno.remove((parseBucketUrl(direct) as { root: string }).root, { recursive: true })
          .catch(() => {}),
    });
  },
});

Deno.test({
  name:
    "sftp: requests in flight when the connection drops fail as transient errors, then it reconnects",
  ignore: !cfg,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = cfg!;
    const url = uniqueSftpUrl(c);
    const loc = parseBucketUrl(url) as {
      host: string;
      port: number;
      username: string;
      root: string;
    };
    const proxy = TcpProxy.start({ hostname: loc.host, port: loc.port });
    const s = new SftpStorage({
      host: "127.0.0.1",
      port: proxy.port,
      username: loc.username,
      root: loc.root,
      privateKey: Deno.readTextFileSync(c.keyPath),
      hostKey: c.hostKey,
    });
    try {
      await s.put("a/first.ltx", new Uint8Array(10));
      // Without the fix some of these never settled: the uploader would wait on them forever.
      const puts = Array.from(
        { length: 8 },
        (_, i) => s.put(`a/${i}.ltx`, new Uint8Array(2 * 1024 * 1024)).then(() => "ok", (e) => e),
      );
      // Block once the uploads are under way (a megabyte of them through the proxy).
      const before = proxy.bytesUp;
      while (proxy.bytesUp < before + 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
      proxy.block();
      const deadline = new Promise((r) => setTimeout(() => r("hung"), 15_000));
      const settled = await Promise.race([Promise.all(puts), deadline]);
      assert.notEqual(settled, "hung", "a request in flight never settled");
      for (const r of settled as unknown[]) {
        if (r === "ok") continue;
        assert.ok(r instanceof StorageError && r.transient, `not a transient StorageError: ${r}`);
      }
      proxy.unblock();
      await s.put("a/after.ltx", new Uint8Array(10));
      assert.ok(await s.head("a/after.ltx"));
    } finally {
      await s.close();
      proxy.close();
      await Deno.remove(loc.root, { recursive: true }).catch(() => {});
    }
  },
});
