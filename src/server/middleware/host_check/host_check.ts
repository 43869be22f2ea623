/**
 * Host allow-list, against DNS rebinding: a web page whose name an attacker re-points at
 * 127.0.0.1 reaches the server with its own name in `Host`, so only names the server is known
 * by are answered. Allowed: loopback names (`localhost`, `*.localhost`, `127.x.y.z`, `[::1]`),
 * any IP-literal Host (no DNS is involved), and the names the operator lists
 * (`--allowed-host`, `VOXSEG_ALLOWED_HOSTS`). Anything else is 421 Misdirected Request.
 * `anyHost` paths (health probes: load balancers and Kubernetes use the pod IP or any name)
 * answer every well-formed Host. A Host that is not `name[:port]`, `IPv4[:port]` or
 * `[IPv6]:port` is 400 on every path: Deno builds the request URL from it, so a Host holding
 * `/`, `?` or `#` (`evil.example/healthz?`) would otherwise rewrite the path that routing,
 * the probe exemption and the access log see.
 */

import type { MiddlewareHandler } from "hono";
import { isIP } from "node:net";
import { ApiError } from "../../errors.ts";

export interface HostCheckOptions {
  /** Extra host names (no port) clients use to reach the server; case-insensitive. */
  allowed?: readonly string[];
  /** Paths that answer any Host. */
  anyHost?: readonly string[];
}

/** One DNS label (letters, digits, "-", and "_" as some internal names use). */
const LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
/** A host name as a Host header may carry it (lower case, no trailing dot). */
const HOST_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);

/**
 * The host name of a `Host` header value (`name:port`, `[v6]:port`), lower case without a
 * trailing dot; undefined when the value is no host at all (empty, or holding characters
 * such as `/`, `?`, `#`, `@` that no host name has).
 */
export function hostName(host: string): string | undefined {
  const h = host.trim().toLowerCase();
  const v6 = /^\[([0-9a-f:.]+(?:%25[\w.~-]+|%[\w.~-]+)?)\](?::\d{1,5})?$/.exec(h);
  if (v6) return isIP(v6[1].replace(/%25/, "%")) === 6 ? `[${v6[1]}]` : undefined;
  const name = h.replace(/:\d{1,5}$/, "").replace(/\.$/, "");
  return HOST_NAME.test(name) ? name : undefined;
}

/** True for a host name (as {@link hostName} gives it) that no DNS answer can re-point. */
export function isFixedHost(name: string | undefined): boolean {
  if (name === undefined) return false;
  if (name === "localhost" || (name.endsWith(".localhost") && HOST_NAME.test(name))) return true;
  if (name.startsWith("[") && name.endsWith("]")) {
    return isIP(name.slice(1, -1).replace(/%25/, "%")) === 6;
  }
  return isIP(name) === 4;
}

/**
 * Checks and normalises an operator-given host name (`--allowed-host`); throws with the fix.
 */
export function allowedHostName(name: string, what = "--allowed-host"): string {
  const n = name.trim().toLowerCase().replace(/\.$/, "");
  if (
    !/^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(n)
  ) {
    throw new Error(
      `${what} takes a host name such as voxseg.example.org (no scheme, port or path), got "${
        name.slice(0, 100)
      }"`,
    );
  }
  return n;
}

/**
 * @example
 * app.use("*", hostCheck({ allowed: ["voxseg.example.org"], anyHost: ["/healthz"] }));
 */
export function hostCheck(options: HostCheckOptions = {}): MiddlewareHandler {
  const allowed = new Set((options.allowed ?? []).map((h) => hostName(h) ?? h.toLowerCase()));
  const anyHost = new Set(options.anyHost ?? []);
  return async function hostCheck(c, next) {
    // In-process requests (app.request) carry no Host header; their URL has the host.
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    const name = hostName(host);
    if (name === undefined) {
      throw new ApiError(
        400,
        "bad_host",
        "the Host header is not a host name or IP address with an optional port",
      );
    }
    if (anyHost.has(c.req.path)) return await next();
    if (!isFixedHost(name) && !allowed.has(name)) {
      throw new ApiError(
        421,
        "host_not_allowed",
        `this server does not answer to the host name "${name.slice(0, 100)}" (a guard ` +
          `against DNS rebinding); if clients reach it by that name, start it with ` +
          `--allowed-host ${name.slice(0, 100)} or VOXSEG_ALLOWED_HOSTS`,
      );
    }
    await next();
  };
}
