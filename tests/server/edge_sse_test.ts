/**
 * Event streams are bounded: past the per-job or server-wide cap a new stream gets 503 with
 * Retry-After, and a slot comes back when a client goes away.
 */

import assert from "node:assert/strict";
import type { Job } from "../../src/server/jobs/job.ts";
import {
  assertError,
  jsonPost,
  newServer,
  testOpts,
  TINY_TRAIN,
  waitForJob,
} from "./server_fixture.ts";

Deno.test(
  "event streams: per-job and server-wide caps, 503 + Retry-After, slots freed",
  testOpts,
  async () => {
    const server = await newServer({ streamLimits: { total: 3, perKey: 2 } });
    const { app } = server;
    const submit = async (name: string) =>
      (await (await app.request(
        "/v1/jobs/train",
        jsonPost({ dataset: "synth", name, config: { ...TINY_TRAIN, itersPerEpoch: 5000 } }),
      )).json()) as Job;
    const a = await submit("sse_a"); // runs
    const b = await submit("sse_b"); // waits behind it: both streams stay open
    const open = (id: string) => app.request(`/v1/jobs/${id}/events`);
    try {
      const b1 = await open(b.id);
      const b2 = await open(b.id);
      assert.equal(b1.status, 200);
      assert.equal(b2.status, 200);
      const overJob = await open(b.id);
      assert.equal(overJob.headers.get("retry-after"), "10");
      assert.match(await assertError(overJob, 503, "too_many_streams"), /for this job/);
      const a1 = await open(a.id);
      assert.equal(a1.status, 200);
      const overAll = await open(a.id);
      assert.match(await assertError(overAll, 503, "too_many_streams"), /on this server/);
      // A client going away frees its slot.
      await b1.body!.cancel();
      const again = await open(a.id);
      assert.equal(again.status, 200);
      // Full: a stream for any job is refused before the job is looked up.
      for (let i = 0; i < 4; i++) {
        await assertError(
          await open("jnothere-0"),
          503,
          "too_many_streams",
        );
      }
      for (const s of [b2, a1, again]) await s.body!.cancel();
      // An unknown job's 404 holds no slot.
      for (let i = 0; i < 4; i++) await assertError(await open("jnothere-0"), 404, "job_not_found");
    } finally {
      for (const id of [b.id, a.id]) await app.request(`/v1/jobs/${id}`, { method: "DELETE" });
      for (const id of [a.id, b.id]) {
        await waitForJob(server, id, ["cancelled", "succeeded", "failed"]);
      }
    }
  },
);
