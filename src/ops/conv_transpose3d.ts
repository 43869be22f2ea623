/**
 * Transposed 3D convolution, kernel 2 stride 2 (the U-Net's up-sampling), forward and backward.
 *
 * Layouts follow PyTorch's ConvTranspose3d: x [N, Ci, D, H, W], w [Ci, Co, 2, 2, 2], bias [Co],
 * y [N, Co, 2D, 2H, 2W]. With stride equal to the kernel every output voxel comes from exactly
 * one input voxel and one tap, so the op is a 1×1×1 convolution on the input grid with 8·Co
 * output channels (channel o' = 8·o + tap, tap = (a·2 + b)·2 + c) whose result is written
 * 2×-upsampled: y[n, o, 2z + a, 2y + b, 2x + c]. w [Ci, Co·8] is then a plain matrix, read
 * through strides. The kernels are those of `conv3d.ts` with the up-sampled layout as a mode.
 */

import { type Tensor } from "../gpu/mod.ts";
import { biasGrad, runConv, runWeightGrad } from "./conv3d.ts";
import { assertRank } from "./shape.ts";

/**
 * y = x ⊛ᵀ w (+ b), kernel 2, stride 2.
 *
 * @example
 * const y = convTranspose3d(x, w, b); // x [1,32,16,16,16], w [32,16,2,2,2] → y [1,16,32,32,32]
 */
export function convTranspose3d(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  checkConvTranspose3d(x, w, b);
  const [n, ci, d, h, wd] = x.shape;
  const co = w.shape[1];
  return runConv({
    src: x,
    wgt: w,
    bias: b,
    n,
    ci,
    co: co * 8,
    grid: [d, h, wd],
    k: 1,
    mode: 1,
    // W(o', i) = w[i, o'] with o' = 8·o + tap.
    strides: { wO: 1, wI: co * 8, wT: 0, wBase: 0 },
    outShape: [n, co, 2 * d, 2 * h, 2 * wd],
  });
}

/** Gradient of {@link convTranspose3d} with respect to x: Σ over o and taps of w · gy. */
export function convTranspose3dBackwardInput(gy: Tensor, w: Tensor): Tensor {
  assertRank("convTranspose3dBackwardInput", "gy", gy.shape, 5);
  assertRank("convTranspose3dBackwardInput", "w", w.shape, 5);
  const [ci, co] = w.shape;
  const [n, c, d2, h2, w2] = gy.shape;
  if (c !== co || d2 % 2 || h2 % 2 || w2 % 2) {
    throw new Error(
      `convTranspose3dBackwardInput: gy [${gy.shape}] does not fit w [${w.shape}] ` +
        `(needs C=${co} and even D, H, W)`,
    );
  }
  const grid = [d2 / 2, h2 / 2, w2 / 2] as const;
  return runConv({
    src: gy,
    wgt: w,
    bias: null,
    n,
    ci: co * 8,
    co: ci,
    grid,
    k: 1,
    mode: 2,
    // Output channel i, input channel o': w[i, o'].
    strides: { wO: co * 8, wI: 1, wT: 0, wBase: 0 },
    outShape: [n, ci, ...grid],
  });
}

/** Gradient of {@link convTranspose3d} with respect to w [Ci, Co, 2, 2, 2]. */
export function convTranspose3dBackwardWeight(x: Tensor, gy: Tensor): Tensor {
  assertRank("convTranspose3dBackwardWeight", "x", x.shape, 5);
  assertRank("convTranspose3dBackwardWeight", "gy", gy.shape, 5);
  const [n, ci, d, h, wd] = x.shape;
  const co = gy.shape[1];
  if (
    gy.shape[0] !== n || gy.shape[2] !== 2 * d || gy.shape[3] !== 2 * h || gy.shape[4] !== 2 * wd
  ) {
    throw new Error(
      `convTranspose3dBackwardWeight: gy [${gy.shape}] is not x [${x.shape}] up-sampled by 2`,
    );
  }
  return runWeightGrad({
    x,
    gy,
    n,
    ci,
    co: co * 8,
    grid: [d, h, wd],
    k: 1,
    mode: 1,
    // G(o', i) lands at w[i, o'].
    gO: 1,
    gI: co * 8,
    outShape: [ci, co, 2, 2, 2],
  });
}

/** Gradient of the bias of {@link convTranspose3d}: gy summed over N and space. */
export const convTranspose3dBackwardBias = (gy: Tensor): Tensor => biasGrad(gy);

function checkConvTranspose3d(x: Tensor, w: Tensor, b: Tensor | null): void {
  const op = "convTranspose3d";
  assertRank(op, "x", x.shape, 5);
  assertRank(op, "w", w.shape, 5);
  const [ci, co, a, bb, c] = w.shape;
  if (a !== 2 || bb !== 2 || c !== 2) {
    throw new Error(`${op}: kernel must be 2×2×2, got w [${w.shape}]`);
  }
  if (ci !== x.shape[1]) {
    throw new Error(
      `${op}: w has Ci=${ci} but x has C=${x.shape[1]}, x [${x.shape}] w [${w.shape}]`,
    );
  }
  if (b && (b.shape.length !== 1 || b.shape[0] !== co)) {
    throw new Error(`${op}: bias must be [${co}] for w [${w.shape}], got [${b.shape}]`);
  }
  if (x.size === 0 || co === 0) {
    throw new Error(`${op}: empty tensor, x [${x.shape}] w [${w.shape}]`);
  }
}
