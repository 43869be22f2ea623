/**
 * What running a job needs from the server. Kept apart from ./job.ts, which describes jobs as
 * stored and served, so the job store can import the job types without importing itself back.
 */

import type { Volume } from "../../data/volume.ts";
import type { Prediction, PredictionSummary } from "../../infer/predict.ts";
import type { NamedModel } from "../../infer/dicom_seg.ts";
import type { ModelRegistry } from "../models.ts";
import type { PacsEndpoint, PacsRegistry } from "../pacs.ts";
import type { DataRoot } from "../paths.ts";
import type { GpuScheduler } from "../scheduler.ts";
import type { JobStore } from "./store.ts";

/** The server's parts a job runs with. */
export interface JobDeps {
  store: JobStore;
  scheduler: GpuScheduler;
  models: ModelRegistry;
  root: DataRoot;
  /** The PACS endpoints the operator configured (`serve --pacs`); none by default. */
  pacsEndpoints?: PacsRegistry;
  /** The DICOM pipeline of PACS prediction jobs; without it they fail `pacs_unavailable`. */
  pacs?: PacsHooks;
}

/** Where the DICOM pipeline plugs into the server. */
export interface PacsHooks {
  /** Pulls, segments, and stores or writes the result of one PACS prediction job. */
  predict?(input: PacsPredictInput): Promise<PacsPredictOutput>;
}

/** A progress report of a PACS job, shown as the job's `progress` and sent as an event. */
export interface PacsProgress {
  /** What it is doing: "pull", "decode", "predict", "store", … */
  phase: string;
  done?: number;
  total?: number;
  /** A short note for people; no patient data (no names, no UIDs). */
  message?: string;
}

/**
 * What the server hands the pipeline. The server resolved the endpoint (credentials included),
 * made `pulledDir` and owns the GPU and the data root: the pipeline segments through
 * `segment` and writes under the data root only through `output.write`, so purging the job
 * removes exactly what it pulled and wrote.
 */
export interface PacsPredictInput {
  /** The endpoint, with its credentials: never log it or put it in an error message. */
  pacs: PacsEndpoint;
  /** StudyInstanceUID (checked: digits and dots, ≤ 64). */
  study: string;
  /** SeriesInstanceUID, when the client named one; else the pipeline picks one. */
  series?: string;
  /** Store the result back to the PACS as a DICOM Segmentation. */
  store: boolean;
  /** `<state>/<job id>/pulled/`, created, mode 0700; instances pulled by an earlier attempt stay. */
  pulledDir: string;
  /** The model's name (for the Segmentation's algorithm identification). */
  model: string;
  /**
   * Runs the job's model on `volume` holding the GPU lane, with the request's options; with
   * the prediction, the model's name and checkpoint metadata (classes and their codes).
   */
  segment(volume: Volume): Promise<Prediction & { model: NamedModel }>;
  /**
   * Present when the request named an `output` (`.nii`, `.nii.gz` or `.dcm`, by `name`):
   * `write` puts the bytes there as a new file (never replacing one) and records it as the
   * job's, so a purge can remove it.
   */
  output?: { name: string; write(bytes: Uint8Array): Promise<void> };
  /** Aborted when the job is cancelled or the server stops: stop promptly, throw its reason. */
  signal: AbortSignal;
  onProgress(progress: PacsProgress): void;
}

/** What the pipeline returns; it becomes the job's result. */
export interface PacsPredictOutput {
  /** The SeriesInstanceUID segmented. */
  seriesUid: string;
  /** Why that series: "requested", or how it was picked ("the CT series with most slices"). */
  choice: string;
  summary: PredictionSummary;
  /** Present when stored to the PACS: the Segmentation's SOPInstanceUID. */
  stored?: { sopInstanceUid: string };
}
