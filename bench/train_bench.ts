/**
 * `deno bench` of one voxseg training step (forward, Tversky + CE, backward, Adam), waited for
 * on the GPU: the reference U-Net of `voxseg bench train` (base 16, depth 4, 64³, batch 1), and
 * the step `deno task train` takes on the synthetic preset (base 8, depth 3, 32×64×64, batch 2).
 * For the side-by-side with PyTorch, run `deno task voxseg bench train`.
 */

import { initGpu } from "../src/gpu/mod.ts";
import { referenceConfig, TrainStepBench } from "../src/cli/bench/train.ts";

await initGpu();

const cases = [
  {
    name: "train step base16 depth4 64³ batch1 (reference)",
    overrides: {} as Record<string, string>,
  },
  {
    name: "train step base8 depth3 32×64×64 batch2 (synth preset)",
    overrides: {
      "model.baseChannels": "8",
      "model.depth": "3",
      "data.patchSize": "32,64,64",
      "data.batchSize": "2",
    },
  },
];

for (const c of cases) {
  const bench = new TrainStepBench(referenceConfig(c.overrides));
  Deno.bench({
    name: c.name,
    group: "train step",
    n: 2,
    warmup: 1, // builds the pipelines and fills the buffer pool
    async fn() {
      await bench.step();
    },
  });
}
