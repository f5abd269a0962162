/**
 * The WebDAV backend against a real server (rclone serve webdav, started by
 * scripts/webdav-test-server.sh): the storage contract unchanged, plus its own rules (hidden
 * temporaries and metadata sidecars never listed, credentials never in messages, a refused login
 * is AuthError, a stopped server a transient StorageError) and a replication round trip through
 * the CLI, `watch` and `restore` on a `webdav://` URL.
 */
import assert from "node:assert/strict";
import { AuthError, StorageError } from "../../src/errors.ts";
import { parseMultistatus, WebdavStorage } from "../../src/storage/webdav.ts";
import { parseBucketUrl } from "../../src/storage/url.ts";
import { readAll } from "../../src/storage/port.ts";
import { storageContract } from "./contract.ts";
import { outageLosesNothing } from "../helpers/outage.ts";
import {
  requireWebdavOrSkip,
  uniqueWebdavUrl,
  type WebdavTestConfig,
} from "../helpers/webdavenv.ts";
import { walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb, sequentialInsert } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";

const cfg = await requireWebdavOrSkip();

function storageAt(c: WebdavTestConfig, url: string, password = c.password): WebdavStorage {
  const loc = parseBucketUrl(url);
  if (loc.kind !== "webdav") throw new Error(`not a webdav URL: ${url}`);
  return new WebdavStorage({ endpoint: loc.endpoint, username: c.username, password });
}

/** Delete everything under a fresh storage (the server's folder is shared by the runs). */
async function wipe(s: WebdavStorage): Promise<void> {
  const keys: string[] = [];
  for await (const o of s.list("")) keys.push(o.key);
  await s.delete(keys);
}

storageContract({
  name: "webdav",
  ignore: !cfg,
  make() {
    const storage = storageAt(cfg!, uniqueWebdavUrl(cfg!));
    return Promise.resolve({ storage, cleanup: () => wipe(storage) });
  },
});

Deno.test("webdav: PROPFIND answers of any namespace prefix parse", () => {
  const xml = `<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">` +
    `<D:response><D:href>/base/a%20b/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>` +
    `</D:resourcetype></D:prop></D:propstat></D:response>` +
    `<D:response><D:href>http://h/base/x.ltx</D:href><D:propstat><D:prop><D:resourcetype/>` +
    `<D:getcontentlength>42</D:getcontentlength>` +
    `<D:getlastmodified>Wed, 02 Dec 2026 01:02:03 GMT</D:getlastmodified></D:prop></D:propstat>` +
    `</D:response></D:multistatus>`;
  const [dir, file] = parseMultistatus(xml);
  assert.deepEqual(dir.collection, true);
  assert.equal(dir.path, "/base/a%20b/");
  assert.equal(file.collection, false);
  assert.equal(file.path, "/base/x.ltx");
  assert.equal(file.size, 42);
  assert.equal(file.lastModified.toISOString(), "2026-12-02T01:02:03.000Z");
  const plain = parseMultistatus(
    `<multistatus xmlns="DAV:"><response><href>/y</href><propstat><prop><resourcetype/>` +
      `<getcontentlength>7</getcontentlength></prop></propstat></response></multistatus>`,
  );
  assert.equal(plain[0].size, 7);
});

Deno.test("webdav URLs: http and https, user info kept apart, no query", () => {
  const a = parseBucketUrl("webdav://127.0.0.1:8080/backups/prod");
  assert.deepEqual(a, {
    kind: "webdav",
    endpoint: "http://127.0.0.1:8080/backups/prod/",
    prefix: "",
  });
  const b = parseBucketUrl("webdavs://me:s3cret@dav.example.com/x");
  assert.equal(b.kind, "webdav");
  if (b.kind === "webdav") {
    assert.equal(b.endpoint, "https://dav.example.com/x/");
    assert.equal(b.username, "me");
    assert.equal(b.password, "s3cret");
  }
  assert.throws(() => parseBucketUrl("webdav://host/x?y=1"), /query/);
  assert.throws(() => parseBucketUrl("webdav:///x"), /host/);
});

Deno.test({
  name: "webdav: temporaries and metadata sidecars are never listed; overwrite drops old metadata",
  ignore: !cfg,
  async fn() {
    const s = storageAt(cfg!, uniqueWebdavUrl(cfg!));
    try {
      await s.put("db/ltx/0/a.ltx", new Uint8Array([1, 2, 3]), { "litestream-timestamp": "x" });
      await s.put("db/ltx/0/b.ltx", new Uint8Array([4]));
      const keys: string[] = [];
      for await (const o of s.list("db/")) keys.push(o.key);
      assert.deepEqual(keys, ["db/ltx/0/a.ltx", "db/ltx/0/b.ltx"]);
      assert.deepEqual((await s.head("db/ltx/0/a.ltx"))?.meta, { "litestream-timestamp": "x" });
      await s.put("db/ltx/0/a.ltx", new Uint8Array([9]));
      assert.deepEqual((await s.head("db/ltx/0/a.ltx"))?.meta, {});
      // The files on the server: the objects, and no temporary left behind.
      const dir = `${cfg!.dir}/${new URL(s.description.replace(/^webdav/, "http")).pathname}`;
      const names = [...Deno.readDirSync(`${dir}/db/ltx/0`)].map((e) => e.name).sort();
      assert.deepEqual(names.filter((n) => n.includes(".tmp-")), []);
    } finally {
      await wipe(s);
    }
  },
});

Deno.test({
  name: "webdav: a wrong password is AuthError naming no secret; a closed port is transient",
  ignore: !cfg,
  async fn() {
    const secret = "marker-secret-4f2a9c";
    const bad = storageAt(cfg!, uniqueWebdavUrl(cfg!), secret);
    const e = await bad.put("x/y.ltx", new Uint8Array([1])).then(() => undefined, (e) => e);
    assert.ok(e instanceof AuthError, String(e));
    assert.ok(
      !e.message.includes(secret) && !e.message.includes(btoa(`${cfg!.username}:${secret}`)),
    );
    const closed = new WebdavStorage({
      endpoint: "http://127.0.0.1:9/x/",
      username: "u",
      password: secret,
    });
    const c = await closed.head("k").then(() => undefined, (e) => e);
    assert.ok(c instanceof StorageError && c.transient, String(c));
    assert.ok(!c.message.includes(secret));
  },
});

Deno.test({
  name: "webdav: watch replicates to a webdav:// URL and restore rebuilds the database exactly",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-webdav-rt-" });
    const url = uniqueWebdavUrl(c);
    const env = { WALRUST_WEBDAV_USERNAME: c.username, WALRUST_WEBDAV_PASSWORD: c.password };
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
      assert.ok(!again.stderr.includes(c.password), "no secret in the log");
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
      const listed = await walrust(["list", "--bucket", url, "--json"], { env });
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal(JSON.parse(listed.stdout)[0].name, "app.db");
      // Litestream's file layout under the URL's path.
      const storage = storageAt(c, url);
      const keys: string[] = [];
      for await (const o of storage.list("app.db/ltx/0/")) keys.push(o.key);
      assert.ok(
        keys.length >= 2 &&
          keys.every((k) => /^app\.db\/ltx\/0\/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(k)),
      );
      const first = await readAll(await storage.get(keys[0], { offset: 0, length: 4 }));
      assert.equal(new TextDecoder().decode(first), "LTX1");
    } finally {
      await wipe(storageAt(c, url));
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const OUTAGE_S = 30;

Deno.test({
  name:
    `webdav: a ${OUTAGE_S} s outage under writes, with watch killed -9 during it, loses nothing`,
  ignore: !cfg,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = cfg!;
    const target = new URL(c.url.replace(/^webdav/, "http"));
    const direct = uniqueWebdavUrl(c);
    await outageLosesNothing({
      target: { hostname: target.hostname, port: Number(target.port || 80) },
      viaProxy: (port) => ["--bucket", direct.replace(`//${target.host}/`, `//127.0.0.1:${port}/`)],
      direct: ["--bucket", direct],
      env: { WALRUST_WEBDAV_USERNAME: c.username, WALRUST_WEBDAV_PASSWORD: c.password },
      secrets: [c.password],
      seconds: OUTAGE_S,
      cleanup: () => wipe(storageAt(c, direct)),
    });
  },
});
