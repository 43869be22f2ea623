/**
 * The middleware tests live beside their middleware (src/server/middleware/<name>/), as in
 * Hono; importing them here runs them with the rest of tests/.
 */

import assert from "node:assert/strict";
import "../../src/server/middleware/access_log/access_log_test.ts";
import "../../src/server/middleware/bearer_auth/bearer_auth_test.ts";
import "../../src/server/middleware/body_limit/body_limit_test.ts";
import "../../src/server/middleware/content_type/content_type_test.ts";
import "../../src/server/middleware/drain_gate/drain_gate_test.ts";
import "../../src/server/middleware/head_response/head_response_test.ts";
import "../../src/server/middleware/host_check/host_check_test.ts";
import "../../src/server/middleware/origin_check/origin_check_test.ts";
import "../../src/server/middleware/request_metrics/request_metrics_test.ts";
import "../../src/server/middleware/stream_limit/stream_limit_test.ts";

Deno.test("every middleware test beside its middleware is imported here", async () => {
  const dir = new URL("../../src/server/middleware/", import.meta.url);
  const self = await Deno.readTextFile(new URL(import.meta.url));
  const missing: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isDirectory) continue;
    for await (const file of Deno.readDir(new URL(`${entry.name}/`, dir))) {
      const spec = `middleware/${entry.name}/${file.name}`;
      if (file.name.endsWith("_test.ts") && !self.includes(`${spec}"`)) missing.push(spec);
    }
  }
  assert.deepEqual(missing, [], "add an import line for each so `deno task test` runs it");
});
