/** Parse a bucket argument (`-b`, config `bucket`) into a backend location. */

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../errors.ts";

/** A filesystem bucket: objects live under `root`. */
export interface FileBucket {
  kind: "file";
  /** Absolute, normalized directory path. */
  root: string;
  /** Always "": callers add the per-database prefix. */
  prefix: string;
}

/** An S3 (or S3-compatible) bucket. Defaults (path style for custom endpoints) are the backend's. */
export interface S3Bucket {
  kind: "s3";
  bucket: string;
  /** Base prefix without leading or trailing "/" ("" for the bucket root). */
  prefix: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

/** A WebDAV collection (`webdav://host/path` over HTTP, `webdavs://` over HTTPS). */
export interface WebdavBucket {
  kind: "webdav";
  /** `http(s)://host[:port]/path/`, without credentials. */
  endpoint: string;
  /** From the URL's user info, when given there. */
  username?: string;
  password?: string;
  /** Always "": callers add the per-database prefix. */
  prefix: string;
}

/** A folder on an SFTP server (`sftp://user@host:port/abs/path`). */
export interface SftpBucket {
  kind: "sftp";
  host: string;
  port: number;
  username: string;
  password?: string;
  /** Absolute folder on the server. */
  root: string;
  /** Always "": callers add the per-database prefix. */
  prefix: string;
}

/** An Azure Blob Storage container (`abs://ACCOUNT@CONTAINER/path`, Litestream's form). */
export interface AbsBucket {
  kind: "abs";
  /** From the URL's user info; else AZURE_STORAGE_ACCOUNT when opened. */
  account?: string;
  container: string;
  /** Path inside the container, without slashes at the ends ("" for the root). */
  root: string;
  /** Blob service URL from `?endpoint=` (an emulator, a sovereign cloud). */
  endpoint?: string;
  /** Always "": callers add the per-database prefix. */
  prefix: string;
}

/** Result of parseBucketUrl. */
export type BucketLocation = FileBucket | S3Bucket | WebdavBucket | SftpBucket | AbsBucket;

const USAGE = "use s3://bucket/prefix, abs://account@container/path, webdav://host/path, " +
  "sftp://user@host/path, file:///absolute/path or a plain directory path";

// At least two letters so a Windows drive ("C:") is never taken for a scheme.
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]+):/;

/**
 * Parse `file:///abs/path`, a plain (absolute or relative) path, or
 * `s3://bucket/prefix?endpoint=..&region=..&forcePathStyle=..` (camelCase or kebab-case keys).
 * Throws ConfigError naming the value and the fix when malformed.
 */
export function parseBucketUrl(s: string): BucketLocation {
  if (s.trim() === "") throw bad(s, `empty bucket; ${USAGE}`);
  if (s.includes("\0")) throw bad(s, `bucket contains a NUL byte; ${USAGE}`);
  const scheme = SCHEME.exec(s)?.[1].toLowerCase();
  if (scheme === undefined) return { kind: "file", root: resolve(s), prefix: "" };
  if (!s.slice(scheme.length + 1).startsWith("//")) {
    throw bad(s, `"${scheme}:" must be followed by "//"; ${USAGE} (write ./${s} for a path)`);
  }
  if (scheme === "file") return parseFileUrl(s);
  if (scheme === "s3") return parseS3Url(s);
  if (scheme === "webdav" || scheme === "webdavs") return parseWebdavUrl(s, scheme);
  if (scheme === "sftp") return parseSftpUrl(s);
  if (scheme === "abs") return parseAbsUrl(s);
  throw bad(s, `unsupported scheme "${scheme}://"; ${USAGE}`);
}

function bad(value: string, why: string): ConfigError {
  return new ConfigError(`bucket ${JSON.stringify(value)}: ${why}`);
}

function parseUrl(s: string): URL {
  try {
    return new URL(s);
  } catch (cause) {
    throw new ConfigError(`bucket ${JSON.stringify(s)}: not a valid URL; ${USAGE}`, { cause });
  }
}

function parseFileUrl(s: string): FileBucket {
  const u = parseUrl(s);
  if (u.host !== "") {
    throw bad(s, `file URL has host "${u.host}"; use three slashes: file:///absolute/path`);
  }
  if (u.search !== "" || u.hash !== "") {
    throw bad(s, "file URL must not have a query or fragment; use file:///absolute/path");
  }
  let path: string;
  try {
    path = fileURLToPath(u);
  } catch (cause) {
    throw new ConfigError(
      `bucket ${JSON.stringify(s)}: not a usable file URL; use file:///absolute/path`,
      { cause },
    );
  }
  return { kind: "file", root: resolve(path), prefix: "" };
}

function parseWebdavUrl(s: string, scheme: string): WebdavBucket {
  const u = parseUrl(s);
  if (u.hostname === "") throw bad(s, `no host; use ${scheme}://host[:port]/path`);
  if (u.search !== "" || u.hash !== "") {
    throw bad(s, `${scheme} URL must not have a query or fragment; use ${scheme}://host/path`);
  }
  const segments = pathSegments(s);
  if (segments.some((p) => p === "." || p === "..")) {
    throw bad(s, `path must not contain "." or ".." segments`);
  }
  const http = scheme === "webdavs" ? "https" : "http";
  const path = segments.map((p) => encodeURIComponent(p)).join("/");
  const out: WebdavBucket = {
    kind: "webdav",
    endpoint: `${http}://${u.host}/${path}${path ? "/" : ""}`,
    prefix: "",
  };
  if (u.username !== "") out.username = decodePart(s, u.username);
  if (u.password !== "") out.password = decodePart(s, u.password);
  return out;
}

function parseSftpUrl(s: string): SftpBucket {
  const u = parseUrl(s);
  if (u.hostname === "") throw bad(s, "no host; use sftp://user@host[:port]/path");
  if (u.username === "") throw bad(s, "no user; use sftp://user@host[:port]/path");
  if (u.search !== "" || u.hash !== "") throw bad(s, "sftp URL must not have a query or fragment");
  const segments = pathSegments(s);
  if (segments.some((p) => p === "." || p === "..")) {
    throw bad(s, `path must not contain "." or ".." segments`);
  }
  const out: SftpBucket = {
    kind: "sftp",
    host: u.hostname,
    port: u.port ? Number(u.port) : 22,
    username: decodePart(s, u.username),
    root: `/${segments.join("/")}`,
    prefix: "",
  };
  if (u.password !== "") out.password = decodePart(s, u.password);
  return out;
}

function parseAbsUrl(s: string): AbsBucket {
  const u = parseUrl(s);
  if (u.hostname === "") throw bad(s, "no container; use abs://account@container/path");
  if (u.password !== "") {
    throw bad(s, "the account key does not belong in the URL; use AZURE_STORAGE_KEY or the config");
  }
  if (u.port !== "") throw bad(s, "abs URL has a port; use ?endpoint=http://host:port/account");
  if (u.hash !== "") throw bad(s, "abs URL must not have a fragment");
  const segments = pathSegments(s);
  if (segments.some((p) => p === "." || p === "..")) {
    throw bad(s, `path must not contain "." or ".." segments`);
  }
  const out: AbsBucket = {
    kind: "abs",
    container: decodePart(s, u.hostname),
    root: segments.join("/"),
    prefix: "",
  };
  if (u.username !== "") out.account = decodePart(s, u.username);
  for (const [key, value] of u.searchParams) {
    if (key !== "endpoint") throw bad(s, `unknown parameter "${key}"; use only endpoint`);
    if (value === "") throw bad(s, `parameter "endpoint" is empty; give a value or leave it out`);
    out.endpoint = value;
  }
  return out;
}

/** The URL for messages: user info (a password) removed. */
export function redactBucketUrl(s: string): string {
  // A user name stays (sftp://user@host names the account); a password goes.
  return s.replace(
    /^([A-Za-z][A-Za-z0-9+.-]+:\/\/)([^/@:]*)(:[^/@]*)?@/,
    (_, scheme, user) => user ? `${scheme}${user}@` : scheme,
  );
}

// Litestream's query keys, both spellings.
const S3_PARAMS: Record<string, "endpoint" | "region" | "forcePathStyle"> = {
  "endpoint": "endpoint",
  "region": "region",
  "forcePathStyle": "forcePathStyle",
  "force-path-style": "forcePathStyle",
};

function parseS3Url(s: string): S3Bucket {
  const u = parseUrl(s);
  if (u.hostname === "") throw bad(s, "no bucket name; use s3://bucket/prefix");
  if (u.port !== "") {
    throw bad(s, "s3 URL has a port; use s3://bucket/prefix?endpoint=http://host:port");
  }
  if (u.username !== "" || u.password !== "") {
    throw bad(s, "credentials do not belong in the URL; use the config file or AWS_* variables");
  }
  if (u.hash !== "") throw bad(s, "s3 URL must not have a fragment");
  const bucket = decodePart(s, u.hostname);
  const segments = pathSegments(s);
  if (segments.some((p) => p === "." || p === "..")) {
    throw bad(s, `prefix must not contain "." or ".." segments; use s3://bucket/prefix`);
  }
  const out: S3Bucket = { kind: "s3", bucket, prefix: segments.join("/") };
  const seen = new Set<string>();
  for (const [key, value] of u.searchParams) {
    const field = S3_PARAMS[key];
    if (field === undefined) {
      throw bad(
        s,
        `unknown parameter "${key}"; use only endpoint, region, forcePathStyle (force-path-style)`,
      );
    }
    if (seen.has(field)) throw bad(s, `parameter "${key}" given twice`);
    seen.add(field);
    if (field === "forcePathStyle") {
      out.forcePathStyle = parseBool(s, key, value);
    } else if (value === "") {
      throw bad(s, `parameter "${key}" is empty; give a value or leave it out`);
    } else {
      out[field] = value;
    }
  }
  return out;
}

/** The URL's path segments, decoded, from the raw text: URL parsing would resolve ".." away. */
function pathSegments(s: string): string[] {
  const rest = s.slice(s.indexOf("//") + 2).split(/[?#]/, 1)[0];
  const rawPath = rest.includes("/") ? rest.slice(rest.indexOf("/")) : "";
  return decodePart(s, rawPath).split("/").filter((p) => p !== "");
}

function decodePart(s: string, part: string): string {
  try {
    return decodeURIComponent(part);
  } catch (cause) {
    throw new ConfigError(`bucket ${JSON.stringify(s)}: bad percent-encoding; ${USAGE}`, {
      cause,
    });
  }
}

// Go's strconv.ParseBool spellings, which Litestream accepts.
function parseBool(s: string, key: string, v: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  throw bad(s, `parameter "${key}" must be true or false, got ${JSON.stringify(v)}`);
}
