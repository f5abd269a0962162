/** walrust CLI entry: run the command and exit with its code. */
import { run } from "./src/cli/app.ts";

/** Run the walrust CLI with `args`; returns the exit code (what `walrust ARGS...` would exit with). */
export { run } from "./src/cli/app.ts";

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}
