import assert from "node:assert/strict";
import { Hono } from "hono";
import { ApiError, renderError } from "../../errors.ts";
import { Metrics } from "../../metrics.ts";
import { requestMetrics } from "./request_metrics.ts";
import { bearerAuth } from "../bearer_auth/bearer_auth.ts";

/** Metrics whose GPU gauges read these values, with no jobs and no training. */
function fixedMetrics(gpuQueueDepth: number, gpuBusySeconds: number): Metrics {
  return new Metrics(() => ({ gpuQueueDepth, gpuBusySeconds, jobs: {}, training: {} }));
}

Deno.test("requestMetrics: counts by route pattern and status, refusals and errors included", async () => {
  const metrics = fixedMetrics(2, 1.5);
  const app = new Hono();
  app.use("*", requestMetrics(metrics));
  app.use("*", bearerAuth({ tokens: new Map([["default", "t"]]), scope: "mutating" }));
  app.get("/items/:id", (c) => {
    if (c.req.param("id") === "x") throw new ApiError(404, "not_found", "no x");
    return c.text("ok");
  });
  app.post("/items/:id", (c) => c.text("never"));
  app.onError(renderError);
  await app.request("/items/1");
  await app.request("/items/2");
  await app.request("/items/x");
  await app.request("/elsewhere");
  await app.request("/items/1", { method: "POST" }); // refused by bearerAuth before the route
  const text = metrics.render();
  assert.match(
    text,
    /voxseg_http_requests_total\{method="GET",route="\/items\/:id",status="200"\} 2/,
  );
  assert.match(
    text,
    /voxseg_http_requests_total\{method="GET",route="\/items\/:id",status="404"\} 1/,
  );
  assert.match(text, /voxseg_http_requests_total\{method="GET",route="unmatched",status="404"\} 1/);
  assert.match(text, /voxseg_http_request_duration_seconds_count\{route="\/items\/:id"\} 4/);
  assert.match(
    text,
    /voxseg_http_request_duration_seconds_bucket\{route="\/items\/:id",le="\+Inf"\} 4/,
  );
  assert.match(
    text,
    /voxseg_http_requests_total\{method="POST",route="\/items\/:id",status="401"\} 1/,
  );
  assert.match(text, /voxseg_gpu_queue_depth 2/);
  assert.match(text, /voxseg_gpu_busy_seconds_total 1.5/);
});

Deno.test("requestMetrics: invented methods and paths cannot grow the label set", async () => {
  const metrics = fixedMetrics(0, 0);
  const app = new Hono();
  app.use("*", requestMetrics(metrics));
  app.use("*", bearerAuth({ tokens: new Map([["default", "t"]]) }));
  app.get("/items/:id", (c) => c.text("ok"));
  app.onError(renderError);
  const random = () => crypto.randomUUID().replace(/-/g, "").slice(0, 10).toUpperCase();
  for (let i = 0; i < 50; i++) {
    const method = `X${random()}`;
    await app.request(`/p${random()}/${random()}`, { method });
    await app.request(`/items/${random()}`, { method });
  }
  const text = metrics.render();
  const series = text.split("\n").filter((l) => l.startsWith("voxseg_http_requests_total{"));
  // No route takes these methods: one series for all 100 requests.
  assert.deepEqual(series, [
    'voxseg_http_requests_total{method="other",route="unmatched",status="401"} 100',
  ]);
  assert.doesNotMatch(text, /X[0-9A-F]{10}|\/p[0-9A-F]/);
});
