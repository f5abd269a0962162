/** walrust CLI entry: run the command and exit with its code. */
import { run } from "./src/cli/app.ts";

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}
