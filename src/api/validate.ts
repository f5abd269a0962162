/** The restore half of validation inside watch: the replica at a TXID, as a database checksum. */
import { join } from "node:path";
import { databaseChecksum } from "../restore/apply.ts";
import { restoreWithFallback } from "../restore/run.ts";
import type { DbReplica } from "../storage/replica.ts";

/**
 * Restore `db` at exactly `txid` into a temporary folder (no fallback past a damaged file: that
 * is what validation looks for), check it as every restore does, and return its LTX database
 * checksum. The folder is removed afterwards.
 */
export async function restoredChecksum(db: DbReplica, txid: number): Promise<bigint> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-validate-" });
  try {
    const out = join(dir, "validate.db");
    const r = await restoreWithFallback(db, { kind: "txid", txid }, out, { maxFallbacks: 0 });
    const f = await Deno.open(out, { read: true });
    try {
      return await databaseChecksum(f, r.commit, r.pageSize);
    } finally {
      f.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
