/**
 * The job runner without a GPU: a stand-in model registry whose models cannot load, and the
 * GPU lane held by the test so prediction jobs wait at it. Covers the queue's bound under
 * concurrent submissions, cancel racing resume, the checks made when a prediction is
 * submitted (no overwrite, NIfTI input), a full disk under a running job, and what job errors
 * may say.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { writeDataset } from "../../src/data/dataset.ts";
import { writeNifti } from "../../src/data/nifti.ts";
import { ApiError } from "../../src/server/errors.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { JobRunner } from "../../src/server/jobs/runner.ts";
import { JobStore } from "../../src/server/jobs/store.ts";
import type { ModelRegistry } from "../../src/server/models.ts";
import { DataRoot } from "../../src/server/paths.ts";
import { type GpuLease, GpuScheduler, QueueFullError } from "../../src/server/scheduler.ts";
import { ctVolume } from "./server_fixture.ts";
import { enospc, fillableDisk } from "./jobs_disk.ts";

const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_runner_" }));
globalThis.addEventListener("unload", () => Deno.removeSync(base, { recursive: true }));
const rootDir = join(base, "root");
await writeNifti(join(rootDir, "in", "ct.nii.gz"), ctVolume([4, 6, 8]));
await writeNifti(join(rootDir, "in", "ct2.nii"), ctVolume([4, 6, 8]));
const root = await DataRoot.open(rootDir);

/** Why the stand-in models cannot load. */
let loadError = new Error("no GPU in this test");

/** Models that exist but cannot load: a job that gets the GPU fails at once. */
const models = {
  entry: (name: string) =>
    name === "m"
      ? Promise.resolve({ name, path: join(base, "m.safetensors"), source: "dir" })
      : Promise.reject(new ApiError(404, "model_not_found", `no model named "${name}"`)),
  has: () => Promise.resolve(false),
  // One input channel: what a prediction job's input is checked against at submit.
  summary: () => Promise.resolve({ meta: { model: { inChannels: 1 } } }),
  load: () => Promise.reject(loadError),
} as unknown as ModelRegistry;

let states = 0;

/** A runner on a fresh state folder with the GPU lane held until `lease.release()`. */
async function newRunner(maxQueue = 8, disk = fillableDisk()) {
  const store = await JobStore.open(join(base, `state${states++}`), { files: disk });
  const scheduler = new GpuScheduler({ maxQueue: 8 });
  const lease: GpuLease = await scheduler.acquire("test");
  const runner = new JobRunner({ store, scheduler, models, root, maxQueue });
  return { runner, store, scheduler, lease, disk };
}

let outputs = 0;
const predict = (input = "in/ct.nii.gz", output = `out/seg${outputs++}.nii.gz`) => ({
  model: "m",
  input,
  output,
});

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !ok(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(ok(), `timed out waiting for ${what}`);
}

async function refusal(promise: Promise<unknown>, status: number, code: string): Promise<string> {
  let message = "";
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, status, e.message);
    assert.equal(e.code, code, e.message);
    message = e.message;
    return true;
  });
  return message;
}

Deno.test("queue: concurrent submissions take exactly the free slots", async () => {
  const { runner, store, lease } = await newRunner(3);
  const first = await runner.submitPredict(predict()); // runs (waits for the GPU): no slot
  await until("the first job to run", () => first.state === "running");
  const tries = await Promise.allSettled(
    Array.from({ length: 10 }, () => runner.submitPredict(predict())),
  );
  const accepted = tries.filter((t) => t.status === "fulfilled");
  const refused = tries.filter((t) => t.status === "rejected");
  assert.equal(accepted.length, 3);
  for (const r of refused) assert.ok((r as PromiseRejectedResult).reason instanceof QueueFullError);
  assert.equal(store.list().filter((j) => j.state === "queued").length, 3);
  // A refused check (bad input) frees its slot.
  await runner.cancel((accepted[0] as PromiseFulfilledResult<Job>).value.id);
  await refusal(runner.submitPredict(predict("in/none.nii")), 400, "not_found");
  await runner.submitPredict(predict());
  await assert.rejects(runner.submitPredict(predict()), QueueFullError);
  lease.release();
});

Deno.test("cancel racing resume: the cancelled job stays cancelled, the other queued job keeps its place", async () => {
  const { runner, store, lease } = await newRunner();
  const a = await runner.submitPredict(predict());
  await until("a to run", () => a.state === "running");
  const b = await runner.submitPredict(predict());
  const x = await runner.submitPredict(predict());
  await runner.cancel(x.id);
  assert.equal(x.state, "cancelled");

  const resumed = runner.resume(x.id);
  await until("x to be queued again", () => store.get(x.id)!.state === "queued");
  const cancelled = runner.cancel(x.id);
  await Promise.all([resumed, cancelled]);
  assert.equal(x.state, "cancelled");
  assert.equal(b.state, "queued");

  // When a stops, b runs next, and x never does.
  await runner.cancel(a.id);
  await until("b to run", () => b.state === "running");
  assert.equal(x.state, "cancelled");
  assert.equal(x.attempts, 0);
  await runner.cancel(b.id);
  await until("b to stop", () => b.state === "cancelled");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(x.state, "cancelled");
  assert.equal(x.attempts, 0);
  lease.release();
});

Deno.test("predict submit: never overwrites (409 output_exists), output ≠ input, input must be NIfTI", async () => {
  const { runner, store, lease } = await newRunner();
  await Deno.mkdir(join(rootDir, "out"), { recursive: true });
  await Deno.writeTextFile(join(rootDir, "out", "taken.nii.gz"), "precious");
  const exists = await refusal(
    runner.submitPredict(predict("in/ct.nii.gz", "out/taken.nii.gz")),
    409,
    "output_exists",
  );
  assert.match(exists, /"out\/taken\.nii\.gz" exists/);
  assert.match(exists, /choose another "output" name \(e\.g\. "out\/taken_2\.nii\.gz"\)/);
  assert.equal(await Deno.readTextFile(join(rootDir, "out", "taken.nii.gz")), "precious");
  // Its own input, whatever spelling.
  await refusal(runner.submitPredict(predict("in/ct2.nii", "in/ct2.nii")), 400, "invalid_request");
  await refusal(
    runner.submitPredict(predict("in/ct2.nii", "./in//ct2.nii")),
    400,
    "invalid_request",
  );
  // Not NIfTI: refused now, naming the field, without showing the file.
  await Deno.mkdir(join(rootDir, "secret"), { recursive: true });
  await Deno.writeTextFile(
    join(rootDir, "secret", "patients.csv"),
    "name,mrn,diagnosis\nJane Roe,0042,C34\n",
  );
  const notNifti = await refusal(
    runner.submitPredict(predict("secret/patients.csv")),
    400,
    "invalid_nifti",
  );
  assert.match(notNifti, /"input" "secret\/patients\.csv" is not a NIfTI volume/);
  assert.doesNotMatch(notNifti, /Jane|mrn|0042/);
  // A gzip that holds no NIfTI either.
  await Deno.writeFile(
    join(rootDir, "secret", "notes.nii.gz"),
    new Uint8Array(
      await new Response(
        new Blob(["name,mrn\n"]).stream().pipeThrough(new CompressionStream("gzip")),
      ).arrayBuffer(),
    ),
  );
  await refusal(runner.submitPredict(predict("secret/notes.nii.gz")), 400, "invalid_nifti");
  assert.equal(store.list().length, 0, "no refused job is listed");

  // Two jobs writing the same new file: the second is refused while the first may write it.
  const a = await runner.submitPredict(predict("in/ct.nii.gz", "out/same.nii.gz"));
  assert.equal(a.inputChecked, true);
  await refusal(
    runner.submitPredict(predict("in/ct2.nii", "out/same.nii.gz")),
    409,
    "output_exists",
  );
  await runner.cancel(a.id);
  lease.release();
});

Deno.test("a full disk under a running job: it fails saying so, the runner goes on", async () => {
  const { runner, store, lease, disk } = await newRunner();
  disk.full = true;
  const message = await refusal(runner.submitPredict(predict()), 507, "insufficient_storage");
  assert.match(message, /no space left on the device holding the job state/);
  assert.equal(store.list().length, 0);
  disk.full = false;

  const a = await runner.submitPredict(predict());
  await until("a to run", () => a.state === "running");
  const b = await runner.submitPredict(predict());
  await store.flush();
  disk.full = true;
  await runner.cancel(a.id); // a's record cannot be written either: it is cancelled in memory
  await until("b to fail", () => b.state === "failed");
  assert.deepEqual(b.error, {
    code: "storage_full",
    message: "no space left on the device holding the job state; free space and resume the job",
  });
  assert.equal(a.state, "cancelled");

  // Space freed: the next job is accepted and runs; b resumes.
  disk.full = false;
  const c = await runner.submitPredict(predict());
  await until("c to run", () => c.state === "running");
  await runner.resume(b.id);
  assert.equal(b.state, "queued");
  await runner.cancel(b.id);
  lease.release();
  await until("c to end", () => c.state === "failed"); // the stand-in model cannot load
  assert.equal(c.error!.message, "no GPU in this test");
  await runner.shutdown();
});

/** A small valid manifest with no cases (enough for the submit checks). */
const manifest = (cases: { id: string; path: string }[] = []) => ({
  format: "voxseg-dataset" as const,
  version: 1 as const,
  name: "d",
  modality: "CT",
  classes: ["background", "lung", "infection"],
  targetSpacingMm: [2.5, 0.8, 0.8] as [number, number, number],
  intensity: null,
  cases: cases.map((c) => ({
    ...c,
    split: "train" as const,
    shape: [16, 32, 32] as [number, number, number],
    spacingMm: [2.5, 0.8, 0.8] as [number, number, number],
    hasLabel: false,
    voxelsPerClass: [],
    foreground: [],
  })),
});

Deno.test("training datasets must stay in the data root; job errors show no paths or contents", async () => {
  const { runner, lease } = await newRunner();
  const ds = join(rootDir, "ds");
  await writeDataset(ds, manifest([{ id: "a", path: "http://169.254.169.254/latest/a.zarr" }]));
  const ssrf = await refusal(runner.submitTrain({ dataset: "ds" }), 400, "invalid_dataset");
  assert.match(ssrf, /cases\[0\]\.path is a URL/);
  assert.doesNotMatch(ssrf, new RegExp(base));
  await writeDataset(ds, manifest([{ id: "a", path: "/etc/a.zarr" }]));
  await refusal(runner.submitTrain({ dataset: "ds" }), 400, "invalid_dataset");

  // dataset.json holding something else: the message names the file by its place in the root.
  const csv = "name,mrn,diagnosis\nJane Roe,0042,C34\n";
  await Deno.writeTextFile(join(ds, "dataset.json"), csv);
  const invalid = await refusal(runner.submitTrain({ dataset: "ds" }), 400, "invalid_dataset");
  assert.match(invalid, /^ds\/dataset\.json is not valid JSON/);
  assert.doesNotMatch(invalid, /Jane|mrn|0042/);
  assert.ok(!invalid.includes(base), invalid);

  // The same when it changes after the job was accepted: the job's error says so, cleanly.
  await writeDataset(ds, manifest());
  const hold = await runner.submitPredict(predict());
  await until("the predict job to run", () => hold.state === "running");
  const train = await runner.submitTrain({ dataset: "ds", name: "t1" });
  await Deno.writeTextFile(join(ds, "dataset.json"), csv);
  await runner.cancel(hold.id);
  await until("the training job to fail", () => train.state === "failed");
  assert.equal(train.error!.code, "invalid_dataset");
  assert.doesNotMatch(train.error!.message, /Jane|mrn|0042/);
  assert.ok(!train.error!.message.includes(base), train.error!.message);
  lease.release();
});

Deno.test("a job's own write finding the disk full (a checkpoint, say) fails it without a path", async () => {
  const { runner, lease } = await newRunner();
  loadError = enospc(join(base, "state", "j1", "run", "last.safetensors"));
  try {
    const a = await runner.submitPredict(predict());
    lease.release();
    await until("a to fail", () => a.state === "failed");
    assert.deepEqual(a.error, {
      code: "storage_full",
      message: "no space left on the device holding the job's files; free space and resume the job",
    });
  } finally {
    loadError = new Error("no GPU in this test");
  }
});
