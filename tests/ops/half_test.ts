/**
 * Mixed precision (src/ops/precision.ts): conv3d with binary16 operands and f32 sums, against
 * the float64 reference with an error bound derived from binary16 rounding, and against f32.
 */

import { deepStrictEqual, ok, throws } from "node:assert";
import { fromArray, initGpu, readInt, readTensors, Tensor } from "../../src/gpu/mod.ts";
import { halfEligible } from "../../src/ops/conv3d.ts";
import { CONV_TILES } from "../../src/ops/tuning.ts";
import * as ops from "../../src/ops/mod.ts";
import { packHalf, precision, withPrecision } from "../../src/ops/precision.ts";
import { Random } from "../../src/base/random.ts";
import { conv3dRef } from "./conv3d_ref.ts";
import { withForcedTiles } from "./forced_tiles.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { recorder } from "../../src/gpu/mod.ts";
import { predictVolume } from "../../src/infer/predict.ts";
import { ctVolume, SPACING } from "../server/server_fixture.ts";

/** binary16 unit roundoff: 2⁻¹¹. */
const U16 = 2 ** -11;

function normal(n: number, rng: Random, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/**
 * conv3d under f16 vs the float64 reference: each of the two rounded operands is off by at
 * most U16 relatively, so |ŷ − y| ≤ (2·U16 + U16²)·Σ|w||x| plus f32 summation error. The
 * error must also be present (the binary16 path really ran), and f32 must be far tighter.
 */
async function checkHalfConv(
  xShape: number[],
  co: number,
  { bias = true, relu = false, seed = 7, tiles = CONV_TILES.software[3] } = {},
): Promise<void> {
  await initGpu();
  const rng = new Random(seed);
  const ci = xShape[1];
  const size = xShape.reduce((a, b) => a * b, 1);
  const xh = normal(size, rng);
  const wh = normal(co * ci * 27, rng, Math.sqrt(2 / (27 * ci)));
  const bh = normal(co, rng);
  const x = fromArray(xShape, xh);
  const w = fromArray([co, ci, 3, 3, 3], wh);
  const b = bias ? fromArray([co], bh) : null;
  const act = relu ? { kind: "relu" as const } : null;
  // The block is forced, so a tuned block cached on this machine cannot change the path.
  const [y16, y32] = await withForcedTiles({ conv3: tiles }, () => [
    withPrecision("f16", () => ops.conv3d(x, w, b, act)),
    ops.conv3d(x, w, b, act),
  ]);
  const [h16, h32] = await readTensors([y16, y32]);
  for (const t of [x, w, b, y16, y32]) t?.dispose();

  const f64 = (a: Float32Array) => Float64Array.from(a);
  const ref = conv3dRef(xShape, co, 3, bias)([f64(xh), f64(wh), f64(bh)]);
  const absSum = conv3dRef(xShape, co, 3, false)([
    f64(xh).map(Math.abs),
    f64(wh).map(Math.abs),
    new Float64Array(co),
  ]);
  let worst16 = 0, worst32 = 0, differs = 0, live = 0;
  for (let i = 0; i < ref.length; i++) {
    const want = relu ? Math.max(0, ref[i]) : ref[i];
    const bound = (2 * U16 + U16 * U16) * absSum[i] + 1e-5 * (1 + Math.abs(want));
    worst16 = Math.max(worst16, Math.abs(h16[i] - want) / bound);
    worst32 = Math.max(worst32, Math.abs(h32[i] - want) / bound);
    if (h16[i] !== h32[i]) differs++;
    // ReLU zeroes about half the outputs in both; count those it lets through.
    if (h16[i] !== 0 || h32[i] !== 0) live++;
  }
  ok(worst16 <= 1, `f16 error ${worst16.toFixed(3)}× the binary16 bound`);
  ok(differs > live / 2, `only ${differs} of ${live} nonzero outputs differ from f32`);
  ok(worst32 < 0.05, `f32 error ${worst32.toFixed(3)}× the binary16 bound`);
}

// All with the fused ReLU the U-Net uses, so one binary16 pipeline is compiled (tens of
// seconds of LLVM on a CPU adapter); the activation is applied after the sums either way.
Deno.test("f16 conv3d: odd D, H and channels, W 16, bias, within the binary16 bound", () =>
  checkHalfConv([2, 5, 7, 5, 16], 12, { relu: true }));

Deno.test("f16 conv3d: partial x tile (W 24), fused ReLU, no bias", () =>
  checkHalfConv([1, 3, 6, 9, 24], 8, { bias: false, relu: true, seed: 8 }));

// Two channel groups per thread (CG 2; the built-in software block has one).
Deno.test("f16 conv3d: 32 channels, several channel tiles of block 2×4×8", () =>
  checkHalfConv([1, 32, 4, 4, 8], 20, {
    relu: true,
    seed: 9,
    tiles: { cg: 2, vz: 4, vx: 8, wg: 64 },
  }));

Deno.test("f16 conv3d: runs the kernel cannot take in binary16 stay exact f32", async () => {
  await initGpu();
  const rng = new Random(3);
  // W % 8 != 0, and a 1×1×1 kernel.
  const runs: [number[], number, number][] = [
    [[1, 4, 5, 6, 12], 8, 3],
    [[1, 4, 4, 4, 8], 8, 1],
  ];
  for (const [xShape, co, k] of runs) {
    const size = xShape.reduce((a, b) => a * b, 1);
    const x = fromArray(xShape, normal(size, rng));
    const w = fromArray([co, xShape[1], k, k, k], normal(co * xShape[1] * k ** 3, rng));
    const [a, b] = await readTensors([
      withPrecision("f16", () => ops.conv3d(x, w, null)),
      ops.conv3d(x, w, null),
    ]);
    deepStrictEqual(a, b, `x [${xShape}] co ${co} k ${k}`);
    x.dispose();
    w.dispose();
  }
  ok(!halfEligible({ k: 3, mode: 0, grid: [4, 4, 12] }));
  ok(!halfEligible({ k: 1, mode: 0, grid: [4, 4, 16] }));
  ok(halfEligible({ k: 3, mode: 0, grid: [4, 4, 16] }));
});

Deno.test("f16 conv3d: one channel group (Co ≤ 4), within the binary16 bound", () =>
  checkHalfConv([2, 5, 5, 6, 16], 3, { relu: true, seed: 12 }));

Deno.test("f16 conv3d: the GPU block (CG 1, VZ 1, VX 4, WG 128) forced on this adapter", async () => {
  // W 24: the second 4-voxel half of a vec4<u32>, and a partial 8-voxel word at the end.
  await checkHalfConv([1, 6, 5, 7, 24], 10, { relu: true, seed: 13, tiles: CONV_TILES.gpu[3] });
});

Deno.test("packHalf rounds to nearest binary16 and clamps to ±65504", async () => {
  await initGpu();
  const t = fromArray([8], [1, -2, 0.1, 1e5, -1e6, 2 ** -24, 65519, 1 / 3]);
  const packed = packHalf(t);
  const words = await readInt(packed);
  t.dispose();
  packed.dispose();
  const halves = new Float16Array(new Uint32Array(words).buffer);
  deepStrictEqual(
    [...halves],
    [1, -2, 0.0999755859375, 65504, -65504, 2 ** -24, 65504, 0.333251953125],
  );
  throws(() => packHalf(new Tensor([6])), /multiple of 4/);
});

Deno.test("withPrecision nests, restores after a throw, and rejects unknown precisions", () => {
  deepStrictEqual(precision(), "f32");
  withPrecision("f16", () => {
    deepStrictEqual(precision(), "f16");
    withPrecision("f32", () => deepStrictEqual(precision(), "f32"));
    deepStrictEqual(precision(), "f16");
  });
  throws(() =>
    withPrecision("f16", () => {
      throw new Error("boom");
    }), /boom/);
  deepStrictEqual(precision(), "f32");
  // @ts-expect-error: not a precision
  throws(() => withPrecision("bf16", () => 0), /precision must be one of f32, f16/);
  throws(() => withPrecision("f16", async () => {}), /synchronous/);
  deepStrictEqual(precision(), "f32");
});

Deno.test("f16 U-Net forward: probabilities within 1e-2 of f32, labels agree", async () => {
  await initGpu();
  const model = new UNet3D({ baseChannels: 8, depth: 2, classes: 3 }, 5);
  const rng = new Random(11);
  const shape = [1, 1, 16, 16, 24];
  const x = fromArray(shape, normal(16 * 16 * 24, rng));
  const probs = (p: "f32" | "f16") => withPrecision(p, () => model.forward(x, { training: false }));
  const [l32, l16] = await readTensors([probs("f32"), probs("f16")]);
  x.dispose();
  model.dispose();
  const v = 16 * 16 * 24;
  let worst = 0, agree = 0, differs = 0;
  for (let i = 0; i < v; i++) {
    const soft = (l: Float32Array) => {
      const e = [0, 1, 2].map((c) => Math.exp(l[c * v + i]));
      const s = e[0] + e[1] + e[2];
      return e.map((a) => a / s);
    };
    const [a, b] = [soft(l32), soft(l16)];
    worst = Math.max(worst, ...a.map((p, c) => Math.abs(p - b[c])));
    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) agree++;
    if (l32[i] !== l16[i]) differs++;
  }
  ok(differs > v / 2, "the binary16 path did not run");
  ok(worst < 1e-2, `probabilities differ by up to ${worst}`);
  ok(agree / v >= 0.99, `labels agree on ${(100 * agree / v).toFixed(2)} % of voxels`);
});

Deno.test("predictVolume with precision f16 runs the binary16 convolutions", async () => {
  await initGpu();
  const model = new UNet3D({ baseChannels: 8, depth: 2, classes: 3 }, 2);
  const loaded = {
    model,
    meta: {
      model: model.config,
      classNames: ["background", "lung", "infection"],
      normalisation: { kind: "ct-window" as const, lo: -1000, hi: 400 },
      patchSize: [16, 16, 16] as [number, number, number],
      spacingMm: SPACING,
      training: { epoch: 0, step: 0, monitor: "dice" as const, bestMetric: null, metrics: {} },
    },
    dispose: () => model.dispose(),
  };
  const volume = ctVolume([12, 20, 24]);
  const kernelsOf = async (precision: "f32" | "f16") => {
    recorder().startProfile();
    const { labels } = await predictVolume(loaded, volume, { precision });
    const kernels = (await recorder().stopProfile()).map((k) => k.kernel);
    return { labels: labels.data, kernels };
  };
  const a = await kernelsOf("f32");
  const b = await kernelsOf("f16");
  loaded.dispose();
  ok(!a.kernels.some((k) => k.includes("F16=1")), "f32 ran binary16 kernels");
  ok(b.kernels.some((k) => k.startsWith("conv3d[") && k.includes("F16=1")), "no binary16 conv");
  let agree = 0;
  for (let i = 0; i < a.labels.length; i++) agree += a.labels[i] === b.labels[i] ? 1 : 0;
  ok(agree / a.labels.length >= 0.99, `labels agree on ${agree} of ${a.labels.length}`);
});
