/**
 * A short measured timing of this adapter, for a time budget: a few training steps of a
 * candidate network on a synthetic batch (src/train/step_timing.ts). The first step compiles
 * the pipelines and is reported apart; the rest give the steady milliseconds per step.
 */

import { initGpu } from "../../gpu/mod.ts";
import type { TrainConfig } from "../config.ts";
import { TrainStepBench } from "../step_timing.ts";

/** What a short timing of one candidate found. */
export interface StepTiming {
  /** Median milliseconds of a steady training step. */
  msPerStep: number;
  /** Milliseconds of the first step (pipeline compilation included). */
  firstStepMs: number;
  /** Wall milliseconds the measurement took. */
  spentMs: number;
}

/**
 * Times `steps` training steps of `config`'s network, patch and batch after one untimed
 * first step. The weights are thrown away; nothing touches the run folder.
 *
 * @example
 * const { msPerStep } = await measureStep(config);
 */
export async function measureStep(config: TrainConfig, steps = 3): Promise<StepTiming> {
  await initGpu();
  const t0 = performance.now();
  const bench = new TrainStepBench(config, config.seed);
  try {
    const firstStepMs = await bench.step();
    const times = await bench.timedSteps(0, Math.max(1, steps));
    times.sort((a, b) => a - b);
    return {
      msPerStep: times[Math.floor(times.length / 2)],
      firstStepMs,
      spentMs: performance.now() - t0,
    };
  } finally {
    bench.dispose();
  }
}
