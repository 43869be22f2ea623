/** Liveness, readiness, the device, Prometheus metrics. */

import { ApiError } from "../errors.ts";
import { errorResponse } from "./schemas.ts";
import { requireGpu, type ServerContext } from "../context.ts";
import type { RouteSpec } from "./table.ts";

export function healthRoutes(ctx: ServerContext): RouteSpec[] {
  return [
    {
      method: "GET",
      path: "/healthz",
      tag: "health",
      summary: "Liveness: the process answers",
      responses: { 200: { description: "alive", schema: { type: "object" } } },
      handler: (c) => c.json({ status: "ok" }),
    },
    {
      method: "GET",
      path: "/readyz",
      tag: "health",
      summary: "Readiness: GPU acquired, job state loaded, not shutting down",
      responses: {
        200: { description: "ready to take work", schema: { type: "object" } },
        503: errorResponse("not ready; the message says why"),
      },
      handler: (c) => {
        const reasons: string[] = [];
        if (!ctx.gpu()) {
          reasons.push(ctx.gpuError() ? `no GPU: ${ctx.gpuError()}` : "GPU not acquired yet");
        }
        if (ctx.draining()) reasons.push("shutting down");
        if (reasons.length) throw new ApiError(503, "not_ready", reasons.join("; "));
        return c.json({ status: "ready", gpu: ctx.gpu()!.description });
      },
    },
    {
      method: "GET",
      path: "/v1/device",
      tag: "health",
      summary: "The WebGPU adapter (backend, features, limits) and the GPU queue",
      responses: {
        200: { description: "adapter and scheduler state", schema: { type: "object" } },
        503: errorResponse("no GPU (yet)"),
      },
      handler: (c) => {
        requireGpu(ctx);
        return c.json({
          adapter: ctx.gpu(),
          scheduler: {
            holder: ctx.scheduler.holder,
            queueDepth: ctx.scheduler.queueDepth,
            maxQueue: ctx.scheduler.maxQueue,
            busySeconds: ctx.scheduler.busySeconds(),
          },
        });
      },
    },
    {
      method: "GET",
      path: "/metrics",
      tag: "health",
      summary: "Prometheus metrics: requests, latency, GPU queue and busy time, training loss",
      responses: { 200: { description: "text exposition format 0.0.4", types: ["text/plain"] } },
      handler: (c) =>
        c.body(ctx.metrics.render(), 200, {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
        }),
    },
  ];
}
