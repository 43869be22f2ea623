/**
 * Cropping a volume to the region that differs from its background, and pasting a crop back.
 *
 * nnU-Net crops every case to the bounding box of its non-zero voxels. voxseg generalises
 * "zero" to a background value: by default the image's minimum (0 for MRI, the padding value
 * outside the field of view or the clipped air value for CT), or the most frequent value of
 * the 8 corner voxels, or a number given. Every voxel outside the box equals the background,
 * so a crop loses nothing: pasting it into a volume filled with the background restores the
 * original exactly.
 *
 * Boxes are in voxels, z, y, x order (D, H, W), start inclusive.
 */

import { checkVolume, type Shape3, type Volume, type VoxelArray } from "./volume.ts";

/** A box of voxels: `start` (z, y, x, inclusive) and `size` (d, h, w, each ≥ 1). */
export interface Box3 {
  start: Shape3;
  size: Shape3;
}

/**
 * What counts as background when cropping: `"min"` the volume's minimum, `"corners"` the most
 * frequent value among its 8 corner voxels (ties: the smallest), or a value.
 */
export type CropBackground = "min" | "corners" | number;

export interface NonZeroBoxOptions {
  /** Default `"min"`. */
  background?: CropBackground;
  /** Voxels added on every side of the box (clipped to the volume); default 0. */
  margin?: number;
}

/** The box covering a whole volume of this shape (D, H, W). */
export function fullBox(shape: Shape3): Box3 {
  return { start: [0, 0, 0], size: [shape[0], shape[1], shape[2]] };
}

/** Whether a box covers the whole volume of `shape`. */
export function isFullBox(box: Box3, shape: Shape3): boolean {
  return box.start.every((s) => s === 0) && box.size.every((s, i) => s === shape[i]);
}

/** Throws unless `box` has positive integer size and lies inside a volume of `shape`. */
export function checkBox(box: Box3, shape: Shape3, what = "box"): void {
  const ok = [0, 1, 2].every((i) =>
    Number.isInteger(box.start[i]) && Number.isInteger(box.size[i]) && box.start[i] >= 0 &&
    box.size[i] >= 1 && box.start[i] + box.size[i] <= shape[i]
  );
  if (!ok || box.start.length !== 3 || box.size.length !== 3) {
    throw new RangeError(
      `${what} start [${box.start}] size [${box.size}] (z,y,x) must lie inside the volume ` +
        `[${shape}] with every size ≥ 1`,
    );
  }
}

/** The background value of a volume under the {@link CropBackground} rule. */
export function backgroundValue(
  volume: Pick<Volume, "data" | "shape">,
  background: CropBackground = "min",
): number {
  if (typeof background === "number") return background;
  const { data, shape: [D, H, W] } = volume;
  if (background === "min") {
    let min = Infinity;
    for (let i = 0; i < data.length; i++) if (data[i] < min) min = data[i];
    return min;
  }
  const counts = new Map<number, number>();
  for (const z of [0, D - 1]) {
    for (const y of [0, H - 1]) {
      for (const x of [0, W - 1]) {
        const v = data[x + W * (y + H * z)];
        counts.set(v, (counts.get(v) ?? 0) + 1);
      }
    }
  }
  // A corner shared by two (a 1-voxel axis) counts twice; the mode is unchanged by that.
  let best = Infinity, most = 0;
  for (const [v, n] of counts) if (n > most || (n === most && v < best)) [best, most] = [v, n];
  return best;
}

/**
 * The bounding box of the voxels that differ from the background (see the module comment),
 * grown by `margin`; undefined when every voxel is background.
 *
 * @example
 * const box = nonZeroBox(ct) ?? fullBox(ct.shape); // crop to the field of view
 */
export function nonZeroBox(
  volume: Pick<Volume, "data" | "shape">,
  { background = "min", margin = 0 }: NonZeroBoxOptions = {},
): Box3 | undefined {
  const { data, shape } = volume;
  const [D, H, W] = shape;
  if (data.length !== D * H * W) {
    throw new RangeError(`data has ${data.length} voxels, shape [${shape}] needs ${D * H * W}`);
  }
  if (!(Number.isInteger(margin) && margin >= 0)) {
    throw new RangeError(`margin must be a whole number of voxels ≥ 0, got ${margin}`);
  }
  const bg = backgroundValue(volume, background);
  const lo = [D, H, W], hi = [-1, -1, -1];
  let i = 0;
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        if (data[i] === bg) continue;
        if (z < lo[0]) lo[0] = z;
        if (z > hi[0]) hi[0] = z;
        if (y < lo[1]) lo[1] = y;
        if (y > hi[1]) hi[1] = y;
        if (x < lo[2]) lo[2] = x;
        if (x > hi[2]) hi[2] = x;
      }
    }
  }
  if (hi[0] < 0) return undefined;
  const start = lo.map((l) => Math.max(0, l - margin)) as Shape3;
  const end = hi.map((h, a) => Math.min(shape[a], h + 1 + margin));
  return { start, size: end.map((e, a) => e - start[a]) as Shape3 };
}

/** The smallest box holding both (either may be undefined: nothing). */
export function unionBox(a: Box3 | undefined, b: Box3 | undefined): Box3 | undefined {
  if (!a || !b) return a ?? b;
  const start = a.start.map((s, i) => Math.min(s, b.start[i])) as Shape3;
  const end = a.start.map((s, i) => Math.max(s + a.size[i], b.start[i] + b.size[i]));
  return { start, size: end.map((e, i) => e - start[i]) as Shape3 };
}

/** The voxels of `box` from `data` (shape D, H, W, x fastest), in a new array of its type. */
export function cropArray<T extends VoxelArray>(data: T, shape: Shape3, box: Box3): T {
  checkBox(box, shape);
  const [, H, W] = shape;
  const [d, h, w] = box.size;
  const [z0, y0, x0] = box.start;
  const out = new (data.constructor as new (n: number) => T)(d * h * w);
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const src = x0 + W * (y0 + y + H * (z0 + z));
      out.set(data.subarray(src, src + w), (z * h + y) * w);
    }
  }
  return out;
}

/** The affine of the grid whose voxel 0 is voxel `start` (z, y, x) of `affine`'s grid. */
export function croppedAffine(affine: number[], start: Shape3): number[] {
  const out = [...affine];
  const [k, j, i] = start; // columns: 0 = x (i), 1 = y (j), 2 = z (k)
  for (let r = 0; r < 3; r++) {
    out[4 * r + 3] += affine[4 * r] * i + affine[4 * r + 1] * j + affine[4 * r + 2] * k;
  }
  return out;
}

/** The part of a volume inside `box`, with its affine moved so every voxel keeps its place. */
export function cropVolume(volume: Volume, box: Box3): Volume {
  checkVolume(volume);
  return {
    shape: [...box.size],
    spacingMm: [...volume.spacingMm],
    affine: croppedAffine(volume.affine, box.start),
    data: cropArray(volume.data, volume.shape, box),
  };
}

/**
 * Pastes `crop` (the voxels of `box`, x fastest) into `dest` (shape `destShape`) at the box's
 * place; voxels outside the box are left as they are.
 */
export function uncropInto(
  dest: VoxelArray,
  destShape: Shape3,
  crop: VoxelArray,
  box: Box3,
): void {
  checkBox(box, destShape);
  const [D, H, W] = destShape;
  const [d, h, w] = box.size;
  if (dest.length !== D * H * W || crop.length !== d * h * w) {
    throw new RangeError(
      `uncrop: destination has ${dest.length} voxels for shape [${destShape}], crop has ` +
        `${crop.length} for box size [${box.size}]`,
    );
  }
  const [z0, y0, x0] = box.start;
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const row = (z * h + y) * w;
      dest.set(crop.subarray(row, row + w), x0 + W * (y0 + y + H * (z0 + z)));
    }
  }
}

/**
 * A new array of `shape` (D, H, W) filled with `fill` (0: background for labels) with `crop`
 * pasted at `box`: the inverse of {@link cropArray}.
 */
export function uncrop<T extends VoxelArray>(crop: T, box: Box3, shape: Shape3, fill = 0): T {
  const out = new (crop.constructor as new (n: number) => T)(shape[0] * shape[1] * shape[2]);
  if (fill !== 0) out.fill(fill);
  uncropInto(out, shape, crop, box);
  return out;
}
