/** `walrust verify`: prove a replica restores (the CI backup check). */
import { type CliContext, configOf, errorLine, note } from "./context.ts";
import { parseFlags, str } from "./args.ts";
import { REPLICA_OPTIONS, replicaFromFlags } from "./replica_flags.ts";
import { Progress } from "./progress.ts";
import { ConfigError } from "../errors.ts";
import { parseTxid } from "../restore/time.ts";
import { formatTXID } from "../ltx/names.ts";
import {
  type RestorablePoint,
  targetOf,
  type TargetOptions,
  verify,
  type VerifyReport,
} from "../api.ts";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  txid: { type: "string" },
  "point-in-time": { type: "string" },
  timestamp: { type: "string" }, // Litestream's spelling, as restore accepts it
  all: { type: "boolean" },
  "temp-dir": { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
} as const;

/** Run `walrust verify NAME`; exits 0 restorable, 5 integrity problem, 6 nothing restorable. */
export async function runVerify(args: string[], ctx: CliContext): Promise<number> {
  // A failure's JSON keeps the report's shape (ok, name, errors) next to error and exit_code.
  ctx.jsonFailure = { ok: false, name: null, errors: [] };
  const { flags, positionals } = parseFlags("verify", args, OPTIONS);
  if (positionals.length !== 1) {
    throw new ConfigError(
      "verify: expected one database NAME (its prefix in the replica, e.g. app.db)",
    );
  }
  const name = positionals[0];
  ctx.jsonFailure.name = name;
  const txid = str(flags, "txid");
  const target: TargetOptions = {
    txid: txid === undefined ? undefined : parseTxid(txid),
    at: str(flags, "point-in-time") ?? str(flags, "timestamp"),
  };
  targetOf(target); // a bad target is a usage error before anything is read
  let report: VerifyReport;
  try {
    const replica = await replicaFromFlags("verify", flags, ctx, await configOf(ctx));
    const progress = Progress.start(`verify ${name}`, { quiet: Boolean(flags.quiet) });
    try {
      report = await verify({
        bucket: replica,
        name,
        ...target,
        all: Boolean(flags.all),
        tempDir: str(flags, "temp-dir"),
        onProgress: progress && ((done, total) => progress.update(done, total)),
      });
    } finally {
      progress?.done();
    }
  } catch (e) {
    // A CI job parsing stdout still gets one object (printed by the dispatcher).
    const error = e instanceof Error ? e.message.split("\n")[0] : String(e);
    ctx.jsonFailure.errors = [{ key: null, error }];
    throw e;
  }
  for (const e of report.errors) errorLine(ctx, `${e.key ? `${e.key}: ` : ""}${e.error}`);
  if (flags.json) {
    if (report.fallback) note(ctx, report.fallback.note);
    ctx.out(JSON.stringify(toJson(report)));
  } else printText(report, ctx);
  return report.exitCode;
}

/** The report as the JSON object CI jobs parse (snake_case, times as RFC 3339, nulls for unknowns). */
function toJson(r: VerifyReport) {
  const hex = (t: number | undefined) => t === undefined ? null : formatTXID(t);
  return {
    ok: r.ok,
    exit_code: r.exitCode,
    ...(r.ok ? {} : { error: failure(r) }),
    name: r.name,
    replica: r.replica,
    restored: r.restored,
    txid: hex(r.txid),
    timestamp: r.timestamp?.toISOString() ?? null,
    files_checked: r.filesChecked,
    bytes: r.bytes,
    database_bytes: r.databaseBytes ?? null,
    restore_seconds: r.restoreMs / 1000,
    checksum_record: r.checksumRecord ?? null,
    window: {
      oldest_txid: hex(r.window.oldest?.txid),
      oldest_time: r.window.oldest?.time?.toISOString() ?? null,
      newest_txid: hex(r.window.newest?.txid),
      newest_time: r.window.newest?.time?.toISOString() ?? null,
    },
    fallback: r.fallback ? { restorable: r.fallback.restorable, note: r.fallback.note } : null,
    errors: r.errors.map((e) => ({ key: e.key ?? null, error: e.error })),
  };
}

/** The failure in one line, as the `error` field every failed --json output carries. */
function failure(r: VerifyReport): string {
  const first = r.errors[0];
  const what = r.exitCode === 5 ? "integrity check failed" : "not restorable";
  if (first === undefined) return what;
  const more = r.errors.length > 1 ? ` (+${r.errors.length - 1} more)` : "";
  return `${what}: ${first.key ? `${first.key}: ` : ""}${first.error}${more}`;
}

function printText(r: VerifyReport, ctx: CliContext): void {
  const what = r.target.kind === "latest"
    ? "latest"
    : r.target.kind === "txid"
    ? `TXID ${formatTXID(r.target.txid)}`
    : `the state at ${new Date(r.target.ms).toISOString()}`;
  const verdict = r.ok
    ? "OK"
    : r.exitCode === 5
    ? `FAILED: integrity (${r.errors.length} problem(s))`
    : "FAILED: not restorable";
  ctx.out(`verify ${r.name} (${what}) in ${r.replica}: ${verdict}`);
  if (r.restored) {
    const at = r.timestamp ? ` at ${r.timestamp.toISOString()}` : "";
    const sum = r.checksumRecord === "matched" ? ", recorded checksum matched" : "";
    ctx.out(
      `  restored TXID ${formatTXID(r.txid!)}${at} in ${(r.restoreMs / 1000).toFixed(2)} s ` +
        `(${r.databaseBytes} bytes, integrity ok${sum})`,
    );
  } else ctx.out(`  not restored`);
  ctx.out(`  files checked: ${r.filesChecked} (${r.bytes} bytes)`);
  const w = r.window;
  ctx.out(
    w.oldest || w.newest
      ? `  restorable window: ${point(w.oldest)} .. ${point(w.newest)}`
      : "  restorable window: none",
  );
  if (r.fallback) ctx.out(`  ${r.fallback.note}`);
}

function point(p: RestorablePoint | undefined): string {
  if (!p) return "?";
  return `TXID ${formatTXID(p.txid)}${p.time ? ` (${p.time.toISOString()})` : ""}`;
}
