/**
 * Request body size limit → 413. A declared `Content-Length` over the limit is refused before
 * any byte is read; a body without one (chunked) is counted as it streams and fails the read
 * that crosses the limit, so an oversized upload is never held in memory whole. The counting
 * stream is lazy: it pulls from the client only when the handler reads, so a handler that
 * refuses a request (admission, queue) does so with the body still unread.
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";

export interface BodyLimitOptions {
  maxBytes: number;
  /** Says where the limit comes from, in the 413 message. Default "voxseg serve --max-body". */
  source?: string;
}

/** The body limit of routes that take JSON (job requests) or nothing: 1 MiB. */
export const JSON_BODY_LIMIT = 2 ** 20;

/** Bytes as "1 GiB", "512 MiB", "10 KiB", "42 B". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i++;
  }
  return `${n} ${units[i]}`;
}

/**
 * Parses a size such as "1GiB", "512MiB", "10MB", "1024" (bytes); null when malformed.
 * Binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units; case-insensitive.
 */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  if (!m) return null;
  const unit = (m[2] ?? "b").toLowerCase();
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0]] ?? 0;
  const base = unit.includes("i") || unit.length === 1 && unit !== "b" ? 1024 : 1000;
  const value = Math.floor(Number(m[1]) * base ** power);
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}

/**
 * @example
 * app.use("*", bodyLimit({ maxBytes: 1024 ** 3 }));
 */
export function bodyLimit(
  { maxBytes, source = "voxseg serve --max-body" }: BodyLimitOptions,
): MiddlewareHandler {
  const tooLarge = () =>
    new ApiError(
      413,
      "payload_too_large",
      `request body exceeds the ${formatBytes(maxBytes)} limit (${source})`,
    );
  return async function bodyLimit(c, next) {
    const body = c.req.raw.body;
    if (!body) return await next();
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge();
    let seen = 0;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    const counted = new ReadableStream<Uint8Array>({
      async pull(controller) {
        reader ??= body.getReader();
        const { done, value } = await reader.read();
        if (done) return controller.close();
        seen += value.byteLength;
        if (seen > maxBytes) {
          controller.error(tooLarge());
          await reader.cancel().catch(() => {});
        } else {
          controller.enqueue(value);
        }
      },
      cancel: (reason) => (reader ?? body).cancel(reason),
    }, { highWaterMark: 0 }); // pull only when the handler reads
    c.req.raw = new Request(c.req.raw, { body: counted, duplex: "half" } as RequestInit);
    await next();
  };
}
