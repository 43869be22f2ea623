/**
 * Reductions: sum, mean and sum of squares of a whole tensor to shape [1], row-wise sums for
 * the losses, and the global sum of squares of many tensors for gradient-norm clipping (its
 * first pass over many tensors per dispatch, src/ops/multi_tensor.ts).
 *
 * Every reduction is a workgroup tree in passes: each pass turns each row of `len` values into
 * ceil(len / TILE) partial sums until one value per row is left. The order of additions depends
 * only on the lengths, never on scheduling (no float atomics), so the same inputs give the same
 * bits on the same device.
 */

import reduceWgsl from "../../shaders/reduce.wgsl" with { type: "text" };
import broadcastWgsl from "../../shaders/reduce_broadcast.wgsl" with { type: "text" };
import sumSquaresWgsl from "../../shaders/optim_sum_squares.wgsl" with { type: "text" };
import { defineKernel, grid1d, recorder, Tensor, zeros } from "../gpu/mod.ts";
import { numel } from "./shape.ts";
import {
  expandSets,
  type MultiCost,
  planGroups,
  prefixEnds,
  setUniforms,
  usableVariants,
  variants,
} from "./multi_tensor.ts";

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
 * The first pass of the sum of squares over several tensors per dispatch: variant `sets` binds
 * x0 … x{sets−1} (uniforms len_k, off_k where its partials go, and end_k, the prefix sums of
 * the tensors' partial counts); the same partials, bit for bit, as {@link reduceRowsKernel}'s
 * first pass per tensor (same workgroup size, ITEMS and order of additions).
 */
export const sumSquaresKernel = variants((sets: number) =>
  defineKernel({
    name: `sumSquaresMulti${sets}`,
    body: expandSets(sumSquaresWgsl, sets, "wg", (k) =>
      [
        `out = params.off${k} + j;`,
        "let start = j * WG * ITEMS;",
        "for (var t = 0u; t < ITEMS; t++) {",
        "  let i = start + t * WG + lid;",
        `  if (i < params.len${k}) {`,
        `    let v = x${k}[i];`,
        "    acc += v * v;",
        "  }",
        "}",
      ].join("\n")),
    uniforms: {
      total: "u32",
      ...setUniforms("end", sets),
      ...setUniforms("len", sets),
      ...setUniforms("off", sets),
    },
    bindings: [
      ...Array.from({ length: sets }, (_, k) => ({ name: `x${k}`, access: "read" as const })),
      { name: "y", access: "read_write" },
    ],
    workgroupSize: reduceRowsKernel.workgroupSize,
    constants: { ITEMS },
  })
);

/** Set counts of the {@link sumSquaresKernel} variants; one storage buffer per set plus y. */
export const SUM_SQUARES_SETS = [1, 3, 7, 15, 31] as const;

/**
 * {@link sumSquaresKernel}'s cost on a software adapter, per thread (a tensor's threads are its
 * tiles · WG): a dispatch costs about 800 threads' work, each set bound adds 5 % to every
 * thread's (lavapipe, Mesa 22.3, AVX2; see src/ops/multi_tensor.ts).
 */
const SUM_SQUARES_COST: MultiCost = { dispatch: 800, perSet: 0.05 };

/**
 * The partial sums of squares of every tensor of `xs` in order ({@link partialCount} values per
 * tensor, none for an empty one), or undefined when every tensor is empty: the first pass of
 * {@link sumSquaresAll}, over several tensors per dispatch (on a GPU as many as the device
 * binds, on a software adapter as planned; src/ops/multi_tensor.ts); `sets` forces one
 * variant, for tests.
 */
export function sumSquaresPartials(xs: readonly Tensor[], sets?: number): Tensor | undefined {
  const offsets: number[] = [];
  let total = 0;
  for (const x of xs) {
    offsets.push(total);
    total += partialCount(x.size);
  }
  if (total === 0) return undefined;
  const usable = usableVariants("sumSquaresAll", SUM_SQUARES_SETS, 1, 1, sets);
  const work = xs.flatMap((x, i) => x.size > 0 ? [{ x, off: offsets[i] }] : []);
  const partials = new Tensor([total]);
  const groups = planGroups(
    work,
    usable,
    ({ x }) => partialCount(x.size) * REDUCE_TILE,
    ({ x }) => x.size,
    SUM_SQUARES_COST,
  );
  for (const { sets: s, items } of groups) {
    const ends = prefixEnds(items.map(({ x }) => partialCount(x.size)), s);
    const tiles = ends[`end${s - 1}`];
    const per = (name: string, f: (k: number) => number) =>
      Object.fromEntries(Array.from({ length: s }, (_, k) => [`${name}${k}`, f(k)]));
    recorder().dispatch(
      sumSquaresKernel(s),
      {
        total: tiles,
        ...ends,
        ...per("len", (k) => items[k]?.x.size ?? 0),
        ...per("off", (k) => items[k]?.off ?? 0),
      },
      // Empty sets bind the first tensor again: read-only bindings may alias.
      [...Array.from({ length: s }, (_, k) => (items[k] ?? items[0]).x.buffer), partials.buffer],
      grid1d(tiles),
    );
  }
  return partials;
}

/**
 * Passes of {@link reduceRows} over the single row `x` until at most {@link REDUCE_TILE} values
 * are left, for a last pass fused into another kernel (the gradient-norm control); returns `x`
 * itself when it is that short already, else a new tensor. The partial sums are those of
 * reduceRows, so that last pass gives its bits.
 */
export function reduceToTile(x: Tensor): Tensor {
  let src = x;
  let len = x.size;
  while (partialCount(len) > 1) {
    const groups = partialCount(len);
    const out = new Tensor([groups]);
    recordPass(src, out, { rows: 1, len });
    if (src !== x) src.dispose();
    src = out;
    len = groups;
  }
  return src;
}

/**
 * Σ x² over every element of every tensor → [1], e.g. the squared global gradient norm.
 * The first pass writes every tensor's partial sums into one shared buffer, several tensors
 * per dispatch ({@link sumSquaresPartials}), which is then reduced as a single row; the order
 * is fixed by the tensor sizes, and the result has the bits of a first pass per tensor.
 */
export function sumSquaresAll(xs: readonly Tensor[]): Tensor {
  const partials = sumSquaresPartials(xs);
  if (!partials) return zeros([1]);
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
