/**
 * Bearer-token authentication. With tokens configured, every request (scope "all", the
 * default) — or, with the opt-in scope "mutating", every request but GET, HEAD and OPTIONS —
 * must carry `Authorization: Bearer <token>` matching one of them; anything else is 401.
 * `public` GET paths (health probes, the dashboard's static shell) stay open. Without tokens
 * nothing is checked (the server then refuses to bind a non-loopback address; see
 * src/cli/serve.ts). The matching token's name is set as `tokenName` for later middleware
 * (the access log).
 */

import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "node:crypto";
import { ApiError } from "../../errors.ts";
import { SAFE_METHODS } from "../safe_methods.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** The name of the bearer token that authenticated the request. */
    tokenName: string;
  }
}

export type AuthScope = "mutating" | "all";

/** Tokens by client name (`default` for a bare token). */
export type TokenSet = ReadonlyMap<string, string>;

export interface BearerAuthOptions {
  /** The shared secrets by name; empty or undefined turns authentication off. */
  tokens?: TokenSet;
  /** Which requests need a token. Default "all". */
  scope?: AuthScope;
  /**
   * GET/HEAD paths that never need the token: health probes, and static files a browser
   * loads before it can send a header (the dashboard page and its assets; they hold no data).
   */
  public?: readonly string[];
}

const OPEN_METHODS = new Set(["GET", "HEAD"]);
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** A token's client name: what the access log shows. */
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * What a token may hold: visible ASCII, no spaces. A header carries only that, so a token
 * with a space, a newline or a non-ASCII letter could never match and would lock every
 * client out.
 */
export const TOKEN_CHARS = /^[\x21-\x7e]+$/;

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
 * The name of the token in `digests` equal to `given`, or undefined. Every token is compared,
 * each in constant time, whether or not an earlier one matched, so the time taken tells
 * neither whether nor which token matched.
 */
async function matchToken(
  given: string,
  digests: readonly { name: string; digest: Uint8Array }[],
): Promise<string | undefined> {
  const g = await digest(given);
  let found: string | undefined;
  for (const t of digests) {
    const equal = timingSafeEqual(g, t.digest);
    found = equal ? t.name : found;
  }
  return found;
}

/**
 * Tokens from a token file: one per line, `name:token`, or a bare token (named `default`);
 * blank lines and `#` comments are skipped. Errors name the line, never its content.
 *
 * @example
 * parseTokenFile("# clients\nscanner:9f8e…\nviewer:77aa…\n");
 */
export function parseTokenFile(text: string, what = "the token file"): Map<string, string> {
  const tokens = new Map<string, string>();
  const lineOf = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const n = i + 1;
    const colon = line.indexOf(":");
    const name = colon < 0 ? "default" : line.slice(0, colon).trim();
    const token = colon < 0 ? line : line.slice(colon + 1).trim();
    if (!TOKEN_NAME.test(name)) {
      throw new Error(
        `${what}, line ${n}: the name before ":" must be 1–64 letters, digits, ".", "_" or "-"`,
      );
    }
    if (!TOKEN_CHARS.test(token)) {
      throw new Error(
        `${what}, line ${n}: expected "name:token" or a bare token; a token is visible ` +
          "ASCII without spaces",
      );
    }
    if (tokens.has(name)) {
      throw new Error(
        `${what}, line ${n}: the name is already used on line ${lineOf.get(name)}` +
          (name === "default" ? " (a bare token is named default; name each one)" : ""),
      );
    }
    for (const [other, t] of tokens) {
      if (t === token) {
        throw new Error(`${what}, line ${n}: the same token as line ${lineOf.get(other)}`);
      }
    }
    tokens.set(name, token);
    lineOf.set(name, n);
  });
  if (!tokens.size) throw new Error(`${what} holds no token (lines "name:token" or a token)`);
  return tokens;
}

/**
 * @example
 * app.use("*", bearerAuth({ tokens: new Map([["default", Deno.env.get("VOXSEG_TOKEN")!]]) }));
 */
export function bearerAuth(options: BearerAuthOptions): MiddlewareHandler {
  const { scope = "all" } = options;
  const tokens = [...(options.tokens ?? new Map<string, string>())];
  for (const [name, token] of tokens) {
    // Fail closed: dropping a bad token silently would leave the server open to all.
    if (!TOKEN_CHARS.test(token)) {
      throw new Error(`bearer token "${name}" is empty or holds spaces or non-ASCII characters`);
    }
  }
  const open = new Set(options.public ?? []);
  const digests = Promise.all(
    tokens.map(async ([name, token]) => ({ name, digest: await digest(token) })),
  );
  return async function bearerAuth(c, next) {
    if (!tokens.length) return await next();
    const method = c.req.method;
    const header = c.req.header("authorization");
    const optional = (scope === "mutating" && SAFE_METHODS.has(method)) ||
      (OPEN_METHODS.has(method) && open.has(c.req.path));
    if (optional) {
      // Open to all; a valid token still names the client in the access log.
      const given = header && BEARER.exec(header)?.[1];
      const name = given ? await matchToken(given, await digests) : undefined;
      if (name !== undefined) c.set("tokenName", name);
      return await next();
    }
    if (!header) {
      throw new ApiError(401, "unauthorized", "missing Authorization: Bearer <token>", {
        "www-authenticate": 'Bearer realm="voxseg"',
      });
    }
    const match = BEARER.exec(header);
    const name = match ? await matchToken(match[1], await digests) : undefined;
    if (name === undefined) {
      throw new ApiError(401, "unauthorized", "invalid bearer token", {
        "www-authenticate": 'Bearer realm="voxseg", error="invalid_token"',
      });
    }
    c.set("tokenName", name);
    await next();
  };
}
