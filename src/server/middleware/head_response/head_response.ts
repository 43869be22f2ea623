/**
 * HEAD answers without a body. Hono runs a HEAD request as its GET and drops the body it got
 * back without reading or cancelling it, so whatever that body held stays held: an event
 * stream's subscription and its stream slot (src/server/middleware/stream_limit/), an open
 * file, and the access-log line written when the body ends. This middleware cancels the body
 * of every HEAD response (which runs those end-of-body callbacks at once, with 0 bytes sent)
 * and answers with the headers alone. Register it first, outside every middleware that wraps
 * a response body.
 */

import type { MiddlewareHandler } from "hono";

/**
 * @example
 * app.use("*", headResponse());
 */
export function headResponse(): MiddlewareHandler {
  return async function headResponse(c, next) {
    await next();
    if (c.req.method !== "HEAD" || !c.res.body) return;
    const { body, status, statusText, headers } = c.res;
    // Not awaited: a body source slow to cancel must not delay the answer.
    body.cancel().catch(() => {});
    c.res = new Response(null, { status, statusText, headers });
  };
}
