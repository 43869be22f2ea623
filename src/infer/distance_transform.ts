/**
 * Exact Euclidean distance transform with anisotropic voxel spacing, in linear time:
 * Felzenszwalb & Huttenlocher's lower envelope of parabolas ("Distance Transforms of Sampled
 * Functions", 2012), one pass per axis. The same result as SciPy's
 * `distance_transform_edt(~features, sampling=spacing)`, but measured from the feature voxels.
 */

import type { Shape3 } from "../data/volume.ts";

/** Stands for "no feature yet": large, but finite so envelope intersections stay finite. */
const FAR = 1e20;

function intersection(g: Float64Array, p: number, q: number, s2: number): number {
  return (g[q] + s2 * q * q - (g[p] + s2 * p * p)) / (2 * s2 * (q - p));
}

/**
 * One axis of the squared-distance transform in place: f[i] ← min_q ((i − q)·s)² + f[q] for
 * the n values f[offset + k·stride]. `v`, `z`, `g` are scratch buffers of at least n (n + 1
 * for z) elements.
 */
function transform1d(
  f: Float64Array,
  offset: number,
  stride: number,
  n: number,
  s2: number,
  v: Int32Array,
  z: Float64Array,
  g: Float64Array,
): void {
  for (let i = 0; i < n; i++) g[i] = f[offset + i * stride];
  // Skip lines without any feature: the pass leaves them at FAR.
  let any = false;
  for (let i = 0; i < n; i++) {
    if (g[i] < FAR) {
      any = true;
      break;
    }
  }
  if (!any) return;
  let k = 0;
  v[0] = 0;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = 1; q < n; q++) {
    // Where the parabola rooted at q overtakes the envelope's last one (in voxels); z[0] = −∞
    // ends the loop since FAR keeps every s finite.
    let s = intersection(g, v[k], q, s2);
    while (s <= z[k]) s = intersection(g, v[--k], q, s2);
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    const d = q - v[k];
    f[offset + q * stride] = s2 * d * d + g[v[k]];
  }
}

/**
 * Squared Euclidean distance in mm² from every voxel to the nearest voxel where `features` is
 * non-zero, on a grid of `shape` (D, H, W; x fastest) with `spacingMm` (z, y, x). Voxels of a
 * volume without features get Infinity.
 *
 * @example
 * const d2 = squaredDistanceTransform(edges, [128, 256, 256], [2.5, 0.8, 0.8]);
 * Math.sqrt(d2[i]); // mm from voxel i to the nearest edge voxel
 */
export function squaredDistanceTransform(
  features: ArrayLike<number>,
  shape: Shape3,
  spacingMm: Shape3,
): Float64Array {
  const [D, H, W] = shape;
  const n = D * H * W;
  if (features.length !== n) {
    throw new RangeError(
      `features have ${features.length} voxels, shape ${shape.join("×")} needs ${n}`,
    );
  }
  const f = new Float64Array(n);
  let any = false;
  for (let i = 0; i < n; i++) {
    if (features[i]) any = true;
    else f[i] = FAR;
  }
  if (!any) return f.fill(Infinity);
  const longest = Math.max(D, H, W);
  const v = new Int32Array(longest), z = new Float64Array(longest + 1);
  const g = new Float64Array(longest);
  const [sz, sy, sx] = spacingMm;
  for (let zz = 0; zz < D; zz++) {
    for (let y = 0; y < H; y++) transform1d(f, (zz * H + y) * W, 1, W, sx * sx, v, z, g);
  }
  for (let zz = 0; zz < D; zz++) {
    for (let x = 0; x < W; x++) transform1d(f, zz * H * W + x, W, H, sy * sy, v, z, g);
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) transform1d(f, y * W + x, H * W, D, sz * sz, v, z, g);
  }
  return f;
}
