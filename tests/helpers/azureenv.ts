/**
 * Azure Blob Storage test configuration: from WALRUST_TEST_AZURE_URL + WALRUST_TEST_AZURE_ENDPOINT
 * + AZURE_STORAGE_ACCOUNT/AZURE_STORAGE_KEY, else from a running `scripts/azure-test-server.sh`
 * (Azurite). Tests that need Azure are skipped (loudly) when no server answers, and fail instead
 * when WALRUST_REQUIRE_SERVERS=1 (CI).
 */

import { requireOrSkip, scriptExports } from "./server_env.ts";

/** Where the test Azure blob service is, the account to sign with, and the base replica URL. */
export interface AzureTestConfig {
  /** abs://ACCOUNT@CONTAINER/run-<random> (no trailing slash); the container exists. */
  url: string;
  /** Blob service URL, e.g. http://127.0.0.1:7483/devstoreaccount1. */
  endpoint: string;
  accountName: string;
  accountKey: string;
}

/** The parts of an `abs://ACCOUNT@CONTAINER/path` URL (path without slashes at the ends). */
export function absParts(url: string): { accountName: string; container: string; root: string } {
  const u = new URL(url);
  if (u.protocol !== "abs:") throw new Error(`not an abs:// URL: ${url}`);
  return {
    accountName: decodeURIComponent(u.username),
    container: u.hostname,
    root: decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, ""),
  };
}

const SCRIPT = new URL("../../scripts/azure-test-server.sh", import.meta.url).pathname;

/** The Azure test config from the environment, else from `azure-test-server.sh env`. */
export function azureTestConfig(): AzureTestConfig | undefined {
  return fromVars((k) => Deno.env.get(k)) ?? fromScript();
}

function fromVars(get: (k: string) => string | undefined): AzureTestConfig | undefined {
  const url = get("WALRUST_TEST_AZURE_URL");
  const endpoint = get("WALRUST_TEST_AZURE_ENDPOINT");
  const accountName = get("AZURE_STORAGE_ACCOUNT");
  const accountKey = get("AZURE_STORAGE_KEY");
  if (!url || !endpoint || !accountName || !accountKey) return undefined;
  return {
    url: url.replace(/\/+$/, ""),
    endpoint: endpoint.replace(/\/+$/, ""),
    accountName,
    accountKey,
  };
}

function fromScript(): AzureTestConfig | undefined {
  const vars = scriptExports(SCRIPT);
  return vars && fromVars((k) => vars.get(k));
}

/**
 * The config when an Azure blob service answers. Otherwise: throws when WALRUST_REQUIRE_SERVERS=1,
 * else prints one loud notice and returns undefined (use it as `ignore: !cfg`).
 */
export function requireAzureOrSkip(): Promise<AzureTestConfig | undefined> {
  return requireOrSkip({
    what: "AZURE",
    cfg: azureTestConfig(),
    missing: "no Azure configured (set WALRUST_TEST_AZURE_URL, WALRUST_TEST_AZURE_ENDPOINT, " +
      "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or run scripts/azure-test-server.sh start)",
    reach: unreachable,
    requireVar: "WALRUST_REQUIRE_SERVERS",
  });
}

// Any HTTP answer counts (unsigned, so 4xx); only a failed connection or a timeout means "not there".
async function unreachable(cfg: AzureTestConfig): Promise<string | undefined> {
  try {
    const res = await fetch(`${cfg.endpoint}?comp=list`, { signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return undefined;
  } catch (err) {
    return `the Azure endpoint ${cfg.endpoint} does not answer (${(err as Error).name})`;
  }
}

const RUN = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
let made = 0;

/** A fresh replica URL below cfg.url, unique to this test process and call (no trailing slash). */
export function uniqueAzureUrl(cfg: AzureTestConfig): string {
  return `${cfg.url}/${RUN}-${++made}`;
}
