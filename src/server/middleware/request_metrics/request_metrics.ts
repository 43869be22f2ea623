/**
 * Counts every request and its latency in {@link Metrics}, labelled by the matched route
 * pattern (`/v1/jobs/:id`, not the raw path) so the label set stays bounded — also when a
 * middleware refused the request before its route ran (401, 413); paths no route matches
 * share the label `unmatched`, and methods other than the standard ones the label `other`.
 * Register it before the routes: the last matched entry is then the route.
 */

import type { MiddlewareHandler } from "hono";
import type { Metrics } from "../../metrics.ts";
import { matchedRoute } from "../matched_route.ts";

/**
 * @example
 * app.use("*", requestMetrics(metrics));
 */
export function requestMetrics(metrics: Metrics): MiddlewareHandler {
  return async function requestMetrics(c, next) {
    const t0 = performance.now();
    try {
      await next();
    } finally {
      const route = matchedRoute(c);
      // Errors are rendered by onError before control returns here, so c.res is final.
      metrics.observeRequest(c.req.method, route, c.res.status, (performance.now() - t0) / 1000);
    }
  };
}
