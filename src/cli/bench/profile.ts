/**
 * Where a training step spends its GPU time: one step of the `deno task train` preset
 * (base 8, depth 3, 32×64×64, batch 2) and one of the reference step (base 16, depth 4, 64³,
 * batch 1), each profiled per pipeline with timestamp queries after warm-up steps. One result
 * per pipeline (its kernel, dispatches, milliseconds and share of the step's GPU time), then
 * the step's total and dispatch count.
 *
 * Profiled steps run one compute pass per dispatch, so their totals exceed unprofiled step
 * times; the shares are what this suite is for.
 */

import { initGpu, recorder } from "../../gpu/mod.ts";
import { resolveConfig, type TrainConfig } from "../../train/config.ts";
import { SYNTH_PRESET } from "../train.ts";
import type { BenchResult, BenchSuite } from "./suite.ts";
import { referenceConfig, TrainStepBench } from "./train.ts";

/** Pipelines listed one by one per step; the rest are summed into one line. */
const SHOWN = 14;

/** The step `deno task train` runs on the embedded data (the dataset itself is not needed). */
export function presetConfig(): TrainConfig {
  const { "data.dataset": _, ...preset } = SYNTH_PRESET;
  return resolveConfig(undefined, preset);
}

export const suite: BenchSuite = {
  summary: "GPU time per kernel of one training step (train preset and reference)",
  async *run({ quick }): AsyncIterable<BenchResult> {
    const gpu = await initGpu();
    if (!gpu.hasTimestamps) {
      throw new Error(`the adapter ${gpu.info.description} has no timestamp-query to profile with`);
    }
    const steps: [string, TrainConfig][] = [
      ["preset", presetConfig()],
      ["reference", referenceConfig()],
    ];
    for (const [tag, config] of steps) {
      const bench = new TrainStepBench(config);
      try {
        for (let i = 0; i < (quick ? 1 : 2); i++) await bench.step();
        const before = recorder().dispatchCount;
        recorder().startProfile();
        await bench.step();
        const times = await recorder().stopProfile();
        const dispatches = recorder().dispatchCount - before;
        const total = times.reduce((a, t) => a + t.ms, 0);
        const row = (kernel: string, n: number, ms: number): BenchResult => ({
          name: `${tag} ${kernel}`,
          dispatches: n,
          ms,
          share: ms / total,
        });
        for (const t of times.slice(0, SHOWN)) yield row(t.kernel, t.dispatches, t.ms);
        const rest = times.slice(SHOWN);
        if (rest.length) {
          yield row(
            `(${rest.length} other pipelines)`,
            rest.reduce((a, t) => a + t.dispatches, 0),
            rest.reduce((a, t) => a + t.ms, 0),
          );
        }
        const [D, H, W] = config.data.patchSize;
        const m = config.model;
        yield {
          name: `${tag} step base${m.baseChannels} depth${m.depth} ${D}×${H}×${W} ` +
            `batch${config.data.batchSize}`,
          dispatches,
          gpu_ms: total,
          adapter: gpu.info.description,
        };
      } finally {
        bench.dispose();
      }
    }
  },
};
