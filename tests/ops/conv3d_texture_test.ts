/**
 * conv3d.wgsl and conv3d_wgrad.wgsl reading their inputs (and conv3d.wgsl its packed weights)
 * from texel textures (src/gpu/texture.ts; tuning.ts `inputBinding`, `weightBinding`), forced
 * whatever the adapter would choose: against the float64 reference and finite differences
 * (forward, input, weight and bias gradients), and against the storage path, which must give
 * the very same sums.
 */

import { deepStrictEqual, ok } from "node:assert";
import { conv3d, conv3dAct } from "../../src/autograd/mod.ts";
import * as ops from "../../src/ops/conv3d.ts";
import { fromArray, initGpu, readTensors, scope, type Tensor } from "../../src/gpu/mod.ts";
import { TEXEL_ROW } from "../../src/gpu/texture.ts";
import { Random } from "../../src/base/random.ts";
import { CONV_TILES, type WeightBinding, WGRAD_TILES } from "../../src/ops/tuning.ts";
import { checkOp, type OpCase } from "./check_op.ts";
import { conv3dRef } from "./conv3d_ref.ts";
import { withForcedTiles, withInputBinding, withWeightBinding } from "./forced_tiles.ts";
import type { FusedActivation } from "../../src/ops/elementwise.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** The software adapter's built-in K = 3 blocks (tuning.ts), whatever the adapter. */
const SOFTWARE_TILES = {
  conv3: { ...CONV_TILES.software[3] },
  wgrad3: { ...WGRAD_TILES.software[3] },
};

interface Case {
  x: number[];
  co: number;
  bias: boolean;
  act?: FusedActivation;
  weights: WeightBinding;
  path: string;
}

/** The op through autograd, checked with inputs (and, where they fit, weights) as texels. */
function textureCase(c: Case): void {
  const ci = c.x[1];
  const w = [c.co, ci, 3, 3, 3];
  const conv = conv3dRef(c.x, c.co, 3, c.bias);
  const slope = c.act?.param ?? 0.1;
  const act = c.act?.kind === "elu"
    ? (v: number) => (v > 0 ? v : (c.act?.param ?? 1) * Math.expm1(v))
    : c.act?.kind === "leaky_relu"
    ? (v: number) => (v > 0 ? v : slope * v)
    : (v: number) => v;
  const op: OpCase = {
    name: `conv3d k3 ${c.bias ? "bias" : "no bias"}${c.act ? ` ${c.act.kind}` : ""} x [${c.x}] ` +
      `w [${w}], input texels, weights ${c.weights} (${c.path})`,
    inputs: [{ shape: c.x }, { shape: w }, ...(c.bias ? [{ shape: [c.co] }] : [])],
    run: ([x, wt, b]) => c.act ? conv3dAct(x, wt, b ?? null, c.act) : conv3d(x, wt, b ?? null),
    reference: (xs) => conv(xs).map(act),
    fdSamples: 16,
  };
  Deno.test({
    name: op.name,
    fn: () =>
      withForcedTiles(
        SOFTWARE_TILES,
        () => withInputBinding("texture", () => withWeightBinding(c.weights, () => checkOp(op))),
      ),
    ...opts,
  });
}

// W 12 (VX = 8: the second x block half outside), N 2, Ci 3 and Co 5 (partial channel
// groups), D and H small (partial z and y blocks), a fused ELU (α = 1: smooth, where ReLU's
// kink would upset the finite differences of the bias gradient); packed weights in a uniform
// binding, as the software adapter reads them where they fit.
textureCase({
  x: [2, 3, 5, 7, 12],
  co: 5,
  bias: true,
  act: { kind: "elu", param: 1 },
  weights: "uniform",
  path: "odd shapes, partial tiles",
});
// The same without bias or activation, with the weights in storage and as texels.
textureCase({
  x: [2, 3, 5, 7, 12],
  co: 5,
  bias: false,
  weights: "storage",
  path: "odd shapes, partial tiles",
});
textureCase({
  x: [1, 6, 3, 5, 20],
  co: 7,
  bias: true,
  act: { kind: "leaky_relu", param: 0.1 },
  weights: "texture",
  path: "W 20, weights as texels",
});
// More texels than a texture row: x is 6930 texels (2 rows, the last partial), the input
// gradient's gy 8316 (3 rows).
textureCase({
  x: [2, 5, 9, 7, 44],
  co: 6,
  bias: true,
  weights: "uniform",
  path: `x over ${TEXEL_ROW} texels: texture rows and a partial last row`,
});
// W 4: one block of 4 voxels along x (VX = 4), both of its halo values padding.
textureCase({
  x: [1, 3, 4, 3, 4],
  co: 5,
  bias: true,
  weights: "storage",
  path: "W 4: 4 voxels along x",
});
// W 9 cannot be read as texels (rows are not whole vec4s): forced or not, storage serves it.
textureCase({
  x: [1, 3, 4, 5, 9],
  co: 5,
  bias: true,
  weights: "texture",
  path: "W 9: storage rows, weights as texels",
});
// Many channels: 9 output-channel tiles of 4, packed weights (16 524 floats) past a uniform
// binding.
textureCase({
  x: [1, 17, 4, 5, 8],
  co: 36,
  bias: true,
  weights: "texture",
  path: "9 channel tiles, weights as texels",
});

/** Random values of a shape, as f32. */
function values(shape: number[], rng: Random): Float32Array {
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}

Deno.test(
  "conv3d texel inputs give the storage path's exact results: consecutive convolutions of " +
    "several sizes in one command buffer share the textures (forward, input and weight gradient)",
  opts,
  async () => {
    await initGpu();
    const rng = new Random(11);
    // Sizes that grow and shrink, so a texture is replaced by a larger one and reused by a
    // smaller run while earlier recorded dispatches still read it.
    const shapes = [[1, 4, 4, 6, 16], [2, 6, 7, 9, 24], [1, 4, 4, 6, 16], [2, 5, 3, 5, 8]];
    const host = shapes.map((s) => {
      const co = 7;
      return {
        s,
        co,
        x: values(s, rng),
        w: values([co, s[1], 3, 3, 3], rng),
        b: values([co], rng),
        gy: values([s[0], co, ...s.slice(2)], rng),
      };
    });
    const run = async (input: "storage" | "texture", weights: WeightBinding) => {
      // Everything uploaded first: an upload flushes, and the runs below must share one batch.
      const dev = host.map((h) => ({
        x: fromArray(h.s, h.x),
        w: fromArray([h.co, h.s[1], 3, 3, 3], h.w),
        b: fromArray([h.co], h.b),
        gy: fromArray([h.s[0], h.co, ...h.s.slice(2)], h.gy),
      }));
      const out = await withForcedTiles(
        SOFTWARE_TILES,
        () =>
          withInputBinding(
            input,
            () =>
              withWeightBinding(weights, () =>
                scope(() =>
                  dev.flatMap((d): Tensor[] => [
                    ops.conv3d(d.x, d.w, d.b, { kind: "relu" }),
                    ops.conv3dBackwardInput(d.gy, d.w),
                    ops.conv3dBackwardWeight(d.x, d.gy, 3),
                  ])
                )),
          ),
      );
      const read = await readTensors(out);
      for (const t of [...out, ...dev.flatMap((d) => [d.x, d.w, d.b, d.gy])]) t.dispose();
      return read;
    };
    const storage = await run("storage", "storage");
    ok(storage.every((a) => a.some((v) => v !== 0)));
    deepStrictEqual(await run("texture", "storage"), storage);
    deepStrictEqual(await run("texture", "texture"), storage);
  },
);
