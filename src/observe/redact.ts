/** Remove credentials from text before it reaches a log line, an error, a metric or a webhook. */

const MASK = "[REDACTED]";

// A value ends at whitespace, a quote or a separator, so JSON and query strings stay well formed.
const VALUE = String.raw`[^\s"'&,;]+`;

const PATTERNS: readonly [RegExp, string][] = [
  // Environment / config names whose value is a secret: NAME=v, NAME: v, "NAME":"v".
  [
    new RegExp(
      String.raw`((?:AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|secret_?access_?key|session_?token)` +
        String.raw`["']?\s*[:=]\s*["']?)` + VALUE,
      "gi",
    ),
    `$1${MASK}`,
  ],
  // Presigned URL query parameters.
  [
    new RegExp(String.raw`(X-Amz-(?:Signature|Credential|Security-Token)=)` + VALUE, "gi"),
    `$1${MASK}`,
  ],
  // SigV4 Authorization header parts.
  [new RegExp(String.raw`((?<![\w-])(?:Credential|Signature)=)` + VALUE, "gi"), `$1${MASK}`],
  // user:password in a URL authority.
  [/\/\/[^\s/@:"']+:[^\s/@"']*@/g, `//${MASK}@`],
];

/**
 * `text` with AWS secret values, presigned-URL signatures and credentials, SigV4 `Credential=`
 * and `Signature=` values and `//user:pass@` URL credentials masked; every literal in `secrets`
 * (e.g. webhook secrets) is masked too.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) {
    // Very short "secrets" would mask ordinary words; config validation keeps real ones longer.
    if (s.length >= 4) out = out.split(s).join(MASK);
  }
  for (const [re, replacement] of PATTERNS) out = out.replace(re, replacement);
  return out;
}

/** A copy of a JSON-like value with {@link redact} applied to every string inside it. */
export function redactDeep(value: unknown, secrets: readonly string[] = []): unknown {
  if (typeof value === "string") return redact(value, secrets);
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, secrets));
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v, secrets);
    return out;
  }
  return value;
}
