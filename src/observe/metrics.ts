/**
 * The metrics and health server of `watch`: `/metrics` in the Prometheus text format (through
 * prom-client, imported only when the server starts) and `/health` as JSON (health.ts). Values
 * are read from the replication when scraped, so an idle process does no metrics work; only
 * the sync and checkpoint durations are observed as they happen (histograms). Litestream's core
 * metric names are served too, with its `db` label (the database path), so existing dashboards
 * keep working.
 */
import type { Logger } from "./log.ts";
import { type DatabaseView, healthOf, type StorageView } from "./health.ts";

/** What the server reads of one database (the API's DatabaseStatus has these fields). */
export interface DatabaseMetricsView extends DatabaseView {
  path: string;
  pendingBytes: number;
  dbBytes: number;
  walBytes: number;
  nextSnapshotAt?: Date;
  stats: {
    syncs: number;
    syncErrors: number;
    syncSeconds: number;
    walBytes: number;
    uploadErrors: number;
    snapshotsWritten: number;
    validations: number;
    validationFailures: number;
    checkpointsByMode: Record<string, number>;
    checkpointSeconds: Record<string, number>;
    compactionsByLevel: Record<number, number>;
  };
}

/** What the server reads of the storage. */
export interface StorageMetricsView extends StorageView {
  url: string;
  stats: StorageView["stats"] & {
    requests: Record<string, number>;
    retries: Record<string, number>;
    failures: Record<string, number>;
  };
}

/** A running replication as the server sees it. */
export interface MetricsSource {
  status(): DatabaseMetricsView[];
  storage(): StorageMetricsView;
  /** Subscribe to sync durations; returns the unsubscribe function. */
  onSync(fn: (e: { database: string; seconds: number }) => void): () => void;
  /** Subscribe to checkpoint durations; returns the unsubscribe function. */
  onCheckpoint(fn: (e: { database: string; mode: string; seconds: number }) => void): () => void;
}

/** Where and what to serve. */
export interface MetricsOptions {
  host: string;
  port: number;
  /** Also serve prom-client's process and Node.js collectors (CPU, memory, event loop). */
  processMetrics: boolean;
  /** Lag past which /health is unhealthy (ms). */
  maxLagMs: number;
  version: string;
  log: Logger;
}

/** A running server. */
export interface MetricsServer {
  /** Base URL, e.g. http://127.0.0.1:16767. */
  readonly url: string;
  /** Stop serving. */
  close(): Promise<void>;
}

const BREAKER = { closed: 0, "half-open": 1, open: 2 } as Record<string, number>;
const HOUR_MS = 3_600_000;

/**
 * Serve /metrics and /health for `src`. A port already in use is one WARN and no server
 * (undefined): replication goes on without it.
 */
export async function serveMetrics(
  src: MetricsSource,
  o: MetricsOptions,
): Promise<MetricsServer | undefined> {
  const prom = (await import("prom-client")).default;
  const reg = new prom.Registry();
  // Uptime counts from the process start, not the server's.
  const startedAt = Math.round(performance.timeOrigin);
  if (o.processMetrics) prom.collectDefaultMetrics({ register: reg });
  const errors = new ErrorWindow();
  errors.sample(Date.now(), src.status()); // the baseline: errors since the start count
  defineMetrics(prom, reg, src, startedAt, o.version);

  const unsubscribe: (() => void)[] = [];
  const syncHist = new prom.Histogram({
    name: "walrust_sync_latency_seconds",
    help: "Duration of syncs that copied new WAL frames",
    labelNames: ["database"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [reg],
  });
  const ckptHist = new prom.Histogram({
    name: "walrust_checkpoint_duration_seconds",
    help: "Duration of walrust's checkpoints",
    labelNames: ["database", "mode"],
    buckets: [0.001, 0.01, 0.1, 1, 10],
    registers: [reg],
  });
  unsubscribe.push(src.onSync((e) => syncHist.observe({ database: e.database }, e.seconds)));
  unsubscribe.push(
    src.onCheckpoint((e) => ckptHist.observe({ database: e.database, mode: e.mode }, e.seconds)),
  );

  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(await reg.metrics(), { headers: { "content-type": reg.contentType } });
    }
    if (path === "/health") {
      const dbs = src.status();
      const now = Date.now();
      errors.sample(now, dbs);
      const report = healthOf(dbs, src.storage(), {
        now,
        startedAt,
        maxLagMs: o.maxLagMs,
        errorsLastHour: (name) => errors.lastHour(name, now, dbs),
      });
      return Response.json(report, { status: report.status === "unhealthy" ? 503 : 200 });
    }
    return new Response("not found: try /metrics or /health\n", { status: 404 });
  };

  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname: o.host, port: o.port, onListen: () => {} }, handler);
  } catch (e) {
    for (const u of unsubscribe) u();
    if (!(e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.PermissionDenied)) throw e;
    o.log.warn("metrics server not started; replication goes on without it", {
      addr: `${o.host}:${o.port}`,
      error: e.message,
    });
    return undefined;
  }
  const timer = setInterval(() => errors.sample(Date.now(), src.status()), 60_000);
  Deno.unrefTimer(timer);
  const addr = server.addr as Deno.NetAddr;
  const url = `http://${
    addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname
  }:${addr.port}`;
  o.log.info("serving metrics and health", { url: `${url}/metrics`, health: `${url}/health` });
  return {
    url,
    async close() {
      clearInterval(timer);
      for (const u of unsubscribe) u();
      await server.shutdown();
    },
  };
}

/** Sync and upload errors per database over the last hour, from samples of the totals. */
class ErrorWindow {
  #samples: { at: number; totals: Map<string, number> }[] = [];

  sample(now: number, dbs: readonly DatabaseMetricsView[]): void {
    const last = this.#samples.at(-1);
    if (last && now - last.at < 60_000) return;
    this.#samples.push({ at: now, totals: new Map(dbs.map((d) => [d.name, total(d)])) });
    while (this.#samples.length > 1 && now - this.#samples[1].at >= HOUR_MS) this.#samples.shift();
  }

  lastHour(name: string, now: number, dbs: readonly DatabaseMetricsView[]): number {
    const d = dbs.find((x) => x.name === name);
    if (!d) return 0;
    const base = this.#samples.find((s) => now - s.at <= HOUR_MS) ?? this.#samples[0];
    return total(d) - (base?.totals.get(name) ?? 0);
  }
}

function total(d: DatabaseMetricsView): number {
  return d.stats.syncErrors + d.stats.uploadErrors;
}

type Prom = typeof import("prom-client");
type Labels = Record<string, string | number>;
type Sample = [Labels, number];

/** Every gauge and counter, filled from `src` at each scrape. */
function defineMetrics(
  prom: Prom,
  reg: InstanceType<Prom["Registry"]>,
  src: MetricsSource,
  startedAt: number,
  version: string,
): void {
  const gauge = (name: string, help: string, labels: string[], read: () => Sample[]) =>
    new prom.Gauge({
      name,
      help,
      labelNames: labels,
      registers: [reg],
      collect() {
        this.reset();
        for (const [l, v] of read()) this.set(l, v);
      },
    });
  const counter = (name: string, help: string, labels: string[], read: () => Sample[]) =>
    new prom.Counter({
      name,
      help,
      labelNames: labels,
      registers: [reg],
      collect() {
        this.reset();
        for (const [l, v] of read()) this.inc(l, v);
      },
    });
  const perDb = (f: (d: DatabaseMetricsView) => number | undefined): () => Sample[] => () =>
    src.status().flatMap((d) => {
      const v = f(d);
      return v === undefined ? [] : [[{ database: d.name }, v] as Sample];
    });
  const perDbKeyed = (
    key: string,
    f: (d: DatabaseMetricsView) => Record<string, number>,
    labelOf: "database" | "db" = "database",
  ) =>
  () =>
    src.status().flatMap((d) =>
      Object.entries(f(d)).map(([k, v]) =>
        [{ [labelOf]: labelOf === "db" ? d.path : d.name, [key]: k }, v] as Sample
      )
    );
  const perOp = (f: (s: StorageMetricsView) => Record<string, number>) => () =>
    Object.entries(f(src.storage())).map(([op, v]) => [{ operation: op }, v] as Sample);
  const secs = (d?: Date | number) =>
    d === undefined ? undefined : (typeof d === "number" ? d : d.getTime()) / 1000;
  const D = ["database"];

  gauge(
    "walrust_last_sync_timestamp",
    "Unix time of the last sync",
    D,
    perDb((d) => secs(d.lastSyncAt)),
  );
  gauge("walrust_wal_size_bytes", "Size of the -wal file", D, perDb((d) => d.walBytes));
  gauge("walrust_db_size_bytes", "Size of the database file", D, perDb((d) => d.dbBytes));
  gauge("walrust_current_txid", "TXID of the newest local level-0 file", D, perDb((d) => d.txid));
  gauge(
    "walrust_replica_txid",
    "Highest TXID confirmed in the replica",
    D,
    perDb((d) => d.replicaTXID),
  );
  gauge(
    "walrust_replication_lag_seconds",
    "Age of the oldest change not in the replica yet (0 when caught up)",
    D,
    perDb((d) => d.lagSeconds),
  );
  counter("walrust_sync_total", "Syncs run", D, perDb((d) => d.stats.syncs));
  counter(
    "walrust_sync_errors_total",
    "Syncs that failed (retried)",
    D,
    perDb((d) => d.stats.syncErrors),
  );
  counter(
    "walrust_snapshot_count_total",
    "Level-9 snapshots written",
    D,
    perDb((d) => d.stats.snapshotsWritten),
  );
  gauge(
    "walrust_next_snapshot_timestamp",
    "Unix time the next scheduled snapshot is due",
    D,
    perDb((d) => secs(d.nextSnapshotAt)),
  );
  counter(
    "walrust_checkpoint_total",
    "Checkpoints by mode",
    ["database", "mode"],
    perDbKeyed("mode", (d) => d.stats.checkpointsByMode),
  );
  gauge("walrust_upload_queue_bytes", "Bytes waiting for upload", D, perDb((d) => d.pendingBytes));
  gauge(
    "walrust_upload_queue_files",
    "Files waiting for upload",
    D,
    perDb((d) => d.pendingUploads),
  );
  counter(
    "walrust_retry_total",
    "Storage attempts retried, by operation",
    ["operation"],
    perOp((s) => s.stats.retries),
  );
  gauge(
    "walrust_circuit_breaker_state",
    "Storage circuit breaker: 0 closed, 1 half-open, 2 open",
    [],
    () => [[{}, BREAKER[src.storage().breaker] ?? 0]],
  );
  counter(
    "walrust_storage_requests_total",
    "Storage operations, by operation",
    ["operation"],
    perOp((s) => s.stats.requests),
  );
  counter("walrust_storage_failures_total", "Storage operations failed after retries", [
    "operation",
  ], perOp((s) => s.stats.failures));
  counter(
    "walrust_compaction_total",
    "Files written by compaction, by level",
    ["database", "level"],
    perDbKeyed("level", (d) => d.stats.compactionsByLevel),
  );
  counter(
    "walrust_validation_success_total",
    "Validations that matched",
    D,
    perDb((d) => d.stats.validations),
  );
  counter(
    "walrust_validation_failure_total",
    "Validations that found the replica broken",
    D,
    perDb((d) => d.stats.validationFailures),
  );
  gauge("walrust_databases_total", "Databases replicated", [], () => [[{}, src.status().length]]);
  gauge(
    "walrust_uptime_seconds",
    "Seconds since the process started",
    [],
    () => [[{}, (Date.now() - startedAt) / 1000]],
  );
  gauge("walrust_build_info", "walrust version", ["version"], () => [[{ version }, 1]]);

  // Litestream's names and labels (db = the database path).
  const perPath = (f: (d: DatabaseMetricsView) => number) => () =>
    src.status().map((d) => [{ db: d.path }, f(d)] as Sample);
  const DB = ["db"];
  gauge("litestream_db_size", "Size of the database file", DB, perPath((d) => d.dbBytes));
  gauge("litestream_wal_size", "Size of the -wal file", DB, perPath((d) => d.walBytes));
  counter("litestream_total_wal_bytes", "WAL bytes copied", DB, perPath((d) => d.stats.walBytes));
  gauge("litestream_txid", "Current local TXID", DB, perPath((d) => d.txid));
  counter("litestream_sync_count", "Syncs run", DB, perPath((d) => d.stats.syncs));
  counter(
    "litestream_sync_error_count",
    "Syncs that failed",
    DB,
    perPath((d) => d.stats.syncErrors),
  );
  counter(
    "litestream_sync_seconds",
    "Seconds spent syncing",
    DB,
    perPath((d) => d.stats.syncSeconds),
  );
  counter(
    "litestream_checkpoint_count",
    "Checkpoints by mode",
    ["db", "mode"],
    perDbKeyed("mode", (d) => d.stats.checkpointsByMode, "db"),
  );
  counter(
    "litestream_checkpoint_seconds",
    "Seconds spent checkpointing, by mode",
    ["db", "mode"],
    perDbKeyed("mode", (d) => d.stats.checkpointSeconds, "db"),
  );
  const kind = () => (src.storage().url.startsWith("s3://") ? "s3" : "file");
  counter(
    "litestream_replica_operation_total",
    "Storage operations, by operation",
    ["replica_type", "operation"],
    () =>
      Object.entries(src.storage().stats.requests).map(
        ([op, v]) => [{ replica_type: kind(), operation: op.toUpperCase() }, v] as Sample,
      ),
  );
}
