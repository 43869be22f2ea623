/**
 * 3D convolution with a kernel size and a stride per axis (nnU-Net's PlainConvUNet: 1×3×3
 * kernels on anisotropic grids, stride-2 convolutions as down-sampling), forward and backward.
 *
 * Layouts follow PyTorch's Conv3d: x [N, Ci, D, H, W], w [Co, Ci, kd, kh, kw], bias [Co], with
 * padding k // 2 per axis and y [N, Co, OD, OH, OW], OD = ⌊(D + 2·pd − kd) / sd⌋ + 1 (likewise
 * H, W). Three kernels serve this file and `conv_transpose3d_general.ts`, taking the sizes,
 * strides and padding as uniforms but the kernel size and stride along x as override constants
 * (so their tap loops unroll):
 * - `conv3d_general.wgsl`: the direct convolution (8 output channels × 4 voxels per thread);
 * - `conv3d_general_dgrad.wgsl`: its adjoint, a gather over the taps reaching each input voxel
 *   (the input gradient, and the transposed convolution's forward);
 * - `conv3d_general_wgrad.wgsl`: weight-gradient partial sums, added by `conv3d_reduce.wgsl`.
 * Weights are packed into vec4s, by groups of 8 channels, by `conv3d_pack.wgsl`; the bias
 * gradient is `biasGrad` (conv3d.ts). A 3×3×3 or 1×1×1 kernel at stride 1 goes to the tuned
 * kernels of `conv3d.ts` instead (same values, faster).
 */

import generalWgsl from "../../shaders/conv3d_general.wgsl" with { type: "text" };
import dgradWgsl from "../../shaders/conv3d_general_dgrad.wgsl" with { type: "text" };
import wgradWgsl from "../../shaders/conv3d_general_wgrad.wgsl" with { type: "text" };
import outerWgsl from "../../shaders/lib/outer.wgsl" with { type: "text" };
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";
import {
  conv3d,
  conv3dBackwardInput,
  conv3dBackwardWeight,
  packWeightsKernel,
  sumSlotsKernel,
} from "./conv3d.ts";
import { assertRank } from "./shape.ts";
import { adapterKind } from "./tuning.ts";

/** Sizes along z, y, x (D, H, W). */
export type Zyx = readonly [number, number, number];

/** Options of the general convolutions. */
export interface ConvGeneralOptions {
  /** Stride per axis (z, y, x), or one for all; 1 or 2 each. Default 1. */
  stride?: number | Zyx;
  /**
   * Whether a case the tuned kernels cover (3×3×3 or 1×1×1 at stride 1; transposed 2×2×2)
   * runs on them. Default true; false forces the general kernels (for tests).
   */
  delegate?: boolean;
}

/**
 * The uniforms every general kernel starts with: threads, sizes, window geometry. The kernel
 * size and stride along x (and for the weight gradient the kernel height) are override
 * constants instead, so that the kernels' loops over taps unroll.
 */
const GEOMETRY = {
  threads: "u32",
  n: "u32",
  d: "u32",
  h: "u32",
  w: "u32",
  od: "u32",
  oh: "u32",
  ow: "u32",
  kd: "u32",
  kh: "u32",
  sd: "u32",
  sh: "u32",
  padD: "u32",
  padH: "u32",
  padW: "u32",
} as const;

/** conv3d_general.wgsl: the direct convolution, 8 output channels × 4 voxels per thread. */
export const conv3dGeneralKernel = defineKernel({
  name: "conv3d_general",
  body: generalWgsl,
  fragments: [outerWgsl],
  uniforms: { ...GEOMETRY, ci: "u32", co: "u32", tilesX: "u32", hasBias: "u32" },
  bindings: [
    { name: "src", access: "read" },
    { name: "pw", access: "read", type: "vec4<f32>" },
    { name: "bias", access: "read" },
    { name: "dst", access: "read_write" },
  ],
  workgroupSize: 64,
  constants: { KW: 3, SW: 1 },
});

/** conv3d_general_dgrad.wgsl: the adjoint gather, 8 channels × 4 voxels per thread. */
export const conv3dGeneralDataGradKernel = defineKernel({
  name: "conv3d_general_dgrad",
  body: dgradWgsl,
  fragments: [outerWgsl],
  uniforms: { ...GEOMETRY, cx: "u32", co: "u32", tilesQ: "u32", hasBias: "u32" },
  bindings: [
    { name: "gy", access: "read" },
    { name: "pw", access: "read", type: "vec4<f32>" },
    { name: "bias", access: "read" },
    { name: "dst", access: "read_write" },
  ],
  workgroupSize: 64,
  constants: { KW: 3, SW: 1 },
});

/** conv3d_general_wgrad.wgsl: weight-gradient partial sums, one slot per run of rows. */
export const conv3dGeneralWeightGradKernel = defineKernel({
  name: "conv3d_general_wgrad",
  body: wgradWgsl,
  uniforms: {
    ...GEOMETRY,
    ci: "u32",
    co: "u32",
    tilesO: "u32",
    slices: "u32",
    len: "u32",
    m: "u32",
  },
  bindings: [
    { name: "src", access: "read" },
    { name: "gy", access: "read" },
    { name: "part", access: "read_write" },
  ],
  workgroupSize: 64,
  constants: { KH: 3, KW: 3, SW: 1 },
});

/** Voxels along x per thread of conv3d_general.wgsl and conv3d_general_dgrad.wgsl. */
const VX = 4;

/** The stride option as (sz, sy, sx); throws unless each is 1 or 2. */
export function strideZyx(op: string, stride: number | Zyx | undefined): Zyx {
  const s: Zyx = typeof stride === "number" || stride === undefined
    ? [stride ?? 1, stride ?? 1, stride ?? 1]
    : stride;
  if (s.length !== 3 || s.some((v) => v !== 1 && v !== 2)) {
    throw new RangeError(`${op}: stride must be 1 or 2 per axis (z, y, x), got [${s}]`);
  }
  return [s[0], s[1], s[2]];
}

/** Output size of a convolution along one axis: ⌊(n + 2p − k) / s⌋ + 1, p = ⌊k / 2⌋. */
export function convOutputSize(n: number, k: number, s: number): number {
  return Math.floor((n + 2 * Math.floor(k / 2) - k) / s) + 1;
}

/** Output shape of {@link conv3dGeneral}: [N, Co, OD, OH, OW]. */
export function conv3dGeneralShape(
  xShape: readonly number[],
  wShape: readonly number[],
  stride: Zyx,
): number[] {
  const [n, , d, h, w] = xShape;
  const [co, , kd, kh, kw] = wShape;
  return [
    n,
    co,
    convOutputSize(d, kd, stride[0]),
    convOutputSize(h, kh, stride[1]),
    convOutputSize(w, kw, stride[2]),
  ];
}

/**
 * y = x ⊛ w (+ b) with kernel w [Co, Ci, kd, kh, kw] (each 1 or 3, padding k // 2) and a
 * stride per axis; x [N, Ci, D, H, W] → [N, Co, OD, OH, OW] (see {@link conv3dGeneralShape}).
 *
 * @example
 * // nnU-Net's anisotropic down-sampling: w [32,16,1,3,3], stride (1, 2, 2)
 * const y = conv3dGeneral(x, w, b, { stride: [1, 2, 2] }); // x [1,16,8,64,64] → [1,32,8,32,32]
 */
export function conv3dGeneral(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "conv3dGeneral";
  const stride = strideZyx(op, opts.stride);
  const k = checkConvGeneral(op, x, w, b);
  if ((opts.delegate ?? true) && cubicUnitStride(k, stride)) return conv3d(x, w, b);
  return runConvGeneral({
    x,
    w,
    bias: b,
    k,
    stride,
    pad: pads(k),
    outShape: conv3dGeneralShape(x.shape, w.shape, stride),
  });
}

/** One run of conv3d_general.wgsl. */
export interface ConvGeneralRun {
  /** Input [N, Ci, D, H, W]. */
  x: Tensor;
  /** Weights [Co, Ci, kd, kh, kw]. */
  w: Tensor;
  bias: Tensor | null;
  k: Zyx;
  stride: Zyx;
  pad: Zyx;
  /** [N, Co, OD, OH, OW] for this kernel, stride and padding. */
  outShape: readonly number[];
}

/** Records conv3d_general.wgsl; shared with the transposed convolution's input gradient. */
export function runConvGeneral(r: ConvGeneralRun): Tensor {
  const [n, ci, d, h, wd] = r.x.shape;
  const co = r.w.shape[0];
  const kt = r.k[0] * r.k[1] * r.k[2];
  const y = new Tensor(r.outShape);
  const [, , od, oh, ow] = r.outShape;
  // W(o, i, t) = w[o·Ci·KT + i·KT + t], packed by groups of 8 output channels.
  const pw = packGroups(r.w, co, ci, kt, { wO: ci * kt, wI: kt });
  const tilesX = Math.ceil(ow / VX);
  const threads = Math.ceil(co / 8) * n * od * oh * tilesX;
  const constants = { KW: r.k[2], SW: r.stride[2] };
  recorder().dispatch(
    conv3dGeneralKernel,
    {
      ...geometry(n, [d, h, wd], [od, oh, ow], r.k, r.stride, r.pad),
      threads,
      ci,
      co,
      tilesX,
      hasBias: r.bias ? 1 : 0,
    },
    [r.x.buffer, pw.buffer, (r.bias ?? r.x).buffer, y.buffer],
    conv3dGeneralKernel.grid(threads, constants),
    constants,
  );
  pw.dispose();
  return y;
}

/**
 * Gradient of {@link conv3dGeneral} with respect to x: gy [N, Co, OD, OH, OW] → [N, Ci, D, H,
 * W], where `xShape` is the forward input's shape (a stride-2 axis maps two sizes to one).
 */
export function conv3dGeneralBackwardInput(
  gy: Tensor,
  w: Tensor,
  xShape: readonly number[],
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "conv3dGeneralBackwardInput";
  const stride = strideZyx(op, opts.stride);
  const k = kernelTriple(op, w);
  checkConvGradShape(op, "gy", gy.shape, conv3dGeneralShape(xShape, w.shape, stride));
  if ((opts.delegate ?? true) && cubicUnitStride(k, stride)) return conv3dBackwardInput(gy, w);
  return runDataGrad({ gy, w, bias: null, xShape, k, stride, pad: pads(k) });
}

/**
 * Gradient of {@link conv3dGeneral} with respect to w: [Co, Ci, kd, kh, kw], the correlation
 * of x and gy summed over N and space. `kernel` is (kd, kh, kw).
 */
export function conv3dGeneralBackwardWeight(
  x: Tensor,
  gy: Tensor,
  kernel: Zyx,
  opts: ConvGeneralOptions = {},
): Tensor {
  const op = "conv3dGeneralBackwardWeight";
  const stride = strideZyx(op, opts.stride);
  assertRank(op, "x", x.shape, 5);
  const co = gy.shape[1];
  checkKernel(op, kernel, `kernel [${kernel}]`);
  const wShape = [co, x.shape[1], ...kernel];
  checkConvGradShape(op, "gy", gy.shape, conv3dGeneralShape(x.shape, wShape, stride));
  if ((opts.delegate ?? true) && cubicUnitStride(kernel, stride)) {
    return conv3dBackwardWeight(x, gy, kernel[0] as 1 | 3);
  }
  return runWeightGradGeneral({ x, gy, k: kernel, stride, pad: pads(kernel), outShape: wShape });
}

/** One run of conv3d_general_dgrad.wgsl: the adjoint of a convolution with w [Co, C, k…]. */
export interface DataGradRun {
  /** The convolution's output side, [N, Co, OD, OH, OW]. */
  gy: Tensor;
  /** Weights in convolution layout [Co, C, kd, kh, kw]. */
  w: Tensor;
  /** Added per channel C (the transposed convolution's bias), or null. */
  bias: Tensor | null;
  /** The convolution's input side, [N, C, D, H, W]: the shape written. */
  xShape: readonly number[];
  k: Zyx;
  stride: Zyx;
  pad: Zyx;
}

/** Records conv3d_general_dgrad.wgsl; shared with the transposed convolution. */
export function runDataGrad(r: DataGradRun): Tensor {
  const [n, c, d, h, wd] = r.xShape;
  const [, co, od, oh, ow] = r.gy.shape;
  const kt = r.k[0] * r.k[1] * r.k[2];
  // W'(c, o, t) = w[o·C·KT + c·KT + t], packed by groups of 8 channels c.
  const pw = packGroups(r.w, c, co, kt, { wO: kt, wI: c * kt });
  const out = new Tensor([n, c, d, h, wd]);
  // Voxels of one phase x ≡ ph (mod SW) per row.
  const tilesQ = Math.ceil(Math.ceil(wd / r.stride[2]) / VX);
  const threads = Math.ceil(c / 8) * n * d * h * r.stride[2] * tilesQ;
  const constants = { KW: r.k[2], SW: r.stride[2] };
  recorder().dispatch(
    conv3dGeneralDataGradKernel,
    {
      ...geometry(n, [d, h, wd], [od, oh, ow], r.k, r.stride, r.pad),
      threads,
      cx: c,
      co,
      tilesQ,
      hasBias: r.bias ? 1 : 0,
    },
    [r.gy.buffer, pw.buffer, (r.bias ?? r.gy).buffer, out.buffer],
    conv3dGeneralDataGradKernel.grid(threads, constants),
    constants,
  );
  pw.dispose();
  return out;
}

/** One run of conv3d_general_wgrad.wgsl. */
export interface WeightGradGeneralRun {
  /** The convolution's input [N, Ci, D, H, W]. */
  x: Tensor;
  /** The convolution's output gradient [N, Co, OD, OH, OW]. */
  gy: Tensor;
  k: Zyx;
  stride: Zyx;
  pad: Zyx;
  /** Shape of the result, Co·Ci·KT values in [Co, Ci, kd, kh, kw] order. */
  outShape: number[];
}

/** Records the weight-gradient partial sums and their reduction. */
export function runWeightGradGeneral(r: WeightGradGeneralRun): Tensor {
  const [n, ci, d, h, wd] = r.x.shape;
  const [, co, od, oh, ow] = r.gy.shape;
  const m = co * ci * r.k[0] * r.k[1] * r.k[2];
  const tilesO = Math.ceil(co / 4);
  const perSlice = r.k[0] * ci * tilesO;
  const rows = n * od * oh;
  // Enough threads to fill the device, sums short enough for f32 (at most about MAX_CHAIN
  // products per accumulator), and the partial sums kept small.
  const wanted = Math.max(
    Math.ceil(targetThreads() / perSlice),
    Math.ceil((rows * ow) / MAX_CHAIN),
  );
  const len = Math.ceil(rows / Math.max(1, Math.min(rows, wanted, Math.floor(PART_LIMIT / m))));
  const slices = Math.ceil(rows / len);
  const part = new Tensor([slices, m]);
  const threads = perSlice * slices;
  const constants = { KH: r.k[1], KW: r.k[2], SW: r.stride[2] };
  recorder().dispatch(
    conv3dGeneralWeightGradKernel,
    {
      ...geometry(n, [d, h, wd], [od, oh, ow], r.k, r.stride, r.pad),
      threads,
      ci,
      co,
      tilesO,
      slices,
      len,
      m,
    },
    [r.x.buffer, r.gy.buffer, part.buffer],
    conv3dGeneralWeightGradKernel.grid(threads, constants),
    constants,
  );
  const out = new Tensor(r.outShape);
  recorder().dispatch(
    sumSlotsKernel,
    { m, slots: slices },
    [part.buffer, out.buffer],
    sumSlotsKernel.grid(m),
  );
  part.dispose();
  return out;
}

/** Partial sums of the weight gradient stay under this many floats. */
const PART_LIMIT = 1 << 22;

/** Products one accumulator of the weight gradient adds, about, at most. */
const MAX_CHAIN = 8192;

/** Threads the weight gradient aims for: a CPU adapter needs a few per core and SIMD lane. */
function targetThreads(): number {
  return adapterKind() === "software" ? 256 : 16384;
}

/** The geometry uniforms of a run. */
function geometry(
  n: number,
  grid: Zyx,
  out: Zyx,
  k: Zyx,
  stride: Zyx,
  pad: Zyx,
): Omit<Record<keyof typeof GEOMETRY, number>, "threads"> {
  const [d, h, w] = grid;
  const [od, oh, ow] = out;
  const [kd, kh] = k;
  const [sd, sh] = stride;
  const [padD, padH, padW] = pad;
  return { n, d, h, w, od, oh, ow, kd, kh, sd, sh, padD, padH, padW };
}

/** Padding k // 2 per axis. */
function pads(k: Zyx): Zyx {
  return [Math.floor(k[0] / 2), Math.floor(k[1] / 2), Math.floor(k[2] / 2)];
}

/** Whether the tuned stride-1 kernels of conv3d.ts cover the case (3×3×3 or 1×1×1). */
function cubicUnitStride(k: Zyx, stride: Zyx): boolean {
  return stride.every((s) => s === 1) && k.every((v) => v === k[0]) && (k[0] === 3 || k[0] === 1);
}

/**
 * Weights read as W(g, i, t) = w[g·wO + i·wI + t] packed for the general kernels: vec4s
 * [((gc·I + i)·KT + t)·2 + h] with channel 8·gc + 4·h + j in component j, zero past G.
 */
function packGroups(
  w: Tensor,
  g: number,
  inner: number,
  kt: number,
  strides: { wO: number; wI: number },
): Tensor {
  const tilesC = Math.ceil(g / 8);
  const pw = new Tensor([tilesC * 8 * inner * kt]);
  recorder().dispatch(
    packWeightsKernel,
    { tilesC, gw: 8, kt, ci: inner, ciPad: inner, co: g, ...strides, wT: 1, wBase: 0 },
    [w.buffer, pw.buffer],
    packWeightsKernel.grid(tilesC * inner),
  );
  return pw;
}

/** The kernel size (kd, kh, kw) of w [Co, Ci, kd, kh, kw]; each must be 1 or 3. */
function kernelTriple(op: string, w: Tensor): Zyx {
  assertRank(op, "w", w.shape, 5);
  const k: Zyx = [w.shape[2], w.shape[3], w.shape[4]];
  checkKernel(op, k, `w [${w.shape}]`);
  return k;
}

function checkKernel(op: string, k: Zyx, what: string): void {
  if (k.length !== 3 || k.some((v) => v !== 1 && v !== 3)) {
    throw new RangeError(`${op}: kernel sizes must be 1 or 3 per axis, got ${what}`);
  }
}

/** Shape checks of the forward; returns (kd, kh, kw). */
function checkConvGeneral(op: string, x: Tensor, w: Tensor, b: Tensor | null): Zyx {
  assertRank(op, "x", x.shape, 5);
  const k = kernelTriple(op, w);
  const [co, ci] = w.shape;
  checkOperands(op, x, w, b, ci, co);
  return k;
}

/**
 * The checks both general convolutions make of x [N, C, …], the weight's input (`ci`) and
 * output (`co`) channels and the bias [co].
 */
export function checkOperands(
  op: string,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  ci: number,
  co: number,
): void {
  const shapes = `x [${x.shape}] w [${w.shape}]`;
  if (ci !== x.shape[1]) {
    throw new Error(`${op}: w has Ci=${ci} but x has C=${x.shape[1]}, ${shapes}`);
  }
  if (b && (b.shape.length !== 1 || b.shape[0] !== co)) {
    throw new Error(`${op}: bias must be [${co}] for w [${w.shape}], got [${b.shape}]`);
  }
  if (x.size === 0 || co === 0) throw new Error(`${op}: empty tensor, ${shapes}`);
}

/** Throws unless a gradient has the shape the forward pass gave. */
export function checkConvGradShape(
  op: string,
  what: string,
  shape: readonly number[],
  want: readonly number[],
): void {
  if (shape.length !== want.length || shape.some((v, i) => v !== want[i])) {
    throw new Error(`${op}: ${what} must be [${want}] for this convolution, got [${shape}]`);
  }
}
