import assert from "node:assert/strict";
import { keyLines } from "../../src/config/load.ts";

Deno.test("key lines: headers, keys, arrays of tables, sub-tables, inline tables", () => {
  const lines = keyLines(`allow_empty_globs = true
[sync]
"format" = "block"
[[databases]]
path = "/a.db"
[databases.retention]
hourly = 1
[[databases]]
path = "/b.db"
retention = { daily = 2, "weekly" = 3 }
`);
  assert.equal(lines.get("allow_empty_globs"), 1);
  assert.equal(lines.get("sync"), 2);
  assert.equal(lines.get("sync.format"), 3);
  assert.equal(lines.get("databases[0]"), 4);
  assert.equal(lines.get("databases[0].path"), 5);
  assert.equal(lines.get("databases[0].retention"), 6);
  assert.equal(lines.get("databases[0].retention.hourly"), 7);
  assert.equal(lines.get("databases[1]"), 8);
  assert.equal(lines.get("databases[1].path"), 9);
  assert.equal(lines.get("databases[1].retention.daily"), 10);
  assert.equal(lines.get("databases[1].retention.weekly"), 10);
});

Deno.test("key lines: text inside multi-line strings is not read as keys", () => {
  const lines = keyLines(`[s3]
region = """
bucket = 1
"""
bucket = "s3://b"
`);
  assert.equal(lines.get("s3.bucket"), 5);
});
