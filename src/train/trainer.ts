/**
 * The training loop: batches of patches streamed by the loader, one GPU step each (forward,
 * loss, backward, clipped optimizer update, all recorded into a few command buffers), loss
 * read back every `lossReadbackEvery` steps, validation by a caller-supplied validator, and
 * atomic checkpoints (`last`, `best`) with optimizer state for exact resume.
 *
 * Run folder (`config.out`): `run.json` (what the first start decided: resolved config,
 * normalisation, classes, spacing; reused by every resume), `metrics.jsonl`,
 * `last.safetensors` + `last.optim.safetensors` (one generation, see saveTrainingState),
 * `best.safetensors`, `summary.json`.
 *
 * Resume is exact: the weights, optimizer slots, schedule, early-stopping counters and the
 * position in the loader's batch stream (which is a pure function of seed and batch index) are
 * restored, so a run killed at any moment and resumed ends with the bytes of an uninterrupted
 * one.
 */

import { withPrecision } from "../ops/precision.ts";
import { join } from "node:path";
import { type ClassCodes, parseClassCodes } from "../base/class_codes.ts";
import * as F from "../autograd/functional.ts";
import { Tape } from "../autograd/mod.ts";
import { keep, readTensors, scope, type Tensor, upload, zeros } from "../gpu/mod.ts";
import { createLoader, type Loader } from "../data/loader.ts";
import { augmentationFromFlags } from "../data/sampler.ts";
import {
  type Normalization,
  normalizationFromDataset,
  parseNormalization,
} from "../data/normalize.ts";
import { type Dataset, readDataset } from "../data/dataset.ts";
import { writeFileAtomic } from "../base/atomic.ts";
import { createModel, type SegmentationNet } from "../nn/model.ts";
import { resolveConfig, resumedConfig, type TrainConfig } from "./config.ts";
import {
  latestGeneration,
  loadTrainingState,
  removeStaleTempFiles,
  removeTrainingState,
  saveTrainingState,
  type TrainingState,
} from "./checkpoint.ts";
import { type CheckpointMeta, saveCheckpoint } from "../nn/checkpoint.ts";
import { loadWeights, readWeights } from "../nn/weights.ts";
import type { Validator } from "../infer/dataset_validator.ts";
import { validationSplit } from "./dataset_fit.ts";
import { type Split, SPLITS } from "../data/dataset.ts";
import { withSplits } from "../data/folds.ts";
import { patchMultiple } from "../nn/model_config.ts";
import { channelCount, resolveChannelNormalizations } from "../data/channels.ts";
import { createSchedule, type LrSchedule, type ScheduleState } from "./schedules.ts";
import { Optimizer } from "./optimizer.ts";
import { deepSupervisionLoss } from "./deep_supervision.ts";
import { METRICS_FILE, MetricsLog, SUMMARY_FILE, writeSummary } from "./metrics_log.ts";

export type TrainEvent =
  | { type: "start"; config: TrainConfig; params: number; resumedFrom?: number }
  | {
    type: "step";
    epoch: number;
    step: number;
    stepInEpoch: number;
    loss: number;
    lr: number;
    gradNorm: number;
    patchesPerSec: number;
  }
  | { type: "skipped"; step: number; reason: string; lr: number }
  | {
    type: "validation";
    epoch: number;
    step: number;
    metrics: Record<string, number>;
    score: number;
    best: boolean;
  }
  | { type: "checkpoint"; path: string; epoch: number }
  /** Something worth a line in the log (a file passed over on resume, …); names no folder. */
  | { type: "notice"; message: string }
  | { type: "stop"; reason: string };

export interface TrainOptions {
  config: TrainConfig;
  /**
   * Continue from the newest complete training state in `config.out` if there is one, with
   * the config stored in its `run.json` (see {@link resumedConfig} for what `config` may
   * still change); without it a run starts over, replacing any state in the folder.
   */
  resume?: boolean;
  validate?: Validator;
  onEvent?: (event: TrainEvent) => void;
  /** Aborting stops after the current step and writes a last checkpoint. */
  signal?: AbortSignal;
  /**
   * A wall-clock guard for a time budget (`Date.now()` milliseconds): once passed, the run
   * stops after the current step, validates, writes its checkpoints and ends with
   * `stoppedBy: "time-budget"`. A budgeted run is sized to end before it; this only bounds a
   * run on an adapter slower than measured.
   */
  deadline?: number;
  /**
   * Awaited before each training step: a server hands the GPU to waiting inference here
   * (src/server/scheduler.ts), so a long run does not starve it.
   */
  beforeStep?: () => Promise<void>;
  /**
   * A folder the dataset and its cases must stay inside (readDataset's `confineTo`), for the
   * trainer's and the loader's reads of `dataset.json`: a server sets it to its data root.
   */
  confineTo?: string;
  /**
   * A cross-validation fold (src/data/folds.ts): each case's split in this run, replacing the
   * manifest's. Stored in run.json at the first start; a resume keeps the stored one.
   */
  fold?: RunFold;
  /**
   * The exact normalisation (a plan's: src/train/plan/run_plan.ts), instead of the one
   * `config.data.normalisation` names. Stored in run.json; a resume keeps the stored one.
   */
  normalisation?: Normalization;
  /**
   * The exact normalisation of each input channel on a dataset of several (a multi-channel
   * plan's, one per channel), instead of those `config.data.normalisation` resolves to; its
   * first replaces `normalisation`. Stored in run.json; a resume keeps the stored ones.
   */
  channelNormalisations?: Normalization[];
}

/** A cross-validation fold of a run: its index and each case's split. */
export interface RunFold {
  index: number;
  splits: Record<string, Split>;
}

export interface TrainResult {
  epochs: number;
  steps: number;
  bestScore: number | null;
  bestEpoch: number | null;
  lastMetrics: Record<string, number>;
  stoppedBy: "completed" | "early-stopping" | "aborted" | "time-budget";
  out: string;
  seconds: number;
}

/** Names of the files in a run folder. */
export const RUN_FILES = {
  run: "run.json",
  last: "last.safetensors",
  best: "best.safetensors",
} as const;

/** What a run decided at its first start, stored in `run.json` and reused by every resume. */
export interface RunRecord {
  format: "voxseg-run";
  version: 1;
  config: TrainConfig;
  normalisation: Normalization;
  /** Per input channel when there are several (`normalisation` is channel 0's). */
  channelNormalisations?: Normalization[];
  classNames: string[];
  /** The classes' coded meanings, from the dataset (for DICOM Segmentations). */
  classCodes?: ClassCodes;
  spacingMm: [number, number, number];
  /** The fold this run trains, when it is one of a cross-validation. */
  fold?: RunFold;
}

/** Reads a run folder's `run.json`; undefined when there is none. Throws when it is invalid. */
export async function readRunRecord(runDir: string): Promise<RunRecord | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(runDir, RUN_FILES.run));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const bad = (why: string): never => {
    throw new Error(`${RUN_FILES.run} in the run folder is invalid: ${why}`);
  };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    return bad("not JSON");
  }
  if (json?.format !== "voxseg-run" || json.version !== 1) bad("not a voxseg run record");
  let config: TrainConfig;
  try {
    config = resolveConfig(json.config);
  } catch (e) {
    return bad((e as Error).message);
  }
  const { classNames, spacingMm } = json;
  if (!Array.isArray(classNames) || !classNames.every((c) => typeof c === "string")) {
    bad("classNames must be a list of names");
  }
  if (!Array.isArray(spacingMm) || spacingMm.length !== 3) bad("spacingMm must be [z, y, x]");
  let normalisation: Normalization;
  try {
    normalisation = parseNormalization(json.normalisation);
  } catch (e) {
    return bad((e as Error).message);
  }
  let channelNormalisations: Normalization[] | undefined;
  if (json.channelNormalisations !== undefined) {
    const list = json.channelNormalisations;
    if (!Array.isArray(list) || list.length !== config.model.inChannels) {
      bad(`channelNormalisations must list one per input channel (${config.model.inChannels})`);
    }
    try {
      channelNormalisations = (list as unknown[]).map(parseNormalization);
    } catch (e) {
      return bad((e as Error).message);
    }
  }
  let classCodes: ClassCodes | undefined;
  if (json.classCodes !== undefined) {
    try {
      classCodes = parseClassCodes(json.classCodes, classNames as string[]);
    } catch (e) {
      return bad((e as Error).message);
    }
  }
  const fold = json.fold as RunFold | undefined;
  if (
    fold !== undefined &&
    (!Number.isInteger(fold?.index) || typeof fold.splits !== "object" || fold.splits === null ||
      !Object.values(fold.splits).every((v) => SPLITS.includes(v)))
  ) {
    bad("fold must hold an index and each case's split");
  }
  return {
    format: "voxseg-run",
    version: 1,
    config,
    normalisation,
    classNames: classNames as string[],
    spacingMm: spacingMm as [number, number, number],
    ...(channelNormalisations ? { channelNormalisations } : {}),
    ...(classCodes ? { classCodes } : {}),
    ...(fold ? { fold } : {}),
  };
}

/**
 * The config to train with and what the run decided at its first start: on resume the stored
 * record (its config overridden only where {@link resumedConfig} allows; a conflict throws
 * naming the field), otherwise a fresh record from `config` and the dataset.
 */
async function runRecordFor(
  requested: TrainConfig,
  dataset: Dataset,
  resume: boolean,
  fold: RunFold | undefined,
  normalisation: Normalization | undefined,
  planned?: Normalization[],
): Promise<RunRecord> {
  const stored = resume ? await readRunRecord(requested.out) : undefined;
  if (stored) {
    return { ...stored, config: resumedConfig(stored.config, requested) };
  }
  const channels = runChannelNormalizations(requested, dataset, normalisation, planned);
  return {
    format: "voxseg-run",
    version: 1,
    config: requested,
    normalisation: channels?.[0] ?? normalisation ?? resolveNormalization(requested, dataset),
    ...(channels ? { channelNormalisations: channels } : {}),
    classNames: dataset.classes.slice(0, requested.model.classes),
    ...(dataset.classCodes ? { classCodes: dataset.classCodes } : {}),
    spacingMm: dataset.targetSpacingMm,
    ...(fold ? { fold } : {}),
  };
}

/**
 * Trains the configured network (src/nn/model.ts); returns when done, early-stopped or aborted.
 *
 * @example
 * const result = await train({ config: resolveConfig(undefined, { epochs: "2" }) });
 */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => {});
  const setup = await prepareRun(opts, emit);
  const { config, state } = setup;
  const model = createModel(config.model, config.seed);
  const optimizer = new Optimizer(
    model.trainable().map((p) => ({ name: p.name, tensor: p.tensor })),
    config.optimizer,
  );
  const schedule = createSchedule(config);
  const progress = state
    ? restoreProgress(state, model, optimizer, schedule, config)
    : freshProgress();
  emit({
    type: "start",
    config,
    params: model.trainable().reduce((a, p) => a + p.tensor.size, 0),
    resumedFrom: progress.startEpoch > 0 ? progress.startEpoch : undefined,
  });

  const [pd, ph, pw] = config.data.patchSize;
  const B = config.data.batchSize;
  const x = keep(zeros([B, config.model.inChannels, pd, ph, pw]));
  const labels = keep(zeros([B, pd, ph, pw], "u32"));
  const loader: Loader = await createLoader({
    dataset: config.data.dataset,
    patchSize: config.data.patchSize,
    batchSize: B,
    workers: config.data.workers,
    seed: config.seed,
    foregroundFraction: config.data.foregroundFraction,
    norm: setup.record.normalisation,
    ...(setup.record.channelNormalisations
      ? { channelNorms: setup.record.channelNormalisations }
      : {}),
    augment: augmentationFromFlags(config.data.augment),
    startBatch: optimizer.step,
    confineTo: opts.confineTo,
    caseSplits: setup.record.fold?.splits,
  });
  const log = MetricsLog.open(join(config.out, METRICS_FILE));
  const run: Run = {
    ...setup,
    opts,
    emit,
    model,
    optimizer,
    schedule,
    perStepSchedule: config.schedule.kind !== "plateau",
    progress,
    x,
    labels,
    loader,
    log,
  };
  let ended: { stoppedBy: TrainResult["stoppedBy"]; epoch: number };
  try {
    ended = await runEpochs(run);
  } finally {
    loader.close();
    log.close();
    x.dispose();
    labels.dispose();
  }
  const result: TrainResult = {
    epochs: Math.min(ended.epoch, config.epochs),
    steps: optimizer.step,
    bestScore: progress.bestScore,
    bestEpoch: progress.bestEpoch,
    lastMetrics: progress.lastMetrics,
    stoppedBy: ended.stoppedBy,
    out: config.out,
    seconds: (performance.now() - t0) / 1000,
  };
  await writeSummary(join(config.out, SUMMARY_FILE), { ...result });
  optimizer.dispose();
  model.dispose();
  return result;
}

/** What a run folder and its dataset decided before the first step. */
interface RunSetup {
  config: TrainConfig;
  record: RunRecord;
  dataset: Dataset;
  /** The training state resumed from, if any. */
  state?: TrainingState;
  /** The generation the next training-state write gets. */
  generation: number;
  /** The split validation runs on ("train" when the dataset has no labelled val case). */
  validationSplit: Split;
}

/**
 * Prepares the run folder: removes stale temp files, reads the dataset, settles the run record
 * (stored on resume, fresh otherwise) and writes it, and loads the training state to resume
 * from (or removes the old one when starting over).
 */
async function prepareRun(
  opts: TrainOptions,
  emit: (event: TrainEvent) => void,
): Promise<RunSetup> {
  const notice = (message: string) => emit({ type: "notice", message });
  const out = opts.config.out;
  await Deno.mkdir(out, { recursive: true });
  const removed = await removeStaleTempFiles(out);
  if (removed > 0) notice(`removed ${removed} unfinished temp file(s) of an interrupted write`);

  const manifest = await readDataset(opts.config.data.dataset, { confineTo: opts.confineTo });
  const record = await runRecordFor(
    opts.config,
    manifest,
    Boolean(opts.resume),
    opts.fold,
    opts.normalisation,
    opts.channelNormalisations,
  );
  const dataset = record.fold ? withSplits(manifest, record.fold.splits) : manifest;
  const { config } = record;
  checkCompatible(config, dataset);
  const validation = validationSplit(dataset);
  if (validation.warning && opts.validate) notice(validation.warning);
  const state = opts.resume ? await loadTrainingState(out, notice) : undefined;
  if (!opts.resume) await removeTrainingState(out);
  await writeFileAtomic(join(out, RUN_FILES.run), JSON.stringify(record, null, 2) + "\n");
  let generation = (state?.generation ?? 0) + 1;
  if (state) generation = Math.max(generation, (await latestGeneration(out)) + 1);
  return { config, record, dataset, state, generation, validationSplit: validation.split };
}

/** Where training stands: restored on resume, saved with every checkpoint. */
interface Progress {
  /** The epoch to start from (whole epochs done). */
  startEpoch: number;
  /** Steps of epoch `startEpoch` already taken (a run aborted mid-epoch). */
  startIter: number;
  bestScore: number | null;
  bestEpoch: number | null;
  /** Validations since the last improvement (early stopping). */
  badEpochs: number;
  /** Halved after each non-finite loss. */
  lrScale: number;
  lastMetrics: Record<string, number>;
}

function freshProgress(): Progress {
  return {
    startEpoch: 0,
    startIter: 0,
    bestScore: null,
    bestEpoch: null,
    badEpochs: 0,
    lrScale: 1,
    lastMetrics: {},
  };
}

/** Loads the weights, optimizer and schedule state of `state`; returns where training stood. */
function restoreProgress(
  state: TrainingState,
  model: SegmentationNet,
  optimizer: Optimizer,
  schedule: LrSchedule,
  config: TrainConfig,
): Progress {
  const { checkpoint: ckpt, optimizer: saved } = state;
  loadWeights(model, ckpt.weights);
  optimizer.restore(saved);
  if (saved.schedule) schedule.restore(resizedSchedule(saved.schedule, config));
  const extra = (saved.extra ?? {}) as Record<string, number | null>;
  return {
    startEpoch: ckpt.meta.training.epoch,
    bestScore: ckpt.meta.training.bestMetric,
    lastMetrics: Object.fromEntries(
      Object.entries(ckpt.meta.training.metrics).map(([k, v]) => [k, v ?? NaN]),
    ),
    bestEpoch: (extra.bestEpoch as number | null) ?? null,
    badEpochs: (extra.badEpochs as number) ?? 0,
    lrScale: (extra.lrScale as number) ?? 1,
    startIter: Math.min((extra.stepsIntoEpoch as number) ?? 0, config.itersPerEpoch),
  };
}

/** Everything a running training loop holds. */
interface Run extends RunSetup {
  opts: TrainOptions;
  emit: (event: TrainEvent) => void;
  model: SegmentationNet;
  optimizer: Optimizer;
  schedule: LrSchedule;
  /** Whether the schedule advances every step (all but plateau, which steps on validation). */
  perStepSchedule: boolean;
  progress: Progress;
  /** The batch's image and labels on the GPU, reused by every step. */
  x: Tensor;
  labels: Tensor;
  loader: Loader;
  log: MetricsLog;
}

/** The epochs from where the run stands; returns how it stopped and the epochs counted. */
async function runEpochs(
  run: Run,
): Promise<{ stoppedBy: TrainResult["stoppedBy"]; epoch: number }> {
  const { config, opts, progress } = run;
  let epoch = progress.startEpoch;
  for (; epoch < config.epochs; epoch++) {
    const it = await runSteps(run, epoch, epoch === progress.startEpoch ? progress.startIter : 0);
    if (it < config.itersPerEpoch && pastDeadline(opts)) {
      const improved = opts.validate !== undefined ? await validateEpoch(run, epoch) : false;
      await saveCheckpoints(run, epoch, it, improved);
      run.emit({ type: "stop", reason: "the time budget is spent" });
      return { stoppedBy: "time-budget", epoch: epoch + 1 };
    }
    if (opts.signal?.aborted) {
      // Mid-epoch: the checkpoint counts only whole epochs and remembers the steps taken,
      // so --resume finishes this epoch with the batches it would have seen.
      await saveCheckpoints(run, epoch, it, false);
      return { stoppedBy: "aborted", epoch };
    }
    const validateNow = opts.validate !== undefined &&
      ((epoch + 1) % config.valEvery === 0 || epoch + 1 === config.epochs);
    const improved = validateNow ? await validateEpoch(run, epoch) : false;
    await saveCheckpoints(run, epoch + 1, 0, improved);
    const patience = config.earlyStopping.patience;
    if (validateNow && patience > 0 && progress.badEpochs >= patience) {
      run.emit({ type: "stop", reason: `no improvement for ${progress.badEpochs} validations` });
      return { stoppedBy: "early-stopping", epoch: epoch + 1 };
    }
  }
  return { stoppedBy: "completed", epoch };
}

function pastDeadline(opts: TrainOptions): boolean {
  return opts.deadline !== undefined && Date.now() >= opts.deadline;
}

/** A step whose loss and clip control wait on the GPU for the next readback. */
interface PendingStep {
  loss: Tensor;
  control: Tensor;
  step: number;
  stepInEpoch: number;
  lr: number;
}

/**
 * The steps of one epoch from step `it`, until its end or an abort; returns the steps of the
 * epoch taken. Losses are read back every `lossReadbackEvery` steps, at the epoch's end, before
 * a mid-epoch checkpoint and on abort.
 */
async function runSteps(run: Run, epoch: number, it: number): Promise<number> {
  const { config, opts, optimizer, schedule, progress } = run;
  const pending: PendingStep[] = [];
  const window = { start: performance.now() };
  for (; it < config.itersPerEpoch; it++) {
    if (opts.beforeStep) await opts.beforeStep();
    if (opts.signal?.aborted || pastDeadline(opts)) break;
    const next = await run.loader.next();
    if (next.done) throw new Error("the patch loader stopped early");
    upload(run.x, next.value.image);
    upload(run.labels, next.value.labelU32);
    const lr = schedule.lr * progress.lrScale;
    const { loss, control } = trainStep(run.model, optimizer, run.x, run.labels, config, lr);
    pending.push({ loss, control, step: optimizer.step, stepInEpoch: it + 1, lr });
    if (run.perStepSchedule) schedule.step();
    const last = it === config.itersPerEpoch - 1;
    // The epoch's end writes a checkpoint of its own.
    const checkpointNow = config.checkpointEvery > 0 && !last &&
      optimizer.step % config.checkpointEvery === 0;
    // Readbacks fall on global step numbers and before every checkpoint, so the host state
    // they change (lrScale after a non-finite loss) is the same whether or not the run was
    // interrupted and resumed in between.
    if (
      optimizer.step % config.lossReadbackEvery === 0 || last || checkpointNow ||
      opts.signal?.aborted
    ) {
      await readBack(run, epoch, pending, window);
    }
    if (checkpointNow) await saveCheckpoints(run, epoch, it + 1, false);
  }
  // Steps left unread by a stop between steps (abort, deadline) are reported before returning.
  if (pending.length > 0) await readBack(run, epoch, pending, window);
  return it;
}

/**
 * Reads back the pending steps' losses and clip controls, reports each step (or its skip after
 * a non-finite loss, halving the learning-rate scale) and frees them.
 */
async function readBack(
  run: Run,
  epoch: number,
  pending: PendingStep[],
  window: { start: number },
): Promise<void> {
  const { emit, log, progress } = run;
  const host = await readTensors(pending.flatMap((p) => [p.loss, p.control]));
  const elapsed = (performance.now() - window.start) / 1000;
  window.start = performance.now();
  const patchesPerSec = (pending.length * run.config.data.batchSize) / Math.max(elapsed, 1e-9);
  pending.forEach((p, k) => {
    const lossValue = host[2 * k][0];
    const [, finite, gradNorm] = host[2 * k + 1];
    if (!Number.isFinite(lossValue) || !finite) {
      // The GPU already skipped this update; make the next ones gentler.
      progress.lrScale *= 0.5;
      emit({
        type: "skipped",
        step: p.step,
        reason: `non-finite loss ${lossValue}`,
        lr: p.lr * 0.5,
      });
      log.append({ event: "skipped", epoch: epoch + 1, step: p.step, loss: lossValue });
    } else {
      emit({
        type: "step",
        epoch: epoch + 1,
        step: p.step,
        stepInEpoch: p.stepInEpoch,
        loss: lossValue,
        lr: p.lr,
        gradNorm,
        patchesPerSec,
      });
      log.append({
        event: "train",
        epoch: epoch + 1,
        step: p.step,
        loss: lossValue,
        lr: p.lr,
        gradNorm,
      });
    }
    p.loss.dispose();
    p.control.dispose();
  });
  pending.length = 0;
}

/**
 * Validates after epoch `epoch`, updates the best score and the early-stopping count, steps a
 * plateau schedule and reports the numbers; returns whether the score improved.
 */
async function validateEpoch(run: Run, epoch: number): Promise<boolean> {
  const { config, progress, optimizer } = run;
  const v = await run.opts.validate!(run.model, {
    norm: run.record.normalisation,
    ...(run.record.channelNormalisations ? { channelNorms: run.record.channelNormalisations } : {}),
    dataset: run.dataset,
    split: run.validationSplit,
  });
  progress.lastMetrics = v.metrics;
  const better = config.monitor === "dice"
    ? (a: number, b: number) => a > b
    : (a: number, b: number) => a < b;
  const improved = Number.isFinite(v.score) &&
    (progress.bestScore === null || better(v.score, progress.bestScore));
  if (improved) {
    progress.bestScore = v.score;
    progress.bestEpoch = epoch + 1;
    progress.badEpochs = 0;
  } else {
    progress.badEpochs++;
  }
  if (!run.perStepSchedule) run.schedule.step(v.score);
  run.emit({
    type: "validation",
    epoch: epoch + 1,
    step: optimizer.step,
    metrics: v.metrics,
    score: v.score,
    best: improved,
  });
  run.log.append({
    event: "validation",
    epoch: epoch + 1,
    step: optimizer.step,
    score: v.score,
    ...v.metrics,
  });
  return improved;
}

/**
 * Writes the training state (and `best` when asked) for exact resume. `best` goes first: a
 * kill between the two leaves the previous state, whose resume redoes the same steps and
 * writes the same `best` again.
 */
async function saveCheckpoints(
  run: Run,
  epochsDone: number,
  stepsIntoEpoch: number,
  best: boolean,
): Promise<void> {
  const { optimizer, progress, emit } = run;
  const out = run.config.out;
  const meta = checkpointMeta(
    run.record,
    epochsDone,
    optimizer.step,
    progress.bestScore,
    progress.lastMetrics,
  );
  const weights = await readWeights(run.model);
  if (best) {
    const bestPath = join(out, RUN_FILES.best);
    await saveCheckpoint(bestPath, { weights, meta });
    emit({ type: "checkpoint", path: bestPath, epoch: epochsDone });
  }
  const { bestEpoch, badEpochs, lrScale } = progress;
  await saveTrainingState(out, {
    checkpoint: { weights, meta },
    optimizer: {
      ...(await optimizer.state()),
      schedule: run.schedule.state(),
      extra: { bestEpoch, badEpochs, lrScale, stepsIntoEpoch },
    },
    generation: run.generation++,
  });
  emit({ type: "checkpoint", path: join(out, RUN_FILES.last), epoch: epochsDone });
}

/** One optimizer step; returns the loss [1] and the clip control [3], both kept for readback. */
export function trainStep(
  model: SegmentationNet,
  optimizer: Optimizer,
  x: Tensor,
  labels: Tensor,
  config: TrainConfig,
  lr: number,
): { loss: Tensor; control: Tensor } {
  // scope() frees every activation, gradient and saved tensor of the step; pooled buffers
  // are reused by the next step, so steady-state steps allocate nothing on the GPU.
  const tape = new Tape().watch(...optimizer.params.map((p) => p.tensor));
  try {
    const { loss, control } = scope(() => {
      // Forward under the configured precision; the backward pass runs in f32 (precision.ts).
      const loss = tape.record(() =>
        withPrecision(
          config.precision,
          () =>
            model.config.deepSupervision === true
              ? deepSupervisionLoss(
                model.forwardDeep(x, { training: true }),
                labels,
                (logits, target) => lossFor(logits, target, config),
              )
              : lossFor(model.forward(x, { training: true }), labels, config),
        )
      );
      const grads = tape.backward(loss);
      const control = optimizer.apply(grads, lr);
      return { loss: keep(loss), control: keep(control) };
    });
    return { loss, control };
  } finally {
    tape.dispose();
  }
}

/**
 * The configured weighted sum of Tversky, Dice and cross-entropy for logits and labels (one
 * autograd op: its gradient w.r.t. the logits is one pass).
 */
export function lossFor(logits: Tensor, labels: Tensor, config: TrainConfig): Tensor {
  const l = config.loss;
  return F.segmentationLoss(logits, labels, {
    tverskyWeight: l.tverskyWeight,
    diceWeight: l.diceWeight,
    ceWeight: l.ceWeight,
    region: {
      alpha: l.alpha,
      beta: l.beta,
      smooth: l.smooth,
      classWeights: l.classWeights,
      includeBackground: l.includeBackground,
      batch: l.batchDice,
    },
  });
}

function checkpointMeta(
  { config, classNames, classCodes, normalisation, channelNormalisations, spacingMm }: RunRecord,
  epoch: number,
  step: number,
  bestMetric: number | null,
  metrics: Record<string, number>,
): CheckpointMeta {
  return {
    model: config.model,
    classNames,
    normalisation,
    ...(channelNormalisations ? { channelNormalisations } : {}),
    ...(classCodes ? { classCodes } : {}),
    patchSize: config.data.patchSize,
    spacingMm,
    training: {
      epoch,
      step,
      monitor: config.monitor,
      bestMetric,
      metrics: Object.fromEntries(
        Object.entries(metrics).map(([k, v]) => [k, Number.isFinite(v) ? v : null]),
      ),
    },
  };
}

/**
 * A saved schedule state fitted to the resumed run's length: poly and cosine span
 * epochs × itersPerEpoch of the config being resumed, so extending a run (--epochs 20 after
 * 10) keeps decaying instead of sitting at the old end of the schedule.
 */
function resizedSchedule(state: ScheduleState, config: TrainConfig): ScheduleState {
  if (state.kind !== "poly" && state.kind !== "cosine") return state;
  return { ...state, totalSteps: config.epochs * config.itersPerEpoch };
}

function resolveNormalization(config: TrainConfig, dataset: Dataset): Normalization {
  const kind = config.data.normalisation;
  if (kind === "ct-window") {
    return { kind: "ct-window", lo: config.data.window[0], hi: config.data.window[1] };
  }
  if (kind === "auto") {
    if (dataset.modality === "CT") {
      return { kind: "ct-window", lo: config.data.window[0], hi: config.data.window[1] };
    }
    // nnU-Net's scheme for modalities without absolute units: each case by its own statistics
    // (datasets converted before those were recorded fall back to the dataset's foreground).
    return dataset.cases.every((c) => c.image)
      ? { kind: "zscore-case" }
      : normalizationFromDataset(dataset, "zscore");
  }
  return normalizationFromDataset(dataset, kind);
}

/**
 * Each input channel's normalisation when the dataset has several: a plan's exact list when one
 * is given (one per channel), else CT channels by the CT window, others per case (see
 * src/data/channels.ts), channel 0's replaced by a plan's exact choice when one is given;
 * undefined for one channel.
 */
function runChannelNormalizations(
  config: TrainConfig,
  dataset: Dataset,
  planned: Normalization | undefined,
  plannedChannels?: Normalization[],
): Normalization[] | undefined {
  const count = channelCount(dataset);
  if (count === 1) return undefined;
  if (plannedChannels) {
    if (plannedChannels.length !== count) {
      throw new Error(
        `the plan normalises ${plannedChannels.length} channels but the dataset has ${count}; ` +
          "plan the dataset again (voxseg plan)",
      );
    }
    return [...plannedChannels];
  }
  const norms = resolveChannelNormalizations(dataset, {
    kind: config.data.normalisation,
    window: config.data.window,
  });
  if (planned) norms[0] = planned;
  return norms;
}

function checkCompatible(config: TrainConfig, dataset: Dataset): void {
  const channels = channelCount(dataset);
  if (channels !== config.model.inChannels) {
    throw new Error(
      `the dataset has ${channels} input channel(s) but model.inChannels is ` +
        `${config.model.inChannels}; set --model.inChannels ${channels}`,
    );
  }
  if (dataset.classes.length !== config.model.classes) {
    throw new Error(
      `the dataset has ${dataset.classes.length} classes (${dataset.classes.join(", ")}) but ` +
        `model.classes is ${config.model.classes}; set --model.classes ${dataset.classes.length}`,
    );
  }
  const m = patchMultiple(config.model);
  if (config.data.patchSize.some((s, a) => s % m[a] !== 0)) {
    throw new Error(
      `patch size ${config.data.patchSize.join("×")} must be divisible by ${m.join("×")} for ` +
        `this network; e.g. --patch ${
          config.data.patchSize.map((s, a) => Math.max(m[a], Math.round(s / m[a]) * m[a])).join(",")
        }`,
    );
  }
}
