/**
 * Convolution kernels: forward, input gradient, weight gradient, for the sizes that dominate
 * U-Net training (C = K = 32 at 32³, and the first layer Ci = 1 → Co = 16 at 64³), plus the
 * transposed convolution and the bias gradient.
 *
 *   deno bench -A bench/conv_bench.ts     Deno's statistics per case
 *   deno run -A bench/conv_bench.ts       a GFLOP/s table (best of several timed batches)
 *
 * GFLOP/s counts 2·N·Co·Ci·k³·D·H·W per convolution (each of forward, input gradient and
 * weight gradient does that much work) and 2·N·Ci·Co·8·D·H·W per transposed convolution. Each
 * timed batch records `reps` ops and then waits for the GPU (`commands().sync()`), so the
 * ~10 ms a queue round trip costs in Deno is spread over the batch; times are per op.
 */

import { biasGrad, conv3d, conv3dBackwardInput, conv3dBackwardWeight } from "../src/ops/conv3d.ts";
import {
  convTranspose3d,
  convTranspose3dBackwardInput,
  convTranspose3dBackwardWeight,
} from "../src/ops/conv_transpose3d.ts";
import { commands, fromArray, initGpu, type Tensor } from "../src/gpu/mod.ts";

await initGpu();

interface Case {
  name: string;
  flops: number;
  run: () => Tensor;
  /** Ops per timed batch: enough that one queue round trip is a small part of the batch. */
  reps: number;
}

function random(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(i * 12.9898) * 0.5;
  return fromArray(shape, data);
}

function convCases(n: number, ci: number, co: number, s: number, label: string): Case[] {
  const x = random([n, ci, s, s, s]);
  const w = random([co, ci, 3, 3, 3]);
  const b = random([co]);
  const gy = random([n, co, s, s, s]);
  const flops = 2 * n * co * ci * 27 * s ** 3;
  const shapes = `x [${n},${ci},${s},${s},${s}] w [${co},${ci},3,3,3]`;
  const reps = 4;
  return [
    { name: `conv3d forward ${shapes} (${label})`, flops, reps, run: () => conv3d(x, w, b) },
    {
      name: `conv3d input grad ${shapes} (${label})`,
      flops,
      reps,
      run: () => conv3dBackwardInput(gy, w),
    },
    {
      name: `conv3d weight grad ${shapes} (${label})`,
      flops,
      reps,
      run: () => conv3dBackwardWeight(x, gy, 3),
    },
  ];
}

function convTransposeCases(n: number, ci: number, co: number, s: number): Case[] {
  const x = random([n, ci, s, s, s]);
  const w = random([ci, co, 2, 2, 2]);
  const b = random([co]);
  const gy = random([n, co, 2 * s, 2 * s, 2 * s]);
  const flops = 2 * n * ci * co * 8 * s ** 3;
  const shapes = `x [${n},${ci},${s},${s},${s}] w [${ci},${co},2,2,2]`;
  const reps = 16;
  return [
    {
      name: `convTranspose3d forward ${shapes}`,
      flops,
      reps,
      run: () => convTranspose3d(x, w, b),
    },
    {
      name: `convTranspose3d input grad ${shapes}`,
      flops,
      reps,
      run: () => convTranspose3dBackwardInput(gy, w),
    },
    {
      name: `convTranspose3d weight grad ${shapes}`,
      flops,
      reps,
      run: () => convTranspose3dBackwardWeight(x, gy),
    },
    {
      name: `conv bias grad gy [${gy.shape}] (GFLOP/s = Gvalues/s)`,
      flops: gy.size,
      reps,
      run: () => biasGrad(gy),
    },
  ];
}

const cases: Case[] = [
  ...convCases(1, 32, 32, 32, "C=K=32, 32³"),
  ...convCases(1, 1, 16, 64, "U-Net first layer, 64³"),
  ...convTransposeCases(1, 32, 16, 16),
];

/** Records `reps` runs of a case and waits for the GPU. */
async function batch(c: Case): Promise<void> {
  for (let r = 0; r < c.reps; r++) c.run().dispose();
  await commands().sync();
}

for (const c of cases) {
  Deno.bench({
    name: `${c.name} ×${c.reps} (${(c.flops / 1e9).toFixed(3)} GFLOP each)`,
    group: c.name.split(" ")[0],
    // Each iteration is a batch of ops taking tenths of a second on a CPU adapter.
    n: 5,
    warmup: 1,
    async fn() {
      await batch(c);
    },
  });
}

if (import.meta.main) {
  // Other processes on a CPU adapter's cores slow every kernel; say how busy the machine was.
  console.log(`load average ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  console.log(`${"case".padEnd(78)} ${"ms/op".padStart(8)} ${"GFLOP/s".padStart(8)}`);
  for (const c of cases) {
    await batch(c); // compile pipelines, warm the pool
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await batch(c);
      best = Math.min(best, (performance.now() - t0) / c.reps);
    }
    const rate = c.flops / (best * 1e6);
    console.log(
      `${c.name.padEnd(78)} ${best.toFixed(2).padStart(8)} ${rate.toFixed(1).padStart(8)}`,
    );
  }
}
