import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeNifti, writeNifti } from "../../src/data/nifti.ts";
import { createApp } from "../../src/server/app.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  niftiBytes,
  readEvents,
  type SseEvent,
  testOpts,
  TINY_TRAIN,
  waitForJob,
} from "./server_fixture.ts";

const train = (name: string, config: Record<string, unknown> = {}) =>
  jsonPost({ dataset: "synth", name, config: { ...TINY_TRAIN, ...config } });

const steps = (events: SseEvent[]) =>
  events.filter((e) => e.event === "progress").map((e) => e.data.step as number);

/** Waits until the job has logged at least `n` training steps. */
async function afterSteps(server: Awaited<ReturnType<typeof newServer>>, id: string, n: number) {
  while (((server.context.store.get(id)!.progress?.step as number) ?? 0) < n) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test(
  "train job: SSE streams progress, metrics and the final state; the model is served",
  testOpts,
  async () => {
    const { app } = await newServer();
    const res = await app.request("/v1/jobs/train", train("api-model"));
    assert.equal(res.status, 202);
    const job = (await res.json()) as Job;
    assert.equal(res.headers.get("location"), `/v1/jobs/${job.id}`);
    assert.equal(job.kind, "train");
    assert.equal(job.name, "api-model");

    const events = await readEvents(await app.request(`/v1/jobs/${job.id}/events`));
    const types = events.map((e) => e.event);
    assert.equal(events[0].data.state, "queued");
    assert.ok(events.some((e) => e.event === "state" && e.data.state === "running"));
    assert.deepEqual(steps(events), [1, 2, 3]);
    const progress = events.find((e) => e.event === "progress")!.data;
    assert.ok(Number.isFinite(progress.loss) && (progress.loss as number) > 0);
    assert.ok(types.includes("metrics"), `events: ${types}`);
    assert.ok(types.includes("checkpoint"));
    const last = events.at(-1)!;
    assert.deepEqual([last.event, last.data.state], ["state", "succeeded"]);
    assert.deepEqual(events.map((e) => e.id), events.map((_, i) => i + 1));

    const done = await (await app.request(`/v1/jobs/${job.id}`)).json();
    assert.equal(done.state, "succeeded");
    assert.equal(done.progress.fraction, 1);
    assert.ok("dice/mean_fg" in done.metrics);
    const result = await (await app.request(`/v1/jobs/${job.id}/result`)).json();
    assert.equal(result.model, "api-model");
    assert.equal(result.steps, 3);
    assert.match(result.checkpoint, /run\/best\.safetensors$/);

    // The trained model is listed and predicts, without a restart.
    const model = await (await app.request("/v1/models/api-model")).json();
    assert.equal(model.source, "job");
    assert.equal(model.jobId, job.id);
    const predicted = await app.request("/v1/models/api-model/predict", {
      method: "POST",
      body: await niftiBytes(ctVolume()),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(predicted.status, 200);
    assert.deepEqual((await decodeNifti(new Uint8Array(await predicted.arrayBuffer()))).shape, [
      12,
      20,
      24,
    ]);

    // A finished job's stream replays everything and ends; Last-Event-ID skips what was seen.
    const again = await readEvents(await app.request(`/v1/jobs/${job.id}/events`));
    assert.equal(again.length, events.length);
    const tail = await readEvents(
      await app.request(`/v1/jobs/${job.id}/events`, { headers: { "last-event-id": "3" } }),
    );
    assert.deepEqual(tail.map((e) => e.id), events.slice(3).map((e) => e.id));

    const listed = await (await app.request("/v1/jobs?kind=train&state=succeeded")).json();
    assert.deepEqual(listed.jobs.map((j: Job) => j.id), [job.id]);
    const metrics = await (await app.request("/metrics")).text();
    assert.match(metrics, /^voxseg_jobs\{state="succeeded"\} 1$/m);
  },
);

Deno.test(
  "train job requests: 415, 400 (JSON, fields, paths, dataset, config), 409, 401",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const { app } = await newServer({ token: "t0k" });
    const auth = { authorization: "Bearer t0k" };
    const post = (body: unknown) => app.request("/v1/jobs/train", jsonPost(body, auth));
    await assertError(await app.request("/v1/jobs/train", train("x")), 401, "unauthorized");
    await assertError(
      await app.request("/v1/jobs/train", { method: "POST", body: "{}", headers: auth }),
      415,
      "unsupported_media_type",
    );
    await assertError(
      await app.request("/v1/jobs/train", jsonPost(undefined, auth)),
      400,
      "invalid_json",
    );
    await assertError(await post([]), 400, "invalid_request");
    await assertError(await post({}), 400, "invalid_request");
    assert.match(
      await assertError(await post({ dataset: "synth", epochs: 3 }), 400, "invalid_request"),
      /unknown field "epochs"/,
    );
    await assertError(await post({ dataset: "synth", name: "../x" }), 400, "invalid_request");
    await assertError(await post({ dataset: "../synth" }), 400, "invalid_path");
    await assertError(await post({ dataset: "/etc" }), 400, "invalid_path");
    await assertError(await post({ dataset: ".voxseg" }), 400, "invalid_path");
    await assertError(await post({ dataset: "nowhere" }), 400, "not_found");
    await Deno.mkdir(join(root, "empty"), { recursive: true });
    assert.match(
      await assertError(await post({ dataset: "empty" }), 400, "invalid_dataset"),
      /dataset\.json/,
    );
    assert.match(
      await assertError(
        await post({ dataset: "synth", config: { epoks: 2 } }),
        400,
        "invalid_config",
      ),
      /epoks/,
    );
    await assertError(
      await post({ dataset: "synth", config: { "optimizer.lr": -1 } }),
      400,
      "invalid_config",
    );
    await assertError(
      await post({ dataset: "synth", config: { "model.classes": 5 } }),
      400,
      "invalid_config",
    );
    assert.match(
      await assertError(
        await post({ dataset: "synth", config: { out: "/tmp/x" } }),
        400,
        "invalid_request",
      ),
      /server sets/,
    );
    assert.match(
      await assertError(await post({ dataset: "synth", name: "tiny" }), 409, "name_taken"),
      /tiny/,
    );
  },
);

Deno.test(
  "predict job: writes the label map under the data root; bad requests refused",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const { app } = await newServer();
    const volume = ctVolume();
    await writeNifti(join(root, "inputs", "ct.nii.gz"), volume);
    const res = await app.request(
      "/v1/jobs/predict",
      jsonPost({
        model: "tiny",
        input: "inputs/ct.nii.gz",
        output: "outputs/a/ct_seg.nii.gz",
        precision: "f16",
      }),
    );
    assert.equal(res.status, 202);
    const job = (await res.json()) as Job;
    const events = await readEvents(await app.request(`/v1/jobs/${job.id}/events`));
    assert.equal(events.at(-1)!.data.state, "succeeded", JSON.stringify(events.at(-1)));
    assert.ok(events.some((e) => e.event === "progress" && e.data.phase === "predict"));
    const result = await (await app.request(`/v1/jobs/${job.id}/result`)).json();
    assert.equal(result.output, "outputs/a/ct_seg.nii.gz");
    assert.deepEqual(result.summary.shape, volume.shape);
    const labels = await decodeNifti(await Deno.readFile(join(root, "outputs/a/ct_seg.nii.gz")));
    assert.deepEqual(labels.shape, volume.shape);
    labels.affine.forEach((v, i) => assert.ok(Math.abs(v - volume.affine[i]) < 1e-4));

    const post = (body: unknown) => app.request("/v1/jobs/predict", jsonPost(body));
    const ok = { model: "tiny", input: "inputs/ct.nii.gz", output: "outputs/b.nii" };
    await assertError(await post({ ...ok, model: "ghost" }), 404, "model_not_found");
    await assertError(await post({ ...ok, output: "outputs/b.txt" }), 400, "invalid_request");
    await assertError(await post({ ...ok, input: "inputs/none.nii" }), 400, "not_found");
    await assertError(await post({ ...ok, output: "../b.nii" }), 400, "invalid_path");
    await assertError(await post({ ...ok, input: "/etc/hosts" }), 400, "invalid_path");
    await assertError(await post({ ...ok, overlap: 3 }), 400, "invalid_request");
    await assertError(await post({ ...ok, precision: "f64" }), 400, "invalid_request");
    // A file that is not NIfTI is refused before the job is queued.
    await Deno.writeTextFile(join(root, "inputs", "junk.nii"), "junk");
    assert.match(
      await assertError(await post({ ...ok, input: "inputs/junk.nii" }), 400, "invalid_nifti"),
      /"input" "inputs\/junk\.nii" is not a NIfTI volume/,
    );
    // The label map written above is never replaced, nor is the input.
    await assertError(
      await post({ ...ok, output: "outputs/a/ct_seg.nii.gz" }),
      409,
      "output_exists",
    );
    await assertError(
      await post({ ...ok, output: "inputs/ct.nii.gz" }),
      400,
      "invalid_request",
    );

    // Purged: the label map it wrote, its folder and record go; the input stays.
    const purged = await app.request(`/v1/jobs/${job.id}?purge=true`, { method: "DELETE" });
    assert.equal(purged.status, 200);
    const report = await purged.json();
    assert.deepEqual(report.removed, { outputs: 1, pulledFiles: 0, runFiles: 0, record: true });
    await assert.rejects(Deno.stat(join(root, "outputs/a/ct_seg.nii.gz")), Deno.errors.NotFound);
    assert.ok((await Deno.stat(join(root, "inputs/ct.nii.gz"))).isFile);
    assert.deepEqual((await (await app.request("/v1/jobs")).json()).jobs, []);
    await assertError(await app.request(`/v1/jobs/${job.id}`), 404, "job_not_found");
  },
);

Deno.test(
  "purge of a running training job: 202, it stops, then its run folder and record go",
  testOpts,
  async () => {
    const server = await newServer();
    const { app } = server;
    const a = (await (await app.request("/v1/jobs/train", train("purged", { itersPerEpoch: 40 })))
      .json()) as Job;
    await afterSteps(server, a.id, 2);
    const jobDir = join(server.context.store.dir, a.id);
    const res = await app.request(`/v1/jobs/${a.id}?purge=true`, { method: "DELETE" });
    assert.equal(res.status, 202);
    const pending = await res.json();
    assert.equal(pending.id, a.id);
    assert.match(pending.purge, /pending/);
    while (server.context.store.get(a.id)) await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(Deno.stat(jobDir), Deno.errors.NotFound);
    assert.deepEqual((await (await app.request("/v1/jobs")).json()).jobs, []);
    await assertError(await app.request("/v1/models/purged"), 404, "model_not_found");
    // Its stop and purge left the runner working: the name is free again.
    const again = await app.request("/v1/jobs/train", train("purged"));
    assert.equal(again.status, 202);
    await waitForJob(server, ((await again.json()) as Job).id, ["succeeded"]);
    await server.shutdown();
  },
);

Deno.test(
  "jobs: unknown ids 404, bad filters 400, finished jobs 409 on cancel/resume",
  testOpts,
  async () => {
    const { app } = await newServer();
    await assertError(await app.request("/v1/jobs/nope"), 404, "job_not_found");
    await assertError(await app.request("/v1/jobs/nope/events"), 404, "job_not_found");
    await assertError(await app.request("/v1/jobs/nope/result"), 404, "job_not_found");
    await assertError(
      await app.request("/v1/jobs/nope", { method: "DELETE" }),
      404,
      "job_not_found",
    );
    await assertError(
      await app.request("/v1/jobs/nope/resume", { method: "POST" }),
      404,
      "job_not_found",
    );
    await assertError(await app.request("/v1/jobs?state=bogus"), 400, "invalid_request");
    await assertError(await app.request("/v1/jobs?limit=0"), 400, "invalid_request");
    const { root } = await dataRoot();
    await writeNifti(join(root, "inputs", "small.nii"), ctVolume([8, 8, 8]));
    const job = (await (await app.request(
      "/v1/jobs/predict",
      jsonPost({ model: "tiny", input: "inputs/small.nii", output: "outputs/small_seg.nii" }),
    )).json()) as Job;
    await readEvents(await app.request(`/v1/jobs/${job.id}/events`));
    await assertError(
      await app.request(`/v1/jobs/${job.id}`, { method: "DELETE" }),
      409,
      "job_finished",
    );
    await assertError(
      await app.request(`/v1/jobs/${job.id}/resume`, { method: "POST" }),
      409,
      "not_resumable",
    );
  },
);

Deno.test(
  "cancel: queued at once; running training stops, keeps its checkpoint, resumes",
  testOpts,
  async () => {
    const server = await newServer();
    const { app } = server;
    const a = (await (await app.request("/v1/jobs/train", train("long", { itersPerEpoch: 40 })))
      .json()) as Job;
    const b = (await (await app.request("/v1/jobs/train", train("queued"))).json()) as Job;
    const cancelledB = await app.request(`/v1/jobs/${b.id}`, { method: "DELETE" });
    assert.equal(cancelledB.status, 200);
    assert.equal((await cancelledB.json()).state, "cancelled");

    await afterSteps(server, a.id, 2);
    const stopping = await app.request(`/v1/jobs/${a.id}`, { method: "DELETE" });
    assert.equal(stopping.status, 202);
    const stopped = await waitForJob(server, a.id, ["cancelled"]);
    const stoppedAt = stopped.progress!.step as number;
    assert.ok(stoppedAt < 40, `ran to the end (${stoppedAt})`);
    assert.equal(stopped.result!.stoppedBy, "aborted");
    assert.match(stopped.result!.checkpoint as string, /last\.safetensors$/);
    const runDir = server.context.store.runDir(a.id);
    assert.ok((await Deno.stat(join(runDir, "last.safetensors"))).isFile);
    await assertError(await app.request("/v1/models/long"), 404, "model_not_found");

    // Resume continues from the checkpoint: the next step is the one after the last.
    const seen = (await server.context.store.events(a.id)).length;
    const resumed = await app.request(`/v1/jobs/${a.id}/resume`, { method: "POST" });
    assert.equal(resumed.status, 202);
    const events = await readEvents(
      await app.request(`/v1/jobs/${a.id}/events`, { headers: { "last-event-id": String(seen) } }),
    );
    assert.equal(steps(events)[0], stoppedAt + 1);
    assert.equal(steps(events).at(-1), 40);
    assert.equal(events.at(-1)!.data.state, "succeeded");
    assert.equal((await app.request("/v1/models/long")).status, 200);
  },
);

Deno.test(
  "synchronous predictions are served between steps of a running training job",
  testOpts,
  async () => {
    const server = await newServer();
    const { app } = server;
    const job = (await (await app.request("/v1/jobs/train", train("busy", { itersPerEpoch: 40 })))
      .json()) as Job;
    await afterSteps(server, job.id, 1);
    const res = await app.request("/v1/models/tiny/predict", {
      method: "POST",
      body: await niftiBytes(ctVolume([8, 16, 16])),
      headers: { "content-type": "application/octet-stream", accept: "application/json" },
    });
    assert.equal(res.status, 200);
    const during = server.context.store.get(job.id)!;
    assert.equal(during.state, "running", "the prediction waited for the whole training run");
    assert.ok((during.progress!.step as number) < 40);
    await app.request(`/v1/jobs/${job.id}`, { method: "DELETE" });
    await waitForJob(server, job.id, ["cancelled"]);
  },
);

Deno.test(
  "shutdown and restart: training checkpoints and is interrupted, queued jobs survive, resume continues",
  testOpts,
  async () => {
    const { root } = await dataRoot();
    const stateDir = await Deno.makeTempDir({ dir: root, prefix: ".state_" });
    const first = await newServer({ stateDir });
    const a =
      (await (await first.app.request("/v1/jobs/train", train("restart", { itersPerEpoch: 40 })))
        .json()) as Job;
    await writeNifti(join(root, "inputs", "later.nii"), ctVolume([8, 8, 8]));
    const b = (await (await first.app.request(
      "/v1/jobs/predict",
      jsonPost({ model: "tiny", input: "inputs/later.nii", output: "outputs/later_seg.nii" }),
    )).json()) as Job;
    await afterSteps(first, a.id, 2);
    // A stream open during shutdown ends with the interruption.
    const stream = readEvents(await first.app.request(`/v1/jobs/${a.id}/events`));
    await first.shutdown(); // what SIGTERM does
    const interrupted = first.context.store.get(a.id)!;
    assert.equal(interrupted.state, "interrupted");
    assert.equal((await stream).at(-1)!.data.state, "interrupted");
    const stoppedAt = interrupted.progress!.step as number;
    assert.ok((await Deno.stat(join(first.context.store.runDir(a.id), "last.safetensors"))).isFile);
    assert.equal(first.context.store.get(b.id)!.state, "queued");
    await assertError(
      await first.app.request("/v1/jobs/train", train("late")),
      503,
      "shutting_down",
    );

    // A job whose process died while it ran (no graceful stop).
    const crashed: Job = {
      id: "jcrashed-00000000",
      kind: "predict",
      name: "tiny",
      state: "running",
      createdAt: new Date(0).toISOString(),
      request: { model: "tiny", input: "inputs/later.nii", output: "outputs/x.nii" },
      attempts: 1,
    };
    await Deno.mkdir(join(stateDir, crashed.id));
    await Deno.writeTextFile(join(stateDir, crashed.id, "job.json"), JSON.stringify(crashed));

    const second = await createApp({ dataRoot: root, stateDir, modelsDir: join(root, "models") });
    await second.gpuReady;
    const listed = (await (await second.app.request("/v1/jobs")).json()).jobs as Job[];
    assert.deepEqual(
      Object.fromEntries(listed.map((j) => [j.id, j.state])),
      {
        [a.id]: "interrupted",
        [b.id]: listed.find((j) => j.id === b.id)!.state,
        [crashed.id]: "interrupted",
      },
    );
    assert.match(listed.find((j) => j.id === crashed.id)!.error!.message, /resume/);
    // The queued prediction runs by itself after the restart.
    await waitForJob(second, b.id, ["succeeded"]);
    const seen = (await second.context.store.events(a.id)).length;
    assert.equal(
      (await second.app.request(`/v1/jobs/${a.id}/resume`, { method: "POST" })).status,
      202,
    );
    const events = await readEvents(
      await second.app.request(`/v1/jobs/${a.id}/events`, {
        headers: { "last-event-id": String(seen) },
      }),
    );
    assert.equal(steps(events)[0], stoppedAt + 1);
    assert.equal(events.at(-1)!.data.state, "succeeded");
    assert.equal(second.context.store.get(a.id)!.attempts, 2);
    await second.shutdown();
  },
);

Deno.test("job queue: full → 503 with Retry-After; DELETE needs the token", testOpts, async () => {
  const server = await newServer({ maxQueue: 1, token: "t" });
  const auth = { authorization: "Bearer t" };
  const submit = (name: string) =>
    server.app.request("/v1/jobs/train", jsonPost(JSON.parse(train(name).body), auth));
  const a = (await (await submit("qa")).json()) as Job; // running at once
  const b = (await (await submit("qb")).json()) as Job; // waits
  const refused = await submit("qc");
  assert.match(await assertError(refused, 503, "queue_full"), /job queue is full/);
  assert.equal(refused.headers.get("retry-after"), "30");
  await assertError(
    await server.app.request(`/v1/jobs/${b.id}`, { method: "DELETE" }),
    401,
    "unauthorized",
  );
  for (const id of [b.id, a.id]) {
    await server.app.request(`/v1/jobs/${id}`, { method: "DELETE", headers: auth });
  }
  await waitForJob(server, a.id, ["cancelled", "succeeded"]);
});
