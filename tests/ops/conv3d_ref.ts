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

/** Kernel sizes or strides along z, y, x. */
export type Zyx = readonly [number, number, number];

/** Output size along one axis of a convolution with padding k // 2: ⌊(n + 2p − k) / s⌋ + 1. */
export function convOutSize(n: number, k: number, s: number): number {
  return Math.floor((n + 2 * Math.floor(k / 2) - k) / s) + 1;
}

/**
 * The correlation every general-convolution reference is built on, in float64: for each batch
 * item, output channel o, input channel i, tap t and output voxel v, with u the input voxel
 * v·s + t − p (skipped outside the volume), `mode` "forward" adds w[o,i,t]·x[u] to y[v],
 * "data" adds w[o,i,t]·gy[v] to gx[u], "weight" adds gy[v]·x[u] to gw[o,i,t]. Padding k // 2.
 */
function correlate(
  mode: "forward" | "data" | "weight",
  xShape: readonly number[],
  co: number,
  k: Zyx,
  s: Zyx,
  a: Float64Array,
  b: Float64Array,
  out: Float64Array,
): void {
  const [n, ci, d, h, w] = xShape;
  const [od, oh, ow] = [0, 1, 2].map((j) => convOutSize(xShape[2 + j], k[j], s[j]));
  const p = k.map((v) => Math.floor(v / 2));
  const kt = k[0] * k[1] * k[2];
  for (let nn = 0; nn < n; nn++) {
    for (let o = 0; o < co; o++) {
      for (let i = 0; i < ci; i++) {
        for (let t = 0; t < kt; t++) {
          const tz = Math.floor(t / (k[1] * k[2]));
          const ty = Math.floor(t / k[2]) % k[1];
          const tx = t % k[2];
          const wi = (o * ci + i) * kt + t;
          for (let zo = 0; zo < od; zo++) {
            const z = zo * s[0] + tz - p[0];
            if (z < 0 || z >= d) continue;
            for (let yo = 0; yo < oh; yo++) {
              const y = yo * s[1] + ty - p[1];
              if (y < 0 || y >= h) continue;
              const vr = (((nn * co + o) * od + zo) * oh + yo) * ow;
              const ur = (((nn * ci + i) * d + z) * h + y) * w;
              for (let xo = 0; xo < ow; xo++) {
                const x = xo * s[2] + tx - p[2];
                if (x < 0 || x >= w) continue;
                // forward: a = w, b = x; data: a = w, b = gy; weight: a = gy, b = x.
                if (mode === "forward") out[vr + xo] += a[wi] * b[ur + x];
                else if (mode === "data") out[ur + x] += a[wi] * b[vr + xo];
                else out[wi] += a[vr + xo] * b[ur + x];
              }
            }
          }
        }
      }
    }
  }
}

/** Float64 conv3d with kernel k and stride s per axis, padding k // 2; PyTorch layouts. */
export function conv3dGeneralRef(
  xShape: readonly number[],
  co: number,
  k: Zyx,
  s: Zyx,
  withBias: boolean,
) {
  const [n, , d, h, w] = xShape;
  const ov = [d, h, w].map((v, j) => convOutSize(v, k[j], s[j])).reduce((a, b) => a * b, 1);
  return ([x, wt, b]: Float64Array[]): Float64Array => {
    const y = new Float64Array(n * co * ov);
    if (withBias) { for (let j = 0; j < y.length; j++) y[j] = b[Math.floor(j / ov) % co]; }
    correlate("forward", xShape, co, k, s, wt, x, y);
    return y;
  };
}

/** Float64 input gradient of {@link conv3dGeneralRef}: gy, w → gx of shape xShape. */
export function conv3dGeneralInputGradRef(
  xShape: readonly number[],
  co: number,
  k: Zyx,
  s: Zyx,
  gy: Float64Array,
  wt: Float64Array,
): Float64Array {
  const gx = new Float64Array(xShape.reduce((a, b) => a * b, 1));
  correlate("data", xShape, co, k, s, wt, gy, gx);
  return gx;
}

/** Float64 weight gradient of {@link conv3dGeneralRef}: x, gy → gw [Co, Ci, kd, kh, kw]. */
export function conv3dGeneralWeightGradRef(
  xShape: readonly number[],
  co: number,
  k: Zyx,
  s: Zyx,
  x: Float64Array,
  gy: Float64Array,
): Float64Array {
  const gw = new Float64Array(co * xShape[1] * k[0] * k[1] * k[2]);
  correlate("weight", xShape, co, k, s, gy, x, gw);
  return gw;
}

/**
 * Float64 ConvTranspose3d with kernel = stride k per axis:
 * y[n, o, z·kd + a, y·kh + b, x·kw + c] = bias[o] + Σ_i x[n, i, z, y, x] · w[i, o, a, b, c].
 */
export function convTranspose3dGeneralRef(
  xShape: readonly number[],
  co: number,
  k: Zyx,
  withBias: boolean,
) {
  const [n, ci, d, h, w] = xShape;
  const [d2, h2, w2] = [d * k[0], h * k[1], w * k[2]];
  const kt = k[0] * k[1] * k[2];
  return ([x, wt, b]: Float64Array[]): Float64Array => {
    const y = new Float64Array(n * co * d2 * h2 * w2);
    for (let j = 0; j < y.length; j++) {
      const nc = Math.floor(j / (d2 * h2 * w2));
      const o = nc % co;
      const nn = Math.floor(nc / co);
      const xx = j % w2;
      const yy = Math.floor(j / w2) % h2;
      const zz = Math.floor(j / (w2 * h2)) % d2;
      const t = ((zz % k[0]) * k[1] + (yy % k[1])) * k[2] + (xx % k[2]);
      const u = (Math.floor(zz / k[0]) * h + Math.floor(yy / k[1])) * w + Math.floor(xx / k[2]);
      let acc = withBias ? b[o] : 0;
      for (let i = 0; i < ci; i++) {
        acc += x[(nn * ci + i) * d * h * w + u] * wt[(i * co + o) * kt + t];
      }
      y[j] = acc;
    }
    return y;
  };
}

/**
 * Float64 gradients of {@link convTranspose3dGeneralRef} for an output gradient gy:
 * gx[n, i, u] = Σ_o Σ_t w[i, o, t] · gy[n, o, u·k + t] and
 * gw[i, o, t] = Σ_n Σ_u x[n, i, u] · gy[n, o, u·k + t].
 */
export function convTranspose3dGeneralGradRefs(
  xShape: readonly number[],
  co: number,
  k: Zyx,
  x: Float64Array,
  wt: Float64Array,
  gy: Float64Array,
): { gx: Float64Array; gw: Float64Array } {
  const [n, ci, d, h, w] = xShape;
  const [h2, w2] = [h * k[1], w * k[2]];
  const kt = k[0] * k[1] * k[2];
  const v = d * h * w;
  const gx = new Float64Array(n * ci * v);
  const gw = new Float64Array(ci * co * kt);
  for (let nn = 0; nn < n; nn++) {
    for (let i = 0; i < ci; i++) {
      for (let o = 0; o < co; o++) {
        for (let t = 0; t < kt; t++) {
          const [a, b, c] = [Math.floor(t / (k[1] * k[2])), Math.floor(t / k[2]) % k[1], t % k[2]];
          const wi = (i * co + o) * kt + t;
          for (let u = 0; u < v; u++) {
            const [z, y, xx] = [Math.floor(u / (h * w)), Math.floor(u / w) % h, u % w];
            const yi = (nn * co + o) * v * kt + ((z * k[0] + a) * h2 + y * k[1] + b) * w2 +
              xx * k[2] + c;
            const xi = (nn * ci + i) * v + u;
            gx[xi] += wt[wi] * gy[yi];
            gw[wi] += x[xi] * gy[yi];
          }
        }
      }
    }
  }
  return { gx, gw };
}
