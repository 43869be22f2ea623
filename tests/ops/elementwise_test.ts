import { add, axpby, elu, leakyRelu, mul, relu, scale, sub } from "../../src/autograd/mod.ts";
import assert from "node:assert/strict";
import { fromArray, initGpu, readTensors, scope } from "../../src/gpu/mod.ts";
import {
  activationBackwardFromOutput,
  activationBackwardWithBias,
} from "../../src/ops/elementwise.ts";
import { Random } from "../../src/base/random.ts";
import { opTest } from "./check_op.ts";

const shape = [2, 3, 5, 7, 9];
// Keep activation inputs away from the kink at 0 so finite differences are exact.
const awayFromZero = (r: { uniform(a: number, b: number): number; next(): number }) =>
  (r.next() < 0.5 ? -1 : 1) * r.uniform(0.05, 2);

const map = (f: (v: number) => number) => ([x]: Float64Array[]) => x.map(f);
const zip = (f: (a: number, b: number) => number) => ([a, b]: Float64Array[]) =>
  a.map((v, i) => f(v, b[i]));

opTest({
  name: "add [2,3,5,7,9]",
  inputs: [{ shape }, { shape }],
  run: ([a, b]) => add(a, b),
  reference: zip((a, b) => a + b),
});
opTest({
  name: "sub [2,3,5,7,9]",
  inputs: [{ shape }, { shape }],
  run: ([a, b]) => sub(a, b),
  reference: zip((a, b) => a - b),
});
opTest({
  name: "mul [2,3,5,7,9]",
  inputs: [{ shape }, { shape }],
  run: ([a, b]) => mul(a, b),
  reference: zip((a, b) => a * b),
});
opTest({
  name: "axpby 0.3a-1.7b [3,5,7]",
  inputs: [{ shape: [3, 5, 7] }, { shape: [3, 5, 7] }],
  run: ([a, b]) => axpby(0.3, a, -1.7, b),
  reference: zip((a, b) => 0.3 * a - 1.7 * b),
});
opTest({
  name: "scale 2.5 [1,1,4,4,4]",
  inputs: [{ shape: [1, 1, 4, 4, 4] }],
  run: ([x]) => scale(x, 2.5),
  reference: map((v) => 2.5 * v),
});
opTest({
  name: "relu [2,3,5,7,9]",
  inputs: [{ shape, init: awayFromZero }],
  run: ([x]) => relu(x),
  reference: map((v) => Math.max(v, 0)),
});
opTest({
  name: "leakyRelu 0.1 [2,3,5,7,9]",
  inputs: [{ shape, init: awayFromZero }],
  run: ([x]) => leakyRelu(x, 0.1),
  reference: map((v) => (v > 0 ? v : 0.1 * v)),
});
opTest({
  name: "elu 1.0 [2,3,5,7,9]",
  inputs: [{ shape, init: awayFromZero }],
  run: ([x]) => elu(x, 1),
  reference: map((v) => (v > 0 ? v : Math.expm1(v))),
});
opTest({
  name: "relu reused input: relu(x) * x [1,262148] (1025 workgroups)",
  inputs: [{ shape: [1, 65537 * 4], init: awayFromZero }],
  run: ([x]) => mul(relu(x), x),
  reference: map((v) => Math.max(v, 0) * v),
});

// The activation's backward with the bias gradient in the same pass (conv3dAct's backward):
// against the float64 sums of the same g, and g against the plain "from output" op.
for (
  const [kind, shape, param] of [
    ["relu", [2, 3, 5, 7, 9], undefined], // V % 4 != 0: scalar runs
    ["leaky_relu", [1, 5, 4, 6, 16], 0.1], // vec4 runs
    ["elu", [2, 3, 5, 7, 9], 1.3],
    ["relu", [2, 4, 32, 32, 36], undefined], // several slices per channel
  ] as const
) {
  Deno.test({
    name:
      `activationBackwardWithBias ${kind} [${shape}]: g as the plain op, bias = Σ g per channel`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await initGpu();
      const size = shape.reduce((a: number, b: number) => a * b, 1);
      const rng = new Random(7);
      const gyHost = Float32Array.from({ length: size }, () => rng.normal());
      // Forward outputs of the activation: ELU's are > −α.
      const yHost = Float32Array.from({ length: size }, () => {
        const v = (rng.next() < 0.5 ? -1 : 1) * rng.uniform(0.05, 2);
        return kind === "elu" ? Math.max(v, -1.2) : kind === "relu" ? Math.max(v, 0) : v;
      });
      const act = { kind, param };
      const ts = scope(() => {
        const gy = fromArray([...shape], gyHost);
        const y = fromArray([...shape], yHost);
        const { g, bias } = activationBackwardWithBias(gy, y, act);
        return [g, bias, activationBackwardFromOutput(gy, y, act)];
      });
      const [g, bias, plain] = await readTensors(ts);
      for (const t of ts) t.dispose();
      assert.deepEqual(g, plain);
      const [n, c] = shape;
      const v = size / (n * c);
      for (let k = 0; k < c; k++) {
        let sum = 0, abs = 0;
        for (let s = 0; s < n; s++) {
          for (let i = 0; i < v; i++) {
            sum += g[(s * c + k) * v + i];
            abs += Math.abs(g[(s * c + k) * v + i]);
          }
        }
        assert.ok(Math.abs(bias[k] - sum) <= 1e-6 * abs, `channel ${k}: ${bias[k]} vs ${sum}`);
      }
    },
  });
}
