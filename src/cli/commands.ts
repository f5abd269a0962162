/** The command table. Implementations are imported lazily so `--help` stays fast and light. */
import type { CliContext, Command } from "./context.ts";

/** Appended to every command's usage: the options any command takes. */
const GLOBAL_NOTE = `

Global options (before or after the command): -c/--config FILE, -v/--verbose,
--log-format text|json, --log-level error|warn|info|debug|trace.`;

/** Appended to the usage of commands with --json. */
const JSON_NOTE = `
With --json a failure prints {"error": "...", "exit_code": N} on stdout; TXIDs in JSON are
16 lower-case hex digits, as in LTX file names.`;

const BUCKET_HELP =
  `  -b, --bucket URL        replica location: file:///abs/path, a plain path, or s3://bucket/prefix
      --endpoint URL      S3-compatible endpoint (env AWS_ENDPOINT_URL_S3)
      --region NAME       S3 region (env AWS_REGION)`;

const TABLE: Command[] = [
  {
    name: "watch",
    config: true,
    summary: "replicate databases continuously (the main job)",
    usage: `Usage: walrust watch [DB...] [--bucket URL] [options]

Streams every committed transaction of each database into LTX files in the replica.
Databases come from the command line or from [[databases]] in walrust.toml (globs allowed).

${BUCKET_HELP}
      --wal-sync-interval S        batching window in seconds, fractions allowed (default 1)
      --snapshot-interval S        seconds between full snapshots (default 3600)
      --checkpoint-interval S      seconds between PASSIVE checkpoints (default 60)
      --min-checkpoint-pages N     PASSIVE checkpoint once the WAL holds N pages (default 1000)
      --wal-truncate-threshold N   TRUNCATE checkpoint past N WAL pages (default 121359, 0 = off)
      --format legacy|block        LTX page encoding (default legacy: readable by every Litestream v0.5)
      --no-startup-snapshot        do not take a level-9 snapshot at first start
      --once                       sync everything once, upload, and exit
      --shutdown-drain S           seconds to keep uploading after SIGINT/SIGTERM (default 10)`,
    run: async (a: string[], c: CliContext) => (await import("./watch.ts")).runWatch(a, c),
  },
  {
    name: "restore",
    json: true,
    config: true,
    summary: "rebuild a database from the replica (latest, a TXID, or a moment)",
    usage:
      `Usage: walrust restore NAME -o OUT [--bucket URL] [--txid N | --point-in-time T] [--force]

NAME is the database's prefix in the replica (by default its file name, e.g. app.db).
${BUCKET_HELP}
  -o, --output OUT        where to write the restored database (must not exist unless --force)
      --txid N            restore exactly to TXID N (decimal, 0x-hex, or 16 hex digits)
      --point-in-time T   restore to the state at time T: RFC 3339 (2026-01-02T03:04:05Z) or
                          relative (-15m, -2h, -1d)
      --force             replace an existing OUT (never a database a running walrust
                          replicates, nor a path inside a file replica)
      --no-checksum-record
                          restore even when the result disagrees with the database checksum
                          walrust recorded with the last file (the LTX files still verify)
      --dry-run           print the plan and exit
  -q, --quiet             no progress line (shown only when stderr is a terminal)
      --json              print one JSON object: db_path, name, txid, files, bytes,
                          restore_seconds, integrity_check (with --dry-run: txid, files)`,
    run: async (a: string[], c: CliContext) => (await import("./restore.ts")).runRestore(a, c),
  },
  {
    name: "explain",
    json: true,
    config: true,
    summary: "show each database's resolved settings, its schedule, and a monthly estimate",
    usage: `Usage: walrust explain [DB...] [--bucket URL] [--json]

The configuration each database gets after globs, defaults and overrides; what happens when
(sync, checkpoint, snapshot, compaction, retention, validation); and a monthly storage and
request estimate from the database's size and the write rate its replica shows over the last
hour (with --bucket or [s3] bucket; without one the write rate is unknown).
${BUCKET_HELP}
      --json              machine-readable output`,
    run: async (a: string[], c: CliContext) => (await import("./explain.ts")).runExplain(a, c),
  },
  {
    name: "list",
    json: true,
    config: true,
    summary: "list databases in a replica, or one database's files",
    usage: `Usage: walrust list [NAME] [--bucket URL] [--json]

Without NAME: every database under the bucket with its latest TXID, snapshot count,
L0..L3 file counts, oldest and newest restorable time and total bytes.
With NAME: that database's files per level (exit 6 when NAME has no backup there).
A bucket that does not exist is an error (exit 4), not an empty list.
${BUCKET_HELP}
      --json              machine-readable output`,
    run: async (a: string[], c: CliContext) => (await import("./list.ts")).runList(a, c),
  },
  {
    name: "snapshot",
    json: true,
    config: true,
    summary: "take a level-9 snapshot of a database now",
    usage: `Usage: walrust snapshot DB [--bucket URL] [--json]

Writes a full snapshot of DB to the replica and returns once it is uploaded, printing its
TXID. When a watcher is running on DB, it asks that watcher (a --bucket other than the
watcher's replica is refused); otherwise it syncs DB once and snapshots.
${BUCKET_HELP}
      --prefix NAME       the database's name in the replica (default: its file name)
      --timeout S         seconds to wait for the upload (default 120)
      --json              print {"db_path", "txid", "via_watcher"}`,
    run: async (a: string[], c: CliContext) => (await import("./snapshot.ts")).runSnapshot(a, c),
  },
  {
    name: "prune",
    json: true,
    config: true,
    summary: "apply [retention] to a database's replica (a dry run unless --force)",
    usage: `Usage: walrust prune NAME [--bucket URL] [--force] [--json]

Keeps every transaction inside the PITR window ([retention] pitr_window, default 24h)
restorable, and beyond it one snapshot per hour/day/ISO week/month for the newest
hourly/daily/weekly/monthly buckets (24/7/12/12); the newest snapshot is always kept.
Prints what would be deleted, the bytes freed and the earliest restorable point.
${BUCKET_HELP}
      --force             delete (without it nothing is deleted)
      --json              print one JSON object`,
    run: async (a: string[], c: CliContext) => (await import("./prune.ts")).runPrune(a, c),
  },
  {
    name: "verify",
    json: true,
    config: true,
    summary: "prove a replica restores: decode its files, restore to a temp folder, check",
    usage:
      `Usage: walrust verify NAME [--bucket URL] [--txid N | --point-in-time T] [--all] [--json]

The backup check for CI: plans the restore of NAME (latest by default), decodes every file
the plan needs (CRCs, headers, TXID continuity, snapshot completeness), restores it into a
temporary folder (removed afterwards), runs PRAGMA integrity_check and compares the database
checksum walrust recorded. Prints the files checked, the TXID restored and its time, the
restore time and the restorable window (oldest snapshot .. newest state).
Unlike restore, a corrupt file is never planned around silently: it fails the check (exit 5),
and verify says whether the target still restores without it ("restorable without it from").
Exit codes: 0 restorable; 5 any integrity problem (corrupt file, gap in the chain, failed
check), even when another plan restores; 6 nothing restorable at the target; 4 storage.
${BUCKET_HELP}
      --txid N            verify the state at exactly TXID N
      --point-in-time T   verify the state at time T (RFC 3339 or relative: -15m, -2h)
      --all               also decode every other LTX file of NAME, reporting each failure
      --temp-dir DIR      where the temporary restore folder goes (default: TMPDIR)
  -q, --quiet             no progress line (shown only when stderr is a terminal)
      --json              print one JSON object: ok, name, txid, timestamp, files_checked,
                          bytes, restore_seconds, window, errors [{key, error}], ...`,
    run: async (a: string[], c: CliContext) => (await import("./verify.ts")).runVerify(a, c),
  },
  {
    name: "ltx",
    json: true,
    summary: "inspect LTX files: verify, dump, list, apply",
    usage: `Usage: walrust ltx verify FILE... [--json]
       walrust ltx dump FILE [--json]
       walrust ltx list FILE... [--json]
       walrust ltx apply --db OUT FILE... [--force]`,
    run: async (a: string[], c: CliContext) =>
      (await import("./ltx.ts")).runLtxCommand(a, { out: c.out, err: c.err, verbose: c.verbose }),
  },
];

/** Every command, its usage ending with the global options (and the --json contract). */
export const COMMANDS: Command[] = TABLE.map((c) => ({
  ...c,
  usage: c.usage + GLOBAL_NOTE + (c.json ? JSON_NOTE : ""),
}));
