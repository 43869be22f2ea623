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
 * Ensembles: every function here takes one {@link LoadedModel} or several (the folds of a
 * cross-validation); several must agree on classes, input channels, normalisation, spacing and
 * patch size (src/infer/ensemble.ts), and their softmax probabilities are averaged per window
 * before the arg-max, test-time flips included.
 *
 * Post-processing: a checkpoint chosen to keep only the largest connected component(s)
 * (`meta.postprocessing`, src/infer/postprocess.ts) has it applied to the whole label map after
 * the arg-max; `postprocess: false` turns it off. It needs the whole label map in memory:
 * {@link predictVolume} holds it anyway and applies post-processing when its run tables (about
 * 20 bytes a run of voxels along x) fit `memoryBudgetBytes`; {@link predictCase}, which
 * otherwise writes the labels chunk by chunk, holds the label map (1 byte a voxel) when that
 * and the prediction fit the budget, and otherwise writes it unprocessed. Either way the
 * summary's `postprocessing` says whether it was applied and how many voxels it removed.
 *
 * Channels: a model of C > 1 input channels (multi-modal: CT + PET, MRI sequences) takes an
 * input of C volumes on one grid — a list of volumes, or a case with a channel axis — each
 * normalised by the checkpoint's scheme for that channel (`channelNormalisations`) and
 * resampled alone; the labels lie on the grid of channel 0.
 *
 * Handling of bad input: NaN/±Infinity voxels are refused (the error names the first one);
 * volumes smaller than a patch are padded with air and cropped back; an input whose channel
 * count differs from the model's input channels is refused.
 */

import { patchMultiple } from "../nn/model_config.ts";
import { type Precision, withPrecision } from "../ops/precision.ts";
import { join } from "node:path";
import { type CaseReader, openCase } from "../data/ome_zarr/reader.ts";
import type { CheckpointMeta } from "../nn/checkpoint.ts";
import { normalizeValue, padIntensity } from "../data/normalize.ts";
import { channelNormalizations } from "../data/channels.ts";
import { checkVolume, type Shape3, type Volume } from "../data/volume.ts";
import { gpu, type Tensor } from "../gpu/mod.ts";
import type { LoadedModel } from "./model.ts";
import { checkEnsemble, modelList, type Models } from "./ensemble.ts";
import { applyPostprocessing, type Postprocessing, postprocessingBytes } from "./postprocess.ts";
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
import {
  caseNormalizations,
  casePlanes,
  networkSource,
  type PlaneReader,
  volumePlanes,
} from "./source.ts";
import { ZarrLabelWriter } from "./zarr_labels.ts";

export { type LoadedModel, loadModel, ModelLoadError } from "./model.ts";
export { EnsembleError, loadModels, type Models } from "./ensemble.ts";

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
  /**
   * Apply the checkpoint's post-processing (largest connected components), if it has one.
   * Default true.
   */
  postprocess?: boolean;
}

/** Whether post-processing ran: present when the model has post-processing and it is on. */
export interface PostprocessingReport {
  applied: boolean;
  /** Voxels it turned into background (0 when not applied). */
  removedVoxels: number;
  /** Why it was not applied (the memory it needed). */
  skipped?: string;
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
  /** Sliding windows run (each once per test-time flip and model). */
  windows?: number;
  /** Present for an ensemble: how many models were averaged. */
  models?: number;
  /** Present when the model has post-processing and it was not switched off. */
  postprocessing?: PostprocessingReport;
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

/** Throws when a model cannot run as a window on an input of `channels` channels. */
function checkRunnable(meta: CheckpointMeta, channels: number): void {
  if (meta.model.inChannels !== channels) {
    const given = channels === 1 ? "one volume (one channel)" : `${channels} channels`;
    throw new RangeError(
      `the model expects ${meta.model.inChannels} input channels, but the input is ${given}; ` +
        `give one image per channel (e.g. --in a_0000.nii.gz,a_0001.nii.gz, or a 4D NIfTI)`,
    );
  }
  const m = patchMultiple(meta.model);
  if (meta.patchSize.some((p, a) => p % m[a] !== 0)) {
    throw new RangeError(
      `the checkpoint's patch size ${meta.patchSize.join("×")} is not divisible by ` +
        `${m.join("×")} (its network's downsampling); it cannot be run as a window`,
    );
  }
}

function plan(
  models: readonly LoadedModel[],
  shape: Shape3,
  spacingMm: Shape3,
  opts: PredictOptions,
  ioBytes: number,
  channels = 1,
): Plan {
  const { meta } = models[0];
  const classes = meta.model.classes;
  for (const m of models) checkRunnable(m.meta, channels);
  if (classes > 256) throw new RangeError(`${classes} classes do not fit uint8 labels`);
  const tolerance = opts.spacingTolerance ?? SPACING_TOLERANCE;
  if (!(tolerance >= 0)) throw new RangeError(`spacingTolerance must be ≥ 0, got ${tolerance}`);
  const resample = needsResampling(spacingMm, meta.spacingMm, tolerance);
  const netShape = resample ? resampledShape(shape, spacingMm, meta.spacingMm) : shape;
  const netSpacing = netShape.map((n, i) => (shape[i] * spacingMm[i]) / n) as Shape3;
  const batchSize = Math.min(
    ...models.map((m) => fitBatch(m, opts.batchSize ?? defaultBatchSize())),
  );
  const [, H, W] = shape, [, hn, wn] = netShape;
  const [pd] = meta.patchSize;
  let bytes = ioBytes + slidingWindowBytes(netShape, meta.patchSize, classes, batchSize) +
    Math.min(pd, shape[0]) * H * W; // one slab of labels
  // Each further channel: its image slab, its part of the batch input, its raw planes.
  bytes += 4 * (channels - 1) *
    (pd * hn * wn + batchSize * pd * meta.patchSize[1] * meta.patchSize[2] +
      (resample ? 2 * 16 : pd) * H * W);
  if (resample) {
    // Two raw blocks of 16 planes in; four network planes and one output plane of
    // probabilities; the labels one slab completes (its depth scaled to the input grid).
    bytes += 4 * (2 * 16 * H * W + classes * (4 * hn * wn + H * W)) +
      Math.ceil((pd * shape[0]) / netShape[0] + 1) * H * W;
  }
  const budget = opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  if (bytes > budget) {
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
 * Runs the sliding window of `models` (averaged when several) over `raw` and hands the label
 * planes, in z order, to `write`. Returns the summary (counts per class).
 */
async function run(
  models: readonly LoadedModel[],
  raw: PlaneReader,
  spacingMm: Shape3,
  write: (z0: number, labels: Uint8Array) => Promise<void> | void,
  opts: PredictOptions,
  ioBytes = 0,
): Promise<PredictionSummary> {
  const t0 = performance.now();
  opts.signal?.throwIfAborted();
  const { meta } = models[0];
  const classes = meta.model.classes;
  const shape = raw.shape;
  const channels = raw.channels ?? 1;
  const p = plan(models, shape, spacingMm, opts, ioBytes, channels);
  const norms = await caseNormalizations(raw, channelNormalizations(meta, channels));
  const source = networkSource(raw, norms, p.netShape);
  const pads = norms.map((n) => normalizeValue(padIntensity(n), n));
  const tta = opts.tta === true ? [0, 1, 2] : opts.tta ? [...opts.tta] : [];
  const flips = flipSets(tta);
  let windows = 0;
  const precision = opts.precision ?? "f32";
  const slabs = slidingWindowSlabs(
    models.map(({ model }) => (x: Tensor) =>
      withPrecision(precision, () => model.forward(x, { training: false }))
    ),
    source,
    classes,
    {
      patchSize: meta.patchSize,
      overlap: opts.overlap ?? 0.5,
      batchSize: p.batchSize,
      padValue: channels === 1 ? pads[0] : pads,
      flips,
      signal: opts.signal,
      onProgress: (done, total) => {
        windows = total;
        opts.onProgress?.(done, total);
      },
    },
  );
  const counts = new Float64Array(classes);
  await writeLabels(slabs, p, shape, classes, async (z0, labels) => {
    for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
    if (labels.length) await write(z0, labels);
  });
  return {
    classes: classTotals(counts, meta, spacingMm),
    shape: [...shape],
    spacingMm: [...spacingMm],
    seconds: (performance.now() - t0) / 1000,
    ...(p.resample ? { network: { shape: p.netShape, spacingMm: p.netSpacing } } : {}),
    windows: windows * (1 + flips.length) * models.length,
    ...(models.length > 1 ? { models: models.length } : {}),
  };
}

/** Arg-max labels of the slabs (resampled back to `shape` when planned), in z order. */
async function writeLabels(
  slabs: AsyncIterable<ProbabilitySlab>,
  p: Plan,
  shape: Shape3,
  classes: number,
  emit: (z0: number, labels: Uint8Array) => Promise<void>,
): Promise<void> {
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
    return;
  }
  let buffer = new Uint8Array(0);
  for await (const slab of slabs) {
    const n = slab.depth * planeVox;
    if (buffer.length < n) buffer = new Uint8Array(n);
    slab.argmax(buffer);
    await emit(slab.z0, buffer.subarray(0, n));
  }
}

/** Per-class voxels and millilitres from counts per class. */
function classTotals(
  counts: ArrayLike<number>,
  meta: CheckpointMeta,
  spacingMm: Shape3,
): PredictionSummary["classes"] {
  const voxelMl = (spacingMm[0] * spacingMm[1] * spacingMm[2]) / 1000;
  return Array.from(counts, (voxels, c) => ({
    name: meta.classNames[c] ?? `class_${c}`,
    voxels,
    volumeMl: voxels * voxelMl,
  }));
}

/**
 * The post-processing to apply: the models' (checked to agree), unless switched off.
 * Also checks the ensemble.
 */
function postprocessingOf(
  models: readonly LoadedModel[],
  opts: PredictOptions,
): Postprocessing | undefined {
  const on = opts.postprocess ?? true;
  checkEnsemble(models, on);
  const pp = on ? models[0].meta.postprocessing : undefined;
  // A choice that keeps nothing (cross-validation found no gain) is no post-processing.
  return pp && (pp.foregroundLcc || pp.perClassLcc.length > 0) ? pp : undefined;
}

/**
 * Applies `pp` to the whole label map in place when its run tables fit `budget` bytes, and
 * updates the summary's class totals and report.
 */
function postprocessInPlace(
  labels: Uint8Array,
  summary: PredictionSummary,
  meta: CheckpointMeta,
  pp: Postprocessing,
  budget: number,
): void {
  const need = postprocessingBytes(labels, summary.shape, pp);
  if (need > budget) {
    summary.postprocessing = {
      applied: false,
      removedVoxels: 0,
      skipped: `post-processing needs ${mib(need)} of host memory, above the budget of ` +
        `${mib(budget)}; raise the budget (--memory-budget) to apply it`,
    };
    return;
  }
  const removedVoxels = applyPostprocessing(labels, summary.shape, pp);
  const counts = new Float64Array(meta.model.classes);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  summary.classes = classTotals(counts, meta, summary.spacingMm);
  summary.postprocessing = { applied: true, removedVoxels };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/**
 * Segments a volume held in memory with one model or an ensemble: uint8 labels on exactly its
 * grid, post-processed as the checkpoint says, and per-class counts and volumes. A model of
 * C > 1 input channels takes a list of C volumes on one grid (channel order); the labels lie
 * on channel 0's grid. See the module comment for preprocessing, channels, ensembles,
 * post-processing, memory and bad input.
 *
 * @example
 * const ct = await readNifti("ct.nii.gz");
 * const { labels, summary } = await predictVolume(loaded, ct, { tta: [2] });
 * await writeNifti("seg.nii.gz", labels, { like: ct.header });
 * // CT + PET model: await predictVolume(loaded, [ct, pet]);
 */
export async function predictVolume(
  loaded: Models,
  input: Volume | readonly Volume[],
  opts: PredictOptions = {},
): Promise<Prediction> {
  const models = modelList(loaded);
  const pp = postprocessingOf(models, opts);
  const list = "data" in input ? [input as Volume] : input as readonly Volume[];
  list.forEach((v, c) => checkVolume(v, list.length > 1 ? `input channel ${c}` : "input volume"));
  const volume = list[0];
  const raw = volumePlanes(list);
  const planeVox = volume.shape[1] * volume.shape[2];
  const labels = new Uint8Array(volume.data.length);
  const summary = await run(models, raw, volume.spacingMm, (z0, planes) => {
    labels.set(planes, z0 * planeVox);
  }, opts);
  if (pp) {
    const budget = opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
    postprocessInPlace(labels, summary, models[0].meta, pp, budget);
  }
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
  loaded: Models,
  caseLocation: string,
  opts: PredictCaseOptions = {},
): Promise<CasePrediction> {
  const models = modelList(loaded);
  const pp = postprocessingOf(models, opts);
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
  if (models[0].meta.model.inChannels !== reader.channels) {
    checkRunnable(models[0].meta, reader.channels);
  }
  const writer = await ZarrLabelWriter.create(labelsPath, {
    shape: reader.shape,
    chunks: reader.chunks,
    spacingMm: reader.spacingMm,
    classNames: models[0].meta.classNames,
    name,
    registerInParent: !opts.out,
    attributes: {
      model: models.length === 1 ? models[0].name ?? null : models.map((m) => m.name ?? null),
      overlap: opts.overlap ?? 0.5,
      tta: opts.tta ?? false,
    },
  });
  try {
    const summary = await runCase(models, reader, writer, opts, ioBytes, pp);
    await writer.close();
    return { labelsPath, summary };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/**
 * Predicts a case into `writer`. With post-processing, the label map is held whole when it
 * fits the memory budget beside the prediction, post-processed, then written; otherwise the
 * labels are written as they come, unprocessed, and the summary says why.
 */
async function runCase(
  models: readonly LoadedModel[],
  reader: CaseReader,
  writer: ZarrLabelWriter,
  opts: PredictOptions,
  ioBytes: number,
  pp: Postprocessing | undefined,
): Promise<PredictionSummary> {
  const [D, H, W] = reader.shape;
  const n = D * H * W;
  const budget = opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  const spacing = reader.spacingMm;
  const fitsWhole = () => plan(models, reader.shape, spacing, opts, ioBytes + n, reader.channels);
  if (!pp || !fits(fitsWhole)) {
    const write = (z0: number, labels: Uint8Array) => writer.write(z0, labels);
    const summary = await run(models, casePlanes(reader), spacing, write, opts, ioBytes);
    if (pp) {
      summary.postprocessing = {
        applied: false,
        removedVoxels: 0,
        skipped: `post-processing holds the whole label map (${mib(n)}), which does not fit ` +
          `the memory budget of ${mib(budget)} beside the prediction; raise the budget ` +
          "(--memory-budget) to apply it",
      };
    }
    return summary;
  }
  const labels = new Uint8Array(n);
  const summary = await run(
    models,
    casePlanes(reader),
    spacing,
    (z0, planes) => {
      labels.set(planes, z0 * H * W);
    },
    opts,
    ioBytes + n,
  );
  postprocessInPlace(labels, summary, models[0].meta, pp, budget - n);
  const cd = reader.chunks[0];
  for (let z0 = 0; z0 < D; z0 += cd) {
    await writer.write(z0, labels.subarray(z0 * H * W, Math.min(D, z0 + cd) * H * W));
  }
  return summary;
}

/** Whether `make` (a plan that throws over the memory budget) succeeds. */
function fits(make: () => unknown): boolean {
  try {
    make();
    return true;
  } catch (e) {
    if (e instanceof RangeError) return false;
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
  const rowBytes = probe.channels * Math.ceil(H / ch) * Math.ceil(W / cw) * cd * ch * cw *
    bytesPerVoxel;
  return await openCase(location, { cacheBytes: rowBytes });
}
