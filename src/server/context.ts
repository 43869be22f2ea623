/**
 * What every route handler reaches: the server's parts (data root, job store and runner, model
 * registry, GPU scheduler, metrics) and its settings, plus the GPU-readiness gate the routes
 * that need the GPU share.
 */

import type { GpuInfo } from "../gpu/device.ts";
import type { MemoryBudget } from "./admission.ts";
import { ApiError } from "./errors.ts";
import type { JobRunner } from "./jobs/runner.ts";
import type { JobStore } from "./jobs/store.ts";
import type { Metrics } from "./metrics.ts";
import type { ModelRegistry } from "./models.ts";
import type { PacsRegistry } from "./pacs.ts";
import type { DataRoot } from "./paths.ts";
import type { GpuScheduler } from "./scheduler.ts";

/** Everything route handlers reach: the server's parts and its settings. */
export interface ServerContext {
  root: DataRoot;
  store: JobStore;
  runner: JobRunner;
  models: ModelRegistry;
  /** The PACS endpoints the operator configured (`serve --pacs`). */
  pacsEndpoints: PacsRegistry;
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
