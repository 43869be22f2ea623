/**
 * Sizing training to a time budget: among candidate networks (best first), the first whose
 * measured step time still allows a useful number of optimizer steps, and the epochs ×
 * iterations that end within the time left, validations included. Timings are injected (a
 * function of the candidate), so the choice is reproducible and testable without a clock.
 */

import { num } from "./topology.ts";

/** Inputs of {@link sizeForBudget}. */
export interface BudgetInput<C> {
  budgetSeconds: number;
  spentSeconds?: number;
  /** Start-up, final evaluation, checkpoint writes… (seconds). */
  overheadSeconds?: number;
  /** Best first: the first that reaches `minSteps` is taken. */
  candidates: C[];
  msPerStep: (candidate: C) => number;
  /** Seconds per validation (default 0). */
  validationSeconds?: number | ((candidate: C) => number);
  /** Validate every this many epochs (default 1). */
  valEvery?: number;
  /** Fewest useful optimizer steps (default 250). */
  minSteps?: number;
  /** Steps per epoch when time allows (default 250, nnU-Net). */
  itersPerEpoch?: number;
  /** Fewer steps per epoch rather than fewer epochs than this (default 10). */
  minEpochs?: number;
  /** Default 1000 (nnU-Net). */
  maxEpochs?: number;
  /** Names a candidate in the reason. */
  describe?: (candidate: C) => string;
}

/** What {@link sizeForBudget} chose. */
export interface BudgetChoice<C> {
  candidate: C;
  msPerStep: number;
  epochs: number;
  itersPerEpoch: number;
  steps: number;
  /** epochs × itersPerEpoch steps plus the validations, seconds (≤ the time left). */
  estimatedSeconds: number;
  reason: string;
}

/** Epochs × iterations of one candidate that end within `left` seconds. */
function scheduleFor(
  left: number,
  stepSeconds: number,
  valSeconds: number,
  o: { valEvery: number; itersPerEpoch: number; minEpochs: number; maxEpochs: number },
) {
  const cost = (e: number, i: number) =>
    e * i * stepSeconds + Math.ceil(e / o.valEvery) * valSeconds;
  const epochsFor = (i: number) => {
    let e = Math.min(o.maxEpochs, Math.floor(left / (i * stepSeconds + valSeconds / o.valEvery)));
    while (e > 0 && cost(e, i) > left) e--;
    return Math.max(0, e);
  };
  let iters = o.itersPerEpoch, epochs = epochsFor(iters);
  if (epochs < o.minEpochs) {
    const perEpoch = left / o.minEpochs - valSeconds / o.valEvery;
    iters = Math.max(1, Math.min(iters, Math.floor(perEpoch / stepSeconds)));
    epochs = epochsFor(iters);
  }
  return { epochs, iters, seconds: cost(epochs, iters) };
}

/**
 * Chooses among candidates (best first) the first whose step time still allows `minSteps`
 * optimizer steps in the time left, and sizes epochs × itersPerEpoch so that training plus
 * validations end within it. When none reaches `minSteps`, the one with the most steps wins.
 * Candidates after the chosen one are never timed.
 *
 * @example
 * sizeForBudget({ budgetSeconds: 3600, candidates: [big, small], msPerStep: (c) => table[c] })
 */
export function sizeForBudget<C>(input: BudgetInput<C>): BudgetChoice<C> {
  const search = budgetSearch(input);
  for (const candidate of input.candidates) {
    const accepted = search.offer(candidate, input.msPerStep(candidate));
    if (accepted) return accepted;
  }
  return search.finish();
}

/**
 * {@link sizeForBudget} with a step timing that may be asynchronous (a short measured run per
 * candidate): candidates are timed one by one, best first, until one is accepted.
 */
export async function sizeForBudgetAsync<C>(
  input: Omit<BudgetInput<C>, "msPerStep"> & {
    msPerStep: (candidate: C) => number | Promise<number>;
  },
): Promise<BudgetChoice<C>> {
  const search = budgetSearch({ ...input, msPerStep: () => NaN });
  for (const candidate of input.candidates) {
    const accepted = search.offer(candidate, await input.msPerStep(candidate));
    if (accepted) return accepted;
  }
  return search.finish();
}

/** The search shared by both versions: offer timed candidates in order, then finish. */
function budgetSearch<C>(input: BudgetInput<C>) {
  const { budgetSeconds, spentSeconds = 0, overheadSeconds = 0, candidates } = input;
  const o = {
    valEvery: input.valEvery ?? 1,
    itersPerEpoch: input.itersPerEpoch ?? 250,
    minEpochs: input.minEpochs ?? 10,
    maxEpochs: input.maxEpochs ?? 1000,
  };
  const minSteps = input.minSteps ?? 250, describe = input.describe ?? ((c: C) => String(c));
  const left = budgetSeconds - spentSeconds - overheadSeconds;
  if (!(left > 0)) {
    throw new RangeError(
      `no time left: budget ${budgetSeconds} s − ${spentSeconds} s spent − ${overheadSeconds} s ` +
        "overhead; raise the time budget",
    );
  }
  if (candidates.length === 0) throw new RangeError("sizeForBudget needs at least one candidate");
  if (!(o.itersPerEpoch >= 1 && o.valEvery >= 1 && o.maxEpochs >= 1)) {
    throw new RangeError("itersPerEpoch, valEvery and maxEpochs must be ≥ 1");
  }
  const rejected: string[] = [];
  let best: BudgetChoice<C> | undefined;
  const offer = (candidate: C, ms: number): BudgetChoice<C> | undefined => {
    if (!(ms > 0)) throw new RangeError(`step time of ${describe(candidate)} must be > 0 ms`);
    const v = typeof input.validationSeconds === "function"
      ? input.validationSeconds(candidate)
      : input.validationSeconds ?? 0;
    const s = scheduleFor(left, ms / 1000, v, o);
    const steps = s.epochs * s.iters;
    const choice = {
      candidate,
      msPerStep: ms,
      epochs: s.epochs,
      itersPerEpoch: s.iters,
      steps,
      estimatedSeconds: s.seconds,
      reason: "",
    };
    if (steps >= minSteps && s.epochs > 0) return withReason(choice, left, rejected, describe);
    rejected.push(`${describe(candidate)} at ${num(ms)} ms/step: ${steps} steps < ${minSteps}`);
    if (!best || steps > best.steps) best = choice;
  };
  const finish = (): BudgetChoice<C> => {
    if (!best || best.epochs === 0) {
      throw new RangeError(
        `${num(left)} s left cannot fit one epoch of the fastest candidate` +
          `${best ? ` (${describe(best.candidate)})` : ""}; raise the time budget`,
      );
    }
    rejected.push(`none reaches ${minSteps} steps: taking the one with the most`);
    return withReason(best, left, rejected, describe);
  };
  return { offer, finish };
}

function withReason<C>(
  c: BudgetChoice<C>,
  left: number,
  rejected: string[],
  describe: (c: C) => string,
): BudgetChoice<C> {
  const head = `${num(left)} s left: ${describe(c.candidate)} at ${num(c.msPerStep)} ms/step → ` +
    `${c.epochs} epochs × ${c.itersPerEpoch} steps ≈ ${num(c.estimatedSeconds)} s with validation`;
  return { ...c, reason: [head, ...rejected].join("; ") };
}
