/**
 * The backward rules, one table. Each entry runs its op forward, says what it saves, and maps
 * the output gradient to input gradients. Kernels live in `src/ops/`; this file only wires
 * them. Input order in `apply(name, inputs, attrs)` is the order of the gradients returned.
 */

import type { Tensor } from "../gpu/mod.ts";
import * as ew from "../ops/elementwise.ts";
import { rule } from "./rule.ts";
// <imports:conv>
import * as conv from "../ops/conv3d.ts";
import * as convT from "../ops/conv_transpose3d.ts";
// </imports:conv>
// <imports:layers>
import * as pool from "../ops/pool.ts";
import * as concat from "../ops/concat.ts";
import * as softmax from "../ops/softmax.ts";
import * as norm from "../ops/norm.ts";
import * as flipOp from "../ops/flip.ts";
// </imports:layers>
// <imports:losses>
import * as losses from "../ops/losses.ts";
import * as reduce from "../ops/reduce.ts";
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
  // ---- convolutions: inputs [x, w, b]; x and w saved, bias gradient only for a real bias ----
  conv3d: rule<Record<never, never>>({
    forward: ([x, w, b]) => ({ out: conv.conv3d(x!, w!, b), saved: { x: x!, w: w! } }),
    backward: (gy, s, _a, needs) => [
      needs[0] ? conv.conv3dBackwardInput(gy, t(s.w)) : null,
      needs[1] ? conv.conv3dBackwardWeight(t(s.x), gy, t(s.w).shape[2] as 1 | 3) : null,
      needs[2] ? conv.biasGrad(gy) : null,
    ],
  }),
  // Convolution with its activation fused into the kernel: the output is saved instead of the
  // pre-activation, and the activation's gradient is taken from it.
  conv3dAct: rule<{ act: ew.FusedActivation }>({
    forward: ([x, w, b], { act }) => {
      const y = conv.conv3d(x!, w!, b, act);
      return { out: y, saved: { x: x!, w: w!, y } };
    },
    backward: (gy, s, { act }, needs) => {
      const g = ew.activationBackwardFromOutput(gy, t(s.y), act);
      const grads = [
        needs[0] ? conv.conv3dBackwardInput(g, t(s.w)) : null,
        needs[1] ? conv.conv3dBackwardWeight(t(s.x), g, t(s.w).shape[2] as 1 | 3) : null,
        needs[2] ? conv.biasGrad(g) : null,
      ];
      g.dispose();
      return grads;
    },
  }),
  convTranspose3d: rule<Record<never, never>>({
    forward: ([x, w, b]) => ({ out: convT.convTranspose3d(x!, w!, b), saved: { x: x!, w: w! } }),
    backward: (gy, s, _a, needs) => [
      needs[0] ? convT.convTranspose3dBackwardInput(gy, t(s.w)) : null,
      needs[1] ? convT.convTranspose3dBackwardWeight(t(s.x), gy) : null,
      needs[2] ? convT.convTranspose3dBackwardBias(gy) : null,
    ],
  }),
  // </rules:conv>
  // <rules:layers> maxPool3d, concatChannels, softmaxChannels, instanceNorm, batchNorm, flip
  // ---- layers: pooling saves argmax, norms save (mean, invStd), softmax its output -------
  maxPool3d: rule<Record<never, never>>({
    forward: ([x]) => {
      const { y, argmax } = pool.maxPool3d(x!);
      return { out: y, saved: { argmax, inShape: x!.shape } };
    },
    backward: (gy, s) => [
      pool.maxPool3dBackward(gy, t(s.argmax), s.inShape as readonly number[]),
    ],
  }),
  concatChannels: rule<Record<never, never>>({
    forward: ([a, b]) => ({
      out: concat.concatChannels(a!, b!),
      saved: { ca: a!.shape[1], cb: b!.shape[1] },
    }),
    backward: (gy, s, _a, needs) => [
      needs[0] ? concat.sliceChannels(gy, 0, s.ca as number) : null,
      needs[1] ? concat.sliceChannels(gy, s.ca as number, s.cb as number) : null,
    ],
  }),
  softmaxChannels: rule<Record<never, never>>({
    forward: ([x]) => {
      const y = softmax.softmaxChannels(x!);
      return { out: y, saved: { y } };
    },
    backward: (gy, s) => [softmax.softmaxChannelsBackward(gy, t(s.y))],
  }),
  instanceNorm: rule<{ eps: number }>({
    forward: ([x, gamma, beta], { eps }) => {
      const { y, stats } = norm.instanceNorm(x!, gamma, beta, eps);
      return { out: y, saved: { x: x!, gamma: gamma ?? undefined, stats } };
    },
    backward: (gy, s, _a, needs) => {
      const gamma = (s.gamma as Tensor | undefined) ?? null;
      return norm.normBackward(gy, t(s.x), gamma, t(s.stats), "instance", true, needs);
    },
  }),
  batchNorm: rule<norm.BatchNormOptions & { training: boolean }>({
    forward: ([x, gamma, beta], opts) => {
      const { y, stats } = norm.batchNorm(x!, gamma, beta, opts);
      return { out: y, saved: { x: x!, gamma: gamma ?? undefined, stats } };
    },
    backward: (gy, s, { training }, needs) => {
      const gamma = (s.gamma as Tensor | undefined) ?? null;
      return norm.normBackward(gy, t(s.x), gamma, t(s.stats), "batch", training, needs);
    },
  }),
  flip: rule<{ axes: readonly number[] }>({
    forward: ([x], { axes }) => ({ out: flipOp.flip(x!, axes), saved: {} }),
    backward: (gy, _s, { axes }) => [flipOp.flip(gy, axes)],
  }),
  // </rules:layers>
  // <rules:losses> tversky, dice, crossEntropy, sum, mean
  // ---- reductions and losses: output [1]; labels (input 1) get no gradient ----------------
  sum: rule<Record<never, never>>({
    forward: ([x]) => ({ out: reduce.sum(x!), saved: { shape: x!.shape } }),
    backward: (gy, s) => [reduce.broadcastScalar(gy, s.shape as readonly number[], 1)],
  }),
  mean: rule<Record<never, never>>({
    forward: ([x]) => ({ out: reduce.mean(x!), saved: { shape: x!.shape, n: x!.size } }),
    backward: (gy, s) => [
      reduce.broadcastScalar(gy, s.shape as readonly number[], 1 / (s.n as number)),
    ],
  }),
  // Dice is tversky with alpha = beta = 0.5 (see functional.ts).
  tversky: rule<losses.TverskyOptions>({
    forward: ([p, labels], o) => {
      const { loss, coef } = losses.tverskyForward(p!, labels!, o);
      return { out: loss, saved: { coef, labels: labels!, shape: p!.shape } };
    },
    backward: (gy, s, _o, needs) => [
      needs[0]
        ? losses.tverskyBackward(gy, t(s.coef), t(s.labels), s.shape as readonly number[])
        : null,
      null,
    ],
  }),
  crossEntropy: rule<losses.CrossEntropyOptions>({
    forward: ([x, labels], o) => {
      const { loss, stats } = losses.crossEntropyForward(x!, labels!, o);
      return { out: loss, saved: { x: x!, labels: labels!, stats } };
    },
    backward: (gy, s, o, needs) => [
      needs[0] ? losses.crossEntropyBackward(gy, t(s.x), t(s.labels), t(s.stats), o) : null,
      null,
    ],
  }),
  // </rules:losses>
};

export type RuleName = keyof typeof rules;
