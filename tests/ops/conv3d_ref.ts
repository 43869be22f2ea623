/** The plain-TS convolution the GPU kernels are checked against. */

/**
 * Float64 conv3d, stride 1, padding (k - 1) / 2; PyTorch layouts. Loops run over taps outside
 * and voxel rows inside with the valid range precomputed, so the cost is one multiply-add per
 * (o, i, tap, voxel) and the finite-difference check stays fast.
 */
export function conv3dRef(xShape: number[], co: number, k: number, withBias: boolean) {
  const [n, ci, d, h, w] = xShape;
  const p = (k - 1) / 2;
  const v = d * h * w;
  return ([x, wt, b]: Float64Array[]) => {
    const y = new Float64Array(n * co * v);
    for (let nn = 0; nn < n; nn++) {
      for (let o = 0; o < co; o++) {
        const yo = (nn * co + o) * v;
        if (withBias) y.fill(b[o], yo, yo + v);
        for (let i = 0; i < ci; i++) {
          const xo = (nn * ci + i) * v;
          for (let t = 0; t < k * k * k; t++) {
            const wv = wt[(o * ci + i) * k * k * k + t];
            const [dz, dy, dx] = [
              Math.floor(t / (k * k)) - p,
              (Math.floor(t / k) % k) - p,
              t % k - p,
            ];
            for (let z = Math.max(0, -dz); z < Math.min(d, d - dz); z++) {
              for (let yy = Math.max(0, -dy); yy < Math.min(h, h - dy); yy++) {
                const yr = yo + (z * h + yy) * w;
                const xr = xo + ((z + dz) * h + yy + dy) * w + dx;
                for (let xx = Math.max(0, -dx); xx < Math.min(w, w - dx); xx++) {
                  y[yr + xx] += wv * x[xr + xx];
                }
              }
            }
          }
        }
      }
    }
    return y;
  };
}
