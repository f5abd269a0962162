/**
 * `replicate -restore-if-db-not-exists`: before replicating, restore every configured database
 * file that does not exist from its replica (the latest state). A database with no backup at
 * all is a first start: it is left to the app to create.
 */
import { restore } from "../api.ts";
import { pathExists } from "../fsutil.ts";
import { RestoreError } from "../errors.ts";
import { log } from "../observe/log.ts";
import { databasePrefix, type Replica } from "../storage/open.ts";

/** Restore each of `dbs` that is missing; returns how many were restored. */
export async function restoreMissing(
  replica: Replica,
  dbs: { path: string; prefix: string }[],
): Promise<number> {
  let restored = 0;
  for (const db of dbs) {
    if (await pathExists(db.path)) continue;
    try {
      const r = await restore({ bucket: replica, name: db.prefix, output: db.path });
      restored++;
      log.info("restored a missing database before replicating", {
        db: db.path,
        txid: r.txid,
        replica: replica.url,
      });
    } catch (e) {
      // Decided by what the replica holds under the prefix, not by the error's text.
      if (!(e instanceof RestoreError) || (await hasObjects(replica, db.prefix))) throw e;
      log.info("no backup of a missing database; nothing restored", {
        db: db.path,
        replica: replica.url,
      });
    }
  }
  return restored;
}

/** Whether anything (any layout, any file) exists under the database's prefix in the replica. */
export async function hasObjects(replica: Replica, name: string): Promise<boolean> {
  for await (const _ of replica.storage.list(`${databasePrefix(replica, name)}/`)) return true;
  return false;
}
