/**
 * Transposed 3D convolution with kernel = stride per axis, each 1 or 2 (nnU-Net's
 * up-sampling: 2×2×2, or 1×2×2 on anisotropic grids), forward and backward.
 *
 * Layouts follow PyTorch's ConvTranspose3d: x [N, Ci, D, H, W], w [Ci, Co, kd, kh, kw],
 * bias [Co], y [N, Co, D·kd, H·kh, W·kw]. The op is the adjoint of a convolution from y's grid
 * to x's with kernel = stride and no padding, whose weight in Conv3d layout [Co', Ci', …] is
 * w itself (Co' = Ci, Ci' = Co). So the kernels of `conv3d_general.ts` serve it: the forward
 * is that convolution's input gradient (plus the bias), the input gradient is that
 * convolution, and the weight gradient is its weight gradient with x and gy swapped.
 * 2×2×2 goes to the tuned kernels of `conv_transpose3d.ts` instead (same values, faster).
 */

import { type Tensor } from "../gpu/mod.ts";
import {
  convTranspose3d,
  convTranspose3dBackwardInput,
  convTranspose3dBackwardWeight,
} from "./conv_transpose3d.ts";
import {
  checkConvGradShape,
  checkOperands,
  type ConvGeneralOptions,
  runConvGeneral,
  runDataGrad,
  runWeightGradGeneral,
  type Zyx,
} from "./conv3d_general.ts";
import { assertRank } from "./shape.ts";

const NO_PAD: Zyx = [0, 0, 0];

/** Output shape of {@link convTranspose3dGeneral}: [N, Co, D·kd, H·kh, W·kw]. */
export function convTranspose3dGeneralShape(
  xShape: readonly number[],
  wShape: readonly number[],
): number[] {
  const [n, , d, h, w] = xShape;
  const [, co, kd, kh, kw] = wShape;
  return [n, co, d * kd, h * kh, w * kw];
}

/**
 * y = x ⊛ᵀ w (+ b) with w [Ci, Co, kd, kh, kw], stride = kernel (each 1 or 2):
 * y[n, o, z·kd + a, y·kh + b, x·kw + c] = b[o] + Σ_i x[n, i, z, y, x] · w[i, o, a, b, c].
 * `opts.stride`, when given, must equal the kernel.
 *
 * @example
 * const y = convTranspose3dGeneral(x, w, b); // x [1,32,8,16,16], w [32,16,1,2,2] → [1,16,8,32,32]
 */
export function convTranspose3dGeneral(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "convTranspose3dGeneral";
  const k = checkConvTransposeGeneral(op, x, w, b, opts);
  if ((opts.delegate ?? true) && isCube2(k)) return convTranspose3d(x, w, b);
  const yShape = convTranspose3dGeneralShape(x.shape, w.shape);
  return runDataGrad({ gy: x, w, bias: b, xShape: yShape, k, stride: k, pad: NO_PAD });
}

/** Gradient of {@link convTranspose3dGeneral} with respect to x: gy → [N, Ci, D, H, W]. */
export function convTranspose3dGeneralBackwardInput(
  gy: Tensor,
  w: Tensor,
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "convTranspose3dGeneralBackwardInput";
  assertRank(op, "gy", gy.shape, 5);
  const k = kernelZyx(op, w, opts);
  const [n, c, d, h, wd] = gy.shape;
  const xShape = [n, w.shape[0], d / k[0], h / k[1], wd / k[2]];
  if (c !== w.shape[1] || !xShape.every(Number.isInteger)) {
    throw new Error(
      `${op}: gy [${gy.shape}] does not fit w [${w.shape}] (needs C=${w.shape[1]} and D, H, W ` +
        `divisible by the kernel)`,
    );
  }
  if ((opts.delegate ?? true) && isCube2(k)) return convTranspose3dBackwardInput(gy, w);
  return runConvGeneral({ x: gy, w, bias: null, k, stride: k, pad: NO_PAD, outShape: xShape });
}

/** Gradient of {@link convTranspose3dGeneral} with respect to w [Ci, Co, kd, kh, kw]. */
export function convTranspose3dGeneralBackwardWeight(
  x: Tensor,
  gy: Tensor,
  kernel: Zyx,
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "convTranspose3dGeneralBackwardWeight";
  assertRank(op, "x", x.shape, 5);
  assertRank(op, "gy", gy.shape, 5);
  checkKernel(op, kernel, `kernel [${kernel}]`);
  const wShape = [x.shape[1], gy.shape[1], ...kernel];
  checkConvGradShape(op, "gy", gy.shape, convTranspose3dGeneralShape(x.shape, wShape));
  if ((opts.delegate ?? true) && isCube2(kernel)) return convTranspose3dBackwardWeight(x, gy);
  // The convolution from gy's grid to x's: its input is gy, its output gradient x.
  return runWeightGradGeneral({
    x: gy,
    gy: x,
    k: kernel,
    stride: kernel,
    pad: NO_PAD,
    outShape: wShape,
  });
}

/** Whether the tuned kernel of conv_transpose3d.ts covers the case (2×2×2). */
function isCube2(k: Zyx): boolean {
  return k.every((v) => v === 2);
}

function checkKernel(op: string, k: Zyx, what: string): void {
  if (k.length !== 3 || k.some((v) => v !== 1 && v !== 2)) {
    throw new RangeError(`${op}: kernel sizes must be 1 or 2 per axis (= stride), got ${what}`);
  }
}

/** (kd, kh, kw) of w [Ci, Co, kd, kh, kw], each 1 or 2 and equal to the stride if given. */
function kernelZyx(op: string, w: Tensor, opts: ConvGeneralOptions): Zyx {
  assertRank(op, "w", w.shape, 5);
  const k: Zyx = [w.shape[2], w.shape[3], w.shape[4]];
  checkKernel(op, k, `w [${w.shape}]`);
  if (opts.stride !== undefined) {
    const s = typeof opts.stride === "number"
      ? [opts.stride, opts.stride, opts.stride]
      : opts.stride;
    if (s.length !== 3 || s.some((v, i) => v !== k[i])) {
      throw new RangeError(`${op}: stride [${s}] must equal the kernel of w [${w.shape}]`);
    }
  }
  return k;
}

/** Shape checks of the forward; returns (kd, kh, kw). */
function checkConvTransposeGeneral(
  op: string,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  opts: ConvGeneralOptions,
): Zyx {
  assertRank(op, "x", x.shape, 5);
  const k = kernelZyx(op, w, opts);
  const [ci, co] = w.shape;
  checkOperands(op, x, w, b, ci, co);
  return k;
}
