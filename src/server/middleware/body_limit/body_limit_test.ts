import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { bodyLimit, formatBytes, parseBytes } from "./body_limit.ts";

function app(maxBytes: number) {
  const a = new Hono();
  a.use("*", bodyLimit({ maxBytes }));
  a.post("/", async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)));
  a.onError(renderError);
  return a;
}

/** A body without Content-Length, in chunks of 4 bytes. */
function chunked(bytes: number): ReadableStream<Uint8Array> {
  let left = bytes;
  return new ReadableStream({
    pull(controller) {
      if (left <= 0) return controller.close();
      const n = Math.min(4, left);
      left -= n;
      controller.enqueue(new Uint8Array(n));
    },
  });
}

Deno.test("bodyLimit: bodies up to the limit pass whole", async () => {
  const res = await app(10).request("/", { method: "POST", body: new Uint8Array(10) });
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "10");
});

Deno.test("bodyLimit: a declared Content-Length over the limit is 413 before reading", async () => {
  const res = await app(10).request("/", {
    method: "POST",
    body: new Uint8Array(11),
    headers: { "content-length": "11" },
  });
  assert.equal(res.status, 413);
  const body = await res.json();
  assert.equal(body.error.code, "payload_too_large");
  assert.match(body.error.message, /10 B limit/);
});

Deno.test("bodyLimit: a streamed body is cut off at the limit with 413", async () => {
  const ok = await app(16).request(
    "/",
    { method: "POST", body: chunked(16), duplex: "half" } as RequestInit,
  );
  assert.equal(await ok.text(), "16");
  const res = await app(16).request(
    "/",
    { method: "POST", body: chunked(40), duplex: "half" } as RequestInit,
  );
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, "payload_too_large");
});

Deno.test("bodyLimit: nothing is pulled from the client until the handler reads", async () => {
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(new Uint8Array(4));
    },
  }, { highWaterMark: 0 }); // like a socket: bytes are read only when asked for
  const a = new Hono();
  a.use("*", bodyLimit({ maxBytes: 8, source: "JSON requests" }));
  a.post("/refuse", (c) => c.text("refused unread", 503));
  a.post("/read", async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)));
  a.onError(renderError);
  const refused = await a.request(
    "/refuse",
    { method: "POST", body, duplex: "half" } as RequestInit,
  );
  assert.equal(refused.status, 503);
  assert.equal(pulls, 0, "a handler that does not read leaves the body unread");
  const read = await a.request(
    "/read",
    { method: "POST", body: chunked(12), duplex: "half" } as RequestInit,
  );
  assert.match((await read.json()).error.message, /8 B limit \(JSON requests\)/);
});

Deno.test("parseBytes and formatBytes", () => {
  assert.equal(parseBytes("1GiB"), 1024 ** 3);
  assert.equal(parseBytes("512 MiB"), 512 * 1024 ** 2);
  assert.equal(parseBytes("10MB"), 10_000_000);
  assert.equal(parseBytes("2k"), 2048);
  assert.equal(parseBytes("1024"), 1024);
  assert.equal(parseBytes("lots"), null);
  assert.equal(parseBytes("0"), null);
  assert.equal(formatBytes(1024 ** 3), "1 GiB");
  assert.equal(formatBytes(1500), "1500 B");
});
