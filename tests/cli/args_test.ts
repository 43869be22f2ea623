import assert from "node:assert/strict";
import { choiceFlag, parseNamedFlags } from "../../src/cli/args.ts";
import { UsageError } from "../../src/cli/usage_error.ts";

const FLAGS = { model: { type: "string" }, out: { type: "string" } } as const;

Deno.test("parseNamedFlags: values by name; a positional or a missing required flag refused", () => {
  const { values } = parseNamedFlags(["--model", "m", "--out=o"], FLAGS, "HELP", ["model", "out"]);
  assert.deepEqual({ ...values }, { model: "m", out: "o" });
  assert.throws(
    () => parseNamedFlags(["--model", "m", "stray"], FLAGS, "HELP"),
    (e) => e instanceof UsageError && e.message === 'unexpected argument "stray"\n\nHELP',
  );
  // Required flags are checked in the order given, after the positionals.
  assert.throws(
    () => parseNamedFlags([], FLAGS, "HELP", ["out", "model"]),
    (e) => e instanceof UsageError && e.message === "--out is required\n\nHELP",
  );
  assert.throws(
    () => parseNamedFlags(["--out=o"], FLAGS, "HELP", ["out", "model"]),
    (e) => e instanceof UsageError && e.message === "--model is required\n\nHELP",
  );
});

Deno.test("choiceFlag: the fallback when absent, the word when listed, else a UsageError", () => {
  const codecs = ["zstd", "gzip"] as const;
  assert.equal(choiceFlag(undefined, "codec", codecs, "zstd"), "zstd");
  assert.equal(choiceFlag("gzip", "codec", codecs, "zstd"), "gzip");
  assert.throws(
    () => choiceFlag("lz4", "codec", codecs, "zstd"),
    (e) => e instanceof UsageError && e.message === '--codec must be zstd or gzip, got "lz4"',
  );
});
