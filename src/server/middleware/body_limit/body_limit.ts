/**
 * Request body size limit → 413. A declared `Content-Length` over the limit is refused before
 * any byte is read; a body without one (chunked) is counted as it streams and fails the read
 * that crosses the limit, so an oversized upload is never held in memory whole.
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../errors.ts";

export interface BodyLimitOptions {
  maxBytes: number;
}

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
export function bodyLimit({ maxBytes }: BodyLimitOptions): MiddlewareHandler {
  const tooLarge = () =>
    new ApiError(
      413,
      "payload_too_large",
      `request body exceeds the ${formatBytes(maxBytes)} limit (voxseg serve --max-body)`,
    );
  return async function bodyLimit(c, next) {
    const body = c.req.raw.body;
    if (!body) return await next();
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge();
    let seen = 0;
    const counter = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > maxBytes) controller.error(tooLarge());
        else controller.enqueue(chunk);
      },
    });
    c.req.raw = new Request(c.req.raw, {
      body: body.pipeThrough(counter),
      duplex: "half",
    } as RequestInit);
    await next();
  };
}
