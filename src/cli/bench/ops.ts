/**
 * Kernel benchmarks: conv3d forward, backward-data and backward-weight at N=1, C=K=32, 32³ and
 * C=K=16, 64³; the U-Net's first layer (Ci=1 → Co=16 at 64³); conv_transpose3d forward and
 * backward up to those grids; the bias gradient; and the general kernels nnU-Net's
 * PlainConvUNet needs (1×3×3, stride 2, transposed 1×2×2) at C=K=32 on 8×64×64. Each sample
 * times a batch of calls (about a quarter second) up to a GPU sync, divided by the batch size;
 * the median sample is reported. The forward also runs with binary16 operands
 * (`withPrecision("f16")`). GFLOP/s counts a multiply-add as 2; the bias gradient counts one
 * addition per value of gy. On a software adapter `gflops_cpu_time` also counts the process's
 * CPU time, for shared machines.
 *
 * The cases are defined once, here; bench/ops_bench.ts runs the same ones under `deno bench`.
 */

import { fromArray, initGpu, recorder, scope, type Tensor } from "../../gpu/mod.ts";
import { biasGrad, conv3dBackwardInput, conv3dBackwardWeight } from "../../ops/conv3d.ts";
import * as ops from "../../ops/mod.ts";
import {
  convTranspose3d,
  convTranspose3dBackwardInput,
  convTranspose3dBackwardWeight,
} from "../../ops/conv_transpose3d.ts";
import { Random } from "../../base/random.ts";
import { withPrecision } from "../../ops/precision.ts";
import { type BenchResult, type BenchSuite, median } from "./suite.ts";

/** One benchmarked kernel call on prepared inputs. */
export interface OpCase {
  name: string;
  /** Floating-point operations of one call (multiply-add = 2). */
  flop: number;
  /** Inputs as shapes; filled with seeded normal values. */
  inputs: number[][];
  call: (xs: Tensor[]) => Tensor;
}

/** The op cases, shared with bench/ops_bench.ts. */
export function opCases(): OpCase[] {
  const cases: OpCase[] = [];
  for (const [c, s] of [[32, 32], [16, 64]]) {
    const x = [1, c, s, s, s];
    const tag = `C=K=${c} ${s}³`;
    cases.push(...convCases(tag, x, c, true));
    cases.push({
      name: `conv3d forward f16 operands ${tag}`,
      flop: 2 * c * c * 27 * s ** 3,
      inputs: [x, [c, c, 3, 3, 3]],
      call: ([a, b]) => withPrecision("f16", () => ops.conv3d(a, b, null)),
    });
    // Transposed convolution producing the s³ grid from (s/2)³, as in the U-Net's decoder.
    const h = s / 2;
    const xt = [1, c, h, h, h];
    const wt = [c, c, 2, 2, 2];
    const tFlop = 2 * c * c * 8 * h * h * h;
    cases.push(
      {
        name: `conv_transpose3d forward ${tag}`,
        flop: tFlop,
        inputs: [xt, wt],
        call: ([a, b]) => convTranspose3d(a, b, null),
      },
      {
        name: `conv_transpose3d backward ${tag}`,
        flop: 2 * tFlop,
        inputs: [xt, wt, x],
        call: ([a, b, g]) => {
          convTranspose3dBackwardInput(g, b);
          return convTranspose3dBackwardWeight(a, g);
        },
      },
    );
  }
  // The U-Net's first layer: one input channel, no input gradient.
  cases.push(...convCases("first layer Ci=1 Co=16 64³", [1, 1, 64, 64, 64], 16, false));
  const gy = [1, 16, 64, 64, 64];
  cases.push({
    name: "conv bias grad C=16 64³",
    flop: gy.reduce((a, b) => a * b, 1),
    inputs: [gy],
    call: ([g]) => biasGrad(g),
  });
  cases.push(...generalCases());
  return cases;
}

/**
 * The general kernels (conv3d_general.ts) at C=K=32 on an anisotropic 8×64×64 grid: a 1×3×3
 * convolution forward, backward-data and backward-weight; a 3×3×3 stride-2 convolution
 * (nnU-Net's down-sampling) to 4×32×32; a 1×2×2 transposed convolution from 8×32×32.
 */
function generalCases(): OpCase[] {
  const c = 32;
  const x = [1, c, 8, 64, 64];
  const tag = `C=K=${c} 8×64×64`;
  const w133 = [c, c, 1, 3, 3];
  const flop133 = 2 * c * c * 9 * 8 * 64 * 64;
  const down = [1, c, 4, 32, 32];
  const w333 = [c, c, 3, 3, 3];
  const flopDown = 2 * c * c * 27 * 4 * 32 * 32;
  const xt = [1, c, 8, 32, 32];
  const w122 = [c, c, 1, 2, 2];
  const flopUp = 2 * c * c * 4 * 8 * 32 * 32;
  const s2 = { stride: 2 };
  return [
    {
      name: `conv3d general forward 1×3×3 ${tag}`,
      flop: flop133,
      inputs: [x, w133],
      call: ([a, b]) => ops.conv3dGeneral(a, b, null),
    },
    {
      name: `conv3d general backward-data 1×3×3 ${tag}`,
      flop: flop133,
      inputs: [x, w133],
      call: ([g, b]) => ops.conv3dGeneralBackwardInput(g, b, x),
    },
    {
      name: `conv3d general backward-weight 1×3×3 ${tag}`,
      flop: flop133,
      inputs: [x, x],
      call: ([a, g]) => ops.conv3dGeneralBackwardWeight(a, g, [1, 3, 3]),
    },
    {
      name: `conv3d stride 2 forward 3×3×3 ${tag} → 4×32×32`,
      flop: flopDown,
      inputs: [x, w333],
      call: ([a, b]) => ops.conv3dGeneral(a, b, null, s2),
    },
    {
      name: `conv3d stride 2 backward 3×3×3 ${tag} → 4×32×32`,
      flop: 2 * flopDown,
      inputs: [x, w333, down],
      call: ([a, b, g]) => {
        ops.conv3dGeneralBackwardInput(g, b, x, s2);
        return ops.conv3dGeneralBackwardWeight(a, g, [3, 3, 3], s2);
      },
    },
    {
      name: `conv_transpose3d 1×2×2 forward C=K=${c} 8×32×32 → 8×64×64`,
      flop: flopUp,
      inputs: [xt, w122],
      call: ([a, b]) => ops.convTranspose3dGeneral(a, b, null),
    },
    {
      name: `conv_transpose3d 1×2×2 backward C=K=${c} 8×32×32 → 8×64×64`,
      flop: 2 * flopUp,
      inputs: [xt, w122, x],
      call: ([a, b, g]) => {
        ops.convTranspose3dGeneralBackwardInput(g, b);
        return ops.convTranspose3dGeneralBackwardWeight(a, g, [1, 2, 2]);
      },
    },
  ];
}

/** conv3d forward, backward-data (when `inputGrad`) and backward-weight, k = 3, on x. */
function convCases(tag: string, x: number[], co: number, inputGrad: boolean): OpCase[] {
  const [, ci, d, h, w] = x;
  const wShape = [co, ci, 3, 3, 3];
  const gy = [1, co, d, h, w];
  const flop = 2 * co * ci * 27 * d * h * w;
  return [
    {
      name: `conv3d forward ${tag}`,
      flop,
      inputs: [x, wShape],
      call: ([a, b]) => ops.conv3d(a, b, null),
    },
    ...(inputGrad
      ? [{
        name: `conv3d backward-data ${tag}`,
        flop,
        inputs: [gy, wShape],
        call: ([g, b]: Tensor[]) => conv3dBackwardInput(g, b),
      }]
      : []),
    {
      name: `conv3d backward-weight ${tag}`,
      flop,
      inputs: [x, gy],
      call: ([a, g]) => conv3dBackwardWeight(a, g, 3),
    },
  ];
}

/** Tensors of the given shapes filled with seeded standard-normal values. */
export function randomTensors(shapes: readonly number[][], seed: number): Tensor[] {
  const rng = new Random(seed);
  return shapes.map((shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fromArray(shape, Float32Array.from({ length: n }, () => rng.normal()));
  });
}

/**
 * Median milliseconds per call of `c`, with GPU completion included. A sample is a batch of
 * calls lasting about `sampleMs`: waiting for the GPU costs ~10 ms per round trip in Deno,
 * which would dominate a sample of a few short calls.
 */
export async function timeCase(
  c: OpCase,
  { samples = 5, sampleMs = 250, cpu }: {
    samples?: number;
    sampleMs?: number;
    /** Filled with this process's CPU milliseconds per call over the timed samples. */
    cpu?: { msPerCall: number };
  } = {},
): Promise<number> {
  const inputs = randomTensors(c.inputs, 1);
  // One call, everything it creates freed: a result left alive would make every call
  // allocate (and zero) a fresh buffer.
  const run = () =>
    scope(() => {
      c.call(inputs);
    });
  const batch = async (calls: number) => {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) run();
    await recorder().sync();
    return (performance.now() - t0) / calls;
  };
  try {
    await batch(1); // warm-up: pipeline creation, buffer pool
    const perSample = Math.max(1, Math.min(200, Math.ceil(sampleMs / await batch(2))));
    const times: number[] = [];
    const cpu0 = processCpuMs();
    for (let s = 0; s < samples; s++) times.push(await batch(perSample));
    if (cpu) cpu.msPerCall = (processCpuMs() - cpu0) / (samples * perSample);
    return median(times);
  } finally {
    for (const t of inputs) t.dispose();
  }
}

/**
 * CPU milliseconds this process has used (user + system, all threads: on a software adapter
 * the shader invocations run on its threads); NaN where /proc is missing.
 */
export function processCpuMs(): number {
  try {
    const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

export const suite: BenchSuite = {
  summary: "conv3d / conv_transpose3d kernels and the bias gradient",
  async *run({ quick }): AsyncIterable<BenchResult> {
    const gpu = await initGpu();
    const cores = navigator.hardwareConcurrency;
    for (const c of opCases()) {
      const cpu = { msPerCall: NaN };
      const ms = await timeCase(c, { ...(quick ? { samples: 3, sampleMs: 50 } : {}), cpu });
      yield {
        name: c.name,
        ms,
        gflops: c.flop / ms / 1e6,
        // On a software adapter, what all the cores would do if this process had them to
        // itself: GFLOP per CPU-second of this process × cores. Less sensitive to other load
        // on a shared machine than the wall-clock figure (and meaningless on a GPU).
        ...(gpu.info.isFallbackAdapter && cpu.msPerCall > 0
          ? { gflops_cpu_time: (c.flop / cpu.msPerCall / 1e6) * cores }
          : {}),
        adapter: gpu.info.description,
      };
    }
  },
};
