/**
 * The geometry half of planning (nnU-Net's rules): target spacing, median resampled shape, the
 * planned network's pooling strides and kernels per axis, what today's UNet3D (isotropic 2×
 * pooling) can run, and estimates of training memory and FLOPs used to fit a patch to a GPU.
 * Pure arithmetic; shapes and spacings are z, y, x (D, H, W).
 */

import { percentileSorted } from "../../data/dataset.ts";
import type { Shape3 } from "../../data/volume.ts";
import type { LevelPlan, MemoryEstimate } from "./types.ts";

/** Bytes in a mebibyte and a gibibyte. */
export const MiB = 2 ** 20, GiB = 2 ** 30;

/**
 * Limits assumed when the caller gives none: 4 GiB of GPU memory and WebGPU's guaranteed
 * buffer limits (every adapter offers at least these; pass the adapter's own for bigger plans).
 */
export const DEFAULT_PLAN_LIMITS = {
  gpuMemoryBytes: 4 * GiB,
  maxStorageBufferBindingSize: 128 * MiB,
  maxBufferSize: 256 * MiB,
};

/** The GPU limits a plan is fitted to, bytes. */
export type PlanLimits = typeof DEFAULT_PLAN_LIMITS;

// ---------------------------------------------------------------------------------------------
// Spacing and shape

/**
 * The target spacing: the per-axis median of the cases' spacings; when the coarsest median is
 * more than 3× the finest (anisotropic), that axis takes its 10th percentile instead (nnU-Net),
 * never finer than the other axes.
 *
 * @example
 * planSpacing([[5, 0.7, 0.7], [3, 0.8, 0.8], [5, 0.7, 0.7]]).spacingMm // [3.4, 0.7, 0.7]
 */
export function planSpacing(spacings: Shape3[]): { spacingMm: Shape3; reason: string } {
  if (spacings.length === 0) throw new RangeError("planSpacing needs at least one case");
  const sortedAxis = (a: number) => spacings.map((s) => s[a]).sort((x, y) => x - y);
  const median = [0, 1, 2].map((a) => percentileSorted(sortedAxis(a), 50)) as Shape3;
  const ratio = Math.max(...median) / Math.min(...median);
  const base = `per-axis median of ${spacings.length} cases`;
  if (ratio <= 3) {
    return { spacingMm: median, reason: `${base} (coarsest/finest ${num(ratio)} ≤ 3: isotropic)` };
  }
  const axis = median.indexOf(Math.max(...median));
  const p10 = percentileSorted(sortedAxis(axis), 10);
  const others = Math.max(...median.filter((_, i) => i !== axis));
  const spacingMm = [...median] as Shape3;
  spacingMm[axis] = Math.max(p10, others);
  return {
    spacingMm,
    reason: `${base}; anisotropic (coarsest/finest ${num(ratio)} > 3), so the ${
      "zyx"[axis]
    } axis takes its 10th percentile ${num(p10)} mm (nnU-Net)`,
  };
}

/** The per-axis median of the case shapes resampled to `spacingMm` (D, H, W, rounded). */
export function medianResampledShape(
  cases: { shape: Shape3; spacingMm: Shape3 }[],
  spacingMm: Shape3,
): Shape3 {
  return [0, 1, 2].map((a) => {
    const sizes = cases.map((c) => (c.shape[a] * c.spacingMm[a]) / spacingMm[a]);
    return Math.max(1, Math.round(percentileSorted(sizes.sort((x, y) => x - y), 50)));
  }) as Shape3;
}

// ---------------------------------------------------------------------------------------------
// Topology

/** Options of {@link poolingTopology}. */
export interface TopologyOptions {
  baseChannels: number;
  maxChannels: number;
  maxLevels: number;
  /** Smallest feature-map edge after pooling (default 4). */
  minEdge?: number;
}

/**
 * nnU-Net's pooling and kernel rules for a patch at a spacing. Per level, an axis is pooled by 2
 * while its feature edge stays ≥ `minEdge` and its spacing is ≤ 2× the finest poolable one (so
 * a coarse axis waits until the others catch up); kernels are 1 along an axis still more than
 * 2× coarser than the finest, else 3 (once 3, always 3); channels double from the base, capped.
 * The patch is padded up to the product of the strides.
 *
 * @example
 * poolingTopology([5, 0.7, 0.7], [40, 192, 160], { baseChannels: 32, maxChannels: 320,
 *   maxLevels: 8 }).levels[1] // stride [1,2,2], kernel [1,3,3]
 */
export function poolingTopology(
  spacingMm: Shape3,
  patch: Shape3,
  { baseChannels, maxChannels, maxLevels, minEdge = 4 }: TopologyOptions,
): { patchSize: Shape3; divisibleBy: Shape3; levels: LevelPlan[] } {
  const spacing = [...spacingMm], size = [...patch], kernel = [1, 1, 1];
  const strides: Shape3[] = [[1, 1, 1]], kernels: Shape3[] = [];
  const updateKernel = () => {
    const finest = Math.min(...spacing);
    for (let a = 0; a < 3; a++) if (spacing[a] <= 2 * finest) kernel[a] = 3;
    kernels.push([...kernel] as Shape3);
  };
  while (strides.length < maxLevels) {
    let axes = [0, 1, 2].filter((a) => size[a] >= 2 * minEdge);
    if (axes.length === 0) break;
    const finest = Math.min(...axes.map((a) => spacing[a]));
    axes = axes.filter((a) => spacing[a] <= 2 * finest);
    if (axes.length === 1 && size[axes[0]] < 3 * minEdge) break;
    updateKernel();
    const stride: Shape3 = [1, 1, 1];
    for (const a of axes) {
      stride[a] = 2;
      spacing[a] *= 2;
      size[a] = Math.ceil(size[a] / 2);
    }
    strides.push(stride);
  }
  updateKernel();
  const divisibleBy = [0, 1, 2].map((a) => strides.reduce((p, s) => p * s[a], 1)) as Shape3;
  const patchSize = patch.map((p, a) => Math.ceil(p / divisibleBy[a]) * divisibleBy[a]) as Shape3;
  const cumulative: Shape3 = [1, 1, 1];
  const levels = strides.map((stride, l): LevelPlan => {
    for (let a = 0; a < 3; a++) cumulative[a] *= stride[a];
    return {
      stride,
      kernel: kernels[l],
      channels: Math.min(baseChannels * 2 ** l, maxChannels),
      featureShape: patchSize.map((p, a) => p / cumulative[a]) as Shape3,
    };
  });
  return { patchSize, divisibleBy, levels };
}

/**
 * Today's UNet3D levels: isotropic 2× pooling, 3×3×3 kernels, `base·2^l` channels (uncapped).
 * The patch must be divisible by 2^(depth − 1).
 */
export function unet3dLevels(patch: Shape3, depth: number, baseChannels: number): LevelPlan[] {
  return Array.from({ length: depth }, (_, l): LevelPlan => ({
    stride: l === 0 ? [1, 1, 1] : [2, 2, 2],
    kernel: [3, 3, 3],
    channels: baseChannels * 2 ** l,
    featureShape: patch.map((p) => p / 2 ** l) as Shape3,
  }));
}

/**
 * The deepest UNet3D depth (≤ `maxDepth`) a patch allows: every axis divisible by
 * 2^(depth − 1) and the smallest feature edge ≥ `minEdge`.
 *
 * @example
 * unet3dDepth([32, 64, 64], 8) // 4: 32 / 2³ = 4
 */
export function unet3dDepth(patch: Shape3, maxDepth: number, minEdge = 4): number {
  let d = 1;
  while (d < maxDepth && patch.every((p) => p % 2 ** d === 0 && p / 2 ** d >= minEdge)) d++;
  return d;
}

/**
 * The deepest UNet3D depth (≤ `maxDepth`) whose bottleneck edge stays ≥ `minEdge` for the
 * patch's smallest edge, and the patch rounded down to multiples of 2^(depth − 1).
 */
export function roundForUNet3D(patch: Shape3, maxDepth: number, minEdge = 4) {
  const edge = Math.min(...patch);
  const depth = Math.max(1, Math.min(maxDepth, 1 + Math.floor(Math.log2(edge / minEdge))));
  const m = 2 ** (depth - 1);
  return { depth, patchSize: patch.map((p) => Math.max(m, Math.floor(p / m) * m)) as Shape3 };
}

// ---------------------------------------------------------------------------------------------
// Memory

/** A network as the memory and FLOP estimates see it. */
export interface NetworkShape {
  inChannels: number;
  classes: number;
  convsPerLevel: number;
  levels: LevelPlan[];
  /**
   * 1×1×1 auxiliary heads on the decoder levels 1 … levels − 2 (deep supervision; every plan
   * trains with them): their logits, probabilities and gradients are saved too.
   */
  deepSupervision?: boolean;
}

/**
 * Values saved for backward per convolution (its output, the normalisation output and the
 * activation output): 3 is exact with a normalisation layer and conservative without.
 */
const SAVED_PER_CONV = 3;
/** Bytes per parameter while training: weight, gradient, Adam's two moments (f32 each). */
const BYTES_PER_PARAM = 16;

/**
 * Estimated training memory of a network for a batch: f32 activations saved for backward
 * (per level: convolutions × {@link SAVED_PER_CONV} × feature voxels × channels, pooling
 * indices, the decoder's upsampled and concatenated maps, the head's logits, softmax and
 * gradient, plus two of the largest buffers live during backward) and weights with gradients
 * and Adam state. `largestBufferBytes` is the biggest single tensor (the level-0 concat).
 */
export function estimateTrainingMemory(
  net: NetworkShape,
  batch: number,
  limits: PlanLimits = DEFAULT_PLAN_LIMITS,
): MemoryEstimate & { activationBytes: number; parameterBytes: number } {
  const { inChannels, classes, convsPerLevel: convs, levels } = net;
  const vox = (s: Shape3) => s[0] * s[1] * s[2];
  const v0 = vox(levels[0].featureShape);
  let values = inChannels * v0 + 3 * classes * v0, largest = inChannels * v0;
  let params = levels[0].channels * classes + classes, largestWeight = 0;
  const conv = (k: Shape3, cin: number, cout: number) => {
    const n = k[0] * k[1] * k[2] * cin * cout;
    largestWeight = Math.max(largestWeight, n);
    params += n + cout;
  };
  levels.forEach(({ kernel, channels: c, featureShape }, l) => {
    const v = vox(featureShape), last = l === levels.length - 1;
    values += convs * SAVED_PER_CONV * c * v + (l > 0 ? levels[l - 1].channels * v : 0);
    for (let i = 0; i < convs; i++) {
      conv(kernel, i > 0 ? c : l > 0 ? levels[l - 1].channels : inChannels, c);
    }
    if (last) {
      largest = Math.max(largest, c * v);
      return;
    }
    values += 3 * c * v + convs * SAVED_PER_CONV * c * v; // upsampled, concat (2c), decoder convs
    largest = Math.max(largest, 2 * c * v);
    const up = levels[l + 1];
    conv(up.stride, up.channels, c);
    for (let i = 0; i < convs; i++) conv(kernel, i > 0 ? c : 2 * c, c);
  });
  if (net.deepSupervision) {
    for (let l = 1; l < levels.length - 1; l++) {
      values += 3 * classes * vox(levels[l].featureShape);
      params += levels[l].channels * classes + classes;
    }
  }
  values += 2 * largest;
  const activationBytes = batch * values * 4, parameterBytes = params * BYTES_PER_PARAM;
  const totalBytes = activationBytes + parameterBytes;
  const largestBufferBytes = Math.max(batch * largest, largestWeight) * 4;
  const fits = totalBytes <= limits.gpuMemoryBytes &&
    largestBufferBytes <= Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  return { totalBytes, largestBufferBytes, fits, activationBytes, parameterBytes };
}

/**
 * Multiply-adds × 2 of one training step (forward + backward ≈ 3× forward) for a network and
 * batch: convolutions, transposed convolutions and the head.
 */
export function stepFlops(net: NetworkShape, batch: number): number {
  const vox = (s: Shape3) => s[0] * s[1] * s[2];
  const { levels, convsPerLevel: convs } = net;
  let forward = 2 * vox(levels[0].featureShape) * levels[0].channels * net.classes;
  levels.forEach(({ kernel, channels: c, featureShape }, l) => {
    const k = kernel[0] * kernel[1] * kernel[2], v = vox(featureShape);
    const cin = l > 0 ? levels[l - 1].channels : net.inChannels;
    forward += 2 * k * v * c * (cin + (convs - 1) * c);
    if (l === levels.length - 1) return;
    const up = levels[l + 1];
    forward += 2 * v * up.channels * c; // transposed conv: each output voxel sees one input
    forward += 2 * k * v * c * (2 * c + (convs - 1) * c);
  });
  return 3 * forward * batch;
}

/**
 * Shrinks a patch until `build(patch)` fits: each time the axis largest relative to the median
 * shape loses one step of its divisibility (nnU-Net), down to an edge of 8.
 */
export function fitPatch<T extends { patchSize: Shape3; step: Shape3; memory: MemoryEstimate }>(
  start: Shape3,
  median: Shape3,
  build: (patch: Shape3) => T,
): { result: T; shrunk: boolean } {
  let result = build(start), shrunk = false;
  for (let i = 0; i < 100_000 && !result.memory.fits; i++) {
    const p = result.patchSize, s = result.step;
    const axes = [0, 1, 2].filter((a) => p[a] - s[a] >= 8);
    if (axes.length === 0) break;
    const ratio = (a: number) => p[a] / median[a];
    const axis = axes.reduce((best, a) => (ratio(a) > ratio(best) ? a : best));
    const next = [...p] as Shape3;
    next[axis] -= s[axis];
    result = build(next);
    shrunk = true;
  }
  return { result, shrunk };
}

/** A number for a reason string: integers as they are, others to 3 significant digits. */
export function num(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
}
