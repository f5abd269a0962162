/**
 * Litestream v0.5's own replica (tests/fixtures/vectors/litestream-replica, written by Litestream
 * on a file replica) copied key for key onto each non-S3 backend — WebDAV, SFTP, Azure — in the
 * layout Litestream uses there (`<path>/ltx/<level>/<min>-<max>.ltx`), then restored by walrust
 * from that backend byte for byte. Each backend's own test checks that what walrust writes there
 * has the same keys, so the layout is the same both ways. (Litestream v0.5 itself cannot run here:
 * no binary and no Go toolchain.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { walrust } from "../helpers/walrust.ts";
import { VECTORS } from "../helpers/vectors.ts";
import { integrityCheck } from "../../src/sqlite/handle.ts";
import { openReplica, type S3Overrides } from "../../src/storage/open.ts";
import { requireWebdavOrSkip, uniqueWebdavUrl } from "../helpers/webdavenv.ts";
import { requireSftpOrSkip, uniqueSftpUrl } from "../helpers/sftpenv.ts";
import { requireAzureOrSkip, uniqueAzureUrl } from "../helpers/azureenv.ts";

const SET = `${VECTORS}/litestream-replica`;
const manifest = JSON.parse(await Deno.readTextFile(`${SET}/manifest.json`));
const W = await requireWebdavOrSkip();
const F = await requireSftpOrSkip();
const A = await requireAzureOrSkip();

interface Target {
  name: string;
  url: string;
  overrides: S3Overrides;
  env: Record<string, string>;
  flags: string[];
}

const targets: (() => Target | undefined)[] = [
  () =>
    W && {
      name: "webdav",
      url: uniqueWebdavUrl(W),
      overrides: { webdavUsername: W.username, webdavPassword: W.password },
      env: { WALRUST_WEBDAV_USERNAME: W.username, WALRUST_WEBDAV_PASSWORD: W.password },
      flags: [],
    },
  () =>
    F && {
      name: "sftp",
      url: uniqueSftpUrl(F),
      overrides: { sftpKeyPath: F.keyPath, sftpHostKey: F.hostKey },
      env: { WALRUST_SFTP_KEY_PATH: F.keyPath, WALRUST_SFTP_HOST_KEY: F.hostKey },
      flags: [],
    },
  () =>
    A && {
      name: "azure",
      url: uniqueAzureUrl(A),
      overrides: { azureAccountKey: A.accountKey, endpoint: A.endpoint },
      env: { AZURE_STORAGE_KEY: A.accountKey },
      flags: ["--endpoint", A.endpoint],
    },
];

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

for (const [i, make] of targets.entries()) {
  const name = ["webdav", "sftp", "azure"][i];
  Deno.test({
    name:
      `${name}: Litestream v0.5's replica, copied into Litestream's layout there, restores exactly`,
    ignore: ![W, F, A][i],
    sanitizeResources: false,
    async fn() {
      const t = make()!;
      const dir = await Deno.makeTempDir({ prefix: `walrust-interop-${name}-` });
      const replica = await openReplica(t.url, t.overrides);
      const keys: string[] = [];
      try {
        for await (const lv of Deno.readDir(`${SET}/replica/ltx`)) {
          for await (const f of Deno.readDir(`${SET}/replica/ltx/${lv.name}`)) {
            const key = `ls/ltx/${lv.name}/${f.name}`;
            await replica.storage.put(
              key,
              await Deno.readFile(`${SET}/replica/ltx/${lv.name}/${f.name}`),
            );
            keys.push(key);
          }
        }
        const out = join(dir, "latest.db");
        const r = await walrust(["restore", "ls", "-o", out, "--bucket", t.url, ...t.flags], {
          env: t.env,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await sha256(out), manifest.sourceFinal.sha256);
        assert.deepEqual(integrityCheck(out), ["ok"]);
      } finally {
        await replica.storage.delete(keys).catch(() => {});
        await replica.storage.close?.();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
