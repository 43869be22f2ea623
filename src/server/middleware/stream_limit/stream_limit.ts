/**
 * A cap on long-lived responses (server-sent event streams): at most `total` open at once
 * server-wide and `perKey` per key (per job), so idle followers cannot hold every socket and
 * timer. Over the cap → 503 `too_many_streams` with `Retry-After`. A slot is held from the
 * request until its response body ends or the client goes away.
 */

import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";
import { onResponseEnd } from "../response_end.ts";

export interface StreamLimits {
  /** Open streams server-wide. */
  total: number;
  /** Open streams per key. */
  perKey: number;
}

/** Default caps: event streams server-wide and per job. */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { total: 64, perKey: 16 };

/** The open streams, counted server-wide and by key. */
export class StreamSlots {
  readonly limits: StreamLimits;
  #total = 0;
  readonly #byKey = new Map<string, number>();

  constructor(limits: StreamLimits = DEFAULT_STREAM_LIMITS) {
    this.limits = limits;
  }

  /** Streams open now. */
  get open(): number {
    return this.#total;
  }

  /** Takes a slot for `key`: its release function (idempotent), or undefined when full. */
  acquire(key: string): (() => void) | undefined {
    const n = this.#byKey.get(key) ?? 0;
    if (this.#total >= this.limits.total || n >= this.limits.perKey) return undefined;
    this.#total++;
    this.#byKey.set(key, n + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#total--;
      const left = (this.#byKey.get(key) ?? 1) - 1;
      if (left) this.#byKey.set(key, left);
      else this.#byKey.delete(key);
    };
  }
}

/**
 * @example
 * app.use("/v1/jobs/:id/events", streamLimit(new StreamSlots(), (c) => c.req.param("id")!));
 */
export function streamLimit(
  slots: StreamSlots,
  key: (c: Context) => string,
  retryAfterSeconds = 10,
): MiddlewareHandler {
  return async function streamLimit(c, next) {
    const k = key(c);
    const release = slots.acquire(k);
    if (!release) {
      const perKey = slots.open < slots.limits.total;
      throw new ApiError(
        503,
        "too_many_streams",
        perKey
          ? `${slots.limits.perKey} event streams are already open for this job; close one or retry later`
          : `${slots.limits.total} event streams are already open on this server; retry later`,
        { "retry-after": String(retryAfterSeconds) },
      );
    }
    try {
      await next();
    } catch (e) {
      release();
      throw e;
    }
    // An error answer ends at once; a stream holds its slot until it ends.
    if (/^text\/event-stream/.test(c.res.headers.get("content-type") ?? "")) {
      c.res = onResponseEnd(c.res, release);
    } else release();
  };
}
