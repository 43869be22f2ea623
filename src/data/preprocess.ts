/**
 * Preprocessing, nnU-Net style: every case is resampled once to the dataset's target spacing
 * and cropped to the region that differs from its background, and the result is stored as a
 * new dataset of OME-Zarr cases that training reads without resampling anything.
 *
 * Each preprocessed case carries a {@link PreprocessRecord} (`attributes.voxseg.preprocessing`)
 * with what maps a prediction on its grid back onto the original grid exactly:
 * {@link restoreLabels} pastes the labels into the whole resampled grid (background 0 outside
 * the crop box) and resamples them (one-hot linear + arg-max) onto the original shape.
 *
 * Order of work: resample, then crop (the crop box is in resampled voxels). The box is found
 * on the original grid — the voxels differing from the image background (./crop.ts), joined
 * with the label's foreground so no labelled voxel is ever cut — and mapped to the resampled
 * voxels that read any voxel of it; only those are computed. Every voxel left out reads only
 * background, so cropping changes nothing but the stored extent.
 *
 * Intensities: an int16 image (CT in HU) stays int16, its resampled values rounded to the
 * nearest integer (halves up) and clamped to the int16 range; any other image is stored as
 * float32. Resampling at the original spacing is the identity, bit for bit. Intensities are
 * not normalised here: training normalises each channel by its own scheme, from the statistics
 * recorded with the preprocessed cases.
 *
 * Several channels (nnU-Net's CASE_0000 … CASE_000N, on one grid) are preprocessed together
 * ({@link preprocessChannels}): each resampled the same way onto the same grid, and cropped to
 * one box — the union of every channel's non-background region and the label's foreground — so
 * they stay aligned voxel for voxel; the record (background included) is channel 0's.
 */

import { join, resolve } from "node:path";
import { commitFolder, tempSibling } from "../base/atomic.ts";
import { Random } from "../base/random.ts";
import { imageStats } from "./image_stats.ts";
import {
  backgroundValue,
  type Box3,
  checkBox,
  type CropBackground,
  fullBox,
  isFullBox,
  nonZeroBox,
  uncrop,
  unionBox,
} from "./crop.ts";
import { channelCaseStats, channelCount, type ForegroundSample, withChannels } from "./channels.ts";
import {
  buildManifest,
  caseStats,
  type Dataset,
  type DatasetManifest,
  datasetTargetProblem,
  type ManifestCase,
  resolveCase,
  writeDataset,
} from "./dataset.ts";
import type { NiftiVolume } from "./nifti.ts";
import { type NiftiGeometry, niftiGeometry } from "./nifti_geometry.ts";
import type { CaseCodec, CasePreprocessing } from "./ome_zarr/metadata.ts";
import { openCase } from "./ome_zarr/reader.ts";
import { labelArray, writeCase } from "./ome_zarr/writer.ts";
import {
  axisOrders,
  type InterpolationOrder,
  outputBox,
  resampledShape,
  resampledSpacing,
  resampleImage,
  resampleLabels,
} from "./resample.ts";
import { checkVolume, type Shape3, type Volume, voxelCount } from "./volume.ts";

/** How a preprocessed case maps back to its original grid (stored with the case). */
export type PreprocessRecord = CasePreprocessing;

export interface PreprocessOptions {
  /** Target voxel spacing, z, y, x mm. */
  targetSpacingMm: Shape3;
  /** Crop to the region differing from the background (see ./crop.ts). */
  crop: boolean;
  /** Image interpolation: 1 linear, 3 cubic in-plane (linear along coarse axes). */
  order: InterpolationOrder;
  /** The image background for cropping; default `"min"`. */
  background?: CropBackground;
  /** Label classes (values 0..classes−1); default the largest label value + 1. */
  classes?: number;
  /** The original NIfTI geometry to record; default the image's header if read from NIfTI. */
  nifti?: NiftiGeometry;
}

export interface PreprocessedCase {
  /** int16 when the input image was int16, else float32; on the preprocessed grid. */
  image: Volume;
  /** uint8 class indices on the image's grid. */
  label?: Volume;
  record: PreprocessRecord;
}

/**
 * Resamples a case (image and optional label map on its grid) to `targetSpacingMm` and crops
 * it to its non-background region; see the module comment.
 *
 * @example
 * const { image, label, record } = preprocessCase(ct, seg, {
 *   targetSpacingMm: [2.5, 0.8, 0.8], crop: true, order: 3,
 * });
 */
export function preprocessCase(
  image: Volume,
  label: Volume | undefined,
  options: PreprocessOptions,
): PreprocessedCase {
  const { channels: [out], ...rest } = preprocessChannels([image], label, options);
  return { image: out, ...rest };
}

/** A preprocessed case of one or more channels, all on the preprocessed grid. */
export interface PreprocessedChannels {
  /** Each channel (int16 where the input channel was int16, else float32), channel order. */
  channels: Volume[];
  /** uint8 class indices on the channels' grid. */
  label?: Volume;
  /** Channel 0's record (every channel shares its grid, resampling and crop). */
  record: PreprocessRecord;
}

/**
 * {@link preprocessCase} for the channels of one case (one voxel grid): every channel resampled
 * onto the same grid and cropped to one box, the union of each channel's non-background region
 * (its own background, by `options.background`) and the label's foreground, so the channels
 * stay aligned voxel for voxel.
 *
 * @example
 * const { channels: [ct, pet], label } = preprocessChannels([ct0, pet0], seg, {
 *   targetSpacingMm: [2.5, 0.8, 0.8], crop: true, order: 3,
 * });
 */
export function preprocessChannels(
  images: readonly Volume[],
  label: Volume | undefined,
  options: PreprocessOptions,
): PreprocessedChannels {
  if (images.length === 0) throw new RangeError("give at least one image channel");
  images.forEach((c, i) => checkVolume(c, images.length > 1 ? `image channel ${i}` : "image"));
  const image = images[0];
  images.forEach((c, i) => {
    if (i > 0 && c.shape.some((s, a) => s !== image.shape[a])) {
      throw new RangeError(
        `image channel ${i}: shape [${c.shape}] differs from channel 0's [${image.shape}] ` +
          "(D,H,W); every channel must lie on one voxel grid",
      );
    }
  });
  const { targetSpacingMm: target, crop, order } = options;
  if (target?.length !== 3 || target.some((s) => !(s > 0) || !Number.isFinite(s))) {
    throw new RangeError(`targetSpacingMm must be 3 positive numbers (z,y,x mm), got [${target}]`);
  }
  const labels = label ? checkedLabels(image, label) : undefined;
  const outShape = resampledShape(image.shape, image.spacingMm, target);
  const orders = axisOrders(
    image.spacingMm,
    resampledSpacing(image.shape, image.spacingMm, outShape),
    order,
  );
  const backgrounds = images.map((c) => backgroundValue(c, options.background ?? "min"));
  const background = backgrounds[0];
  let box = fullBox(outShape);
  if (crop) {
    let inBox = labels && nonZeroBox({ data: labels, shape: image.shape }, { background: 0 });
    images.forEach((c, i) => {
      inBox = unionBox(nonZeroBox(c, { background: backgrounds[i] }), inBox);
    });
    if (inBox) box = outputBox(image.shape, outShape, orders, inBox);
  }
  const channels = images.map((c) => {
    const resampled = resampleImage(c, outShape, orders, box);
    if (c.data instanceof Int16Array) resampled.data = roundToInt16(resampled.data);
    return resampled;
  });
  const resampled = channels[0];
  const classes = options.classes ?? labelClasses(labels);
  const nifti = options.nifti ?? (image as Partial<NiftiVolume>).header;
  const record: PreprocessRecord = {
    version: 1,
    originalShape: [...image.shape],
    originalSpacingMm: [...image.spacingMm],
    originalAffine: [...image.affine],
    ...(nifti ? { originalNifti: niftiGeometry(nifti) } : {}),
    resampledShape: outShape,
    targetSpacingMm: [...target],
    cropBox: box,
    order,
    background: image.data instanceof Int16Array ? background : Math.fround(background),
  };
  if (!labels) return { channels, record };
  const data = resampleLabels(labels, image.shape, classes, outShape, box);
  return { channels, label: { ...resampled, data }, record };
}

/** A label map's uint8 data, checked to lie on the image's grid. */
function checkedLabels(image: Volume, label: Volume): Uint8Array {
  if (label.shape.some((s, i) => s !== image.shape[i])) {
    throw new RangeError(
      `label shape [${label.shape}] differs from image shape [${image.shape}] (D,H,W); the ` +
        "label map must lie on the image's voxel grid",
    );
  }
  return labelArray(label);
}

function labelClasses(labels: Uint8Array | undefined): number {
  let max = 1;
  if (labels) { for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i]; }
  return max + 1;
}

/** Rounds to the nearest integer (halves up) and clamps to the int16 range. */
function roundToInt16(data: ArrayLike<number>): Int16Array {
  const out = new Int16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    out[i] = Math.min(32767, Math.max(-32768, Math.round(data[i])));
  }
  return out;
}

/**
 * A label map on a preprocessed grid (shape `record.cropBox.size`, uint8 class indices, x
 * fastest) mapped back onto the original grid: pasted into the resampled grid with background
 * 0 around it, then resampled (one-hot linear + arg-max) onto exactly `record.originalShape`.
 * Returns a uint8 volume with the original spacing and affine.
 *
 * @example
 * const seg = restoreLabels(prediction, caseReader.preprocessing!, classes.length);
 */
export function restoreLabels(
  labels: Uint8Array,
  record: PreprocessRecord,
  classes?: number,
): Volume {
  const box: Box3 = record.cropBox;
  checkBox(box, record.resampledShape, "preprocessing crop box");
  if (labels.length !== voxelCount(box.size)) {
    throw new RangeError(
      `labels have ${labels.length} voxels but the preprocessed grid [${box.size}] (D,H,W) ` +
        `has ${voxelCount(box.size)}; predict on the preprocessed case's grid`,
    );
  }
  const full = isFullBox(box, record.resampledShape)
    ? labels
    : uncrop(labels, box, record.resampledShape, 0);
  const data = resampleLabels(
    full,
    record.resampledShape,
    classes ?? labelClasses(labels),
    record.originalShape,
  );
  return {
    shape: [...record.originalShape],
    spacingMm: [...record.originalSpacingMm],
    affine: [...record.originalAffine],
    data,
  };
}

// ---------------------------------------------------------------------------------------------
// A whole dataset

/** What {@link preprocessDataset} reports after each case. */
export interface PreprocessProgress {
  /** 0-based position of the case; `total` cases in all. */
  index: number;
  total: number;
  id: string;
  originalShape: Shape3;
  /** Shape stored (after resampling and cropping), D, H, W. */
  shape: Shape3;
  seconds: number;
}

export interface PreprocessDatasetOptions {
  /** Target voxel spacing, z, y, x mm (e.g. the source manifest's `targetSpacingMm`). */
  targetSpacingMm: Shape3;
  crop: boolean;
  order: InterpolationOrder;
  /** Chunk shape of the written cases (D,H,W) or one edge; default 64. */
  chunks?: number | Shape3;
  /** Default "zstd". */
  codec?: CaseCodec;
  /** Seed of the foreground coordinate sampling; default 0. */
  seed?: number;
  /** The image background for cropping; default `"min"` (see ./crop.ts). */
  background?: CropBackground;
  /**
   * Per case id, a linear map applied to the image before anything else (`v·scale + offset`,
   * rounded into int16): how CT stored as 0..255 reaches the Hounsfield scale of the other cases
   * (the plan estimates it, see src/data/fingerprint.ts). Cases without one are left as they are.
   * On a dataset of several channels, a list gives one map per channel (null: left as it is);
   * a single map applies to channel 0.
   */
  intensityMaps?: Record<string, IntensityMap | (IntensityMap | null)[]>;
  onCase?: (progress: PreprocessProgress) => void;
}

/** A linear intensity map, `v·scale + offset`. */
export interface IntensityMap {
  scale: number;
  offset: number;
}

/** `image` mapped by `map` into int16 (rounded, clamped), the Hounsfield units' type. */
export function mapIntensities(image: Volume, map: IntensityMap): Volume {
  const src = image.data;
  const out = new Int16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = Math.round(src[i] * map.scale + map.offset);
    out[i] = v < -32768 ? -32768 : v > 32767 ? 32767 : v;
  }
  return { ...image, data: out };
}

/**
 * Preprocesses every case of `dataset` ({@link preprocessCase}) into a new dataset at `outDir`:
 * `cases/ID.zarr` (each with its {@link PreprocessRecord} as attribute `preprocessing`) and a
 * `dataset.json` with the same name, classes, modality and splits, shapes and spacings of the
 * preprocessed grids, foreground coordinates and intensity statistics recomputed, the target
 * spacing as `targetSpacingMm`, and `source.preprocessedFrom` naming the input dataset. One
 * case is in memory at a time. Everything is written to a hidden sibling of `outDir` and moved
 * into place at the end; `outDir` must be new, empty or a voxseg dataset (which is replaced),
 * and must not hold the input dataset. Returns the manifest written.
 *
 * @example
 * const ds = await readDataset("data/lungs");
 * await preprocessDataset(ds, "data/lungs_pp", {
 *   targetSpacingMm: ds.targetSpacingMm, crop: true, order: 3,
 * });
 */
export async function preprocessDataset(
  dataset: Dataset,
  outDir: string,
  options: PreprocessDatasetOptions,
): Promise<DatasetManifest> {
  const target = resolve(outDir);
  await checkOutDir(target, dataset.root);
  const stage = tempSibling(target);
  await Deno.mkdir(stage, { recursive: true });
  try {
    const { entries: cases, foreground } = await preprocessCases(dataset, stage, options);
    const { targetSpacingMm, crop, order } = options;
    const built = buildManifest({
      name: dataset.name,
      modality: dataset.modality,
      classes: dataset.classes,
      cases,
      source: {
        preprocessedFrom: dataset.name,
        targetSpacingMm: [...targetSpacingMm],
        crop,
        order,
        ...(options.intensityMaps ? { intensityMaps: options.intensityMaps } : {}),
      },
    });
    const manifest = dataset.channels && dataset.channels.length > 1
      ? withChannels(built, dataset.channels, foreground)
      : built;
    manifest.targetSpacingMm = [...targetSpacingMm];
    await writeDataset(stage, manifest);
    await commitFolder(stage, target);
    return manifest;
  } catch (e) {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * Reads, preprocesses and writes each case under `stage`; its manifest entries and, for a
 * multi-channel dataset, each labelled case's per-channel foreground samples (`withChannels`).
 */
async function preprocessCases(
  dataset: Dataset,
  stage: string,
  options: PreprocessDatasetOptions,
): Promise<{ entries: ManifestCase[]; foreground: ForegroundSample[][] }> {
  const rng = new Random(options.seed ?? 0);
  const paths = casePaths(dataset.cases.map((c) => c.id));
  const C = channelCount(dataset);
  const entries: ManifestCase[] = [];
  const foreground: ForegroundSample[][] = [];
  for (const [index, entry] of dataset.cases.entries()) {
    const t0 = performance.now();
    const caseRng = rng.fork();
    const reader = await openCase(resolveCase(dataset, entry.id), { cacheBytes: 0 });
    if (reader.channels !== C) {
      throw new Error(
        `case "${entry.id}" has ${reader.channels} image channel(s) but dataset.json lists ${C}; ` +
          "convert the dataset again so every case has its channels",
      );
    }
    const read = C > 1 ? await reader.readFullChannels() : [await reader.readFullImage()];
    const maps = caseMaps(options.intensityMaps?.[entry.id], C, entry.id);
    const images = read.map((c, i) => (maps[i] ? mapIntensities(c, maps[i]!) : c));
    const label = entry.hasLabel ? await reader.readFullLabel() : undefined;
    const out = preprocessChannels(images, label, {
      ...options,
      classes: dataset.classes.length,
      nifti: reader.nifti,
    });
    const image = out.channels[0];
    const int16 = out.channels.every((c) => c.data instanceof Int16Array);
    await writeCase(join(stage, paths[index]), {
      image: C > 1 ? out.channels : image,
      label: out.label,
      chunks: options.chunks,
      codec: options.codec,
      name: entry.id,
      imageDtype: int16 ? "int16" : "float32",
      classNames: reader.classNames ?? dataset.classes,
      preprocessing: out.record,
      ...(C > 1 ? { channelNames: reader.channelNames ?? dataset.channels } : {}),
    });
    const stats: ManifestCase["stats"] = out.label
      ? caseStats(image, out.label, dataset.classes, caseRng)
      : { shape: image.shape, spacingMm: image.spacingMm, image: imageStats(image.data) };
    if (C > 1) {
      // Drawn after channel 0's statistics, so a one-channel dataset's draws are unchanged.
      const perChannel = channelCaseStats(out.channels, out.label, caseRng);
      stats.imageChannels = perChannel.imageChannels;
      if (perChannel.foreground) foreground.push(perChannel.foreground);
    }
    entries.push({ id: entry.id, path: paths[index], split: entry.split, stats });
    options.onCase?.({
      index,
      total: dataset.cases.length,
      id: entry.id,
      originalShape: [...images[0].shape],
      shape: [...image.shape],
      seconds: (performance.now() - t0) / 1000,
    });
  }
  return { entries, foreground };
}

/** A case's intensity maps, one per channel (undefined: none). */
function caseMaps(
  given: IntensityMap | (IntensityMap | null)[] | undefined,
  channels: number,
  id: string,
): (IntensityMap | null)[] {
  if (given === undefined) return [];
  if (!Array.isArray(given)) return [given];
  if (given.length !== channels) {
    throw new RangeError(
      `intensityMaps["${id}"] lists ${given.length} channel maps for ${channels} channels; ` +
        "give one per channel (null leaves a channel as it is)",
    );
  }
  return given;
}

/**
 * `cases/ID.zarr` for each case id, with characters other than letters, digits, `.`, `_`, `-`
 * (and a leading `.`) replaced by `_`; throws when two ids give the same folder.
 */
function casePaths(ids: string[]): string[] {
  const seen = new Map<string, string>();
  return ids.map((id) => {
    const name = id.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\./, "_");
    const other = seen.get(name);
    if (other !== undefined) {
      throw new Error(
        `case ids "${other}" and "${id}" both map to the folder cases/${name}.zarr; rename one`,
      );
    }
    seen.set(name, id);
    return `cases/${name}.zarr`;
  });
}

/** Throws unless `out` may receive the new dataset (see {@link preprocessDataset}). */
async function checkOutDir(out: string, sourceRoot: string): Promise<void> {
  const problem = await datasetTargetProblem(out, sourceRoot);
  if (problem === "holds-source") {
    throw new Error(
      "the output folder holds the dataset being preprocessed; give a folder outside it",
    );
  }
  if (problem === "not-a-folder") throw new Error("the output path exists and is not a folder");
  if (problem === "other-files") {
    throw new Error(
      "the output folder is not empty and holds no voxseg dataset; give a new or empty folder",
    );
  }
}
