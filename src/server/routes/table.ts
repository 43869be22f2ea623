/**
 * The route table's types: each route is declared once — method, path, what it takes and
 * answers, its handler — and that one declaration registers it in Hono, gates its request
 * body's content type, and describes it in /openapi.json.
 */

import type { Handler } from "hono";
import type { MemoryBudget } from "../admission.ts";
import { ApiError } from "../errors.ts";
import type { GpuInfo } from "../../gpu/device.ts";
import type { JobRunner } from "../jobs/runner.ts";
import type { JobStore } from "../jobs/store.ts";
import type { Metrics } from "../metrics.ts";
import type { ModelRegistry } from "../models.ts";
import type { DataRoot } from "../paths.ts";
import type { GpuScheduler } from "../scheduler.ts";

/** A JSON Schema fragment, as OpenAPI 3.1 embeds it. */
export type JsonSchema = Record<string, unknown>;

export interface ResponseSpec {
  description: string;
  /** Media types of the body; default application/json for 2xx, the error body otherwise. */
  types?: readonly string[];
  schema?: JsonSchema;
  headers?: Record<string, string>;
}

export interface RouteSpec {
  method: "GET" | "POST" | "DELETE";
  /** Hono syntax (`/v1/jobs/:id`); OpenAPI gets `{id}`. */
  path: string;
  summary: string;
  description?: string;
  tag: "health" | "models" | "jobs" | "dashboard";
  /**
   * Request body: the content types accepted (others → 415) and its size limit (default
   * JSON_BODY_LIMIT, 1 MiB; larger → 413).
   */
  body?: { types: readonly string[]; description: string; schema?: JsonSchema; maxBytes?: number };
  query?: { name: string; description: string; schema: JsonSchema }[];
  responses: Record<number, ResponseSpec>;
  handler: Handler;
}

/** Everything route handlers reach: the server's parts and its settings. */
export interface ServerContext {
  root: DataRoot;
  store: JobStore;
  runner: JobRunner;
  models: ModelRegistry;
  scheduler: GpuScheduler;
  metrics: Metrics;
  /** The adapter, once acquired. */
  gpu(): GpuInfo | undefined;
  /** Why the GPU could not be acquired, if it could not. */
  gpuError(): string | undefined;
  /** True once the server stops taking work (SIGTERM). */
  draining(): boolean;
  /** Aborted when the server shuts down: ends event streams. */
  shutdownSignal: AbortSignal;
  /** Request body limit; a gzipped volume may expand to {@link GUNZIP_FACTOR} times it. */
  maxBodyBytes: number;
  /** Host memory the synchronous predictions may hold at once (--memory-budget). */
  admission: MemoryBudget;
  version: string;
}

/** How far a gzipped request body may expand, as a multiple of the body limit. */
export const GUNZIP_FACTOR = 4;

/** Throws 503 `gpu_unavailable` unless the GPU has been acquired. */
export function requireGpu(ctx: ServerContext): void {
  if (ctx.gpu()) return;
  throw new ApiError(
    503,
    "gpu_unavailable",
    ctx.gpuError() ? `no GPU: ${ctx.gpuError()}` : "the GPU is still being acquired; retry shortly",
    { "retry-after": "5" },
  );
}
