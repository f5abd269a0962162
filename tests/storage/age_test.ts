/**
 * The age decorator over a real file backend: objects are real age files (Debian's `age -d`
 * opens them), bodies stream in and out, ranges and sizes are the plaintext's, and every failure
 * has its exit code: no identity (2), a plain object on an encrypted replica (2), a wrong key or
 * a tampered byte (5), a storage failure mid-read stays a storage error (4). No secret reaches a
 * message.
 */
import assert from "node:assert/strict";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { ConfigError, IntegrityError, StorageError } from "../../src/errors.ts";
import { FileStorage } from "../../src/storage/file.ts";
import {
  type AgeKeys,
  AgeStorage,
  checkAgeKeys,
  checkObjectEncryption,
  ENCRYPTION_META,
  isAgeCiphertext,
  parseIdentityFile,
  plainSize,
} from "../../src/storage/age.ts";
import { type ByteRange, readAll, type Storage } from "../../src/storage/port.ts";
import { storageContract } from "./contract.ts";
import { ageKeysOf } from "../../src/config/age.ts";

async function newKeys(): Promise<AgeKeys> {
  const id = await generateX25519Identity();
  return { recipients: [await identityToRecipient(id)], identities: [id] };
}

async function tmpStorage(): Promise<{ raw: FileStorage; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-age-" });
  return { raw: new FileStorage(dir), dir };
}

function pattern(n: number, seed = 7): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A body that hands out one reused buffer, as the uploader does. */
async function* reusedBuffer(data: Uint8Array, chunk: number): AsyncIterable<Uint8Array> {
  const buf = new Uint8Array(chunk);
  for (let o = 0; o < data.length; o += chunk) {
    const n = Math.min(chunk, data.length - o);
    buf.set(data.subarray(o, o + n));
    yield buf.subarray(0, n);
    buf.fill(0xee); // a consumer that kept the chunk without copying would see this
  }
}

const keys = await checkAgeKeys(await newKeys(), "test");

storageContract({
  name: "age over file",
  async make() {
    const { raw, dir } = await tmpStorage();
    return {
      storage: new AgeStorage(raw, keys),
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});

Deno.test("age: objects are real age files; `age -d` opens them; streamed bodies round-trip", async () => {
  const { raw, dir } = await tmpStorage();
  try {
    const s = new AgeStorage(raw, keys);
    const data = pattern(3 * 1024 * 1024 + 12_345);
    await s.put("db/ltx/0/a.ltx", reusedBuffer(data, 256 * 1024), { "litestream-timestamp": "x" });
    await s.put("db/ltx/0/b.ltx", data.subarray(0, 70_000));
    const stored = await readAll(await raw.get("db/ltx/0/a.ltx"));
    assert.ok(isAgeCiphertext(stored), "the stored object is an age file");
    assert.notDeepEqual(stored.subarray(stored.length - 1000), data.subarray(data.length - 1000));
    assert.deepEqual(await readAll(await s.get("db/ltx/0/a.ltx")), data);

    // Debian's age CLI decrypts what we wrote: the format is real age.
    const keyFile = `${dir}/key.txt`;
    await Deno.writeTextFile(keyFile, `# test key\n${keys.identities[0]}\n`);
    const cli = await new Deno.Command("age", {
      args: ["-d", "-i", keyFile, `${dir}/db/ltx/0/a.ltx`],
      stdout: "piped",
      stderr: "piped",
    }).output().catch((e) => {
      if (Deno.env.get("WALRUST_REQUIRE_SERVERS") === "1") throw e;
      console.error("\n!!! SKIPPING the age CLI check: `age` is not installed\n");
      return undefined;
    });
    if (cli) {
      assert.ok(cli.success, new TextDecoder().decode(cli.stderr));
      assert.deepEqual(cli.stdout, data);
    }

    // Sizes are the plaintext's; metadata keeps the timestamp and marks the encryption.
    const h = await s.head("db/ltx/0/a.ltx");
    assert.equal(h?.size, data.length);
    assert.equal(h?.meta?.["litestream-timestamp"], "x");
    assert.equal(h?.meta?.[ENCRYPTION_META], "age");
    const listed = [];
    for await (const o of s.list("db/")) listed.push([o.key, o.size]);
    assert.deepEqual(listed, [["db/ltx/0/a.ltx", data.length], ["db/ltx/0/b.ltx", 70_000]]);

    // Ranges anywhere, across chunk borders.
    const ranges: ByteRange[] = [
      { offset: 0, length: 100 },
      { offset: 65_530, length: 20 },
      { offset: data.length - 16, length: 16 },
      { offset: data.length - 5, length: 100 },
      { offset: data.length + 5, length: 10 },
      { offset: 10, length: 0 },
    ];
    for (const r of ranges) {
      const want = data.subarray(r.offset, Math.min(data.length, r.offset + r.length));
      assert.deepEqual(await readAll(await s.get("db/ltx/0/a.ltx", r)), want, JSON.stringify(r));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("age: plainSize inverts the ciphertext size at every chunk boundary", async () => {
  const s = new AgeStorage(new FileStorage(await Deno.makeTempDir()), keys);
  const { raw } = { raw: s.inner as FileStorage };
  try {
    for (const n of [0, 1, 100, 65_535, 65_536, 65_537, 131_072, 131_073, 500_000]) {
      await s.put(`k${n}`, new Uint8Array(n));
      const c = (await raw.head(`k${n}`))!.size;
      assert.equal((await s.head(`k${n}`))!.size, n, `plaintext ${n} (ciphertext ${c})`);
    }
    assert.equal(plainSize(10, 168), 10, "too small for age: left as is");
  } finally {
    await Deno.remove(raw.root, { recursive: true });
  }
});

Deno.test("age: no identity is exit 2, a wrong key or a tampered byte exit 5, naming the object", async () => {
  const { raw, dir } = await tmpStorage();
  try {
    const s = new AgeStorage(raw, keys);
    await s.put("x.ltx", pattern(200_000));
    await raw.put("plain.ltx", pattern(1000));

    const writeOnly = new AgeStorage(raw, { recipients: keys.recipients, identities: [] });
    await assert.rejects(() => writeOnly.get("x.ltx"), ConfigError);
    await assert.rejects(() => writeOnly.get("x.ltx"), /x\.ltx.*no age identity/);

    const other = await checkAgeKeys(await newKeys(), "other");
    await assert.rejects(() => new AgeStorage(raw, other).get("x.ltx"), IntegrityError);
    await assert.rejects(() => new AgeStorage(raw, other).get("x.ltx"), /x\.ltx.*wrong key/);

    // A plain object inside an encrypted replica: refused as a configuration mismatch.
    await assert.rejects(() => s.get("plain.ltx"), ConfigError);
    await assert.rejects(() => checkObjectEncryption(s, "plain.ltx", true), ConfigError);
    await checkObjectEncryption(s, "x.ltx", true);
    await assert.rejects(() => checkObjectEncryption(raw, "x.ltx", false), /is age-encrypted/);

    // One flipped byte deep in the body: the chunk's tag fails while streaming.
    const path = `${dir}/x.ltx`;
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 70_000] ^= 1;
    await Deno.writeFile(path, bytes);
    const body = await s.get("x.ltx");
    const e = await readAll(body).then(() => undefined, (err) => err);
    assert.ok(e instanceof IntegrityError, `tampered: ${e}`);
    assert.match(e.message, /x\.ltx.*tampered/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A real file backend whose reads fail after `after` bytes (a connection dropped mid-object). */
class FailingReads implements Storage {
  readonly description = "failing";
  constructor(readonly inner: Storage, readonly after: number) {}
  put(k: string, b: Uint8Array | AsyncIterable<Uint8Array>, m?: Record<string, string>) {
    return this.inner.put(k, b, m);
  }
  async get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const src = await this.inner.get(key, range);
    const after = this.after;
    return (async function* () {
      let n = 0;
      for await (const c of src) {
        if (n + c.length > after) throw new StorageError("connection reset", { transient: true });
        n += c.length;
        yield c;
      }
    })();
  }
  head(k: string) {
    return this.inner.head(k);
  }
  list(p: string) {
    return this.inner.list(p);
  }
  delete(k: string[]) {
    return this.inner.delete(k);
  }
}

Deno.test("age: a storage failure mid-read stays a StorageError, not corruption", async () => {
  const { raw, dir } = await tmpStorage();
  try {
    await new AgeStorage(raw, keys).put("x.ltx", pattern(3_000_000));
    const s = new AgeStorage(new FailingReads(raw, 1_000_000), keys);
    const e = await readAll(await s.get("x.ltx")).then(() => undefined, (err) => err);
    assert.ok(e instanceof StorageError, `got ${e}`);
    assert.ok(!(e instanceof IntegrityError));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("age keys: bad keys are named without their text; identity files and env", async () => {
  const marker = "AGE-SECRET-KEY-1MARKERMARKERMARKERMARKER";
  const err = await checkAgeKeys({ recipients: [], identities: [marker] }, "replica").then(
    () => undefined,
    (x) => x,
  );
  assert.ok(err instanceof ConfigError, `got ${err}`);
  assert.ok(!err.message.includes("MARKER"), err.message);
  assert.match(err.message, /identity 1 is not an age secret key/);
  await assert.rejects(
    () => checkAgeKeys({ recipients: ["age1nope"], identities: [] }, "r"),
    /recipient 1/,
  );
  // Identities alone give their recipients (a restore host can still write a snapshot).
  const k = await newKeys();
  const derived = await checkAgeKeys({ recipients: [], identities: k.identities }, "r");
  assert.deepEqual(derived.recipients, k.recipients);
  // Lower case is the same key (Bech32).
  const lower = await checkAgeKeys(
    { recipients: [], identities: [k.identities[0].toLowerCase()] },
    "r",
  );
  assert.deepEqual(lower.recipients, k.recipients);

  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/key.txt`;
    await Deno.writeTextFile(
      file,
      `# created: 2026-12-02\n# public key: ${k.recipients[0]}\n${k.identities[0]}\n\n`,
    );
    assert.deepEqual(parseIdentityFile(await Deno.readTextFile(file)), k.identities);
    const fromFile = await ageKeysOf({ identityFiles: [file] });
    assert.deepEqual(fromFile, { recipients: [], identities: k.identities });
    await assert.rejects(() => ageKeysOf({ identityFiles: [`${dir}/none`] }), /none: no such file/);
    const env = (v: Record<string, string>) => (n: string) => v[n];
    assert.deepEqual(
      await ageKeysOf(undefined, undefined, env({ LITESTREAM_AGE_PUBLIC_KEY: "age1a, age1b" })),
      { recipients: ["age1a", "age1b"], identities: [] },
    );
    // A database's own (empty) table means plain even when [age] or the environment is set.
    assert.equal(
      await ageKeysOf({ recipients: ["age1a"] }, {}, env({ LITESTREAM_AGE_PUBLIC_KEY: "age1b" })),
      undefined,
    );
    assert.equal(await ageKeysOf(undefined, undefined, env({})), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
