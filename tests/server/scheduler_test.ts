import assert from "node:assert/strict";
import { GpuScheduler, QueueFullError } from "../../src/server/scheduler.ts";

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("scheduler: tasks run one at a time, first come first served", async () => {
  const s = new GpuScheduler({ maxQueue: 8 });
  const log: string[] = [];
  let running = 0;
  const task = (name: string) =>
    s.run(name, async () => {
      running++;
      assert.equal(running, 1, "two tasks held the GPU at once");
      log.push(`start ${name}`);
      await tick();
      log.push(`end ${name}`);
      running--;
    });
  await Promise.all([task("a"), task("b"), task("c")]);
  assert.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
  assert.equal(s.holder, null);
  assert.ok(s.busySeconds() > 0);
});

Deno.test("scheduler: a full queue is refused with QueueFullError and a Retry-After", async () => {
  const s = new GpuScheduler({ maxQueue: 2 });
  const lease = await s.acquire("holder");
  const waiting = [s.run("w1", async () => {}), s.run("w2", async () => {})];
  assert.equal(s.queueDepth, 2);
  await assert.rejects(s.run("w3", async () => {}), (e) => {
    assert.ok(e instanceof QueueFullError);
    assert.ok(e.retryAfterSeconds >= 1);
    return true;
  });
  // A job's own re-acquire is not bounded.
  const unbounded = s.acquire("job", { bounded: false });
  lease.release();
  await Promise.all(waiting);
  (await unbounded).release();
  await s.idle();
});

Deno.test("scheduler: yield lets the tasks waiting now run, then the holder resumes", async () => {
  const s = new GpuScheduler({ maxQueue: 8 });
  const log: string[] = [];
  const training = await s.acquire("train");
  // Nobody waits: yield returns at once and keeps the lane.
  await training.yield();
  assert.equal(s.holder, "train");
  const p1 = s.run("p1", () => Promise.resolve(void log.push("p1")));
  const p2 = s.run("p2", () => Promise.resolve(void log.push("p2")));
  await training.yield();
  log.push("step");
  assert.equal(s.holder, "train");
  await Promise.all([p1, p2]);
  assert.deepEqual(log, ["p1", "p2", "step"]);
  training.release();
  assert.equal(s.holder, null);
});

Deno.test("scheduler: an aborted waiter leaves the queue", async () => {
  const s = new GpuScheduler({ maxQueue: 8 });
  const lease = await s.acquire("holder");
  const controller = new AbortController();
  const waiting = s.run("w", async () => {}, { signal: controller.signal });
  assert.equal(s.queueDepth, 1);
  controller.abort(new Error("client gone"));
  await assert.rejects(waiting, /client gone/);
  assert.equal(s.queueDepth, 0);
  lease.release();
  await s.idle();
});
