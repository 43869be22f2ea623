/**
 * API errors: every failure leaves the server as JSON `{"error": {"code", "message"}}` with the
 * status that fits. Handlers and middleware throw {@link ApiError}; the app's one `onError`
 * ({@link renderError}) turns anything thrown into such a response, so no request can take the
 * server down.
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** An HTTP failure with a stable machine-readable `code` (snake_case) and extra headers. */
export class ApiError extends HTTPException {
  override name = "ApiError";
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(
    status: ContentfulStatusCode,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(status, { message });
    this.code = code;
    this.headers = headers;
  }

  override getResponse(): Response {
    return errorResponse(
      this.status as ContentfulStatusCode,
      this.code,
      this.message,
      this.headers,
    );
  }
}

/** A JSON error response. */
export function errorResponse(
  status: ContentfulStatusCode,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  const body: ErrorBody = { error: { code, message } };
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** Codes for statuses raised by code that does not name one (Hono's own HTTPExceptions). */
const CODE_BY_STATUS: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  503: "unavailable",
};

/**
 * The app's `onError`: {@link ApiError} as is, other HTTP exceptions with a code for their
 * status, anything else as 500 `internal` (logged, message kept: the server's users are its
 * operators, and the message is what they need to act on).
 */
export function renderError(err: Error, c: Context): Response {
  if (err instanceof ApiError) return err.getResponse();
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    return errorResponse(
      status,
      CODE_BY_STATUS[status] ?? "error",
      err.message || `HTTP ${status}`,
    );
  }
  console.error(`voxseg serve: ${c.req.method} ${c.req.path} failed:`, err);
  return errorResponse(500, "internal", `${err.name}: ${err.message}`);
}
