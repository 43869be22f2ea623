/**
 * Planned training jobs: a train job is planned as `voxseg train --data` plans it (the CLI's
 * planner, handed in as `voxseg serve` does), sized to its time budget on an injected step
 * timing, and reports what the plan chose; a restarted server resumes it on that plan without
 * planning again; the planning fields are checked before the job is queued.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { servePlanner } from "../../src/cli/serve_planning.ts";
import { createApp, type VoxsegServer } from "../../src/server/app.ts";
import type { Job, TrainJobRequest } from "../../src/server/jobs/job.ts";
import type { StepTiming } from "../../src/train/plan/measure.ts";
import {
  assertError,
  dataRoot,
  jsonPost,
  newServer,
  PATCH,
  testOpts,
  waitForJob,
} from "./server_fixture.ts";

/** The network of TINY_TRAIN without its schedule: the plan sizes the steps. */
const TINY_NET = {
  "model.baseChannels": 4,
  "model.depth": 2,
  "data.patchSize": PATCH,
  "data.batchSize": 2,
  "data.workers": 0,
  lossReadbackEvery: 1,
};

/** A planner whose budget timings are injected (`ms` a step) and counted, not measured. */
function countingPlanner(ms: number) {
  const calls = { measure: 0 };
  const planner = servePlanner({
    measure: (): Promise<StepTiming> => {
      calls.measure++;
      return Promise.resolve({ msPerStep: ms, firstStepMs: 2 * ms, spentMs: 3 * ms });
    },
  });
  return { planner, calls };
}

/** A server on the module's data root with `stateDir`, planned by `planner`. */
async function serverAt(
  stateDir: string,
  planner: ReturnType<typeof servePlanner>,
): Promise<VoxsegServer> {
  const { root, models } = await dataRoot();
  const server = await createApp({ dataRoot: root, modelsDir: models, stateDir, planner });
  await server.gpuReady;
  return server;
}

const logs = async (server: VoxsegServer, id: string) =>
  (await server.context.store.events(id)).filter((e) => e.type === "log")
    .map((e) => String(e.data.message));

Deno.test(
  "a planned train job plans, sizes its steps to the time budget and reports the plan",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    // 20 s a step on a 10-minute budget: the budget leaves room for a couple of steps.
    const { planner, calls } = countingPlanner(20_000);
    const server = await newServer({ planner });
    try {
      const res = await server.app.request(
        "/v1/jobs/train",
        jsonPost({ dataset: "synth", name: "planned", timeBudget: "10m", config: TINY_NET }),
      );
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = (await res.json()) as Job;
      const done = await waitForJob(server, id, ["succeeded", "failed"], 300_000);
      assert.equal(done.state, "succeeded", JSON.stringify(done.error));
      assert.ok(calls.measure >= 1, "the budget timed a candidate on the injected timing");

      // The job status shows what the plan chose, and the result repeats it.
      const job = (await (await server.app.request(`/v1/jobs/${id}`)).json()) as Job;
      const plan = job.plan!;
      assert.equal(plan.source, "new");
      assert.equal(plan.network, "unet3d");
      assert.equal(plan.targetSpacingMm?.length, 3);
      assert.ok(plan.normalisation?.scheme);
      assert.equal(plan.channels, undefined, "one channel: no per-channel list");
      assert.equal(plan.budget?.budgetSeconds, 600);
      assert.equal(plan.budget?.msPerStep, 20_000);
      assert.ok(plan.epochs! >= 1 && plan.itersPerEpoch! >= 1, JSON.stringify(plan));
      assert.ok(plan.reasons?.spacing, "each choice has its reason");
      // The steps are the plan's (the request's config sets the network only).
      assert.equal(job.result!.steps, plan.epochs! * plan.itersPerEpoch!);
      assert.deepEqual(job.result!.plan, plan);
      assert.equal((job.request as TrainJobRequest).timeBudget, 600);
      // The plan it ran with is in its run folder; no absolute path reaches the client.
      const runDir = server.context.store.runDir(id);
      assert.ok((await Deno.stat(join(runDir, "plans.json"))).isFile);
      const shown = JSON.stringify(job) + JSON.stringify(await server.context.store.events(id));
      assert.ok(!shown.includes(root), "no absolute path in the job or its events");
      const lines = await logs(server, id);
      assert.ok(lines.some((l) => /^planning /.test(l)), lines.join("\n"));
      assert.ok(lines.some((l) => /^time budget: /.test(l)), lines.join("\n"));
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test(
  "a restarted server resumes a planned job on its plan and steps, never planning again",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const stateDir = await Deno.makeTempDir({ dir: root, prefix: ".state_" });
    // 1 s a step on an hour: thousands of steps, so the job is still training when stopped.
    const first = countingPlanner(1_000);
    const a = await serverAt(stateDir, first.planner);
    const submitted = await a.app.request(
      "/v1/jobs/train",
      jsonPost({ dataset: "synth", timeBudget: 3600, config: TINY_NET }),
    );
    assert.equal(submitted.status, 202, await submitted.clone().text());
    const { id } = (await submitted.json()) as Job;
    await until(() => (a.context.store.get(id)!.progress?.step as number) >= 2);
    await a.shutdown(); // what SIGTERM does: a checkpoint, and the job is interrupted
    const stopped = a.context.store.get(id)!;
    assert.equal(stopped.state, "interrupted");
    const plan = stopped.plan!;
    assert.equal(plan.source, "new");
    const stoppedAt = stopped.progress!.step as number;
    const total = (stopped.progress!.epochs as number) *
      (stopped.progress!.itersPerEpoch as number);
    assert.equal(total, plan.epochs! * plan.itersPerEpoch!);
    const planFile = join(stateDir, id, "run", "plans.json");
    const planText = await Deno.readTextFile(planFile);
    const measured = first.calls.measure;

    // Another server on the same state: the job resumes where it stopped, on the same plan.
    const second = countingPlanner(1);
    const b = await serverAt(stateDir, second.planner);
    try {
      const seen = (await b.context.store.events(id)).length;
      assert.equal((await b.app.request(`/v1/jobs/${id}/resume`, { method: "POST" })).status, 202);
      await until(() => (b.context.store.get(id)!.progress?.step as number) > stoppedAt);
      const resumed = b.context.store.get(id)!;
      assert.equal(resumed.attempts, 2);
      assert.deepEqual(resumed.plan, plan);
      assert.equal(
        (resumed.progress!.epochs as number) * (resumed.progress!.itersPerEpoch as number),
        total,
        "the budget's steps are kept",
      );
      assert.equal(second.calls.measure, 0, "no timing: the budget is not sized again");
      assert.equal(first.calls.measure, measured);
      assert.equal(await Deno.readTextFile(planFile), planText, "the stored plan is untouched");
      const after = (await b.context.store.events(id)).slice(seen);
      const lines = after.filter((e) => e.type === "log").map((e) => String(e.data.message));
      assert.ok(lines.some((l) => /^resumed: /.test(l)), lines.join("\n"));
      assert.ok(!lines.some((l) => /^planning |^time budget: /.test(l)), lines.join("\n"));
      const firstStep = after.find((e) => e.type === "progress")!.data.step;
      assert.equal(firstStep, stoppedAt + 1);
      await b.context.runner.cancel(id);
      assert.equal((await waitForJob(b, id, ["cancelled"])).state, "cancelled");
    } finally {
      await b.shutdown();
    }
  },
);

Deno.test(
  "a job stopped between planning and training starts on the plan it made",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const stateDir = await Deno.makeTempDir({ dir: root, prefix: ".state_" });
    const a = await serverAt(stateDir, countingPlanner(1).planner);
    // The GPU lane is taken: the job plans (no budget: no timing) and then waits for it.
    const lease = await a.context.scheduler.acquire("test", { bounded: false });
    const submitted = await a.app.request(
      "/v1/jobs/train",
      jsonPost({ dataset: "synth", config: { ...TINY_NET, epochs: 1, itersPerEpoch: 2 } }),
    );
    const { id } = (await submitted.json()) as Job;
    await until(() => a.context.store.get(id)!.plan !== undefined);
    const stopping = a.shutdown();
    await until(() => a.context.store.get(id)!.state === "interrupted");
    lease.release();
    await stopping;
    const runDir = join(stateDir, id, "run");
    assert.ok((await Deno.stat(join(runDir, "plans.json"))).isFile);
    await assert.rejects(Deno.stat(join(runDir, "run.json")), Deno.errors.NotFound);
    const plan = a.context.store.get(id)!.plan;

    const b = await serverAt(stateDir, countingPlanner(1).planner);
    try {
      const seen = (await b.context.store.events(id)).length;
      assert.equal((await b.app.request(`/v1/jobs/${id}/resume`, { method: "POST" })).status, 202);
      const done = await waitForJob(b, id, ["succeeded", "failed"], 120_000);
      assert.equal(done.state, "succeeded", JSON.stringify(done.error));
      assert.deepEqual(done.plan, plan);
      assert.equal(done.result!.steps, 2);
      const lines = (await b.context.store.events(id)).slice(seen)
        .filter((e) => e.type === "log").map((e) => String(e.data.message));
      assert.ok(lines.some((l) => /^resumed: training had not started/.test(l)), lines.join("\n"));
      assert.ok(!lines.some((l) => /^planning /.test(l)), lines.join("\n"));
    } finally {
      await b.shutdown();
    }
  },
);

Deno.test("planning fields are checked before the job is queued", testOpts, async () => {
  const { root } = await dataRoot();
  const planned = await newServer({ planner: countingPlanner(1).planner });
  const bare = await newServer();
  try {
    const post = (server: VoxsegServer, body: Record<string, unknown>) =>
      server.app.request("/v1/jobs/train", jsonPost({ dataset: "synth", ...body }));
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ timeBudget: "soon" }, "invalid_request", /"timeBudget" must be a duration/],
      [{ timeBudget: 0 }, "invalid_request", /"timeBudget" must be a duration/],
      [{ timeBudget: "15m", plan: "none" }, "invalid_request", /drop "plan": "none"/],
      [{ network: "resnet" }, "invalid_request", /"network" must be one of unet3d, plain/],
      [{ fold: "all" }, "invalid_request", /one job per fold/],
      [{ fold: -1 }, "invalid_request", /"fold" must be a fold number/],
      [{ gpuMemory: "lots" }, "invalid_request", /"gpuMemory" must be a size/],
      [{ plan: "nowhere/plans.json" }, "not_found", /plan/],
      [{ plan: "synth" }, "invalid_plan", /holds no plans\.json.*voxseg plan/],
      [{ plan: "../outside.json" }, "invalid_path", /must not contain '\.\.'/],
    ];
    for (const [body, code, message] of cases) {
      const text = await assertError(await post(planned, body), 400, code);
      assert.match(text, message, JSON.stringify(body));
      assert.ok(!text.includes(root), text);
    }
    await Deno.writeTextFile(join(root, "bad_plan.json"), "{ not json");
    assert.match(
      await assertError(await post(planned, { plan: "bad_plan.json" }), 400, "invalid_plan"),
      /cannot be used: .*not valid JSON/,
    );
    // A server built without the planner trains unplanned, and says so when asked to plan.
    assert.match(
      await assertError(await post(bare, { timeBudget: "15m" }), 400, "planning_unavailable"),
      /voxseg serve/,
    );
  } finally {
    await planned.shutdown();
    await bare.shutdown();
  }
});

async function until(done: () => boolean | Promise<boolean>, timeoutMs = 300_000) {
  const t0 = Date.now();
  while (!(await done())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not done after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
