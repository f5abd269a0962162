/**
 * Every realistic litestream.yml fixture, end to end: the file as a user wrote it, with only its
 * machine-specific parts pointed at this test (local paths under a temp folder, the S3 endpoint,
 * bucket and keys at the test RGW). Each replicates with `walrust replicate -config`, takes more
 * writes, replicates again, and every database restores exactly through `restore -config DB_PATH`
 * and through the TOML that `config convert` printed.
 */
import assert from "node:assert/strict";
import { walrust } from "../helpers/walrust.ts";
import { cliSql, createAppDb, sequentialInsert } from "../helpers/apps.ts";
import { dumpContent } from "../helpers/sqlite_writer.ts";
import { requireS3OrSkip, s3Options, type S3TestConfig, uniquePrefix } from "../helpers/s3env.ts";
import { openS3Storage } from "../../src/storage/s3.ts";
import { requireWebdavOrSkip } from "../helpers/webdavenv.ts";
import { absParts, requireAzureOrSkip } from "../helpers/azureenv.ts";
import { requireSftpOrSkip } from "../helpers/sftpenv.ts";
import { AzureStorage } from "../../src/storage/azure.ts";
import { readAll } from "../../src/storage/port.ts";
import { generateX25519Identity, identityToRecipient } from "age-encryption";

const FIXTURES = new URL("../fixtures/litestream-yml/", import.meta.url).pathname;
const S3 = await requireS3OrSkip();
const W = await requireWebdavOrSkip();
const A = await requireAzureOrSkip();
const F = await requireSftpOrSkip();
const AGE_ID = await generateX25519Identity();
const AGE = { identity: AGE_ID, recipient: await identityToRecipient(AGE_ID) };

/** How one fixture is pointed at this machine, and the databases it replicates. */
interface Live {
  /** The fixture's file name. */
  file: string;
  /** Rewrite the fixture's text (`d` = the temp folder, `p` = this run's key prefix). */
  rewrite(text: string, d: string, p: string, s3: S3TestConfig): string;
  /** Databases to create, relative to the temp folder. */
  dbs: string[];
  /** Extra environment the file's `$VAR`s read. */
  env?(d: string, p: string, s3: S3TestConfig): Record<string, string>;
  /** Run with its `exec:` child instead of `-once`. */
  exec?: boolean;
  /** Its replica is on this test server (default: RGW). */
  server?: "webdav" | "azure" | "sftp";
}

/** Absolute paths the fixtures use, moved under the temp folder. */
function localPaths(text: string, d: string): string {
  return text.replace(/(?<=[\s:/])\/(var\/lib|srv|data|home|mnt)\//g, `${d}/$1/`)
    .replace(/(?<=\s)\.\/data\//g, `${d}/data/`);
}

/** Every `s3://BUCKET/` becomes the test bucket under this run's prefix. */
function s3Urls(text: string, p: string, s3: S3TestConfig): string {
  return text.replace(/s3:\/\/([A-Za-z0-9.-]+)\//g, `s3://${s3.bucket}/${p}$1/`);
}

const LIVE: Live[] = [
  {
    file: "s3-env-credentials.yml",
    rewrite: (t, d, p) => localPaths(t, d).replace("path: backups/", `path: ${p}backups/`),
    dbs: ["var/lib/myapp/app.db"],
    env: (_d, _p, s3) => ({
      BUCKET: s3.bucket,
      AWS_SECRET_ACCESS_KEY: "",
      LITESTREAM_SECRET_ACCESS_KEY: s3.secretAccessKey,
    }),
  },
  {
    file: "many-databases.yml",
    rewrite: (t, d, p, s3) =>
      s3Urls(localPaths(t, d), p, s3)
        .replace("endpoint: minio.internal:9000", `endpoint: ${s3.endpoint}`)
        .replace("access-key-id: walrust", `access-key-id: ${s3.accessKeyId}`),
    dbs: ["srv/data/users.db", "srv/data/orders.db", "srv/data/audit.db", "srv/data/sessions.db"],
    env: (_d, _p, s3) => ({ MINIO_SECRET: s3.secretAccessKey, AWS_ENDPOINT_URL_S3: "" }),
  },
  {
    file: "file-replica.yml",
    rewrite: (t, d) => localPaths(t, d),
    dbs: ["var/lib/wiki/wiki.db", "var/lib/wiki/search.db"],
  },
  {
    file: "dir-watch.yml",
    rewrite: (t, d, p, s3) => s3Urls(localPaths(t, d), p, s3),
    dbs: [
      "var/lib/tenants/acme.db",
      "var/lib/tenants/eu/globex.db",
      "var/lib/shared/common.sqlite",
    ],
  },
  {
    file: "retention-snapshot.yml",
    rewrite: (t, d, p, s3) => s3Urls(localPaths(t, d), p, s3),
    dbs: ["data/app.db", "data/analytics.db"],
  },
  {
    file: "exec.yml",
    // The app: one commit, then exit 0; replicate finishes the sync and exits with its code.
    rewrite: (t, _d, p, s3) =>
      t.replace('addr: ":9090"', 'addr: "127.0.0.1:0"')
        .replace(/^exec: .*$/m, `exec: sqlite3 -cmd ".timeout 5000" \${DB_PATH} "${EXEC_SQL}"`)
        .replace("s3://${BUCKET}/", `s3://${s3.bucket}/${p}`),
    dbs: ["app/myapp.db"],
    env: (d) => ({ DB_PATH: `${d}/app/myapp.db` }),
    exec: true,
  },
  {
    file: "replicas-list.yml",
    rewrite: (t, d, p, s3) =>
      localPaths(t, d).replace("bucket: old-backups", `bucket: ${s3.bucket}`)
        .replace("path: db.sqlite", `path: ${p}db.sqlite`)
        .replace("AKIAIOSFODNN7EXAMPLE", s3.accessKeyId)
        .replace("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", s3.secretAccessKey),
    dbs: ["home/app/db.sqlite"],
  },
  {
    file: "url-replica.yml",
    rewrite: (t, d, p, s3) =>
      s3Urls(localPaths(t, d), p, s3)
        .replace("https://abc123.r2.cloudflarestorage.com", s3.endpoint),
    dbs: ["data/app.db"],
    env: () => ({ AWS_ENDPOINT_URL_S3: "" }),
  },
  {
    file: "webdav.yml",
    // p is "<run>-<n>/": the run's own folder on the WebDAV server.
    rewrite: (t, d, p) =>
      localPaths(t, d).replace(
        "https://dav.example.com/remote.php/dav/files/me",
        `http://${new URL(W!.url.replace(/^webdav:/, "http:")).host}/${p.replace(/\/$/, "")}`,
      ).replace("webdav-username: me", `webdav-username: ${W!.username}`),
    dbs: ["var/lib/notes/notes.db"],
    env: () => ({ WEBDAV_PASSWORD: W!.password, WALRUST_WEBDAV_PASSWORD: "" }),
    server: "webdav",
  },
  {
    file: "azure.yml",
    // p is "<run>-<n>/": the run's own folder in the test container.
    rewrite: (t, d, p) => {
      const { accountName, container } = absParts(A!.url);
      return localPaths(t, d).replace("account-name: shopbackups", `account-name: ${accountName}`)
        .replace("bucket: litestream", `bucket: ${container}\n      endpoint: ${A!.endpoint}`)
        .replace("path: prod/", `path: ${p}prod/`);
    },
    dbs: ["srv/shop/shop.db"],
    env: () => ({ AZURE_ACCOUNT_KEY: A!.accountKey, AZURE_STORAGE_KEY: "" }),
    server: "azure",
  },
  {
    file: "sftp.yml",
    rewrite: (t, d, p) => {
      const u = new URL(F!.url);
      return localPaths(t, d).replace("host: backup.example.com:22", `host: ${u.host}`)
        .replace("user: litestream", `user: ${decodeURIComponent(u.username)}`)
        .replace("path: /srv/backups/", `path: ${decodeURIComponent(u.pathname)}/${p}`)
        .replace(`key-path: ${d}/home/app/.ssh/id_ed25519`, `key-path: ${F!.keyPath}`)
        .replace(/host-key: .*/, `host-key: ${F!.hostKey}`);
    },
    dbs: ["var/lib/wiki/wiki.db"],
    env: () => ({ WALRUST_SFTP_KEY_PATH: "", WALRUST_SFTP_HOST_KEY: "" }),
    server: "sftp",
  },
  {
    file: "age-v03.yml",
    rewrite: (t, d, p, s3) => s3Urls(localPaths(t, d), p, s3),
    dbs: ["data/secrets.db"],
    env: () => ({ AGE_IDENTITY: AGE.identity, AGE_RECIPIENT: AGE.recipient }),
  },
  {
    file: "levels.yml",
    rewrite: (t, d, p, s3) => s3Urls(localPaths(t, d), p, s3),
    dbs: ["var/lib/app/app.db", "var/lib/app/jobs.db"],
  },
];

const EXEC_SQL = "INSERT INTO t (id, tag, n, v) " +
  "SELECT max(id) + 1000, 'exec', 0, 'by the exec child' FROM t";

async function appDb(path: string, rows: number): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await createAppDb(path);
  for (let i = 1; i <= rows; i++) await cliSql(path, sequentialInsert(i));
}

for (const live of LIVE) {
  Deno.test({
    name: `${live.server ?? "s3"}: ${live.file} replicates, takes more writes, and ` +
      "restores every database exactly",
    ignore: !S3 || (live.server === "webdav" && !W) || (live.server === "azure" && !A) ||
      (live.server === "sftp" && !F),
    async fn() {
      const s3 = S3!;
      const d = await Deno.makeTempDir({ prefix: "walrust-ls-fixture-" });
      const p = uniquePrefix();
      try {
        const text = live.rewrite(await Deno.readTextFile(FIXTURES + live.file), d, p, s3);
        const cfg = `${d}/litestream.yml`;
        await Deno.writeTextFile(cfg, text);
        const env: Record<string, string> = {
          AWS_ACCESS_KEY_ID: s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
          AWS_REGION: s3.region,
          AWS_ENDPOINT_URL_S3: s3.endpoint,
          TMPDIR: d,
          ...live.env?.(d, p, s3),
        };
        const run = (args: string[]) => walrust(args, { cwd: d, env });
        const dbs = live.dbs.map((rel) => `${d}/${rel}`);
        for (const db of dbs) await appDb(db, 3);

        // An exec: config runs until its child exits (and -once is refused with it).
        const replicate = live.exec
          ? ["replicate", "-config", cfg]
          : ["replicate", "-config", cfg, "-once", "-no-metrics"];
        const first = await run(replicate);
        assert.equal(first.code, 0, first.stderr);
        // Settings walrust lacks warn once each, naming the file, line and key.
        const warned = first.stderr.split("\n").filter((l) =>
          / WARN .*litestream\.yml:\d+: /.test(l)
        )
          .map((l) => l.replace(/^\S+ /, ""));
        assert.equal(new Set(warned).size, warned.length, first.stderr);
        if (live.file === "levels.yml") {
          for (const key of ["socket", "mcp-addr", "heartbeat-url", "meta-path", "storage-class"]) {
            assert.equal(warned.filter((l) => l.includes(`${key}:`)).length, 1, first.stderr);
          }
        }
        // More writes after the first sync: the second run continues the same replica.
        for (const db of dbs) {
          for (let i = 4; i <= 6; i++) await cliSql(db, sequentialInsert(i));
        }
        const second = await run(replicate);
        assert.equal(second.code, 0, second.stderr);
        if (live.exec) {
          const n = await cliSql(dbs[0], "SELECT count(*) FROM t WHERE tag = 'exec'");
          assert.equal(n.trim(), "2");
        }

        if (live.file === "age-v03.yml") {
          // Encrypted as Litestream v0.3 would: every object is an age file.
          const storage = await openS3Storage(s3Options(s3));
          try {
            let n = 0;
            for await (const o of storage.list(p)) {
              const head = await readAll(await storage.get(o.key, { offset: 0, length: 22 }));
              assert.equal(new TextDecoder().decode(head), "age-encryption.org/v1\n", o.key);
              n++;
            }
            assert.ok(n >= 2, `${n} objects`);
          } finally {
            await storage.close();
          }
        }
        const toml = await run(["config", "convert", cfg]);
        assert.equal(toml.code, 0, toml.stderr);
        await Deno.writeTextFile(`${d}/walrust.toml`, toml.stdout);

        for (const [i, db] of dbs.entries()) {
          const source = await dumpContent(db);
          for (const config of [cfg, `${d}/walrust.toml`]) {
            const out = `${d}/restored-${i}-${config.endsWith(".toml") ? "toml" : "yml"}.db`;
            const r = await run(["restore", "-config", config, "-o", out, db]);
            assert.equal(r.code, 0, `${live.file} ${db} via ${config}: ${r.stderr}`);
            assert.equal((await cliSql(out, "PRAGMA integrity_check")).trim(), "ok");
            assert.equal(await dumpContent(out), source, `${live.file} ${db} via ${config}`);
          }
        }
      } finally {
        await Deno.remove(d, { recursive: true });
        if (live.server === "webdav") {
          await Deno.remove(`${W!.dir}/${p}`, { recursive: true }).catch(() => {});
        } else if (live.server === "sftp") {
          const root = decodeURIComponent(new URL(F!.url).pathname);
          // The test server serves this machine's file system (no chroot).
          await Deno.remove(`${root}/${p}`, { recursive: true }).catch(() => {});
        } else if (live.server === "azure") {
          const { accountName, container } = absParts(A!.url);
          const storage = new AzureStorage({
            accountName,
            container,
            root: p.replace(/\/$/, ""),
            accountKey: A!.accountKey,
            endpoint: A!.endpoint,
          });
          const keys: string[] = [];
          for await (const o of storage.list("")) keys.push(o.key);
          await storage.delete(keys);
        } else {
          const storage = await openS3Storage(s3Options(s3));
          const keys: string[] = [];
          for await (const o of storage.list(p)) keys.push(o.key);
          await storage.delete(keys);
          await storage.close();
        }
      }
    },
  });
}

Deno.test("every litestream.yml fixture but the misspelt one runs end to end here", async () => {
  const files: string[] = [];
  for await (const e of Deno.readDir(FIXTURES)) files.push(e.name);
  const covered = new Set(LIVE.map((l) => l.file));
  assert.deepEqual(files.filter((f) => f !== "misspelt.yml" && !covered.has(f)), []);
  assert.ok(covered.size >= 11);
});
