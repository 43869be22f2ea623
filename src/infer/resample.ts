/**
 * Resampling between an input grid and the grid the network was trained at.
 *
 * Grids share their extent: output voxel o along an axis of n_out voxels samples the input
 * at (o + ½)·n_in/n_out − ½, clamped to the first and last voxel centres (PyTorch's
 * `align_corners=False`, scikit-image's `resize`). The network grid of an input with spacing
 * s and n voxels is round(n·s / s_train) voxels, so its spacing is within half a voxel of the
 * training spacing, and mapping back lands exactly on the input grid.
 *
 * Images are interpolated trilinearly. Predictions go back to the input grid as trilinearly
 * interpolated class probabilities followed by arg-max (smoother than nearest-neighbour label
 * lookup, as nnU-Net and MONAI do), plane by plane as slabs arrive, so no full-volume
 * probabilities are held.
 */

import { type AxisMap, axisMap } from "../data/resample.ts";
import type { Shape3 } from "../data/volume.ts";
import type { ProbabilitySlab } from "./sliding_window.ts";

// The grid convention and shape rule are the data column's (shared with preprocessing).
export { type AxisMap, axisMap, resampledShape } from "../data/resample.ts";

/** Default tolerance: per-axis relative spacing difference below which nothing is resampled. */
export const SPACING_TOLERANCE = 0.1;

/**
 * Whether an input with `spacingMm` must be resampled for a network trained at `targetMm`:
 * some axis differs by more than `tolerance` (relative).
 */
export function needsResampling(
  spacingMm: Shape3,
  targetMm: Shape3,
  tolerance = SPACING_TOLERANCE,
): boolean {
  // The epsilon keeps a difference of exactly `tolerance` within it despite rounding.
  return spacingMm.some((s, i) => Math.abs(s / targetMm[i] - 1) > tolerance + 1e-9);
}

/** Bilinear samples of one plane (H·W, x fastest) at the (y, x) maps' output positions. */
export function bilinearPlane(
  src: ArrayLike<number>,
  srcW: number,
  ym: AxisMap,
  xm: AxisMap,
  out: Float32Array,
  outOffset = 0,
): void {
  const h = ym.i0.length, w = xm.i0.length;
  for (let y = 0; y < h; y++) {
    const r0 = ym.i0[y] * srcW, r1 = ym.i1[y] * srcW, ty = ym.t[y];
    for (let x = 0; x < w; x++) {
      const a = xm.i0[x], b = xm.i1[x], tx = xm.t[x];
      const top = src[r0 + a] + tx * (src[r0 + b] - src[r0 + a]);
      const bottom = src[r1 + a] + tx * (src[r1 + b] - src[r1 + a]);
      out[outOffset + y * w + x] = top + ty * (bottom - top);
    }
  }
}

/**
 * Trilinear resampling of a whole volume to `outShape` (same extent). For images; see the
 * module comment for the coordinate convention.
 */
export function resampleTrilinear(
  data: ArrayLike<number>,
  shape: Shape3,
  outShape: Shape3,
): Float32Array {
  const [D, H, W] = shape;
  if (data.length !== D * H * W) {
    throw new RangeError(
      `data has ${data.length} voxels, shape ${shape.join("×")} needs ${D * H * W}`,
    );
  }
  const [d, h, w] = outShape;
  const zm = axisMap(d, D), ym = axisMap(h, H), xm = axisMap(w, W);
  const out = new Float32Array(d * h * w);
  const p0 = new Float32Array(h * w), p1 = new Float32Array(h * w);
  const planeOf = (z: number) =>
    Float32Array.from({ length: H * W }, (_, i) => data[z * H * W + i]);
  for (let z = 0; z < d; z++) {
    bilinearPlane(planeOf(zm.i0[z]), W, ym, xm, p0);
    bilinearPlane(planeOf(zm.i1[z]), W, ym, xm, p1);
    const t = zm.t[z], o = z * h * w;
    for (let i = 0; i < h * w; i++) out[o + i] = p0[i] + t * (p1[i] - p0[i]);
  }
  return out;
}

/**
 * Takes probability slabs on the network grid, in z order, and produces arg-max labels on the
 * output grid: trilinear interpolation of the class probabilities, then arg-max. Holds a few
 * network-grid planes at a time.
 */
export class ProbabilityResampler {
  readonly #classes: number;
  readonly #netShape: Shape3;
  readonly #outShape: Shape3;
  readonly #zm: AxisMap;
  readonly #ym: AxisMap;
  readonly #xm: AxisMap;
  /** Normalised network planes [C, h, w] by z: the last plane of the previous slab, and more. */
  #planes = new Map<number, Float32Array>();
  /** Next output plane to produce. */
  #next = 0;

  constructor(classes: number, netShape: Shape3, outShape: Shape3) {
    this.#classes = classes;
    this.#netShape = netShape;
    this.#outShape = outShape;
    this.#zm = axisMap(outShape[0], netShape[0]);
    this.#ym = axisMap(outShape[1], netShape[1]);
    this.#xm = axisMap(outShape[2], netShape[2]);
  }

  /** Output planes produced so far. */
  get done(): number {
    return this.#next;
  }

  /**
   * Consumes a network-grid slab; returns the output planes it completes as labels
   * (depth·H·W) starting at output plane `z0` (depth may be 0).
   */
  push(slab: ProbabilitySlab): { z0: number; labels: Uint8Array } {
    const [, hn, wn] = this.#netShape;
    const [D, H, W] = this.#outShape;
    const C = this.#classes;
    const end = slab.z0 + slab.depth; // network planes < end are available
    const z0 = this.#next;
    let z1 = z0;
    while (z1 < D && this.#zm.i1[z1] < end) z1++;
    const labels = new Uint8Array((z1 - z0) * H * W);
    const get = (n: number): Float32Array => {
      let p = this.#planes.get(n);
      if (!p) {
        if (n < slab.z0) throw new Error(`network plane ${n} was dropped before it was used`);
        p = new Float32Array(C * hn * wn);
        slab.probabilities(n - slab.z0, p);
        this.#planes.set(n, p);
      }
      return p;
    };
    const blended = new Float32Array(C * hn * wn);
    const plane = new Float32Array(C * H * W);
    for (let z = z0; z < z1; z++) {
      const a = get(this.#zm.i0[z]), b = get(this.#zm.i1[z]), t = this.#zm.t[z];
      for (let i = 0; i < blended.length; i++) blended[i] = a[i] + t * (b[i] - a[i]);
      for (let c = 0; c < C; c++) {
        bilinearPlane(blended.subarray(c * hn * wn), wn, this.#ym, this.#xm, plane, c * H * W);
      }
      const o = (z - z0) * H * W;
      for (let i = 0; i < H * W; i++) {
        let best = 0, bestP = plane[i];
        for (let c = 1; c < C; c++) {
          const p = plane[c * H * W + i];
          if (p > bestP) {
            bestP = p;
            best = c;
          }
        }
        labels[o + i] = best;
      }
    }
    this.#next = z1;
    // Later output planes need network planes ≥ i0 of the next one, at least end − 1.
    const keepFrom = Math.min(z1 < D ? this.#zm.i0[z1] : end, end - 1);
    for (const n of [...this.#planes.keys()]) if (n < keepFrom) this.#planes.delete(n);
    for (let n = Math.max(keepFrom, slab.z0); n < end; n++) get(n);
    return { z0, labels };
  }
}
