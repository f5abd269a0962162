/**
 * `walrust ltx verify|dump|list|apply`: inspect LTX files and apply a chain to a new database.
 * (`walrust ltx DB`, Litestream's listing of a database's files, is `runLtxFiles` in list.ts.)
 */

import { ConfigError, exitCodeOf, WalrustError } from "../errors.ts";
import { applyLtxChain } from "../ltx/apply.ts";
import {
  LtxDecoder,
  type LtxFrame,
  type LtxSummary,
  readLtxFile,
  verifyLtx,
} from "../ltx/decoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, type LtxHeader } from "../ltx/header.ts";
import { formatHex64 } from "../ltx/names.ts";
import { type Flags, parseFlags } from "./args.ts";
import { errorLine } from "./context.ts";
import { log } from "../observe/log.ts";

/** Output channels and options the dispatcher passes in. */
export interface LtxIo {
  out: (s: string) => void;
  err: (s: string) => void;
  verbose: boolean;
}

const USAGE = `Usage: walrust ltx [--level 0-9|all] [--json] DB_PATH|REPLICA_URL|NAME
       walrust ltx verify FILE... [--json]
       walrust ltx dump FILE [--json]
       walrust ltx list FILE... [--json]
       walrust ltx apply --db OUT FILE... [--force]

  DB       (Litestream's ltx) the database's LTX files in the replica: level, min_txid,
           max_txid, size, created; --level picks one level (default 0) or all
  verify   decode and check every file completely; prints "ok" when all are valid,
           otherwise one "FILE: problem" line per bad file (exit 5); --json prints an
           array, one object per file: {file, ok, minTXID, maxTXID, pages, encoding, size}
           or {file, ok: false, error, exit_code}
  dump     print the header, every page frame, the page index and the trailer
  list     one row per file: TXID range, commit, page size, pages, time, size
  apply    apply FILE... in order (a snapshot first) to a new database OUT;
           --force replaces an existing OUT

      --json     machine-readable output (64-bit values as 16 hex digits)`;

/** Run `walrust ltx <subcommand> ...`; returns the exit code (ConfigError for bad usage). */
export async function runLtxCommand(args: string[], io: LtxIo): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case undefined:
      throw new ConfigError(
        "ltx: expected a database (DB_PATH, replica URL or NAME) or a subcommand: verify, dump, " +
          "list, apply (see 'walrust help ltx')",
      );
    case "help":
    case "--help":
    case "-h":
      io.out(USAGE);
      return 0;
    case "verify":
      return await verifyCmd(rest, io);
    case "dump":
      return await dumpCmd(rest, io);
    case "list":
      return await listCmd(rest, io);
    case "apply":
      return await applyCmd(rest, io);
    default:
      throw new ConfigError(`ltx: unknown subcommand "${sub}" (see 'walrust help ltx')`);
  }
}

function parse(sub: string, args: string[], options: Parameters<typeof parseFlags>[2]) {
  const r = parseFlags(`ltx ${sub}`, args, options);
  return r as { flags: Flags; positionals: string[] };
}

function needFiles(sub: string, files: string[]): void {
  if (files.length === 0) {
    throw new ConfigError(`ltx ${sub}: no FILE given (see 'walrust help ltx')`);
  }
}

/** One line naming the file, for a failure while reading it. */
function problem(path: string, e: unknown): string {
  if (e instanceof WalrustError) {
    return e.message.startsWith(`${path}: `) ? e.message : `${path}: ${e.message}`;
  }
  const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
  return `${path}: ${msg}`;
}

async function verifyCmd(args: string[], io: LtxIo): Promise<number> {
  const { flags, positionals: files } = parse("verify", args, { json: { type: "boolean" } });
  needFiles("verify", files);
  if (flags.json === true) return await verifyJson(files, io);
  let code = 0;
  for (const path of files) {
    try {
      const s = await verifyLtx(readLtxFile(path), { name: path });
      if (io.verbose) {
        io.out(
          `${path}: ok (${s.pages.length} pages, TXID ${formatHex64(s.header.minTXID)}-` +
            `${formatHex64(s.header.maxTXID)}, ${s.encoding}, ${s.size} bytes)`,
        );
      }
    } catch (e) {
      io.out(problem(path, e));
      code = Math.max(code, exitCodeOf(e));
    }
  }
  if (code === 0) io.out("ok");
  return code;
}

/** `ltx verify --json`: one array, an object per file; the exit code is the worst file's. */
async function verifyJson(files: string[], io: LtxIo): Promise<number> {
  const rows: Record<string, unknown>[] = [];
  let code = 0;
  for (const path of files) {
    try {
      const s = await verifyLtx(readLtxFile(path), { name: path });
      rows.push({
        file: path,
        ok: true,
        minTXID: formatHex64(s.header.minTXID),
        maxTXID: formatHex64(s.header.maxTXID),
        pages: s.pages.length,
        encoding: s.encoding,
        size: s.size,
      });
    } catch (e) {
      const exit = exitCodeOf(e);
      rows.push({ file: path, ok: false, error: problem(path, e), exit_code: exit });
      code = Math.max(code, exit);
    }
  }
  io.out(JSON.stringify(rows));
  return code;
}

function headerJson(h: LtxHeader) {
  return {
    flags: h.flags,
    pageSize: h.pageSize,
    commit: h.commit,
    minTXID: formatHex64(h.minTXID),
    maxTXID: formatHex64(h.maxTXID),
    timestamp: formatHex64(h.timestamp),
    timestampMs: h.timestamp,
    timestampISO: isoTime(h.timestamp),
    preApplyChecksum: formatHex64(h.preApplyChecksum),
    walOffset: formatHex64(h.walOffset),
    walSize: formatHex64(h.walSize),
    walSalt1: h.walSalt1.toString(16).padStart(8, "0"),
    walSalt2: h.walSalt2.toString(16).padStart(8, "0"),
    nodeID: formatHex64(h.nodeID),
  };
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `(${ms} ms)` : d.toISOString();
}

function frameJson(f: LtxFrame) {
  const o: Record<string, unknown> = {
    pgno: f.pgno,
    flags: f.flags,
    offset: f.offset,
    frameSize: f.frameSize,
    compressedSize: f.compressedSize,
  };
  if (f.lz4Frame) {
    const l = f.lz4Frame;
    o.lz4Frame = {
      flg: "0x" + l.flg.toString(16).padStart(2, "0"),
      bd: "0x" + l.bd.toString(16).padStart(2, "0"),
      contentChecksum: l.contentChecksum,
      blockChecksum: l.blockChecksum,
      contentSize: l.contentSize,
      blocks: l.blocks,
    };
  }
  return o;
}

async function dumpCmd(args: string[], io: LtxIo): Promise<number> {
  const { flags, positionals } = parse("dump", args, { json: { type: "boolean" } });
  needFiles("dump", positionals);
  if (positionals.length > 1) {
    throw new ConfigError("ltx dump: takes one FILE (see 'walrust help ltx')");
  }
  const path = positionals[0];
  const json = flags.json === true;
  const dec = await LtxDecoder.open(readLtxFile(path), { name: path });
  const h = dec.header;
  const frames: ReturnType<typeof frameJson>[] = [];
  if (!json) {
    const hj = headerJson(h);
    const noChk = (h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0 ? " (NoChecksum)" : "";
    io.out(`file: ${path}`);
    io.out("header:");
    io.out(`  flags             0x${h.flags.toString(16).padStart(8, "0")}${noChk}`);
    io.out(`  pageSize          ${h.pageSize}`);
    io.out(`  commit            ${h.commit}`);
    io.out(`  minTXID           ${hj.minTXID}`);
    io.out(`  maxTXID           ${hj.maxTXID}`);
    io.out(`  timestamp         ${hj.timestampISO} (${h.timestamp})`);
    io.out(`  preApplyChecksum  ${hj.preApplyChecksum}`);
    io.out(`  walOffset         ${h.walOffset}`);
    io.out(`  walSize           ${h.walSize}`);
    io.out(`  walSalt1          ${hj.walSalt1}`);
    io.out(`  walSalt2          ${hj.walSalt2}`);
    io.out(`  nodeID            ${hj.nodeID}`);
    io.out("pages:");
    io.out(
      `  ${"pgno".padStart(10)} ${"flags".padEnd(6)} ${"offset".padStart(12)} ` +
        `${"frameSize".padStart(9)} ${"compressed".padStart(10)}`,
    );
  }
  for await (const f of dec.pages()) {
    if (json) {
      frames.push(frameJson(f));
    } else {
      io.out(
        `  ${String(f.pgno).padStart(10)} 0x${f.flags.toString(16).padStart(4, "0")} ` +
          `${String(f.offset).padStart(12)} ${String(f.frameSize).padStart(9)} ` +
          `${String(f.compressedSize).padStart(10)}${f.lz4Frame ? "  lz4 frame" : ""}`,
      );
    }
  }
  const { trailer, index, size } = await dec.finish();
  if (json) {
    io.out(JSON.stringify(
      {
        file: path,
        size,
        encoding: dec.encoding,
        header: headerJson(h),
        pages: frames,
        index,
        trailer: {
          postApplyChecksum: formatHex64(trailer.postApplyChecksum),
          fileChecksum: formatHex64(trailer.fileChecksum),
        },
      },
      null,
      2,
    ));
  } else {
    io.out(`index: ${index.length} entries, matching the frames`);
    io.out("trailer:");
    io.out(`  postApplyChecksum ${formatHex64(trailer.postApplyChecksum)}`);
    io.out(`  fileChecksum      ${formatHex64(trailer.fileChecksum)}`);
    io.out(`size: ${size} bytes, encoding: ${dec.encoding}`);
  }
  return 0;
}

interface ListRow {
  file: string;
  minTXID: string;
  maxTXID: string;
  commit: number;
  pageSize: number;
  pages: number;
  timestamp: string;
  size: number;
}

function listRow(path: string, s: LtxSummary): ListRow {
  return {
    file: path,
    minTXID: formatHex64(s.header.minTXID),
    maxTXID: formatHex64(s.header.maxTXID),
    commit: s.header.commit,
    pageSize: s.header.pageSize,
    pages: s.pages.length,
    timestamp: isoTime(s.header.timestamp),
    size: s.size,
  };
}

async function listCmd(args: string[], io: LtxIo): Promise<number> {
  const { flags, positionals: files } = parse("list", args, { json: { type: "boolean" } });
  needFiles("list", files);
  const rows: ListRow[] = [];
  let code = 0;
  for (const path of files) {
    try {
      rows.push(listRow(path, await verifyLtx(readLtxFile(path), { name: path })));
    } catch (e) {
      // Text keeps the "FILE: problem" line; JSON logs get a parseable line.
      if (log.format === "json") errorLine(io, problem(path, e), { exit_code: exitCodeOf(e) });
      else io.err(problem(path, e));
      code = Math.max(code, exitCodeOf(e));
    }
  }
  if (flags.json === true) {
    io.out(JSON.stringify(rows, null, 2));
    return code;
  }
  const head = [
    "FILE",
    "MIN_TXID",
    "MAX_TXID",
    "COMMIT",
    "PAGE_SIZE",
    "PAGES",
    "TIMESTAMP",
    "SIZE",
  ];
  const table = [
    head,
    ...rows.map((r) => [
      r.file,
      r.minTXID,
      r.maxTXID,
      String(r.commit),
      String(r.pageSize),
      String(r.pages),
      r.timestamp,
      String(r.size),
    ]),
  ];
  const widths = head.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) {
    io.out(row.map((c, i) => i === row.length - 1 ? c : c.padEnd(widths[i])).join("  "));
  }
  return code;
}

async function applyCmd(args: string[], io: LtxIo): Promise<number> {
  const { flags, positionals: files } = parse("apply", args, {
    db: { type: "string" },
    force: { type: "boolean" },
  });
  const out = typeof flags.db === "string" ? flags.db : undefined;
  if (!out) throw new ConfigError("ltx apply: --db OUT is required (see 'walrust help ltx')");
  needFiles("apply", files);
  const r = await applyLtxChain(files, out, { force: flags.force === true });
  io.out(
    `${out}: applied ${files.length} file(s) up to TXID ${formatHex64(r.txid)}: ` +
      `${r.commit} pages of ${r.pageSize} bytes`,
  );
  return 0;
}
