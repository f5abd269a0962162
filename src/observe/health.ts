/**
 * The `/health` answer, from a replication's status: pure, so the rules are tested without a
 * server. A database is unhealthy when it stopped replicating or its lag passed `maxLagMs`;
 * storage is unhealthy once it has failed for longer than `maxLagMs`; either makes the whole
 * answer unhealthy (HTTP 503). Retrying (a failing storage, an open breaker, uploads waiting on
 * them) is degraded.
 */

/** What health reads of one database (the API's DatabaseStatus has these fields). */
export interface DatabaseView {
  name: string;
  txid: number;
  replicaTXID: number;
  pendingUploads: number;
  lagSeconds: number;
  lastSyncAt?: Date;
  failed?: string;
}

/** What health reads of the storage (the API's StorageStatus has these fields). */
export interface StorageView {
  breaker: string;
  stats: { lastSuccessAt?: number; failingSince?: number };
}

/** Overall and per-part verdicts. */
export type HealthStatus = "healthy" | "degraded" | "unhealthy";

/** One database in the answer. */
export interface DatabaseHealth {
  status: HealthStatus;
  txid: number;
  replica_txid: number;
  lag_seconds: number;
  last_sync: string | null;
  errors_last_hour: number;
  error?: string;
}

/** The JSON `/health` serves. */
export interface HealthReport {
  status: HealthStatus;
  uptime_seconds: number;
  databases: Record<string, DatabaseHealth>;
  storage: { reachable: boolean; breaker: string; last_success: string | null };
}

/** What the rules need besides the status. */
export interface HealthInputs {
  now: number;
  startedAt: number;
  /** Lag (and storage failure time) past which it is unhealthy. */
  maxLagMs: number;
  /** Sync and upload errors of each database in the last hour, by name. */
  errorsLastHour: (name: string) => number;
}

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

function worst(a: HealthStatus, b: HealthStatus): HealthStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

/** Judge the replication. */
export function healthOf(
  dbs: readonly DatabaseView[],
  storage: StorageView,
  i: HealthInputs,
): HealthReport {
  const failingMs = storage.stats.failingSince !== undefined
    ? i.now - storage.stats.failingSince
    : 0;
  const storageStatus: HealthStatus = failingMs > i.maxLagMs
    ? "unhealthy"
    : failingMs > 0 || storage.breaker !== "closed"
    ? "degraded"
    : "healthy";
  let overall = storageStatus;
  const databases: Record<string, DatabaseHealth> = {};
  for (const d of dbs) {
    let status: HealthStatus = "healthy";
    if (d.failed !== undefined || d.lagSeconds * 1000 > i.maxLagMs) status = "unhealthy";
    else if (d.pendingUploads > 0 && storageStatus !== "healthy") status = "degraded";
    const h: DatabaseHealth = {
      status,
      txid: d.txid,
      replica_txid: d.replicaTXID,
      lag_seconds: Math.round(d.lagSeconds * 1000) / 1000,
      last_sync: d.lastSyncAt?.toISOString() ?? null,
      errors_last_hour: i.errorsLastHour(d.name),
    };
    if (d.failed !== undefined) h.error = d.failed;
    databases[d.name] = h;
    overall = worst(overall, status);
  }
  return {
    status: overall,
    uptime_seconds: Math.round((i.now - i.startedAt) / 1000),
    databases,
    storage: {
      reachable: storage.stats.failingSince === undefined,
      breaker: storage.breaker,
      last_success: storage.stats.lastSuccessAt !== undefined
        ? new Date(storage.stats.lastSuccessAt).toISOString()
        : null,
    },
  };
}
