/**
 * The Azure Blob Storage backend against a real blob service (Azurite, started by
 * scripts/azure-test-server.sh): the storage contract unchanged, plus its own rules (metadata
 * names mapped to Azure's and back, Litestream's `litestreamtimestamp`; streamed puts staged as
 * blocks; list pages; SAS tokens with single deletes; a refused key is AuthError, a closed port or
 * a silent server a transient StorageError, a missing container a permanent one; no secret in any
 * message or description).
 */
import assert from "node:assert/strict";
import {
  BlobServiceClient,
  ContainerSASPermissions,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { AuthError, NotFoundError, StorageError } from "../../src/errors.ts";
import { type AzureOptions, AzureStorage } from "../../src/storage/azure.ts";
import { readAll } from "../../src/storage/port.ts";
import { parseBucketUrl } from "../../src/storage/url.ts";
import { storageContract } from "./contract.ts";
import { outageLosesNothing } from "../helpers/outage.ts";
import { walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb, sequentialInsert } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";
import {
  absParts,
  type AzureTestConfig,
  requireAzureOrSkip,
  uniqueAzureUrl,
} from "../helpers/azureenv.ts";

const cfg = await requireAzureOrSkip();

function optionsAt(
  c: AzureTestConfig,
  url: string,
  more: Partial<AzureOptions> = {},
): AzureOptions {
  return { ...absParts(url), accountKey: c.accountKey, endpoint: c.endpoint, ...more };
}

function storageAt(
  c: AzureTestConfig,
  url: string,
  more: Partial<AzureOptions> = {},
): AzureStorage {
  return new AzureStorage(optionsAt(c, url, more));
}

/** The container the test URLs point into, through the SDK directly (to look behind the backend). */
function rawContainer(c: AzureTestConfig) {
  const { accountName, container } = absParts(c.url);
  const cred = new StorageSharedKeyCredential(accountName, c.accountKey);
  return new BlobServiceClient(c.endpoint, cred, { retryOptions: { maxTries: 1 } })
    .getContainerClient(container);
}

/** Delete everything under a fresh storage (the container is shared by the runs). */
async function wipe(s: AzureStorage): Promise<void> {
  const keys: string[] = [];
  for await (const o of s.list("")) keys.push(o.key);
  await s.delete(keys);
}

async function keysOf(s: AzureStorage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of s.list(prefix)) out.push(o.key);
  return out;
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return await p.then(() => assert.fail("expected a failure"), (e) => e);
}

storageContract({
  name: "azure",
  ignore: !cfg,
  make() {
    const storage = storageAt(cfg!, uniqueAzureUrl(cfg!));
    return Promise.resolve({ storage, cleanup: () => wipe(storage) });
  },
});

Deno.test({
  name: "azure: metadata names map to Azure's (litestreamtimestamp, '_') and back exactly",
  ignore: !cfg,
  async fn() {
    const url = uniqueAzureUrl(cfg!);
    const s = storageAt(cfg!, url);
    try {
      const meta = {
        "litestream-timestamp": "2023-11-14T22:13:20.123456789Z",
        "walrust-post-apply-checksum": "8a6c5e2d31f0b7c4",
        "walrust-a-b-c": "x",
        "plain": "y",
      };
      await s.put("db/ltx/0/a.ltx", new Uint8Array([1, 2, 3]), meta);
      assert.deepEqual((await s.head("db/ltx/0/a.ltx"))?.meta, meta);
      const [listed] = [...await Array.fromAsync(s.list("db/"))];
      assert.deepEqual(listed.meta, meta, "list carries the metadata too");
      // What Litestream (and the Azure portal) sees on the blob itself.
      const raw = await rawContainer(cfg!).getBlobClient(`${absParts(url).root}/db/ltx/0/a.ltx`)
        .getProperties();
      assert.deepEqual(raw.metadata, {
        litestreamtimestamp: "2023-11-14T22:13:20.123456789Z",
        walrust_post_apply_checksum: "8a6c5e2d31f0b7c4",
        walrust_a_b_c: "x",
        plain: "y",
      });
      assert.equal(raw.contentType, "application/octet-stream");
      // A name that could not come back as written is refused before anything is sent.
      await assert.rejects(
        () => s.put("db/x", new Uint8Array(1), { "walrust_x": "1" }),
        RangeError,
      );
      await assert.rejects(
        () => s.put("db/x", new Uint8Array(1), { "Walrust-X": "1" }),
        RangeError,
      );
      assert.equal(await s.head("db/x"), undefined);
    } finally {
      await wipe(s);
    }
  },
});

const MiB = 1024 * 1024;

Deno.test({
  name: "azure: a 20 MiB streamed put is staged as blocks and reads back byte-exact",
  ignore: !cfg,
  async fn() {
    const url = uniqueAzureUrl(cfg!);
    const s = storageAt(cfg!, url);
    const total = 20 * MiB + 12345;
    const byteAt = (i: number) => (i * 2654435761 >>> 24) & 0xff;
    // One buffer reused for every chunk, as the port allows: the backend must copy what it keeps.
    async function* body(): AsyncGenerator<Uint8Array> {
      const buf = new Uint8Array(MiB + 17);
      for (let off = 0; off < total;) {
        const n = Math.min(buf.length, total - off);
        for (let i = 0; i < n; i++) buf[i] = byteAt(off + i);
        yield buf.subarray(0, n);
        off += n;
      }
    }
    try {
      await s.put("big/obj", body(), { "walrust-x": "1" });
      const info = await s.head("big/obj");
      assert.equal(info?.size, total);
      assert.deepEqual(info?.meta, { "walrust-x": "1" });
      let n = 0;
      let bad = -1;
      for await (const c of await s.get("big/obj")) {
        for (let i = 0; i < c.length && bad < 0; i++) if (c[i] !== byteAt(n + i)) bad = n + i;
        n += c.length;
      }
      assert.equal(bad, -1, `first wrong byte at ${bad}`);
      assert.equal(n, total);
      // Three committed blocks of at most 8 MiB each: it went up staged, not in one request.
      const blocks = await rawContainer(cfg!)
        .getBlockBlobClient(`${absParts(url).root}/big/obj`).getBlockList("committed");
      const sizes = (blocks.committedBlocks ?? []).map((b) => b.size);
      assert.deepEqual(sizes, [8 * MiB, 8 * MiB, total - 16 * MiB]);
      // A range across the first block boundary.
      const r = await readAll(await s.get("big/obj", { offset: 8 * MiB - 5, length: 10 }));
      assert.deepEqual([...r], Array.from({ length: 10 }, (_, i) => byteAt(8 * MiB - 5 + i)));
      // A byte array above one block is staged too, and an early stop of a read is fine.
      const bytes = new Uint8Array(9 * MiB).map((_, i) => byteAt(i + 7));
      await s.put("big/bytes", bytes);
      assert.equal((await s.head("big/bytes"))?.size, 9 * MiB);
      for await (const c of await s.get("big/bytes")) {
        assert.equal(c[0], byteAt(7));
        break;
      }
      assert.deepEqual(await readAll(await s.get("big/bytes")), bytes);
    } finally {
      await wipe(s);
    }
  },
});

Deno.test({
  name: "azure: directory markers (hierarchical namespace) are no objects",
  ignore: !cfg,
  async fn() {
    const url = uniqueAzureUrl(cfg!);
    const s = storageAt(cfg!, url);
    try {
      await s.put("db/ltx/0/a.ltx", Uint8Array.of(1));
      // What an ADLS Gen2 account lists for the folders of that key.
      const root = absParts(url).root;
      for (const dir of ["db", "db/ltx", "db/ltx/0"]) {
        await rawContainer(cfg!).getBlockBlobClient(`${root}/${dir}`).upload(new Uint8Array(0), 0, {
          metadata: { hdi_isfolder: "true" },
        });
      }
      assert.deepEqual(await keysOf(s, ""), ["db/ltx/0/a.ltx"]);
      assert.equal(await s.head("db/ltx"), undefined);
      assert.ok(await s.head("db/ltx/0/a.ltx"));
    } finally {
      await s.delete(["db", "db/ltx", "db/ltx/0"]);
      await wipe(s);
    }
  },
});

Deno.test({
  name: "azure: list follows pages in key order",
  ignore: !cfg,
  async fn() {
    const s = storageAt(cfg!, uniqueAzureUrl(cfg!), { pageSize: 7 });
    try {
      const all = Array.from({ length: 40 }, (_, i) => `p/${(i * 7919 % 40).toString(36)}-${i}`);
      await Promise.all(all.map((k) => s.put(k, Uint8Array.of(1))));
      await s.put("q", Uint8Array.of(1));
      assert.deepEqual(await keysOf(s, "p/"), [...all].sort());
      assert.deepEqual(await keysOf(s, ""), [...all].sort().concat("q"));
    } finally {
      await wipe(s);
    }
  },
});

Deno.test({
  name: "azure: a SAS token works (single deletes); a forged one is AuthError naming no secret",
  ignore: !cfg,
  async fn() {
    const url = uniqueAzureUrl(cfg!);
    const sasUrl = await rawContainer(cfg!).generateSasUrl({
      permissions: ContainerSASPermissions.parse("racwdl"),
      expiresOn: new Date(Date.now() + 3600_000),
    });
    const sas = new URL(sasUrl).search;
    const sig = new URL(sasUrl).searchParams.get("sig")!;
    const s = storageAt(cfg!, url, { accountKey: undefined, sasToken: sas });
    try {
      const keys = Array.from({ length: 20 }, (_, i) => `sas/${i}`);
      await Promise.all(keys.map((k) => s.put(k, Uint8Array.of(7), { "walrust-x": "y" })));
      assert.deepEqual((await s.head("sas/3"))?.meta, { "walrust-x": "y" });
      assert.deepEqual([...await readAll(await s.get("sas/3"))], [7]);
      await s.delete([...keys.slice(0, 15), "sas/never", "sas"]);
      assert.deepEqual(await keysOf(s, ""), keys.slice(15).sort());
      assert.ok(!s.description.includes(sig) && !s.description.includes("?"));
      const forged = sas.replace(
        /sig=[^&]+/,
        `sig=${encodeURIComponent(btoa("forged-signature-0123456789abcdef"))}`,
      );
      const bad = storageAt(cfg!, url, { accountKey: undefined, sasToken: forged });
      for (
        const op of [
          () => bad.head("sas/3"),
          () => bad.get("sas/3"),
          () => bad.put("z", Uint8Array.of(1)),
        ]
      ) {
        const e = await failure(op());
        assert.ok(e instanceof AuthError, String(e));
        assert.ok(!e.message.includes(sig) && !e.message.includes("sig="), e.message);
        assert.ok(!e.message.includes("forged"), e.message);
      }
    } finally {
      await wipe(s);
    }
  },
});

Deno.test({
  name: "azure: a wrong account key is AuthError for every operation, naming no secret",
  ignore: !cfg,
  async fn() {
    const secret = btoa("marker-secret-4f2a9c-marker-secret-4f2a9c");
    const bad = storageAt(cfg!, uniqueAzureUrl(cfg!), { accountKey: secret });
    assert.ok(!bad.description.includes(secret));
    const ops: [string, () => Promise<unknown>][] = [
      ["put", () => bad.put("x/y.ltx", new Uint8Array([1]))],
      ["put (blocks)", () =>
        bad.put(
          "x/y.ltx",
          (async function* () {
            yield new Uint8Array(8 * MiB + 1);
          })(),
        )],
      ["head", () => bad.head("x/y.ltx")],
      ["get", () => bad.get("x/y.ltx")],
      ["list", () => Array.fromAsync(bad.list("x/"))],
      ["delete", () => bad.delete(["x/y.ltx", "x/z.ltx"])],
    ];
    for (const [name, op] of ops) {
      const e = await failure(op());
      assert.ok(e instanceof AuthError, `${name}: ${e}`);
      assert.equal(e.transient, false, name);
      assert.ok(!e.message.includes(secret) && !e.message.includes("marker-secret"), e.message);
    }
  },
});

Deno.test({
  name: "azure: a missing container is a permanent StorageError, not an absent object",
  ignore: !cfg,
  async fn() {
    const s = storageAt(cfg!, `abs://${cfg!.accountName}@walrust-no-such-container/x`);
    for (const op of [() => s.head("k"), () => s.get("k"), () => Array.fromAsync(s.list(""))]) {
      const e = await failure(op());
      assert.ok(e instanceof StorageError && !(e instanceof NotFoundError), String(e));
      assert.equal(e.transient, false);
      assert.match(e.message, /container does not exist/);
    }
  },
});

Deno.test("azure: a closed port is a transient StorageError for every operation", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const secret = btoa("marker-secret-closed-port-0123456789");
  const s = new AzureStorage({
    accountName: "devstoreaccount1",
    container: "walrust-test",
    root: "x",
    accountKey: secret,
    endpoint: `http://127.0.0.1:${port}/devstoreaccount1`,
  });
  const ops = [
    () => s.put("k", Uint8Array.of(1)),
    () => s.head("k"),
    () => s.get("k"),
    () => Array.fromAsync(s.list("")),
    () => s.delete(["k"]),
  ];
  for (const op of ops) {
    const e = await failure(op());
    assert.ok(e instanceof StorageError && !(e instanceof NotFoundError), String(e));
    assert.equal(e.transient, true, e.message);
    assert.match(e.message, /cannot reach http:\/\/127\.0\.0\.1:\d+/);
    assert.ok(!e.message.includes(secret));
  }
});

Deno.test("azure: a server that never answers times out as a transient StorageError", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of l) held.push(c); // accept, read nothing, answer nothing
  })();
  const s = new AzureStorage({
    accountName: "devstoreaccount1",
    container: "walrust-test",
    root: "",
    accountKey: btoa("k"),
    endpoint: `http://127.0.0.1:${l.addr.port}/devstoreaccount1`,
    timeoutMs: 300,
  });
  try {
    for (const op of [() => s.head("k"), () => s.get("k"), () => s.put("k", Uint8Array.of(1))]) {
      const t0 = Date.now();
      const e = await failure(op());
      assert.ok(e instanceof StorageError && e.transient, String(e));
      assert.match(e.message, /no answer within 3\d\d ms/);
      assert.ok(Date.now() - t0 < 5000);
    }
  } finally {
    l.close();
    await accepting.catch(() => {});
    for (const c of held) c.close();
  }
});

Deno.test("azure: options are checked and the description names no secret", () => {
  const key = btoa("marker-secret-options");
  const s = new AzureStorage({
    accountName: "acct",
    container: "backups",
    root: "/a/b/",
    accountKey: key,
  });
  assert.equal(s.description, "abs://acct@backups/a/b");
  assert.equal(
    new AzureStorage({
      accountName: "acct",
      container: "backups",
      root: "",
      sasToken: "?sv=1&sig=zz",
    })
      .description,
    "abs://acct@backups",
  );
  assert.throws(
    () =>
      new AzureStorage({ accountName: "acct", container: "Bad_Name", root: "", accountKey: key }),
    /container name/,
  );
  assert.throws(
    () => new AzureStorage({ accountName: "acct", container: "backups", root: "" }),
    /account key or a SAS token/,
  );
  assert.throws(
    () =>
      new AzureStorage({
        accountName: "acct",
        container: "backups",
        root: "",
        accountKey: key,
        endpoint: "http://h/acct?sig=zz",
      }),
    (e: Error) => /endpoint/.test(e.message) && !e.message.includes("zz"),
  );
});

Deno.test({
  name: "azure: watch replicates to an abs:// URL; restore, list and PITR rebuild it exactly",
  ignore: !cfg,
  async fn() {
    const c = cfg!;
    const dir = await Deno.makeTempDir({ prefix: "walrust-azure-rt-" });
    const url = uniqueAzureUrl(c);
    const env = { AZURE_STORAGE_KEY: c.accountKey };
    const flags = ["--bucket", url, "--endpoint", c.endpoint];
    try {
      const db = `${dir}/app.db`;
      await createAppDb(db);
      for (let i = 1; i <= 20; i++) await cliSql(db, sequentialInsert(i));
      const once = await walrust(["watch", db, ...flags, "--once", "--no-metrics"], { env });
      assert.equal(once.code, 0, once.stderr);
      const moment = new Date();
      const momentDump = await dumpContent(db);
      for (let i = 21; i <= 30; i++) await cliSql(db, sequentialInsert(i));
      const again = await walrust(["watch", db, ...flags, "--once", "--no-metrics"], { env });
      assert.equal(again.code, 0, again.stderr);
      const out = `${dir}/out.db`;
      const r = await walrust(["restore", "app.db", "-o", out, ...flags], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
      assert.equal(await dumpContent(out), await dumpContent(db));
      const pit = `${dir}/pit.db`;
      const p = await walrust([
        "restore",
        "app.db",
        "-o",
        pit,
        "--timestamp",
        moment.toISOString(),
        ...flags,
      ], {
        env,
      });
      assert.equal(p.code, 0, p.stderr);
      assert.equal(await dumpContent(pit), momentDump);
      const listed = await walrust(["list", ...flags, "--json"], { env });
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal(JSON.parse(listed.stdout)[0].name, "app.db");
      for (const o of [once, again, r, p, listed]) {
        assert.ok(!(o.stderr + o.stdout).includes(c.accountKey), "no secret in the output");
      }
      // Litestream's file layout under the URL's path, and its timestamp metadata name.
      const storage = storageAt(c, url);
      const keys = await keysOf(storage, "app.db/ltx/0/");
      assert.ok(
        keys.length >= 2 &&
          keys.every((k) => /^app\.db\/ltx\/0\/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(k)),
        keys.join(" "),
      );
      const { root } = absParts(url);
      const props = await rawContainer(c).getBlobClient(`${root}/${keys[0]}`).getProperties();
      assert.match(props.metadata?.litestreamtimestamp ?? "", /^\d{4}-\d\d-\d\dT/);
    } finally {
      await wipe(storageAt(c, url));
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const OUTAGE_S = 30;

Deno.test({
  name: `azure: a ${OUTAGE_S} s outage under writes, with watch killed -9 during it, loses nothing`,
  ignore: !cfg,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = cfg!;
    const target = new URL(c.endpoint);
    const url = uniqueAzureUrl(c);
    await outageLosesNothing({
      target: { hostname: target.hostname, port: Number(target.port || 80) },
      viaProxy: (port) => [
        "--bucket",
        url,
        "--endpoint",
        `http://127.0.0.1:${port}${target.pathname}`,
      ],
      direct: ["--bucket", url, "--endpoint", c.endpoint],
      env: { AZURE_STORAGE_KEY: c.accountKey },
      secrets: [c.accountKey],
      seconds: OUTAGE_S,
      cleanup: () => wipe(storageAt(c, url)),
    });
  },
});

Deno.test("abs URLs: Litestream's abs://ACCOUNT@CONTAINER/path, ?endpoint=, no key in the URL", () => {
  assert.deepEqual(parseBucketUrl("abs://acct@cont/a/b/"), {
    kind: "abs",
    account: "acct",
    container: "cont",
    root: "a/b",
    prefix: "",
  });
  assert.deepEqual(parseBucketUrl("abs://cont?endpoint=http://127.0.0.1:1/acct"), {
    kind: "abs",
    container: "cont",
    root: "",
    endpoint: "http://127.0.0.1:1/acct",
    prefix: "",
  });
  assert.throws(() => parseBucketUrl("abs://acct:KEY@cont/p"), /account key does not belong/);
  assert.throws(() => parseBucketUrl("abs://acct@cont/p?sas=x"), /unknown parameter "sas"/);
  assert.throws(() => parseBucketUrl("abs://acct@cont/../p"), /"\.\."/);
});
