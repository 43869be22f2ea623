import { throws } from "node:assert";
import { concatChannels, mul } from "../../src/autograd/mod.ts";
import { sliceChannels } from "../../src/ops/concat.ts";
import { initGpu, scope, Tensor } from "../../src/gpu/mod.ts";
import { opTest } from "./check_op.ts";

/** Float64 concat along dim 1 of [N, C, …] tensors with `spatial` elements per channel. */
function concatRef(n: number, ca: number, cb: number, spatial: number) {
  return ([a, b]: Float64Array[]) => {
    const y = new Float64Array(n * (ca + cb) * spatial);
    for (let i = 0; i < n; i++) {
      y.set(a.subarray(i * ca * spatial, (i + 1) * ca * spatial), i * (ca + cb) * spatial);
      y.set(b.subarray(i * cb * spatial, (i + 1) * cb * spatial), (i * (ca + cb) + ca) * spatial);
    }
    return y;
  };
}

for (const [n, ca, cb, ...sp] of [[2, 3, 5, 5, 7, 9], [1, 4, 4, 8, 8, 8], [3, 1, 2, 3, 5, 7]]) {
  opTest({
    name: `concatChannels [${n},${ca},${sp}] + [${n},${cb},${sp}]`,
    inputs: [{ shape: [n, ca, ...sp] }, { shape: [n, cb, ...sp] }],
    run: ([a, b]) => concatChannels(a, b),
    reference: concatRef(n, ca, cb, sp.reduce((p, q) => p * q, 1)),
  });
}

opTest({
  name: "concatChannels of one tensor with itself [2,3,5,7,9] (gradients add up)",
  inputs: [{ shape: [2, 3, 5, 7, 9] }, { shape: [2, 3, 5, 7, 9] }],
  run: ([a, b]) => concatChannels(mul(a, b), a),
  reference: ([a, b]) => concatRef(2, 3, 3, 315)([a.map((v, i) => v * b[i]), a]),
});

Deno.test("concatChannels and sliceChannels reject mismatched shapes, printing them", async () => {
  await initGpu();
  scope(() => {
    const a = new Tensor([2, 3, 4, 4, 4]);
    throws(
      () => concatChannels(a, new Tensor([1, 3, 4, 4, 4])),
      /except in channels.*\[2, 3, 4, 4, 4\] and \[1, 3, 4, 4, 4\]/,
    );
    throws(
      () => concatChannels(a, new Tensor([2, 5, 4, 4, 5])),
      /\[2, 3, 4, 4, 4\] and \[2, 5, 4, 4, 5\]/,
    );
    throws(() => concatChannels(a, new Tensor([2, 5, 4, 4])), /\[2, 5, 4, 4\]/);
    throws(() => sliceChannels(a, 2, 2), /channels \[2, 4\) are not within x \[2, 3, 4, 4, 4\]/);
  });
});
