/**
 * Gaussian importance weighting for sliding-window blending (nnU-Net, MONAI "gaussian" mode):
 * predictions near a window's centre count more than those at its edges, where the network
 * saw less context. σ = patch · sigmaScale per axis (σ = 1/8 of the patch by default).
 *
 * The map is separable — the product of one Gaussian per axis, each scaled to a maximum of
 * 1 — so the total weight a voxel receives from a grid of windows is the product of per-axis
 * sums ({@link axisCoverage}); the sliding window divides by that instead of keeping a
 * full-size weight accumulator.
 */

/**
 * One axis of the importance map: exp(−(i − c)² / 2σ²) with c the patch centre, scaled so its
 * largest value is 1. Its smallest value is about e^−8 ≈ 3·10⁻⁴ for any patch length (σ scales
 * with it), so no product of three reaches zero in float32.
 */
export function gaussianAxis(n: number, sigmaScale = 1 / 8): Float64Array {
  const sigma = n * sigmaScale;
  const c = (n - 1) / 2;
  const g = Float64Array.from(
    { length: n },
    (_, i) => Math.exp(-((i - c) ** 2) / (2 * sigma * sigma)),
  );
  const max = Math.max(...g);
  return g.map((v) => v / max);
}

/** The 3D importance map [d, h, w] (x fastest): the product of the three axes; maximum 1. */
export function gaussianImportance(
  patch: readonly [number, number, number],
  sigmaScale = 1 / 8,
): Float32Array {
  const [d, h, w] = patch;
  const gz = gaussianAxis(d, sigmaScale), gy = gaussianAxis(h, sigmaScale);
  const gx = gaussianAxis(w, sigmaScale);
  const out = new Float32Array(d * h * w);
  for (let z = 0, i = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const zy = gz[z] * gy[y];
      for (let x = 0; x < w; x++, i++) out[i] = zy * gx[x];
    }
  }
  return out;
}

/**
 * Window start positions along one axis: evenly spaced from 0 to size − patch, with a step of
 * at most patch · (1 − overlap). An axis no longer than the patch gets one window at 0.
 */
export function windowStarts(size: number, patch: number, overlap: number): number[] {
  if (size <= patch) return [0];
  const maxStep = Math.max(1, Math.floor(patch * (1 - overlap)));
  const n = Math.ceil((size - patch) / maxStep) + 1;
  const span = size - patch;
  return Array.from({ length: n }, (_, i) => Math.round((i * span) / (n - 1)));
}

/**
 * Per position along an axis of length `size`, the summed weight `axis` contributes from
 * windows starting at `starts`: Σ axis[p − s] over the windows covering p.
 */
export function axisCoverage(size: number, starts: readonly number[], axis: Float64Array) {
  const out = new Float64Array(size);
  for (const s of starts) {
    for (let i = 0; i < axis.length && s + i < size; i++) out[s + i] += axis[i];
  }
  return out;
}
