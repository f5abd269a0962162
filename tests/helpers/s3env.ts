/**
 * S3 test configuration: from AWS_* env + WALRUST_TEST_BUCKET, else from a running
 * `scripts/s3-test-server.sh`. Tests that need S3 are skipped (loudly) when no server answers,
 * and fail instead when WALRUST_REQUIRE_S3=1 (CI).
 */

import { requireOrSkip, scriptExports } from "./server_env.ts";
import { openS3Storage, type S3Options, type S3Storage } from "../../src/storage/s3.ts";
import type { ByteRange, ObjectInfo, Storage } from "../../src/storage/port.ts";

/** Where the test S3 server is and how to log in. */
export interface S3TestConfig {
  bucket: string;
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

const SCRIPT = new URL("../../scripts/s3-test-server.sh", import.meta.url).pathname;

/** The S3 test config from the environment, else from `s3-test-server.sh env`; undefined if none. */
export function s3TestConfig(): S3TestConfig | undefined {
  return fromVars((k) => Deno.env.get(k)) ?? fromScript();
}

function fromVars(get: (k: string) => string | undefined): S3TestConfig | undefined {
  const bucket = get("WALRUST_TEST_BUCKET");
  const endpoint = get("AWS_ENDPOINT_URL_S3") || get("AWS_ENDPOINT_URL");
  const accessKeyId = get("AWS_ACCESS_KEY_ID");
  const secretAccessKey = get("AWS_SECRET_ACCESS_KEY");
  if (!bucket || !endpoint || !accessKeyId || !secretAccessKey) return undefined;
  return {
    bucket,
    endpoint,
    region: get("AWS_REGION") || "us-east-1",
    accessKeyId,
    secretAccessKey,
  };
}

function fromScript(): S3TestConfig | undefined {
  const vars = scriptExports(SCRIPT);
  return vars && fromVars((k) => vars.get(k));
}

/**
 * The config when an S3 server answers. Otherwise: throws when WALRUST_REQUIRE_S3=1, else
 * prints one loud notice and returns undefined (use it as `ignore: !cfg`).
 */
export function requireS3OrSkip(): Promise<S3TestConfig | undefined> {
  return requireOrSkip({
    what: "S3",
    cfg: s3TestConfig(),
    missing:
      "no S3 configured (set AWS_* and WALRUST_TEST_BUCKET, or run scripts/s3-test-server.sh start)",
    reach: (c) => unreachable(c.endpoint),
    requireVar: "WALRUST_REQUIRE_S3",
  });
}

// Any HTTP answer counts; only a failed connection or a timeout means "not there".
async function unreachable(endpoint: string): Promise<string | undefined> {
  try {
    const res = await fetch(endpoint, { signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return undefined;
  } catch (err) {
    return `the S3 endpoint ${endpoint} does not answer (${(err as Error).name})`;
  }
}

const RUN = `walrust-test-runs/${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
let made = 0;

/** A fresh key prefix, unique to this test process and call, ending in "/". */
export function uniquePrefix(): string {
  return `${RUN}-${++made}/`;
}

/** Options for openS3Storage from a test config (plus overrides). */
export function s3Options(cfg: S3TestConfig, extra: Partial<S3Options> = {}): S3Options {
  return {
    bucket: cfg.bucket,
    endpoint: cfg.endpoint,
    region: cfg.region,
    accessKeyId: cfg.accessKeyId,
    secretAccessKey: cfg.secretAccessKey,
    ...extra,
  };
}

/** An S3Storage seen through a fresh unique prefix, and a cleanup that deletes what is under it. */
export interface TestS3 {
  /** Keys are relative to `prefix`; list("") sees only this prefix. */
  storage: Storage;
  /** The unprefixed backend (its keys must start with `prefix`). */
  s3: S3Storage;
  prefix: string;
  cleanup(): Promise<void>;
}

/** Open the test bucket under a fresh prefix. `cleanup` deletes everything under it and closes. */
export async function openTestS3(
  cfg: S3TestConfig,
  extra: Partial<S3Options> = {},
): Promise<TestS3> {
  const s3 = await openS3Storage(s3Options(cfg, extra));
  const prefix = uniquePrefix();
  return {
    storage: new PrefixedStorage(s3, prefix),
    s3,
    prefix,
    async cleanup() {
      try {
        const keys: string[] = [];
        for await (const o of s3.list(prefix)) keys.push(o.key);
        await s3.delete(keys);
      } finally {
        await s3.close();
      }
    },
  };
}

/** A view of a Storage below a key prefix (so each test sees an empty key space). */
class PrefixedStorage implements Storage {
  readonly description: string;
  constructor(private readonly inner: Storage, private readonly prefix: string) {
    this.description = `${inner.description}/${prefix}`;
  }

  put(
    key: string,
    body: Uint8Array | AsyncIterable<Uint8Array>,
    meta?: Record<string, string>,
  ): Promise<void> {
    return this.inner.put(this.prefix + key, body, meta);
  }

  get(key: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    return this.inner.get(this.prefix + key, range);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const info = await this.inner.head(this.prefix + key);
    return info && { ...info, key };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const o of this.inner.list(this.prefix + prefix)) {
      yield { ...o, key: o.key.slice(this.prefix.length) };
    }
  }

  delete(keys: string[]): Promise<void> {
    return this.inner.delete(keys.map((k) => this.prefix + k));
  }
}
