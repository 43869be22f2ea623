/**
 * 3D convolution, stride 1, kernel 3 (padding 1) or 1 (padding 0), forward and backward.
 *
 * Layouts follow PyTorch: x [N, Ci, D, H, W], w [Co, Ci, k, k, k], bias [Co].
 * Six kernels serve this file and `conv_transpose3d.ts`:
 * - `conv3d_pack.wgsl`: weights read through strides (so also channel-swapped and
 *   tap-flipped for the input gradient) packed into per-tile vec4 order;
 * - `conv3d.wgsl`: the 3×3×3 convolution, a register block per thread (forward, and the
 *   input gradient as the convolution of gy with the packed flipped weights);
 * - `conv3d_point.wgsl`: the 1×1×1 convolution, likewise, and through its modes the
 *   transposed convolution and its input gradient;
 * - `conv3d_wgrad.wgsl`: weight-gradient partial sums, one slot per voxel slice;
 * - `conv3d_reduce.wgsl`: adds partial-sum slots;
 * - `conv3d_bias.wgsl`: per-channel partial sums of gy (the bias gradient).
 *
 * Register blocks differ by adapter: see `CONV_TILES` and `WGRAD_TILES` in tuning.ts.
 */

import conv3dWgsl from "../../shaders/conv3d.wgsl" with { type: "text" };
import pointWgsl from "../../shaders/conv3d_point.wgsl" with { type: "text" };
import convStoreWgsl from "../../shaders/lib/conv_store.wgsl" with { type: "text" };
import wgradWgsl from "../../shaders/conv3d_wgrad.wgsl" with { type: "text" };
import reduceWgsl from "../../shaders/conv3d_reduce.wgsl" with { type: "text" };
import biasWgsl from "../../shaders/conv3d_bias.wgsl" with { type: "text" };
import packWgsl from "../../shaders/conv3d_pack.wgsl" with { type: "text" };
import convWindowWgsl from "../../shaders/lib/conv_window.wgsl" with { type: "text" };
import { defineKernel, type KernelSpec, recorder, Tensor } from "../gpu/mod.ts";
import { activationCode, type FusedActivation } from "./elementwise.ts";
import { assertRank, channelRuns } from "./shape.ts";
import { packHalf, type Precision, precision } from "./precision.ts";
import { emptyTexelView, texelsFit, type TexelTexture, texelTexture } from "../gpu/texture.ts";
import {
  adapterKind,
  type ConvTiles,
  convTiles,
  inputBinding,
  UNIFORM_WEIGHT_VEC4S,
  weightBinding,
  weightGradTiles,
} from "./tuning.ts";

export type { ConvTiles };

/**
 * The uniforms both register-block kernels start with: the thread count, the run's sizes
 * (shaders/lib/conv_window.wgsl reads ci, d, h, w) and its blocks along x, y and z.
 */
const BLOCK_GRID = {
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
} as const;

/** Values of {@link BLOCK_GRID} but the thread count, for blocks of VX × 4 rows × (tilesZ). */
function blockGrid(
  r: Pick<ConvRun, "n" | "ci" | "co" | "grid">,
  vx: number,
  tilesZ: number,
): Record<Exclude<keyof typeof BLOCK_GRID, "groups">, number> {
  const [d, h, w] = r.grid;
  return {
    n: r.n,
    ci: r.ci,
    co: r.co,
    d,
    h,
    w,
    tilesX: Math.ceil(w / vx),
    tilesY: Math.ceil(h / 4),
    tilesZ,
  };
}

/** The bindings both convolution kernels start with: input, packed weights, bias, output. */
const CONV_BINDINGS = [
  { name: "src", access: "read" },
  // The same buffer as src, read as aligned vec4s when W % 4 == 0.
  { name: "srcv", access: "read", type: "vec4<f32>" },
  { name: "pw", access: "read", type: "vec4<f32>" },
  { name: "bias", access: "read" },
  { name: "dst", access: "read_write", type: "vec4<f32>" },
] as const;

/**
 * A convolution kernel reading its packed weights through a uniform binding of
 * {@link UNIFORM_WEIGHT_VEC4S} vec4s (see {@link weightBinding}).
 */
function withUniformWeights<S extends KernelSpec>(spec: S, name: string) {
  return defineKernel({
    ...spec,
    name,
    bindings: spec.bindings.map((b) =>
      b.name === "pw" ? { ...b, uniformLength: UNIFORM_WEIGHT_VEC4S } : b
    ),
  });
}

const conv3dSpec = {
  name: "conv3d",
  body: conv3dWgsl,
  fragments: [convWindowWgsl, convStoreWgsl],
  uniforms: {
    ...BLOCK_GRID,
    tilesC: "u32",
    ciPad: "u32",
    hasBias: "u32",
    act: "u32",
    actP: "f32",
  },
  bindings: [
    ...CONV_BINDINGS,
    // F16 = 1: the packed weights and the input as binary16 pairs (other runs bind src here).
    { name: "pwh", access: "read", type: "vec4<u32>" },
    { name: "xh", access: "read", type: "vec4<u32>" },
    { name: "xhs", access: "read", type: "u32" },
    // TEX = 1: src as a texel texture (src/gpu/texture.ts); other runs bind an unused one.
    { name: "xt", access: "read", texture: true },
    // WTEX = 1: pw as a texel texture.
    { name: "wt", access: "read", texture: true },
  ],
  workgroupSize: 64,
  constants: { K: 3, CG: 2, VZ: 4, VX: 8, VEC: 1, F16: 0, TEX: 0, WTEX: 0 },
} satisfies KernelSpec;

export const conv3dKernel = defineKernel(conv3dSpec);

/** The same kernel reading the packed weights through a uniform binding. */
export const conv3dUniformKernel = withUniformWeights(conv3dSpec, "conv3d_uniform");

/**
 * The 1×1×1 convolution (K = 1: heads, and the transposed convolution's modes), a module of
 * its own so that its pipelines compile in a fraction of the 3×3×3 kernel's time.
 */
const pointSpec = {
  name: "conv3d_point",
  body: pointWgsl,
  fragments: [convStoreWgsl],
  uniforms: conv3dSpec.uniforms,
  bindings: [
    ...CONV_BINDINGS,
    // TEX = 1: src as a texel texture (src/gpu/texture.ts); other runs bind an unused one.
    { name: "xt", access: "read", texture: true },
  ],
  workgroupSize: 64,
  constants: { MODE: 0, CG: 2, VZ: 2, VX: 8, VEC: 1, TEX: 0 },
} satisfies KernelSpec;

export const conv3dPointKernel = defineKernel(pointSpec);

/** {@link conv3dPointKernel} reading the packed weights through a uniform binding. */
export const conv3dPointUniformKernel = withUniformWeights(pointSpec, "conv3d_point_uniform");

export const packWeightsKernel = defineKernel({
  name: "conv3d_pack",
  body: packWgsl,
  uniforms: {
    tilesC: "u32",
    gw: "u32",
    kt: "u32",
    ci: "u32",
    ciPad: "u32",
    co: "u32",
    wO: "i32",
    wI: "i32",
    wT: "i32",
    wBase: "i32",
  },
  bindings: [{ name: "wgt", access: "read" }, { name: "pw", access: "read_write" }],
  workgroupSize: 64,
});

export const conv3dWeightGradKernel = defineKernel({
  name: "conv3d_wgrad",
  body: wgradWgsl,
  fragments: [convWindowWgsl],
  uniforms: {
    ...BLOCK_GRID,
    tilesI: "u32",
    tilesO: "u32",
    slices: "u32",
    m: "u32",
    gO: "u32",
    gI: "u32",
  },
  bindings: [
    { name: "src", access: "read" },
    // src and gy again, read as aligned vec4s when W % 4 == 0.
    { name: "srcv", access: "read", type: "vec4<f32>" },
    { name: "gy", access: "read" },
    { name: "gyv", access: "read", type: "vec4<f32>" },
    { name: "part", access: "read_write" },
    // TEX = 1: x and gy as texel textures (src/gpu/texture.ts); other runs bind unused ones.
    { name: "xt", access: "read", texture: true },
    { name: "gyt", access: "read", texture: true },
  ],
  workgroupSize: 64,
  constants: { K: 3, MODE: 0, CG: 1, VZ: 2, VX: 8, VEC: 1, TEX: 0 },
});

export const sumSlotsKernel = defineKernel({
  name: "conv3d_reduce",
  body: reduceWgsl,
  uniforms: { m: "u32", slots: "u32" },
  bindings: [{ name: "part", access: "read" }, { name: "out", access: "read_write" }],
  workgroupSize: 64,
});

export const channelSumsKernel = defineKernel({
  name: "conv3d_bias",
  body: biasWgsl,
  uniforms: { n: "u32", c: "u32", v: "u32", slices: "u32", len: "u32" },
  bindings: [
    { name: "gy", access: "read" },
    // gy again, read as vec4s when V % 4 == 0.
    { name: "gyv", access: "read", type: "vec4<f32>" },
    { name: "part", access: "read_write" },
  ],
  workgroupSize: 64,
  constants: { VEC: 0 },
});

/**
 * Convolution y = x ⊛ w (+ b), stride 1, "same" padding. `w.shape[2]` selects kernel 3
 * (padding 1) or kernel 1 (padding 0). Under `withPrecision("f16", …)` (precision.ts) the
 * operands are read as binary16 where the kernel supports it (see {@link halfEligible}).
 *
 * @example
 * const y = conv3d(x, w, b); // x [1,4,32,32,32], w [8,4,3,3,3], b [8] → y [1,8,32,32,32]
 */
export function conv3d(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  act?: FusedActivation | null,
): Tensor {
  const k = checkConv3d("conv3d", x, w, b);
  if (act && !(act.kind === "relu" || (act.param ?? 1) > 0)) {
    throw new RangeError(`conv3d: a fused ${act.kind} needs a positive parameter`);
  }
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
    act,
    precision: precision(),
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
  const { slices, len, vec } = channelRuns(n, c, v);
  const part = new Tensor([slices, c]);
  recorder().dispatch(
    channelSumsKernel,
    { n, c, v, slices, len },
    [gy.buffer, gy.buffer, part.buffer],
    channelSumsKernel.grid(c * slices),
    { VEC: vec },
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
  /** Activation applied to the output (MODE 0 only). */
  act?: FusedActivation | null;
  /** Operand precision; f16 applies where {@link halfEligible} allows, f32 elsewhere. */
  precision?: Precision;
}

/**
 * Whether conv3d.wgsl reads a run's operands as binary16: K = 3 in MODE 0 with rows of whole
 * vec4<u32>s (W % 8 == 0), with any register block. Other runs stay f32.
 */
export function halfEligible(r: Pick<ConvRun, "k" | "mode" | "grid">): boolean {
  return r.k === 3 && r.mode === 0 && r.grid[2] % 8 === 0;
}

/** Records the convolution kernel; shared with the transposed convolution. */
export function runConv(r: ConvRun): Tensor {
  if (r.mode !== 0 && r.k !== 1) throw new Error("runConv: MODE 1 and 2 need K = 1");
  if (r.act && r.mode !== 0) throw new Error("runConv: a fused activation needs MODE 0");
  const [d, , w] = r.grid;
  const half = r.precision === "f16" && halfEligible(r);
  const t = convTiles(r.k, r.co, w, { half });
  // Channels per tile; K = 1 spends the plane slots on channels (see conv3d_point.wgsl).
  const gw = 4 * t.cg * (r.k === 1 ? t.vz : 1);
  const tilesC = Math.ceil(r.co / gw);
  // K = 1 steps through input channels 4 at a time.
  const ciPad = r.k === 1 ? Math.ceil(r.ci / 4) * 4 : r.ci;
  // F16 reads the binary16 copy (pwh) from storage, so pw stays there too.
  const pwVec4s = (tilesC * gw * ciPad * r.k ** 3) / 4;
  const binding = half
    ? "storage"
    : weightBinding(pwVec4s, { texture: r.k === 3 && texelsFit(pwVec4s) });
  const pw = packWeights(r, tilesC, gw, ciPad, binding === "uniform" ? UNIFORM_WEIGHT_VEC4S : 0);
  const [act, actP] = activationCode(r.act);
  // Aligned vec4 rows (and, in MODE 2, up-sampled rows) need W % 4 == 0.
  const vec = w % 4 === 0 ? 1 : 0;
  const y = new Tensor(r.outShape);
  const uniforms = { tilesC, ciPad, hasBias: r.bias ? 1 : 0, act, actP };
  const block = { CG: t.cg, VZ: t.vz, VX: t.vx, VEC: vec, WG: t.wg };
  // What CONV_BINDINGS name: input (twice), packed weights, bias (or any buffer), output.
  const buffers = [r.src.buffer, r.src.buffer, pw.buffer, (r.bias ?? r.src).buffer, y.buffer];
  if (r.k === 1) {
    // One row of VX voxels per thread (conv3d_point.wgsl).
    const kernel = binding === "uniform" ? conv3dPointUniformKernel : conv3dPointKernel;
    const b = { ...blockGrid(r, t.vx, d), tilesY: r.grid[1] };
    const groups = r.n * tilesC * b.tilesZ * b.tilesY * b.tilesX;
    const tex = texelInput(r.src, vec === 1);
    const constants = { ...block, MODE: r.mode, TEX: tex ? 1 : 0 };
    recorder().dispatch(
      kernel,
      { ...b, groups, ...uniforms },
      [...buffers, tex?.view ?? emptyTexelView()],
      kernel.grid(groups, constants),
      constants,
    );
    tex?.release();
    pw.dispose();
    return y;
  }
  const kernel = binding === "uniform" ? conv3dUniformKernel : conv3dKernel;
  const pwh = half ? packHalf(pw) : null;
  const xh = half ? packHalf(r.src) : null;
  const b = blockGrid(r, t.vx, Math.ceil(d / t.vz));
  const groups = r.n * tilesC * b.tilesZ * b.tilesY * b.tilesX;
  const tex = texelInput(r.src, vec === 1 && !half);
  const wtex = binding === "texture" ? texelTexture(pw.buffer, pwVec4s) : null;
  const constants = { ...block, K: 3, F16: +half, TEX: tex ? 1 : 0, WTEX: wtex ? 1 : 0 };
  recorder().dispatch(
    kernel,
    { ...b, groups, ...uniforms },
    [
      ...buffers,
      (pwh ?? r.src).buffer,
      (xh ?? r.src).buffer,
      (xh ?? r.src).buffer,
      tex?.view ?? emptyTexelView(),
      wtex?.view ?? emptyTexelView(),
    ],
    kernel.grid(groups, constants),
    constants,
  );
  tex?.release();
  wtex?.release();
  pw.dispose();
  pwh?.dispose();
  xh?.dispose();
  return y;
}

/**
 * The input of a convolution as texels where inputBinding (tuning.ts) says so for conv3 (the
 * 1×1×1 kernel follows the 3×3×3 one's choice) and `eligible` (rows of whole vec4s, f32)
 * allows; the caller releases it after recording its dispatch.
 */
function texelInput(src: Tensor, eligible: boolean): TexelTexture | null {
  const texels = src.size / 4;
  return eligible && inputBinding(texelsFit(texels), "conv3") === "texture"
    ? texelTexture(src.buffer, texels)
    : null;
}

/**
 * The weights of a run packed for conv3d.wgsl: [tilesC, ciPad, k³, gw], zero past Co, Ci, in a
 * tensor of at least `minVec4s` vec4s (a uniform binding's declared size).
 */
function packWeights(
  r: ConvRun,
  tilesC: number,
  gw: number,
  ciPad: number,
  minVec4s: number,
): Tensor {
  const kt = r.k ** 3;
  const pw = new Tensor([Math.max(tilesC * gw * ciPad * kt, 4 * minVec4s)]);
  recorder().dispatch(
    packWeightsKernel,
    { tilesC, gw, kt, ci: r.ci, ciPad, co: r.co, ...r.strides },
    [r.wgt.buffer, pw.buffer],
    packWeightsKernel.grid(tilesC * ciPad),
  );
  return pw;
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
  const [d, , w] = r.grid;
  const t = weightGradTiles(r.k, r.co, w);
  // Input channels per thread (RI in the WGSL).
  const ri = r.k === 3 ? 1 : 8;
  const b = blockGrid(r, t.vx, Math.ceil(d / t.vz));
  const tilesO = Math.ceil(r.co / (4 * t.cg));
  const tilesI = Math.ceil(r.ci / ri);
  const blocks = r.n * b.tilesZ * b.tilesY * b.tilesX;
  const m = r.co * r.ci * r.k ** 3;
  // Enough threads to fill the device and short enough sums for f32 (each accumulator adds
  // at most MAX_CHAIN products), with the partial sums (slices × M) kept small.
  const wanted = Math.max(
    Math.ceil(reductionThreads() / (tilesO * tilesI)),
    Math.ceil((blocks * t.vz * 4 * t.vx) / MAX_CHAIN),
  );
  const slices = Math.max(1, Math.min(blocks, wanted, Math.floor(PART_LIMIT / m)));
  const part = new Tensor([slices, m]);
  const groups = tilesI * tilesO * slices;
  const vec = w % 4 === 0 ? 1 : 0;
  // x and gy as texels (see inputBinding): K = 3 rows of whole vec4s in MODE 0.
  const [xTexels, gyTexels] = [r.x.size / 4, r.gy.size / 4];
  const tex = r.k === 3 && r.mode === 0 && vec === 1 &&
    inputBinding(texelsFit(xTexels) && texelsFit(gyTexels), "wgrad3") === "texture";
  const xt = tex ? texelTexture(r.x.buffer, xTexels) : null;
  const gyt = tex ? texelTexture(r.gy.buffer, gyTexels) : null;
  const constants = {
    K: r.k,
    MODE: r.mode,
    CG: t.cg,
    VZ: t.vz,
    VX: t.vx,
    VEC: vec,
    WG: t.wg,
    TEX: tex ? 1 : 0,
  };
  recorder().dispatch(
    conv3dWeightGradKernel,
    {
      ...b,
      groups,
      tilesI,
      tilesO,
      slices,
      m,
      gO: r.gO,
      gI: r.gI,
    },
    [
      r.x.buffer,
      r.x.buffer,
      r.gy.buffer,
      r.gy.buffer,
      part.buffer,
      xt?.view ?? emptyTexelView(),
      gyt?.view ?? emptyTexelView(),
    ],
    conv3dWeightGradKernel.grid(groups, constants),
    constants,
  );
  xt?.release();
  gyt?.release();
  const out = sumSlots(part, slices, m, r.outShape);
  part.dispose();
  return out;
}

/** Partial sums of the weight gradient stay under this many floats. */
const PART_LIMIT = 1 << 22;

/** Products one thread adds into an accumulator of the weight gradient, at most. */
const MAX_CHAIN = 8192;

/** Threads the weight gradient aims for: a CPU adapter needs a few per core and SIMD lane. */
function reductionThreads(): number {
  return adapterKind() === "software" ? 256 : 16384;
}

/** out[m] = Σ_j part[j·M + m]. */
function sumSlots(part: Tensor, slots: number, m: number, shape: number[]): Tensor {
  const out = new Tensor(shape);
  recorder().dispatch(
    sumSlotsKernel,
    { m, slots },
    [part.buffer, out.buffer],
    sumSlotsKernel.grid(m),
  );
  return out;
}
