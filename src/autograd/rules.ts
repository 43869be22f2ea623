/**
 * The backward rules, one table. Each entry runs its op forward, says what it saves, and maps
 * the output gradient to input gradients. Kernels live in `src/ops/`; this file only wires
 * them. Input order in `apply(name, inputs, attrs)` is the order of the gradients returned.
 */

import type { Tensor } from "../gpu/mod.ts";
import * as ew from "../ops/elementwise.ts";
import { rule } from "./rule.ts";
// <imports:conv>
// </imports:conv>
// <imports:layers>
// </imports:layers>
// <imports:losses>
// </imports:losses>

const t = (v: unknown) => v as Tensor;

export const rules = {
  // ---- elementwise: x, y saved where the derivative needs them --------------------------
  add: rule<Record<never, never>>({
    forward: ([a, b]) => ({ out: ew.add(a!, b!), saved: {} }),
    backward: (
      gy,
      _s,
      _a,
      needs,
    ) => [needs[0] ? ew.scale(gy, 1) : null, needs[1] ? ew.scale(gy, 1) : null],
  }),
  sub: rule<Record<never, never>>({
    forward: ([a, b]) => ({ out: ew.sub(a!, b!), saved: {} }),
    backward: (
      gy,
      _s,
      _a,
      needs,
    ) => [needs[0] ? ew.scale(gy, 1) : null, needs[1] ? ew.scale(gy, -1) : null],
  }),
  mul: rule<Record<never, never>>({
    forward: ([a, b]) => ({ out: ew.mul(a!, b!), saved: { a: a!, b: b! } }),
    backward: (gy, s, _a, needs) => [
      needs[0] ? ew.mul(gy, t(s.b)) : null,
      needs[1] ? ew.mul(gy, t(s.a)) : null,
    ],
  }),
  axpby: rule<{ alpha: number; beta: number }>({
    forward: ([a, b], { alpha, beta }) => ({ out: ew.axpby(alpha, a!, beta, b!), saved: {} }),
    backward: (gy, _s, { alpha, beta }, needs) => [
      needs[0] ? ew.scale(gy, alpha) : null,
      needs[1] ? ew.scale(gy, beta) : null,
    ],
  }),
  scale: rule<{ s: number }>({
    forward: ([x], { s }) => ({ out: ew.scale(x!, s), saved: {} }),
    backward: (gy, _s, { s }) => [ew.scale(gy, s)],
  }),
  relu: rule<Record<never, never>>({
    forward: ([x]) => ({ out: ew.relu(x!), saved: { x: x! } }),
    backward: (gy, s) => [ew.reluBackward(gy, t(s.x))],
  }),
  leakyRelu: rule<{ slope: number }>({
    forward: ([x], { slope }) => ({ out: ew.leakyRelu(x!, slope), saved: { x: x! } }),
    backward: (gy, s, { slope }) => [ew.leakyReluBackward(gy, t(s.x), slope)],
  }),
  elu: rule<{ alpha: number }>({
    forward: ([x], { alpha }) => ({ out: ew.elu(x!, alpha), saved: { x: x! } }),
    backward: (gy, s, { alpha }) => [ew.eluBackward(gy, t(s.x), alpha)],
  }),
  // <rules:conv> conv3d, convTranspose3d
  // </rules:conv>
  // <rules:layers> maxPool3d, concatChannels, softmaxChannels, instanceNorm, batchNorm, flip
  // </rules:layers>
  // <rules:losses> tversky, dice, crossEntropy, sum, mean
  // </rules:losses>
};

export type RuleName = keyof typeof rules;
