/** How library calls name a replica: a URL (opened with retries) or an already opened Replica. */
import { openReplica, type Replica } from "../storage/open.ts";
import type { AgeKeys } from "../storage/age.ts";
import type { ResilienceEvents } from "../storage/resilient.ts";
import { resolveRetry, type RetrySettings } from "../config/schema.ts";
import { ConfigError } from "../errors.ts";

/** Where the backups are. */
export interface ReplicaOptions {
  /** `file:///path`, a plain path, `s3://bucket/prefix` — or a Replica from `openReplica`. */
  bucket: string | Replica;
  /** S3-compatible endpoint (default: `AWS_ENDPOINT_URL_S3` or the URL's `?endpoint=`). */
  endpoint?: string;
  /** S3 region (default: `AWS_REGION` or us-east-1). */
  region?: string;
  /** Path-style S3 addressing (default: on with a custom endpoint). */
  forcePathStyle?: boolean;
  /** Retries and circuit breaker (defaults: 5 retries, 100 ms .. 30 s full jitter). */
  retry?: Partial<RetrySettings>;
  /** Storage events (breaker transitions, rejected credentials), e.g. for alerts. */
  storageEvents?: ResilienceEvents;
  /**
   * age encryption of the replica's objects: recipients to write, identities to read (default:
   * none, a plain replica). Ignored when `bucket` is an opened Replica (it has its own).
   */
  age?: AgeKeys;
}

/** Open the replica named by `o`, behind retries and the circuit breaker. */
export async function replicaOf(o: ReplicaOptions): Promise<Replica> {
  if (typeof o.bucket !== "string") return o.bucket;
  if (o.bucket === "") throw new ConfigError("no replica given (bucket is empty)");
  return await openReplica(
    o.bucket,
    { endpoint: o.endpoint, region: o.region, forcePathStyle: o.forcePathStyle },
    { retry: resolveRetry(o.retry ?? {}), events: o.storageEvents },
    o.age,
  );
}
