/**
 * Planning as the commands use it: `voxseg plan` writes a plan (and the cross-validation
 * splits, and with `--preprocess` the preprocessed cases) for a dataset; `voxseg train` on a
 * user's dataset takes the plan it is given or finds beside the dataset, or plans into its run
 * folder, preprocesses when the plan needs it, sizes the run to a time budget, and stores the
 * plan it ran with in the run folder.
 */

import { join } from "node:path";
import type { Normalization } from "../base/normalization.ts";
import { channelCount } from "../data/channels.ts";
import { type Dataset, readDataset } from "../data/dataset.ts";
import {
  DEFAULT_FOLDS,
  foldSplits,
  kFoldSplits,
  readSplits,
  type Splits,
  SPLITS_FILE,
  writeSplits,
} from "../data/folds.ts";
import { preprocessDataset } from "../data/preprocess.ts";
import { initGpu } from "../gpu/mod.ts";
import type { RunFold } from "../train/trainer.ts";
import { PLAN_FILE, readPlan, writePlan } from "../train/plan/plan_file.ts";
import type { PlanOptions } from "../train/plan/planner.ts";
import {
  planChannelNormalizations,
  planDataset,
  type PlanDatasetOptions,
  planIntensityMaps,
  planNormalization,
  preprocessingReason,
  sizeToBudget,
} from "../train/plan/run_plan.ts";
import type { Plan, PlanNetwork } from "../train/plan/types.ts";
import { UsageError } from "./usage_error.ts";

/** The folder a preprocessed dataset is written to, inside a plan's or a run's folder. */
export const PREPROCESSED_DIR = "preprocessed";

/** The adapter's buffer limits, for the planner's memory checks. */
export async function adapterLimits(): Promise<
  Pick<PlanOptions, "maxBufferSize" | "maxStorageBufferBindingSize">
> {
  const gpu = await initGpu();
  return {
    maxBufferSize: gpu.info.limits.maxBufferSize,
    maxStorageBufferBindingSize: gpu.info.limits.maxStorageBufferBindingSize,
  };
}

/**
 * Preprocesses `dataset` for `plan` into `dir` (resampled to its spacing, cropped, 0..255 CT
 * mapped onto HU; every channel of a multi-channel dataset alike, onto one grid and one crop),
 * unless `dir` already holds that; returns the dataset to train on.
 */
export async function preprocessFor(
  plan: Plan,
  dataset: Dataset,
  dir: string,
  log: (line: string) => void,
): Promise<string> {
  const existing = await readDataset(dir).catch(() => undefined);
  const source = existing?.source as
    | { preprocessedFrom?: string; targetSpacingMm?: number[] }
    | undefined;
  if (
    existing && source?.preprocessedFrom === dataset.name &&
    source.targetSpacingMm?.every((s, a) => s === plan.targetSpacingMm[a]) &&
    existing.cases.length === dataset.cases.length
  ) {
    log(`using the preprocessed cases in ${dir}`);
    return dir;
  }
  const maps = planIntensityMaps(plan);
  await preprocessDataset(dataset, dir, {
    targetSpacingMm: plan.targetSpacingMm,
    crop: true,
    order: 3,
    ...(Object.keys(maps).length ? { intensityMaps: maps } : {}),
    onCase: (p) =>
      log(
        `preprocessed [${p.index + 1}/${p.total}] ${p.id}: ${p.originalShape.join("×")} → ` +
          `${p.shape.join("×")} (${p.seconds.toFixed(1)} s)`,
      ),
  });
  return dir;
}

/** What `voxseg train` runs with after planning. */
export interface PlannedRun {
  plan: Plan;
  /** The dataset to train on (the preprocessed one when the plan needed it). */
  dataset: string;
  /** Channel 0's on a multi-channel plan. */
  normalisation: Normalization;
  /** Each input channel's, exactly, when the plan has several (train's `channelNormalisations`). */
  channelNormalisations?: Normalization[];
  /** The folder the plan came from (its splits.json and preprocessed cases are reused). */
  planDir: string;
}

export interface PlanForTrainingOptions {
  /** `--plan`: a plans.json or the folder holding one. */
  planPath?: string;
  /** The run folder: where a new plan, the preprocessed cases and the run's plan go. */
  out: string;
  timeBudgetSeconds?: number;
  /** `performance.now()` when the budget started. */
  startedAt: number;
  gpuMemoryBytes?: number;
  /** The network to train, replacing the plan's. */
  network?: PlanNetwork;
  log: (line: string) => void;
  /** Times a candidate's training step for the budget (default: measured on this adapter). */
  measure?: PlanDatasetOptions["measure"];
}

/**
 * The plan a training run on `dataset` uses: `--plan`'s, else `plans.json` beside a local
 * dataset, else a new one planned into the run folder; resized to the time budget when one is
 * given (measured on this adapter, after preprocessing so that it counts); written to the run
 * folder as the plan the run was started with.
 */
export async function planForTraining(
  dataset: Dataset,
  opts: PlanForTrainingOptions,
): Promise<PlannedRun> {
  const found = opts.planPath ?? await besideDataset(dataset);
  let plan: Plan;
  let planDir = opts.out;
  if (found) {
    plan = await readPlan(found).catch((e) => {
      throw new UsageError(`cannot use the plan ${found}: ${(e as Error).message}`);
    });
    planDir = found.endsWith(".json") ? join(found, "..") : found;
    opts.log(`plan: ${join(planDir, PLAN_FILE)}`);
  } else {
    opts.log(`planning ${dataset.name} (${dataset.cases.length} cases)…`);
    plan = await planDataset(dataset, {
      ...(await adapterLimits()),
      ...(opts.gpuMemoryBytes ? { gpuMemoryBytes: opts.gpuMemoryBytes } : {}),
    });
  }
  checkPlanMatches(plan, dataset);
  if (opts.network) plan = { ...plan, network: opts.network };
  const reason = preprocessingReason(plan, dataset);
  let trainOn = dataset.root;
  if (reason) {
    opts.log(`preprocessing: ${reason}`);
    const ready = join(planDir, PREPROCESSED_DIR);
    const ok = await readDataset(ready).then(() => true, () => false);
    trainOn = await preprocessFor(
      plan,
      dataset,
      ok ? ready : join(opts.out, PREPROCESSED_DIR),
      opts.log,
    );
  }
  if (opts.timeBudgetSeconds !== undefined) {
    const budgetOptions: PlanDatasetOptions & { timeBudgetSeconds: number } = {
      timeBudgetSeconds: opts.timeBudgetSeconds,
      startedAt: opts.startedAt,
      log: opts.log,
      ...(opts.measure ? { measure: opts.measure } : {}),
    };
    plan = await sizeToBudget(plan, budgetOptions);
    opts.log(`time budget: ${plan.budget!.reason}`);
  }
  if (opts.timeBudgetSeconds === undefined && plan.epochs === null) {
    opts.log(
      "no time budget: the trainer's default length (epochs × itersPerEpoch); on a slow adapter " +
        "--time-budget 15m sizes the run to the time you have",
    );
  }
  await Deno.mkdir(opts.out, { recursive: true });
  await writePlan(opts.out, plan);
  const channels = planChannelNormalizations(plan);
  return {
    plan,
    dataset: trainOn,
    normalisation: planNormalization(plan),
    ...(channels ? { channelNormalisations: channels } : {}),
    planDir,
  };
}

/** `plans.json` in the dataset's own folder, when it is a local folder that has one. */
async function besideDataset(dataset: Dataset): Promise<string | undefined> {
  if (/^https?:\/\//.test(dataset.root)) return undefined;
  const path = join(dataset.root, PLAN_FILE);
  return await Deno.stat(path).then((s) => (s.isFile ? path : undefined), () => undefined);
}

/** A plan made for another dataset (other classes, name or channel count) is refused. */
function checkPlanMatches(plan: Plan, dataset: Dataset): void {
  const channels = channelCount(dataset), planned = plan.channels?.length ?? 1;
  if (planned !== channels) {
    throw new UsageError(
      `the plan was made for ${planned} input channel(s) but the dataset "${dataset.name}" has ` +
        `${channels}; plan it again with voxseg plan`,
    );
  }
  const same = plan.dataset.classes.length === dataset.classes.length &&
    plan.dataset.classes.every((c, i) => c === dataset.classes[i]);
  if (!same || plan.dataset.name !== dataset.name) {
    throw new UsageError(
      `the plan was made for dataset "${plan.dataset.name}" (${
        plan.dataset.classes.join(", ")
      }), ` +
        `not "${dataset.name}" (${dataset.classes.join(", ")}); plan again with voxseg plan`,
    );
  }
}

/**
 * The folds of a cross-validation: the splits in `planDir/splits.json` when there is one, else
 * the dataset's own k folds (a pure function of its case ids, so every machine agrees).
 */
async function splitsFor(dataset: Dataset, planDir: string | undefined): Promise<Splits> {
  const path = planDir ? join(planDir, SPLITS_FILE) : undefined;
  const stored = path
    ? await readSplits(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw new UsageError((e as Error).message);
    })
    : undefined;
  try {
    return stored ?? kFoldSplits(dataset, DEFAULT_FOLDS);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Fold `index` of the cross-validation (see {@link splitsFor}). */
export async function foldFor(
  dataset: Dataset,
  planDir: string | undefined,
  index: number,
): Promise<RunFold> {
  const splits = await splitsFor(dataset, planDir);
  try {
    return { index, splits: foldSplits(dataset, splits, index) };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Every fold of the cross-validation, in order. */
export async function allFolds(dataset: Dataset, planDir: string | undefined): Promise<RunFold[]> {
  const splits = await splitsFor(dataset, planDir);
  return splits.folds.map((_, index) => ({ index, splits: foldSplits(dataset, splits, index) }));
}

/** Writes the dataset's k folds to `dir/splits.json` when it has enough cases; returns whether. */
export async function writeFolds(
  dataset: Dataset,
  dir: string,
  folds = DEFAULT_FOLDS,
): Promise<boolean> {
  const trainVal = dataset.cases.filter((c) => c.split !== "test").length;
  if (trainVal < folds) return false;
  await writeSplits(dir, kFoldSplits(dataset, folds));
  return true;
}
