/**
 * Gaussian importance map for sliding-window blending (nnU-Net, MONAI "gaussian" mode):
 * predictions near a window's centre count more than those at its edges, where the network
 * saw less context. σ = patch · sigmaScale per axis; the map's maximum is 1 and no weight is
 * zero (zeros would leave voxels covered only by window edges undefined).
 */

export function gaussianImportance(
  patch: readonly [number, number, number],
  sigmaScale = 1 / 8,
): Float32Array {
  const [d, h, w] = patch;
  const axis = (n: number) => {
    const sigma = n * sigmaScale;
    const c = (n - 1) / 2;
    return Float64Array.from(
      { length: n },
      (_, i) => Math.exp(-((i - c) ** 2) / (2 * sigma * sigma)),
    );
  };
  const gz = axis(d), gy = axis(h), gx = axis(w);
  const out = new Float32Array(d * h * w);
  let max = 0;
  for (let z = 0, i = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      const zy = gz[z] * gy[y];
      for (let x = 0; x < w; x++, i++) {
        out[i] = zy * gx[x];
        if (out[i] > max) max = out[i];
      }
    }
  }
  let minPositive = Infinity;
  for (let i = 0; i < out.length; i++) {
    out[i] /= max;
    if (out[i] > 0 && out[i] < minPositive) minPositive = out[i];
  }
  for (let i = 0; i < out.length; i++) if (out[i] === 0) out[i] = minPositive;
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
