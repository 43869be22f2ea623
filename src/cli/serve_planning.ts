/**
 * The planner `voxseg serve` hands its training jobs: the very planning `voxseg train` runs
 * (./planning.ts) — the plan given, beside the dataset or new, the cases preprocessed into the
 * run folder, the run sized to a time budget, the folds — with its errors about what a client
 * sent turned into 400s. It lives here because the server may not import the command line
 * (DESIGN.md, "Layers"); the server calls it through {@link TrainPlanner}.
 */

import { ApiError } from "../server/errors.ts";
import type { TrainPlanner } from "../server/jobs/deps.ts";
import { measureStep } from "../train/plan/measure.ts";
import type { PlanDatasetOptions } from "../train/plan/run_plan.ts";
import { foldFor, planForTraining } from "./planning.ts";
import { UsageError } from "./usage_error.ts";

export interface ServePlannerOptions {
  /**
   * Times a candidate's training step for a time budget (default: a few steps measured on this
   * adapter); tests inject a timing.
   */
  measure?: PlanDatasetOptions["measure"];
}

/**
 * The server's planner. Every timed step runs inside `onGpu`, so it holds the server's GPU
 * lane.
 *
 * @example
 * const server = await createApp({ dataRoot: "data", planner: servePlanner() });
 */
export function servePlanner(options: ServePlannerOptions = {}): TrainPlanner {
  const measure = options.measure ?? ((config) => measureStep(config));
  return {
    plan: (dataset, input) =>
      asApiErrors(() =>
        planForTraining(dataset, {
          ...input,
          measure: (config) => input.onGpu(() => measure(config)),
        })
      ),
    fold: (dataset, planDir, index) => asApiErrors(() => foldFor(dataset, planDir, index)),
  };
}

/**
 * Runs `work`, turning the planner's usage errors (a plan for another dataset, a fold out of
 * range) and a budget with no time left into 400 `invalid_plan`.
 */
async function asApiErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof UsageError) throw new ApiError(400, "invalid_plan", e.message);
    if (e instanceof RangeError && /no time left/.test(e.message)) {
      throw new ApiError(400, "time_budget_too_small", e.message);
    }
    throw e;
  }
}
