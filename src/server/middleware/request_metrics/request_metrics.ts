/**
 * Counts every request and its latency in {@link Metrics}, labelled by the matched route
 * pattern (`/v1/jobs/:id`, not the raw path) so the label set stays bounded — also when a
 * middleware refused the request before its route ran (401, 413); paths no route matches
 * share the label `unmatched`. Register it before the routes: the last matched entry is then
 * the route.
 */

import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { Metrics } from "../../metrics.ts";

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
      const pattern = routePath(c, -1);
      const route = pattern === "*" || pattern === "/*" || pattern === "" ? "unmatched" : pattern;
      // Errors are rendered by onError before control returns here, so c.res is final.
      metrics.observeRequest(c.req.method, route, c.res.status, (performance.now() - t0) / 1000);
    }
  };
}
