/**
 * The age keys a replica uses, from the config (`[age]`, a database's `age`) or, when the config
 * sets none, from LITESTREAM_AGE_PUBLIC_KEY / LITESTREAM_AGE_SECRET_KEY (as the wrappers of
 * Litestream v0.3 set them). Identity files are read here; their text never reaches a message.
 */
import { ConfigError } from "../errors.ts";
import type { AgeSettings } from "./schema.ts";
import { type AgeKeys, parseIdentityFile } from "../storage/age.ts";

/** Environment variables holding keys (several separated by commas, spaces or newlines). */
export const AGE_ENV = {
  recipients: "LITESTREAM_AGE_PUBLIC_KEY",
  identities: "LITESTREAM_AGE_SECRET_KEY",
} as const;

/**
 * Resolve the keys of one database: its own `age` when set (an empty table means plain), else
 * `[age]`, else the environment. Undefined: a plain replica.
 */
export async function ageKeysOf(
  global: AgeSettings | undefined,
  own?: AgeSettings,
  env: (name: string) => string | undefined = (k) => Deno.env.get(k),
): Promise<AgeKeys | undefined> {
  const s = own ?? global ?? fromEnv(env);
  if (!s) return undefined;
  const identities = [...(s.identities ?? [])];
  for (const file of s.identityFiles ?? []) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).name;
      throw new ConfigError(
        `age identity file ${file}: ${why} (fix: point identity_file at the file age-keygen wrote)`,
      );
    }
    const found = parseIdentityFile(text);
    if (found.length === 0) {
      throw new ConfigError(`age identity file ${file}: holds no AGE-SECRET-KEY-1... line`);
    }
    identities.push(...found);
  }
  const recipients = [...(s.recipients ?? [])];
  if (recipients.length === 0 && identities.length === 0) return undefined;
  return { recipients, identities };
}

function fromEnv(env: (name: string) => string | undefined): AgeSettings | undefined {
  const split = (v: string | undefined) => (v ?? "").split(/[\s,]+/).filter((x) => x !== "");
  const recipients = split(env(AGE_ENV.recipients));
  const identities = split(env(AGE_ENV.identities));
  if (recipients.length === 0 && identities.length === 0) return undefined;
  return { recipients, identities };
}
