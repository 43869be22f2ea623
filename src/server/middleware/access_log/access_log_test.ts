import assert from "node:assert/strict";
import { Hono } from "hono";
import { ApiError, renderError } from "../../errors.ts";
import { accessLog, type AccessRecord } from "./access_log.ts";

function app(records: AccessRecord[]) {
  const a = new Hono();
  a.use("*", accessLog({ push: (r) => records.push(r) }));
  a.use("*", async (c, next) => {
    if (c.req.header("authorization")) c.set("tokenName", "scanner");
    await next();
  });
  a.get("/v1/jobs/:id", (c) => {
    if (c.req.param("id") === "gone") throw new ApiError(404, "not_found", "no such job");
    return c.json({ id: c.req.param("id") });
  });
  a.get("/v1/models/:name/stream", (c) => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(300));
        controller.enqueue(new Uint8Array(45));
        controller.close();
      },
    });
    return c.body(body, 200, { "content-type": "text/event-stream" });
  });
  a.post("/v1/jobs/train", (c) => {
    c.header("location", "/v1/jobs/jnew-1");
    return c.json({}, 202);
  });
  a.onError(renderError);
  return a;
}

Deno.test("accessLog: route pattern, token name, job or model, bytes; no raw path or query", async () => {
  const records: AccessRecord[] = [];
  const a = app(records);
  const text = async (res: Response) => (await res.text()).length;
  const n1 = await text(
    await a.request("/v1/jobs/j1-abc?input=patients/Doe.nii", { headers: { authorization: "x" } }),
  );
  await text(await a.request("/v1/jobs/gone"));
  await text(await a.request("/v1/jobs/train", { method: "POST" }));
  await text(await a.request("/v1/models/tiny/stream"));
  await text(await a.request("/Doe_John/scan.nii", { method: "BREW" }));
  const [job, gone, created, stream, unmatched] = records;
  assert.equal(records.length, 5);
  assert.deepEqual(
    { ...job, time: "", ms: 0 },
    {
      time: "",
      client: null,
      token: "scanner",
      method: "GET",
      route: "/v1/jobs/:id",
      status: 200,
      job: "j1-abc",
      bytes: n1,
      ms: 0,
    },
  );
  assert.equal(gone.status, 404);
  assert.equal(gone.job, undefined);
  assert.equal(gone.token, null);
  assert.deepEqual([created.status, created.job], [202, "jnew-1"]);
  assert.deepEqual([stream.model, stream.bytes], ["tiny", 345]);
  assert.deepEqual([unmatched.method, unmatched.route, unmatched.status], [
    "other",
    "unmatched",
    404,
  ]);
  assert.doesNotMatch(JSON.stringify(records), /Doe|patients|nii|\?|BREW/);
});

Deno.test("accessLog: a streamed response is logged when the client goes away", async () => {
  const records: AccessRecord[] = [];
  const a = new Hono();
  a.use("*", accessLog({ push: (r) => records.push(r) }));
  a.get("/events", (c) => {
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(10 + n++));
      },
    });
    return c.body(body, 200, { "content-type": "text/event-stream" });
  });
  const res = await a.request("/events");
  assert.equal(records.length, 0); // open: not over yet
  const reader = res.body!.getReader();
  let read = 0;
  for (let i = 0; i < 3; i++) read += (await reader.read()).value!.byteLength;
  await reader.cancel();
  assert.equal(records.length, 1);
  assert.equal(records[0].bytes, read);
});
