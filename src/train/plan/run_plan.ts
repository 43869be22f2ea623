/**
 * From a dataset to a run, as `voxseg plan` and `voxseg train` do it: fingerprint the cases,
 * plan, and — with a time budget — time the candidate networks on this adapter and size the
 * run to what is left of the budget. Also what the trainer takes from a plan that its flags
 * cannot say: the exact normalisation, and whether the cases must be preprocessed first
 * (resampled to the plan's spacing, or 0..255 CT mapped onto Hounsfield units).
 */

import type { Normalization } from "../../base/normalization.ts";
import type { Dataset } from "../../data/dataset.ts";
import { fingerprintDataset } from "../../data/fingerprint.ts";
import { resolveConfig, type TrainConfig } from "../config.ts";
import { sizeForBudget } from "./budget.ts";
import { measureStep, type StepTiming } from "./measure.ts";
import {
  applyBudget,
  budgetCandidates,
  candidateFlops,
  describeCandidate,
  plan,
  type PlanOptions,
  planOverrides,
  type StepCandidate,
  withCandidate,
} from "./planner.ts";
import type { Plan, PlanNormalisation } from "./types.ts";

/**
 * The fewest optimizer steps a measured budget accepts before it takes a smaller network: the
 * embedded default run (base 8, 720 steps) is where the synthetic infection class is learnt;
 * fewer steps of a larger network learnt the lungs but not the lesions in a 15-minute run on a
 * CPU.
 */
export const MEASURED_MIN_STEPS = 750;

/** Relative spacing difference below which a case is not resampled (as inference). */
export const PLAN_SPACING_TOLERANCE = 0.1;

export interface PlanDatasetOptions extends Omit<PlanOptions, "msPerStep" | "spentSeconds"> {
  /**
   * With `timeBudgetSeconds`: `performance.now()` when the budget started (default: now), so
   * the planning and preprocessing already done count against it.
   */
  startedAt?: number;
  /** Times a candidate's training step (default: {@link measureStep} on this adapter). */
  measure?: (config: TrainConfig) => Promise<StepTiming>;
  /** Called with each line worth showing (a candidate timed, …). */
  log?: (line: string) => void;
  /** Fingerprint seed (default 0). */
  seed?: number;
}

/**
 * Fingerprints `dataset` and plans it. With `timeBudgetSeconds`, the plan is sized by
 * {@link sizeToBudget} (measured step times) instead of the planner's FLOP estimate.
 */
export async function planDataset(dataset: Dataset, opts: PlanDatasetOptions = {}): Promise<Plan> {
  const fp = await fingerprintDataset(dataset, { seed: opts.seed ?? 0 });
  const { timeBudgetSeconds, ...rest } = opts;
  const unbudgeted = plan(fp, rest);
  if (timeBudgetSeconds === undefined) return unbudgeted;
  return await sizeToBudget(unbudgeted, { ...opts, timeBudgetSeconds });
}

/**
 * The plan sized to a time budget. Timing costs budget (a new network compiles for tens of
 * seconds on a software adapter, and one step of the plan's full network can take a minute
 * there), so at most two candidates are timed: the cheapest, whose measured step gives this
 * adapter's training FLOP rate, from which the others' steps are estimated; then the one
 * chosen on those estimates, and the choice is made again with its measured step. Validation
 * time is estimated from the step; the seconds spent so far (since `startedAt`, timings
 * included) count against the budget. The candidates are those of the plan's network
 * ({@link budgetCandidates}): today's UNet3D, or for `network: "plain"` the PlainConvUNet of
 * the planned topology (its general kernels are slower per FLOP; timing its own cheapest
 * candidate measures that rate).
 */
export async function sizeToBudget(
  p: Plan,
  opts: PlanDatasetOptions & { timeBudgetSeconds: number },
): Promise<Plan> {
  const startedAt = opts.startedAt ?? performance.now();
  const measure = opts.measure ?? ((config: TrainConfig) => measureStep(config));
  const candidates = budgetCandidates(p, opts);
  const measured = new Map<StepCandidate, number>();
  const time = async (c: StepCandidate) => {
    const t = await measure(candidateConfig(p, c));
    measured.set(c, t.msPerStep);
    opts.log?.(
      `timed ${describeCandidate(c)}: ${(t.msPerStep / 1000).toFixed(2)} s a step ` +
        `(first step, compiling, ${(t.firstStepMs / 1000).toFixed(1)} s)`,
    );
    return t.msPerStep;
  };
  /** Validations a budgeted run makes, about: enough to pick a best epoch, few enough to train. */
  const validations = 5;
  let valEvery = opts.valEvery ?? 1;
  const choose = (msPerFlop: number) => {
    const msPerStep = (c: StepCandidate) => measured.get(c) ?? candidateFlops(p, c) * msPerFlop;
    return sizeForBudget({
      budgetSeconds: opts.timeBudgetSeconds,
      spentSeconds: (performance.now() - startedAt) / 1000,
      // Checkpoint writes and a slower step than measured: a margin of 3 % and 10 s.
      overheadSeconds: opts.overheadSeconds ?? 10 + 0.03 * opts.timeBudgetSeconds,
      candidates,
      msPerStep,
      validationSeconds: (c) => validationSeconds(VALIDATION_PATCHES, msPerStep(c), c.batchSize),
      valEvery,
      minSteps: opts.minSteps ?? MEASURED_MIN_STEPS,
      itersPerEpoch: opts.itersPerEpoch,
      maxEpochs: opts.epochs,
      describe: describeCandidate,
    });
  };
  // The cheapest candidate first: it compiles and steps in seconds, and a small network's
  // FLOP rate is the lower one (dispatch costs weigh more), so the larger candidates' steps
  // are over- rather than under-estimated until one of them is timed itself.
  const first = candidates[candidates.length - 1];
  let choice = choose((await time(first)) / candidateFlops(p, first));
  let rate = measured.get(first)! / candidateFlops(p, first);
  if (!measured.has(choice.candidate)) {
    const c = choice.candidate;
    rate = (await time(c)) / candidateFlops(p, c);
    choice = choose(rate);
  }
  if (opts.valEvery === undefined && choice.epochs > validations) {
    // Fewer validations leave more of the budget to training: choose again with them. The
    // longer run that gives is validated as seldom (never more often than was budgeted).
    valEvery = Math.ceil(choice.epochs / validations);
    choice = choose(rate);
    valEvery = Math.max(valEvery, Math.ceil(choice.epochs / validations));
  }
  const sized = applyBudget(p, choice, opts.timeBudgetSeconds, "measured");
  return { ...sized, budget: { ...sized.budget!, valEvery } };
}

/** Patches a planned run validates on (src/infer/patch_validator.ts). */
export const VALIDATION_PATCHES = 64;

/**
 * Seconds one validation takes, estimated: `patches` validation patches in batches, each
 * forward pass costing about a third of a training step.
 */
export function validationSeconds(patches: number, msPerStep: number, batch: number): number {
  return (Math.ceil(patches / batch) * msPerStep) / 3 / 1000;
}

/** The trainer config a candidate of the plan would run (for timing it). */
export function candidateConfig(p: Plan, c: StepCandidate): TrainConfig {
  return resolveConfig(undefined, {
    ...planOverrides(withCandidate(p, c)),
    epochs: "1",
    itersPerEpoch: "1",
  });
}

/** The normalisation a plan chose, exactly (its flags name only the kind); channel 0's. */
export function planNormalization(p: Plan): Normalization {
  return exactNormalization(p.normalisation);
}

/**
 * Each input channel's normalisation a multi-channel plan chose, exactly (channel order);
 * undefined for a one-channel plan (see {@link planNormalization}).
 */
export function planChannelNormalizations(p: Plan): Normalization[] | undefined {
  return p.channels?.map((c) => exactNormalization(c.normalisation));
}

function exactNormalization(n: PlanNormalisation): Normalization {
  if (n.scheme === "ct-window" && n.window) {
    return { kind: "ct-window", lo: n.window[0], hi: n.window[1] };
  }
  if (n.scheme === "ct-zscore" && n.zscore) return { kind: "zscore", ...n.zscore };
  return { kind: "zscore-case" };
}

/**
 * Each case's maps onto HU, by case id: one map (channel 0's) for a one-channel plan; one per
 * channel (null: left as it is) when the plan has several channels and any of them maps a case.
 */
export function planIntensityMaps(
  p: Plan,
): Record<
  string,
  { scale: number; offset: number } | ({ scale: number; offset: number } | null)[]
> {
  const perChannel = (p.channels ?? [{ normalisation: p.normalisation }]).map((c) =>
    c.normalisation.huMaps
  );
  const ids = [...new Set(perChannel.flatMap((m) => Object.keys(m)))];
  const linear = (m: { scale: number; offset: number } | undefined) =>
    m ? { scale: m.scale, offset: m.offset } : null;
  return Object.fromEntries(ids.map((id) => [
    id,
    p.channels ? perChannel.map((m) => linear(m[id])) : linear(perChannel[0][id])!,
  ]));
}

/**
 * Why the dataset must be preprocessed before training on the plan (a case's spacing differs
 * from the plan's by more than {@link PLAN_SPACING_TOLERANCE}, or cases need a map onto HU, in
 * any channel); undefined when it need not be.
 */
export function preprocessingReason(p: Plan, dataset: Pick<Dataset, "cases">): string | undefined {
  const off = dataset.cases.filter((c) =>
    c.spacingMm.some((s, a) =>
      Math.abs(s - p.targetSpacingMm[a]) / p.targetSpacingMm[a] > PLAN_SPACING_TOLERANCE
    )
  );
  const mapped = Object.keys(planIntensityMaps(p));
  const why = [
    ...(off.length ? [`${off.length} case(s) are not at the plan's spacing`] : []),
    ...(mapped.length ? [`${mapped.length} case(s) are mapped onto Hounsfield units`] : []),
  ];
  return why.length ? why.join("; ") : undefined;
}
