/**
 * nnU-Net-style augmentation of training patches: spatial transforms (rotation, scaling, elastic
 * deformation) as one inverse coordinate map per output voxel, intensity transforms on the
 * normalised image, and mirroring. Every draw comes from the patch's own seeded `Random`, so a
 * patch is the same bytes whoever reads it.
 *
 * The numbers are nnU-Net v2's defaults (`nnUNetTrainer.get_training_transforms`, built from
 * batchgeneratorsv2's transforms), applied in this order, each with its probability:
 *
 * - rotation, p 0.2 (all axes at once): each angle U(−30°, 30°); in-plane: about z, U(±180°).
 * - scaling, p 0.2: one factor U(0.7, 1.4) for all axes (> 1 zooms out).
 * - elastic deformation, p 0 in nnU-Net v2 (off); p 0.2 here when switched on (nnU-Net v1's):
 *   σ U(0, 0.2)·patch and peak displacement U(0, 0.2)·patch/2 voxels, per component.
 * - Gaussian noise, p 0.1: σ U(0, 0.1) (batchgenerators calls it the "variance").
 * - Gaussian blur, p 0.2 then 0.5 per channel: σ U(0.5, 1) per axis, kernel ≈ 6σ wide, reflect.
 * - brightness, p 0.15: × m, m ~ BGContrast(0.75, 1.25).
 * - contrast, p 0.15: (v − mean)·f + mean clipped to the old [min, max], f ~ BGContrast(0.75,
 *   1.25).
 * - low resolution, p 0.25 then 0.5 per channel: nearest down to round(s·size), s U(0.5, 1)
 *   shared by the axes (z kept when in-plane), linear back up.
 * - gamma on the inverted image, p 0.1: γ ~ BGContrast(0.7, 1.5); mean and std restored.
 * - gamma, p 0.3: γ ~ BGContrast(0.7, 1.5); mean and std restored.
 * - mirroring: each of z, y, x with p 0.5.
 *
 * BGContrast(lo, hi): with probability 1/2 U(lo, 1), otherwise U(1, hi) — as many shrinking as
 * growing draws. "In-plane" is nnU-Net's "dummy 2D" augmentation of anisotropic patches
 * (nnU-Net switches to it when max(patch) / patch[0] > 3): rotation about z only (±180°),
 * scaling and elastic deformation of y and x only, low resolution of y and x only.
 *
 * Differences from batchgeneratorsv2, on purpose: rotations are true rotations in voxel space
 * (batchgeneratorsv2 rotates grid_sample's normalised coordinates, which shears non-cubic
 * patches); labels are resampled by one-hot linear interpolation + argmax, which is what
 * batchgeneratorsv2's threshold-at-0.7-then-argmax amounts to (ties aside); the elastic field is Gaussian-smoothed noise generated on a grid of spacing ⌊σ⌋ and
 * interpolated linearly (not blurred by FFT at full resolution), which keeps it well under the
 * per-patch time budget; mirroring runs before the intensity transforms (it commutes with all
 * of them except the alignment of the low-resolution grid).
 */

import type { Random } from "../base/random.ts";
import type { Shape3 } from "./volume.ts";

/** `[low, high]` of a uniform draw. */
export type Range = [number, number];

/** The augmentation presets of the training config: the switches, or nnU-Net's whole set. */
export const AUGMENT_PRESETS = ["basic", "nnunet"] as const;
export type AugmentPreset = (typeof AUGMENT_PRESETS)[number];

/** An image patch and its labels, d·h·w each, x fastest (z, y, x order). */
export interface PatchArrays {
  image: Float32Array;
  label: Uint8Array;
}

/** Rotation, scaling and elastic deformation; each drawn with its own probability. */
export interface SpatialAugmentation {
  /** Probability of a rotation; all angles are drawn together. */
  pRotation: number;
  /** Angle range in radians, one draw per rotated axis. */
  rotation: Range;
  /** Probability of scaling; one factor for every scaled axis. */
  pScaling: number;
  /** Factor range; > 1 zooms out (the output samples the source at factor × its offset). */
  scaling: Range;
  /** Probability of an elastic deformation. */
  pElastic: number;
  /** Smoothness σ of the displacement field, as a fraction of the patch size per component. */
  elasticScale: Range;
  /** Peak displacement, as a fraction of half the patch size per component. */
  elasticMagnitude: Range;
  /** Transform the (y, x) plane only: rotate about z, scale and deform y and x. */
  inPlane: boolean;
}

/** nnU-Net's intensity transforms; each present one is drawn with its probability `p`. */
export interface IntensityAugmentation {
  noise?: { p: number; std: Range };
  blur?: { p: number; pPerChannel: number; sigma: Range };
  brightness?: { p: number; multiplier: Range };
  contrast?: { p: number; factor: Range };
  /** `inPlane` keeps z at full resolution. */
  lowRes?: { p: number; pPerChannel: number; scale: Range; inPlane: boolean };
  /** Two transforms: on the inverted image with `pInverted`, then on the image with `p`. */
  gamma?: { pInverted: number; p: number; gamma: Range };
}

const DEG = Math.PI / 180;

/** nnU-Net v2's spatial transform (elastic deformation only when `elastic`, p 0.2). */
export function nnunetSpatial(
  options: { inPlane?: boolean; elastic?: boolean; rotateScale?: boolean },
): SpatialAugmentation {
  const { inPlane = false, elastic = false, rotateScale = true } = options;
  return {
    pRotation: rotateScale ? 0.2 : 0,
    rotation: inPlane ? [-180 * DEG, 180 * DEG] : [-30 * DEG, 30 * DEG],
    pScaling: rotateScale ? 0.2 : 0,
    scaling: [0.7, 1.4],
    pElastic: elastic ? 0.2 : 0,
    elasticScale: [0, 0.2],
    elasticMagnitude: [0, 0.2],
    inPlane,
  };
}

/** nnU-Net v2's intensity transforms, all of them. */
export function nnunetIntensity(inPlane = false): Required<IntensityAugmentation> {
  return {
    noise: { p: 0.1, std: [0, 0.1] },
    blur: { p: 0.2, pPerChannel: 0.5, sigma: [0.5, 1] },
    brightness: { p: 0.15, multiplier: [0.75, 1.25] },
    contrast: { p: 0.15, factor: [0.75, 1.25] },
    lowRes: { p: 0.25, pPerChannel: 0.5, scale: [0.5, 1], inPlane },
    gamma: { pInverted: 0.1, p: 0.3, gamma: [0.7, 1.5] },
  };
}

/** batchgenerators' BGContrast draw: U(lo, 1) or U(1, hi), each with probability 1/2. */
export function bgContrast(rng: Random, [lo, hi]: Range): number {
  if (rng.next() < 0.5 && lo < 1) return rng.uniform(lo, 1);
  return rng.uniform(Math.max(lo, 1), hi);
}

// ---------------------------------------------------------------------------------------------
// Spatial transforms

/**
 * One drawn spatial transform. Output voxel o (z, y, x, as an offset in voxels from the patch
 * centre) samples the source at `centre + matrix · (o + displacement(o))`: deform first, then
 * rotate and scale, as batchgeneratorsv2 does.
 */
export interface SpatialMap {
  /** Row-major 3×3 over (z, y, x): rotation · scaling. */
  matrix: number[];
  /** Elastic displacement in voxels, [3, d, h, w] (z, y, x components); absent: none. */
  displacement?: Float32Array;
  /** Largest |displacement| of each component. */
  displacementMax?: [number, number, number];
}

/**
 * Row-major `Rz(a0) · Ry(a1) · Rx(a2) · diag(scales)` over (z, y, x), angles in radians. The
 * rotation about axis a turns the other two axes (i, j), in z, y, x order, to
 * (cos·i − sin·j, sin·i + cos·j): +90° about z sends the offset (y, x) to (−x, y).
 */
export function spatialMatrix(
  angles: [number, number, number],
  scales: [number, number, number],
): number[] {
  const rotation = (axis: number, angle: number) => {
    const m = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    const [i, j] = otherAxes(axis), c = Math.cos(angle), s = Math.sin(angle);
    m[3 * i + i] = c;
    m[3 * i + j] = -s;
    m[3 * j + i] = s;
    m[3 * j + j] = c;
    return m;
  };
  const scaling = [scales[0], 0, 0, 0, scales[1], 0, 0, 0, scales[2]];
  return [rotation(0, angles[0]), rotation(1, angles[1]), rotation(2, angles[2]), scaling]
    .reduce(matMul3);
}

function matMul3(a: number[], b: number[]): number[] {
  const m = new Array<number>(9);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 3; c++) {
      m[3 * r + c] = a[3 * r] * b[c] + a[3 * r + 1] * b[3 + c] + a[3 * r + 2] * b[6 + c];
    }
  }
  return m;
}

/**
 * Draws a spatial transform for a patch of `size` (d, h, w): whether to rotate, scale and
 * deform (in that order, each with its probability), then the angles, the factor and the
 * field. Undefined when nothing was drawn (the patch is then read as it is, uninterpolated).
 */
export function drawSpatial(
  rng: Random,
  spec: SpatialAugmentation,
  size: Shape3,
): SpatialMap | undefined {
  const rotate = rng.next() < spec.pRotation;
  const scale = rng.next() < spec.pScaling;
  const deform = rng.next() < spec.pElastic;
  if (!rotate && !scale && !deform) return undefined;
  const angle = () => rng.uniform(spec.rotation[0], spec.rotation[1]);
  const angles: [number, number, number] = !rotate
    ? [0, 0, 0]
    : spec.inPlane
    ? [angle(), 0, 0]
    : [angle(), angle(), angle()];
  const s = scale ? rng.uniform(spec.scaling[0], spec.scaling[1]) : 1;
  const map: SpatialMap = { matrix: spatialMatrix(angles, [spec.inPlane ? 1 : s, s, s]) };
  return deform ? { ...map, ...elasticDisplacement(rng, size, spec) } : map;
}

/**
 * A smooth random displacement field like batchgeneratorsv2's: per component c, noise smoothed
 * with σ_c = U(elasticScale)·size[c], scaled to a peak of U(elasticMagnitude)·size[c]/2 voxels,
 * mean removed (so the patch stays centred). In-plane: y and x only, the same on every z slice.
 */
function elasticDisplacement(rng: Random, size: Shape3, spec: SpatialAugmentation) {
  const [d, h, w] = size, n = d * h * w;
  const displacement = new Float32Array(3 * n);
  const displacementMax: [number, number, number] = [0, 0, 0];
  const grid: Shape3 = spec.inPlane ? [1, h, w] : size;
  for (const c of spec.inPlane ? [1, 2] : [0, 1, 2]) {
    const sigma = rng.uniform(spec.elasticScale[0], spec.elasticScale[1]) * size[c];
    const peak = rng.uniform(spec.elasticMagnitude[0], spec.elasticMagnitude[1]) * size[c] / 2;
    const field = smoothNoise(rng, grid, sigma);
    let maxAbs = 0, sum = 0;
    for (let i = 0; i < field.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(field[i]));
      sum += field[i];
    }
    const k = maxAbs > 0 ? peak / maxAbs : 0, mean = (sum / field.length) * k;
    for (let i = 0; i < field.length; i++) {
      field[i] = field[i] * k - mean;
      displacementMax[c] = Math.max(displacementMax[c], Math.abs(field[i]));
    }
    const component = displacement.subarray(c * n, (c + 1) * n);
    for (let z = 0; z < n; z += field.length) component.set(field, z);
  }
  return { displacement, displacementMax };
}

/**
 * Uniform noise in [−1, 1) (as batchgenerators v1's elastic field; smoothed, it is near
 * Gaussian anyway) smoothed by a Gaussian of `sigma` voxels: drawn on a grid of spacing ⌊σ⌋
 * (where the smoothed field has almost no detail left), blurred there, and interpolated
 * linearly to `size`. Axes of size 1 stay 1.
 */
function smoothNoise(rng: Random, size: Shape3, sigma: number): Float32Array {
  const step = Math.max(1, Math.floor(sigma));
  const coarse = size.map((s) => (s === 1 ? 1 : Math.ceil((s - 1) / step) + 1)) as Shape3;
  let data = new Float32Array(coarse[0] * coarse[1] * coarse[2]);
  for (let i = 0; i < data.length; i++) data[i] = 2 * rng.next() - 1;
  const kernel = gaussianKernel(sigma / step);
  for (let a = 0; a < 3; a++) if (coarse[a] > 1) blurAxis(data, coarse, a, kernel);
  let current = coarse;
  for (let a = 0; a < 3; a++) {
    if (current[a] === size[a]) continue;
    const t = strideTaps(current[a], size[a], step);
    ({ data, size: current } = resizeAxis(data, current, a, t));
  }
  return data;
}

/** The box of source voxels a map reads, relative to the output patch's corner. */
export interface SourceBox {
  /** Corner of the box, in voxels from the patch's corner (z, y, x; usually ≤ 0). */
  offset: Shape3;
  /** D, H, W of the box. */
  size: Shape3;
}

/**
 * The smallest box of source voxels that holds every point `map` samples for a patch of
 * `size`, with the neighbours linear interpolation reads: the bounding box of the transformed
 * patch (corners ± the largest displacement), rounded outwards. Read this box around the patch
 * and the output has no holes.
 */
export function sourceBox(map: SpatialMap, size: Shape3): SourceBox {
  const m = map.matrix, dmax = map.displacementMax ?? [0, 0, 0];
  const half = [0, 1, 2].map((b) => (size[b] - 1) / 2 + dmax[b]);
  const offset: Shape3 = [0, 0, 0], boxSize: Shape3 = [0, 0, 0];
  for (let a = 0; a < 3; a++) {
    const extent = Math.abs(m[3 * a]) * half[0] + Math.abs(m[3 * a + 1]) * half[1] +
      Math.abs(m[3 * a + 2]) * half[2];
    const centre = (size[a] - 1) / 2;
    const lo = Math.floor(centre - extent), hi = Math.ceil(centre + extent);
    offset[a] = lo;
    boxSize[a] = hi - lo + 1;
  }
  return { offset, size: boxSize };
}

/**
 * Resamples `source` (the voxels of `box`, read around the patch) through `map` into a patch
 * of `size`: the image by trilinear interpolation, the labels by one-hot linear interpolation
 * and argmax (ties: the first label met among the 8 neighbours, z, y, x order). Points outside
 * the box read `pad` (normalised image units) and label 0. A map with the identity matrix and
 * no displacement returns the box's voxels unchanged, bit for bit.
 */
export function resampleSpatial(
  source: PatchArrays,
  box: SourceBox,
  map: SpatialMap,
  size: Shape3,
  pad: number,
): PatchArrays {
  const [d, h, w] = size, n = d * h * w, m = map.matrix, disp = map.displacement;
  const boxVoxels = box.size[0] * box.size[1] * box.size[2];
  if (source.image.length !== boxVoxels || source.label.length !== boxVoxels) {
    throw new RangeError(
      `source holds ${source.image.length} image and ${source.label.length} label voxels, ` +
        `but box [${box.size}] has ${boxVoxels}: read exactly the box sourceBox returns`,
    );
  }
  // The patch centre in box voxel coordinates.
  const [cz, cy, cx] = [0, 1, 2].map((a) => (size[a] - 1) / 2 - box.offset[a]);
  const out: PatchArrays = { image: new Float32Array(n), label: new Uint8Array(n) };
  const sample = boxSampler(source, box.size, pad, out);
  for (let z = 0, i = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        let oz = z - (d - 1) / 2, oy = y - (h - 1) / 2, ox = x - (w - 1) / 2;
        if (disp) {
          oz += disp[i];
          oy += disp[n + i];
          ox += disp[2 * n + i];
        }
        sample(
          cz + m[0] * oz + m[1] * oy + m[2] * ox,
          cy + m[3] * oz + m[4] * oy + m[5] * ox,
          cx + m[6] * oz + m[7] * oy + m[8] * ox,
          i,
        );
      }
    }
  }
  return out;
}

/** Trilinear image and one-hot-linear label sampling of a box, writing voxel `i` of `out`. */
function boxSampler(source: PatchArrays, dims: Shape3, pad: number, out: PatchArrays) {
  const [bd, bh, bw] = dims, plane = bh * bw, { image, label } = source;
  const border = borderSampler(source, dims, pad, out);
  return (pz: number, py: number, px: number, i: number) => {
    const z0 = Math.floor(pz), y0 = Math.floor(py), x0 = Math.floor(px);
    if (z0 < 0 || y0 < 0 || x0 < 0 || z0 + 1 >= bd || y0 + 1 >= bh || x0 + 1 >= bw) {
      return border(pz, py, px, i);
    }
    const fz = pz - z0, fy = py - y0, fx = px - x0, gz = 1 - fz, gy = 1 - fy, gx = 1 - fx;
    const a = z0 * plane + y0 * bw + x0, b = a + bw, c = a + plane, e = c + bw;
    out.image[i] = gz * (gy * (gx * image[a] + fx * image[a + 1]) +
          fy * (gx * image[b] + fx * image[b + 1])) +
      fz * (gy * (gx * image[c] + fx * image[c + 1]) + fy * (gx * image[e] + fx * image[e + 1]));
    const l = label[a];
    if (
      l === label[a + 1] && l === label[b] && l === label[b + 1] && l === label[c] &&
      l === label[c + 1] && l === label[e] && l === label[e + 1]
    ) {
      out.label[i] = l;
    } else {
      border(pz, py, px, i);
    }
  };
}

/** The general case of {@link boxSampler}: any neighbour may lie outside the box. */
function borderSampler(source: PatchArrays, dims: Shape3, pad: number, out: PatchArrays) {
  const [bd, bh, bw] = dims, plane = bh * bw, { image, label } = source;
  const weightOf = new Float64Array(256), seen = new Uint8Array(8);
  return (pz: number, py: number, px: number, i: number) => {
    const z0 = Math.floor(pz), y0 = Math.floor(py), x0 = Math.floor(px);
    const fz = pz - z0, fy = py - y0, fx = px - x0;
    let value = 0, count = 0;
    for (let k = 0; k < 8; k++) {
      const z = z0 + (k >> 2), y = y0 + ((k >> 1) & 1), x = x0 + (k & 1);
      const wt = (k & 4 ? fz : 1 - fz) * (k & 2 ? fy : 1 - fy) * (k & 1 ? fx : 1 - fx);
      if (wt === 0) continue; // e.g. the far neighbour of a point on the box's last voxel
      const inside = z >= 0 && z < bd && y >= 0 && y < bh && x >= 0 && x < bw;
      const idx = z * plane + y * bw + x;
      value += wt * (inside ? image[idx] : pad);
      const l = inside ? label[idx] : 0;
      if (weightOf[l] === 0) seen[count++] = l;
      weightOf[l] += wt;
    }
    out.image[i] = value;
    let best = 0, bestWeight = -1;
    for (let j = 0; j < count; j++) {
      const l = seen[j];
      if (weightOf[l] > bestWeight) {
        best = l;
        bestWeight = weightOf[l];
      }
      weightOf[l] = 0;
    }
    out.label[i] = best;
  };
}

// ---------------------------------------------------------------------------------------------
// Intensity transforms (normalised float32 image only; labels untouched)

/**
 * Adds Gaussian noise of standard deviation `std` to every voxel, in place (normals drawn in
 * pairs by Marsaglia's polar method: no trigonometry, half the logarithms of Box–Muller).
 */
export function gaussianNoise(image: Float32Array, std: number, rng: Random): Float32Array {
  for (let i = 0; i < image.length; i += 2) {
    let u: number, v: number, s: number;
    do {
      u = 2 * rng.next() - 1;
      v = 2 * rng.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = std * Math.sqrt((-2 * Math.log(s)) / s);
    image[i] += u * f;
    if (i + 1 < image.length) image[i + 1] += v * f;
  }
  return image;
}

/**
 * Blurs a d·h·w image in place with a separable Gaussian of `sigmas` (z, y, x) voxels; the
 * kernel is batchgeneratorsv2's (odd width nearest 6σ + 0.5, normalised), borders reflect.
 */
export function gaussianBlur(image: Float32Array, size: Shape3, sigmas: number[]): Float32Array {
  for (let a = 0; a < 3; a++) if (size[a] > 1) blurAxis(image, size, a, gaussianKernel(sigmas[a]));
  return image;
}

/** Multiplies every voxel by `multiplier`, in place. */
export function multiplyBrightness(image: Float32Array, multiplier: number): Float32Array {
  for (let i = 0; i < image.length; i++) image[i] *= multiplier;
  return image;
}

/**
 * Scales the image's spread about its mean by `factor`, in place; with `preserveRange` the
 * result is clipped to the image's former [min, max] (nnU-Net: yes).
 */
export function adjustContrast(
  image: Float32Array,
  factor: number,
  preserveRange = true,
): Float32Array {
  const { mean, min, max } = stats(image, 1);
  for (let i = 0; i < image.length; i++) {
    const v = (image[i] - mean) * factor + mean;
    image[i] = preserveRange ? (v < min ? min : v > max ? max : v) : v;
  }
  return image;
}

/**
 * Gamma in place: v ← ((v − min) / range)^γ · range + min, so min and max stay where they are.
 * `invert` applies it to −image (brightening the dark end instead); `retainStats` then restores
 * the image's mean and standard deviation (nnU-Net: always).
 */
export function adjustGamma(
  image: Float32Array,
  gamma: number,
  invert = false,
  retainStats = false,
): Float32Array {
  const sign = invert ? -1 : 1, before = stats(image, sign);
  const range = before.max - before.min, scale = Math.max(range, 1e-7);
  for (let i = 0; i < image.length; i++) {
    const v = sign * image[i];
    image[i] = sign * (((v - before.min) / scale) ** gamma * range + before.min);
  }
  if (retainStats) {
    const after = stats(image, sign), k = before.std / Math.max(after.std, 1e-7);
    for (let i = 0; i < image.length; i++) {
      image[i] = sign * ((sign * image[i] - after.mean) * k + before.mean);
    }
  }
  return image;
}

/**
 * Simulated low resolution, in place: nearest-neighbour ("nearest-exact") down to
 * max(1, round(size·scale)) voxels per axis, then linear (align_corners false) back to `size`,
 * as torch's interpolate does in batchgeneratorsv2. A scale of 1 leaves an axis alone.
 */
export function simulateLowResolution(
  image: Float32Array,
  size: Shape3,
  scales: number[],
): Float32Array {
  let data = image, current = size;
  for (let a = 0; a < 3; a++) {
    const n = Math.max(1, roundHalfEven(size[a] * scales[a]));
    if (n !== size[a]) {
      ({ data, size: current } = resizeAxis(data, current, a, nearestTaps(size[a], n)));
    }
  }
  for (let a = 0; a < 3; a++) {
    if (current[a] !== size[a]) {
      ({ data, size: current } = resizeAxis(data, current, a, linearTaps(current[a], size[a])));
    }
  }
  if (data !== image) image.set(data);
  return image;
}

/**
 * nnU-Net's intensity transforms on a normalised d·h·w image, in nnU-Net's order (noise, blur,
 * brightness, contrast, low resolution, inverted gamma, gamma), each present one drawn with its
 * probabilities from `rng`. In place; returns the image.
 */
export function augmentIntensity(
  image: Float32Array,
  size: Shape3,
  spec: IntensityAugmentation,
  rng: Random,
): Float32Array {
  const { noise, blur, brightness, contrast, lowRes, gamma } = spec;
  const draw = ([lo, hi]: Range) => rng.uniform(lo, hi);
  if (noise && rng.next() < noise.p) gaussianNoise(image, draw(noise.std), rng);
  if (blur && rng.next() < blur.p && rng.next() < blur.pPerChannel) {
    gaussianBlur(image, size, [draw(blur.sigma), draw(blur.sigma), draw(blur.sigma)]);
  }
  if (brightness && rng.next() < brightness.p) {
    multiplyBrightness(image, bgContrast(rng, brightness.multiplier));
  }
  if (contrast && rng.next() < contrast.p) {
    adjustContrast(image, bgContrast(rng, contrast.factor), true);
  }
  if (lowRes && rng.next() < lowRes.p && rng.next() < lowRes.pPerChannel) {
    const s = draw(lowRes.scale);
    simulateLowResolution(image, size, [lowRes.inPlane ? 1 : s, s, s]);
  }
  if (gamma && rng.next() < gamma.pInverted) {
    adjustGamma(image, bgContrast(rng, gamma.gamma), true, true);
  }
  if (gamma && rng.next() < gamma.p) adjustGamma(image, bgContrast(rng, gamma.gamma), false, true);
  return image;
}

// ---------------------------------------------------------------------------------------------
// Mirroring

/** Reverses a d·h·w array along one axis (0 = z, 1 = y, 2 = x), in place. */
export function flipAxis<T extends Float32Array | Uint8Array>(
  data: T,
  size: Shape3,
  axis: number,
): void {
  const [outer, len, inner] = alongAxis(size, axis);
  if (inner === 1) {
    for (let o = 0; o < outer; o++) data.subarray(o * len, (o + 1) * len).reverse();
    return;
  }
  // Swap whole rows: native copies instead of one swap per voxel.
  const row = data.slice(0, inner);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    for (let i = 0, j = len - 1; i < j; i++, j--) {
      const a = base + i * inner, b = base + j * inner;
      row.set(data.subarray(a, a + inner));
      data.copyWithin(a, b, b + inner);
      data.set(row, b);
    }
  }
}

/** Mirrors image and labels along each of `axes`, in place; applying it twice is a no-op. */
export function mirrorPatch<T extends PatchArrays>(patch: T, size: Shape3, axes: number[]): T {
  for (const axis of axes) {
    flipAxis(patch.image, size, axis);
    flipAxis(patch.label, size, axis);
  }
  return patch;
}

// ---------------------------------------------------------------------------------------------
// Separable helpers

function otherAxes(axis: number): [number, number] {
  return axis === 0 ? [1, 2] : axis === 1 ? [0, 2] : [0, 1];
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** batchgeneratorsv2's Gaussian kernel: odd width nearest 6σ + 0.5, normalised to sum 1. */
function gaussianKernel(sigma: number): Float64Array {
  const target = sigma * 6 + 0.5, rounded = roundHalfEven(target);
  const width = rounded % 2 === 1 ? rounded : target - rounded >= 0 ? rounded + 1 : rounded - 1;
  if (!(sigma > 0) || width <= 1) return Float64Array.of(1);
  const half = (width - 1) / 2, kernel = new Float64Array(width);
  let sum = 0;
  for (let k = 0; k < width; k++) sum += kernel[k] = Math.exp(-0.5 * ((k - half) / sigma) ** 2);
  for (let k = 0; k < width; k++) kernel[k] /= sum;
  return kernel;
}

/** Index `i` of a line of `n` under torch's "reflect" padding (…2 1 | 0 1 2 … n−1 | n−2 …). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1), j = ((i % period) + period) % period;
  return j < n ? j : period - j;
}

/** A d·h·w array seen along `axis` as [outer, len, inner] (inner contiguous). */
function alongAxis(size: Shape3, axis: number): Shape3 {
  const [d, h, w] = size;
  return axis === 0 ? [1, d, h * w] : axis === 1 ? [d, h, w] : [d * h, w, 1];
}

/**
 * Convolves every line along `axis` with a symmetric odd kernel, in place, reflecting at the
 * ends; whole rows at a time, so the strided axes read memory in order.
 */
function blurAxis(data: Float32Array, size: Shape3, axis: number, kernel: Float64Array): void {
  const [outer, len, inner] = alongAxis(size, axis), r = (kernel.length - 1) / 2;
  if (r === 0) return;
  if (inner === 1) return blurLines(data, outer, len, kernel);
  const block = new Float64Array(len * inner);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    block.fill(0);
    for (let i = 0; i < len; i++) {
      const dst = i * inner;
      for (let k = 0; k < kernel.length; k++) {
        const j = i + k - r, src = base + (j >= 0 && j < len ? j : reflect(j, len)) * inner;
        const wk = kernel[k];
        for (let q = 0; q < inner; q++) block[dst + q] += wk * data[src + q];
      }
    }
    data.set(block, base);
  }
}

/** {@link blurAxis} along contiguous lines (x): each line padded by reflection, then convolved. */
function blurLines(data: Float32Array, lines: number, len: number, kernel: Float64Array): void {
  const r = (kernel.length - 1) / 2, taps = kernel.length, line = new Float64Array(len + 2 * r);
  for (let o = 0, base = 0; o < lines; o++, base += len) {
    for (let i = -r; i < len + r; i++) {
      line[i + r] = data[base + (i >= 0 && i < len ? i : reflect(i, len))];
    }
    for (let i = 0; i < len; i++) {
      let sum = 0;
      for (let k = 0; k < taps; k++) sum += kernel[k] * line[i + k];
      data[base + i] = sum;
    }
  }
}

/** Per output index: the two source indices and the weight of the second. */
interface Taps {
  i0: Int32Array;
  i1: Int32Array;
  t: Float64Array;
}

function taps(outLen: number, inLen: number, position: (i: number) => number): Taps {
  const result = {
    i0: new Int32Array(outLen),
    i1: new Int32Array(outLen),
    t: new Float64Array(outLen),
  };
  for (let i = 0; i < outLen; i++) {
    const x = Math.max(0, position(i)), i0 = Math.min(Math.floor(x), inLen - 1);
    result.i0[i] = i0;
    result.i1[i] = Math.min(i0 + 1, inLen - 1);
    result.t[i] = result.i1[i] === i0 ? 0 : x - i0;
  }
  return result;
}

/** torch "nearest-exact": source index ⌊(i + ½)·in/out⌋. */
function nearestTaps(inLen: number, outLen: number): Taps {
  return taps(outLen, inLen, (i) => Math.floor((i + 0.5) * (inLen / outLen)));
}

/** torch "linear", align_corners false: source position (i + ½)·in/out − ½, clamped at 0. */
function linearTaps(inLen: number, outLen: number): Taps {
  return taps(outLen, inLen, (i) => (i + 0.5) * (inLen / outLen) - 0.5);
}

/** Grid nodes every `step` output voxels: source position i / step. */
function strideTaps(inLen: number, outLen: number, step: number): Taps {
  return taps(outLen, inLen, (i) => i / step);
}

/** Resamples every line along `axis` through `t` (v0 + t·(v1 − v0), exact where v0 = v1). */
function resizeAxis(data: Float32Array, size: Shape3, axis: number, t: Taps) {
  const [outer, len, inner] = alongAxis(size, axis), out = t.t.length;
  const newSize = [...size] as Shape3;
  newSize[axis] = out;
  const result = new Float32Array(outer * out * inner);
  for (let o = 0; o < outer; o++) {
    const ib = o * len * inner, ob = o * out * inner;
    for (let i = 0; i < out; i++) {
      const r0 = ib + t.i0[i] * inner, r1 = ib + t.i1[i] * inner, w = t.t[i], dst = ob + i * inner;
      for (let q = 0; q < inner; q++) {
        const v0 = data[r0 + q];
        result[dst + q] = v0 + w * (data[r1 + q] - v0);
      }
    }
  }
  return { data: result, size: newSize };
}

/**
 * Mean, unbiased standard deviation, min and max of `sign`·image, in one pass (sums of the
 * values less the first one, which keeps the variance accurate far from 0).
 */
function stats(image: Float32Array, sign: number) {
  const n = image.length, shift = n > 0 ? sign * image[0] : 0;
  let sum = 0, squares = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = sign * image[i], u = v - shift;
    sum += u;
    squares += u * u;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const variance = Math.max(0, (squares - (sum * sum) / n) / Math.max(1, n - 1));
  return { mean: shift + sum / n, std: Math.sqrt(variance), min, max };
}
