import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { parseByteSize, parseDurationMs } from "../../src/config/duration.ts";

Deno.test("durations: numbers are seconds, floats allowed", () => {
  assert.equal(parseDurationMs(5, "x"), 5000);
  assert.equal(parseDurationMs(0.1, "x"), 100);
  assert.equal(parseDurationMs(0, "x"), 0);
  assert.equal(parseDurationMs("2.5", "x"), 2500);
});

Deno.test("durations: unit strings and chains", () => {
  assert.equal(parseDurationMs("500ms", "x"), 500);
  assert.equal(parseDurationMs("5s", "x"), 5000);
  assert.equal(parseDurationMs("1m", "x"), 60_000);
  assert.equal(parseDurationMs("2h", "x"), 7_200_000);
  assert.equal(parseDurationMs("1d", "x"), 86_400_000);
  assert.equal(parseDurationMs("1h30m", "x"), 5_400_000);
  assert.equal(parseDurationMs("1m 30s", "x"), 90_000);
  assert.equal(parseDurationMs("0.5s", "x"), 500);
});

Deno.test("durations: garbage is a ConfigError naming what", () => {
  for (const bad of ["fast", "", "5 minutes", "1x", "-5s", "s", "1h30", -1, NaN, Infinity]) {
    assert.throws(
      () => parseDurationMs(bad, "--wal-sync-interval"),
      (err: unknown) =>
        err instanceof ConfigError && err.exitCode === 2 &&
        err.message.startsWith("--wal-sync-interval: expected a duration, got "),
      `accepted ${String(bad)}`,
    );
  }
});

Deno.test("byte sizes: numbers, binary and decimal units", () => {
  assert.equal(parseByteSize(5368709120, "x"), 5 * 1024 ** 3);
  assert.equal(parseByteSize("5GiB", "x"), 5 * 1024 ** 3);
  assert.equal(parseByteSize("500MB", "x"), 500_000_000);
  assert.equal(parseByteSize("64MiB", "x"), 64 * 1024 * 1024);
  assert.equal(parseByteSize("1KB", "x"), 1000);
  assert.equal(parseByteSize("1kib", "x"), 1024);
  assert.equal(parseByteSize("1.5KiB", "x"), 1536);
  assert.equal(parseByteSize("4096", "x"), 4096);
  assert.equal(parseByteSize("10 B", "x"), 10);
});

Deno.test("byte sizes: garbage and ambiguous units are ConfigErrors naming what", () => {
  for (const bad of ["lots", "5G", "5 GiBs", "-1", "", 1.5, -3]) {
    assert.throws(
      () => parseByteSize(bad, "cache.max_size"),
      (err: unknown) =>
        err instanceof ConfigError && err.message.startsWith("cache.max_size: expected a size"),
      `accepted ${String(bad)}`,
    );
  }
});
