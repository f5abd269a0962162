/** One database's files in a replica: a single paginated listing of its prefix, all levels. */
import type { Replica } from "./open.ts";
import { levelDir, parseLtxKey } from "./layout.ts";

/** One LTX object of a database in the replica. */
export interface ReplicaFile {
  level: number;
  minTXID: number;
  maxTXID: number;
  key: string;
  size: number;
}

/** Every LTX file under the database's prefix (every level in one listing); other keys ignored. */
export async function listDbFiles(replica: Replica, prefix: string): Promise<ReplicaFile[]> {
  const level0 = levelDir(replica.kind, prefix, 0);
  // "<prefix>/0000/" (S3) or "<prefix>/ltx/0/" (file): drop the level part.
  const base = level0.slice(0, level0.length - (replica.kind === "s3" ? 5 : 2));
  const out: ReplicaFile[] = [];
  for await (const o of replica.storage.list(base)) {
    const k = parseLtxKey(replica.kind, prefix, o.key);
    if (k) out.push({ ...k, key: o.key, size: o.size });
  }
  return out;
}
