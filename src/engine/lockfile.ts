/** The single-writer lock beside a database: a second walrust on it fails fast (exit 2). */
import { ConfigError, WalrustError } from "../errors.ts";

/** Take `.<dbfile>-walrust.lock` beside the database; held (never closed) for the process life. */
export async function acquireLock(dbPath: string): Promise<Deno.FsFile> {
  const slash = dbPath.lastIndexOf("/");
  const path = `${dbPath.slice(0, slash)}/.${dbPath.slice(slash + 1)}-walrust.lock`;
  const f = await Deno.open(path, { read: true, write: true, create: true });
  let ok = false;
  try {
    ok = await f.tryLock(true);
  } catch (e) {
    f.close();
    throw new WalrustError(`cannot lock ${path}: ${e instanceof Error ? e.message : e}`);
  }
  if (!ok) {
    f.close();
    throw new ConfigError(
      `another walrust process is already replicating ${dbPath} (lock ${path} is held); stop it first`,
    );
  }
  return f;
}
