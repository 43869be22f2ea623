/**
 * Resampling volumes to another voxel grid of the same extent: images by (tri)linear or cubic
 * interpolation, label maps by interpolating each class's one-hot map linearly and taking the
 * arg-max (nnU-Net's and MONAI's way of resampling segmentations).
 *
 * Grid convention (PyTorch's `align_corners=False`, scikit-image's `resize`): grids share their
 * extent, and output voxel o along an axis of n_out voxels samples the input at
 * (o + ½)·n_in/n_out − ½, clamped to the first and last voxel centres. The grid of n voxels of
 * spacing s resampled to a target spacing t has round(n·s/t) voxels, so its spacing n·s/n_out
 * is within half a voxel of t over the extent, and resampling back lands exactly on the
 * original grid. When n_out = n_in every sample falls on a voxel centre: resampling is the
 * identity, bit for bit.
 *
 * Interpolation is separable and done one axis at a time (x, then y, then z), so only one
 * intermediate volume is alive at a time. Order 3 is the Catmull-Rom cubic (Keys, a = −½):
 * it passes through the samples, reproduces polynomials up to degree 2, and needs no
 * prefilter; taps beyond an edge repeat the edge voxel. Like nnU-Net, an axis whose spacing
 * is more than {@link ANISOTROPY_RATIO} times the finest (coarse slices of anisotropic data)
 * is interpolated linearly even when order 3 is asked for.
 *
 * Axis order everywhere: z, y, x (D, H, W); memory x fastest.
 */

import { type Box3, checkBox, croppedAffine } from "./crop.ts";
import type { Shape3, Volume } from "./volume.ts";

/** Interpolation order: 1 linear, 3 cubic (Catmull-Rom). */
export type InterpolationOrder = 1 | 3;

/** One {@link InterpolationOrder} per axis, z, y, x. */
export type AxisOrders = [InterpolationOrder, InterpolationOrder, InterpolationOrder];

/** Spacing ratio (axis / finest axis) above which an axis is interpolated linearly. */
export const ANISOTROPY_RATIO = 3;

/** Where each output index of one axis samples the input: between i0 and i1, weight t on i1. */
export interface AxisMap {
  i0: Int32Array;
  i1: Int32Array;
  t: Float32Array;
}

/** The {@link AxisMap} from an axis of `nIn` voxels to one of `nOut` (module convention). */
export function axisMap(nOut: number, nIn: number): AxisMap {
  const i0 = new Int32Array(nOut), i1 = new Int32Array(nOut), t = new Float32Array(nOut);
  for (let o = 0; o < nOut; o++) {
    const s = samplePosition(o, nOut, nIn);
    i0[o] = Math.floor(s);
    i1[o] = Math.min(i0[o] + 1, nIn - 1);
    t[o] = s - i0[o];
  }
  return { i0, i1, t };
}

/** The input position output voxel `o` samples: (o + ½)·nIn/nOut − ½, clamped to [0, nIn − 1]. */
function samplePosition(o: number, nOut: number, nIn: number): number {
  return Math.min(nIn - 1, Math.max(0, ((o + 0.5) * nIn) / nOut - 0.5));
}

/** The shape of `shape` (spacing `spacingMm`) resampled to `targetMm`; each axis ≥ 1 voxel. */
export function resampledShape(shape: Shape3, spacingMm: Shape3, targetMm: Shape3): Shape3 {
  return shape.map((n, i) => Math.max(1, Math.round((n * spacingMm[i]) / targetMm[i]))) as Shape3;
}

/** The spacing (z, y, x mm) of `shape` at `spacingMm` resampled to `outShape`: same extent. */
export function resampledSpacing(shape: Shape3, spacingMm: Shape3, outShape: Shape3): Shape3 {
  return shape.map((n, i) => (n * spacingMm[i]) / outShape[i]) as Shape3;
}

/**
 * The affine of the grid `outShape` over the same extent as `shape`: output voxel o sits at
 * input index (o + ½)·n/m − ½ along each axis (unclamped), so world positions agree.
 */
export function resampledAffine(affine: number[], shape: Shape3, outShape: Shape3): number[] {
  const out = [...affine];
  for (let c = 0; c < 3; c++) {
    const axis = 2 - c; // affine column 0 = x (axis 2), 1 = y, 2 = z (axis 0)
    const f = shape[axis] / outShape[axis];
    for (let r = 0; r < 3; r++) {
      out[4 * r + 3] += affine[4 * r + c] * (f - 1) / 2;
      out[4 * r + c] = affine[4 * r + c] * f;
    }
  }
  return out;
}

/**
 * The order used along each axis when resampling from `spacingMm` to `outSpacingMm` with
 * `order`: order 3 falls back to 1 along an axis whose spacing, in either grid, exceeds
 * {@link ANISOTROPY_RATIO} times that grid's finest spacing.
 */
export function axisOrders(
  spacingMm: Shape3,
  outSpacingMm: Shape3,
  order: InterpolationOrder,
): AxisOrders {
  checkOrder(order);
  if (order === 1) return [1, 1, 1];
  const coarse = (s: Shape3, a: number) => s[a] / Math.min(...s) > ANISOTROPY_RATIO;
  return [0, 1, 2].map((a) =>
    coarse(spacingMm, a) || coarse(outSpacingMm, a) ? 1 : 3
  ) as AxisOrders;
}

/** Interpolation taps of one axis: output o reads `index[o·k + j]` with `weight[o·k + j]`. */
export interface AxisTaps {
  /** Taps per output voxel: 2 (linear) or 4 (cubic). */
  k: number;
  index: Int32Array;
  weight: Float64Array;
}

/** The {@link AxisTaps} from an axis of `nIn` voxels to `nOut` at `order`, edges clamped. */
export function axisTaps(nOut: number, nIn: number, order: InterpolationOrder): AxisTaps {
  checkOrder(order);
  const k = order === 1 ? 2 : 4;
  const index = new Int32Array(nOut * k), weight = new Float64Array(nOut * k);
  const clamp = (i: number) => Math.min(nIn - 1, Math.max(0, i));
  for (let o = 0; o < nOut; o++) {
    const s = samplePosition(o, nOut, nIn);
    const i = Math.floor(s), t = s - i;
    const w = order === 1 ? [1 - t, t] : catmullRom(t);
    const first = order === 1 ? i : i - 1;
    for (let j = 0; j < k; j++) {
      index[o * k + j] = clamp(first + j);
      weight[o * k + j] = w[j];
    }
  }
  return { k, index, weight };
}

/** Catmull-Rom weights of the samples at i−1, i, i+1, i+2 for a position i + t, t ∈ [0, 1). */
function catmullRom(t: number): number[] {
  const t2 = t * t, t3 = t2 * t;
  return [
    (-t3 + 2 * t2 - t) / 2,
    (3 * t3 - 5 * t2 + 2) / 2,
    (-3 * t3 + 4 * t2 + t) / 2,
    (t3 - t2) / 2,
  ];
}

function checkOrder(order: number): void {
  if (order !== 1 && order !== 3) {
    throw new RangeError(`interpolation order must be 1 (linear) or 3 (cubic), got ${order}`);
  }
}

/**
 * Resamples `src` (shape D, H, W) along one axis with `taps`, producing only output indices
 * `o0 ≤ o < o1` of that axis; the other axes are unchanged. Returns float32, x fastest.
 */
export function resampleAxis(
  src: ArrayLike<number>,
  shape: Shape3,
  axis: 0 | 1 | 2,
  taps: AxisTaps,
  o0: number,
  o1: number,
): Float32Array {
  const [D, H, W] = shape;
  const nIn = shape[axis];
  const outer = axis === 0 ? 1 : axis === 1 ? D : D * H;
  const inner = axis === 2 ? 1 : axis === 1 ? W : H * W;
  const { k, index, weight } = taps;
  const m = o1 - o0;
  const out = new Float32Array(outer * m * inner);
  const acc = new Float64Array(inner);
  for (let a = 0; a < outer; a++) {
    for (let o = o0; o < o1; o++) {
      acc.fill(0);
      for (let j = o * k; j < (o + 1) * k; j++) {
        const w = weight[j];
        if (w === 0) continue; // also keeps identity resampling exact
        const s = (a * nIn + index[j]) * inner;
        for (let x = 0; x < inner; x++) acc[x] += w * src[s + x];
      }
      out.set(acc, (a * m + o - o0) * inner);
    }
  }
  return out;
}

/**
 * Separable resampling of `data` (shape D, H, W) to the grid `outShape`, keeping only the
 * voxels of `box` (on the output grid; default all). One pass per axis, x first.
 */
export function resampleSeparable(
  data: ArrayLike<number>,
  shape: Shape3,
  outShape: Shape3,
  orders: AxisOrders,
  box: Box3 = { start: [0, 0, 0], size: [...outShape] },
): Float32Array {
  checkResample(data.length, shape, outShape, box);
  let cur: ArrayLike<number> = data;
  const curShape: Shape3 = [...shape];
  for (const axis of [2, 1, 0] as const) {
    const o0 = box.start[axis], o1 = o0 + box.size[axis];
    if (outShape[axis] === shape[axis] && o0 === 0 && o1 === shape[axis]) continue;
    cur = resampleAxis(
      cur,
      curShape,
      axis,
      axisTaps(outShape[axis], shape[axis], orders[axis]),
      o0,
      o1,
    );
    curShape[axis] = o1 - o0;
  }
  return cur === data ? Float32Array.from(data) : cur as Float32Array;
}

function checkResample(length: number, shape: Shape3, outShape: Shape3, box: Box3): void {
  const n = shape[0] * shape[1] * shape[2];
  if (length !== n) {
    throw new RangeError(`data has ${length} voxels, shape [${shape}] (D,H,W) needs ${n}`);
  }
  if (outShape.length !== 3 || outShape.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new RangeError(`target shape must be 3 positive integers (D,H,W), got [${outShape}]`);
  }
  checkBox(box, outShape, "output box");
}

/**
 * An image resampled to `targetShape` (same extent; see the module comment), as a float32
 * volume with its new spacing and affine. `order` 3 is cubic in-plane and linear along
 * coarse axes ({@link axisOrders}); pass {@link AxisOrders} to choose per axis. With `box`,
 * only that part of the output grid is computed and returned (its affine placed accordingly).
 *
 * @example
 * const iso = resampleImage(ct, resampledShape(ct.shape, ct.spacingMm, [1, 1, 1]), 3);
 */
export function resampleImage(
  volume: Volume,
  targetShape: Shape3,
  order: InterpolationOrder | AxisOrders,
  box?: Box3,
): Volume {
  const { shape, spacingMm } = volume;
  const spacing = resampledSpacing(shape, spacingMm, targetShape);
  const orders = Array.isArray(order) ? order : axisOrders(spacingMm, spacing, order);
  orders.forEach(checkOrder);
  const region = box ?? { start: [0, 0, 0] as Shape3, size: [...targetShape] as Shape3 };
  const data = resampleSeparable(volume.data, shape, targetShape, orders, region);
  const affine = croppedAffine(resampledAffine(volume.affine, shape, targetShape), region.start);
  return { shape: [...region.size], spacingMm: spacing, affine, data };
}

/**
 * A label map (uint8 class indices < `classes`, shape D, H, W) resampled to `targetShape`:
 * each class's one-hot map is interpolated (tri)linearly and every output voxel takes the
 * class of highest value (ties: the lowest class). Classes are done one at a time, keeping a
 * running best value and class per output voxel, so no per-class volumes are held. Classes
 * absent from the input are skipped (their value, 0, never wins). With `box`, only that part
 * of the output grid is computed.
 */
export function resampleLabels(
  labels: Uint8Array,
  shape: Shape3,
  classes: number,
  targetShape: Shape3,
  box: Box3 = { start: [0, 0, 0], size: [...targetShape] },
): Uint8Array {
  checkResample(labels.length, shape, targetShape, box);
  const present = presentClasses(labels, classes);
  const n = box.size[0] * box.size[1] * box.size[2];
  const best = new Float32Array(n).fill(-1), bestClass = new Uint8Array(n);
  const oneHot = new Uint8Array(labels.length);
  for (const c of present) {
    for (let i = 0; i < labels.length; i++) oneHot[i] = labels[i] === c ? 1 : 0;
    const p = resampleSeparable(oneHot, shape, targetShape, [1, 1, 1], box);
    for (let i = 0; i < n; i++) {
      if (p[i] > best[i]) {
        best[i] = p[i];
        bestClass[i] = c;
      }
    }
  }
  return bestClass;
}

/** The label values present, ascending; throws on a value ≥ `classes`. */
function presentClasses(labels: Uint8Array, classes: number): number[] {
  if (!(Number.isInteger(classes) && classes >= 1 && classes <= 256)) {
    throw new RangeError(`classes must be an integer 1..256, got ${classes}`);
  }
  const seen = new Uint8Array(256);
  for (let i = 0; i < labels.length; i++) seen[labels[i]] = 1;
  const present: number[] = [];
  for (let c = 0; c < 256; c++) {
    if (!seen[c]) continue;
    if (c >= classes) {
      throw new RangeError(
        `label value ${c} is not a class index: the label map has ${classes} classes (0..${
          classes - 1
        }); give the dataset's class count`,
      );
    }
    present.push(c);
  }
  return present;
}

/**
 * The box of the output grid `outShape` whose voxels read any input voxel of `inBox` (taps of
 * nonzero weight at `orders`). Output voxels outside it read only voxels outside `inBox`: a
 * volume constant outside `inBox` resamples to that constant outside the returned box.
 */
export function outputBox(
  shape: Shape3,
  outShape: Shape3,
  orders: AxisOrders,
  inBox: Box3,
): Box3 {
  const start: number[] = [], size: number[] = [];
  for (let a = 0; a < 3; a++) {
    const { k, index, weight } = axisTaps(outShape[a], shape[a], orders[a]);
    const lo = inBox.start[a], hi = lo + inBox.size[a];
    let first = -1, last = -1;
    for (let o = 0; o < outShape[a]; o++) {
      for (let j = o * k; j < (o + 1) * k; j++) {
        if (weight[j] !== 0 && index[j] >= lo && index[j] < hi) {
          if (first < 0) first = o;
          last = o;
          break;
        }
      }
    }
    if (first < 0) {
      // A box thinner than the output's sampling step: keep the output voxel nearest it.
      const centre = (lo + hi) / 2; // input coordinate of the box centre, voxel edges at integers
      first = last = Math.min(outShape[a] - 1, Math.floor((centre * outShape[a]) / shape[a]));
    }
    start.push(first);
    size.push(last - first + 1);
  }
  return { start: start as Shape3, size: size as Shape3 };
}
