/**
 * Bearer-token authentication. With a token configured, mutating requests (every method but
 * GET, HEAD and OPTIONS) — or, with `scope: "all"`, every request — must carry
 * `Authorization: Bearer <token>`; anything else is 401. Without a token nothing is checked
 * (the server then refuses to bind a non-loopback address; see src/cli/serve.ts).
 */

import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "node:crypto";
import { ApiError } from "../../errors.ts";

export type AuthScope = "mutating" | "all";

export interface BearerAuthOptions {
  /** The shared secret; undefined or "" turns authentication off. */
  token?: string;
  /** Which requests need the token. Default "mutating". */
  scope?: AuthScope;
  /**
   * GET/HEAD paths that never need the token, even with scope "all": static files a browser
   * loads before it can send a header (the dashboard page and its assets; they hold no data).
   */
  public?: readonly string[];
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** SHA-256 of a string: equal-length inputs for a constant-time comparison. */
async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * True when `given` equals `expected`, in time independent of where they differ and of the
 * given token's length (both are hashed to 32 bytes first).
 */
export async function tokensEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  return timingSafeEqual(a, b);
}

/**
 * @example
 * app.use("*", bearerAuth({ token: Deno.env.get("VOXSEG_TOKEN"), scope: "mutating" }));
 */
export function bearerAuth(options: BearerAuthOptions): MiddlewareHandler {
  const { token, scope = "mutating" } = options;
  const open = new Set(options.public ?? []);
  return async function bearerAuth(c, next) {
    const safe = SAFE_METHODS.has(c.req.method);
    if (!token || (safe && (scope === "mutating" || open.has(c.req.path)))) return await next();
    const challenge = { "www-authenticate": 'Bearer realm="voxseg"' };
    const header = c.req.header("authorization");
    if (!header) {
      throw new ApiError(401, "unauthorized", "missing Authorization: Bearer <token>", challenge);
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match || !(await tokensEqual(match[1], token))) {
      throw new ApiError(401, "unauthorized", "invalid bearer token", {
        "www-authenticate": 'Bearer realm="voxseg", error="invalid_token"',
      });
    }
    await next();
  };
}
