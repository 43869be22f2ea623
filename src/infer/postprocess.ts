/**
 * Post-processing of label maps, nnU-Net style: keep only the largest connected component of
 * the foreground (all classes > 0 as one) and/or of single classes, chosen on
 * cross-validation predictions only where it improves Dice ({@link choosePostprocessing}),
 * stored in the checkpoint's metadata (`voxseg.postprocessing`, {@link writePostprocessing})
 * and applied by prediction after the arg-max (src/infer/predict.ts).
 *
 * Connectivity: 26 neighbours by default (faces, edges and corners), as nnU-Net v2 labels
 * components (skimage's `label` with its default full connectivity); 6 (faces only, SciPy's
 * `ndimage.label` default, as nnU-Net v1) on request. Where several components share the
 * largest size all of them are kept, as nnU-Net does. Removed voxels become background (0).
 *
 * Algorithm: union-find over runs — maximal stretches of mask voxels along x — iterative, no
 * recursion. A run joins the overlapping runs of the already-scanned neighbour rows ((z, y−1)
 * and (z−1, y) with 6-connectivity; also (z−1, y±1) and diagonal x contact with 26). Memory is
 * 20 bytes a run plus 4 bytes a row ({@link postprocessingBytes}): a few MiB for a typical
 * 512×512×300 CT segmentation, 10 bytes a voxel for the worst case (a checkerboard).
 */

import { writeFileAtomic } from "../base/atomic.ts";
import type { Shape3 } from "../data/volume.ts";
import {
  CHECKPOINT_KEYS,
  CheckpointError,
  decodeCheckpoint,
  parsePostprocessing,
  type Postprocessing,
} from "../nn/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../nn/safetensors.ts";
import { confusionPerClass, nanMean } from "./metrics.ts";

export type { Postprocessing } from "../nn/checkpoint.ts";

/** Neighbourhood of a voxel in 3D: 6 (faces) or 26 (faces, edges, corners). */
export type Connectivity = 6 | 26;

/** 26, as nnU-Net v2 (see the module comment). */
export const DEFAULT_CONNECTIVITY: Connectivity = 26;

/** Mask runs along x: row r = z·H + y holds runs rowStart[r] … rowStart[r + 1] − 1. */
interface Runs {
  rowStart: Int32Array;
  /** First x of each run. */
  x0: Int32Array;
  /** One past the last x of each run. */
  x1: Int32Array;
}

function checkShape(labels: ArrayLike<number>, shape: Shape3): void {
  const [D, H, W] = shape;
  if (!shape.every((n) => Number.isInteger(n) && n >= 0) || labels.length !== D * H * W) {
    throw new RangeError(
      `label map has ${labels.length} voxels, but shape ${shape.join("×")} needs ${D * H * W}`,
    );
  }
}

/** A 256-entry membership table of `classes` (label values 0–255). */
function classTable(classes: Iterable<number>): Uint8Array {
  const table = new Uint8Array(256);
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 0 || c > 255) {
      throw new RangeError(`class ${c} is not a label value (an integer 0–255)`);
    }
    table[c] = 1;
  }
  return table;
}

/** The runs of voxels whose label is in `table`; a counting pass sizes the arrays exactly. */
function maskRuns(labels: Uint8Array, shape: Shape3, table: Uint8Array): Runs {
  const [D, H, W] = shape;
  const rows = D * H;
  let n = 0;
  for (let r = 0, i = 0; r < rows; r++) {
    let prev = 0;
    for (let x = 0; x < W; x++, i++) {
      const m = table[labels[i]];
      if (m && !prev) n++;
      prev = m;
    }
  }
  const rowStart = new Int32Array(rows + 1);
  const x0 = new Int32Array(n), x1 = new Int32Array(n);
  for (let r = 0, i = 0, k = 0; r < rows; r++) {
    rowStart[r] = k;
    let prev = 0;
    for (let x = 0; x < W; x++, i++) {
      const m = table[labels[i]];
      if (m && !prev) x0[k] = x;
      if (!m && prev) x1[k++] = x;
      prev = m;
    }
    if (prev) x1[k++] = W;
  }
  rowStart[rows] = n;
  return { rowStart, x0, x1 };
}

/** Root of run `i`, halving the path on the way (iterative). */
function find(parent: Int32Array, i: number): number {
  while (parent[i] !== i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

/** Joins the runs of row `a` with those of row `b` they touch (`reach` 0: overlap; 1: diagonal). */
function joinRows(runs: Runs, parent: Int32Array, a: number, b: number, reach: number): void {
  const { rowStart, x0, x1 } = runs;
  let i = rowStart[a], j = rowStart[b];
  const iEnd = rowStart[a + 1], jEnd = rowStart[b + 1];
  while (i < iEnd && j < jEnd) {
    if (x0[i] < x1[j] + reach && x0[j] < x1[i] + reach) {
      const ri = find(parent, i), rj = find(parent, j);
      // The smaller index becomes the root: deterministic, whatever the join order.
      if (ri < rj) parent[rj] = ri;
      else if (rj < ri) parent[ri] = rj;
    }
    if (x1[i] <= x1[j]) i++;
    else j++;
  }
}

/** Union-find parents of the runs: runs of one connected component share a root. */
function componentRoots(runs: Runs, shape: Shape3, connectivity: Connectivity): Int32Array {
  const [D, H] = shape;
  const parent = new Int32Array(runs.x0.length);
  for (let i = 0; i < parent.length; i++) parent[i] = i;
  const full = connectivity === 26;
  const reach = full ? 1 : 0;
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      const r = z * H + y;
      if (runs.rowStart[r] === runs.rowStart[r + 1]) continue;
      if (y > 0) joinRows(runs, parent, r, r - 1, reach);
      if (z === 0) continue;
      joinRows(runs, parent, r, r - H, reach);
      if (full && y > 0) joinRows(runs, parent, r, r - H - 1, reach);
      if (full && y + 1 < H) joinRows(runs, parent, r, r - H + 1, reach);
    }
  }
  return parent;
}

/**
 * Keeps, of the voxels whose label is in `classSet`, only the largest connected component
 * (every component of the largest size on a tie); the voxels of the other components become
 * background 0. Works in place on `labels` ([D, H, W] = `shape`, x fastest) and returns the
 * number of voxels removed. `classSet` [1, 2] treats classes 1 and 2 as one foreground.
 *
 * @example
 * largestComponent(labels, [D, H, W], [1]);      // class 1: its largest component only
 * largestComponent(labels, [D, H, W], [1, 2], 6); // the foreground as one, 6-connected
 */
export function largestComponent(
  labels: Uint8Array,
  shape: Shape3,
  classSet: Iterable<number>,
  connectivity: Connectivity = DEFAULT_CONNECTIVITY,
): number {
  checkShape(labels, shape);
  if (connectivity !== 6 && connectivity !== 26) {
    throw new RangeError(`connectivity must be 6 or 26, got ${connectivity}`);
  }
  const runs = maskRuns(labels, shape, classTable(classSet));
  const n = runs.x0.length;
  if (n === 0) return 0;
  const parent = componentRoots(runs, shape, connectivity);
  // Every parent has a smaller index than its child (roots are their component's first
  // run), so one pass in index order points each run straight at its root.
  for (let i = 0; i < n; i++) parent[i] = parent[parent[i]];
  const size = new Float64Array(n);
  for (let i = 0; i < n; i++) size[parent[i]] += runs.x1[i] - runs.x0[i];
  let largest = 0;
  for (let i = 0; i < n; i++) if (size[i] > largest) largest = size[i];
  const W = shape[2];
  let removed = 0;
  for (let r = 0; r + 1 < runs.rowStart.length; r++) {
    for (let i = runs.rowStart[r]; i < runs.rowStart[r + 1]; i++) {
      if (size[parent[i]] === largest) continue;
      labels.fill(0, r * W + runs.x0[i], r * W + runs.x1[i]);
      removed += runs.x1[i] - runs.x0[i];
    }
  }
  return removed;
}

/** Every label value but background: 1 … 255. */
const FOREGROUND: readonly number[] = Array.from({ length: 255 }, (_, i) => i + 1);

/**
 * Applies `pp` to `labels` in place ([D, H, W], x fastest): the foreground's largest component
 * when `foregroundLcc`, then each class of `perClassLcc` in order. Returns the voxels removed.
 */
export function applyPostprocessing(
  labels: Uint8Array,
  shape: Shape3,
  pp: Postprocessing,
): number {
  let removed = 0;
  if (pp.foregroundLcc) removed += largestComponent(labels, shape, FOREGROUND, pp.connectivity);
  for (const c of pp.perClassLcc) removed += largestComponent(labels, shape, [c], pp.connectivity);
  return removed;
}

/**
 * Host bytes {@link applyPostprocessing} needs besides `labels`: the largest of its steps' run
 * tables (20 bytes a run, 4 bytes a row). One pass over the labels; allocates nothing large.
 */
export function postprocessingBytes(
  labels: Uint8Array,
  shape: Shape3,
  pp: Postprocessing,
): number {
  checkShape(labels, shape);
  const [D, H, W] = shape;
  const tracked = classTable(pp.perClassLcc);
  const classRuns = new Float64Array(256);
  let fgRuns = 0;
  for (let r = 0, i = 0; r < D * H; r++) {
    let prev = 0;
    for (let x = 0; x < W; x++, i++) {
      const l = labels[i];
      if (l !== prev) {
        if (tracked[l]) classRuns[l]++;
        if (prev === 0) fgRuns++;
      }
      prev = l;
    }
  }
  if (!pp.foregroundLcc && pp.perClassLcc.length === 0) return 0;
  let runs = pp.foregroundLcc ? fgRuns : 0;
  for (const c of pp.perClassLcc) runs = Math.max(runs, classRuns[c]);
  return 20 * runs + 4 * (D * H + 1);
}

/** One cross-validation case: the predicted and the reference labels on one grid. */
export interface PostprocessingCase {
  /** Predicted labels [D, H, W], x fastest; not modified. */
  prediction: Uint8Array;
  /** Reference labels on the same grid. */
  truth: ArrayLike<number>;
  shape: Shape3;
}

/** What {@link choosePostprocessing} chose, with the Dice it measured. */
export interface PostprocessingChoice extends Postprocessing {
  /**
   * Per class (index = class; [0], background, is NaN: not evaluated): the mean over cases of
   * the Dice without post-processing (NaN where the class is absent from every case).
   */
  diceBefore: number[];
  /** The same with the chosen post-processing. */
  diceAfter: number[];
  /** Mean foreground Dice (mean of the classes' means) without and with it. */
  meanDiceBefore: number;
  meanDiceAfter: number;
}

/** Mean over cases of each class's Dice (NaN cases skipped), index = class. */
function meanDice(dice: number[][], classes: number): number[] {
  return Array.from({ length: classes }, (_, c) => nanMean(dice.map((d) => d[c])));
}

/** Dice per class of one case, index = class. */
function caseDice(pred: Uint8Array, truth: ArrayLike<number>, classes: number): number[] {
  return confusionPerClass(pred, truth, classes).map(({ tp, fp, fn }) =>
    tp + fp + fn === 0 ? NaN : (2 * tp) / (2 * tp + fp + fn)
  );
}

const fgMean = (dice: number[]) => nanMean(dice.slice(1));

/**
 * nnU-Net's choice of post-processing on cross-validation predictions of `classes` classes
 * (background included): first the foreground's largest component, kept when the mean
 * foreground Dice does not get worse (equal or better); then, on top of that, each class's
 * largest component, kept where that class's mean Dice strictly improves. Dice is per case,
 * averaged over the cases where it is defined. The predictions are not modified; memory is two
 * copies of one case at a time.
 *
 * @example
 * const choice = choosePostprocessing(cvCases, 3);
 * await writePostprocessing("runs/a/best.safetensors", choice);
 */
export function choosePostprocessing(
  cases: readonly PostprocessingCase[],
  classes: number,
  connectivity: Connectivity = DEFAULT_CONNECTIVITY,
): PostprocessingChoice {
  if (!Number.isInteger(classes) || classes < 2 || classes > 256) {
    throw new RangeError(
      `classes must be an integer in 2..256 (background included), got ${classes}`,
    );
  }
  if (cases.length === 0) throw new RangeError("choosing post-processing needs at least one case");
  const fg = FOREGROUND.slice(0, classes - 1);
  const rawDice: number[][] = [], fgDice: number[][] = [];
  for (const { prediction, truth, shape } of cases) {
    checkShape(prediction, shape);
    checkShape(truth, shape);
    rawDice.push(caseDice(prediction, truth, classes));
    const copy = prediction.slice();
    largestComponent(copy, shape, fg, connectivity);
    fgDice.push(caseDice(copy, truth, classes));
  }
  const before = meanDice(rawDice, classes), withFg = meanDice(fgDice, classes);
  const foregroundLcc = fgMean(withFg) >= fgMean(before);
  const base = foregroundLcc ? withFg : before;
  // A class's LCC changes only that class's voxels, so each class is judged on its own.
  const classDice: number[][] = [];
  for (const { prediction, truth, shape } of cases) {
    const start = prediction.slice();
    if (foregroundLcc) largestComponent(start, shape, fg, connectivity);
    const row = [NaN];
    for (const c of fg) {
      const copy = start.slice();
      largestComponent(copy, shape, [c], connectivity);
      row.push(caseDice(copy, truth, classes)[c]);
    }
    classDice.push(row);
  }
  const perClass = meanDice(classDice, classes);
  const perClassLcc = fg.filter((c) => perClass[c] > base[c]);
  const diceAfter = base.map((d, c) => (perClassLcc.includes(c) ? perClass[c] : d));
  diceAfter[0] = before[0] = NaN;
  return {
    connectivity,
    foregroundLcc,
    perClassLcc,
    diceBefore: before,
    diceAfter,
    meanDiceBefore: fgMean(before),
    meanDiceAfter: fgMean(diceAfter),
  };
}

/**
 * Stores `pp` in the checkpoint at `path` (its `voxseg.postprocessing` metadata), atomically,
 * leaving the weights and every other metadata entry as they are. Throws
 * {@link CheckpointError} when the file is not a voxseg checkpoint or `pp` does not fit its
 * classes.
 */
export async function writePostprocessing(path: string, pp: Postprocessing): Promise<void> {
  const bytes = await Deno.readFile(path);
  const { meta } = decodeCheckpoint(bytes, path);
  const clean = parsePostprocessing(pp, meta.model.classes, path);
  let file: ReturnType<typeof decodeSafetensors>;
  try {
    file = decodeSafetensors(bytes);
  } catch (e) {
    throw new CheckpointError(`${path}: ${(e as Error).message}`);
  }
  const out = encodeSafetensors(file.tensors, {
    ...file.metadata,
    [CHECKPOINT_KEYS.postprocessing]: JSON.stringify(clean),
  });
  decodeCheckpoint(out, path); // the result must read back
  await writeFileAtomic(path, out);
}
