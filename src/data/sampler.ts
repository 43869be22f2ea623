/**
 * Training patch sampling, nnU-Net style. {@link patchSampler} turns a dataset manifest into an
 * endless, seeded stream of patch requests (which case, which corner) without touching a
 * volume: foreground patches are centred on coordinates the manifest already holds.
 * {@link readPatch} then reads one request through a case reader, normalises it and applies
 * the request's own seeded augmentation.
 */

import type { CaseEntry, DatasetManifest, Split } from "./dataset.ts";
import { type Normalization, normalizeInPlace, padIntensity } from "./normalize.ts";
import type { CaseReader } from "./ome_zarr/reader.ts";
import { Random } from "../base/random.ts";
import type { Shape3 } from "./volume.ts";

/** One patch to read: the box `start`..`start + patchSize` (z, y, x) of case `caseId`. */
export interface PatchRequest {
  caseId: string;
  /** Corner of the patch in voxels; may be negative or run past the end (padding). */
  start: Shape3;
  /** Foreground class the patch was centred on, or 0 for a uniformly placed patch. */
  centeredOn: number;
  /** Seed of this patch's augmentation, so it does not depend on who reads the patch. */
  seed: number;
}

export interface PatchSamplerOptions {
  /** d, h, w in voxels. */
  patchSize: Shape3;
  /** Probability that a patch is centred on a foreground voxel (default 1/3). */
  foregroundFraction?: number;
  seed: number;
  /** Cases to draw from (default "train"); "all" uses every labelled case. */
  split?: Split | "all";
}

/**
 * An endless stream of patch requests over the labelled cases of a split. Each request picks a
 * case uniformly; with probability `foregroundFraction` it then picks a class uniformly among
 * the foreground classes present in that case and one of the manifest's sampled coordinates of
 * that class, and centres the patch there with a jitter of up to a quarter patch (the voxel
 * always stays inside); otherwise the patch is placed uniformly. Along an axis where the volume
 * is at least as large as the patch, the patch stays inside; where it is smaller, the patch
 * covers the whole extent and the rest is padding.
 *
 * @example
 * const sampler = patchSampler(dataset, { patchSize: [32, 64, 64], seed: 1 });
 * const { caseId, start } = sampler.next().value;
 */
export function* patchSampler(
  dataset: Pick<DatasetManifest, "cases" | "name">,
  options: PatchSamplerOptions,
): Generator<PatchRequest, never> {
  const { patchSize, seed, split = "train", foregroundFraction = 1 / 3 } = options;
  if (patchSize.length !== 3 || patchSize.some((s) => !Number.isInteger(s) || s <= 0)) {
    throw new RangeError(`patchSize must be 3 positive integers (d,h,w), got [${patchSize}]`);
  }
  if (!(foregroundFraction >= 0 && foregroundFraction <= 1)) {
    throw new RangeError(`foregroundFraction must be in [0, 1], got ${foregroundFraction}`);
  }
  const cases = dataset.cases.filter((c) => c.hasLabel && (split === "all" || c.split === split));
  if (cases.length === 0) {
    throw new Error(
      `dataset "${dataset.name}" has no labelled ${split === "all" ? "" : `"${split}" `}cases ` +
        "to sample patches from",
    );
  }
  // Per case: the foreground classes that have sampled coordinates.
  const present = cases.map((c) =>
    c.foreground.flatMap((coords, k) => (k > 0 && coords.length >= 3 ? [k] : []))
  );
  const rng = new Random(seed);
  while (true) {
    const ci = rng.int(0, cases.length);
    const entry = cases[ci], classes = present[ci];
    const wantForeground = rng.next() < foregroundFraction;
    const patchSeed = rng.int(0, 2 ** 31);
    if (wantForeground && classes.length > 0) {
      const k = classes[rng.int(0, classes.length)];
      const coords = entry.foreground[k];
      const j = 3 * rng.int(0, coords.length / 3);
      const start = [0, 1, 2].map((a) => {
        const p = patchSize[a], quarter = Math.floor(p / 4);
        const jitter = rng.int(-quarter, quarter + 1);
        return clampStart(coords[j + a] - Math.floor(p / 2) + jitter, entry, a, p);
      }) as Shape3;
      yield { caseId: entry.id, start, centeredOn: k, seed: patchSeed };
    } else {
      const start = [0, 1, 2].map((a) => {
        const [lo, hi] = startRange(entry.shape[a], patchSize[a]);
        return rng.int(lo, hi + 1);
      }) as Shape3;
      yield { caseId: entry.id, start, centeredOn: 0, seed: patchSeed };
    }
  }
}

/** Allowed patch corners along one axis: inside the volume, or covering all of it. */
function startRange(size: number, patch: number): [number, number] {
  return size >= patch ? [0, size - patch] : [size - patch, 0];
}

function clampStart(start: number, entry: CaseEntry, axis: number, patch: number): number {
  const [lo, hi] = startRange(entry.shape[axis], patch);
  return Math.min(hi, Math.max(lo, start));
}

/** Random augmentation of a patch; every part is off unless set. */
export interface Augmentation {
  /** Axes (0 = z, 1 = y, 2 = x) each flipped with probability 1/2. */
  flipAxes?: number[];
  /** Rotate the axial (y, x) plane by a random multiple of 90° (180° only if h ≠ w). */
  rotate90?: boolean;
  /** Multiply intensities by a factor uniform in [1 − s, 1 + s]. */
  intensityScale?: number;
  /** Add an offset uniform in [−s, s] (in normalised units). */
  intensityShift?: number;
  /** Add Gaussian noise of this standard deviation (normalised units) with probability 1/2. */
  noiseStd?: number;
}

/**
 * The augmentation the training config's switches stand for (nnU-Net-like magnitudes: all
 * flips, ×0.75–1.25 intensity, ±0.1 shift, noise σ 0.1).
 */
export function augmentationFromFlags(flags: {
  flip?: boolean;
  rotate90?: boolean;
  intensity?: boolean;
  noise?: boolean;
}): Augmentation {
  return {
    ...(flags.flip ? { flipAxes: [0, 1, 2] } : {}),
    ...(flags.rotate90 ? { rotate90: true } : {}),
    ...(flags.intensity ? { intensityScale: 0.25, intensityShift: 0.1 } : {}),
    ...(flags.noise ? { noiseStd: 0.1 } : {}),
  };
}

export interface Patch {
  /** Normalised intensities, d·h·w, x fastest; padding holds the normalised pad value. */
  image: Float32Array;
  /** Labels, d·h·w; padding is 0 (background). */
  label: Uint8Array;
}

/**
 * Reads one requested patch: image (normalised; outside the volume it reads as
 * {@link padIntensity} before normalisation, i.e. air for CT) and label (0 outside), then
 * applies `augment` seeded by the request.
 */
export async function readPatch(
  reader: CaseReader,
  request: PatchRequest,
  patchSize: Shape3,
  norm: Normalization,
  augment?: Augmentation,
): Promise<Patch> {
  const [image, label] = await Promise.all([
    reader.readImage(request.start, patchSize, padIntensity(norm)),
    reader.readLabel(request.start, patchSize, 0),
  ]);
  normalizeInPlace(image, norm);
  const patch = { image, label };
  return augment ? augmentPatch(patch, patchSize, augment, new Random(request.seed)) : patch;
}

/** Applies an augmentation to a patch in place (flips, rotation) and returns it. */
export function augmentPatch(
  patch: Patch,
  size: Shape3,
  augment: Augmentation,
  rng: Random,
): Patch {
  for (const axis of augment.flipAxes ?? []) {
    if (rng.next() < 0.5) {
      flipAxis(patch.image, size, axis);
      flipAxis(patch.label, size, axis);
    }
  }
  if (augment.rotate90) {
    const quarterTurns = size[1] === size[2] ? rng.int(0, 4) : 2 * rng.int(0, 2);
    if (quarterTurns > 0) {
      patch.image = rotateAxial(patch.image, size, quarterTurns);
      patch.label = rotateAxial(patch.label, size, quarterTurns);
    }
  }
  const scale = augment.intensityScale
    ? rng.uniform(1 - augment.intensityScale, 1 + augment.intensityScale)
    : 1;
  const shift = augment.intensityShift
    ? rng.uniform(-augment.intensityShift, augment.intensityShift)
    : 0;
  if (scale !== 1 || shift !== 0) {
    const img = patch.image;
    for (let i = 0; i < img.length; i++) img[i] = img[i] * scale + shift;
  }
  if (augment.noiseStd && rng.next() < 0.5) {
    const img = patch.image, std = augment.noiseStd;
    for (let i = 0; i < img.length; i++) img[i] += rng.normal(0, std);
  }
  return patch;
}

/** Reverses a d·h·w array along one axis, in place. */
export function flipAxis(data: Float32Array | Uint8Array, size: Shape3, axis: number): void {
  const [d, h, w] = size;
  const n = size[axis], stride = [h * w, w, 1][axis];
  const outer = axis === 0 ? 1 : axis === 1 ? d : d * h;
  const inner = axis === 0 ? h * w : axis === 1 ? w : 1;
  for (let o = 0; o < outer; o++) {
    const base = axis === 0 ? 0 : axis === 1 ? o * h * w : o * w;
    for (let m = 0; m < inner; m++) {
      for (let a = base + m, b = a + (n - 1) * stride; a < b; a += stride, b -= stride) {
        const t = data[a];
        data[a] = data[b];
        data[b] = t;
      }
    }
  }
}

/** Rotates each axial (y, x) slice by `turns` quarter turns (turns odd needs h = w). */
function rotateAxial<T extends Float32Array | Uint8Array>(data: T, size: Shape3, turns: number): T {
  const [d, h, w] = size;
  const out = new (data.constructor as { new (n: number): T })(data.length);
  // Where (y, x) goes: one quarter turn sends it to (x, w−1−y); a half turn to (h−1−y, w−1−x).
  const [yy, yx, y0, xy, xx, x0] = turns === 1
    ? [0, 1, 0, -1, 0, w - 1]
    : turns === 2
    ? [-1, 0, h - 1, 0, -1, w - 1]
    : [0, -1, w - 1, 1, 0, 0];
  for (let z = 0; z < d; z++) {
    const o = z * h * w;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const ty = yy * y + yx * x + y0, tx = xy * y + xx * x + x0;
        out[o + ty * w + tx] = data[o + y * w + x];
      }
    }
  }
  return out;
}
