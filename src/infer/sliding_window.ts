/**
 * Sliding-window prediction (nnU-Net / MONAI style): overlapping patch-sized windows, several
 * per GPU batch, optional test-time flips averaged on the GPU, blended on the host with a
 * Gaussian importance map into class probabilities.
 *
 * Memory stays bounded whatever the volume's depth: windows are processed row by row along z
 * (every window of a row starts at the same z), and the host accumulates only the planes the
 * current row covers — `classes × patchD × H × W` floats — plus one image slab of `patchD`
 * planes. Once a row is done, the planes before the next row's start receive no further
 * windows; they are handed out as a {@link ProbabilitySlab} and the accumulator moves on.
 * The weight sum needs no buffer: the importance map is separable, so it is the product of
 * per-axis sums.
 *
 * Ensembles: given several predictors (the folds of a cross-validation), every window runs
 * through each of them and the softmax probabilities are averaged on the GPU before blending
 * (test-time flips included: each model's flip views are summed, then the models' sums), so the
 * result is the average of the models' probabilities, as nnU-Net ensembles folds. The 1/models
 * of the mean is folded into the importance map with the 1/views.
 *
 * Volumes smaller than a patch along an axis are padded (with the normalised air value) and
 * the result cropped, so any size works. While the host blends one batch, the GPU already
 * runs the next. Batches do not span rows; a row's last batch is filled up by repeating its
 * last window (run, not blended), so every batch has one shape and reuses the same buffers.
 */

import { fromArray, readTensors, scope, type Tensor } from "../gpu/mod.ts";
import { add, flip, softmaxChannels } from "../autograd/functional.ts";
import type { Shape3 } from "../data/volume.ts";
import { axisCoverage, gaussianAxis, windowStarts } from "./gaussian.ts";

export interface SlidingWindowOptions {
  patchSize: Shape3;
  /** Fraction of a patch adjacent windows share (0 ≤ overlap < 1). Default 0.5. */
  overlap?: number;
  /** Windows per GPU batch. Default 1. */
  batchSize?: number;
  /**
   * Value the volume is padded with (normalised intensity of air). Default 0. One value per
   * channel for a source of several channels (or one for all).
   */
  padValue?: number | readonly number[];
  /** Test-time flips: each entry is a list of spatial axes (0 = z, 1 = y, 2 = x). */
  flips?: number[][];
  /** Called after each batch of windows with (done, total) windows. */
  onProgress?: (done: number, total: number) => void;
  /** Checked before each batch; aborting stops with the signal's reason. */
  signal?: AbortSignal;
}

/** A network mapping [B, channels, d, h, w] to logits [B, classes, d, h, w]. */
export type Predictor = (x: Tensor) => Tensor;

/** One predictor, or several whose softmax probabilities are averaged (an ensemble). */
export type Predictors = Predictor | readonly Predictor[];

/** The predictors as a non-empty list. */
function predictorList(predict: Predictors): readonly Predictor[] {
  const list = typeof predict === "function" ? [predict] : predict;
  if (list.length === 0) throw new RangeError("an ensemble needs at least one predictor");
  return list;
}

/** A normalised image, read a range of z-planes at a time. */
export interface SlabSource {
  /** D, H, W. */
  shape: Shape3;
  /** Image channels, the network's input channels (default 1). */
  channels?: number;
  /**
   * Planes z0 ≤ z < z1 (0 ≤ z0 < z1 ≤ D) as (z1 − z0)·H·W floats, x fastest; with C channels,
   * C such blocks one after another (channel-major).
   */
  read(z0: number, z1: number): Promise<Float32Array>;
}

/**
 * Finished planes z0 ≤ z < z0 + depth of the blended prediction. Valid only until the
 * generator that produced it resumes (it is a view of the accumulator).
 */
export interface ProbabilitySlab {
  z0: number;
  depth: number;
  /** Writes the arg-max class of each voxel (depth·H·W, x fastest) into `out`. */
  argmax(out: Uint8Array): void;
  /** Writes the probabilities of local plane `z` (0 ≤ z < depth) as [C, H, W] into `out`. */
  probabilities(z: number, out: Float32Array): void;
}

/** Every flip combination of `axes` except the identity (nnU-Net's test-time mirroring). */
export function flipSets(axes: readonly number[]): number[][] {
  const unique = [...new Set(axes)].sort();
  for (const a of unique) {
    if (![0, 1, 2].includes(a)) throw new RangeError(`flip axis must be 0, 1 or 2, got ${a}`);
  }
  const sets: number[][] = [];
  for (let mask = 1; mask < 1 << unique.length; mask++) {
    sets.push(unique.filter((_, i) => mask & (1 << i)));
  }
  return sets;
}

/**
 * Host bytes the sliding window holds for a volume of `shape` (D, H, W): the accumulator,
 * one image slab, the batch's input and read-back buffers, the weight map.
 */
export function slidingWindowBytes(
  shape: Shape3,
  patch: Shape3,
  classes: number,
  batchSize: number,
): number {
  const plane = Math.max(shape[1], patch[1]) * Math.max(shape[2], patch[2]);
  const patchVox = patch[0] * patch[1] * patch[2];
  return 4 * (
    (classes + 1) * patch[0] * plane + // accumulator + image slab
    batchSize * patchVox * (1 + classes) + patchVox // batch in/out, weights
  );
}

function checkOptions(opts: SlidingWindowOptions, classes: number): void {
  const { patchSize: patch, overlap = 0.5, batchSize = 1 } = opts;
  if (!(overlap >= 0 && overlap < 1)) {
    throw new RangeError(`overlap must be in [0, 1), got ${overlap}`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  if (patch.length !== 3 || patch.some((p) => !Number.isInteger(p) || p < 1)) {
    throw new RangeError(`patchSize must be 3 positive integers, got [${patch}]`);
  }
  if (!Number.isInteger(classes) || classes < 1 || classes > 256) {
    throw new RangeError(`classes must be an integer in 1..256, got ${classes}`);
  }
}

export interface Batch {
  row: number;
  /** (y0, x0) of the windows run, padded to the batch size by repeating the last one. */
  windows: [number, number][];
  /** How many of `windows` are real (the rest are padding, predicted but not blended). */
  count: number;
  firstOfRow: boolean;
  lastOfRow: boolean;
}

/**
 * Where the windows of a volume go: the padded grid (at least one patch per axis), the window
 * starts, the importance map and its per-axis sums over all windows, and the batches in run
 * order (row by row along z).
 */
export interface WindowPlan {
  /** D, H, W of the volume. */
  shape: Shape3;
  patch: Shape3;
  /** D, H, W of the padded grid: max(volume, patch) per axis. */
  padded: Shape3;
  /** z of each row's windows, ascending. */
  zStarts: number[];
  /** Σ over windows of the Gaussian along z, y and x: the weight sum is their product. */
  coverage: [Float64Array, Float64Array, Float64Array];
  /** Importance map [pd, ph, pw] with the 1/(views · models) of the average folded in. */
  weights: Float32Array;
  batches: Batch[];
  /** Real windows in the volume (padding windows of a batch not counted). */
  total: number;
}

/**
 * The window plan of a volume of `shape` under `opts` for an ensemble of `models` predictors;
 * see {@link WindowPlan}.
 */
export function planWindows(shape: Shape3, opts: SlidingWindowOptions, models = 1): WindowPlan {
  const { patchSize: patch, overlap = 0.5, batchSize = 1, flips = [] } = opts;
  const [D, H, W] = shape;
  const [pd, ph, pw] = patch;
  const padded: Shape3 = [Math.max(D, pd), Math.max(H, ph), Math.max(W, pw)];
  const starts = padded.map((n, a) => windowStarts(n, patch[a], overlap));
  const axes = patch.map((n) => gaussianAxis(n));
  const coverage: WindowPlan["coverage"] = [
    axisCoverage(padded[0], starts[0], axes[0]),
    axisCoverage(padded[1], starts[1], axes[1]),
    axisCoverage(padded[2], starts[2], axes[2]),
  ];
  const rowWindows: [number, number][] = [];
  for (const y0 of starts[1]) for (const x0 of starts[2]) rowWindows.push([y0, x0]);
  return {
    shape,
    patch,
    padded,
    zStarts: starts[0],
    coverage,
    weights: importanceMap(axes[0], axes[1], axes[2], (1 + flips.length) * models),
    batches: rowBatches(starts[0].length, rowWindows, batchSize),
    total: starts[0].length * rowWindows.length,
  };
}

/** The separable importance map gz ⊗ gy ⊗ gx / views, flat [z, y, x]. */
function importanceMap(
  gz: Float64Array,
  gy: Float64Array,
  gx: Float64Array,
  views: number,
): Float32Array {
  const weights = new Float32Array(gz.length * gy.length * gx.length);
  for (let z = 0, i = 0; z < gz.length; z++) {
    for (let y = 0; y < gy.length; y++) {
      const zy = (gz[z] * gy[y]) / views;
      for (let x = 0; x < gx.length; x++, i++) weights[i] = zy * gx[x];
    }
  }
  return weights;
}

/**
 * Splits each of `rows` rows of windows into batches of `batchSize`. Every batch has the same
 * shape (the last of a row repeats its last window), so one set of pooled GPU buffers serves
 * them all — unless a row has fewer windows than a batch.
 */
function rowBatches(rows: number, rowWindows: [number, number][], batchSize: number): Batch[] {
  const batches: Batch[] = [];
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < rowWindows.length; i += batchSize) {
      const windows = rowWindows.slice(i, i + batchSize);
      const count = windows.length;
      if (rowWindows.length >= batchSize) {
        while (windows.length < batchSize) windows.push(windows[count - 1]);
      }
      batches.push({
        row,
        windows,
        count,
        firstOfRow: i === 0,
        lastOfRow: i + batchSize >= rowWindows.length,
      });
    }
  }
  return batches;
}

/**
 * The planes of the image a row's windows read: `depth` planes from `z0`, x fastest; with
 * `channels` C > 1, C blocks of `depth` planes (channel-major).
 */
export interface ImageSlab {
  data: Float32Array;
  depth: number;
  channels?: number;
}

/** Reads the image planes under row `row`'s windows (fewer than pd at the volume's end). */
async function readRowImage(
  source: SlabSource,
  plan: WindowPlan,
  row: number,
): Promise<ImageSlab> {
  const [D, H, W] = plan.shape;
  const z0 = plan.zStarts[row];
  const depth = Math.max(0, Math.min(plan.patch[0], D - z0));
  const channels = source.channels ?? 1;
  const data = depth ? await source.read(z0, z0 + depth) : new Float32Array(0);
  if (data.length !== channels * depth * H * W) {
    throw new Error(
      `slab source returned ${data.length} voxels for ${channels}×${depth} planes of ${H}×${W}`,
    );
  }
  return { data, depth, channels };
}

/**
 * Copies a batch's windows out of the image slab into `input` ([windows, C, pd, ph, pw]),
 * padding outside the volume with `padValue` (one per channel, or one for all). Returns the
 * filled part of `input`.
 */
export function gatherWindows(
  plan: WindowPlan,
  image: ImageSlab,
  b: Batch,
  input: Float32Array,
  padValue: number | readonly number[],
): Float32Array {
  const [, H, W] = plan.shape;
  const [pd, ph, pw] = plan.patch;
  const C = image.channels ?? 1;
  const patchVox = pd * ph * pw, slabVox = image.depth * H * W;
  const x = input.subarray(0, b.windows.length * C * patchVox);
  b.windows.forEach(([y0, x0], w) => {
    for (let c = 0; c < C; c++) {
      const pad = typeof padValue === "number" ? padValue : padValue[c];
      const plane0 = c * slabVox, out0 = (w * C + c) * patchVox;
      for (let z = 0; z < pd; z++) {
        for (let y = 0; y < ph; y++) {
          const dst = out0 + pw * (y + ph * z);
          const sy0 = y0 + y;
          if (z >= image.depth || sy0 >= H) {
            x.fill(pad, dst, dst + pw);
            continue;
          }
          const src = plane0 + W * (sy0 + H * z) + x0;
          const inside = Math.max(0, Math.min(pw, W - x0));
          x.set(image.data.subarray(src, src + inside), dst);
          if (inside < pw) x.fill(pad, dst + inside, dst + pw);
        }
      }
    }
  });
  return x;
}

/** A batch on the GPU: its mean probabilities and their read-back under way. */
interface InFlight {
  batch: Batch;
  probs: Tensor;
  host: Promise<Float32Array>;
}

/**
 * Records the batch's forward passes (for each model, each flip view flipped in, softmaxed and
 * flipped back, summed; then the models' sums summed) and starts reading the sum back. The
 * 1/(views · models) of the mean is in the weights.
 */
function launchBatch(
  predictors: readonly Predictor[],
  batch: Batch,
  data: Float32Array,
  patch: Shape3,
  flips: number[][],
  channels: number,
): InFlight {
  const probs = scope(() => {
    const x = fromArray([batch.windows.length, channels, ...patch], data);
    let total: Tensor | undefined;
    for (const predict of predictors) {
      let sum = viewProbabilities(predict, x, []);
      for (const axes of flips) {
        // One scope per view: its activations go back to the pool before the next view runs.
        sum = add(sum, viewProbabilities(predict, x, axes));
      }
      total = total ? add(total, sum) : sum;
    }
    return total!;
  });
  const host = readTensors([probs]).then(([h]) => h);
  // A rejection is handled where the batch is awaited; this keeps it from going unhandled.
  host.catch(() => {});
  return { batch, probs, host };
}

/** Softmax of the prediction of x flipped along spatial `axes`, flipped back, in one scope. */
function viewProbabilities(predict: Predictor, x: Tensor, axes: readonly number[]): Tensor {
  return scope(() => {
    const spatial = axes.map((a) => a + 2);
    const xin = spatial.length ? flip(x, spatial) : x;
    const p = softmaxChannels(predict(xin));
    return spatial.length ? flip(p, spatial) : p;
  });
}

/**
 * The host accumulator: weighted class probabilities `acc[c, z, y, x]` of the padded grid
 * for the pd planes from the current row's start. Rows advance it; finished planes are
 * handed out as {@link ProbabilitySlab}s viewing it.
 */
export class BlendAccumulator {
  readonly #plan: WindowPlan;
  readonly #classes: number;
  readonly #plane: number;
  readonly #classStride: number;
  readonly #acc: Float32Array;

  constructor(plan: WindowPlan, classes: number) {
    this.#plan = plan;
    this.#classes = classes;
    this.#plane = plan.padded[1] * plan.padded[2];
    this.#classStride = plan.patch[0] * this.#plane;
    this.#acc = new Float32Array(classes * this.#classStride);
  }

  /** Adds the real windows of batch `b` (probabilities [B, C, pd, ph, pw]) times the weights. */
  add(b: Batch, host: Float32Array): void {
    const acc = this.#acc, weights = this.#plan.weights, classes = this.#classes;
    const [pd, ph, pw] = this.#plan.patch;
    const PW = this.#plan.padded[2];
    const patchVox = pd * ph * pw;
    b.windows.slice(0, b.count).forEach(([y0, x0], w) => {
      for (let c = 0; c < classes; c++) {
        const base = (w * classes + c) * patchVox;
        for (let z = 0; z < pd; z++) {
          for (let y = 0; y < ph; y++) {
            const src = base + pw * (y + ph * z);
            const wi = pw * (y + ph * z);
            const dst = c * this.#classStride + z * this.#plane + (y0 + y) * PW + x0;
            for (let x = 0; x < pw; x++) acc[dst + x] += host[src + x] * weights[wi + x];
          }
        }
      }
    });
  }

  /** The planes row `row` finished: from its start to the next row's (or the volume's end). */
  slab(row: number): ProbabilitySlab {
    const { zStarts, shape: [D, H, W], padded, coverage: [sz, sy, sx] } = this.#plan;
    const acc = this.#acc, classes = this.#classes;
    const plane = this.#plane, classStride = this.#classStride, PW = padded[2];
    const z0 = zStarts[row];
    const end = row + 1 < zStarts.length ? zStarts[row + 1] : padded[0];
    const depth = Math.min(end, D) - z0;
    return {
      z0,
      depth,
      argmax(out: Uint8Array) {
        for (let z = 0, o = 0; z < depth; z++) {
          for (let y = 0; y < H; y++) {
            const row0 = z * plane + y * PW;
            for (let x = 0; x < W; x++, o++) {
              const i = row0 + x;
              let best = 0, bestP = acc[i];
              for (let c = 1; c < classes; c++) {
                const p = acc[c * classStride + i];
                if (p > bestP) {
                  bestP = p;
                  best = c;
                }
              }
              out[o] = best;
            }
          }
        }
      },
      probabilities(z: number, out: Float32Array) {
        if (!(z >= 0 && z < depth)) {
          throw new RangeError(`plane ${z} outside the slab (0..${depth - 1})`);
        }
        const vox = H * W;
        for (let y = 0; y < H; y++) {
          const szy = sz[z0 + z] * sy[y];
          const src = z * plane + y * PW;
          for (let x = 0; x < W; x++) {
            const inv = 1 / (szy * sx[x]);
            for (let c = 0; c < classes; c++) {
              out[c * vox + y * W + x] = acc[c * classStride + src + x] * inv;
            }
          }
        }
      },
    };
  }

  /** Moves the accumulator to the next row's start, zeroing the planes that enter it. */
  advance(row: number): void {
    const zStarts = this.#plan.zStarts;
    if (row + 1 >= zStarts.length) return;
    const shift = (zStarts[row + 1] - zStarts[row]) * this.#plane;
    const classStride = this.#classStride;
    for (let c = 0; c < this.#classes; c++) {
      const o = c * classStride;
      this.#acc.copyWithin(o, o + shift, o + classStride);
      this.#acc.fill(0, o + classStride - shift, o + classStride);
    }
  }
}

/**
 * Blended class probabilities of `source`, slab by slab in z order; see the module comment.
 * Several predictors are an ensemble: their probabilities are averaged. While the host blends
 * one batch, the GPU runs the next.
 *
 * @example
 * for await (const slab of slidingWindowSlabs(predict, source, 3, { patchSize: [64, 64, 64] })) {
 *   slab.argmax(labels.subarray(slab.z0 * H * W, (slab.z0 + slab.depth) * H * W));
 * }
 */
export async function* slidingWindowSlabs(
  predict: Predictors,
  source: SlabSource,
  classes: number,
  opts: SlidingWindowOptions,
): AsyncGenerator<ProbabilitySlab, void, void> {
  checkOptions(opts, classes);
  const predictors = predictorList(predict);
  const { patchSize: patch, batchSize = 1, padValue = 0, flips = [] } = opts;
  const plan = planWindows(source.shape, opts, predictors.length);
  const { batches, total } = plan;
  const acc = new BlendAccumulator(plan, classes);
  const channels = source.channels ?? 1;
  const input = new Float32Array(batchSize * channels * patch[0] * patch[1] * patch[2]);
  let image: ImageSlab = { data: new Float32Array(0), depth: 0 };
  let inflight: InFlight | undefined;
  let done = 0;
  try {
    for (let i = 0; i <= batches.length; i++) {
      let next: InFlight | undefined;
      if (i < batches.length) {
        opts.signal?.throwIfAborted();
        const b = batches[i];
        if (b.firstOfRow) image = await readRowImage(source, plan, b.row);
        next = launchBatch(
          predictors,
          b,
          gatherWindows(plan, image, b, input, padValue),
          patch,
          flips,
          channels,
        );
      }
      if (inflight) {
        const { batch, probs } = inflight;
        const host = await inflight.host;
        probs.dispose();
        inflight = undefined;
        acc.add(batch, host);
        done += batch.count;
        opts.onProgress?.(done, total);
        if (batch.lastOfRow) {
          yield acc.slab(batch.row);
          acc.advance(batch.row);
        }
      }
      inflight = next;
    }
  } finally {
    if (inflight) {
      await inflight.host.catch(() => {});
      inflight.probs.dispose();
    }
  }
}

/** A {@link SlabSource} over a normalised image held in memory. */
export function arraySource(image: Float32Array, shape: Shape3): SlabSource {
  const [D, H, W] = shape;
  if (image.length !== D * H * W) {
    throw new RangeError(
      `image has ${image.length} voxels but shape ${shape.join("×")} needs ${D * H * W}`,
    );
  }
  return {
    shape,
    read: (z0, z1) => Promise.resolve(image.subarray(z0 * H * W, z1 * H * W)),
  };
}

/**
 * Class probabilities [C, D, H, W] (flat, x fastest) for a normalised single-channel volume.
 * Holds the full-volume probabilities; {@link slidingWindowLabels} does not.
 *
 * @example
 * const probs = await slidingWindow((x) => net.forward(x, { training: false }), img, shape, 3,
 *   { patchSize: [32, 64, 64], overlap: 0.5, batchSize: 2 });
 */
export async function slidingWindow(
  predict: Predictors,
  image: Float32Array,
  shape: Shape3,
  classes: number,
  opts: SlidingWindowOptions,
): Promise<Float32Array> {
  const [D, H, W] = shape;
  const vox = D * H * W, planeVox = H * W;
  const out = new Float32Array(classes * vox);
  const plane = new Float32Array(classes * planeVox);
  for await (const slab of slidingWindowSlabs(predict, arraySource(image, shape), classes, opts)) {
    for (let z = 0; z < slab.depth; z++) {
      slab.probabilities(z, plane);
      for (let c = 0; c < classes; c++) {
        out.set(
          plane.subarray(c * planeVox, (c + 1) * planeVox),
          c * vox + (slab.z0 + z) * planeVox,
        );
      }
    }
  }
  return out;
}

/** Arg-max labels [D, H, W] of the blended prediction, without full-volume probabilities. */
export async function slidingWindowLabels(
  predict: Predictors,
  image: Float32Array,
  shape: Shape3,
  classes: number,
  opts: SlidingWindowOptions,
): Promise<Uint8Array> {
  const planeVox = shape[1] * shape[2];
  const out = new Uint8Array(shape[0] * planeVox);
  for await (const slab of slidingWindowSlabs(predict, arraySource(image, shape), classes, opts)) {
    slab.argmax(out.subarray(slab.z0 * planeVox, (slab.z0 + slab.depth) * planeVox));
  }
  return out;
}

/** Arg-max over classes of probabilities [C, V] → labels [V]; ties go to the lower class. */
export function argmaxClasses(probs: Float32Array, classes: number): Uint8Array {
  const v = probs.length / classes;
  const out = new Uint8Array(v);
  for (let i = 0; i < v; i++) {
    let best = 0, bestP = probs[i];
    for (let c = 1; c < classes; c++) {
      const p = probs[c * v + i];
      if (p > bestP) {
        bestP = p;
        best = c;
      }
    }
    out[i] = best;
  }
  return out;
}
