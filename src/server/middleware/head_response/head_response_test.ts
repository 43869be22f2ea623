import assert from "node:assert/strict";
import { Hono } from "hono";
import { accessLog, type AccessRecord } from "../access_log/access_log.ts";
import { streamLimit, StreamSlots } from "../stream_limit/stream_limit.ts";
import { headResponse } from "./head_response.ts";

/** An app in the server's order: HEAD handling, access log, stream cap, an endless stream. */
function app(slots: StreamSlots, records: AccessRecord[], cancelled: string[]) {
  const a = new Hono();
  a.use("*", headResponse());
  a.use("*", accessLog({ push: (r) => records.push(r) }));
  a.use("/v1/jobs/:id/events", streamLimit(slots, (c) => c.req.param("id")!));
  a.get("/v1/jobs/:id/events", (c) =>
    c.body(
      new ReadableStream({
        pull: (ctl) => ctl.enqueue(new TextEncoder().encode("data: {}\n\n")),
        cancel: () => void cancelled.push(c.req.param("id")),
      }),
      200,
      { "content-type": "text/event-stream" },
    ));
  return a;
}

Deno.test("headResponse: HEAD on an event stream frees its slot, ends it and is logged", async () => {
  const slots = new StreamSlots({ total: 1, perKey: 1 });
  const records: AccessRecord[] = [];
  const cancelled: string[] = [];
  const a = app(slots, records, cancelled);
  for (let i = 0; i < 3; i++) {
    const head = await a.request("/v1/jobs/j1/events", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "text/event-stream");
    assert.equal(head.body, null);
    await new Promise((r) => setTimeout(r, 0));
    // Without the middleware the dropped body held the only slot: the next request got 503.
    assert.equal(slots.open, 0, `after HEAD ${i + 1}`);
  }
  assert.deepEqual(cancelled, ["j1", "j1", "j1"]);
  assert.deepEqual(
    records.map((r) => [r.method, r.route, r.status, r.job, r.bytes]),
    Array(3).fill(["HEAD", "/v1/jobs/:id/events", 200, "j1", 0]),
  );
  const get = await a.request("/v1/jobs/j2/events");
  assert.equal(get.status, 200);
  assert.equal(slots.open, 1);
  await get.body!.cancel();
  assert.equal(slots.open, 0);
});
