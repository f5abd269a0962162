/** Shared test helpers: the golden vectors' location, a typed-rejection assertion, tree copies. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";

/** The golden vectors, copied into the repo from ../shared/vectors. */
export const VECTORS = new URL("../fixtures/vectors", import.meta.url).pathname;

/** Await a rejection of class `cls` (whose message includes `part`, if given) and return it. */
export async function rejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: abstract new (...args: never) => E,
  part?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (part !== undefined) assert.ok(e.message.includes(part), e.message);
    return e;
  }
  throw new assert.AssertionError({ message: `expected ${cls.name}, nothing was thrown` });
}

/** Copy a directory tree (files get new modification times, as a git checkout does). */
export async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(join(from, e.name), join(to, e.name));
    else await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** The Litestream vector manifest's rowsSha256: one `table\t[json row]\n` line per row, by id. */
export function rowsSha256(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const h = createHash("sha256");
    for (const t of ["accounts", "events", "progress"]) {
      for (const row of db.prepare(`SELECT * FROM ${t} ORDER BY id`).all()) {
        h.update(`${t}\t${JSON.stringify(Object.values(row))}\n`);
      }
    }
    return h.digest("hex");
  } finally {
    db.close();
  }
}
