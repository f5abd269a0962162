/** Open the Storage behind a bucket URL. The S3 backend is imported only when an s3:// URL is used. */
import type { Storage } from "./port.ts";
import type { LayoutKind } from "./layout.ts";
import { parseBucketUrl, redactBucketUrl } from "./url.ts";
import { ConfigError } from "../errors.ts";
import { log } from "../observe/log.ts";
import { FileStorage } from "./file.ts";
import { type ResilienceEvents, ResilientStorage } from "./resilient.ts";
import type { RetrySettings } from "../config/schema.ts";
import { type AgeKeys, AgeStorage, checkAgeKeys, hasAgeKeys } from "./age.ts";

/** A replica location: a backend, its key layout, and the base prefix under which databases live. */
export interface Replica {
  /** The backend holding the replica's objects (behind retries when opened with `resilience`). */
  storage: Storage;
  /** Key layout: "s3" for s3:// URLs, "file" for file replicas. */
  kind: LayoutKind;
  /** Base prefix from the URL ("" for none); a database's prefix is joined below it. */
  basePrefix: string;
  /** For messages: the URL as the user gave it, without credentials. */
  url: string;
  /** A file replica's root directory (absolute); none for S3. Restores must not write inside it. */
  fileRoot?: string;
}

/** S3 settings that flags or config may add to an s3:// URL. */
export interface S3Overrides {
  /** S3-compatible endpoint URL; replaces the URL's `?endpoint=`. */
  endpoint?: string;
  /** S3 region; replaces the URL's `?region=`. */
  region?: string;
  /** Path-style addressing (bucket in the path, not the host name). */
  forcePathStyle?: boolean;
  /** Static credentials (both or neither); without them the SDK's default chain is used. */
  accessKeyId?: string;
  /** The secret key that goes with `accessKeyId`. */
  secretAccessKey?: string;
  /** WebDAV login (webdav:// buckets); else the URL's user info, else WALRUST_WEBDAV_USERNAME. */
  webdavUsername?: string;
  /** WebDAV password; else the URL's user info, else WALRUST_WEBDAV_PASSWORD. */
  webdavPassword?: string;
  /** Azure shared key (abs:// buckets); else AZURE_STORAGE_KEY / LITESTREAM_AZURE_ACCOUNT_KEY. */
  azureAccountKey?: string;
  /** Azure SAS token; else AZURE_STORAGE_SAS_TOKEN / LITESTREAM_AZURE_SAS_TOKEN. */
  azureSasToken?: string;
  /** SFTP password; else the URL's, else WALRUST_SFTP_PASSWORD / LITESTREAM_SFTP_PASSWORD. */
  sftpPassword?: string;
  /** SFTP private key file; else WALRUST_SFTP_KEY_PATH / LITESTREAM_SFTP_KEY_PATH. */
  sftpKeyPath?: string;
  /** The server's public key line (`ssh-ed25519 AAAA...`); else WALRUST_SFTP_HOST_KEY. */
  sftpHostKey?: string;
}

/** Retries, circuit breaker and their events, applied to every backend. */
export interface ResilienceOptions {
  /** Retry counts, backoff delays and circuit-breaker thresholds. */
  retry: RetrySettings;
  /** Told about breaker transitions, retries and rejected credentials. */
  events?: ResilienceEvents;
}

/**
 * Open a replica from a bucket URL (file:///path, plain path, or s3://bucket/prefix). With
 * `resilience`, every operation goes through retries and the circuit breaker; with `age` keys,
 * objects are age-encrypted on the way in and decrypted on the way out (above the retries).
 */
export async function openReplica(
  url: string,
  s3: S3Overrides = {},
  resilience?: ResilienceOptions,
  age?: AgeKeys,
): Promise<Replica> {
  const r = await openRaw(url, s3);
  const opened = resilience
    ? { ...r, storage: new ResilientStorage(r.storage, resilience.retry, resilience.events) }
    : r;
  return await withAge(opened, age);
}

/**
 * The same replica with other age keys: encrypted with `age` (checked first), or plain when
 * `age` holds no key. The connection underneath is shared.
 */
export async function withAge(replica: Replica, age: AgeKeys | undefined): Promise<Replica> {
  const raw = replica.storage instanceof AgeStorage ? replica.storage.inner : replica.storage;
  if (!hasAgeKeys(age)) return raw === replica.storage ? replica : { ...replica, storage: raw };
  const keys = await checkAgeKeys(age, replica.url);
  return { ...replica, storage: new AgeStorage(raw, keys) };
}

/** True when the replica's objects are age-encrypted (it was opened with age keys). */
export function isEncrypted(replica: Replica): boolean {
  return replica.storage instanceof AgeStorage;
}

async function openRaw(url: string, s3: S3Overrides): Promise<Replica> {
  const parsed = parseBucketUrl(url);
  if (parsed.kind === "file") {
    const storage = new FileStorage(parsed.root);
    return { storage, kind: "file", basePrefix: parsed.prefix, url, fileRoot: storage.root };
  }
  if (parsed.kind === "webdav") {
    const { WebdavStorage } = await import("./webdav.ts");
    const env = (k: string) => Deno.env.get(k) || undefined;
    const storage = new WebdavStorage({
      endpoint: parsed.endpoint,
      // Config first, then the URL's user info, then the environment.
      username: nonEmpty(s3.webdavUsername) ?? parsed.username ??
        env("WALRUST_WEBDAV_USERNAME") ?? env("LITESTREAM_WEBDAV_USERNAME"),
      password: nonEmpty(s3.webdavPassword) ?? parsed.password ??
        env("WALRUST_WEBDAV_PASSWORD") ?? env("LITESTREAM_WEBDAV_PASSWORD"),
    });
    return { storage, kind: "file", basePrefix: parsed.prefix, url: redactBucketUrl(url) };
  }
  if (parsed.kind === "abs") {
    const { AzureStorage } = await import("./azure.ts");
    const env = (k: string) => Deno.env.get(k) || undefined;
    const account = parsed.account ?? env("AZURE_STORAGE_ACCOUNT");
    if (!account) {
      throw new ConfigError(
        `bucket ${
          JSON.stringify(url)
        }: no storage account (fix: abs://ACCOUNT@${parsed.container}` +
          `/path, or AZURE_STORAGE_ACCOUNT)`,
      );
    }
    const storage = new AzureStorage({
      accountName: account,
      container: parsed.container,
      root: parsed.root,
      endpoint: s3.endpoint ?? parsed.endpoint,
      accountKey: nonEmpty(s3.azureAccountKey) ?? env("AZURE_STORAGE_KEY") ??
        env("LITESTREAM_AZURE_ACCOUNT_KEY"),
      sasToken: nonEmpty(s3.azureSasToken) ?? env("AZURE_STORAGE_SAS_TOKEN") ??
        env("LITESTREAM_AZURE_SAS_TOKEN"),
    });
    return { storage, kind: "file", basePrefix: parsed.prefix, url: redactBucketUrl(url) };
  }
  if (parsed.kind === "sftp") {
    const { SftpStorage } = await import("./sftp.ts");
    const env = (k: string) => Deno.env.get(k) || undefined;
    const keyPath = nonEmpty(s3.sftpKeyPath) ?? env("WALRUST_SFTP_KEY_PATH") ??
      env("LITESTREAM_SFTP_KEY_PATH");
    let privateKey: string | undefined;
    if (keyPath) {
      try {
        privateKey = await Deno.readTextFile(keyPath);
      } catch (e) {
        throw new ConfigError(`SFTP key ${keyPath}: ${e instanceof Error ? e.message : e}`);
      }
    }
    const storage = new SftpStorage({
      host: parsed.host,
      port: parsed.port,
      username: parsed.username,
      root: parsed.root,
      password: nonEmpty(s3.sftpPassword) ?? parsed.password ?? env("WALRUST_SFTP_PASSWORD") ??
        env("LITESTREAM_SFTP_PASSWORD"),
      privateKey,
      hostKey: nonEmpty(s3.sftpHostKey) ?? env("WALRUST_SFTP_HOST_KEY"),
      warn: (msg) => log.warn(msg),
    });
    return { storage, kind: "file", basePrefix: parsed.prefix, url: redactBucketUrl(url) };
  }
  const { openS3Storage } = await import("./s3.ts");
  const storage = await openS3Storage({
    bucket: parsed.bucket,
    endpoint: s3.endpoint ?? parsed.endpoint,
    region: s3.region ?? parsed.region,
    forcePathStyle: s3.forcePathStyle ?? parsed.forcePathStyle,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
  return { storage, kind: "s3", basePrefix: parsed.prefix, url };
}

/** Join the base prefix and a database's name into the database's key prefix. */
export function databasePrefix(replica: Replica, name: string): string {
  const base = replica.basePrefix.replace(/\/+$/, "");
  return base ? `${base}/${name}` : name;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === "" ? undefined : s;
}
