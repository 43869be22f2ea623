import assert from "node:assert/strict";
import { isLoopback, main } from "../../src/cli/serve.ts";
import { UsageError } from "../../src/cli/usage_error.ts";

Deno.test("isLoopback: only addresses this machine alone can reach", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
    assert.equal(isLoopback(h), true, h);
  }
  for (const h of ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "127.0.0.1.nip.io"]) {
    assert.equal(isLoopback(h), false, h);
  }
});

Deno.test("voxseg serve refuses a non-loopback address without a token, and bad flags", async () => {
  const saved = Deno.env.get("VOXSEG_TOKEN");
  Deno.env.delete("VOXSEG_TOKEN");
  try {
    await assert.rejects(main(["--host", "0.0.0.0"]), (e) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /refusing to listen on 0\.0\.0\.0 without a token/);
      return true;
    });
    await assert.rejects(main(["--auth", "all"]), /--auth all needs a token/);
    await assert.rejects(main(["--auth", "mutating"]), /--auth mutating needs a token/);
    await assert.rejects(main(["--auth", "some", "--token", "t"]), /--auth must be/);
    await assert.rejects(main(["--max-body", "huge"]), /--max-body/);
    await assert.rejects(main(["--port", "99999"]), /--port/);
    await assert.rejects(main(["--queue", "0"]), /--queue/);
  } finally {
    if (saved !== undefined) Deno.env.set("VOXSEG_TOKEN", saved);
  }
});
