import { add, axpby, elu, leakyRelu, mul, relu, scale, sub } from "../../src/autograd/mod.ts";
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
