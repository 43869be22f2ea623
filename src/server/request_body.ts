/**
 * Reading a request body whole, for uploads that cannot be decoded as they stream (a zip's
 * directory is at its end; a multipart body is split on delimiters): into one buffer of its
 * Content-Length when it declares one, so the body is held once, and the broken connections of
 * clients that go away mid-upload reported as their fault (400), not the server's.
 */

import { ApiError } from "./errors.ts";
import type { AdmissionContext, Reservation } from "./admission.ts";
import { concatBytes } from "../base/bytes.ts";

/** What a client that closes or breaks its connection mid-body makes a body read throw. */
const CONNECTION_ERRORS = [
  Deno.errors.BadResource,
  Deno.errors.Http,
  Deno.errors.ConnectionReset,
  Deno.errors.ConnectionAborted,
  Deno.errors.UnexpectedEof,
  Deno.errors.Interrupted,
];

/** True when `e` says the client closed or broke the connection while sending its body. */
export function isConnectionError(e: unknown): boolean {
  return CONNECTION_ERRORS.some((E) => e instanceof E);
}

/** The 400 of a body that ended before its Content-Length (the connection closed). */
export function incompleteBody(): ApiError {
  return new ApiError(
    400,
    "incomplete_body",
    "the request body ended before its Content-Length (the connection closed); resend it",
  );
}

/**
 * The whole body of `request`. With `declared` (Content-Length) it is read into one buffer of
 * that size, and a body longer or shorter than that is a 400; without, its chunks are joined at
 * the end, for which `share` briefly grows to twice the body (503/413 when that does not fit).
 * The body limit itself is the route's (the body-limit middleware fails the read past it).
 */
export async function readWholeBody(
  request: Request,
  declared: number | undefined,
  share: Reservation,
  admission: AdmissionContext,
): Promise<Uint8Array<ArrayBuffer>> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  try {
    return declared === undefined
      ? await readChunks(reader, share, admission)
      : await readExactly(reader, declared);
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (isConnectionError(e)) throw incompleteBody();
    throw e;
  }
}

type BodyReader = ReadableStreamDefaultReader<Uint8Array>;

async function readExactly(reader: BodyReader, declared: number): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(declared);
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (got + value.length > declared) {
      throw new ApiError(
        400,
        "bad_request",
        `the body is longer than its Content-Length of ${declared} bytes; send the length it has`,
      );
    }
    out.set(value, got);
    got += value.length;
  }
  if (got < declared) throw incompleteBody();
  return out;
}

async function readChunks(
  reader: BodyReader,
  share: Reservation,
  admission: AdmissionContext,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  // The chunks and the joined copy exist together for a moment.
  if (2 * total > share.bytes) share.resize(2 * total, admission);
  return concatBytes(chunks, total);
}

/**
 * An upload read whole under the request's share of the memory budget (`share` grows to the
 * body's size): the bytes, and how to name the budget's further reservations for it. An empty
 * body is a 400 with `empty`'s code and message.
 */
export async function readUploadBody(
  request: Request,
  o: { declared?: number; share: Reservation; retryAfterSeconds: () => number },
  empty: { code: string; message: string },
): Promise<{ body: Uint8Array; admission: (what: string) => AdmissionContext }> {
  const admission = (what: string): AdmissionContext => ({
    what,
    retryAfterSeconds: o.retryAfterSeconds(),
  });
  const body = await readWholeBody(request, o.declared, o.share, admission("the upload"));
  if (body.length === 0) throw new ApiError(400, empty.code, empty.message);
  o.share.resize(body.length, admission("the upload"));
  return { body, admission };
}
