/** Typed errors for walrust. Each error class carries the process exit code it maps to. */

/** Documented exit codes (0 ok, 1 general, 2 config, 3 database, 4 storage, 5 integrity, 6 restore). */
export const ExitCode = {
  Ok: 0,
  General: 1,
  Config: 2,
  Database: 3,
  Storage: 4,
  Integrity: 5,
  Restore: 6,
} as const;
/** One of the documented exit codes: a value of `ExitCode`. */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/** Base class: every walrust error has an exit code and a one-line message. */
export class WalrustError extends Error {
  /** The process exit code this error maps to; 1 (general) unless a subclass narrows it. */
  readonly exitCode: ExitCode = ExitCode.General;
  /** `message` is the one-line text for the user; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad config file, missing arguments, lock held by another watcher. Exit 2. */
export class ConfigError extends WalrustError {
  /** Always 2 (config). */
  override readonly exitCode: typeof ExitCode.Config = ExitCode.Config;
}

/** Database file missing, not in WAL mode, SQLite errors, WAL problems. Exit 3. */
export class DatabaseError extends WalrustError {
  /** Always 3 (database). */
  override readonly exitCode: typeof ExitCode.Database = ExitCode.Database;
}

/** Storage backend failures (network, auth, bucket, filesystem replica I/O). Exit 4. */
export class StorageError extends WalrustError {
  /** Always 4 (storage). */
  override readonly exitCode: typeof ExitCode.Storage = ExitCode.Storage;
  /** True when retrying the same operation may succeed (network, 5xx, throttling). */
  readonly transient: boolean;
  /** HTTP status or errno-like code when known. */
  readonly status?: number;
  /** `opts.transient` marks the failure retryable (default false); `opts.status` and `opts.cause` are kept. */
  constructor(
    message: string,
    opts: { transient?: boolean; status?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.transient = opts.transient ?? false;
    this.status = opts.status;
  }
}

/** Object not found in storage. Exit 4 when it escapes to the CLI. */
export class NotFoundError extends StorageError {}

/** Credentials rejected (401/403): never retried. */
export class AuthError extends StorageError {}

/** Checksum mismatch, corrupt LTX file, broken chain. Exit 5. */
export class IntegrityError extends WalrustError {
  /** Always 5 (integrity). */
  override readonly exitCode: typeof ExitCode.Integrity = ExitCode.Integrity;
}

/** LTX decoding problem. `kind` names the class of defect (matches the vectors' error classes). */
export type LtxErrorKind =
  | "header"
  | "truncated"
  | "checksum"
  | "page-data"
  | "page-header"
  | "page-order"
  | "page-range"
  | "snapshot-incomplete"
  | "trailing-data"
  | "index";

/** A malformed or corrupt LTX file. Exit 5. */
export class LtxError extends IntegrityError {
  /** The class of defect (header, checksum, page order, ...), as named in the vectors. */
  readonly kind: LtxErrorKind;
  /** `kind` classifies the defect; `message` describes it. */
  constructor(kind: LtxErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** Restore could not produce the requested state (no backup, gap, bad target). Exit 6. */
export class RestoreError extends WalrustError {
  /** Always 6 (restore). */
  override readonly exitCode: typeof ExitCode.Restore = ExitCode.Restore;
}

/** Map any thrown value to its exit code. */
export function exitCodeOf(err: unknown): ExitCode {
  return err instanceof WalrustError ? err.exitCode : ExitCode.General;
}
