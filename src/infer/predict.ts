/**
 * Whole-volume segmentation with a loaded checkpoint — what `voxseg infer`, `voxseg eval` and
 * the HTTP server call.
 *
 * Preprocessing is training's, read from the checkpoint: its intensity normalisation, and its
 * spacing — an input whose spacing differs from the training spacing by more than
 * `spacingTolerance` (relative, per axis; default 10 %, since voxseg trains on cases at their
 * native spacing around the dataset's median) is resampled trilinearly to that spacing for the
 * network, and the class probabilities come back to the input grid trilinearly before the
 * arg-max. The labels therefore always have the input's exact shape, spacing and affine.
 *
 * Memory: the sliding window works in z-slabs (see sliding_window.ts), resampling reads and
 * writes a few planes at a time, and {@link predictCase} writes the label map chunk by chunk, so
 * the host memory prediction needs beyond the input and output is bounded by
 * `memoryBudgetBytes`, whatever the volume's size. A budget too small for even one slab is
 * refused before any work starts, with the amount needed.
 *
 * Handling of bad input: NaN/±Infinity voxels are refused (the error names the first one);
 * volumes smaller than a patch are padded with air and cropped back; a checkpoint expecting
 * more than one input channel is refused (a volume is one channel).
 */

import { type Precision, withPrecision } from "../ops/precision.ts";
import { join } from "node:path";
import { type CaseReader, openCase } from "../data/ome_zarr/reader.ts";
import { normalizeValue, padIntensity } from "../data/normalize.ts";
import { checkVolume, type Shape3, type Volume } from "../data/volume.ts";
import { gpu } from "../gpu/mod.ts";
import type { LoadedModel } from "./model.ts";
import {
  needsResampling,
  ProbabilityResampler,
  resampledShape,
  SPACING_TOLERANCE,
} from "./resample.ts";
import {
  flipSets,
  type ProbabilitySlab,
  slidingWindowBytes,
  slidingWindowSlabs,
} from "./sliding_window.ts";
import { casePlanes, networkSource, type PlaneReader, volumePlanes } from "./source.ts";
import { ZarrLabelWriter } from "./zarr_labels.ts";

export { type LoadedModel, loadModel, ModelLoadError } from "./model.ts";

/** Default host memory budget for one prediction: 1 GiB. */
export const DEFAULT_MEMORY_BUDGET = 2 ** 30;

export interface PredictOptions {
  /** Fraction of a window adjacent windows share, 0 ≤ overlap < 1. Default 0.5. */
  overlap?: number;
  /**
   * Test-time augmentation: average the predictions of every flip combination of these
   * spatial axes (0 = z, 1 = y, 2 = x) — `true` means all three (8 passes per window, as
   * nnU-Net), `[2]` left-right only (2 passes). Default false.
   */
  tta?: boolean | readonly number[];
  /**
   * Windows per GPU batch. Default 2 (1 on a software adapter, see {@link defaultBatchSize});
   * lowered where the adapter's storage-binding limit cannot hold the batch's largest
   * activation.
   */
  batchSize?: number;
  /** Called after each batch with windows done and the total. */
  onProgress?(done: number, total: number): void;
  /** Stops between batches; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Bound on the host memory prediction uses besides the input and the output label map
   * (sliding-window slabs, resampling planes, chunk buffers). Default 1 GiB.
   */
  memoryBudgetBytes?: number;
  /**
   * Relative per-axis spacing difference from the training spacing up to which the input is
   * used as is; beyond it the input is resampled. Default 0.1; 0 resamples whenever the
   * spacing differs at all, Infinity never resamples.
   */
  spacingTolerance?: number;
  /**
   * Convolution operand precision: "f16" reads the 3×3×3 convolutions' inputs and weights as
   * binary16 with f32 sums (mixed precision, as autocast), "f32" (default) everything in f32.
   */
  precision?: Precision;
}

/** Per-class totals of a prediction. */
export interface PredictionSummary {
  /** Per class, background first: voxels and volume in millilitres (voxels × voxel volume). */
  classes: { name: string; voxels: number; volumeMl: number }[];
  /** The input's (and the labels') D, H, W. */
  shape: Shape3;
  /** The input's spacing, z, y, x mm. */
  spacingMm: Shape3;
  seconds: number;
  /** Present when the input was resampled: the grid the network ran on. */
  network?: { shape: Shape3; spacingMm: Shape3 };
  /** Sliding windows run (each once per test-time flip). */
  windows?: number;
}

/** The name the HTTP server's stand-in used. */
export type PredictSummary = PredictionSummary;

export interface Prediction {
  /** uint8 class per voxel: exactly the input's shape, spacing and affine. */
  labels: Volume;
  summary: PredictionSummary;
}

/** Where {@link predictCase} wrote the label image, and the summary. */
export interface CasePrediction {
  /** The label image group (e.g. `case.zarr/labels/pred`). */
  labelsPath: string;
  summary: PredictionSummary;
}

export interface PredictCaseOptions extends PredictOptions {
  /** Name of the label image under the case's labels/ folder. Default "pred". */
  labelName?: string;
  /**
   * Folder to write the label image group to instead of `<case>/labels/<labelName>`;
   * required when the case is a URL.
   */
  out?: string;
}

/** A prediction plan: the grids, the memory it needs, the sliding-window settings. */
interface Plan {
  netShape: Shape3;
  netSpacing: Shape3;
  resample: boolean;
  bytes: number;
  /** Windows per GPU batch, after {@link fitBatch}. */
  batchSize: number;
}

function plan(
  loaded: LoadedModel,
  shape: Shape3,
  spacingMm: Shape3,
  opts: PredictOptions,
  ioBytes: number,
): Plan {
  const { meta } = loaded;
  const classes = meta.model.classes;
  if (meta.model.inChannels !== 1) {
    throw new RangeError(
      `the model expects ${meta.model.inChannels} input channels, but a volume is one channel; ` +
        "multi-channel (multi-modal) input is not supported by voxseg prediction",
    );
  }
  const m = 2 ** (meta.model.depth - 1);
  if (meta.patchSize.some((p) => p % m !== 0)) {
    throw new RangeError(
      `the checkpoint's patch size ${meta.patchSize.join("×")} is not divisible by ${m} ` +
        `(depth ${meta.model.depth}); it cannot be run as a window`,
    );
  }
  if (classes > 256) throw new RangeError(`${classes} classes do not fit uint8 labels`);
  const tolerance = opts.spacingTolerance ?? SPACING_TOLERANCE;
  if (!(tolerance >= 0)) throw new RangeError(`spacingTolerance must be ≥ 0, got ${tolerance}`);
  const resample = needsResampling(spacingMm, meta.spacingMm, tolerance);
  const netShape = resample ? resampledShape(shape, spacingMm, meta.spacingMm) : shape;
  const netSpacing = netShape.map((n, i) => (shape[i] * spacingMm[i]) / n) as Shape3;
  const batchSize = fitBatch(loaded, opts.batchSize ?? defaultBatchSize());
  const [, H, W] = shape, [, hn, wn] = netShape;
  const [pd] = meta.patchSize;
  let bytes = ioBytes + slidingWindowBytes(netShape, meta.patchSize, classes, batchSize) +
    Math.min(pd, shape[0]) * H * W; // one slab of labels
  if (resample) {
    // Two raw blocks of 16 planes in; four network planes and one output plane of
    // probabilities; the labels one slab completes (its depth scaled to the input grid).
    bytes += 4 * (2 * 16 * H * W + classes * (4 * hn * wn + H * W)) +
      Math.ceil((pd * shape[0]) / netShape[0] + 1) * H * W;
  }
  const budget = opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  if (bytes > budget) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    throw new RangeError(
      `predicting a ${shape.join("×")} volume` +
        (resample ? ` (network grid ${netShape.join("×")})` : "") +
        ` with patch ${meta.patchSize.join("×")} and ${classes} classes needs about ` +
        `${mib(bytes)} of host memory, above the budget of ${mib(budget)}; raise the budget ` +
        "(--memory-budget) or use a smaller batch",
    );
  }
  return { netShape, netSpacing, resample, bytes, batchSize };
}

/**
 * Windows per batch when the caller does not say: 2 on a GPU; 1 on a software adapter, where
 * batching gains no speed and the activations take host memory.
 */
export function defaultBatchSize(): number {
  return gpu().info.isFallbackAdapter ? 1 : 2;
}

/**
 * The batch size to use: the requested one, lowered so the largest activation (the decoder's
 * concatenation at full resolution, 2·base channels) fits the adapter's storage-binding limit.
 */
function fitBatch(loaded: LoadedModel, requested: number): number {
  const { model, patchSize } = loaded.meta;
  if (!Number.isInteger(requested) || requested < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${requested}`);
  }
  const limit = gpu().device.limits.maxStorageBufferBindingSize;
  const perWindow = 4 * patchSize[0] * patchSize[1] * patchSize[2] *
    Math.max(2 * model.baseChannels, model.classes);
  const fit = Math.floor(limit / perWindow);
  if (fit < 1) {
    throw new RangeError(
      `one ${patchSize.join("×")} window needs ${(perWindow / 2 ** 20).toFixed(0)} MiB ` +
        `buffers, above this adapter's storage-binding limit of ${
          (limit / 2 ** 20).toFixed(0)
        } MiB`,
    );
  }
  return Math.min(requested, fit);
}

/**
 * Runs the sliding window over `raw` and hands the label planes, in z order, to `write`.
 * Returns the summary (counts per class).
 */
async function run(
  loaded: LoadedModel,
  raw: PlaneReader,
  spacingMm: Shape3,
  write: (z0: number, labels: Uint8Array) => Promise<void> | void,
  opts: PredictOptions,
  ioBytes = 0,
): Promise<PredictionSummary> {
  const t0 = performance.now();
  opts.signal?.throwIfAborted();
  const { model, meta } = loaded;
  const classes = meta.model.classes;
  const shape = raw.shape;
  const p = plan(loaded, shape, spacingMm, opts, ioBytes);
  const norm = meta.normalisation;
  const source = networkSource(raw, norm, p.netShape);
  const tta = opts.tta === true ? [0, 1, 2] : opts.tta ? [...opts.tta] : [];
  const flips = flipSets(tta);
  let windows = 0;
  const slabs = slidingWindowSlabs(
    (x) => withPrecision(opts.precision ?? "f32", () => model.forward(x, { training: false })),
    source,
    classes,
    {
      patchSize: meta.patchSize,
      overlap: opts.overlap ?? 0.5,
      batchSize: p.batchSize,
      padValue: normalizeValue(padIntensity(norm), norm),
      flips,
      signal: opts.signal,
      onProgress: (done, total) => {
        windows = total;
        opts.onProgress?.(done, total);
      },
    },
  );
  const counts = new Float64Array(classes);
  const emit = async (z0: number, labels: Uint8Array) => {
    for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
    if (labels.length) await write(z0, labels);
  };
  const planeVox = shape[1] * shape[2];
  if (p.resample) {
    const back = new ProbabilityResampler(classes, p.netShape, shape);
    for await (const slab of slabs) {
      const { z0, labels } = back.push(slab);
      await emit(z0, labels);
    }
    if (back.done !== shape[0]) {
      throw new Error(`resampling produced ${back.done} of ${shape[0]} planes`);
    }
  } else {
    let buffer = new Uint8Array(0);
    for await (const slab of slabs as AsyncIterable<ProbabilitySlab>) {
      const n = slab.depth * planeVox;
      if (buffer.length < n) buffer = new Uint8Array(n);
      slab.argmax(buffer);
      await emit(slab.z0, buffer.subarray(0, n));
    }
  }
  const voxelMl = (spacingMm[0] * spacingMm[1] * spacingMm[2]) / 1000;
  return {
    classes: Array.from(counts, (voxels, c) => ({
      name: meta.classNames[c] ?? `class_${c}`,
      voxels,
      volumeMl: voxels * voxelMl,
    })),
    shape: [...shape],
    spacingMm: [...spacingMm],
    seconds: (performance.now() - t0) / 1000,
    ...(p.resample ? { network: { shape: p.netShape, spacingMm: p.netSpacing } } : {}),
    windows: windows * (1 + flips.length),
  };
}

/**
 * Segments a volume held in memory: uint8 labels on exactly its grid, and per-class counts and
 * volumes. See the module comment for preprocessing, memory and bad input.
 *
 * @example
 * const ct = await readNifti("ct.nii.gz");
 * const { labels, summary } = await predictVolume(loaded, ct, { tta: [2] });
 * await writeNifti("seg.nii.gz", labels, { like: ct.header });
 */
export async function predictVolume(
  loaded: LoadedModel,
  volume: Volume,
  opts: PredictOptions = {},
): Promise<Prediction> {
  checkVolume(volume, "input volume");
  const raw = volumePlanes(volume);
  const planeVox = volume.shape[1] * volume.shape[2];
  const labels = new Uint8Array(volume.data.length);
  const summary = await run(loaded, raw, volume.spacingMm, (z0, planes) => {
    labels.set(planes, z0 * planeVox);
  }, opts);
  return {
    labels: {
      shape: [...volume.shape],
      spacingMm: [...volume.spacingMm],
      affine: [...volume.affine],
      data: labels,
    },
    summary,
  };
}

/**
 * Segments an OME-Zarr case (a local path or an http(s) URL), reading its image slab by slab
 * and writing the label map chunk by chunk as the label image `labels/<labelName>` of the case
 * (or to `opts.out`), so neither the image nor the labels are ever whole in memory.
 *
 * @example
 * const { labelsPath, summary } = await predictCase(loaded, "data/synth/cases/a.zarr");
 * // labelsPath = "data/synth/cases/a.zarr/labels/pred"
 */
export async function predictCase(
  loaded: LoadedModel,
  caseLocation: string,
  opts: PredictCaseOptions = {},
): Promise<CasePrediction> {
  const name = opts.labelName ?? "pred";
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "seg" && !opts.out) {
    throw new RangeError(
      `label name "${name}" must be letters, digits, "_", "-" or "." and not "seg" (the reference)`,
    );
  }
  const isUrl = /^https?:\/\//i.test(caseLocation);
  if (isUrl && !opts.out) {
    throw new Error(
      `${caseLocation} is remote: voxseg cannot write into it; give a local folder for the label ` +
        "image (out), or write NIfTI",
    );
  }
  const labelsPath = opts.out ?? join(caseLocation, "labels", name);
  const reader = await openForPrediction(caseLocation);
  const [, H, W] = reader.shape;
  // The reader's chunk cache and the writer's row of chunks count against the budget.
  const ioBytes = reader.cache.maxBytes + 2 * reader.chunks[0] * H * W;
  const writer = await ZarrLabelWriter.create(labelsPath, {
    shape: reader.shape,
    chunks: reader.chunks,
    spacingMm: reader.spacingMm,
    classNames: loaded.meta.classNames,
    name,
    registerInParent: !opts.out,
    attributes: {
      model: loaded.name ?? null,
      overlap: opts.overlap ?? 0.5,
      tta: opts.tta ?? false,
    },
  });
  try {
    const summary = await run(
      loaded,
      casePlanes(reader),
      reader.spacingMm,
      (z0, labels) => writer.write(z0, labels),
      opts,
      ioBytes,
    );
    await writer.close();
    return { labelsPath, summary };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/**
 * Opens a case with a decoded-chunk cache of one row of image chunks: consecutive slabs
 * re-read the planes they share, and a row is what one slab read touches at most once.
 */
async function openForPrediction(location: string): Promise<CaseReader> {
  const probe = await openCase(location, { cacheBytes: 0 });
  const [, H, W] = probe.shape;
  const [cd, ch, cw] = probe.chunks;
  const bytesPerVoxel = probe.imageDtype === "int16" ? 2 : 4;
  const rowBytes = Math.ceil(H / ch) * Math.ceil(W / cw) * cd * ch * cw * bytesPerVoxel;
  return await openCase(location, { cacheBytes: rowBytes });
}
