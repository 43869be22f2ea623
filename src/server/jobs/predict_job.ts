/**
 * A prediction job: a NIfTI volume under the data root segmented with a model, holding the
 * GPU lane for the volume, and the label map written with the input's geometry as a new file
 * (never over an existing one), its folder checked again right before it is linked into place.
 */

import { gzip } from "../../data/gzip.ts";
import { decodeNifti, encodeNifti } from "../../data/nifti.ts";
import { ApiError } from "../errors.ts";
import { predictRequest } from "../inference.ts";
import { stampOf } from "../paths.ts";
import { StorageError } from "./store.ts";
import { pathExists, readVerified } from "./files.ts";
import type { JobDeps } from "./deps.ts";
import type { Job, PredictJobRequest } from "./job.ts";

/** Predicts; returns the job's result (model, output path, per-class summary). */
export async function runPredictJob(
  job: Job,
  signal: AbortSignal,
  { root, models, scheduler, store }: JobDeps,
): Promise<Record<string, unknown>> {
  const request = job.request as PredictJobRequest;
  const input = await root.resolve(request.input, { what: "input", mustExist: true });
  const output = await root.resolve(request.output, { what: "output" });
  if (await pathExists(output)) throw root.exists(output, "output");
  const entry = await models.entry(request.model);
  let volume;
  try {
    volume = await decodeNifti(await readVerified(root, input, "input"));
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(400, "invalid_nifti", root.redact((e as Error).message));
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
  signal.throwIfAborted();
  const raw = encodeNifti(prediction.labels, { like: volume.header });
  const bytes = /\.gz$/i.test(output) ? await gzip(raw) : raw;
  try {
    const info = await root.writeNew(output, bytes, "output");
    job.wrote = { path: root.display(output), ...stampOf(info) };
  } catch (e) {
    if (e instanceof ApiError) throw e;
    const failure = new StorageError(e, `the output ${JSON.stringify(root.display(output))}`);
    throw new ApiError(507, "output_write_failed", failure.message);
  }
  return { model: entry.name, output: root.display(output), summary: prediction.summary };
}
