/**
 * Drain gate for a graceful stop: once the server is draining (SIGTERM), new mutating
 * requests get 503 with Retry-After while reads, health checks and event streams still work
 * and the GPU work already accepted finishes.
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";
import { SAFE_METHODS } from "../safe_methods.ts";

export interface DrainGateOptions {
  /** True once the server stops taking new work. */
  draining: () => boolean;
  /** Seconds a client should wait before retrying (on another replica or after restart). */
  retryAfterSeconds?: number;
}

/**
 * @example
 * app.use("*", drainGate({ draining: () => stopping }));
 */
export function drainGate(
  { draining, retryAfterSeconds = 5 }: DrainGateOptions,
): MiddlewareHandler {
  return async function drainGate(c, next) {
    if (draining() && !SAFE_METHODS.has(c.req.method)) {
      throw new ApiError(503, "shutting_down", "the server is shutting down; retry later", {
        "retry-after": String(retryAfterSeconds),
      });
    }
    await next();
  };
}
