/** walrust's version, printed by `walrust --version` and sent in webhooks. */
export const VERSION = "0.1.0";
