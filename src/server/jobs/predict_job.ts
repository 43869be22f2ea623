/**
 * A prediction job: a NIfTI volume or a DICOM series under the data root segmented with a
 * model, holding the GPU lane for the volume, and the result — a label map with the input's
 * geometry, or for a series also a DICOM Segmentation of it — written as a new file (never over
 * an existing one), its folder checked again right before it is linked into place.
 */

import type { DicomSeries } from "../../data/dicom/types.ts";
import { gzip } from "../../data/gzip.ts";
import { encodeNifti, type NiftiHeader } from "../../data/nifti.ts";
import { checkChannelGrids, decodeNiftiChannels } from "../../data/channels.ts";
import type { Volume } from "../../data/volume.ts";
import { type NamedModel, segmentationOf } from "../../infer/dicom_seg.ts";
import type { Prediction } from "../../infer/predict.ts";
import { ApiError } from "../errors.ts";
import { CHANNELS_IN_JOBS, predictRequest } from "../inference.ts";
import type { DataRoot } from "../paths.ts";
import { stampOf } from "../paths.ts";
import { StorageError } from "./store.ts";
import { readDicomJobInput } from "./dicom_input.ts";
import { pathExists, readVerified } from "./files.ts";
import type { JobDeps } from "./deps.ts";
import type { Job, PacsPredictJobRequest, PredictJobRequest } from "./job.ts";

/** What a job segments: the volume, and the NIfTI header or DICOM series it came with. */
export interface JobInput {
  /** Channel 0's, on whose grid the label map lies. */
  volume: Volume;
  /** Every channel, in order, when the input has several (a list of files, a 4D NIfTI). */
  channels?: Volume[];
  header?: NiftiHeader;
  series?: DicomSeries;
}

/** Predicts; returns the job's result (model, output path, per-class summary, the series). */
export async function runPredictJob(
  job: Job,
  signal: AbortSignal,
  deps: JobDeps,
): Promise<Record<string, unknown>> {
  const { root, models } = deps;
  const request = job.request as PredictJobRequest;
  const inputs = typeof request.input === "string" ? [request.input] : request.input;
  const resolved: string[] = [];
  for (const [c, input] of inputs.entries()) {
    const what = inputs.length > 1 ? `input channel ${c}` : "input";
    resolved.push(await root.resolve(input, { what, mustExist: true }));
  }
  const output = await root.resolve(request.output, { what: "output" });
  if (await pathExists(output)) throw root.exists(output, "output");
  const entry = await models.entry(request.model);
  const source = await readJobInput(job, root, resolved);
  const { model, ...prediction } = await segmentOnGpu(
    job,
    source.channels ?? source.volume,
    signal,
    deps,
  );
  signal.throwIfAborted();
  await writeJobOutput(
    job,
    root,
    output,
    await encodeOutput(output, prediction.labels, source, model),
  );
  return {
    model: entry.name,
    output: root.display(output),
    ...(source.series ? { seriesUid: source.series.seriesInstanceUid } : {}),
    summary: prediction.summary,
  };
}

/**
 * The job's model on `volume`, holding the GPU lane, with the request's overlap, flips and
 * precision; with the prediction, the model's name and metadata (for a Segmentation).
 */
export async function segmentOnGpu(
  job: Job,
  volume: Volume | readonly Volume[],
  signal: AbortSignal,
  { models, scheduler, store }: JobDeps,
): Promise<Prediction & { model: NamedModel }> {
  const request = job.request as PredictJobRequest | PacsPredictJobRequest;
  const entry = await models.entry(request.model);
  const lease = await scheduler.acquire(`predict job ${job.id}`, { bounded: false, signal });
  try {
    const loaded = await models.load(entry);
    const prediction = await predictRequest(loaded, volume, {
      overlap: request.overlap,
      tta: request.tta,
      precision: request.precision,
      signal,
      onProgress: (done, total) => {
        job.progress = { phase: "predict", done, total, fraction: done / total };
        store.append(job.id, "progress", job.progress);
      },
    }, { model: entry.name, send: CHANNELS_IN_JOBS });
    return { ...prediction, model: { name: entry.name, meta: loaded.meta } };
  } finally {
    lease.release();
  }
}

/**
 * The job's input: its DICOM series when it was accepted as one, else its NIfTI volume — or
 * channels: a 4D NIfTI's volumes, or one 3D file per channel, which must lie on one grid (422
 * `channel_grid_mismatch` naming the file that does not).
 */
async function readJobInput(job: Job, root: DataRoot, inputs: string[]): Promise<JobInput> {
  if (job.dicomInput) {
    const request = job.request as PredictJobRequest;
    const series = await readDicomJobInput(root, inputs[0], job.dicomInput, request.series);
    return { volume: series.volume, series };
  }
  const channels = [];
  try {
    for (const [c, input] of inputs.entries()) {
      const bytes = await readVerified(
        root,
        input,
        inputs.length > 1 ? `input channel ${c}` : "input",
      );
      channels.push(...await decodeNiftiChannels(bytes));
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(400, "invalid_nifti", root.redact((e as Error).message));
  }
  if (inputs.length > 1) {
    try {
      checkChannelGrids(channels, inputs.map((p) => JSON.stringify(root.display(p))));
    } catch (e) {
      throw new ApiError(422, "channel_grid_mismatch", root.redact((e as Error).message));
    }
  }
  const volume = channels[0];
  return { volume, header: volume.header, ...(channels.length > 1 ? { channels } : {}) };
}

/**
 * The output file's bytes: a DICOM Segmentation for `.dcm` (the input is a series: checked at
 * submit), else the label map as NIfTI, gzipped for `.gz`.
 */
export async function encodeOutput(
  output: string,
  labels: Volume,
  source: JobInput,
  model: NamedModel,
): Promise<Uint8Array> {
  if (/\.dcm$/i.test(output)) {
    if (!source.series) {
      throw new ApiError(400, "invalid_request", "a .dcm output needs a DICOM series as input");
    }
    return segmentationOf(labels.data as Uint8Array, source.series, [model]);
  }
  // A series has no NIfTI header to copy: the label map says what wrote it, as the CLI's does.
  const raw = encodeNifti(
    labels,
    source.header ? { like: source.header } : { description: "voxseg labels" },
  );
  return /\.gz$/i.test(output) ? await gzip(raw) : raw;
}

/** Writes the output as a new file and records it as the job's (for the dashboard and purge). */
export async function writeJobOutput(
  job: Job,
  root: DataRoot,
  output: string,
  bytes: Uint8Array,
): Promise<void> {
  try {
    const info = await root.writeNew(output, bytes, "output");
    job.wrote = { path: root.display(output), ...stampOf(info) };
  } catch (e) {
    if (e instanceof ApiError) throw e;
    const failure = new StorageError(e, `the output ${JSON.stringify(root.display(output))}`);
    throw new ApiError(507, "output_write_failed", failure.message);
  }
}
