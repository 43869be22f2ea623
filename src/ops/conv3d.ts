/**
 * 3D convolution, stride 1, kernel 3 (padding 1) or 1 (padding 0), forward and backward.
 *
 * Layouts follow PyTorch: x [N, Ci, D, H, W], w [Co, Ci, k, k, k], bias [Co].
 * Four kernels serve this file and `conv_transpose3d.ts`:
 * - `conv3d.wgsl`: the convolution as an implicit GEMM (forward, and the input gradient as the
 *   convolution of gy with channel-swapped, tap-flipped weights read through strides);
 * - `conv3d_wgrad.wgsl`: weight-gradient partial sums, one slot per workgroup slice and block;
 * - `conv3d_reduce.wgsl`: adds partial-sum slots;
 * - `conv3d_bias.wgsl`: per-channel partial sums of gy (the bias gradient).
 */

import conv3dWgsl from "../../shaders/conv3d.wgsl" with { type: "text" };
import wgradWgsl from "../../shaders/conv3d_wgrad.wgsl" with { type: "text" };
import reduceWgsl from "../../shaders/conv3d_reduce.wgsl" with { type: "text" };
import biasWgsl from "../../shaders/conv3d_bias.wgsl" with { type: "text" };
import { commands, defineKernel, gpu, grid1d, Tensor } from "../gpu/mod.ts";
import { assertRank } from "./shape.ts";

export const conv3dKernel = defineKernel({
  name: "conv3d",
  body: conv3dWgsl,
  uniforms: {
    groups: "u32",
    n: "u32",
    ci: "u32",
    co: "u32",
    d: "u32",
    h: "u32",
    w: "u32",
    tilesX: "u32",
    tilesY: "u32",
    tilesZ: "u32",
    tilesC: "u32",
    wO: "i32",
    wI: "i32",
    wT: "i32",
    wBase: "i32",
    hasBias: "u32",
  },
  bindings: [
    { name: "src", access: "read" },
    { name: "wgt", access: "read" },
    { name: "bias", access: "read" },
    { name: "dst", access: "read_write" },
  ],
  constants: { K: 3, MODE: 0, CG: 4, BX: 2, BY: 2, BZ: 4, CI_CHUNK: 4 },
});

export const conv3dWeightGradKernel = defineKernel({
  name: "conv3d_wgrad",
  body: wgradWgsl,
  uniforms: {
    groups: "u32",
    n: "u32",
    ci: "u32",
    co: "u32",
    d: "u32",
    h: "u32",
    w: "u32",
    tilesX: "u32",
    tilesY: "u32",
    tilesZ: "u32",
    tilesI: "u32",
    slices: "u32",
    m: "u32",
    gO: "u32",
    gI: "u32",
  },
  bindings: [
    { name: "src", access: "read" },
    { name: "gy", access: "read" },
    { name: "part", access: "read_write" },
  ],
  constants: { K: 3, MODE: 0, CG: 4, TI: 4, RI: 1, BX: 2, BY: 1, BZ: 2 },
});

export const sumSlotsKernel = defineKernel({
  name: "conv3d_reduce",
  body: reduceWgsl,
  uniforms: { m: "u32", slots: "u32" },
  bindings: [{ name: "part", access: "read" }, { name: "out", access: "read_write" }],
  constants: { WG: 64 },
});

export const channelSumsKernel = defineKernel({
  name: "conv3d_bias",
  body: biasWgsl,
  uniforms: { n: "u32", c: "u32", v: "u32", slices: "u32", len: "u32" },
  bindings: [{ name: "gy", access: "read" }, { name: "part", access: "read_write" }],
  constants: { WG: 64 },
});

/**
 * Workgroups a reduction over voxels aims for: enough to fill the device, few enough to keep
 * the partial-sum slots (and their final addition) small. A CPU adapter runs one workgroup per
 * core at a time, so a few dozen suffice there.
 */
function reductionGroups(): number {
  return gpu().info.isFallbackAdapter ? 64 : 512;
}

/** Register block of one thread in the convolution and weight-gradient kernels (z, y, x). */
const BLOCK = [2, 4, 4] as const;

/**
 * Convolution y = x ⊛ w (+ b), stride 1, "same" padding. `w.shape[2]` selects kernel 3
 * (padding 1) or kernel 1 (padding 0).
 *
 * @example
 * const y = conv3d(x, w, b); // x [1,4,32,32,32], w [8,4,3,3,3], b [8] → y [1,8,32,32,32]
 */
export function conv3d(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  const k = checkConv3d("conv3d", x, w, b);
  const [n, ci, d, h, wd] = x.shape;
  const co = w.shape[0];
  const kt = k ** 3;
  return runConv({
    src: x,
    wgt: w,
    bias: b,
    n,
    ci,
    co,
    grid: [d, h, wd],
    k,
    mode: 0,
    strides: { wO: ci * kt, wI: kt, wT: 1, wBase: 0 },
    outShape: [n, co, d, h, wd],
  });
}

/** Gradient of {@link conv3d} with respect to x: gy convolved with the flipped, transposed w. */
export function conv3dBackwardInput(gy: Tensor, w: Tensor): Tensor {
  assertRank("conv3dBackwardInput", "w", w.shape, 5);
  assertRank("conv3dBackwardInput", "gy", gy.shape, 5);
  const [co, ci, k] = w.shape;
  if (gy.shape[1] !== co) {
    throw new Error(
      `conv3dBackwardInput: gy has C=${gy.shape[1]} but w has Co=${co}, ` +
        `gy [${gy.shape}] w [${w.shape}]`,
    );
  }
  const [n, , d, h, wd] = gy.shape;
  const kt = k ** 3;
  return runConv({
    src: gy,
    wgt: w,
    bias: null,
    n,
    ci: co,
    co: ci,
    grid: [d, h, wd],
    k: k as 1 | 3,
    mode: 0,
    strides: { wO: kt, wI: ci * kt, wT: -1, wBase: kt - 1 },
    outShape: [n, ci, d, h, wd],
  });
}

/**
 * Gradient of {@link conv3d} with respect to w [Co, Ci, k, k, k]: the correlation of x and gy
 * summed over N and space.
 */
export function conv3dBackwardWeight(x: Tensor, gy: Tensor, k: 1 | 3): Tensor {
  assertRank("conv3dBackwardWeight", "x", x.shape, 5);
  assertRank("conv3dBackwardWeight", "gy", gy.shape, 5);
  const [n, ci, d, h, wd] = x.shape;
  const co = gy.shape[1];
  if (gy.shape[0] !== n || gy.shape[2] !== d || gy.shape[3] !== h || gy.shape[4] !== wd) {
    throw new Error(`conv3dBackwardWeight: x [${x.shape}] and gy [${gy.shape}] differ`);
  }
  const kt = k ** 3;
  return runWeightGrad({
    x,
    gy,
    n,
    ci,
    co,
    grid: [d, h, wd],
    k,
    mode: 0,
    gO: ci * kt,
    gI: kt,
    outShape: [co, ci, k, k, k],
  });
}

/** Gradient of a per-channel bias: gy [N, C, …] summed over N and space, shape [C]. */
export function biasGrad(gy: Tensor): Tensor {
  if (gy.shape.length < 2) throw new Error(`biasGrad: gy must be [N, C, …], got [${gy.shape}]`);
  const [n, c] = gy.shape;
  const v = gy.shape.slice(2).reduce((a, b) => a * b, 1);
  const slices = Math.max(1, Math.min(Math.ceil(reductionGroups() / c), Math.ceil(v / 1024)));
  const len = Math.ceil(v / slices);
  const part = new Tensor([slices, c]);
  commands().dispatch(
    channelSumsKernel,
    { n, c, v, slices, len },
    [gy.buffer, part.buffer],
    grid1d(c * slices),
  );
  const out = sumSlots(part, slices, c, [c]);
  part.dispose();
  return out;
}

/** Shape checks shared by conv3d; returns the kernel size. */
function checkConv3d(op: string, x: Tensor, w: Tensor, b: Tensor | null): 1 | 3 {
  assertRank(op, "x", x.shape, 5);
  assertRank(op, "w", w.shape, 5);
  const [co, ci, kz, ky, kx] = w.shape;
  const shapes = `x [${x.shape}] w [${w.shape}]`;
  if (!(kz === ky && ky === kx && (kz === 3 || kz === 1))) {
    throw new Error(`${op}: kernel must be 3×3×3 or 1×1×1, got w [${w.shape}]`);
  }
  if (ci !== x.shape[1]) {
    throw new Error(`${op}: w has Ci=${ci} but x has C=${x.shape[1]}, ${shapes}`);
  }
  if (b && (b.shape.length !== 1 || b.shape[0] !== co)) {
    throw new Error(`${op}: bias must be [${co}] for w [${w.shape}], got [${b.shape}]`);
  }
  if (x.size === 0 || co === 0) throw new Error(`${op}: empty tensor, ${shapes}`);
  return kz as 1 | 3;
}

/** How the convolution kernel reads W(o, i, t) = w[wBase + o·wO + i·wI + t·wT]. */
export interface WeightStrides {
  wO: number;
  wI: number;
  wT: number;
  wBase: number;
}

/** One run of the convolution kernel; channel counts and grid as the kernel sees them. */
export interface ConvRun {
  src: Tensor;
  wgt: Tensor;
  bias: Tensor | null;
  n: number;
  ci: number;
  co: number;
  /** Voxel grid D, H, W the kernel iterates over (the input grid for the transposed conv). */
  grid: readonly [number, number, number];
  k: 1 | 3;
  /** 0 plain, 1 output written 2×-upsampled by tap, 2 input read that way (see the WGSL). */
  mode: 0 | 1 | 2;
  strides: WeightStrides;
  outShape: number[];
}

/** Records the convolution kernel; shared with the transposed convolution. */
export function runConv(r: ConvRun): Tensor {
  const [d, h, w] = r.grid;
  const cg = Math.min(4, Math.ceil(r.co / 4));
  const [bz, by, bx] = CONV_TILES[cg];
  // Workgroup memory per input channel of a chunk: input patch with halo plus weights (vec4s).
  const sz = bz * BLOCK[0] + r.k - 1;
  const sy = by * BLOCK[1] + r.k - 1;
  const sx = Math.ceil((bx * BLOCK[2] + r.k - 1) / 4);
  const perChannel = (sz * sy * sx + r.k ** 3 * cg) * 16;
  const ciChunk = chunkSize(r.ci, Math.max(1, Math.min(8, Math.floor(sharedBytes() / perChannel))));
  const tilesX = Math.ceil(w / (bx * BLOCK[2]));
  const tilesY = Math.ceil(h / (by * BLOCK[1]));
  const tilesZ = Math.ceil(d / (bz * BLOCK[0]));
  const tilesC = Math.ceil(r.co / (4 * cg));
  const groups = r.n * tilesC * tilesZ * tilesY * tilesX;
  const y = new Tensor(r.outShape);
  commands().dispatch(
    conv3dKernel,
    {
      groups,
      n: r.n,
      ci: r.ci,
      co: r.co,
      d,
      h,
      w,
      tilesX,
      tilesY,
      tilesZ,
      tilesC,
      ...r.strides,
      hasBias: r.bias ? 1 : 0,
    },
    [r.src.buffer, r.wgt.buffer, (r.bias ?? r.wgt).buffer, y.buffer],
    grid1d(groups),
    { K: r.k, MODE: r.mode, CG: cg, BX: bx, BY: by, BZ: bz, CI_CHUNK: ciChunk },
  );
  return y;
}

/** One run of the weight-gradient kernel; G(o, i, t) lands at o·gO + i·gI + t. */
export interface WeightGradRun {
  x: Tensor;
  gy: Tensor;
  n: number;
  ci: number;
  co: number;
  grid: readonly [number, number, number];
  k: 1 | 3;
  /** 0 plain gy, 1 gy read 2×-upsampled by tap (transposed conv). */
  mode: 0 | 1;
  gO: number;
  gI: number;
  outShape: number[];
}

/** Records the weight-gradient partial sums and their reduction. */
export function runWeightGrad(r: WeightGradRun): Tensor {
  const [d, h, w] = r.grid;
  // K = 3: a thread owns 4 channels o × 1 channel i × 27 taps; K = 1: 4 o × 4 i (an outer
  // product per voxel). Wide channel tiles let one staged tile serve up to 32 o × 16 i.
  const ri = r.k === 3 ? 1 : 4;
  const cg = Math.min(8, Math.ceil(r.co / 4));
  const ti = ri * Math.min(16 / ri, Math.ceil(r.ci / ri));
  // Voxel blocks per tile: up to 128 threads, within workgroup memory (x patch + gy tile).
  const threads = cg * (ti / ri);
  let nb = Math.max(1, Math.min(16, 2 ** Math.floor(Math.log2(128 / threads))));
  while (nb > 1 && weightGradSharedBytes(nb, cg, ti, r.k) > sharedBytes()) nb /= 2;
  const [bz, by, bx] = WGRAD_TILES[nb];
  const tilesX = Math.ceil(w / (bx * BLOCK[2]));
  const tilesY = Math.ceil(h / (by * BLOCK[1]));
  const tilesZ = Math.ceil(d / (bz * BLOCK[0]));
  const tilesO = Math.ceil(r.co / (4 * cg));
  const tilesI = Math.ceil(r.ci / ti);
  const tiles = r.n * tilesZ * tilesY * tilesX;
  const slices = Math.max(1, Math.min(tiles, Math.ceil(reductionGroups() / (tilesO * tilesI))));
  const m = r.co * r.ci * r.k ** 3;
  const slots = slices * nb;
  const part = new Tensor([slots, m]);
  const groups = tilesO * tilesI * slices;
  commands().dispatch(
    conv3dWeightGradKernel,
    {
      groups,
      n: r.n,
      ci: r.ci,
      co: r.co,
      d,
      h,
      w,
      tilesX,
      tilesY,
      tilesZ,
      tilesI,
      slices,
      m,
      gO: r.gO,
      gI: r.gI,
    },
    [r.x.buffer, r.gy.buffer, part.buffer],
    grid1d(groups),
    { K: r.k, MODE: r.mode, CG: cg, TI: ti, RI: ri, BX: bx, BY: by, BZ: bz },
  );
  const out = sumSlots(part, slots, m, r.outShape);
  part.dispose();
  return out;
}

/** out[m] = Σ_j part[j·M + m]. */
function sumSlots(part: Tensor, slots: number, m: number, shape: number[]): Tensor {
  const out = new Tensor(shape);
  commands().dispatch(
    sumSlotsKernel,
    { m, slots },
    [part.buffer, out.buffer],
    grid1d(Math.ceil(m / 64)),
  );
  return out;
}

/**
 * Input channels per staged chunk, at most `max`. Each chunk costs its channels (padding
 * channels past Ci are FMAs on zeros) plus about half a channel of staging and barriers.
 */
function chunkSize(ci: number, max: number): number {
  const cost = (c: number) => Math.ceil(ci / c) * (c + 0.5);
  let best = 1;
  for (let c = 2; c <= Math.min(max, ci); c++) if (cost(c) <= cost(best)) best = c;
  return best;
}

/**
 * Voxel blocks (z, y, x) per convolution tile for 1–4 output-channel groups: about 64 threads,
 * fewer channel groups leaving room for more blocks.
 */
const CONV_TILES: Record<number, [number, number, number]> = {
  1: [4, 4, 4],
  2: [4, 2, 4],
  3: [4, 1, 4],
  4: [4, 2, 2],
};

/** Voxel blocks (z, y, x) per weight-gradient tile, by block count. */
const WGRAD_TILES: Record<number, [number, number, number]> = {
  1: [1, 1, 1],
  2: [2, 1, 1],
  4: [2, 1, 2],
  8: [2, 2, 2],
  16: [4, 2, 2],
};

function weightGradSharedBytes(nb: number, cg: number, ti: number, k: number): number {
  const [bz, by, bx] = WGRAD_TILES[nb];
  const [tz, ty, tx] = [bz * BLOCK[0], by * BLOCK[1], bx * BLOCK[2]];
  const patch = ti * (tz + k - 1) * (ty + k - 1) * Math.ceil((tx + k - 1) / 4);
  return (patch + tz * ty * tx * cg) * 16;
}

function sharedBytes(): number {
  return gpu().device.limits.maxComputeWorkgroupStorageSize;
}
