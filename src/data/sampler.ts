/**
 * Training patch sampling, nnU-Net style. {@link patchSampler} turns a dataset manifest into an
 * endless, seeded stream of patch requests (which case, which corner) without touching a
 * volume: foreground patches are centred on coordinates the manifest already holds.
 * {@link readPatch} then reads one request through a case reader, normalises it (each channel
 * by its own scheme) and applies the request's own seeded augmentation.
 */

import type { CaseEntry, DatasetManifest, Split } from "./dataset.ts";
import { type Normalization, normalizeInPlace, normalizeValue, padIntensity } from "./normalize.ts";
import { type CaseReader, INT16_TABLE } from "./ome_zarr/reader.ts";
import { Random } from "../base/random.ts";
import type { Shape3 } from "./volume.ts";
import {
  augmentIntensity,
  type AugmentPreset,
  drawSpatial,
  flipAxis,
  type IntensityAugmentation,
  nnunetIntensity,
  nnunetSpatial,
  resampleSpatial,
  sourceBox,
  type SpatialAugmentation,
} from "./augment.ts";

export { flipAxis };

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

/**
 * Random augmentation of a patch; every part is off unless set. The parts run in this order:
 * `spatial` (in {@link readPatch}, which reads the larger source region it needs), flips,
 * `rotate90`, intensity scale and shift, `noiseStd`, then `intensityTransforms`.
 */
export interface Augmentation {
  /** Axes (0 = z, 1 = y, 2 = x) each flipped with probability 1/2 (nnU-Net's mirroring). */
  flipAxes?: number[];
  /** Rotate the axial (y, x) plane by a random multiple of 90° (180° only if h ≠ w). */
  rotate90?: boolean;
  /** Multiply intensities by a factor uniform in [1 − s, 1 + s]. */
  intensityScale?: number;
  /** Add an offset uniform in [−s, s] (in normalised units). */
  intensityShift?: number;
  /** Add Gaussian noise of this standard deviation (normalised units) with probability 1/2. */
  noiseStd?: number;
  /** Rotation, scaling, elastic deformation (augment.ts); applied by {@link readPatch} only. */
  spatial?: SpatialAugmentation;
  /** nnU-Net's noise, blur, brightness, contrast, low resolution and gamma (augment.ts). */
  intensityTransforms?: IntensityAugmentation;
}

/** The training config's augmentation switches (`data.augment`); absent ones are off. */
export interface AugmentFlags {
  flip?: boolean;
  rotate90?: boolean;
  intensity?: boolean;
  noise?: boolean;
  /** "basic" (default): each switch stands for itself; "nnunet": nnU-Net v2's whole set. */
  preset?: AugmentPreset;
  spatial?: boolean;
  elastic?: boolean;
  inPlane?: boolean;
  blur?: boolean;
  brightness?: boolean;
  contrast?: boolean;
  lowRes?: boolean;
  gamma?: boolean;
}

/**
 * The augmentation the training config's switches stand for.
 *
 * Preset "basic": `flip` mirrors every axis; `rotate90`, `intensity` (×0.75–1.25, ±0.1 shift)
 * and `noise` (σ 0.1, p 1/2) are voxseg's simple transforms; `spatial` (rotation ±30° and
 * scaling 0.7–1.4, each p 0.2), `elastic` (p 0.2), `blur`, `brightness`, `contrast`, `lowRes`
 * and `gamma` are nnU-Net v2's transforms with its probabilities and ranges (augment.ts).
 *
 * Preset "nnunet": nnU-Net v2's default training augmentation whatever the other switches say —
 * spatial, noise, blur, brightness, contrast, low resolution, gamma, mirroring of all axes —
 * plus elastic deformation when `elastic` is on. `inPlane` (both presets) confines rotation,
 * scaling, deformation and low resolution to the axial plane, rotating up to ±180° (nnU-Net's
 * choice for anisotropic patches).
 */
export function augmentationFromFlags(flags: AugmentFlags): Augmentation {
  const inPlane = flags.inPlane ?? false;
  if (flags.preset === "nnunet") {
    return {
      flipAxes: [0, 1, 2],
      spatial: nnunetSpatial({ inPlane, elastic: flags.elastic }),
      intensityTransforms: nnunetIntensity(inPlane),
    };
  }
  const all = nnunetIntensity(inPlane);
  const chosen: IntensityAugmentation = {
    ...(flags.blur ? { blur: all.blur } : {}),
    ...(flags.brightness ? { brightness: all.brightness } : {}),
    ...(flags.contrast ? { contrast: all.contrast } : {}),
    ...(flags.lowRes ? { lowRes: all.lowRes } : {}),
    ...(flags.gamma ? { gamma: all.gamma } : {}),
  };
  const spatial = flags.spatial || flags.elastic
    ? nnunetSpatial({ inPlane, elastic: flags.elastic, rotateScale: flags.spatial === true })
    : undefined;
  return {
    ...(flags.flip ? { flipAxes: [0, 1, 2] } : {}),
    ...(flags.rotate90 ? { rotate90: true } : {}),
    ...(flags.intensity ? { intensityScale: 0.25, intensityShift: 0.1 } : {}),
    ...(flags.noise ? { noiseStd: 0.1 } : {}),
    ...(spatial ? { spatial } : {}),
    ...(Object.keys(chosen).length > 0 ? { intensityTransforms: chosen } : {}),
  };
}

export interface Patch {
  /**
   * Normalised intensities, C·d·h·w (channel-major, x fastest; C = 1 for a one-channel case);
   * padding holds each channel's normalised pad value.
   */
  image: Float32Array;
  /** Labels, d·h·w; padding is 0 (background). */
  label: Uint8Array;
}

/**
 * Reads one requested patch: image (normalised; outside the volume it reads as
 * {@link padIntensity} before normalisation, i.e. air for CT) and label (0 outside), then
 * applies `augment` seeded by the request. A drawn spatial transform reads the box of source
 * voxels the transformed patch covers (larger than the patch when rotated or zoomed out) and
 * resamples it, so the patch has no holes; without one the patch is read as it is.
 *
 * A case of C > 1 channels takes one normalisation per channel (`norm` a list of C) and gives
 * C·d·h·w voxels: every channel gets the same spatial transform, flips and rotation (so they
 * stay aligned with each other and the label); intensity augmentations are drawn per channel.
 *
 * `out` (C·d·h·w image and d·h·w label voxels, e.g. a patch's place in a batch), when given,
 * receives the patch and is returned: without a spatial transform the chunks are copied
 * straight into it. An int16 image is normalised as it is copied, through a lookup table of
 * every int16 value's normalised value ({@link normalizationTable}): the same numbers as
 * normalising the float32 voxels afterwards, in one pass instead of two.
 */
export async function readPatch(
  reader: CaseReader,
  request: PatchRequest,
  patchSize: Shape3,
  norm: Normalization | readonly Normalization[],
  augment?: Augmentation,
  out?: Patch,
): Promise<Patch> {
  const norms = "kind" in norm ? [norm as Normalization] : norm as readonly Normalization[];
  if (norms.length !== reader.channels) {
    throw new RangeError(
      `case ${request.caseId} has ${reader.channels} image channel(s) but ${norms.length} ` +
        "normalisation(s) were given; give one per channel",
    );
  }
  const voxels = patchSize[0] * patchSize[1] * patchSize[2];
  if (out && (out.image.length !== norms.length * voxels || out.label.length !== voxels)) {
    throw new RangeError(
      `out holds ${out.image.length} image and ${out.label.length} label voxels for a patch ` +
        `of ${norms.length}×${voxels}`,
    );
  }
  const rng = augment ? new Random(request.seed) : undefined;
  const map = rng && augment?.spatial ? drawSpatial(rng, augment.spatial, patchSize) : undefined;
  const box = map ? sourceBox(map, patchSize) : { offset: [0, 0, 0] as Shape3, size: patchSize };
  const start = request.start.map((s, a) => s + box.offset[a]) as Shape3;
  const pads = norms.map(padIntensity);
  const n = box.size[0] * box.size[1] * box.size[2];
  // Without a spatial transform the box is the patch: read it straight into `out`.
  const target = out && !map ? out : undefined;
  const image = target?.image ?? new Float32Array(norms.length * n);
  const label = target?.label ?? new Uint8Array(n);
  const tables = reader.imageDtype === "int16" ? normalizationTables(norms, n) : undefined;
  if (tables) {
    const fills = norms.map((nc, c) => normalizeValue(pads[c], nc));
    await Promise.all([
      reader.readImageMapped(start, box.size, tables, fills, image),
      reader.readLabel(start, box.size, 0, label),
    ]);
  } else {
    await Promise.all([
      reader.readImage(start, box.size, pads.length === 1 ? pads[0] : pads, image),
      reader.readLabel(start, box.size, 0, label),
    ]);
    norms.forEach((nc, c) => normalizeInPlace(image.subarray(c * n, (c + 1) * n), nc));
  }
  let patch: Patch = { image, label };
  if (map) {
    // The box holds every sample (the reader pads outside the volume); `pad` is a safety net.
    const channels = norms.map((nc, c) =>
      resampleSpatial(
        { image: image.subarray(c * n, (c + 1) * n), label },
        box,
        map,
        patchSize,
        normalizeValue(pads[c], nc),
      )
    );
    patch = { image: concatChannels(channels.map((p) => p.image)), label: channels[0].label };
  }
  if (augment && rng) patch = augmentPatch(patch, patchSize, augment, rng, norms.length);
  if (!out) return patch;
  // A spatial transform or a quarter turn gives new arrays.
  if (patch.image !== out.image) out.image.set(patch.image);
  if (patch.label !== out.label) out.label.set(patch.label);
  return out;
}

/** Normalisation tables kept per worker (a few: one per distinct normalisation in use). */
const TABLES = new Map<string, Float32Array>();
const MAX_TABLES = 16;

/**
 * The normalised value of every int16 intensity, index v + 32768 holding v's: 256 KiB,
 * memoised for the last {@link MAX_TABLES} normalisations. Built by {@link normalizeInPlace}
 * itself, so a looked-up voxel is bit for bit the voxel normalised.
 */
export function normalizationTable(norm: Normalization): Float32Array {
  const key = JSON.stringify(norm);
  let table = TABLES.get(key);
  if (table) {
    TABLES.delete(key); // most recently used last
  } else {
    table = new Float32Array(INT16_TABLE);
    for (let i = 0; i < INT16_TABLE; i++) table[i] = i - 32768;
    normalizeInPlace(table, norm);
    if (TABLES.size >= MAX_TABLES) TABLES.delete(TABLES.keys().next().value!);
  }
  TABLES.set(key, table);
  return table;
}

/**
 * The tables of `norms` for a read of `voxels` voxels per channel, or undefined where building
 * a table would cost more than normalising the voxels (a small patch, a table not yet built).
 */
function normalizationTables(
  norms: readonly Normalization[],
  voxels: number,
): Float32Array[] | undefined {
  const cached = norms.every((nc) => TABLES.has(JSON.stringify(nc)));
  return cached || voxels >= INT16_TABLE / 4 ? norms.map(normalizationTable) : undefined;
}

/** The arrays one after another (the single array itself when there is one). */
function concatChannels(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/**
 * Applies an augmentation to a patch of `channels` channels in place (flips, rotation,
 * intensity) and returns it. Flips and rotation are drawn once and applied to every channel
 * and the label; intensity scale, shift, noise and `intensityTransforms` are drawn for each
 * channel in turn (for one channel, the draws are those of a one-channel patch).
 * `augment.spatial` is not applied here: it needs the source region around the patch, which
 * {@link readPatch} reads.
 */
export function augmentPatch(
  patch: Patch,
  size: Shape3,
  augment: Augmentation,
  rng: Random,
  channels = 1,
): Patch {
  const n = size[0] * size[1] * size[2];
  const channel = (c: number) => patch.image.subarray(c * n, (c + 1) * n);
  for (const axis of augment.flipAxes ?? []) {
    if (rng.next() < 0.5) {
      for (let c = 0; c < channels; c++) flipAxis(channel(c), size, axis);
      flipAxis(patch.label, size, axis);
    }
  }
  if (augment.rotate90) {
    const quarterTurns = size[1] === size[2] ? rng.int(0, 4) : 2 * rng.int(0, 2);
    if (quarterTurns > 0) {
      // Each axial slice turns alone, so C channels turn as C·d slices.
      patch.image = rotateAxial(patch.image, [channels * size[0], size[1], size[2]], quarterTurns);
      patch.label = rotateAxial(patch.label, size, quarterTurns);
    }
  }
  for (let c = 0; c < channels; c++) augmentChannel(channel(c), size, augment, rng);
  return patch;
}

/** The intensity augmentations of one channel, in place. */
function augmentChannel(img: Float32Array, size: Shape3, augment: Augmentation, rng: Random) {
  const scale = augment.intensityScale
    ? rng.uniform(1 - augment.intensityScale, 1 + augment.intensityScale)
    : 1;
  const shift = augment.intensityShift
    ? rng.uniform(-augment.intensityShift, augment.intensityShift)
    : 0;
  if (scale !== 1 || shift !== 0) {
    for (let i = 0; i < img.length; i++) img[i] = img[i] * scale + shift;
  }
  if (augment.noiseStd && rng.next() < 0.5) {
    const std = augment.noiseStd;
    for (let i = 0; i < img.length; i++) img[i] += rng.normal(0, std);
  }
  if (augment.intensityTransforms) {
    augmentIntensity(img, size, augment.intensityTransforms, rng);
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
