/**
 * API errors: every failure leaves the server as JSON `{"error": {"code", "message"}}` with the
 * status that fits. Handlers and middleware throw {@link ApiError}; the app's one `onError`
 * ({@link renderError}) turns anything thrown into such a response, so no request can take the
 * server down.
 */

import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { matchedRoute } from "./middleware/matched_route.ts";

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
  421: "host_not_allowed",
  503: "unavailable",
};

/** Endings of the files a server reads and writes: scans, labels, tables, checkpoints. */
const DATA_FILE = /\.(?:nii|gz|dcm|csv|tsv|json|jsonl|zarr|zip|npy|npz|safetensors|txt)$/i;

/**
 * `text` fit for the server log: quoted strings (which may hold file names or file contents —
 * a CSV row in a JSON parse error), paths absolute or relative (`patients/Doe/ct.nii.gz`),
 * bare data-file names (`Doe_John.nii.gz`) and DICOM UIDs replaced by placeholders.
 */
export function redactForLog(text: string): string {
  return text
    .replace(/"[^"\n]*"|'[^'\n]*'|`[^`\n]*`/g, '"…"')
    .replace(/(?<=^|[\s(=])(?:file:\/\/)?(?:[A-Za-z]:)?[\\/][^\s"'`,;()]*/g, "<path>")
    .replace(/[^\s"'`,;()<>]+?(?=[.:]*(?:[\s"'`,;()<>]|$))/g, (word) => {
      // A word with a slash and a letter is a relative path ("1/2" is a ratio, kept).
      if (/[\\/]/.test(word) && /[A-Za-z]/.test(word)) return "<path>";
      if (/^\d+(?:\.\d+){4,}$/.test(word)) return "<uid>"; // a DICOM UID names a study
      return DATA_FILE.test(word) ? "<file>" : word;
    });
}

/** The code locations of an error's stack (no message: that may hold data). */
function stackFrames(err: Error): string {
  return (err.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)).join("\n");
}

/**
 * A 500 `internal` answer for an unexpected failure. The client gets a generic message with
 * an error id; the log gets that id, where it happened, the error's kind, its message with
 * paths and quoted text redacted ({@link redactForLog}), and its stack's code locations.
 */
export function internalError(err: unknown, where: string): Response {
  const id = crypto.randomUUID().slice(0, 8);
  const e = err instanceof Error ? err : new Error(String(err));
  const frames = stackFrames(e);
  console.error(
    `voxseg serve: error ${id} in ${where}: ${e.name}: ${redactForLog(e.message)}` +
      (frames ? `\n${frames}` : ""),
  );
  return errorResponse(
    500,
    "internal",
    `internal error ${id}; the server's log has the details under this id`,
  );
}

/**
 * The app's `onError`: {@link ApiError} as is, other HTTP exceptions with a code for their
 * status, anything else as 500 `internal` through {@link internalError}: its message may hold
 * absolute paths or file contents, so it stays out of the answer.
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
  return internalError(err, `${c.req.method} ${matchedRoute(c)}`);
}
