/**
 * multipart/related framing on hand-made bodies: quoted and odd boundaries, preambles and
 * epilogues, bare-LF line ends, a part that holds the boundary string without its line break,
 * truncated bodies, size and part-count limits, and the round trip through buildMultipart.
 */

import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import {
  buildMultipart,
  multipartBoundary,
  parseMediaType,
  parseMultipart,
  readBodyLimited,
} from "../../../src/data/dicom/multipart.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function bytes(...pieces: (string | Uint8Array)[]): Uint8Array {
  const arrays = pieces.map((p) => typeof p === "string" ? enc.encode(p) : p);
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

const texts = (body: Uint8Array, boundary: string) =>
  parseMultipart(body, boundary).map((part) => dec.decode(part.body));

Deno.test("parseMediaType: quoted boundary with ; and escapes, unquoted type, case", () => {
  const media = parseMediaType(
    'Multipart/Related; TYPE=application/dicom; boundary="a;b\\"c"; x=1',
  );
  strictEqual(media.type, "multipart/related");
  deepStrictEqual(media.params, { type: "application/dicom", boundary: 'a;b"c', x: "1" });
  strictEqual(multipartBoundary('multipart/related; boundary="=_ok:?"'), "=_ok:?");
  throws(() => multipartBoundary("application/dicom+json"), /expected a multipart body/);
  throws(() => multipartBoundary("multipart/related; type=application/dicom"), /no boundary/);
});

Deno.test("parseMultipart: two parts with headers, preamble and epilogue ignored", () => {
  const body = bytes(
    "this is a preamble\r\n",
    "--B\r\nContent-Type: application/dicom\r\nX-Note: one\r\n\r\nfirst\r\n",
    "--B\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nsecond",
    "\r\n--B--\r\nepilogue --B\r\n junk",
  );
  const parts = parseMultipart(body, "B");
  deepStrictEqual(parts.map((p) => dec.decode(p.body)), ["first", "second"]);
  strictEqual(parts[0].headers.get("x-note"), "one");
  strictEqual(
    parts[1].headers.get("Content-Type"),
    "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
  );
});

Deno.test("parseMultipart: boundary with regex and space-like characters, padding after the delimiter", () => {
  const boundary = "a.b+c*(d)?'e";
  const body = bytes(`--${boundary}  \t\r\n\r\nX\r\n--${boundary}\r\n\r\nY\r\n--${boundary}--`);
  deepStrictEqual(texts(body, boundary), ["X", "Y"]);
});

Deno.test("parseMultipart: bare LF line ends and a leading CRLF before the first delimiter", () => {
  deepStrictEqual(texts(enc.encode("--b\nA: 1\n\none\n--b\n\ntwo\n--b--\n"), "b"), ["one", "two"]);
  deepStrictEqual(texts(enc.encode("\r\n--b\r\n\r\nz\r\n--b--"), "b"), ["z"]);
});

Deno.test("parseMultipart: the boundary string inside a part without its line break is content", () => {
  const content = "xx--BOUND--yy\r\n--BOUNDzz--BOUND";
  const body = bytes("--BOUND\r\n\r\n", content, "\r\n--BOUND--\r\n");
  deepStrictEqual(texts(body, "BOUND"), [content]);
});

Deno.test("parseMultipart: empty parts, and binary content with CR, LF and dashes", () => {
  const binary = new Uint8Array(4096);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 37 + 11) & 0xff;
  binary.set(enc.encode("\r\n--Q"), 100); // the boundary minus a character after it
  const body = bytes("--QQ\r\n\r\n\r\n--QQ\r\n\r\n", binary, "\r\n--QQ--");
  const parts = parseMultipart(body, "QQ");
  strictEqual(parts.length, 2);
  strictEqual(parts[0].body.length, 0);
  deepStrictEqual(parts[1].body, binary);
});

Deno.test("parseMultipart: Content-Length is used when the delimiter follows it, ignored when it lies", () => {
  // Content that ends in CR: only the stated length keeps that CR.
  const exact = bytes("--b\r\nContent-Length: 3\r\n\r\nab\r", "\r\n--b--");
  deepStrictEqual(texts(exact, "b"), ["ab\r"]);
  const lying = bytes("--b\r\nContent-Length: 2\r\n\r\nabcdef\r\n--b--");
  deepStrictEqual(texts(lying, "b"), ["abcdef"]);
  const tooLong = bytes("--b\r\nContent-Length: 999\r\n\r\nabc\r\n--b--");
  deepStrictEqual(texts(tooLong, "b"), ["abc"]);
});

Deno.test("parseMultipart: a truncated body is an error, never a short last part", () => {
  throws(
    () => parseMultipart(enc.encode("--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond half"), "b"),
    /truncated: part 2 has no closing delimiter/,
  );
  throws(
    () => parseMultipart(enc.encode("--b\r\nContent-Type: appl"), "b"),
    /truncated inside a part's headers/,
  );
  throws(() => parseMultipart(enc.encode("<html>login</html>"), "b"), /holds no delimiter "--b"/);
});

Deno.test("parseMultipart: limits on total bytes and parts", () => {
  const body = bytes("--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--");
  throws(() => parseMultipart(body, "b", { maxTotalBytes: 10 }), /larger than the limit.*limit 10/);
  throws(() => parseMultipart(body, "b", { maxParts: 2 }), /more than 2 parts/);
  strictEqual(parseMultipart(body, "b", { maxParts: 3 }).length, 3);
});

Deno.test("parseMultipart: a part header line without a colon is rejected", () => {
  throws(
    () => parseMultipart(enc.encode("--b\r\nnot a header\r\n\r\nx\r\n--b--"), "b"),
    /header line without a name/,
  );
});

Deno.test("parseMultipart: 64 parts of 256 KiB in one pass, parts are views of the body", () => {
  const payloads = Array.from({ length: 64 }, (_, k) => new Uint8Array(256 * 1024).fill(k));
  const { body, contentType } = buildMultipart(
    payloads.map((p) => ({ contentType: "application/dicom", body: p })),
    "application/dicom",
  );
  const parts = parseMultipart(body, multipartBoundary(contentType));
  strictEqual(parts.length, 64);
  parts.forEach((part, k) => {
    deepStrictEqual(part.body, payloads[k]);
    strictEqual(part.body.buffer, body.buffer);
  });
});

Deno.test("buildMultipart: round trip, announced type, and zero parts", () => {
  const { body, contentType } = buildMultipart(
    [{ contentType: "application/dicom", body: enc.encode("A\r\n--x") }, {
      contentType: "application/dicom",
      body: new Uint8Array(0),
    }],
    "application/dicom",
  );
  const media = parseMediaType(contentType);
  strictEqual(media.type, "multipart/related");
  strictEqual(media.params.type, "application/dicom");
  const parts = parseMultipart(body, media.params.boundary);
  deepStrictEqual(parts.map((p) => dec.decode(p.body)), ["A\r\n--x", ""]);
  strictEqual(parts[0].headers.get("content-type"), "application/dicom");
  const empty = buildMultipart([], "application/dicom");
  deepStrictEqual(
    parseMultipart(empty.body, parseMediaType(empty.contentType).params.boundary),
    [],
  );
});

Deno.test("readBodyLimited: stops a stream that runs past the limit, and a too-large Content-Length", async () => {
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(1024));
    },
  });
  await readBodyLimited(new Response(endless), 10_000).then(
    () => Promise.reject(new Error("expected the limit")),
    (e: Error) => strictEqual(/larger than the limit/.test(e.message), true),
  );
  strictEqual(pulled < 20, true);
  const announced = new Response("x", { headers: { "content-length": "999999" } });
  await readBodyLimited(announced, 100).then(
    () => Promise.reject(new Error("expected the limit")),
    (e: Error) => strictEqual(/999999 bytes/.test(e.message), true),
  );
  deepStrictEqual(await readBodyLimited(new Response("abc"), 100), enc.encode("abc"));
});
