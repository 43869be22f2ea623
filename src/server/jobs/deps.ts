/**
 * What running a job needs from the server. Kept apart from ./job.ts, which describes jobs as
 * stored and served, so the job store can import the job types without importing itself back.
 */

import type { Normalization } from "../../base/normalization.ts";
import type { Dataset } from "../../data/dataset.ts";
import type { Volume } from "../../data/volume.ts";
import type { Prediction, PredictionSummary } from "../../infer/predict.ts";
import type { NamedModel } from "../../infer/dicom_seg.ts";
import type { RunFold } from "../../train/trainer.ts";
import type { Plan, PlanNetwork } from "../../train/plan/types.ts";
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
  /**
   * Plans training jobs as `voxseg train` does (`voxseg serve` passes the command line's
   * planner, src/cli/serve_planning.ts); without it training jobs train unplanned, and a
   * request asking for a plan, a time budget, a network or a fold is refused with 400
   * `planning_unavailable`.
   */
  planner?: TrainPlanner;
}

/**
 * The command line's planning, as the server calls it: the server layer may not import the
 * CLI (DESIGN.md, "Layers"), so `voxseg serve` hands it in. Both are the functions
 * `voxseg train` runs (src/cli/planning.ts); their errors about what a client sent (a plan for
 * another dataset, a fold out of range, no time left) are {@link ApiError}s (400).
 */
export interface TrainPlanner {
  /**
   * The plan a run on `dataset` uses — `planPath`'s, else a new one — with the cases
   * preprocessed into `out` when it needs them, sized to the time budget when one is given,
   * and written to `out` (`plans.json`) as the plan the run starts with.
   */
  plan(dataset: Dataset, input: TrainPlanInput): Promise<PlannedTraining>;
  /** Cross-validation fold `index`: the splits beside the plan (`planDir`), else the dataset's. */
  fold(dataset: Dataset, planDir: string | undefined, index: number): Promise<RunFold>;
}

/** What the server hands {@link TrainPlanner.plan}. */
export interface TrainPlanInput {
  /** A `plans.json` or the folder holding one, resolved inside the data root; else plan anew. */
  planPath?: string;
  /** The job's run folder. */
  out: string;
  timeBudgetSeconds?: number;
  /** `performance.now()` when the budget started (the job's start). */
  startedAt: number;
  gpuMemoryBytes?: number;
  network?: PlanNetwork;
  /** A line worth showing (each choice and its reason); names no folder of the server. */
  log(line: string): void;
  /**
   * Runs GPU work of the planning (the budget's timed training steps) holding the server's GPU
   * lane, so that predictions neither wait behind the rest of the planning nor skew a timing.
   */
  onGpu<T>(work: () => Promise<T>): Promise<T>;
}

/** What planning decided for a run. */
export interface PlannedTraining {
  plan: Plan;
  /** The dataset to train on (the preprocessed one when the plan needed it). */
  dataset: string;
  /** Channel 0's on a multi-channel plan. */
  normalisation: Normalization;
  /** Each input channel's, exactly, when the plan has several. */
  channelNormalisations?: Normalization[];
  /** The folder the plan came from (its splits.json and preprocessed cases are reused). */
  planDir: string;
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
