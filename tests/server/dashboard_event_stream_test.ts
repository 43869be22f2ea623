/**
 * The dashboard's server-sent event reader: the WHATWG parsing rules on any split of the
 * stream, and `followEvents` over a real socket — reconnecting with Last-Event-ID after a
 * break, stopping after the final event, sending the bearer token.
 */

import assert from "node:assert/strict";
import {
  EventStreamParser,
  followEvents,
  type StreamEvent,
} from "../../src/server/dashboard/event_stream.ts";

const STREAM = "\uFEFFretry: 1500\n\n: a comment\n" +
  'id: 1\nevent: progress\ndata: {"step":1}\n\n' +
  "id: 2\r\nevent: log\r\ndata: line one\r\ndata:line two\r\n\r\n" +
  "data: no type\rid: 3\r\r" +
  "event: ignored-without-data\n\n" +
  'id: 4\nevent: state\ndata: {"state":"succeeded"}\n\n';

const EXPECTED: StreamEvent[] = [
  { event: "progress", data: '{"step":1}', lastEventId: "1" },
  { event: "log", data: "line one\nline two", lastEventId: "2" },
  { event: "message", data: "no type", lastEventId: "3" },
  { event: "state", data: '{"state":"succeeded"}', lastEventId: "4" },
];

Deno.test("EventStreamParser: LF, CRLF and CR lines, comments, ids, retry, BOM", () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push(STREAM), EXPECTED);
  assert.equal(parser.retryMs, 1500);
  assert.equal(parser.lastEventId, "4");
});

Deno.test("EventStreamParser: the same events however the stream is cut", () => {
  for (const size of [1, 2, 3, 7, 13]) {
    const parser = new EventStreamParser();
    const events: StreamEvent[] = [];
    for (let i = 0; i < STREAM.length; i += size) {
      events.push(...parser.push(STREAM.slice(i, i + size)));
    }
    assert.deepEqual(events, EXPECTED, `chunks of ${size}`);
  }
  // A CR at the end of a chunk followed by LF is one line ending, not two.
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push("data: a\r"), []);
  assert.deepEqual(parser.push("\ndata: b\r\n\r"), []);
  assert.deepEqual(parser.push("\n"), [{ event: "message", data: "a\nb", lastEventId: "" }]);
});

Deno.test("followEvents: reconnects with Last-Event-ID, sends the token, stops at the end", async () => {
  const requests: { lastEventId: string | null; auth: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const lastEventId = req.headers.get("last-event-id");
    requests.push({ lastEventId, auth: req.headers.get("authorization") });
    // First connection: two events, then the connection breaks. Second: the rest.
    const body = lastEventId === null
      ? "retry: 10\n\nid: 1\nevent: progress\ndata: 1\n\nid: 2\nevent: progress\ndata: 2\n\n"
      : "id: 3\nevent: state\ndata: done\n\n";
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  try {
    const seen: string[] = [];
    await followEvents(`http://127.0.0.1:${server.addr.port}/events`, {
      headers: { authorization: "Bearer t" },
      signal: AbortSignal.timeout(10_000),
      onEvent: (e) => seen.push(`${e.event}:${e.data}`),
      isLast: (e) => e.event === "state",
    });
    assert.deepEqual(seen, ["progress:1", "progress:2", "state:done"]);
    assert.deepEqual(requests, [
      { lastEventId: null, auth: "Bearer t" },
      { lastEventId: "2", auth: "Bearer t" },
    ]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("followEvents: an HTTP error ends it (no retry loop); abort ends it", async () => {
  let calls = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    calls++;
    if (new URL(req.url).pathname === "/gone") return new Response("{}", { status: 404 });
    return new Response(new ReadableStream({ start() {} }), {
      headers: { "content-type": "text/event-stream" },
    });
  });
  try {
    const errors: string[] = [];
    const base = `http://127.0.0.1:${server.addr.port}`;
    await followEvents(`${base}/gone`, {
      signal: AbortSignal.timeout(10_000),
      onEvent: () => {},
      isLast: () => false,
      onError: (e) => errors.push(e.message),
    });
    assert.equal(calls, 1);
    assert.match(errors[0], /HTTP 404/);

    const controller = new AbortController();
    const following = followEvents(`${base}/open`, {
      signal: controller.signal,
      onEvent: () => {},
      isLast: () => false,
    });
    setTimeout(() => controller.abort(), 50);
    await following; // resolves: the open stream is dropped
  } finally {
    await server.shutdown();
  }
});
