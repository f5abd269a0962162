/** The metrics flags `watch` and the read replica share. */
import { type Flags, str } from "./args.ts";
import { ConfigError } from "../errors.ts";
import type { MetricsSettings } from "../config/schema.ts";

/** The options they parse. */
export const METRICS_OPTIONS = {
  "metrics-addr": { type: "string" },
  "no-metrics": { type: "boolean" },
  "metrics-process": { type: "boolean" },
} as const;

/** `--metrics-addr HOST:PORT`, `--no-metrics`, `--metrics-process` over [metrics]. */
export function metricsFlags(flags: Flags): Partial<MetricsSettings> {
  const out: Partial<MetricsSettings> = {};
  const addr = str(flags, "metrics-addr");
  if (addr !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) {
      throw new ConfigError(
        `--metrics-addr expects HOST:PORT (e.g. 127.0.0.1:16767 or :9090), got "${addr}"`,
      );
    }
    out.host = m[1] ?? (m[2] || "0.0.0.0");
    out.port = port;
    out.enabled = true;
  }
  if (flags["no-metrics"]) out.enabled = false;
  if (flags["metrics-process"]) out.process = true;
  return out;
}
