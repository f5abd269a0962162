/** Small durable-file helpers: write fully, fsync a directory, atomic replace. */

/** Write all of `buf` to `file` (Deno's write may be partial). */
export async function writeAll(file: Deno.FsFile, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += await file.write(buf.subarray(off));
}

/** fsync a directory so a rename or create inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic there.
  } finally {
    d.close();
  }
}

/**
 * Replace `path` atomically with `data`: temp file, fsync, rename, directory fsync. With
 * `durable: false` the two fsyncs are left out: readers still see the old file or the new one,
 * but a power loss may keep the old one (or, on some filesystems, leave it empty). Only for files
 * whose loss is recovered from (a hint, not a record).
 */
export async function atomicWriteFile(
  path: string,
  data: Uint8Array,
  opts: { durable?: boolean } = {},
): Promise<void> {
  const durable = opts.durable ?? true;
  const dir = path.slice(0, path.lastIndexOf("/")) || ".";
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(f, data);
    if (durable) await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
  if (durable) await fsyncDir(dir);
}

/** Remove a file, ignoring "not found". */
export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Whether anything (file, directory, dangling symlink) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
