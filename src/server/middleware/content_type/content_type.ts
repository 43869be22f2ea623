/**
 * Content-type gate for request bodies → 415 when the type is missing or not one the route
 * takes. Types match on the media type alone (parameters such as `charset` are ignored);
 * an entry ending in `*` matches by prefix (`application/x-nifti*`).
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";

/** The media type of a Content-Type header, lower-case, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0].trim().toLowerCase();
}

/** True when `type` is one of `accepted` (entries ending in `*` match by prefix). */
export function typeMatches(type: string, accepted: readonly string[]): boolean {
  return accepted.some((a) => a.endsWith("*") ? type.startsWith(a.slice(0, -1)) : type === a);
}

/**
 * @example
 * app.post("/v1/jobs/train", requireContentType(["application/json"]), handler);
 */
export function requireContentType(accepted: readonly string[]): MiddlewareHandler {
  return async function requireContentType(c, next) {
    const type = mediaType(c.req.header("content-type"));
    if (!typeMatches(type, accepted)) {
      throw new ApiError(
        415,
        "unsupported_media_type",
        `${type ? `Content-Type ${type} is not accepted` : "Content-Type is missing"}; ` +
          `send one of ${accepted.join(", ")}`,
      );
    }
    await next();
  };
}
