/**
 * The backward rules, one table. Each entry names its inputs, attributes and what it saves
 * (`rule<Inputs, Attrs, Saved>`), runs its op forward and maps the output gradient to input
 * gradients. Kernels live in `src/ops/`; this file only wires them. Input order in
 * `apply(name, inputs, attrs)` is the order of the gradients returned.
 */

import type { Tensor } from "../gpu/mod.ts";
import * as ops from "../ops/mod.ts";
import { type None, rule } from "./rule.ts";

type Unary = [x: Tensor];
type Binary = [a: Tensor, b: Tensor];
/** Convolution inputs: the bias is optional. */
type Conv = [x: Tensor, w: Tensor, b: Tensor | null];
/** Norm inputs: no scale or no shift when gamma or beta is null. */
type Norm = [x: Tensor, gamma: Tensor | null, beta: Tensor | null];
/** Loss inputs: u32 labels get no gradient. */
type Loss = [pred: Tensor, labels: Tensor];

/** What a convolution keeps: its input and weight. */
interface ConvSaved {
  x: Tensor;
  w: Tensor;
}
/** What a norm keeps: its input, scale and per-group (mean, invStd). */
interface NormSaved {
  x: Tensor;
  gamma: Tensor | null;
  stats: Tensor;
}

/** The side k of a convolution weight [Co,Ci,k,k,k] (forward accepted only 1 and 3). */
function kernelSize(w: Tensor): 1 | 3 {
  const k = w.shape[2];
  if (k !== 1 && k !== 3) throw new Error(`conv3d backward: kernel size must be 1 or 3, got ${k}`);
  return k;
}

/** The kernel sizes (kd, kh, kw) of a weight [·, ·, kd, kh, kw]. */
function kernelZyx(w: Tensor): ops.Zyx {
  return [w.shape[2], w.shape[3], w.shape[4]];
}

export const rules = {
  // ---- elementwise: x, y saved where the derivative needs them --------------------------
  add: rule<Binary, None, None>({
    forward: ([a, b]) => ({ out: ops.add(a, b), saved: {} }),
    backward: (
      gy,
      _s,
      _a,
      needs,
    ) => [needs[0] ? ops.scale(gy, 1) : null, needs[1] ? ops.scale(gy, 1) : null],
  }),
  sub: rule<Binary, None, None>({
    forward: ([a, b]) => ({ out: ops.sub(a, b), saved: {} }),
    backward: (
      gy,
      _s,
      _a,
      needs,
    ) => [needs[0] ? ops.scale(gy, 1) : null, needs[1] ? ops.scale(gy, -1) : null],
  }),
  mul: rule<Binary, None, { a: Tensor; b: Tensor }>({
    forward: ([a, b]) => ({ out: ops.mul(a, b), saved: { a, b } }),
    backward: (gy, { a, b }, _a, needs) => [
      needs[0] ? ops.mul(gy, b) : null,
      needs[1] ? ops.mul(gy, a) : null,
    ],
  }),
  axpby: rule<Binary, { alpha: number; beta: number }, None>({
    forward: ([a, b], { alpha, beta }) => ({ out: ops.axpby(alpha, a, beta, b), saved: {} }),
    backward: (gy, _s, { alpha, beta }, needs) => [
      needs[0] ? ops.scale(gy, alpha) : null,
      needs[1] ? ops.scale(gy, beta) : null,
    ],
  }),
  scale: rule<Unary, { s: number }, None>({
    forward: ([x], { s }) => ({ out: ops.scale(x, s), saved: {} }),
    backward: (gy, _s, { s }) => [ops.scale(gy, s)],
  }),
  relu: rule<Unary, None, { x: Tensor }>({
    forward: ([x]) => ({ out: ops.relu(x), saved: { x } }),
    backward: (gy, { x }) => [ops.reluBackward(gy, x)],
  }),
  leakyRelu: rule<Unary, { slope: number }, { x: Tensor }>({
    forward: ([x], { slope }) => ({ out: ops.leakyRelu(x, slope), saved: { x } }),
    backward: (gy, { x }, { slope }) => [ops.leakyReluBackward(gy, x, slope)],
  }),
  elu: rule<Unary, { alpha: number }, { x: Tensor }>({
    forward: ([x], { alpha }) => ({ out: ops.elu(x, alpha), saved: { x } }),
    backward: (gy, { x }, { alpha }) => [ops.eluBackward(gy, x, alpha)],
  }),
  // ---- convolutions: inputs [x, w, b]; x and w saved, bias gradient only for a real bias ----
  conv3d: rule<Conv, None, ConvSaved>({
    forward: ([x, w, b]) => ({ out: ops.conv3d(x, w, b), saved: { x, w } }),
    backward: (gy, { x, w }, _a, needs) => [
      needs[0] ? ops.conv3dBackwardInput(gy, w) : null,
      needs[1] ? ops.conv3dBackwardWeight(x, gy, kernelSize(w)) : null,
      needs[2] ? ops.biasGrad(gy) : null,
    ],
  }),
  // Convolution with its activation fused into the kernel: the output is saved instead of the
  // pre-activation, and the activation's gradient is taken from it.
  conv3dAct: rule<Conv, { act: ops.FusedActivation }, ConvSaved & { y: Tensor }>({
    forward: ([x, w, b], { act }) => {
      const y = ops.conv3d(x, w, b, act);
      return { out: y, saved: { x, w, y } };
    },
    backward: (gy, { x, w, y }, { act }, needs) => {
      // With a bias, its gradient comes out of the activation's backward pass.
      const { g, bias } = needs[2]
        ? ops.activationBackwardWithBias(gy, y, act)
        : { g: ops.activationBackwardFromOutput(gy, y, act), bias: null };
      const grads: [Tensor | null, Tensor | null, Tensor | null] = [
        needs[0] ? ops.conv3dBackwardInput(g, w) : null,
        needs[1] ? ops.conv3dBackwardWeight(x, g, kernelSize(w)) : null,
        bias,
      ];
      g.dispose();
      return grads;
    },
  }),
  convTranspose3d: rule<Conv, None, ConvSaved>({
    forward: ([x, w, b]) => ({ out: ops.convTranspose3d(x, w, b), saved: { x, w } }),
    backward: (gy, { x, w }, _a, needs) => [
      needs[0] ? ops.convTranspose3dBackwardInput(gy, w) : null,
      needs[1] ? ops.convTranspose3dBackwardWeight(x, gy) : null,
      needs[2] ? ops.convTranspose3dBackwardBias(gy) : null,
    ],
  }),
  // Per-axis kernel (w's shape) and stride; x's shape fixes the input gradient's size, since
  // a stride-2 axis maps two input sizes to one output size.
  conv3dGeneral: rule<Conv, { stride: number | ops.Zyx }, ConvSaved>({
    forward: ([x, w, b], { stride }) => ({
      out: ops.conv3dGeneral(x, w, b, { stride }),
      saved: { x, w },
    }),
    backward: (gy, { x, w }, { stride }, needs) => [
      needs[0] ? ops.conv3dGeneralBackwardInput(gy, w, x.shape, { stride }) : null,
      needs[1] ? ops.conv3dGeneralBackwardWeight(x, gy, kernelZyx(w), { stride }) : null,
      needs[2] ? ops.biasGrad(gy) : null,
    ],
  }),
  // Kernel = stride, read from w's shape.
  convTranspose3dGeneral: rule<Conv, None, ConvSaved>({
    forward: ([x, w, b]) => ({ out: ops.convTranspose3dGeneral(x, w, b), saved: { x, w } }),
    backward: (gy, { x, w }, _a, needs) => [
      needs[0] ? ops.convTranspose3dGeneralBackwardInput(gy, w) : null,
      needs[1] ? ops.convTranspose3dGeneralBackwardWeight(x, gy, kernelZyx(w)) : null,
      needs[2] ? ops.biasGrad(gy) : null,
    ],
  }),
  // ---- layers: pooling saves argmax, norms save (mean, invStd), softmax its output -------
  maxPool3d: rule<Unary, None, { argmax: Tensor; inShape: readonly number[] }>({
    forward: ([x]) => {
      const { y, argmax } = ops.maxPool3d(x);
      return { out: y, saved: { argmax, inShape: x.shape } };
    },
    backward: (gy, { argmax, inShape }) => [ops.maxPool3dBackward(gy, argmax, inShape)],
  }),
  concatChannels: rule<Binary, None, { ca: number; cb: number }>({
    forward: ([a, b]) => ({
      out: ops.concatChannels(a, b),
      saved: { ca: a.shape[1], cb: b.shape[1] },
    }),
    backward: (gy, { ca, cb }, _a, needs) => [
      needs[0] ? ops.sliceChannels(gy, 0, ca) : null,
      needs[1] ? ops.sliceChannels(gy, ca, cb) : null,
    ],
  }),
  softmaxChannels: rule<Unary, None, { y: Tensor }>({
    forward: ([x]) => {
      const y = ops.softmaxChannels(x);
      return { out: y, saved: { y } };
    },
    backward: (gy, { y }) => [ops.softmaxChannelsBackward(gy, y)],
  }),
  instanceNorm: rule<Norm, { eps: number }, NormSaved>({
    forward: ([x, gamma, beta], { eps }) => {
      const { y, stats } = ops.instanceNorm(x, gamma, beta, eps);
      return { out: y, saved: { x, gamma, stats } };
    },
    backward: (gy, { x, gamma, stats }, _a, needs) =>
      ops.normBackward(gy, x, gamma, stats, "instance", true, needs),
  }),
  batchNorm: rule<Norm, ops.BatchNormOptions & { training: boolean }, NormSaved>({
    forward: ([x, gamma, beta], opts) => {
      const { y, stats } = ops.batchNorm(x, gamma, beta, opts);
      return { out: y, saved: { x, gamma, stats } };
    },
    backward: (gy, { x, gamma, stats }, { training }, needs) =>
      ops.normBackward(gy, x, gamma, stats, "batch", training, needs),
  }),
  flip: rule<Unary, { axes: readonly number[] }, None>({
    forward: ([x], { axes }) => ({ out: ops.flip(x, axes), saved: {} }),
    backward: (gy, _s, { axes }) => [ops.flip(gy, axes)],
  }),
  // ---- reductions and losses: output [1]; labels (input 1) get no gradient ----------------
  sum: rule<Unary, None, { shape: readonly number[] }>({
    forward: ([x]) => ({ out: ops.sum(x), saved: { shape: x.shape } }),
    backward: (gy, { shape }) => [ops.broadcastScalar(gy, shape, 1)],
  }),
  mean: rule<Unary, None, { shape: readonly number[]; n: number }>({
    forward: ([x]) => ({ out: ops.mean(x), saved: { shape: x.shape, n: x.size } }),
    backward: (gy, { shape, n }) => [ops.broadcastScalar(gy, shape, 1 / n)],
  }),
  // Dice is tversky with alpha = beta = 0.5 (see functional.ts).
  tversky: rule<
    Loss,
    ops.TverskyOptions,
    { coef: Tensor; labels: Tensor; shape: readonly number[] }
  >({
    forward: ([p, labels], o) => {
      const { loss, coef } = ops.tverskyForward(p, labels, o);
      return { out: loss, saved: { coef, labels, shape: p.shape } };
    },
    backward: (gy, { coef, labels, shape }, _o, needs) => [
      needs[0] ? ops.tverskyBackward(gy, coef, labels, shape) : null,
      null,
    ],
  }),
  crossEntropy: rule<Loss, ops.CrossEntropyOptions, { x: Tensor; labels: Tensor; stats: Tensor }>({
    forward: ([x, labels], o) => {
      const { loss, stats } = ops.crossEntropyForward(x, labels, o);
      return { out: loss, saved: { x, labels, stats } };
    },
    backward: (gy, { x, labels, stats }, o, needs) => [
      needs[0] ? ops.crossEntropyBackward(gy, x, labels, stats, o) : null,
      null,
    ],
  }),
  // The trainer's weighted Tversky + Dice + cross-entropy on logits, its backward in one pass.
  segmentationLoss: rule<
    Loss,
    ops.SegmentationLossOptions,
    ops.SegmentationLossSaved & { x: Tensor; labels: Tensor }
  >({
    forward: ([x, labels], o) => {
      const { loss, ...saved } = ops.segmentationLossForward(x, labels, o);
      return { out: loss, saved: { ...saved, x, labels } };
    },
    backward: (gy, { x, labels, ...saved }, o, needs) => [
      needs[0] ? ops.segmentationLossBackward(gy, x, labels, saved, o) : null,
      null,
    ],
  }),
};

export type RuleName = keyof typeof rules;
