/**
 * Differentiable functions: thin names over `apply(rule, …)`, the API models are built from.
 * Outside a recording tape they run the forward op only.
 */

import type { Tensor } from "../gpu/mod.ts";
import type { FusedActivation } from "../ops/elementwise.ts";
import type { Zyx } from "../ops/conv3d_general.ts";
import type {
  CrossEntropyOptions,
  DiceOptions,
  SegmentationLossOptions,
  TverskyOptions,
} from "../ops/losses.ts";
import { apply } from "./tape.ts";

export type { CrossEntropyOptions, DiceOptions, TverskyOptions, Zyx };

export const add = (a: Tensor, b: Tensor): Tensor => apply("add", [a, b], {});
export const sub = (a: Tensor, b: Tensor): Tensor => apply("sub", [a, b], {});
export const mul = (a: Tensor, b: Tensor): Tensor => apply("mul", [a, b], {});
export const axpby = (alpha: number, a: Tensor, beta: number, b: Tensor): Tensor =>
  apply("axpby", [a, b], { alpha, beta });
export const scale = (x: Tensor, s: number): Tensor => apply("scale", [x], { s });
export const relu = (x: Tensor): Tensor => apply("relu", [x], {});
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => apply("leakyRelu", [x], { slope });
export const elu = (x: Tensor, alpha = 1): Tensor => apply("elu", [x], { alpha });
/**
 * 3D convolution, stride 1: x [N,Ci,D,H,W], w [Co,Ci,k,k,k] with k = 3 (padding 1) or k = 1
 * (padding 0), optional bias [Co] → [N,Co,D,H,W].
 *
 * @example
 * const y = conv3d(x, w, b); // x [1,4,32,32,32], w [8,4,3,3,3], b [8] → [1,8,32,32,32]
 */
export const conv3d = (x: Tensor, w: Tensor, b: Tensor | null): Tensor =>
  apply("conv3d", [x, w, b], {});

/**
 * {@link conv3d} followed by an activation, in one kernel: the same values as
 * `relu(conv3d(x, w, b))` without the pass over the output or the pre-activation tensor.
 *
 * @example
 * const y = conv3dAct(x, w, b, { kind: "relu" });
 */
export const conv3dAct = (
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  act: FusedActivation,
): Tensor => apply("conv3dAct", [x, w, b], { act });

/**
 * Transposed 3D convolution, kernel 2 stride 2 (PyTorch ConvTranspose3d layout):
 * x [N,Ci,D,H,W], w [Ci,Co,2,2,2], optional bias [Co] → [N,Co,2D,2H,2W].
 */
export const convTranspose3d = (x: Tensor, w: Tensor, b: Tensor | null): Tensor =>
  apply("convTranspose3d", [x, w, b], {});
/**
 * 3D convolution with a kernel size and stride per axis (PyTorch Conv3d layout, padding k // 2
 * per axis): x [N,Ci,D,H,W], w [Co,Ci,kd,kh,kw] with each k 1 or 3, optional bias [Co], stride
 * (z, y, x) each 1 or 2 (one number: all axes; default 1) → [N,Co,OD,OH,OW] with
 * OD = ⌊(D + 2⌊kd/2⌋ − kd) / sd⌋ + 1, likewise OH, OW. 3×3×3 and 1×1×1 at stride 1 run on the
 * tuned kernels of {@link conv3d}.
 *
 * @example
 * const y = conv3dGeneral(x, w, b, { stride: [1, 2, 2] }); // w [32,16,1,3,3]: x [1,16,8,64,64]
 * //                                                          → [1,32,8,32,32]
 */
export const conv3dGeneral = (
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  opts: { stride?: number | Zyx } = {},
): Tensor => apply("conv3dGeneral", [x, w, b], { stride: opts.stride ?? 1 });

/**
 * Transposed 3D convolution with kernel = stride per axis, each 1 or 2 (PyTorch
 * ConvTranspose3d layout): x [N,Ci,D,H,W], w [Ci,Co,kd,kh,kw], optional bias [Co] →
 * [N,Co,D·kd,H·kh,W·kw]. 2×2×2 runs on the tuned kernel of {@link convTranspose3d}.
 *
 * @example
 * const y = convTranspose3dGeneral(x, w, b); // w [32,16,1,2,2]: x [1,32,8,16,16] → [1,16,8,32,32]
 */
export const convTranspose3dGeneral = (x: Tensor, w: Tensor, b: Tensor | null): Tensor =>
  apply("convTranspose3dGeneral", [x, w, b], {});

/** Max pooling, kernel 2 stride 2: [N,C,D,H,W] → [N,C,⌊D/2⌋,⌊H/2⌋,⌊W/2⌋]; ties: first max. */
export const maxPool3d = (x: Tensor): Tensor => apply("maxPool3d", [x], {});

/** [N,Ca,…] and [N,Cb,…] → [N,Ca+Cb,…] (U-Net skip connections). */
export const concatChannels = (a: Tensor, b: Tensor): Tensor => apply("concatChannels", [a, b], {});

/** Softmax over channels (dim 1) for every voxel, with the channel max subtracted. */
export const softmaxChannels = (x: Tensor): Tensor => apply("softmaxChannels", [x], {});

/**
 * Instance norm: each (n, c) volume normalised by its mean and biased variance, then
 * ·gamma[c] + beta[c] (either may be null, meaning no scale or no shift).
 */
export const instanceNorm = (
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  opts: { eps?: number } = {},
): Tensor => apply("instanceNorm", [x, gamma, beta], { eps: opts.eps ?? 1e-5 });

/**
 * Batch norm per channel over N and space, ·gamma[c] + beta[c] (either may be null).
 * Training mode (default) uses batch statistics and updates `runningMean`/`runningVar` in
 * place when given (PyTorch's formula, unbiased running variance); `training: false` uses them.
 *
 * @example
 * const y = batchNorm(x, gamma, beta, { runningMean, runningVar, training: !evaluating });
 */
export const batchNorm = (
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  opts: {
    eps?: number;
    momentum?: number;
    training?: boolean;
    runningMean?: Tensor;
    runningVar?: Tensor;
  } = {},
): Tensor =>
  apply("batchNorm", [x, gamma, beta], {
    ...opts,
    eps: opts.eps ?? 1e-5,
    momentum: opts.momentum ?? 0.1,
    training: opts.training ?? true,
  });

/**
 * Reverses the given axes (indices into x's shape).
 *
 * @example
 * const mirrored = flip(x, [2, 3, 4]); // D, H and W of [N,C,D,H,W]
 */
export const flip = (x: Tensor, axes: number[]): Tensor => apply("flip", [x], { axes: [...axes] });

/** Σ x over all elements → [1]. */
export const sum = (x: Tensor): Tensor => apply("sum", [x], {});
/** Mean of all elements → [1]. */
export const mean = (x: Tensor): Tensor => apply("mean", [x], {});

/**
 * Multi-class Tversky loss → [1], from `probs` [N,C,D,H,W] (e.g. softmax output) and u32
 * `labels` [N,D,H,W] in 0..C−1. Per sample n and class c, with g the one-hot labels:
 * TP = Σ p·g, FP = Σ p·(1 − g), FN = Σ (1 − p)·g and
 * TI = (TP + smooth) / (TP + α·FP + β·FN + smooth). The loss is the weighted mean
 * Σ w_c(1 − TI) / Σ w_c over included classes, averaged over samples (`batch: true` sums the
 * statistics over the batch first, nnU-Net's "batch dice"). **α weights false positives and β
 * false negatives**; the defaults α = 0.3, β = 0.7 favour recall. Gradients flow to probs.
 *
 * @example
 * const loss = tversky(softmaxChannels(logits), labels, { includeBackground: false });
 */
export const tversky = (probs: Tensor, labels: Tensor, opts: TverskyOptions = {}): Tensor =>
  apply("tversky", [probs, labels], opts);

/**
 * Soft Dice loss → [1]: {@link tversky} with α = β = ½, i.e. per class
 * 1 − (TP + smooth) / (TP + ½(FP + FN) + smooth), which is 1 − (2TP + 2·smooth) /
 * (2TP + FP + FN + 2·smooth), the usual soft Dice with smoothing 2·smooth.
 */
export const dice = (probs: Tensor, labels: Tensor, opts: DiceOptions = {}): Tensor =>
  apply("tversky", [probs, labels], { ...opts, alpha: 0.5, beta: 0.5 });

/**
 * Categorical cross-entropy → [1] from `logits` [N,C,D,H,W] (stable log-softmax over C) and
 * u32 `labels` [N,D,H,W]: the mean of −log p_y over voxels, or with `classWeights`
 * Σ w_y·(−log p_y) / Σ w_y as PyTorch does. Gradients flow to logits.
 *
 * @example
 * const loss = axpby(1, dice(softmaxChannels(logits), labels), 1, crossEntropy(logits, labels));
 */
export const crossEntropy = (
  logits: Tensor,
  labels: Tensor,
  opts: CrossEntropyOptions = {},
): Tensor => apply("crossEntropy", [logits, labels], opts);

/**
 * The trainer's loss → [1] from `logits` [N,C,D,H,W] and u32 `labels` [N,D,H,W]:
 * `tverskyWeight`·{@link tversky} + `diceWeight`·{@link dice} of softmax(logits) (options
 * `region`) + `ceWeight`·{@link crossEntropy} (with `region.classWeights`), terms of weight 0
 * skipped. The same value as composing those, with the gradient w.r.t. the logits in one pass.
 *
 * @example
 * const loss = segmentationLoss(logits, labels, { tverskyWeight: 1, diceWeight: 0, ceWeight: 1 });
 */
export const segmentationLoss = (
  logits: Tensor,
  labels: Tensor,
  opts: SegmentationLossOptions,
): Tensor => apply("segmentationLoss", [logits, labels], opts);
