import assert from "node:assert/strict";
import { mean, mul, scale, sum } from "../../src/autograd/mod.ts";
import { fromArray, initGpu, readTensors, scope, type Tensor } from "../../src/gpu/mod.ts";
import * as reduce from "../../src/ops/reduce.ts";
import { Random } from "../../src/base/random.ts";
import { opTest, relError } from "./check_op.ts";

const shape = [2, 3, 5, 7, 9];
const total = (x: Float64Array) => x.reduce((a, b) => a + b, 0);

opTest({
  name: "sum [2,3,5,7,9] → [1] (one pass)",
  inputs: [{ shape }],
  run: ([x]) => sum(x),
  reference: ([x]) => Float64Array.of(total(x)),
});
opTest({
  name: "mean [2,3,5,7,9] → [1]",
  inputs: [{ shape }],
  run: ([x]) => mean(x),
  reference: ([x]) => Float64Array.of(total(x) / x.length),
});
opTest({
  name: "sum of x·x then ×0.5 [1,5000] (two passes, chained rules)",
  inputs: [{ shape: [1, 5000] }],
  run: ([x]) => scale(sum(mul(x, x)), 0.5),
  reference: ([x]) => Float64Array.of(0.5 * x.reduce((a, v) => a + v * v, 0)),
});
opTest({
  name: "mean [3,1031] (odd size, 4 partial tiles)",
  inputs: [{ shape: [3, 1031], init: "uniform" }],
  run: ([x]) => mean(x),
  reference: ([x]) => Float64Array.of(total(x) / x.length),
});

function draw(n: number, seed: number, f: (r: Random) => number): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => f(r));
}

/** Runs reductions on uploaded data and reads all results at once. */
async function onGpu(
  data: Float32Array[],
  fn: (xs: Tensor[]) => Tensor[],
): Promise<Float32Array[]> {
  await initGpu();
  const out = scope(() => fn(data.map((d) => fromArray([d.length], d))));
  const host = await readTensors(out);
  out.forEach((t) => t.dispose());
  return host;
}

Deno.test({
  name: "sum of 1e6 values (two passes) matches float64 and is bit-reproducible",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const positive = draw(1e6, 5, (r) => r.uniform(0, 1));
    const signed = draw(1e6, 6, (r) => r.normal());
    const [a, b, c, d] = await onGpu(
      [positive, signed],
      ([p, s]) => [reduce.sum(p), reduce.sum(s), reduce.sum(p), reduce.sum(s)],
    );
    const ref = total(Float64Array.from(positive));
    assert.ok(relError(a, [ref]) < 1e-6, `sum ${a[0]} vs float64 ${ref}`);
    // Signed values cancel; measure the error against Σ|x|, the scale of rounding errors.
    const refSigned = total(Float64Array.from(signed));
    const absSum = signed.reduce((s, v) => s + Math.abs(v), 0);
    assert.ok(
      Math.abs(b[0] - refSigned) / absSum < 1e-6,
      `signed sum ${b[0]} vs float64 ${refSigned}`,
    );
    assert.deepEqual(new Uint32Array(a.buffer), new Uint32Array(c.buffer));
    assert.deepEqual(new Uint32Array(b.buffer), new Uint32Array(d.buffer));
  },
});

Deno.test({
  name: "sumSquares and mean of 1.2e6 values (three passes) and repeated runs agree bitwise",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const x = draw(1_200_001, 7, (r) => r.normal());
    const runs = await onGpu([x], ([t]) => [
      reduce.sumSquares(t),
      reduce.mean(t),
      reduce.sumSquares(t),
      reduce.mean(t),
    ]);
    const x64 = Float64Array.from(x);
    const ss = x64.reduce((a, v) => a + v * v, 0);
    assert.ok(relError(runs[0], [ss]) < 1e-6, `sumSquares ${runs[0][0]} vs ${ss}`);
    const absMean = x64.reduce((a, v) => a + Math.abs(v), 0) / x.length;
    assert.ok(Math.abs(runs[1][0] - total(x64) / x.length) / absMean < 1e-6);
    assert.equal(runs[0][0], runs[2][0]);
    assert.equal(runs[1][0], runs[3][0]);
  },
});

Deno.test({
  name: "sumSquaresAll over tensors of sizes 1, 1023, 1025, 70000 and an empty one",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const sizes = [1, 1023, 1025, 70000];
    const data = sizes.map((n, i) => draw(n, 10 + i, (r) => r.normal()));
    const [got] = await onGpu(data, (xs) => {
      const empty = fromArray([0], []);
      return [reduce.sumSquaresAll([...xs.slice(0, 2), empty, ...xs.slice(2)])];
    });
    const want = data.reduce((a, d) => a + d.reduce((s, v) => s + v * v, 0), 0);
    assert.ok(relError(got, [want]) < 1e-6, `${got[0]} vs ${want}`);
  },
});

Deno.test({
  name: "reduceRows [6, 2500] → [6] per row; bad row count is rejected",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const x = draw(6 * 2500, 3, (r) => r.uniform(-1, 1));
    const [got] = await onGpu([x], ([t]) => [reduce.reduceRows(t, 6, { scale: 2 })]);
    const want = Array.from(
      { length: 6 },
      (_, r) => 2 * total(Float64Array.from(x.subarray(r * 2500, (r + 1) * 2500))),
    );
    assert.ok(relError(got, want) < 1e-5, `${got} vs ${want}`);
    await onGpu([x], ([t]) => {
      assert.throws(() => reduce.reduceRows(t, 7), /do not split into 7 rows/);
      return [];
    });
  },
});
