/** The route a request matched, as the metrics and the access log name it. */

import type { Context } from "hono";
import { routePath } from "hono/route";

/**
 * The matched route pattern (`/v1/jobs/:id`, never the raw path), or `unmatched` when only
 * the catch-all middleware matched. Valid once the middleware chain has run.
 */
export function matchedRoute(c: Context): string {
  const pattern = routePath(c, -1);
  return pattern === "*" || pattern === "/*" || pattern === "" ? "unmatched" : pattern;
}
