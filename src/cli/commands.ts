/** The command table. Implementations are imported lazily so `--help` stays fast and light. */
import type { CliContext, Command } from "./context.ts";

/** Appended to every command's usage: the options any command takes. */
const GLOBAL_NOTE = `

Global options (before or after the command): -c/--config FILE, -v/--verbose,
--log-format text|json, --log-level error|warn|info|debug|trace.
Every long flag also takes Go's spellings, as Litestream does: -config FILE, -txid X,
-flag=value, -switch=false.`;

/** Appended to the usage of commands with --json. */
const JSON_NOTE = `
With --json a failure prints {"error": "...", "exit_code": N} on stdout; TXIDs in JSON are
16 lower-case hex digits, as in LTX file names.`;

const BUCKET_HELP =
  `  -b, --bucket URL        replica location: file:///abs/path, a plain path, or s3://bucket/prefix
      --endpoint URL      S3-compatible endpoint (env AWS_ENDPOINT_URL_S3)
      --region NAME       S3 region (env AWS_REGION)`;

const WATCH_OPTIONS = `${BUCKET_HELP}
      --wal-sync-interval S        batching window in seconds, fractions allowed (default 1)
      --snapshot-interval S        seconds between full snapshots (default 3600)
      --checkpoint-interval S      seconds between PASSIVE checkpoints (default 60)
      --min-checkpoint-pages N     PASSIVE checkpoint once the WAL holds N pages (default 1000)
      --wal-truncate-threshold N   TRUNCATE checkpoint past N WAL pages (default 121359, 0 = off)
      --format legacy|block        LTX page encoding (default legacy: readable by every Litestream v0.5)
      --no-startup-snapshot        do not take a level-9 snapshot at first start
      --once                       sync everything once, upload, and exit
      --force-snapshot             with --once: also take a snapshot of every database
      --enforce-retention          with --once: then apply [retention] to every replica
      --restore-if-db-not-exists   first restore each configured database file that is
                                   missing from its replica (none there: a first start)
      --shutdown-drain S           seconds to keep uploading after SIGINT/SIGTERM (default 10)
      --exec CMD                   once replication runs, run CMD (through sh -c) as a child;
                                   SIGTERM/SIGINT go to it; when it exits, sync, drain and exit
                                   with its exit code (config: exec)`;

/** First arguments that select the LTX file inspector rather than Litestream's `ltx DB`. */
const LTX_SUBCOMMANDS = new Set(["verify", "dump", "list", "apply", "help", "-h", "--help"]);

const TABLE: Command[] = [
  {
    name: "watch",
    config: true,
    summary: "replicate databases continuously (the main job)",
    usage: `Usage: walrust watch [DB...] [--bucket URL] [options]
       walrust watch DB_PATH REPLICA_URL [options]

Streams every committed transaction of each database into LTX files in the replica.
Databases come from the command line or from [[databases]] in walrust.toml (globs allowed).
With DB_PATH REPLICA_URL (s3://bucket/path/NAME), the URL's last segment is the name.

${WATCH_OPTIONS}`,
    run: async (a: string[], c: CliContext) => (await import("./watch.ts")).runWatch(a, c),
  },
  {
    name: "replicate",
    config: true,
    summary: "Litestream's name for watch (replicate -exec CMD runs your app as a child)",
    usage: `Usage: walrust replicate [options] [DB_PATH REPLICA_URL]
       walrust replicate SOURCE --local PATH [--interval 1s]

The same command as 'walrust watch', under Litestream's name: the container pattern is
  walrust restore -if-db-not-exists -if-replica-exists DB_PATH && exec walrust replicate -exec "APP"

With --local PATH it is walrust's read replica instead (Litestream's replicate has no such
form): PATH is a local copy of SOURCE (s3://bucket/prefix/DB, file:///path/DB, or NAME with
--bucket) that follows the replica, applying only what is new, one atomic batch at a time.
Apps open PATH read-only; it is a rollback-journal database walrust alone writes (a write by
anything else stops the follower, exit 5). See docs/replicas.md.
      --local PATH        the read replica's file (bootstrapped from the latest state)
      --interval D        how often to ask the replica for new files: 200ms, 1s, 5m (default 1s)
Without SOURCE, 'walrust replicate' follows every [[replicas]] entry of the config
(source, local, interval); /metrics and /health serve walrust_follower_* (--metrics-addr,
--no-metrics as for watch).

${WATCH_OPTIONS}`,
    run: async (a: string[], c: CliContext) => {
      const f = await import("./follow.ts");
      if (f.isFollowerForm(a) || (await f.configFollows(a, c))) return await f.runFollow(a, c);
      return (await import("./watch.ts")).runWatch(a, c, "replicate");
    },
  },
  {
    name: "restore",
    json: true,
    config: true,
    summary: "rebuild a database from the replica (latest, a TXID, or a moment)",
    usage:
      `Usage: walrust restore NAME -o OUT [--bucket URL] [--txid N | --point-in-time T] [--force]
       walrust restore [options] DB_PATH          (a database listed in the config)
       walrust restore [options] -o OUT REPLICA_URL  (s3://bucket/path/NAME, file:///path/NAME)

NAME is the database's prefix in the replica (by default its file name, e.g. app.db).
DB_PATH is a path listed in [[databases]] (or matched by a glob there): its name and the
config's replica are used, and OUT defaults to DB_PATH itself. In REPLICA_URL the last path
segment is the name and the rest the bucket.
${BUCKET_HELP}
  -o, --output OUT        where to write the restored database (must not exist unless --force)
      --txid N            restore exactly to TXID N (decimal, 0x-hex, or 16 hex digits)
      --point-in-time T   restore to the state at time T: RFC 3339 (2026-01-02T03:04:05Z) or
      --timestamp T       relative (-15m, -2h, -1d)
      --if-db-not-exists  exit 0 without doing anything when OUT already exists
      --if-replica-exists exit 0 when the replica holds no backup of the database at all
      --parallelism N     accepted for Litestream; no effect
      --integrity-check M accepted for Litestream (none, quick, full); the full check always runs
      --force             replace an existing OUT (never a database a running walrust
                          replicates, nor a path inside a file replica)
      --no-checksum-record
                          restore even when the result disagrees with the database checksum
                          walrust recorded with the last file (the LTX files still verify)
      --dry-run           print the plan and exit
  -f, --follow            Litestream's follow mode: restore the latest state into OUT, then
                          keep applying what is new until SIGINT/SIGTERM (walrust's read
                          replica: OUT is for readers only; see 'walrust help replicate')
      --follow-interval D how often to look for new files in follow mode (default 1s)
  -q, --quiet             no progress line (shown only when stderr is a terminal)
      --generation ID     a Litestream v0.3 backup: restore from this generation (16 hex)
      --index N           a Litestream v0.3 backup: restore to the end of this WAL index
      --json              print one JSON object: db_path, name, txid, files, bytes,
                          restore_seconds, integrity_check (with --dry-run: txid, files)`,
    run: async (a: string[], c: CliContext) => (await import("./restore.ts")).runRestore(a, c),
  },
  {
    name: "config",
    summary: "convert a litestream.yml into the equivalent walrust.toml",
    usage: `Usage: walrust config convert FILE

Prints the walrust.toml equivalent of a Litestream litestream.yml on stdout, with a comment on
every line that does not map. The output is loaded back before it is printed.`,
    run: async (a: string[], c: CliContext) => (await import("./config_cmd.ts")).runConfig(a, c),
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
  -q, --quiet             no progress line (shown only when stderr is a terminal, and
                          only when this command writes the snapshot itself)
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
  -q, --quiet             no progress line (shown only when stderr is a terminal)
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
    summary: "a database's LTX files in the replica (Litestream's ltx); inspect LTX files",
    usage: `Usage: walrust ltx [--level 0-9|all] [--json] DB_PATH|REPLICA_URL|NAME
       walrust ltx verify FILE... [--json]
       walrust ltx dump FILE [--json]
       walrust ltx list FILE... [--json]
       walrust ltx apply --db OUT FILE... [--force]

With a database (as Litestream's ltx): its LTX files at one level (default 0) or all, as
level, min_txid, max_txid, size, created. DB_PATH, REPLICA_URL and NAME as for restore.
With verify, dump, list or apply: inspect local LTX files (a database path that is one of
these words needs ./ in front).
${BUCKET_HELP}`,
    run: async (a: string[], c: CliContext) => {
      if (a.length === 0 || LTX_SUBCOMMANDS.has(a[0])) {
        const io = { out: c.out, err: c.err, verbose: c.verbose };
        return (await import("./ltx.ts")).runLtxCommand(a, io);
      }
      return (await import("./list.ts")).runLtxFiles(a, c);
    },
  },
  {
    name: "databases",
    json: true,
    config: true,
    summary: "the databases the config lists, with their replica (Litestream's databases)",
    usage: `Usage: walrust databases [--bucket URL] [--json]

One row per database in [[databases]] (globs expanded; one that matches nothing is shown as
its pattern): path, replica type (file or s3), its name in the replica, and the replica URL
that restore and ltx accept. Reads no storage.
      --bucket URL        the replica to show (default: [s3] bucket)
      --json              machine-readable output: [{path, replica, name, url}]`,
    run: async (a: string[], c: CliContext) => (await import("./list.ts")).runDatabases(a, c),
  },
  {
    name: "version",
    summary: "print the version (Litestream's version; same as --version)",
    usage: `Usage: walrust version [-v]

Prints "walrust X.Y.Z"; with -v (or -verbose) also the Deno, V8 and TypeScript versions.`,
    run: async (a: string[], c: CliContext) => {
      const { VERSION } = await import("../version.ts");
      const { positionals } = (await import("./args.ts")).parseFlags("version", a, {});
      if (positionals.length > 0) {
        const { ConfigError } = await import("../errors.ts");
        throw new ConfigError("version: takes no arguments");
      }
      c.out(`walrust ${VERSION}`);
      if (c.verbose) {
        c.out(
          `deno ${Deno.version.deno}, v8 ${Deno.version.v8}, typescript ${Deno.version.typescript}`,
        );
      }
      return 0;
    },
  },
];

/** Litestream commands walrust does not have, with what to use instead. */
export const LITESTREAM_ONLY: Readonly<Record<string, string>> = {
  status: "use 'walrust list' for the replica, or the /health endpoint of a running watch",
  reset: "'walrust snapshot DB' writes a fresh snapshot",
  sync: "'walrust snapshot DB' forces a snapshot through the running watcher",
  start: "walrust has no control socket; replicate the databases of the config or the command line",
  stop: "walrust has no control socket; stop the walrust process (SIGTERM drains first)",
  register: "walrust has no control socket; add the database to [[databases]] and restart",
  unregister: "walrust has no control socket; remove the database from [[databases]] and restart",
  info: "walrust has no control socket; see the /health endpoint of a running watch",
  mcp: "walrust has no MCP server",
  wal: "use 'walrust ltx DB_PATH' (Litestream's ltx)",
};

/** Every command, its usage ending with the global options (and the --json contract). */
export const COMMANDS: Command[] = TABLE.map((c) => ({
  ...c,
  usage: c.usage + GLOBAL_NOTE + (c.json ? JSON_NOTE : ""),
}));
