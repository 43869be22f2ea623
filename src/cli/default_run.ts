/**
 * The embedded default run (`deno task train` with no dataset, budget or --epochs) ends within
 * {@link DEFAULT_RUN_SECONDS} on any adapter. Its preset (src/cli/train.ts SYNTH_PRESET) takes
 * about 12 minutes on a 2-core AVX-512 CPU but twice that on an AVX2 one, where Mesa's software
 * adapter runs the same kernels several times slower (see CONV_TILES in src/ops/tuning.ts). So
 * before training, a few steps of the preset's network are timed on this adapter, and where the
 * preset's epochs would not fit, the run trains fewer (validating less often if that buys an
 * epoch). The choice is printed; the run is deterministic for a given choice (the schedule
 * spans the chosen steps), and run.json stores it, so `--resume` keeps it.
 */

import type { TrainConfig } from "../train/config.ts";
import { measureStep, type StepTiming } from "../train/plan/measure.ts";
import { validationSeconds } from "../train/plan/run_plan.ts";
import { planWindows } from "../infer/sliding_window.ts";
import type { Dataset } from "../data/dataset.ts";

/** The wall-clock limit of the embedded default run: dataset, compilation, training, test. */
export const DEFAULT_RUN_SECONDS = 15 * 60;

/** Validate at most this sparsely to buy training epochs. */
const MAX_VAL_EVERY = 3;

/** What {@link defaultRunLength} chose. */
export interface DefaultRunLength {
  epochs: number;
  valEvery: number;
  /** Estimated seconds of training and validations. */
  estimatedSeconds: number;
  /** Whether the preset was shortened. */
  shortened: boolean;
  reason: string;
}

/** Inputs of {@link defaultRunLength}: the preset, measured and estimated times (seconds). */
export interface DefaultRunInput {
  epochs: number;
  itersPerEpoch: number;
  valEvery: number;
  stepSeconds: number;
  /** One validation. */
  validationSeconds: number;
  /** What comes after training: the test-split evaluation, checkpoint reads. */
  finalSeconds: number;
  /** Already spent: dataset creation, compilation, the timing itself. */
  spentSeconds: number;
  limitSeconds?: number;
}

/**
 * The preset's epochs when they fit in what is left of the limit, else the most epochs that
 * do (each validated, or every 2nd or 3rd when that fits more; the last epoch is always
 * validated). A margin of 3 % of the limit and 10 s covers checkpoint writes and a step slower
 * than measured. At least one epoch, even when it cannot fit.
 *
 * @example
 * defaultRunLength({ epochs: 18, itersPerEpoch: 40, valEvery: 1, stepSeconds: 2,
 *   validationSeconds: 8, finalSeconds: 6, spentSeconds: 90 }) // 9 epochs
 */
export function defaultRunLength(o: DefaultRunInput): DefaultRunLength {
  const limit = o.limitSeconds ?? DEFAULT_RUN_SECONDS;
  const left = limit - o.spentSeconds - o.finalSeconds - (10 + 0.03 * limit);
  const cost = (epochs: number, every: number) =>
    epochs * o.itersPerEpoch * o.stepSeconds + Math.ceil(epochs / every) * o.validationSeconds;
  const full = cost(o.epochs, o.valEvery);
  const at = `${o.stepSeconds.toFixed(2)} s a step on this adapter`;
  if (full <= left) {
    return {
      epochs: o.epochs,
      valEvery: o.valEvery,
      estimatedSeconds: full,
      shortened: false,
      reason: `${at}: the preset's ${o.epochs} epochs take about ${minutes(full)}`,
    };
  }
  let best = { epochs: 1, valEvery: o.valEvery };
  for (let every = o.valEvery; every <= Math.max(o.valEvery, MAX_VAL_EVERY); every++) {
    let e = o.epochs;
    while (e > 1 && cost(e, every) > left) e--;
    if (e > best.epochs) best = { epochs: e, valEvery: every };
  }
  const estimatedSeconds = cost(best.epochs, best.valEvery);
  const every = best.valEvery > 1 ? `, validating every ${best.valEvery} epochs` : "";
  return {
    ...best,
    estimatedSeconds,
    shortened: true,
    reason: `${at}: the preset's ${o.epochs} epochs would take about ${minutes(full)}, over the ` +
      `default run's ${minutes(limit)} with ${minutes(Math.max(0, left))} left for training; ` +
      `training ${best.epochs} epochs${every} (about ${minutes(estimatedSeconds)}; ` +
      `--epochs ${o.epochs} trains the whole preset)`,
  };
}

function minutes(seconds: number): string {
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return m ? `${m} min ${s} s` : `${s} s`;
}

/** Sliding-window batches of the cases of one split, at the preset's patch and batch. */
function splitBatches(dataset: Dataset, split: string, config: TrainConfig): number {
  let batches = 0;
  for (const c of dataset.cases) {
    if (c.split !== split || !c.hasLabel) continue;
    const shape = c.shape as [number, number, number];
    batches += planWindows(shape, { patchSize: config.data.patchSize, batchSize: 2 }).batches
      .length;
  }
  return batches;
}

/**
 * Times the preset's step on this adapter (compiling its pipelines, which the run then reuses)
 * and sizes the run with {@link defaultRunLength}; returns the config to train, and the choice.
 */
export async function fitDefaultRun(
  config: TrainConfig,
  dataset: Dataset,
  o: { startedAt: number; log: (line: string) => void; measure?: typeof measureStep },
): Promise<{ config: TrainConfig; length: DefaultRunLength; timing: StepTiming }> {
  // Six timed steps: the median of three ran 10–20 % above the run's own steps.
  const timing = await (o.measure ?? ((c: TrainConfig) => measureStep(c, 6)))(config);
  // A forward batch of the sliding window costs about a third of a training step.
  const stepMs = timing.msPerStep;
  const val = validationSeconds(2 * splitBatches(dataset, "val", config), stepMs, 2);
  const test = validationSeconds(2 * splitBatches(dataset, "test", config), stepMs, 2);
  const length = defaultRunLength({
    epochs: config.epochs,
    itersPerEpoch: config.itersPerEpoch,
    valEvery: config.valEvery,
    stepSeconds: stepMs / 1000,
    validationSeconds: val,
    finalSeconds: test,
    spentSeconds: (performance.now() - o.startedAt) / 1000,
  });
  o.log(`default run: ${length.reason}`);
  return {
    config: { ...config, epochs: length.epochs, valEvery: length.valEvery },
    length,
    timing,
  };
}
