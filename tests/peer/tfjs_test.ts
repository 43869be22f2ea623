/**
 * The TF.js WebGPU peer (bench/peer/tfjs.ts) computes voxseg's network and loss: weight layout
 * conversion, forward logits, the loss with every option, and the loss after one Adam step
 * (which checks the gradients, including the custom one of conv3dTranspose).
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { fromArray, initGpu, readTensors, scope } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { readWeights } from "../../src/nn/weights.ts";
import { referenceBatch, referenceConfig, TrainStepBench } from "../../src/cli/bench/train.ts";
import {
  convSame,
  ncdhwToNdhwc,
  ndhwcToNcdhw,
  tfjsForward,
  tfjsParams,
  TfjsTrainStep,
  upConv,
  useTfjsWebgpu,
  weightToTfjs,
} from "../../bench/peer/tfjs.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

Deno.test("weightToTfjs maps [a, b, kD, kH, kW] to [kD, kH, kW, b, a]", () => {
  const shape = [3, 2, 2, 1, 2];
  const data = Float32Array.from({ length: 24 }, (_, i) => i);
  const t = weightToTfjs({ shape, data });
  assert.deepEqual(t.shape, [2, 1, 2, 2, 3]);
  // Element [a=2, b=1, kd=1, kh=0, kw=1] sits at ((2·2 + 1)·2 + 1)·2 + 1 = 23 in the source
  // and at [kd=1, kh=0, kw=1, b=1, a=2] = (((1·1 + 0)·2 + 1)·2 + 1)·3 + 2 = 23 in the result.
  assert.equal(t.data[23], 23);
  // [a=1, b=0, kd=0, kh=0, kw=1]: source 1·8 + 1 = 9; result ((0·2 + 1)·2 + 0)·3 + 1 = 7.
  assert.equal(t.data[7], 9);
  assert.throws(() => weightToTfjs({ shape: [3, 8], data: new Float32Array(24) }), /5-D/);
});

Deno.test("ncdhwToNdhwc and ndhwcToNcdhw are inverse and move channels last", () => {
  const shape = [2, 3, 1, 2, 2];
  const data = Float32Array.from({ length: 24 }, (_, i) => i);
  const last = ncdhwToNdhwc(data, shape);
  // [n=1, c=2, v=3] is 1·12 + 2·4 + 3 = 23 channels-first, (1·4 + 3)·3 + 2 = 23 channels-last;
  // [n=0, c=1, v=0] is 4 channels-first, 1 channels-last.
  assert.equal(last[23], 23);
  assert.equal(last[1], 4);
  assert.deepEqual(ndhwcToNcdhw(last, shape), data);
});

/** The tests' network and batch: small, not cubic, batch 2; one set of compiled pipelines. */
const smallConfig = (overrides: Record<string, string> = {}) =>
  referenceConfig({
    "model.baseChannels": "4",
    "model.depth": "3",
    "data.patchSize": "8,8,12",
    "data.batchSize": "2",
    ...overrides,
  });

Deno.test(
  "TF.js forward of voxseg's U-Net (base 4, depth 3, 2×1×8×8×12) matches voxseg",
  opts,
  async () => {
    await initGpu();
    const reason = await useTfjsWebgpu();
    assert.equal(reason, undefined, reason);
    const config = smallConfig();
    const bench = new TrainStepBench(config, 3);
    const shape = [2, 1, 8, 8, 12];
    const { image } = referenceBatch(config);
    const x = fromArray(shape, image);
    const y = scope(() => bench.model.forward(x, { training: false }));
    const [ours] = await readTensors([y]);
    const params = tfjsParams(await readWeights(bench.model));
    const theirs = tf.tidy(() =>
      tfjsForward(params, tf.tensor5d(ncdhwToNdhwc(image, shape), [2, 8, 8, 12, 1]), config.model)
    );
    const got = ndhwcToNcdhw(await theirs.data() as Float32Array, [2, 3, 8, 8, 12]);
    assert.ok(maxRelDiff(got, ours) < 1e-5, `max relative difference ${maxRelDiff(got, ours)}`);
    theirs.dispose();
    for (const v of params.values()) v.dispose();
    x.dispose();
    y.dispose();
    bench.dispose();
  },
);

/**
 * Filter gradients summing over more than 65535 voxels per tap: Mesa's software adapter stops
 * a shader invocation's loops after 65535 iterations, which truncated TF.js's own kernel.
 * Host reference: df[k, i, o] = Σ_v x[v + k − pad, i] · dy[v, o].
 */
Deno.test("TF.js peer filter gradients over 48×40×40 voxels match a host sum", opts, async () => {
  assert.equal(await useTfjsWebgpu(), undefined);
  const [D, H, W] = [48, 40, 40];
  const rng = new Random(9);
  const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  const x = normal(D * H * W), dy = normal(D * H * W * 2);
  const at = (z: number, y: number, w: number) =>
    z < 0 || y < 0 || w < 0 || z >= D || y >= H || w >= W ? -1 : (z * H + y) * W + w;
  // conv3d 1 → 2 channels, 3×3×3, "same": df [3, 3, 3, 1, 2].
  const want = new Float64Array(27 * 2);
  for (let z = 0, v = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let w = 0; w < W; w++, v++) {
        for (let k = 0; k < 27; k++) {
          const u = at(z + Math.floor(k / 9) - 1, y + (Math.floor(k / 3) % 3) - 1, w + (k % 3) - 1);
          if (u < 0) continue;
          for (let o = 0; o < 2; o++) want[k * 2 + o] += x[u] * dy[v * 2 + o];
        }
      }
    }
  }
  const grad = tf.grad((f: tf.Tensor) =>
    tf.sum(tf.mul(convSame(tf.tensor5d(x, [1, D, H, W, 1]), f), tf.tensor5d(dy, [1, D, H, W, 2])))
  );
  const got = await grad(tf.zeros([3, 3, 3, 1, 2])).data();
  assert.ok(
    maxRelDiff(got, want) < 1e-4,
    `conv3d: max relative difference ${maxRelDiff(got, want)}`,
  );
  // ConvTranspose3d 1 → 1 channel from 48×40×40 to 96×80×80: df[kd, kh, kw] = Σ_v x[v]·dy[2v + k].
  const big = normal(8 * D * H * W);
  const wantUp = new Float64Array(8);
  for (let z = 0, v = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let w = 0; w < W; w++, v++) {
        for (let k = 0; k < 8; k++) {
          const [a, b, c] = [k >> 2, (k >> 1) & 1, k & 1];
          wantUp[k] += x[v] * big[((2 * z + a) * 2 * H + 2 * y + b) * 2 * W + 2 * w + c];
        }
      }
    }
  }
  const gradUp = tf.grad((f: tf.Tensor) =>
    tf.sum(
      tf.mul(
        upConv(tf.tensor5d(x, [1, D, H, W, 1]), f),
        tf.tensor5d(big, [1, 2 * D, 2 * H, 2 * W, 1]),
      ),
    )
  );
  const gotUp = await gradUp(tf.zeros([2, 2, 2, 1, 1])).data();
  assert.ok(
    maxRelDiff(gotUp, wantUp) < 1e-4,
    `up: max relative difference ${maxRelDiff(gotUp, wantUp)}`,
  );
});

for (
  const [label, overrides] of [
    ["default loss", {}],
    ["background, batch Dice, class weights, soft Dice term", {
      "loss.includeBackground": "true",
      "loss.batchDice": "true",
      "loss.classWeights": "0.5,1,2",
      "loss.diceWeight": "0.5",
    }],
  ] as const
) {
  Deno.test(`TF.js step: losses of steps 1 and 2 match voxseg's (${label})`, opts, async () => {
    await initGpu();
    assert.equal(await useTfjsWebgpu(), undefined);
    const config = smallConfig(overrides);
    const bench = new TrainStepBench(config);
    const weights = await readWeights(bench.model);
    await bench.step();
    await bench.step();
    const ours = await bench.losses();
    bench.dispose();
    const peer = new TfjsTrainStep(config, weights, referenceBatch(config));
    const theirs = [(await peer.step()).loss, (await peer.step()).loss];
    peer.dispose();
    // The second loss is after one Adam update, so it checks every gradient.
    for (let i = 0; i < 2; i++) {
      const rel = Math.abs(theirs[i] - ours[i]) / Math.abs(ours[i]);
      assert.ok(rel < 1e-4, `step ${i + 1}: voxseg ${ours[i]}, TF.js ${theirs[i]}`);
    }
    assert.ok(Math.abs(ours[1] - ours[0]) > 1e-3, "the step changed the loss");
  });
}
