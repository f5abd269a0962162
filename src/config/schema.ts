/**
 * Configuration types, built-in defaults and the merge rule (flag > file > default).
 *
 * The file layer keeps `Partial<…>` values so callers can tell "not set" from "set to the
 * default"; `resolve*` turns a stack of partial layers into complete settings.
 */

/** Per-database replication settings (the `[sync]` table and `[[databases]]` overrides). */
export interface SyncSettings {
  /** Batching window between WAL syncs; may be sub-second. */
  walSyncIntervalMs: number;
  /** Periodic full snapshot (L9); 0 = no periodic snapshots. */
  snapshotIntervalMs: number;
  /** PASSIVE checkpoint cadence; 0 = only by page count. */
  checkpointIntervalMs: number;
  /** PASSIVE checkpoint once the WAL holds at least this many pages. */
  minCheckpointPageCount: number;
  /** TRUNCATE checkpoint past this many WAL pages; 0 = off. */
  walTruncateThresholdPages: number;
  /** Most WAL bytes read into one L0 file per sync. */
  maxSyncWalBytes: number;
  /** SQLite busy_timeout on our connection. */
  busyTimeoutMs: number;
  /** LZ4 page encoding: legacy frames (every Litestream v0.5) or blocks (v0.5.16+). */
  format: "legacy" | "block";
  /** Keep L0 files this long after they are compacted into L1 (Litestream `l0-retention`). */
  l0RetentionMs: number;
  /** Take a snapshot when watch starts. */
  onStartup: boolean;
  /** Check the replica against the live database this often (restore + checksum); 0 = off. */
  validationIntervalMs: number;
}

/** Which restore points to keep. */
export interface RetentionSettings {
  /** Keep the newest snapshot of each of this many newest UTC hours. */
  hourly: number;
  /** Keep the newest snapshot of each of this many newest UTC days. */
  daily: number;
  /** Keep the newest snapshot of each of this many newest ISO weeks. */
  weekly: number;
  /** Keep the newest snapshot of each of this many newest UTC months. */
  monthly: number;
  /** Every transaction in this window stays restorable. */
  pitrWindowMs: number;
}

/** Work on each database's replica inside watch, besides uploading. */
export interface MaintenanceSettings {
  /** Intervals of compaction levels 1, 2, ... (Litestream v0.5: 30 s, 5 min, 1 h); [] = none. */
  compactionLevelsMs: number[];
  /** Apply [retention] inside watch (after each snapshot and every `pruneIntervalMs`). */
  retentionEnabled: boolean;
  /** Apply retention this often besides after snapshots; 0 = only after snapshots. */
  pruneIntervalMs: number;
}

/** Storage retry and circuit-breaker policy. */
export interface RetrySettings {
  /** Retries after the first attempt. */
  maxRetries: number;
  /** Backoff base: retry n waits a random time below min(maxDelayMs, baseDelayMs * 2^n). */
  baseDelayMs: number;
  /** Upper bound of any one backoff delay. */
  maxDelayMs: number;
  /** Whether a circuit breaker stops calls after repeated failures. */
  circuitBreakerEnabled: boolean;
  /** Consecutive failures that open the breaker. */
  circuitBreakerThreshold: number;
  /** Open -> half-open after this long. */
  circuitBreakerCooldownMs: number;
}

/** Local upload queue (`.<dbfile>-walrust/` by default). */
export interface CacheSettings {
  maxSize: number;
  /** Absolute root for per-database state; undefined = beside each database. */
  path?: string;
}

/** Prometheus endpoint. */
export interface MetricsSettings {
  enabled: boolean;
  port: number;
  host: string;
  /** Also serve process collectors (CPU, memory, event loop). */
  process: boolean;
  /** /health is unhealthy past this replication lag (or storage failing this long). */
  maxLagMs: number;
}

/** Log levels, most to least severe. */
export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";

/** Logging. */
export interface LogSettings {
  format: "text" | "json";
  level: LogLevel;
}

/** Stable webhook event names. */
export type WebhookEvent =
  | "upload_failed"
  | "auth_failure"
  | "corruption_detected"
  | "circuit_breaker_open"
  | "circuit_breaker_closed"
  | "wal_size_exceeded"
  | "restore_failed"
  | "validation_failed";

/** Every webhook event; the default subscription. */
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = [
  "upload_failed",
  "auth_failure",
  "corruption_detected",
  "circuit_breaker_open",
  "circuit_breaker_closed",
  "wal_size_exceeded",
  "restore_failed",
  "validation_failed",
];

/** Old names still accepted in `events` (walrust's docs told users to subscribe to sync_failed). */
export const WEBHOOK_EVENT_ALIASES: Readonly<Record<string, WebhookEvent>> = {
  sync_failed: "upload_failed",
};

/** One `[[replicas]]` entry: a local read replica of a replicated database. */
export interface ReplicaFollowEntry {
  /** `s3://bucket/prefix/DB`, `file:///path/DB`, or a NAME in `[s3] bucket`. */
  source: string;
  /** The local copy (absolute; relative paths resolve against the config file's folder). */
  local: string;
  /** Poll interval (ms); default 1000. */
  intervalMs?: number;
  /** Line in the config file, for messages. */
  line?: number;
}

/** One `[[webhooks]]` entry, events normalised (aliases resolved, no duplicates). */
export interface WebhookSettings {
  url: string;
  events: WebhookEvent[];
  secret?: string;
}

/** `[age]` (or one database's `age`): client-side encryption keys as written. */
export interface AgeSettings {
  /** Public keys (`age1...`) objects are encrypted to: enough to replicate. */
  recipients?: string[];
  /** Private keys (`AGE-SECRET-KEY-1...`), inline: needed to restore, verify, follow, compact. */
  identities?: string[];
  /** Files of private keys (age-keygen's output), read at start; absolute paths. */
  identityFiles?: string[];
}

/** One `[[databases]]` entry as written (path may be relative or a glob). */
export interface DatabaseEntry {
  path: string;
  /** Remote name; may contain `{name}` (the file's base name). */
  prefix?: string;
  sync: Partial<SyncSettings>;
  retention?: Partial<RetentionSettings>;
  /** age keys replacing `[age]` for this database (an empty table: plain). */
  age?: AgeSettings;
  /** Line in the config file, for error messages. */
  line?: number;
  /**
   * Keep looking for new files matching this glob while watch runs, and allow it to match none
   * at start (Litestream `watch: true` on a `dir:` entry). Only ever set to true, on globs.
   */
  watch?: boolean;
}

/** `[s3]`: where replicas go. */
export interface S3Settings {
  /** "s3://bucket/prefix", "file:///abs/path" or "/abs/path". */
  bucket?: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Static credentials (Litestream `access-key-id`); set together with secretAccessKey. */
  accessKeyId?: string;
  /** Static credentials (Litestream `secret-access-key`); set together with accessKeyId. */
  secretAccessKey?: string;
  /** WebDAV login (Litestream `webdav-username`); default WALRUST_WEBDAV_USERNAME. */
  webdavUsername?: string;
  /** WebDAV password (Litestream `webdav-password`); default WALRUST_WEBDAV_PASSWORD. */
  webdavPassword?: string;
  /** Azure shared key (Litestream `account-key`); default AZURE_STORAGE_KEY. */
  azureAccountKey?: string;
  /** Azure SAS token (Litestream `sas-token`); default AZURE_STORAGE_SAS_TOKEN. */
  azureSasToken?: string;
  /** SFTP password (Litestream `password`); default the URL's, else WALRUST_SFTP_PASSWORD. */
  sftpPassword?: string;
  /** SFTP private key file (Litestream `key-path`); default WALRUST_SFTP_KEY_PATH. */
  sftpKeyPath?: string;
  /** The SFTP server's public key line (Litestream `host-key`); default WALRUST_SFTP_HOST_KEY. */
  sftpHostKey?: string;
}

/** A validated walrust.toml; every setting is optional so flags and defaults can be layered. */
export interface FileConfig {
  /** Absolute path of the file read; undefined when no file was used. */
  path?: string;
  allowEmptyGlobs: boolean;
  s3: S3Settings;
  /** `[age]`: encryption of every database's objects (unless the database sets its own). */
  age?: AgeSettings;
  sync: Partial<SyncSettings>;
  /** Global upload pool size. */
  uploadConcurrency?: number;
  /** Bounded upload drain on graceful shutdown. */
  shutdownDrainMs?: number;
  retention: Partial<RetentionSettings>;
  /** `[compaction] levels` and `[retention] enabled / prune_interval`. */
  maintenance: Partial<MaintenanceSettings>;
  retry: Partial<RetrySettings>;
  cache: Partial<CacheSettings>;
  metrics: Partial<MetricsSettings>;
  log: Partial<LogSettings>;
  webhooks: WebhookSettings[];
  databases: DatabaseEntry[];
  /** `[[replicas]]`: read replicas `walrust replicate` keeps current (the follower). */
  replicas: ReplicaFollowEntry[];
  /**
   * A shell command line to run as a child once replication has started (Litestream `exec`,
   * the `--exec` flag's config form); walrust stops when it exits.
   */
  exec?: string;
  /**
   * Settings read but not used (a litestream.yml's keys walrust does not implement), one line
   * each, `<file>:<line>: <key>: <why>`. The caller logs them as warnings.
   */
  warnings?: string[];
}

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/** Built-in sync defaults. */
export const DEFAULT_SYNC: Readonly<SyncSettings> = Object.freeze({
  walSyncIntervalMs: 1000,
  snapshotIntervalMs: 3_600_000,
  checkpointIntervalMs: 60_000,
  minCheckpointPageCount: 1000,
  walTruncateThresholdPages: 121_359,
  maxSyncWalBytes: 64 * MIB,
  busyTimeoutMs: 5000,
  format: "legacy",
  l0RetentionMs: 300_000,
  onStartup: true,
  validationIntervalMs: 0,
});

/** Built-in maintenance defaults: Litestream v0.5's levels, retention applied hourly. */
export const DEFAULT_MAINTENANCE: Readonly<MaintenanceSettings> = Object.freeze({
  compactionLevelsMs: [30_000, 300_000, 3_600_000],
  retentionEnabled: true,
  pruneIntervalMs: 3_600_000,
});

/** Built-in retention defaults (GFS tiers plus a 24 h PITR window). */
export const DEFAULT_RETENTION: Readonly<RetentionSettings> = Object.freeze({
  hourly: 24,
  daily: 7,
  weekly: 12,
  monthly: 12,
  pitrWindowMs: 86_400_000,
});

/** Built-in retry defaults. */
export const DEFAULT_RETRY: Readonly<RetrySettings> = Object.freeze({
  maxRetries: 5,
  baseDelayMs: 100,
  maxDelayMs: 30_000,
  circuitBreakerEnabled: true,
  circuitBreakerThreshold: 10,
  circuitBreakerCooldownMs: 60_000,
});

/** Built-in cache defaults (no path: state lives beside each database). */
export const DEFAULT_CACHE: Readonly<CacheSettings> = Object.freeze({ maxSize: 5 * GIB });

/** Built-in metrics defaults: loopback only. */
export const DEFAULT_METRICS: Readonly<MetricsSettings> = Object.freeze({
  enabled: true,
  port: 16767,
  host: "127.0.0.1",
  process: false,
  maxLagMs: 60_000,
});

/** Built-in log defaults. */
export const DEFAULT_LOG: Readonly<LogSettings> = Object.freeze({ format: "text", level: "info" });

/** Global upload pool size. */
export const DEFAULT_UPLOAD_CONCURRENCY = 4;

/** Graceful-shutdown drain budget. */
export const DEFAULT_SHUTDOWN_DRAIN_MS = 10_000;

/** `base` overlaid with each layer in order; a key whose value is undefined leaves it unchanged. */
export function mergeDefined<T extends object>(base: Readonly<T>, ...layers: Partial<T>[]): T {
  const out = { ...base } as T;
  for (const layer of layers) {
    for (const key of Object.keys(layer) as (keyof T)[]) {
      const value = layer[key];
      if (value !== undefined) out[key] = value as T[keyof T];
    }
  }
  return out;
}

/** Complete sync settings: defaults, then each layer (e.g. [sync], [[databases]], flags). */
export function resolveSync(...layers: Partial<SyncSettings>[]): SyncSettings {
  return mergeDefined<SyncSettings>(DEFAULT_SYNC, ...layers);
}

/** Complete retention settings: defaults, then each layer. */
export function resolveRetention(
  ...layers: (Partial<RetentionSettings> | undefined)[]
): RetentionSettings {
  return mergeDefined<RetentionSettings>(DEFAULT_RETENTION, ...layers.map((l) => l ?? {}));
}

/** Complete maintenance settings: defaults, then each layer. */
export function resolveMaintenance(...layers: Partial<MaintenanceSettings>[]): MaintenanceSettings {
  const m = mergeDefined<MaintenanceSettings>(DEFAULT_MAINTENANCE, ...layers);
  return { ...m, compactionLevelsMs: [...m.compactionLevelsMs] };
}

/** Complete retry settings: defaults, then each layer. */
export function resolveRetry(...layers: Partial<RetrySettings>[]): RetrySettings {
  return mergeDefined<RetrySettings>(DEFAULT_RETRY, ...layers);
}

/** Complete cache settings: defaults, then each layer. */
export function resolveCache(...layers: Partial<CacheSettings>[]): CacheSettings {
  return mergeDefined<CacheSettings>(DEFAULT_CACHE, ...layers);
}

/** Complete metrics settings: defaults, then each layer. */
export function resolveMetrics(...layers: Partial<MetricsSettings>[]): MetricsSettings {
  return mergeDefined<MetricsSettings>(DEFAULT_METRICS, ...layers);
}

/** Complete log settings: defaults, then each layer. */
export function resolveLog(...layers: Partial<LogSettings>[]): LogSettings {
  return mergeDefined<LogSettings>(DEFAULT_LOG, ...layers);
}

/** A config with nothing set (used when there is no walrust.toml). */
export function emptyFileConfig(): FileConfig {
  return {
    allowEmptyGlobs: false,
    s3: {},
    sync: {},
    retention: {},
    maintenance: {},
    retry: {},
    cache: {},
    metrics: {},
    log: {},
    webhooks: [],
    replicas: [],
    databases: [],
  };
}
