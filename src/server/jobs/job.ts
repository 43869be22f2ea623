/** What a job is: its request, its state, its progress and its result, as stored and served. */

import type { Precision } from "../../ops/precision.ts";
import type { FileStamp } from "../paths.ts";

export type JobKind = "train" | "predict";

/** How a DICOM series lies under the data root: a folder of its files, a zip, or one file. */
export type DicomInputForm = "folder" | "zip" | "file";

/**
 * `queued` → `running` → `succeeded` | `failed` | `cancelled` | `interrupted` (the server
 * stopped while it ran). `interrupted`, `cancelled` and `failed` jobs can be resumed, which
 * queues them again (training continues from its last checkpoint).
 */
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "interrupted";

export const JOB_STATES: readonly JobState[] = [
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "interrupted",
];

/** States a job stays in until someone acts on it. */
export function isFinal(state: JobState): boolean {
  return state !== "queued" && state !== "running";
}

/** POST /v1/jobs/train. */
export interface TrainJobRequest {
  /** Dataset folder (holding dataset.json), relative to the data root. */
  dataset: string;
  /**
   * Config overrides: nested objects as in a `--config` file (`{"optimizer": {"lr": 3e-4}}`)
   * and/or flat dotted fields and aliases as on the command line (`{"optimizer.lr": 3e-4,
   * "epochs": 5}`). `out` and `data.dataset` are set by the server.
   */
  config?: Record<string, unknown>;
  /** The model's name once trained; default the job id. */
  name?: string;
  /**
   * The plan, as `voxseg train --plan`: a `plans.json` (or the folder holding one) under the
   * data root, or "none" for the defaults and `config` only. Absent: the `plans.json` beside
   * the dataset, else a new plan made into the job's run folder (what `voxseg train --data`
   * does).
   */
  plan?: string;
  /**
   * `--time-budget`, in seconds: planning, preprocessing and training end within it (a request
   * may also write "15m" or "1h30m"; it is stored in seconds).
   */
  timeBudget?: number;
  /** `--network`: the network the plan trains (default the plan's, else unet3d). */
  network?: "unet3d" | "plain";
  /** `--fold K`: cross-validation fold K of the plan's splits (else the dataset's 5 folds). */
  fold?: number;
  /**
   * `--gpu-memory`, in bytes: the GPU memory a new plan may use (default 4 GiB; a request may
   * also write "8GiB"; it is stored in bytes).
   */
  gpuMemory?: number;
}

/**
 * What a planned training job runs with, recorded in the job when planning is done (and shown
 * by GET /v1/jobs/{id}); a resumed job reuses it and the plan stored in its run folder, and
 * never plans again.
 */
export interface JobPlan {
  /**
   * Where the plan came from: `request` (the request's `plan`), `dataset` (`plans.json` beside
   * the dataset), `new` (planned now), or `none` (not planned: the request's `plan` "none";
   * `reason` says so).
   */
  source: "request" | "dataset" | "new" | "none";
  /** The plan file used, relative to the data root (request and dataset plans). */
  path?: string;
  reason?: string;
  network?: "unet3d" | "plain";
  /** Target voxel spacing, z, y, x mm. */
  targetSpacingMm?: number[];
  normalisation?: { scheme: string; window?: [number, number] };
  /**
   * Each input channel's normalisation, in channel order, for plans of several channels (the
   * name from dataset.json's `channel_names`, or `channel_N`).
   */
  channels?: { name: string; scheme: string; window?: [number, number] }[];
  /** Why the cases were resampled or mapped into the run folder; absent when they were not. */
  preprocessed?: string;
  /** The network and schedule the plan chose (the request's `config` may override them). */
  patchSize?: number[];
  batchSize?: number;
  baseChannels?: number;
  depth?: number;
  epochs?: number | null;
  itersPerEpoch?: number | null;
  /** How the time budget sized the run. */
  budget?: {
    budgetSeconds: number;
    msPerStep: number;
    steps: number;
    estimatedSeconds: number;
    reason: string;
  };
  fold?: number;
  /** Why each choice was made. */
  reasons?: Record<string, string>;
  notes?: string[];
}

/** POST /v1/jobs/predict. */
export interface PredictJobRequest {
  model: string;
  /**
   * What to segment, relative to the data root: a NIfTI volume (3D, or 4D whose 4th dimension
   * is the channels), or a DICOM series (a folder of its files, a `.zip` of them, or one
   * multi-frame file). A model of several input channels takes a list of 3D NIfTI files, one
   * per channel in channel order (`["a_0000.nii.gz", "a_0001.nii.gz"]`), or one 4D NIfTI.
   */
  input: string | string[];
  /** SeriesInstanceUID, for a DICOM input that holds several series. */
  series?: string;
  /**
   * Where the result goes, relative to the data root: a label map (`.nii`, `.nii.gz`), or for a
   * DICOM input also a DICOM Segmentation (`.dcm`).
   */
  output: string;
  overlap?: number;
  tta?: boolean;
  /** Convolution operand precision (default f32). */
  precision?: Precision;
}

/**
 * POST /v1/jobs/predict naming a study on a configured PACS instead of a file: the study is
 * pulled into the job's folder (`<state>/<id>/pulled/`), segmented, and the result optionally
 * stored back to the PACS as a DICOM Segmentation and/or written under the data root.
 */
export interface PacsPredictJobRequest {
  model: string;
  /** A PACS the operator configured (`voxseg serve --pacs NAME=URL`), by name. */
  pacs: string;
  /** StudyInstanceUID. */
  study: string;
  /** SeriesInstanceUID; default: the pipeline picks the study's series (and says why). */
  series?: string;
  /** Store the segmentation back to the PACS. Default false. */
  store?: boolean;
  /** Where the result also goes under the data root (`.nii`, `.nii.gz` or `.dcm`). */
  output?: string;
  overlap?: number;
  tta?: boolean;
  precision?: Precision;
}

/** Either kind of prediction request. */
export type AnyPredictJobRequest = PredictJobRequest | PacsPredictJobRequest;

/** True for a prediction that pulls its input from a PACS. */
export function isPacsRequest(
  request: Job["request"],
): request is PacsPredictJobRequest {
  return typeof (request as { pacs?: unknown }).pacs === "string";
}

export interface JobError {
  code: string;
  message: string;
}

export interface Job {
  id: string;
  kind: JobKind;
  /** The model name (training) or a label (prediction). */
  name: string;
  state: JobState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  request: TrainJobRequest | AnyPredictJobRequest;
  /** Times the job has been started (resumes included). */
  attempts: number;
  /** Latest progress: training step/epoch/loss, or prediction windows done. */
  progress?: Record<string, unknown>;
  /** Training: what the plan chose, once planned (see {@link JobPlan}). */
  plan?: JobPlan;
  /** Latest validation metrics (training). */
  metrics?: Record<string, number | null>;
  result?: Record<string, unknown>;
  error?: JobError;
  /** Prediction: the input was read as a NIfTI header when the job was accepted. */
  inputChecked?: boolean;
  /** Prediction: the input was found to be a DICOM series, and in what form, when accepted. */
  dicomInput?: DicomInputForm;
  /** Prediction: the label map this job wrote, as it was written (the dashboard serves only it). */
  wrote?: FileStamp & { path: string };
  /**
   * When a purge was asked for while the job ran: it completes once the job has stopped, or
   * at the next start if the server stopped first.
   */
  purgeRequestedAt?: string;
}

/** One entry of a job's event log (and of its server-sent event stream). */
export interface JobEvent {
  /** 1, 2, 3… per job: the SSE `id`, for Last-Event-ID. */
  id: number;
  type: "state" | "progress" | "metrics" | "checkpoint" | "log";
  time: string;
  data: Record<string, unknown>;
}

/** A new, sortable job id: time in base 36 and 32 random bits. */
export function newJobId(): string {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16).padStart(8, "0");
  return `j${Date.now().toString(36)}-${rand}`;
}
