/**
 * Deep supervision as nnU-Net trains with it: the loss is a weighted sum of the loss of each
 * decoder resolution's output (`forwardDeep` of src/nn/model.ts's SegmentationNet) against the
 * label map sampled down to that resolution.
 *
 * - Scales: one per decoder level, k = 0 (full resolution) … depth − 2; the bottleneck has
 *   none. Scale k is smaller than the input by its cumulative stride (sz, sy, sx): 2^k on every
 *   axis for a UNet3D, the product of the first k+1 stages' strides per axis for a
 *   PlainConvUNet (e.g. 1×2×2 then 2×4×4 on anisotropic data).
 * - Weights: 1/2^k, the lowest resolution's set to 0, normalised to sum 1 — nnU-Net's
 *   `_build_loss` (depth 4: [1, ½, 0] → [⅔, ⅓, 0]; depth 5: [4/7, 2/7, 1/7, 0]). A single scale
 *   keeps weight 1 (zeroing it would leave no loss). A zero-weight scale's loss is not
 *   computed, so its head gets no gradient and the optimizer leaves it unchanged.
 * - Targets: the label at every sz-th, sy-th, sx-th voxel along z, y, x from the first, i.e.
 *   the corner voxel of the sz×sy×sx block that pooling or strided convolution maps to each
 *   output voxel. (nnU-Net v2 resizes with `nearest-exact`, which picks a voxel further in;
 *   either lies in the block.)
 *
 * Inference uses only the full-resolution output.
 */

import * as F from "../autograd/functional.ts";
import type { Zyx } from "../autograd/functional.ts";
import type { Tensor } from "../gpu/mod.ts";
import { subsample3d } from "../ops/subsample.ts";

/**
 * The loss weight of each of `scales` outputs, full resolution first: 1/2^k, the last set to 0
 * when there is more than one, normalised to sum 1.
 *
 * @example
 * deepSupervisionWeights(3); // [2/3, 1/3, 0]
 */
export function deepSupervisionWeights(scales: number): number[] {
  if (!Number.isInteger(scales) || scales < 1) {
    throw new Error(`deep supervision: the number of scales must be ≥ 1, got ${scales}`);
  }
  const w = Array.from({ length: scales }, (_, k) => 1 / 2 ** k);
  if (scales > 1) w[scales - 1] = 0;
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / sum);
}

/**
 * The label map of scale `level`, smaller by `stride` (sz, sy, sx; default 2^level on every
 * axis): u32 labels [N, D, H, W] → [N, D/sz, H/sy, W/sx], each voxel the label at (sz·z, sy·y,
 * sx·x). A stride of 1 on every axis (level 0 by default) returns `labels` itself, not a copy.
 *
 * @example
 * downsampleLabels(labels, 1); // [N, 16, 32, 32] → [N, 8, 16, 16]
 * downsampleLabels(labels, 1, [1, 2, 2]); // [N, 16, 32, 32] → [N, 16, 16, 16]
 */
export function downsampleLabels(
  labels: Tensor,
  level: number,
  stride: Zyx = [2 ** level, 2 ** level, 2 ** level],
): Tensor {
  if (labels.shape.length !== 4) {
    throw new Error(`deep supervision: labels must be [N, D, H, W], got [${labels.shape}]`);
  }
  return stride.every((s) => s === 1) ? labels : subsample3d(labels, stride);
}

/**
 * The stride (sz, sy, sx) by which output `k`'s D, H, W are smaller than the labels'; throws
 * unless each label edge is a whole multiple of the output's.
 */
function strideOf(logits: Tensor, labels: Tensor, k: number): Zyx {
  const out = logits.shape.slice(2), full = labels.shape.slice(1);
  const s = full.map((e, i) => e / out[i]);
  if (logits.shape.length !== 5 || s.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new Error(
      `deep supervision: output ${k} is [${logits.shape}] but the labels are [${labels.shape}]; ` +
        `each output's D, H, W must divide the labels' (by the net's cumulative stride)`,
    );
  }
  return [s[0], s[1], s[2]];
}

/**
 * The deep-supervision loss → [1]: Σ_k w_k · loss(outputs[k], labels subsampled by stride k),
 * with w from {@link deepSupervisionWeights}. `outputs` are logits [N, C, D/sz, H/sy, W/sx],
 * full resolution first (as a SegmentationNet's `forwardDeep` returns them); `labels` are u32
 * [N, D, H, W] at full resolution; `loss` is the per-scale loss (the trainer's `lossFor`).
 * `strides` (per output, z, y, x) default to the ratio of the labels' D, H, W to each output's
 * — 2^k on every axis for a UNet3D; given, each output must be exactly the labels sampled by
 * its stride. Differentiable when recorded on a tape.
 *
 * @example
 * const loss = deepSupervisionLoss(net.forwardDeep(x), labels, (l, t) => lossFor(l, t, config));
 */
export function deepSupervisionLoss(
  outputs: readonly Tensor[],
  labels: Tensor,
  loss: (logits: Tensor, labels: Tensor) => Tensor,
  strides?: readonly Zyx[],
): Tensor {
  const weights = deepSupervisionWeights(outputs.length);
  if (strides && strides.length !== outputs.length) {
    throw new Error(
      `deep supervision: ${strides.length} strides for ${outputs.length} outputs; give one ` +
        `z,y,x stride per output`,
    );
  }
  let total: Tensor | undefined;
  outputs.forEach((logits, k) => {
    if (weights[k] === 0) return;
    const stride = strides?.[k] ?? strideOf(logits, labels, k);
    const target = downsampleLabels(labels, k, stride);
    const [n, , ...spatial] = logits.shape;
    if (n !== target.shape[0] || spatial.join() !== target.shape.slice(1).join()) {
      throw new Error(
        `deep supervision: output ${k} is [${logits.shape}] but the labels at stride ` +
          `${stride.join("×")} are [${target.shape}]; each output must be the labels' D, H, W ` +
          `divided by its stride`,
      );
    }
    const term = loss(logits, target);
    total = total === undefined ? F.scale(term, weights[k]) : F.axpby(1, total, weights[k], term);
  });
  return total!;
}
