/**
 * What the WebDAV and SFTP backends share: keys split into folder and name, the hidden metadata
 * sidecar beside each object (`.<name>.walrust-meta`, JSON of string values), and the names a
 * listing skips (temporaries and sidecars start with ".").
 */

const META_SUFFIX = ".walrust-meta";

/** `a/b/c.ltx` -> `{ dir: "a/b/", name: "c.ltx" }`. */
export function splitKey(key: string): { dir: string; name: string } {
  const cut = key.lastIndexOf("/");
  return { dir: cut < 0 ? "" : key.slice(0, cut + 1), name: key.slice(cut + 1) };
}

/** The key of `key`'s metadata sidecar. */
export function sidecarKey(key: string): string {
  const { dir, name } = splitKey(key);
  return `${dir}.${name}${META_SUFFIX}`;
}

/** The metadata a sidecar holds (its string values); {} when it is unreadable. */
export function parseSidecar(text: string): Record<string, string> {
  try {
    const v = JSON.parse(text);
    return Object.fromEntries(
      Object.entries(v).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
  } catch {
    return {};
  }
}
