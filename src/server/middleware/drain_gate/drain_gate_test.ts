import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { drainGate } from "./drain_gate.ts";

Deno.test("drainGate: while draining, writes get 503 with Retry-After and reads still work", async () => {
  let draining = false;
  const app = new Hono();
  app.use("*", drainGate({ draining: () => draining, retryAfterSeconds: 7 }));
  app.get("/", (c) => c.text("read"));
  app.post("/", (c) => c.text("write"));
  app.onError(renderError);
  assert.equal((await app.request("/", { method: "POST" })).status, 200);
  draining = true;
  const res = await app.request("/", { method: "POST" });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal((await res.json()).error.code, "shutting_down");
  assert.equal((await app.request("/")).status, 200);
});
