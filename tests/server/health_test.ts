import assert from "node:assert/strict";
import { join } from "node:path";
import { createApp } from "../../src/server/app.ts";
import { openApiPath } from "../../src/server/openapi.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  niftiBytes,
  testOpts,
} from "./server_fixture.ts";

Deno.test("GET /healthz, /readyz, /v1/device on a ready server", testOpts, async () => {
  const { app } = await newServer();
  const health = await app.request("/healthz");
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok" });
  const ready = await app.request("/readyz");
  assert.equal(ready.status, 200);
  assert.equal((await ready.json()).status, "ready");
  const device = await (await app.request("/v1/device")).json();
  assert.equal(typeof device.adapter.description, "string");
  assert.ok(device.adapter.limits.maxStorageBufferBindingSize > 0);
  assert.deepEqual(
    { holder: device.scheduler.holder, queueDepth: device.scheduler.queueDepth },
    { holder: null, queueDepth: 0 },
  );
  assert.equal(device.scheduler.maxQueue, 16);
});

Deno.test(
  "without a GPU: /readyz, /v1/device, predict and jobs are 503; /healthz stays 200",
  testOpts,
  async () => {
    const { root, models } = await dataRoot();
    const server = await createApp({
      dataRoot: root,
      modelsDir: models,
      stateDir: await Deno.makeTempDir({ dir: root, prefix: ".state_" }),
      acquireGpu: () => Promise.reject(new Error("no adapter here")),
    });
    await server.gpuReady.catch(() => {});
    assert.equal((await server.app.request("/healthz")).status, 200);
    assert.match(
      await assertError(await server.app.request("/readyz"), 503, "not_ready"),
      /no adapter here/,
    );
    await assertError(await server.app.request("/v1/device"), 503, "gpu_unavailable");
    const predict = await server.app.request("/v1/models/tiny/predict", {
      method: "POST",
      body: await niftiBytes(ctVolume()),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.match(await assertError(predict, 503, "gpu_unavailable"), /no adapter here/);
    assert.equal(predict.headers.get("retry-after"), "5");
    await assertError(
      await server.app.request("/v1/jobs/train", jsonPost({ dataset: "synth" })),
      503,
      "gpu_unavailable",
    );
  },
);

Deno.test("/readyz is 503 while shutting down", testOpts, async () => {
  const server = await newServer();
  await server.shutdown();
  assert.match(
    await assertError(await server.app.request("/readyz"), 503, "not_ready"),
    /shutting down/,
  );
});

Deno.test(
  "GET /metrics: Prometheus text with requests, latency, queue, GPU, jobs",
  testOpts,
  async () => {
    const { app } = await newServer();
    await app.request("/healthz");
    await app.request("/v1/jobs/nope");
    const res = await app.request("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(
      text,
      /voxseg_http_requests_total\{method="GET",route="\/healthz",status="200"\} 1/,
    );
    assert.match(
      text,
      /voxseg_http_requests_total\{method="GET",route="\/v1\/jobs\/:id",status="404"\} 1/,
    );
    assert.match(text, /# TYPE voxseg_http_request_duration_seconds histogram/);
    assert.match(
      text,
      /voxseg_http_request_duration_seconds_bucket\{route="\/healthz",le="0.005"\}/,
    );
    assert.match(text, /^voxseg_gpu_queue_depth 0$/m);
    assert.match(text, /^voxseg_gpu_busy_seconds_total [\d.e-]+$/m);
    assert.match(text, /^voxseg_jobs\{state="running"\} 0$/m);
    assert.match(text, /# TYPE voxseg_training_loss gauge/);
  },
);

Deno.test("GET /openapi.json describes every route of the table", testOpts, async () => {
  const server = await newServer({ token: "t" });
  const doc = await (await server.app.request("/openapi.json", {
    headers: { authorization: "Bearer t" },
  })).json();
  assert.equal(doc.openapi, "3.1.0");
  const described = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  const table = server.routes.map((r) => `${r.method} ${openApiPath(r.path)}`).sort();
  assert.deepEqual(described, table);
  for (
    const route of [
      "GET /healthz",
      "GET /readyz",
      "GET /v1/device",
      "GET /metrics",
      "GET /openapi.json",
      "GET /",
      "GET /v1/models",
      "GET /v1/models/{name}",
      "POST /v1/models/{name}/predict",
      "POST /v1/jobs/train",
      "POST /v1/jobs/predict",
      "GET /v1/jobs",
      "GET /v1/jobs/{id}",
      "GET /v1/jobs/{id}/events",
      "GET /v1/jobs/{id}/result",
      "DELETE /v1/jobs/{id}",
      "POST /v1/jobs/{id}/resume",
    ]
  ) assert.ok(table.includes(route), `${route} missing`);
  const predict = doc.paths["/v1/models/{name}/predict"].post;
  assert.ok(predict.requestBody.content["application/gzip"]);
  assert.ok(predict.requestBody.content["application/zip"], "a zipped DICOM series");
  assert.deepEqual(Object.keys(predict.responses).sort(), [
    "200",
    "400",
    "401",
    "404",
    "406",
    "413",
    "415",
    "422",
    "503",
  ]);
  assert.deepEqual(predict.security, [{ bearer: [] }]);
  // A model of several input channels takes one NIfTI per multipart/form-data part.
  assert.ok(predict.requestBody.content["multipart/form-data"], "channels as form parts");
  assert.match(predict.responses["422"].description, /channel_count_mismatch/);
  assert.match(predict.responses["422"].description, /channel_grid_mismatch/);
  // Training jobs take the command line's planning options, and show what the plan chose.
  const { schemas } = doc.components;
  const train = doc.paths["/v1/jobs/train"].post;
  assert.equal(
    train.requestBody.content["application/json"].schema.$ref,
    "#/components/schemas/TrainRequest",
  );
  assert.deepEqual(
    Object.keys(schemas.TrainRequest.properties).sort(),
    ["config", "dataset", "fold", "gpuMemory", "name", "network", "plan", "timeBudget"],
  );
  assert.deepEqual(schemas.TrainRequest.properties.network.enum, ["unet3d", "plain"]);
  assert.match(train.responses["400"].description, /invalid_plan/);
  assert.deepEqual(schemas.Job.properties.plan, { $ref: "#/components/schemas/JobPlan" });
  assert.deepEqual(schemas.JobPlan.properties.source.enum, ["request", "dataset", "new", "none"]);
  assert.ok(schemas.JobPlan.properties.budget && schemas.JobPlan.properties.targetSpacingMm);
  // Prediction jobs take a list of channel files.
  assert.deepEqual(
    schemas.FilePredictRequest.properties.input.oneOf.map((s: { type: string }) => s.type),
    ["string", "array"],
  );
  assert.ok(doc.paths["/v1/jobs/predict"].post.responses["422"]);
  const image = doc.paths["/dashboard/jobs/{id}/image"].get;
  assert.deepEqual(image.parameters.map((p: { name: string }) => p.name), ["id", "channel"]);
  // With a token every data route needs it, reads included; probes and the page stay open.
  assert.deepEqual(doc.paths["/v1/models"].get.security, [{ bearer: [] }]);
  assert.ok(doc.paths["/v1/models"].get.responses["401"]);
  assert.deepEqual(doc.paths["/healthz"].get.security, []);
  assert.deepEqual(doc.paths["/"].get.security, []);
  assert.ok(doc.components.schemas.Error);
});

Deno.test("GET / is the dashboard page; unknown routes are JSON 404s", testOpts, async () => {
  const { app } = await newServer();
  const res = await app.request("/");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /text\/html/);
  assert.match(await res.text(), /<h2>Models<\/h2>[\s\S]*<h2>Jobs<\/h2>/);
  assert.match(await assertError(await app.request("/v2/nothing"), 404, "not_found"), /openapi/);
});

Deno.test("with a token, data routes need it by default", testOpts, async () => {
  const { app } = await newServer({ token: "s3cret" });
  await assertError(await app.request("/v1/models"), 401, "unauthorized");
  await assertError(await app.request("/metrics"), 401, "unauthorized");
  await assertError(await app.request("/dashboard/jobs/x/image"), 401, "unauthorized");
  const ok = await app.request("/v1/models", { headers: { authorization: "Bearer s3cret" } });
  assert.equal(ok.status, 200);
  // The dashboard's static shell loads without it (it holds no data; its calls send the token).
  for (const path of ["/", "/dashboard/app.js", "/dashboard/app.css"]) {
    const page = await app.request(path);
    assert.equal(page.status, 200, path);
    await page.body?.cancel();
  }
});

Deno.test("job state folder defaults to <data-root>/.voxseg/jobs", testOpts, async () => {
  const { root } = await dataRoot();
  const server = await createApp({ dataRoot: root, acquireGpu: () => new Promise(() => {}) });
  assert.equal(server.context.store.dir, join(root, ".voxseg", "jobs"));
  assert.ok((await Deno.stat(join(root, ".voxseg", "jobs"))).isDirectory);
});
