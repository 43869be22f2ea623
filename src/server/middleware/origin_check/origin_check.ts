/**
 * Cross-origin writes refused: a mutating request (any method but GET, HEAD, OPTIONS) that a
 * browser sends from another site's page carries that page's `Origin`, and `Sec-Fetch-Site:
 * cross-site` or `same-site`. Either one not naming this server gets 403, so a page cannot
 * drive the server through the user's browser — also not with a body-less "simple" POST (job
 * resume), which needs no CORS preflight. Requests without those headers (curl, scripts) pass:
 * they are not a browser acting for someone else, and the token still guards them.
 *
 * "This server" is the request's own origin: its `Host` under the scheme it arrived by (or the
 * one a TLS-terminating proxy reports in `X-Forwarded-Proto`).
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";
import { SAFE_METHODS } from "../safe_methods.ts";

/** The origins a same-origin browser request to this server may send. */
function ownOrigins(url: string, host: string | undefined, forwardedProto?: string): string[] {
  const own = new URL(url);
  const schemes = new Set([own.protocol]);
  const proto = forwardedProto?.split(",")[0].trim().toLowerCase();
  if (proto === "http" || proto === "https") schemes.add(`${proto}:`);
  const out: string[] = [];
  for (const scheme of schemes) {
    try {
      out.push(new URL(`${scheme}//${host ?? own.host}`).origin);
    } catch {
      // a Host that is no host: nothing matches it
    }
  }
  return out;
}

/**
 * @example
 * app.use("*", originCheck());
 */
export function originCheck(): MiddlewareHandler {
  return async function originCheck(c, next) {
    if (SAFE_METHODS.has(c.req.method)) return await next();
    const site = c.req.header("sec-fetch-site")?.toLowerCase();
    if (site === "cross-site" || site === "same-site") {
      throw new ApiError(
        403,
        "cross_origin",
        `${c.req.method} from another site's page is refused (Sec-Fetch-Site: ${site}); ` +
          "call the API from the dashboard on this server or from a script",
      );
    }
    const origin = c.req.header("origin");
    if (origin === undefined) return await next();
    const own = ownOrigins(c.req.url, c.req.header("host"), c.req.header("x-forwarded-proto"));
    let given: string | undefined;
    try {
      given = new URL(origin).origin;
    } catch {
      given = undefined; // "null" (sandboxed pages, files) and garbage
    }
    if (given === undefined || given === "null" || !own.includes(given)) {
      throw new ApiError(
        403,
        "cross_origin",
        `${c.req.method} with an Origin other than this server's own (${
          own[0] ?? "unknown"
        }) is refused: a page from elsewhere may not change data here`,
      );
    }
    await next();
  };
}
