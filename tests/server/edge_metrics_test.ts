/**
 * Request metrics cannot be grown by strangers: 50 requests with invented methods and paths,
 * without a token, leave the series count bounded (methods outside the standard set count as
 * `other`, paths no route matches as `unmatched`).
 */

import assert from "node:assert/strict";
import { newServer, testOpts } from "./server_fixture.ts";

Deno.test("metrics: 50 invented methods and paths add at most a few series", testOpts, async () => {
  const { app } = await newServer({ token: "t" });
  const auth = { authorization: "Bearer t" };
  const series = async () => {
    const text = await (await app.request("/metrics", { headers: auth })).text();
    return text.split("\n").filter((l) => /^voxseg_http_request/.test(l));
  };
  const word = () => crypto.randomUUID().replaceAll("-", "").slice(0, 12).toUpperCase();
  const methods = ["GET", "POST", "DELETE", "PUT"];
  for (let i = 0; i < 50; i++) {
    // Half invented methods, half standard ones on invented paths and known routes' params.
    const method = i % 2 ? `M${word()}` : methods[i % methods.length];
    const path = i % 3 ? `/x${word()}/${word()}` : `/v1/jobs/${word()}`;
    const res = await app.request(path, { method });
    assert.ok(res.status >= 400, `${method} ${path}: ${res.status}`);
    await res.body?.cancel();
  }
  const after = await series();
  const text = after.join("\n");
  assert.doesNotMatch(text, /M[0-9A-F]{12}|\/x[0-9A-F]{12}|\/v1\/jobs\/[0-9A-F]{12}/);
  assert.match(text, /method="other",route="unmatched",status="401"/);
  // A series per method or path would be 50 or more; here: the standard methods plus "other",
  // on two routes, one status (401 before routing).
  const counters = after.filter((l) => l.startsWith("voxseg_http_requests_total{"));
  assert.ok(counters.length <= 5 * 2, counters.join("\n"));
  const routes = new Set(after.map((l) => /route="([^"]*)"/.exec(l)?.[1]));
  assert.deepEqual([...routes].sort(), ["/v1/jobs/:id", "unmatched"]);
});
