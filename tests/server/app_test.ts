/** The parts createApp is assembled from, each on its own. */

import assert from "node:assert/strict";
import { Hono } from "hono";
import { onServerError, startAcquiringGpu, tokensOf } from "../../src/server/app.ts";
import { ApiError } from "../../src/server/errors.ts";
import type { GpuInfo } from "../../src/gpu/device.ts";
import { QueueFullError } from "../../src/server/scheduler.ts";

Deno.test("startAcquiringGpu: the adapter once acquired; a failure kept as its message", async () => {
  const info = { description: "test adapter" } as GpuInfo;
  let resolve!: (g: { info: GpuInfo }) => void;
  const ok = startAcquiringGpu(() => new Promise((r) => resolve = r));
  assert.equal(ok.info(), undefined);
  resolve({ info });
  await ok.ready;
  assert.equal(ok.info(), info);
  assert.equal(ok.error(), undefined);

  const failed = startAcquiringGpu(() => Promise.reject(new Error("no Vulkan loader")));
  await assert.rejects(failed.ready, /no Vulkan loader/);
  assert.equal(failed.info(), undefined);
  assert.equal(failed.error(), "no Vulkan loader");
});

Deno.test("tokensOf: the token file's names, plus the single token as default", () => {
  assert.deepEqual([...tokensOf({})], []);
  assert.deepEqual(
    [...tokensOf({ tokens: new Map([["ci", "a"]]), token: "b" })],
    [["ci", "a"], ["default", "b"]],
  );
});

Deno.test("onServerError: a full queue is 503 queue_full with Retry-After; others rendered", async () => {
  const app = new Hono();
  app.get("/full", () => {
    throw new QueueFullError(7, 16);
  });
  app.get("/gone", () => {
    throw new ApiError(404, "not_found", "no such thing");
  });
  app.onError(onServerError);
  const full = await app.request("/full");
  assert.equal(full.status, 503);
  assert.equal(full.headers.get("retry-after"), "7");
  assert.equal((await full.json()).error.code, "queue_full");
  const gone = await app.request("/gone");
  assert.equal(gone.status, 404);
  assert.equal((await gone.json()).error.code, "not_found");
});
