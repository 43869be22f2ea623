/**
 * A prediction job: a NIfTI volume under the data root segmented with a model, holding the
 * GPU lane for the volume, and the label map written (atomically) with the input's geometry.
 */

import { readNifti, writeNifti } from "../../data/nifti.ts";
import { ApiError } from "../errors.ts";
import { predictRequest } from "../inference.ts";
import type { Job, JobDeps, PredictJobRequest } from "./job.ts";

/** Predicts; returns the job's result (model, output path, per-class summary). */
export async function runPredictJob(
  job: Job,
  signal: AbortSignal,
  { root, models, scheduler, store }: JobDeps,
): Promise<Record<string, unknown>> {
  const request = job.request as PredictJobRequest;
  const input = await root.resolve(request.input, { what: "input", mustExist: true });
  const output = await root.resolve(request.output, { what: "output" });
  const entry = await models.entry(request.model);
  let volume;
  try {
    volume = await readNifti(input);
  } catch (e) {
    throw new ApiError(400, "invalid_nifti", (e as Error).message);
  }
  const lease = await scheduler.acquire(`predict job ${job.id}`, { bounded: false, signal });
  let prediction;
  try {
    const loaded = await models.load(entry);
    prediction = await predictRequest(loaded, volume, {
      overlap: request.overlap,
      tta: request.tta,
      precision: request.precision,
      signal,
      onProgress: (done, total) => {
        job.progress = { phase: "predict", done, total, fraction: done / total };
        store.append(job.id, "progress", job.progress);
      },
    });
  } finally {
    lease.release();
  }
  await writeNifti(output, prediction.labels, { like: volume.header });
  return { model: entry.name, output: root.display(output), summary: prediction.summary };
}
