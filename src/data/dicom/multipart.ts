/**
 * `multipart/related` bodies as DICOMweb uses them (RFC 2046 framing, RFC 2387 type): WADO-RS
 * answers a series as one part per instance, STOW-RS sends instances the same way.
 *
 * Parsing works on bytes, never on decoded text, because the parts are binary DICOM. Parts are
 * views into the body (no copy per part), found by a Boyer–Moore–Horspool search for the
 * delimiter, or by a part's own Content-Length when the delimiter sits exactly where it says;
 * so a body of N bytes is read in O(N), whatever the number of parts.
 *
 * Framing is read leniently where servers differ and strictly where a mistake would cut a part
 * in the wrong place: a delimiter may end its line with CRLF or a bare LF and carry transport
 * padding (spaces, tabs); the preamble before the first delimiter and the epilogue after the
 * last are ignored; a body that ends before the closing delimiter is an error, never a short
 * last part.
 */

import { concatBytes } from "../../base/bytes.ts";

/** One part of a multipart body: its headers and a view of its bytes inside the body. */
export interface MultipartPart {
  headers: Headers;
  body: Uint8Array;
}

/** Limits on what a parser accepts, so that a hostile server cannot exhaust memory. */
export interface MultipartLimits {
  /** Most bytes of body read; default {@link DEFAULT_MAX_MULTIPART_BYTES}. */
  maxTotalBytes?: number;
  /** Most parts accepted; default {@link DEFAULT_MAX_MULTIPART_PARTS}. */
  maxParts?: number;
}

/** 1 GiB: a thin-slice whole-body CT series is a few hundred MB. */
export const DEFAULT_MAX_MULTIPART_BYTES = 1 << 30;
/** Thin-slice series reach a few thousand instances; each part costs a Headers object. */
export const DEFAULT_MAX_MULTIPART_PARTS = 100_000;
/** A part's header block is a few short lines; anything longer is not a part header. */
const MAX_HEADER_BYTES = 16 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** A media type with its parameters (names lower-cased, quoted values unquoted). */
export interface MediaType {
  /** `type/subtype`, lower-cased. */
  type: string;
  params: Record<string, string>;
}

/**
 * Parses a Content-Type value such as `multipart/related; type="application/dicom";
 * boundary="a;b"` (RFC 9110 media type: quoted strings may hold `;` and backslash escapes).
 */
export function parseMediaType(value: string): MediaType {
  const semicolon = value.indexOf(";");
  const type = (semicolon < 0 ? value : value.slice(0, semicolon)).trim().toLowerCase();
  const params: Record<string, string> = {};
  let i = semicolon < 0 ? value.length : semicolon + 1;
  while (i < value.length) {
    const eq = value.indexOf("=", i);
    if (eq < 0) break;
    const name = value.slice(i, eq).trim().toLowerCase();
    let j = eq + 1;
    while (value[j] === " " || value[j] === "\t") j++;
    let param = "";
    if (value[j] === '"') {
      j++;
      while (j < value.length && value[j] !== '"') {
        if (value[j] === "\\" && j + 1 < value.length) j++;
        param += value[j++];
      }
      j = value.indexOf(";", j);
    } else {
      const end = value.indexOf(";", j);
      param = value.slice(j, end < 0 ? value.length : end).trim();
      j = end;
    }
    if (name) params[name] = param;
    if (j < 0) break;
    i = j + 1;
  }
  return { type, params };
}

/**
 * The boundary of a `multipart/*` Content-Type value; throws when the value is not multipart or
 * names no boundary.
 */
export function multipartBoundary(contentType: string): string {
  const { type, params } = parseMediaType(contentType);
  if (!type.startsWith("multipart/")) {
    throw new Error(`expected a multipart body, got Content-Type "${type || "(none)"}"`);
  }
  const boundary = params.boundary;
  // Longer than RFC 2046's 70 characters is accepted: the search does not care.
  if (!boundary) throw new Error(`the ${type} Content-Type names no boundary parameter`);
  return boundary;
}

/**
 * Splits a multipart body into its parts. `body` is the whole body; each part's `body` is a
 * subarray of it, so copy a part (`slice()`) before handing its `.buffer` to code that reads
 * whole ArrayBuffers.
 *
 * @example
 * const parts = parseMultipart(bytes, multipartBoundary(response.headers.get("content-type")!));
 */
export function parseMultipart(
  body: Uint8Array,
  boundary: string,
  limits: MultipartLimits = {},
): MultipartPart[] {
  const maxBytes = limits.maxTotalBytes ?? DEFAULT_MAX_MULTIPART_BYTES;
  const maxParts = limits.maxParts ?? DEFAULT_MAX_MULTIPART_PARTS;
  if (body.length > maxBytes) throw new BodyTooLargeError(body.length, maxBytes);
  if (!boundary) throw new Error("multipart boundary is empty");
  const dashBoundary = encoder.encode(`--${boundary}`);
  const search = horspool(dashBoundary);

  let delimiter = findDelimiter(body, dashBoundary, search, 0);
  if (!delimiter) {
    throw new Error(
      `multipart body (${body.length} bytes) holds no delimiter "--${boundary}": ` +
        "the body is not the multipart the Content-Type announced",
    );
  }
  const parts: MultipartPart[] = [];
  while (!delimiter.closing) {
    if (parts.length >= maxParts) {
      throw new Error(
        `multipart body has more than ${maxParts} parts; raise maxParts if that many are expected`,
      );
    }
    const start = delimiter.next;
    const headerEnd = endOfHeaders(body, start);
    const headers = parseHeaders(body.subarray(start, headerEnd.headersEnd), parts.length + 1);
    const contentStart = headerEnd.contentStart;
    const next = delimiterAtLength(body, headers, contentStart, dashBoundary) ??
      findDelimiter(body, dashBoundary, search, contentStart);
    if (!next) {
      throw new Error(
        `multipart body is truncated: part ${parts.length + 1} has no closing delimiter ` +
          `"--${boundary}" after ${body.length - contentStart} bytes (connection cut short?)`,
      );
    }
    parts.push({ headers, body: body.subarray(contentStart, next.contentEnd) });
    delimiter = next;
  }
  return parts;
}

/** A delimiter found: where the preceding content ends and the next part (or epilogue) starts. */
interface Delimiter {
  /** End of the previous part's content (before the line break that opens the delimiter). */
  contentEnd: number;
  /** Start of the next part's headers (after the delimiter line). */
  next: number;
  /** `--boundary--`: the close delimiter. */
  closing: boolean;
}

/**
 * The next delimiter at or after `from`: `--boundary` at the start of the body or of a line,
 * then `--` (close) or optional padding and a line break. Anything else — the boundary string
 * inside content, not at a line start, or followed by other bytes — is content.
 */
function findDelimiter(
  body: Uint8Array,
  dashBoundary: Uint8Array,
  search: Horspool,
  from: number,
): Delimiter | undefined {
  let at = from;
  for (;;) {
    const hit = search(body, at);
    if (hit < 0) return undefined;
    const found = delimiterAt(body, hit, dashBoundary.length, from);
    if (found) return found;
    at = hit + 1;
  }
}

/** Whether `--boundary` at `hit` is a delimiter (see {@link findDelimiter}). */
function delimiterAt(
  body: Uint8Array,
  hit: number,
  length: number,
  contentStart: number,
): Delimiter | undefined {
  let contentEnd = hit;
  if (hit > 0) {
    // A delimiter opens a line; its line break belongs to the delimiter, not to the content.
    if (body[hit - 1] !== LF) return undefined;
    contentEnd = hit - 1;
    if (contentEnd > contentStart && body[contentEnd - 1] === CR) contentEnd--;
    if (contentEnd < contentStart) contentEnd = contentStart;
  }
  let i = hit + length;
  if (body[i] === DASH && body[i + 1] === DASH) {
    return { contentEnd, next: body.length, closing: true };
  }
  while (body[i] === 0x20 || body[i] === 0x09) i++;
  if (body[i] === CR && body[i + 1] === LF) return { contentEnd, next: i + 2, closing: false };
  if (body[i] === LF) return { contentEnd, next: i + 1, closing: false };
  return undefined;
}

/**
 * The delimiter right after `contentLength` bytes of content, when the part states a
 * Content-Length and the delimiter is exactly there; undefined otherwise (then the caller
 * searches, so a wrong Content-Length cannot misplace a part).
 */
function delimiterAtLength(
  body: Uint8Array,
  headers: Headers,
  contentStart: number,
  dashBoundary: Uint8Array,
): Delimiter | undefined {
  const declared = headers.get("content-length");
  if (!declared || !/^\d+$/.test(declared.trim())) return undefined;
  const end = contentStart + Number(declared.trim());
  let hit = end;
  if (body[hit] === CR) hit++;
  if (body[hit] !== LF) return undefined;
  hit++;
  if (hit + dashBoundary.length > body.length) return undefined;
  for (let k = 0; k < dashBoundary.length; k++) {
    if (body[hit + k] !== dashBoundary[k]) return undefined;
  }
  const found = delimiterAt(body, hit, dashBoundary.length, contentStart);
  // The stated length wins over the line-break trimming: content may itself end in CR.
  return found && { ...found, contentEnd: end };
}

/** Where a part's header block ends (the empty line) and its content starts. */
function endOfHeaders(
  body: Uint8Array,
  start: number,
): { headersEnd: number; contentStart: number } {
  // A part with no headers starts with its empty line at once.
  if (body[start] === CR && body[start + 1] === LF) {
    return { headersEnd: start, contentStart: start + 2 };
  }
  if (body[start] === LF) return { headersEnd: start, contentStart: start + 1 };
  const limit = Math.min(body.length, start + MAX_HEADER_BYTES);
  for (let i = start; i < limit; i++) {
    if (body[i] !== LF) continue;
    if (body[i + 1] === LF) return { headersEnd: i + 1, contentStart: i + 2 };
    if (body[i + 1] === CR && body[i + 2] === LF) return { headersEnd: i + 1, contentStart: i + 3 };
  }
  if (limit === body.length) {
    throw new Error(
      "multipart body is truncated inside a part's headers (no empty line after them)",
    );
  }
  throw new Error(
    `a multipart part's headers run past ${MAX_HEADER_BYTES} bytes: not a multipart body`,
  );
}

/** Header lines (`Name: value`, folded continuation lines joined) into a Headers object. */
function parseHeaders(block: Uint8Array, partNumber: number): Headers {
  const headers = new Headers();
  const lines = latin1.decode(block).split(/\r?\n/);
  let name = "";
  let value = "";
  const flush = () => {
    if (!name) return;
    try {
      headers.append(name, value.trim());
    } catch {
      throw new Error(`multipart part ${partNumber} has an invalid header "${name}"`);
    }
  };
  for (const line of lines) {
    if (line === "") continue;
    if (line[0] === " " || line[0] === "\t") {
      value += " " + line.trim();
      continue;
    }
    flush();
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new Error(
        `multipart part ${partNumber} has a header line without a name: not a multipart body`,
      );
    }
    name = line.slice(0, colon).trim();
    value = line.slice(colon + 1);
  }
  flush();
  return headers;
}

type Horspool = (haystack: Uint8Array, from: number) => number;

/**
 * Boyer–Moore–Horspool search for `needle`: skips up to the needle's length per step, which
 * matters on hundreds of MB of pixel data where a byte-by-byte scan for `-` would not.
 */
function horspool(needle: Uint8Array): Horspool {
  const m = needle.length;
  const shift = new Uint32Array(256).fill(m);
  for (let k = 0; k < m - 1; k++) shift[needle[k]] = m - 1 - k;
  const last = needle[m - 1];
  return (haystack, from) => {
    let i = from;
    const end = haystack.length - m;
    while (i <= end) {
      const c = haystack[i + m - 1];
      if (c === last) {
        let k = m - 2;
        while (k >= 0 && haystack[i + k] === needle[k]) k--;
        if (k < 0) return i;
      }
      i += shift[c];
    }
    return -1;
  };
}

/** Whether `needle` occurs in `haystack`. */
function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return horspool(needle)(haystack, 0) >= 0;
}

/**
 * Reads a Response body into one Uint8Array, stopping with an error as soon as it passes
 * `maxBytes` (checked against Content-Length first, then while streaming, so a server that
 * lies about the length or streams forever costs at most `maxBytes`).
 */
export async function readBodyLimited(response: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new BodyTooLargeError(declared, maxBytes);
  }
  if (!response.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel();
      throw new BodyTooLargeError(total, maxBytes);
    }
    chunks.push(value);
  }
  return chunks.length === 1 ? chunks[0] : concatBytes(chunks, total);
}

/** A body past its size limit: the server sent, or announced, more than the caller allows. */
export class BodyTooLargeError extends Error {
  constructor(readonly bytes: number, readonly maxBytes: number) {
    super(
      `response body is larger than the limit: ${bytes} bytes read or announced, limit ${maxBytes}; ` +
        "raise maxTotalBytes (maxResponseBytes on the DICOMweb client) if the series is that large",
    );
    this.name = "BodyTooLargeError";
  }
}

/** A part to send: its media type and bytes. */
export interface OutgoingPart {
  contentType: string;
  body: Uint8Array;
}

/**
 * Builds a `multipart/related` body (CRLF framing) with a random boundary that occurs in no
 * part, and the Content-Type that announces it.
 *
 * @example
 * const { body, contentType } = buildMultipart(
 *   instances.map((bytes) => ({ contentType: "application/dicom", body: bytes })),
 *   "application/dicom",
 * );
 */
export function buildMultipart(
  parts: OutgoingPart[],
  rootType: string,
): { body: Uint8Array; contentType: string } {
  let boundary = `voxseg-${crypto.randomUUID()}`;
  const dashBoundary = () => encoder.encode(`--${boundary}`);
  while (parts.some((part) => contains(part.body, dashBoundary()))) {
    boundary = `voxseg-${crypto.randomUUID()}`;
  }
  const heads = parts.map((part, i) =>
    encoder.encode(
      `${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Type: ${part.contentType}\r\n\r\n`,
    )
  );
  const tail = encoder.encode(`${parts.length ? "\r\n" : ""}--${boundary}--\r\n`);
  let size = tail.length;
  for (let i = 0; i < parts.length; i++) size += heads[i].length + parts[i].body.length;
  const body = new Uint8Array(size);
  let offset = 0;
  for (let i = 0; i < parts.length; i++) {
    body.set(heads[i], offset);
    offset += heads[i].length;
    body.set(parts[i].body, offset);
    offset += parts[i].body.length;
  }
  body.set(tail, offset);
  return {
    body,
    contentType: `multipart/related; type="${rootType}"; boundary=${boundary}`,
  };
}
