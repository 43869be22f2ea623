import { throws } from "node:assert";
import { softmaxChannels } from "../../src/autograd/mod.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { opTest } from "./check_op.ts";

/** Float64 softmax over dim 1 of [N, C, …] with `spatial` elements per channel. */
function softmaxRef(n: number, c: number, spatial: number) {
  return ([x]: Float64Array[]) => {
    const y = new Float64Array(x.length);
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < spatial; s++) {
        const at = (k: number) => (i * c + k) * spatial + s;
        let m = -Infinity;
        for (let k = 0; k < c; k++) m = Math.max(m, x[at(k)]);
        let sum = 0;
        for (let k = 0; k < c; k++) sum += Math.exp(x[at(k)] - m);
        for (let k = 0; k < c; k++) y[at(k)] = Math.exp(x[at(k)] - m) / sum;
      }
    }
    return y;
  };
}

for (const shape of [[2, 3, 5, 7, 9], [2, 5, 5, 7, 9], [1, 4, 8, 8, 8], [3, 1, 2, 3, 4]]) {
  const [n, c, ...sp] = shape;
  opTest({
    name: `softmaxChannels [${shape}]`,
    inputs: [{ shape, init: (r) => 3 * r.normal() }],
    run: ([x]) => softmaxChannels(x),
    reference: softmaxRef(n, c, sp.reduce((a, b) => a * b, 1)),
  });
}

Deno.test("softmaxChannels subtracts the max: logits of ±1000 give finite probabilities", async () => {
  await initGpu();
  // Voxel 0: logits (1000, 999); voxel 1: (−1000, −1001). Both softmax to (e/(1+e), 1/(1+e)).
  const y = scope(() => softmaxChannels(fromArray([1, 2, 2], [1000, -1000, 999, -1001])));
  const [v] = await readTensors([y]);
  y.dispose();
  const p = Math.E / (1 + Math.E);
  const want = [p, p, 1 - p, 1 - p];
  if (want.some((w, i) => !(Math.abs(v[i] - w) < 1e-6))) throw new Error(`got ${v}`);
});

Deno.test("softmaxChannels rejects a tensor without a channel axis", async () => {
  await initGpu();
  scope(() => {
    throws(() => softmaxChannels(new Tensor([7])), /x must be \[N, C, …\].*got \[7\]/);
  });
});
