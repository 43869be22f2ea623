/**
 * Segmentation metrics between a predicted and a reference label map, per class.
 *
 * Definitions and empty-mask behaviour (P = predicted voxels of the class, R = reference):
 *
 * | metric         | value                                  | P empty      | R empty      | both  |
 * | -------------- | -------------------------------------- | ------------ | ------------ | ----- |
 * | Dice           | 2|P∩R| / (|P| + |R|)                   | 0            | 0            | NaN   |
 * | HD95 (mm)      | max of the two directed 95th pct.      | +Infinity    | +Infinity    | NaN   |
 * | precision      | |P∩R| / |P|                            | NaN          | 0            | NaN   |
 * | recall         | |P∩R| / |R|                            | 0            | NaN          | NaN   |
 * | volume diff mL | vol(P) − vol(R)                        | −vol(R)      | vol(P)       | 0     |
 * | relative diff  | (vol(P) − vol(R)) / vol(R)             | −1           | NaN          | NaN   |
 *
 * Dice follows nnU-Net (NaN when the class is absent from both, so it drops out of means).
 * HD95 follows MONAI's `compute_hausdorff_distance(percentile=95)`: surface voxels are the
 * mask voxels with a 6-neighbour outside the mask (outside the volume counts as outside, like
 * SciPy's binary erosion with border 0); the distance of each surface voxel of one mask to
 * the nearest surface voxel of the other is taken with the voxel spacing (Euclidean distance
 * transform, exact, linear time); the 95th percentile (NumPy's linear interpolation) is taken
 * per direction and the larger one reported. MONAI gives +Infinity when one mask is empty and
 * NaN when both are, and so does voxseg. Volumes are voxel counts × the voxel volume.
 */

import type { Shape3 } from "../data/volume.ts";
import { squaredDistanceTransform } from "./distance_transform.ts";

/**
 * Dice per class (index = class) of a predicted and a reference label map. A class absent from
 * both is NaN (undefined, excluded from means, as in nnU-Net).
 */
export function dicePerClass(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  classes: number,
): number[] {
  return confusionPerClass(pred, ref, classes).map(({ tp, fp, fn }) =>
    tp + fp + fn === 0 ? NaN : (2 * tp) / (2 * tp + fp + fn)
  );
}

/** Mean of the finite values; NaN when there are none. */
export function nanMean(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : NaN;
}

/** Voxel counts of one class: true positives, false positives, false negatives. */
export interface Confusion {
  tp: number;
  fp: number;
  fn: number;
}

/** {@link Confusion} per class (index = label value) in one pass. */
export function confusionPerClass(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  classes: number,
): Confusion[] {
  if (pred.length !== ref.length) {
    throw new RangeError(`prediction has ${pred.length} voxels, reference ${ref.length}`);
  }
  const tp = new Float64Array(classes), np = new Float64Array(classes);
  const nr = new Float64Array(classes);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i], r = ref[i];
    if (p >= classes || r >= classes) {
      throw new RangeError(`label ${Math.max(p, r)} at voxel ${i} is not below ${classes} classes`);
    }
    np[p]++;
    nr[r]++;
    if (p === r) tp[p]++;
  }
  return Array.from({ length: classes }, (_, c) => ({
    tp: tp[c],
    fp: np[c] - tp[c],
    fn: nr[c] - tp[c],
  }));
}

/**
 * The surface of a binary mask: mask voxels with at least one of their 6 face neighbours
 * outside the mask or outside the volume (mask XOR its erosion, as MONAI and SciPy compute it).
 */
export function surfaceVoxels(mask: Uint8Array, shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const out = new Uint8Array(mask.length);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        if (!mask[i]) continue;
        out[i] = x === 0 || x === W - 1 || y === 0 || y === H - 1 || z === 0 || z === D - 1 ||
            !mask[i - 1] || !mask[i + 1] || !mask[i - W] || !mask[i + W] ||
            !mask[i - H * W] || !mask[i + H * W]
          ? 1
          : 0;
      }
    }
  }
  return out;
}

/** The p-th percentile (0–100) of sorted values, NumPy's default linear interpolation. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = ((n - 1) * p) / 100;
  const lo = Math.floor(pos), hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Distances in mm from each surface voxel of `from` to the nearest surface voxel of `to`
 * (both surface masks on one grid); `to` must have at least one voxel.
 */
export function surfaceDistances(
  from: Uint8Array,
  to: Uint8Array,
  shape: Shape3,
  spacingMm: Shape3,
): Float64Array {
  const d2 = squaredDistanceTransform(to, shape, spacingMm);
  const out: number[] = [];
  for (let i = 0; i < from.length; i++) if (from[i]) out.push(Math.sqrt(d2[i]));
  return Float64Array.from(out);
}

/**
 * Percentile Hausdorff distance in mm between two binary masks (non-zero = inside), MONAI's
 * definition; see the module comment. The masks are cropped to the box holding both first,
 * which leaves the distances unchanged, so small structures in large volumes are cheap.
 */
export function hausdorffDistance(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  shape: Shape3,
  spacingMm: Shape3,
  percentile = 95,
): number {
  const [D, H, W] = shape;
  if (pred.length !== D * H * W || ref.length !== D * H * W) {
    throw new RangeError(
      `masks have ${pred.length} and ${ref.length} voxels, shape ${shape.join("×")}`,
    );
  }
  const lo = [D, H, W], hi = [-1, -1, -1];
  let anyPred = false, anyRef = false;
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const p = pred[i] !== 0, r = ref[i] !== 0;
        if (!p && !r) continue;
        anyPred ||= p;
        anyRef ||= r;
        if (z < lo[0]) lo[0] = z;
        if (z > hi[0]) hi[0] = z;
        if (y < lo[1]) lo[1] = y;
        if (y > hi[1]) hi[1] = y;
        if (x < lo[2]) lo[2] = x;
        if (x > hi[2]) hi[2] = x;
      }
    }
  }
  if (!anyPred && !anyRef) return NaN;
  if (!anyPred || !anyRef) return Infinity;
  const box: Shape3 = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
  const crop = (mask: ArrayLike<number>) => {
    const out = new Uint8Array(box[0] * box[1] * box[2]);
    for (let z = 0, o = 0; z < box[0]; z++) {
      for (let y = 0; y < box[1]; y++) {
        const src = ((z + lo[0]) * H + y + lo[1]) * W + lo[2];
        for (let x = 0; x < box[2]; x++, o++) out[o] = mask[src + x] ? 1 : 0;
      }
    }
    return out;
  };
  // Voxels outside the box are outside both masks, so surfaces computed in the box match
  // those of the whole volume (its border counts as outside either way).
  const sp = surfaceVoxels(crop(pred), box), sr = surfaceVoxels(crop(ref), box);
  const dPred = surfaceDistances(sp, sr, box, spacingMm).sort();
  const dRef = surfaceDistances(sr, sp, box, spacingMm).sort();
  return Math.max(percentileSorted(dPred, percentile), percentileSorted(dRef, percentile));
}

/** Every metric of one class; see the module comment for definitions and empty masks. */
export interface ClassMetrics {
  dice: number;
  /** 95th-percentile symmetric surface distance (MONAI's HD95), mm. */
  hd95Mm: number;
  precision: number;
  recall: number;
  /** Predicted and reference volume, mL. */
  predMl: number;
  refMl: number;
  /** predMl − refMl. */
  volumeDiffMl: number;
  /** (predMl − refMl) / refMl. */
  volumeDiffRel: number;
}

/**
 * {@link ClassMetrics} for each class listed in `classes` (label values; typically the
 * foreground, 1 … C − 1) of two label maps on one grid.
 *
 * @example
 * const [lung, infection] = segmentationMetrics(pred, ref, [128, 256, 256], [2.4, 1.5, 1.5], [1, 2]);
 */
export function segmentationMetrics(
  pred: Uint8Array,
  ref: Uint8Array,
  shape: Shape3,
  spacingMm: Shape3,
  classes: readonly number[],
): ClassMetrics[] {
  const n = Math.max(1, ...classes) + 1;
  let maxLabel = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] > maxLabel) maxLabel = pred[i];
  for (let i = 0; i < ref.length; i++) if (ref[i] > maxLabel) maxLabel = ref[i];
  const confusion = confusionPerClass(pred, ref, Math.max(n, maxLabel + 1));
  const voxelMl = (spacingMm[0] * spacingMm[1] * spacingMm[2]) / 1000;
  return classes.map((c) => {
    const { tp, fp, fn } = confusion[c];
    const predMl = (tp + fp) * voxelMl, refMl = (tp + fn) * voxelMl;
    const predMask = new Uint8Array(pred.length), refMask = new Uint8Array(ref.length);
    for (let i = 0; i < pred.length; i++) {
      predMask[i] = pred[i] === c ? 1 : 0;
      refMask[i] = ref[i] === c ? 1 : 0;
    }
    return {
      dice: tp + fp + fn === 0 ? NaN : (2 * tp) / (2 * tp + fp + fn),
      hd95Mm: hausdorffDistance(predMask, refMask, shape, spacingMm, 95),
      precision: tp + fp === 0 ? NaN : tp / (tp + fp),
      recall: tp + fn === 0 ? NaN : tp / (tp + fn),
      predMl,
      refMl,
      volumeDiffMl: predMl - refMl,
      volumeDiffRel: tp + fn === 0 ? NaN : (predMl - refMl) / refMl,
    };
  });
}
