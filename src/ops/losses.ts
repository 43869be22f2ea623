/**
 * Segmentation losses on GPU tensors: multi-class Tversky (and soft Dice as its α = β = ½
 * case) on probabilities, and categorical cross-entropy on logits. Each forward returns the
 * loss as a [1] tensor plus what its backward needs; gradients flow to probs/logits only.
 *
 * The trainer's weighted sum of them ({@link segmentationLossForward}) has its gradient w.r.t.
 * the logits in one pass ({@link segmentationLossBackward}).
 *
 * Both losses reduce per-voxel terms in two steps: a kernel that computes the terms and sums
 * them per workgroup tile, then `reduceRows` (deterministic tree passes) to totals, then a
 * one-invocation kernel that forms the loss. Nothing is read back to the host.
 */

import tverskyWgsl from "../../shaders/losses_tversky.wgsl" with { type: "text" };
import tverskyFinalizeWgsl from "../../shaders/losses_tversky_finalize.wgsl" with {
  type: "text",
};
import tverskyBackwardWgsl from "../../shaders/losses_tversky_backward.wgsl" with {
  type: "text",
};
import ceWgsl from "../../shaders/losses_cross_entropy.wgsl" with { type: "text" };
import ceFinalizeWgsl from "../../shaders/losses_cross_entropy_finalize.wgsl" with {
  type: "text",
};
import ceBackwardWgsl from "../../shaders/losses_cross_entropy_backward.wgsl" with {
  type: "text",
};
import segmentationBackwardWgsl from "../../shaders/losses_segmentation_backward.wgsl" with {
  type: "text",
};
import logSoftmaxWgsl from "../../shaders/lib/log_softmax.wgsl" with { type: "text" };
import { defineKernel, fromArray, grid1d, keep, recorder, Tensor } from "../gpu/mod.ts";
import { axpby, scale } from "./elementwise.ts";
import { reduceRows } from "./reduce.ts";
import { softmaxChannels } from "./softmax.ts";
import { assertRank } from "./shape.ts";

/** Voxels each thread of the stats kernels adds serially before the workgroup tree. */
const ITEMS = 4;

/** Options of the multi-class Tversky loss. */
export interface TverskyOptions {
  /** Weight of false positives Σ p·(1 − g). Default 0.3. */
  alpha?: number;
  /** Weight of false negatives Σ (1 − p)·g. Default 0.7. */
  beta?: number;
  /** Added to numerator and denominator; keeps absent classes at TI = 1. Default 1e-5. */
  smooth?: number;
  /** Per-class weights (length C) of the weighted mean over classes. Default all 1. */
  classWeights?: readonly number[];
  /** Include class 0 (background) in the mean. Default true. */
  includeBackground?: boolean;
  /** Sum TP/FP/FN over the whole batch before the ratio (nnU-Net "batch dice"). Default false. */
  batch?: boolean;
}

/** Options of the soft Dice loss: Tversky's without alpha and beta. */
export type DiceOptions = Omit<TverskyOptions, "alpha" | "beta">;

/** Options of categorical cross-entropy. */
export interface CrossEntropyOptions {
  /** Per-class weights (length C); the loss is then Σ w_y·nll / Σ w_y, as in PyTorch. */
  classWeights?: readonly number[];
}

export const tverskyStatsKernel = defineKernel({
  name: "tverskyStats",
  body: tverskyWgsl,
  uniforms: { voxels: "u32", classes: "u32", rows: "u32", groups: "u32" },
  bindings: [
    { name: "probs", access: "read" },
    { name: "labels", access: "read", type: "u32" },
    { name: "partials", access: "read_write" },
  ],
  workgroupSize: 256,
  constants: { ITEMS },
});

export const tverskyFinalizeKernel = defineKernel({
  name: "tverskyFinalize",
  body: tverskyFinalizeWgsl,
  uniforms: {
    samples: "u32",
    classes: "u32",
    batch: "u32",
    alpha: "f32",
    beta: "f32",
    // `smooth` is a reserved word in WGSL.
    smoothing: "f32",
  },
  bindings: [
    { name: "stats", access: "read" },
    { name: "weights", access: "read" },
    { name: "loss", access: "read_write" },
    { name: "coef", access: "read_write" },
  ],
});

export const tverskyBackwardKernel = defineKernel({
  name: "tverskyBackward",
  body: tverskyBackwardWgsl,
  uniforms: { n: "u32", voxels: "u32", classes: "u32" },
  bindings: [
    { name: "gy", access: "read" },
    { name: "coef", access: "read" },
    { name: "labels", access: "read", type: "u32" },
    { name: "gx", access: "read_write" },
  ],
  workgroupSize: 256,
});

export const crossEntropyStatsKernel = defineKernel({
  name: "crossEntropyStats",
  body: ceWgsl,
  fragments: [logSoftmaxWgsl],
  uniforms: { voxels: "u32", classes: "u32", total: "u32", groups: "u32" },
  bindings: [
    { name: "x", access: "read" },
    { name: "labels", access: "read", type: "u32" },
    { name: "weights", access: "read" },
    { name: "partials", access: "read_write" },
  ],
  workgroupSize: 256,
  constants: { ITEMS },
});

export const crossEntropyFinalizeKernel = defineKernel({
  name: "crossEntropyFinalize",
  body: ceFinalizeWgsl,
  uniforms: {},
  bindings: [{ name: "stats", access: "read" }, { name: "loss", access: "read_write" }],
});

export const crossEntropyBackwardKernel = defineKernel({
  name: "crossEntropyBackward",
  body: ceBackwardWgsl,
  fragments: [logSoftmaxWgsl],
  uniforms: { voxels: "u32", classes: "u32", total: "u32" },
  bindings: [
    { name: "gy", access: "read" },
    { name: "x", access: "read" },
    { name: "labels", access: "read", type: "u32" },
    { name: "weights", access: "read" },
    { name: "stats", access: "read" },
    { name: "gx", access: "read_write" },
  ],
  workgroupSize: 256,
});

export const segmentationBackwardKernel = defineKernel({
  name: "segmentationLossBackward",
  body: segmentationBackwardWgsl,
  fragments: [logSoftmaxWgsl],
  uniforms: {
    voxels: "u32",
    classes: "u32",
    total: "u32",
    tverskyWeight: "f32",
    diceWeight: "f32",
    ceWeight: "f32",
  },
  bindings: [
    { name: "gy", access: "read" },
    { name: "x", access: "read" },
    { name: "labels", access: "read", type: "u32" },
    { name: "coefT", access: "read" },
    { name: "coefD", access: "read" },
    { name: "ceWeights", access: "read" },
    { name: "ceStats", access: "read" },
    { name: "gx", access: "read_write" },
  ],
  workgroupSize: 256,
});

/** Volume geometry shared by the losses: N samples, C classes, V voxels per sample. */
interface Geometry {
  samples: number;
  classes: number;
  voxels: number;
}

/** Checks `x` [N,C,D,H,W] f32 against `labels` [N,D,H,W] u32; returns N, C, V. */
function checkInputs(op: string, what: string, x: Tensor, labels: Tensor): Geometry {
  assertRank(op, `${what} [N,C,D,H,W]`, x.shape, 5);
  assertRank(op, "labels [N,D,H,W]", labels.shape, 4);
  const [n, c, d, h, w] = x.shape;
  const [ln, ld, lh, lw] = labels.shape;
  if (ln !== n || ld !== d || lh !== h || lw !== w) {
    throw new Error(
      `${op}: labels [${labels.shape.join(", ")}] do not match ${what} ` +
        `[${x.shape.join(", ")}]; expected [${[n, d, h, w].join(", ")}]`,
    );
  }
  if (x.dtype !== "f32") throw new Error(`${op}: ${what} must be f32, got ${x.dtype}`);
  if (labels.dtype !== "u32") {
    throw new Error(`${op}: labels must be u32 class indices, got ${labels.dtype}`);
  }
  if (c < 1) throw new Error(`${op}: ${what} [${x.shape.join(", ")}] has no classes`);
  return { samples: n, classes: c, voxels: d * h * w };
}

/** Validates class weights (length C, finite, ≥ 0) and returns them, or all ones. */
function classWeightsOf(op: string, weights: readonly number[] | undefined, c: number): number[] {
  if (weights === undefined) return new Array(c).fill(1);
  if (weights.length !== c) {
    throw new Error(
      `${op}: classWeights has ${weights.length} values [${weights.join(", ")}] but there are ` +
        `${c} classes`,
    );
  }
  if (weights.some((w) => !Number.isFinite(w) || w < 0)) {
    throw new Error(`${op}: classWeights must be finite and ≥ 0, got [${weights.join(", ")}]`);
  }
  return [...weights];
}

/**
 * Small constant tensors (class weights) by value: uploaded once and kept, so a training step
 * does not upload (and flush) them again. Bounded; the oldest entry is dropped first.
 */
const constants = new Map<string, Tensor>();
const MAX_CONSTANTS = 32;

function constantTensor(values: readonly number[]): Tensor {
  const key = values.map((v) => Math.fround(v)).join(",");
  const hit = constants.get(key);
  if (hit && !hit.disposed) return hit;
  if (constants.size >= MAX_CONSTANTS) {
    const [oldest, t] = constants.entries().next().value!;
    // Recorded reads finish first: an upload into the recycled buffer flushes before writing.
    t.dispose();
    constants.delete(oldest);
  }
  const t = keep(fromArray([values.length], values));
  constants.set(key, t);
  return t;
}

/** Resolved Tversky parameters: what the forward and the tape record. */
interface TverskyParams {
  alpha: number;
  beta: number;
  smooth: number;
  batch: boolean;
  /** Effective weights: 0 for an excluded background. */
  weights: number[];
}

function tverskyParams(opts: TverskyOptions, c: number): TverskyParams {
  const { alpha = 0.3, beta = 0.7, smooth = 1e-5, includeBackground = true, batch = false } = opts;
  for (const [name, v] of [["alpha", alpha], ["beta", beta], ["smooth", smooth]] as const) {
    if (!Number.isFinite(v) || v < 0) {
      throw new Error(`tversky: ${name} must be finite and ≥ 0, got ${v}`);
    }
  }
  const weights = classWeightsOf("tversky", opts.classWeights, c);
  if (!includeBackground) weights[0] = 0;
  if (!(weights.reduce((a, b) => a + b, 0) > 0)) {
    throw new Error(
      `tversky: no class left to average (C = ${c}, includeBackground = ${includeBackground}, ` +
        `weights [${weights.join(", ")}])`,
    );
  }
  return { alpha, beta, smooth, batch, weights };
}

/**
 * Multi-class Tversky loss forward. Per sample n (or over the whole batch with `batch`) and
 * class c, with g the one-hot labels: TP = Σ p·g, FP = Σ p·(1 − g), FN = Σ (1 − p)·g,
 * TI = (TP + smooth) / (TP + α·FP + β·FN + smooth); the loss is the weighted mean over included
 * classes of 1 − TI (Σ w_c(1 − TI_c) / Σ w_c), averaged over samples. α weights false
 * positives and β false negatives, so β > α favours recall.
 *
 * Returns the loss [1] and `coef` [N·C·2], the two gradient values per (n, c) that
 * {@link tverskyBackward} broadcasts over voxels.
 */
export function tverskyForward(
  probs: Tensor,
  labels: Tensor,
  opts: TverskyOptions = {},
): { loss: Tensor; coef: Tensor } {
  const g = checkInputs("tversky", "probs", probs, labels);
  const p = tverskyParams(opts, g.classes);
  const rows = g.samples * g.classes;
  const groups = Math.ceil(g.voxels / (tverskyStatsKernel.workgroupSize * ITEMS));
  const partials = new Tensor([3, rows, groups]);
  recorder().dispatch(
    tverskyStatsKernel,
    { voxels: g.voxels, classes: g.classes, rows, groups },
    [probs.buffer, labels.buffer, partials.buffer],
    grid1d(rows * groups),
  );
  const stats = reduceRows(partials, 3 * rows);
  partials.dispose();
  const loss = new Tensor([1]);
  const coef = new Tensor([rows, 2]);
  recorder().dispatch(
    tverskyFinalizeKernel,
    {
      samples: g.samples,
      classes: g.classes,
      batch: p.batch ? 1 : 0,
      alpha: p.alpha,
      beta: p.beta,
      smoothing: p.smooth,
    },
    [stats.buffer, constantTensor(p.weights).buffer, loss.buffer, coef.buffer],
    [1, 1, 1],
  );
  stats.dispose();
  return { loss, coef };
}

/** Gradient of the Tversky loss w.r.t. probs [N,C,D,H,W], given upstream `gy` [1]. */
export function tverskyBackward(
  gy: Tensor,
  coef: Tensor,
  labels: Tensor,
  probsShape: readonly number[],
): Tensor {
  const [n, c, d, h, w] = probsShape;
  const gx = new Tensor(probsShape);
  recorder().dispatch(
    tverskyBackwardKernel,
    { n: gx.size, voxels: d * h * w, classes: c },
    [gy.buffer, coef.buffer, labels.buffer, gx.buffer],
    tverskyBackwardKernel.grid(n * c * d * h * w),
  );
  return gx;
}

/**
 * Categorical cross-entropy forward from logits [N,C,D,H,W] and labels [N,D,H,W]: the mean
 * over voxels of −log softmax(x)_y (stable log-sum-exp over channels), or with class weights
 * Σ w_y·(−log p_y) / Σ w_y as PyTorch does. Returns the loss [1] and `stats` [2] =
 * [Σ w·nll, Σ w] for {@link crossEntropyBackward}.
 */
export function crossEntropyForward(
  logits: Tensor,
  labels: Tensor,
  opts: CrossEntropyOptions = {},
): { loss: Tensor; stats: Tensor } {
  const g = checkInputs("crossEntropy", "logits", logits, labels);
  const weights = constantTensor(classWeightsOf("crossEntropy", opts.classWeights, g.classes));
  const total = g.samples * g.voxels;
  const groups = Math.ceil(total / (crossEntropyStatsKernel.workgroupSize * ITEMS));
  const partials = new Tensor([2, groups]);
  recorder().dispatch(
    crossEntropyStatsKernel,
    { voxels: g.voxels, classes: g.classes, total, groups },
    [logits.buffer, labels.buffer, weights.buffer, partials.buffer],
    grid1d(groups),
  );
  const stats = reduceRows(partials, 2);
  partials.dispose();
  const loss = new Tensor([1]);
  recorder().dispatch(crossEntropyFinalizeKernel, {}, [stats.buffer, loss.buffer], [1, 1, 1]);
  return { loss, stats };
}

/** Gradient of cross-entropy w.r.t. logits, given upstream `gy` [1] and forward `stats`. */
export function crossEntropyBackward(
  gy: Tensor,
  logits: Tensor,
  labels: Tensor,
  stats: Tensor,
  opts: CrossEntropyOptions = {},
): Tensor {
  const g = checkInputs("crossEntropy", "logits", logits, labels);
  const weights = constantTensor(classWeightsOf("crossEntropy", opts.classWeights, g.classes));
  const total = g.samples * g.voxels;
  const gx = new Tensor(logits.shape);
  recorder().dispatch(
    crossEntropyBackwardKernel,
    { voxels: g.voxels, classes: g.classes, total },
    [gy.buffer, logits.buffer, labels.buffer, weights.buffer, stats.buffer, gx.buffer],
    crossEntropyBackwardKernel.grid(total),
  );
  return gx;
}

/**
 * The trainer's loss from logits: `tverskyWeight`·Tversky + `diceWeight`·Dice on
 * softmax(logits) plus `ceWeight`·cross-entropy on the logits; a term of weight 0 is skipped.
 * `region` holds the options of the Tversky and Dice terms (Dice takes α = β = ½), and its class
 * weights are also cross-entropy's.
 */
export interface SegmentationLossOptions {
  tverskyWeight: number;
  diceWeight: number;
  ceWeight: number;
  region?: TverskyOptions;
}

/** What {@link segmentationLossBackward} needs from the forward; null for a skipped term. */
export interface SegmentationLossSaved {
  coefT: Tensor | null;
  coefD: Tensor | null;
  ceStats: Tensor | null;
}

function segmentationWeights(o: SegmentationLossOptions): [number, number, number] {
  const w: [number, number, number] = [o.tverskyWeight, o.diceWeight, o.ceWeight];
  if (w.some((v) => !Number.isFinite(v) || v < 0)) {
    throw new Error(`segmentationLoss: loss weights must be finite and ≥ 0, got [${w}]`);
  }
  if (w.every((v) => v === 0)) {
    throw new Error("loss: every loss weight is 0; set loss.tverskyWeight, diceWeight or ceWeight");
  }
  return w;
}

/**
 * Forward of the trainer's loss ({@link SegmentationLossOptions}) → [1], and what its
 * one-pass backward needs. The probabilities are computed once for both region terms and freed.
 */
export function segmentationLossForward(
  logits: Tensor,
  labels: Tensor,
  o: SegmentationLossOptions,
): { loss: Tensor } & SegmentationLossSaved {
  checkInputs("segmentationLoss", "logits", logits, labels);
  const [wT, wD, wCE] = segmentationWeights(o);
  const region = o.region ?? {};
  const terms: [number, Tensor][] = [];
  const saved: SegmentationLossSaved = { coefT: null, coefD: null, ceStats: null };
  if (wT > 0 || wD > 0) {
    const probs = softmaxChannels(logits);
    if (wT > 0) {
      const { loss, coef } = tverskyForward(probs, labels, region);
      terms.push([wT, loss]);
      saved.coefT = coef;
    }
    if (wD > 0) {
      const { loss, coef } = tverskyForward(probs, labels, { ...region, alpha: 0.5, beta: 0.5 });
      terms.push([wD, loss]);
      saved.coefD = coef;
    }
    probs.dispose();
  }
  if (wCE > 0) {
    const { loss, stats } = crossEntropyForward(logits, labels, {
      classWeights: region.classWeights,
    });
    terms.push([wCE, loss]);
    saved.ceStats = stats;
  }
  let [w0, total] = terms[0];
  if (terms.length === 1) {
    if (w0 === 1) return { loss: total, ...saved };
    const scaled = scale(total, w0);
    total.dispose();
    return { loss: scaled, ...saved };
  }
  for (let i = 1; i < terms.length; i++) {
    const next = axpby(w0, total, terms[i][0], terms[i][1]);
    total.dispose();
    terms[i][1].dispose();
    total = next;
    w0 = 1;
  }
  return { loss: total, ...saved };
}

/**
 * Gradient of {@link segmentationLossForward} w.r.t. the logits, given upstream `gy` [1]: one
 * kernel for what would otherwise be the region terms' backward, the softmax's, cross-entropy's
 * and the additions between them (losses_segmentation_backward.wgsl).
 */
export function segmentationLossBackward(
  gy: Tensor,
  logits: Tensor,
  labels: Tensor,
  saved: SegmentationLossSaved,
  o: SegmentationLossOptions,
): Tensor {
  const g = checkInputs("segmentationLoss", "logits", logits, labels);
  const [wT, wD, wCE] = segmentationWeights(o);
  const ceWeights = wCE > 0
    ? constantTensor(classWeightsOf("crossEntropy", o.region?.classWeights, g.classes))
    : logits;
  const total = g.samples * g.voxels;
  const gx = new Tensor(logits.shape);
  // A skipped term's kernel weight is 0 and its buffers are stand-ins it never reads.
  recorder().dispatch(
    segmentationBackwardKernel,
    {
      voxels: g.voxels,
      classes: g.classes,
      total,
      tverskyWeight: saved.coefT ? wT : 0,
      diceWeight: saved.coefD ? wD : 0,
      ceWeight: saved.ceStats ? wCE : 0,
    },
    [
      gy.buffer,
      logits.buffer,
      labels.buffer,
      (saved.coefT ?? logits).buffer,
      (saved.coefD ?? logits).buffer,
      ceWeights.buffer,
      (saved.ceStats ?? logits).buffer,
      gx.buffer,
    ],
    segmentationBackwardKernel.grid(total),
  );
  return gx;
}
