/**
 * Proofs for the slab-wise sliding window (tiny random U-Net, base 4, depth 2, patch 16³): one
 * window equals a single pass; padding equals a single pass on the padded input; slab-wise
 * blending equals a plain whole-volume Gaussian blend; test-time flips make the prediction
 * flip-equivariant; batch size does not change the result.
 */

import assert from "node:assert/strict";
import { softmaxChannels } from "../../src/autograd/functional.ts";
import { fromArray, initGpu, readTensors, scope } from "../../src/gpu/mod.ts";
import { gaussianImportance, windowStarts } from "../../src/infer/gaussian.ts";
import {
  flipSets,
  type Predictor,
  slidingWindow,
  slidingWindowLabels,
} from "../../src/infer/sliding_window.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { blobVolume, flipVolume, opts } from "./infer_fixture.ts";

const PATCH: Shape3 = [16, 16, 16];
const C = 3;

let net: UNet3D | undefined;
async function predictor(): Promise<Predictor> {
  await initGpu();
  net ??= new UNet3D({ baseChannels: 4, depth: 2, classes: C }, 3);
  return (x) => net!.forward(x, { training: false });
}

/** softmax(net(x)) for one [d, h, w] input, on the host. */
async function singlePass(predict: Predictor, data: Float32Array, shape: Shape3) {
  const p = scope(() => softmaxChannels(predict(fromArray([1, 1, ...shape], data))));
  const [host] = await readTensors([p]);
  p.dispose();
  return host;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * The textbook blend: every window predicted on its own, accumulated into full-volume
 * float64 sums of p·w and w, divided at the end.
 */
async function wholeVolumeBlend(
  predict: Predictor,
  image: Float32Array,
  shape: Shape3,
  overlap: number,
  padValue: number,
): Promise<Float64Array> {
  const [D, H, W] = shape;
  const [pd, ph, pw] = PATCH;
  const P = [Math.max(D, pd), Math.max(H, ph), Math.max(W, pw)];
  const n = P[0] * P[1] * P[2];
  const acc = new Float64Array(C * n), wsum = new Float64Array(n);
  const weights = gaussianImportance(PATCH);
  for (const z0 of windowStarts(P[0], pd, overlap)) {
    for (const y0 of windowStarts(P[1], ph, overlap)) {
      for (const x0 of windowStarts(P[2], pw, overlap)) {
        const patch = new Float32Array(pd * ph * pw);
        for (let z = 0, i = 0; z < pd; z++) {
          for (let y = 0; y < ph; y++) {
            for (let x = 0; x < pw; x++, i++) {
              const [a, b, c] = [z0 + z, y0 + y, x0 + x];
              patch[i] = a < D && b < H && c < W ? image[(a * H + b) * W + c] : padValue;
            }
          }
        }
        const p = await singlePass(predict, patch, PATCH);
        for (let z = 0, i = 0; z < pd; z++) {
          for (let y = 0; y < ph; y++) {
            for (let x = 0; x < pw; x++, i++) {
              const v = ((z0 + z) * P[1] + y0 + y) * P[2] + x0 + x;
              wsum[v] += weights[i];
              for (let c = 0; c < C; c++) acc[c * n + v] += p[c * pd * ph * pw + i] * weights[i];
            }
          }
        }
      }
    }
  }
  const out = new Float64Array(C * D * H * W);
  for (let c = 0; c < C; c++) {
    for (let z = 0, o = 0; z < D; z++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++, o++) {
          const v = (z * P[1] + y) * P[2] + x;
          out[c * D * H * W + o] = acc[c * n + v] / wsum[v];
        }
      }
    }
  }
  return out;
}

Deno.test("slidingWindow on a 16³ volume (one 16³ window) equals a single pass", opts, async () => {
  const predict = await predictor();
  const { data } = blobVolume(PATCH, 1);
  const image = data as Float32Array;
  const probs = await slidingWindow(predict, image, PATCH, C, { patchSize: PATCH });
  const single = await singlePass(predict, image, PATCH);
  assert.ok(maxAbsDiff(probs, single) < 1e-6, `max diff ${maxAbsDiff(probs, single)}`);
});

Deno.test("slidingWindow pads a 9×16×5 volume to the 16³ patch and crops back", opts, async () => {
  const predict = await predictor();
  const shape: Shape3 = [9, 16, 5];
  const image = blobVolume(shape, 2).data as Float32Array;
  const pad = -1.25;
  const probs = await slidingWindow(predict, image, shape, C, { patchSize: PATCH, padValue: pad });
  const padded = new Float32Array(16 * 16 * 16).fill(pad);
  for (let z = 0; z < 9; z++) {
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 5; x++) padded[(z * 16 + y) * 16 + x] = image[(z * 16 + y) * 5 + x];
    }
  }
  const single = await singlePass(predict, padded, PATCH);
  const cropped = new Float32Array(C * 9 * 16 * 5);
  for (let c = 0, o = 0; c < C; c++) {
    for (let z = 0; z < 9; z++) {
      for (let y = 0; y < 16; y++) {
        for (let x = 0; x < 5; x++, o++) cropped[o] = single[((c * 16 + z) * 16 + y) * 16 + x];
      }
    }
  }
  assert.ok(maxAbsDiff(probs, cropped) < 1e-6, `max diff ${maxAbsDiff(probs, cropped)}`);
});

Deno.test(
  "slab-wise sliding window (37×20×23, 4 z-rows, batches of 1 and 3) equals a whole-volume blend",
  opts,
  async () => {
    const predict = await predictor();
    const shape: Shape3 = [37, 20, 23];
    const image = blobVolume(shape, 3).data as Float32Array;
    const want = await wholeVolumeBlend(predict, image, shape, 0.5, -2);
    for (const batchSize of [1, 3]) {
      const slabs: number[] = [];
      const got = await slidingWindow(predict, image, shape, C, {
        patchSize: PATCH,
        overlap: 0.5,
        batchSize,
        padValue: -2,
        onProgress: (done) => slabs.push(done),
      });
      assert.ok(
        maxAbsDiff(got, want) < 1e-5,
        `batch ${batchSize}: max diff ${maxAbsDiff(got, want)}`,
      );
      assert.equal(slabs.at(-1), 16, "4 z-rows × 2 × 2 windows");
      const labels = await slidingWindowLabels(predict, image, shape, C, {
        patchSize: PATCH,
        batchSize,
        padValue: -2,
      });
      // Arg-max agrees wherever the top two classes are not within float32 rounding.
      const v = labels.length;
      let compared = 0;
      for (let i = 0; i < v; i++) {
        const p = [0, 1, 2].map((c) => want[c * v + i]);
        const sorted = [...p].sort((a, b) => b - a);
        if (sorted[0] - sorted[1] < 1e-5) continue;
        compared++;
        assert.equal(labels[i], p.indexOf(sorted[0]), `voxel ${i}: ${p}`);
      }
      assert.ok(compared > 0.9 * v, `only ${compared} of ${v} voxels without a near-tie`);
    }
  },
);

Deno.test("test-time flips make the prediction flip-equivariant (16×24×24)", opts, async () => {
  const predict = await predictor();
  // Window grids 1 × 2 × 2, symmetric under flipping, so only the network can break symmetry.
  const shape: Shape3 = [16, 24, 24];
  const image = blobVolume(shape, 4).data as Float32Array;
  const flipProbs = (p: Float32Array, axis: 0 | 1 | 2) => {
    const v = shape[0] * shape[1] * shape[2];
    const out = new Float32Array(p.length);
    for (let c = 0; c < C; c++) {
      out.set(
        flipVolume(p.subarray(c * v, (c + 1) * v), shape, axis, (n) => new Float32Array(n)),
        c * v,
      );
    }
    return out;
  };
  const run = (img: Float32Array, flips: number[][]) =>
    slidingWindow(predict, img, shape, C, { patchSize: PATCH, flips, batchSize: 2 });
  for (const [axis, flips] of [[2, flipSets([2])], [1, flipSets([0, 1, 2])]] as const) {
    const flippedInput = flipVolume(image, shape, axis, (n) => new Float32Array(n));
    const withTta = maxAbsDiff(
      await run(flippedInput, flips),
      flipProbs(await run(image, flips), axis),
    );
    assert.ok(withTta < 1e-5, `axis ${axis} with flips ${JSON.stringify(flips)}: ${withTta}`);
    // Without the flips a random network is far from equivariant: the check above is not vacuous.
    const without = maxAbsDiff(await run(flippedInput, []), flipProbs(await run(image, []), axis));
    assert.ok(without > 1e-3, `axis ${axis} without flips: ${without}`);
  }
});

Deno.test("flipSets lists every non-empty combination of the axes", () => {
  assert.deepEqual(flipSets([2]), [[2]]);
  assert.deepEqual(flipSets([2, 0]), [[0], [2], [0, 2]]);
  assert.equal(flipSets([0, 1, 2]).length, 7);
  assert.throws(() => flipSets([3]), /flip axis must be 0, 1 or 2/);
});

Deno.test("an aborted sliding window stops with the signal's reason", opts, async () => {
  const predict = await predictor();
  const shape: Shape3 = [32, 16, 16];
  const image = blobVolume(shape, 5).data as Float32Array;
  const controller = new AbortController();
  await assert.rejects(
    slidingWindow(predict, image, shape, C, {
      patchSize: PATCH,
      signal: controller.signal,
      onProgress: () => controller.abort(new Error("stop now")),
    }),
    /stop now/,
  );
});
