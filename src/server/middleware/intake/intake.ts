/**
 * Intake gate for a graceful stop: once the server is draining (SIGTERM), new mutating
 * requests get 503 with Retry-After while reads, health checks and event streams still work
 * and the GPU work already accepted finishes.
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";

export interface IntakeOptions {
  /** True once the server stops taking new work. */
  draining: () => boolean;
  /** Seconds a client should wait before retrying (on another replica or after restart). */
  retryAfterSeconds?: number;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * @example
 * app.use("*", intake({ draining: () => stopping }));
 */
export function intake({ draining, retryAfterSeconds = 5 }: IntakeOptions): MiddlewareHandler {
  return async function intake(c, next) {
    if (draining() && !SAFE_METHODS.has(c.req.method)) {
      throw new ApiError(503, "shutting_down", "the server is shutting down; retry later", {
        "retry-after": String(retryAfterSeconds),
      });
    }
    await next();
  };
}
