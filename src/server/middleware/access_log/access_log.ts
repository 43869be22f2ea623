/**
 * The access log: one JSON line per request — time, client address, token name, method, route
 * pattern, status, the job id or model name the route is about, bytes sent, milliseconds — so
 * an operator can answer "which client read this job's data". It holds no raw path, query
 * string, file name or header value: only the route pattern (`/v1/jobs/:id`) and ids that the
 * server itself issued or serves. Lines are queued and written by a background writer: the
 * request path only enqueues. A streamed response is logged when its body ends.
 */

import type { MiddlewareHandler } from "hono";
import { metricMethod } from "../../metrics.ts";
import { matchedRoute } from "../matched_route.ts";
import { onResponseEnd } from "../response_end.ts";

/** One access-log line. */
export interface AccessRecord {
  /** When the request arrived (ISO 8601, UTC). */
  time: string;
  /** The client's IP address, when the server knows it. */
  client: string | null;
  /** The name of the token the request carried (see --token-file), or null. */
  token: string | null;
  method: string;
  /** The matched route pattern, or `unmatched`. */
  route: string;
  status: number;
  /** The job the request was about (its `:id`, or the job it created). */
  job?: string;
  /** The model the request was about (its `:name`). */
  model?: string;
  /** Body bytes sent. */
  bytes: number;
  /** Milliseconds from the request to the end of its response body. */
  ms: number;
}

/** Where access-log lines go. */
export interface AccessLogSink {
  /** Queues a record; never blocks and never throws. */
  push(record: AccessRecord): void;
}

/** Ids and names that may appear in the log: the server's own job ids and model names. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Lines queued when writing stalls; beyond this, lines are counted as dropped. */
const MAX_PENDING = 10_000;

/**
 * JSON lines written in order by one background writer.
 *
 * @example
 * const log = AccessLog.stream(Deno.stderr);
 * log.push(record);
 * await log.flush();
 */
export class AccessLog implements AccessLogSink {
  readonly #write: (bytes: Uint8Array) => Promise<unknown>;
  readonly #close: () => void;
  #pending: string[] = [];
  #draining: Promise<void> | undefined;
  #failed = false;
  /** Lines lost because the writer fell behind or failed. */
  dropped = 0;

  constructor(write: (bytes: Uint8Array) => Promise<unknown>, close: () => void = () => {}) {
    this.#write = write;
    this.#close = close;
  }

  /** A log on an open writer (stdout, stderr, a file), written in full each time. */
  static stream(w: { write(p: Uint8Array): Promise<number> }, close?: () => void): AccessLog {
    return new AccessLog(async (bytes) => {
      let done = 0;
      while (done < bytes.length) done += await w.write(bytes.subarray(done));
    }, close);
  }

  /** A log appended to `path` (created with mode 0600: it names clients). */
  static async file(path: string): Promise<AccessLog> {
    const f = await Deno.open(path, { append: true, create: true, mode: 0o600 });
    return AccessLog.stream(f, () => f.close());
  }

  push(record: AccessRecord): void {
    if (this.#pending.length >= MAX_PENDING || this.#failed) {
      this.dropped++;
      return;
    }
    this.#pending.push(JSON.stringify(record) + "\n");
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  /** Resolves once every line queued so far is written. */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Flushes and closes the writer. */
  async close(): Promise<void> {
    await this.flush();
    this.#close();
  }

  async #drain(): Promise<void> {
    await Promise.resolve(); // start after the request's own work, never inside it
    const encoder = new TextEncoder();
    while (this.#pending.length) {
      const batch = this.#pending.join("");
      this.#pending = [];
      try {
        await this.#write(encoder.encode(batch));
      } catch (e) {
        this.#failed = true;
        this.dropped += batch.split("\n").length - 1 + this.#pending.length;
        this.#pending = [];
        console.error(`voxseg serve: the access log stopped: ${(e as Error).name}`);
      }
    }
  }
}

/** The value of path parameter `name` in `path` matched by `pattern`, if any. */
function param(pattern: string, path: string, name: string): string | undefined {
  const p = pattern.split("/");
  const i = p.indexOf(`:${name}`);
  if (i < 0) return undefined;
  const v = path.split("/")[i];
  try {
    return v === undefined ? undefined : decodeURIComponent(v);
  } catch {
    return undefined;
  }
}

/**
 * @example
 * app.use("*", accessLog(AccessLog.stream(Deno.stderr)));
 */
export function accessLog(sink: AccessLogSink): MiddlewareHandler {
  return async function accessLog(c, next) {
    const t0 = performance.now();
    const time = new Date().toISOString();
    await next();
    const route = matchedRoute(c);
    const status = c.res.status;
    // A 404 names something that does not exist: whatever the client typed, not logged.
    const known = status !== 404;
    const created = /^\/v1\/jobs\/([^/]+)$/.exec(c.res.headers.get("location") ?? "")?.[1];
    const job = created ?? (known ? param(route, c.req.path, "id") : undefined);
    const model = known ? param(route, c.req.path, "name") : undefined;
    const remote = (c.env as { remoteAddr?: { hostname?: string } } | undefined)?.remoteAddr;
    const record = (bytes: number): AccessRecord => ({
      time,
      client: remote?.hostname ?? null,
      token: c.get("tokenName") ?? null,
      method: metricMethod(c.req.method),
      route,
      status,
      ...(job && ID.test(job) ? { job } : {}),
      ...(model && ID.test(model) ? { model } : {}),
      bytes,
      ms: Math.round(performance.now() - t0),
    });
    c.res = onResponseEnd(c.res, (bytes) => sink.push(record(bytes)));
  };
}
