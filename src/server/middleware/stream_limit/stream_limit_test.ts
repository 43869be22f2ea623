import assert from "node:assert/strict";
import { Hono } from "hono";
import { renderError } from "../../errors.ts";
import { streamLimit, StreamSlots } from "./stream_limit.ts";

Deno.test("StreamSlots: caps per key and in total; release is idempotent", () => {
  const slots = new StreamSlots({ total: 3, perKey: 2 });
  const a1 = slots.acquire("a")!, a2 = slots.acquire("a")!;
  assert.equal(slots.acquire("a"), undefined);
  const b1 = slots.acquire("b")!;
  assert.equal(slots.acquire("c"), undefined);
  assert.equal(slots.open, 3);
  a1();
  a1();
  assert.equal(slots.open, 2);
  assert.ok(slots.acquire("c"));
  a2();
  b1();
  assert.equal(slots.open, 1);
});

Deno.test("streamLimit: a stream holds its slot until it ends; errors hold none", async () => {
  const slots = new StreamSlots({ total: 1, perKey: 1 });
  const a = new Hono();
  a.use("/s/:id", streamLimit(slots, (c) => c.req.param("id")!));
  a.get("/s/:id", (c) => {
    if (c.req.param("id") === "none") return c.json({ error: "no" }, 404);
    return c.body(new ReadableStream({ pull: (ctl) => ctl.enqueue(new Uint8Array(1)) }), 200, {
      "content-type": "text/event-stream",
    });
  });
  a.onError(renderError);
  for (let i = 0; i < 3; i++) assert.equal((await a.request("/s/none")).status, 404);
  const open = await a.request("/s/x");
  assert.equal(open.status, 200);
  const refused = await a.request("/s/y");
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "10");
  assert.equal((await refused.json()).error.code, "too_many_streams");
  await open.body!.cancel();
  const again = await a.request("/s/y");
  assert.equal(again.status, 200);
  await again.body!.cancel();
  assert.equal(slots.open, 0);
});
