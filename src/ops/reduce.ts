/**
 * Reductions: sum, mean and sum of squares of a whole tensor to shape [1], row-wise sums for
 * the losses, and the global sum of squares of many tensors for gradient-norm clipping.
 *
 * Every reduction is a workgroup tree in passes: each pass turns each row of `len` values into
 * ceil(len / TILE) partial sums until one value per row is left. The order of additions depends
 * only on the lengths, never on scheduling (no float atomics), so the same inputs give the same
 * bits on the same device.
 */

import reduceWgsl from "../../shaders/reduce.wgsl" with { type: "text" };
import broadcastWgsl from "../../shaders/reduce_broadcast.wgsl" with { type: "text" };
import { defineKernel, grid1d, recorder, Tensor, zeros } from "../gpu/mod.ts";
import { numel } from "./shape.ts";

/** Values each thread adds serially before the tree. */
const ITEMS = 4;

export const reduceRowsKernel = defineKernel({
  name: "reduceRows",
  body: reduceWgsl,
  uniforms: {
    rows: "u32",
    len: "u32",
    groups: "u32",
    inOffset: "u32",
    outOffset: "u32",
    scale: "f32",
  },
  bindings: [{ name: "x", access: "read" }, { name: "y", access: "read_write" }],
  // A power of two: the tree halves it.
  workgroupSize: 256,
  constants: { ITEMS, SQUARE: 0 },
});

/** Values one workgroup reduces in one pass. */
export const REDUCE_TILE = reduceRowsKernel.workgroupSize * ITEMS;

export const reduceBroadcastKernel = defineKernel({
  name: "reduceBroadcast",
  body: broadcastWgsl,
  uniforms: { n: "u32", scale: "f32" },
  bindings: [{ name: "g", access: "read" }, { name: "y", access: "read_write" }],
  workgroupSize: 256,
});

/** Partial sums one pass leaves for a row of `len` values. */
export function partialCount(len: number): number {
  return Math.ceil(len / REDUCE_TILE);
}

interface Pass {
  rows: number;
  len: number;
  inOffset?: number;
  outOffset?: number;
  scale?: number;
  square?: boolean;
}

/** Records one pass: y[outOffset + row·groups + tile] = scale · Σ tile of row. */
function recordPass(x: Tensor, y: Tensor, p: Pass): number {
  const groups = partialCount(p.len);
  recorder().dispatch(
    reduceRowsKernel,
    {
      rows: p.rows,
      len: p.len,
      groups,
      inOffset: p.inOffset ?? 0,
      outOffset: p.outOffset ?? 0,
      scale: p.scale ?? 1,
    },
    [x.buffer, y.buffer],
    grid1d(p.rows * groups),
    { SQUARE: p.square ? 1 : 0 },
  );
  return groups;
}

/**
 * Sums each of the `rows` contiguous rows of `x` → tensor [rows]. `square` sums x²; `scale`
 * multiplies the results (applied once, in the last pass).
 *
 * @example
 * // stats laid out [3, N·C, chunks] → [3·N·C]
 * const totals = reduceRows(partials, 3 * nc);
 */
export function reduceRows(
  x: Tensor,
  rows: number,
  opts: { square?: boolean; scale?: number } = {},
): Tensor {
  if (!Number.isInteger(rows) || rows < 1 || x.size % rows !== 0) {
    throw new Error(`reduceRows: ${x.size} values of [${x.shape}] do not split into ${rows} rows`);
  }
  let len = x.size / rows;
  if (len === 0) return zeros([rows]);
  let src = x;
  let square = opts.square ?? false;
  for (;;) {
    const groups = partialCount(len);
    const last = groups === 1;
    const out = new Tensor(last ? [rows] : [rows, groups]);
    recordPass(src, out, { rows, len, square, scale: last ? opts.scale ?? 1 : 1 });
    // Safe to recycle now: later writers to the buffer are recorded after this read.
    if (src !== x) src.dispose();
    if (last) return out;
    src = out;
    len = groups;
    square = false;
  }
}

/** Σ x over all elements → [1]. */
export function sum(x: Tensor): Tensor {
  return reduceRows(x, 1);
}

/** Mean of all elements → [1] (0 for an empty tensor). */
export function mean(x: Tensor): Tensor {
  return reduceRows(x, 1, { scale: 1 / x.size });
}

/** Σ x² over all elements → [1]. */
export function sumSquares(x: Tensor): Tensor {
  return reduceRows(x, 1, { square: true });
}

/**
 * Σ x² over every element of every tensor → [1], e.g. the squared global gradient norm.
 * Each tensor's first pass writes its partial sums into one shared buffer, which is then
 * reduced as a single row; the order is fixed by the tensor sizes.
 */
export function sumSquaresAll(xs: readonly Tensor[]): Tensor {
  const counts = xs.map((x) => partialCount(x.size));
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return zeros([1]);
  const partials = new Tensor([total]);
  let offset = 0;
  xs.forEach((x, i) => {
    if (x.size === 0) return;
    recordPass(x, partials, { rows: 1, len: x.size, outOffset: offset, square: true });
    offset += counts[i];
  });
  const out = reduceRows(partials, 1);
  partials.dispose();
  return out;
}

/**
 * A tensor of `shape` filled with scale · g[0], g of shape [1]: the gradient of a full sum
 * (scale 1) or mean (scale 1/n) given the upstream gradient g.
 */
export function broadcastScalar(g: Tensor, shape: readonly number[], scale = 1): Tensor {
  if (g.size !== 1) throw new Error(`broadcastScalar: g must hold one value, got [${g.shape}]`);
  const n = numel(shape);
  const y = new Tensor(shape);
  recorder().dispatch(
    reduceBroadcastKernel,
    { n, scale },
    [g.buffer, y.buffer],
    reduceBroadcastKernel.grid(n),
  );
  return y;
}
