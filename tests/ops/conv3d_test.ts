import { throws } from "node:assert";
import { conv3d } from "../../src/autograd/mod.ts";
import { initGpu, scope, Tensor } from "../../src/gpu/mod.ts";
import { opTest } from "./check_op.ts";

/**
 * Float64 conv3d, stride 1, padding (k - 1) / 2; PyTorch layouts. Loops run over taps outside
 * and voxel rows inside with the valid range precomputed, so the cost is one multiply-add per
 * (o, i, tap, voxel) and the finite-difference check stays fast.
 */
function conv3dRef(xShape: number[], co: number, k: number, withBias: boolean) {
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

interface Case {
  x: number[];
  co: number;
  k: 1 | 3;
  bias: boolean;
  path: string;
  inputGrad?: boolean;
  fdSamples?: number;
}

function conv3dCase(c: Case): void {
  const ci = c.x[1];
  const w = [c.co, ci, c.k, c.k, c.k];
  opTest({
    name: `conv3d k${c.k} ${c.bias ? "bias" : "no bias"} x [${c.x}] w [${w}] (${c.path})`,
    inputs: [
      { shape: c.x, grad: c.inputGrad ?? true },
      { shape: w },
      ...(c.bias ? [{ shape: [c.co] }] : []),
    ],
    run: ([x, wt, b]) => conv3d(x, wt, b ?? null),
    reference: conv3dRef(c.x, c.co, c.k, c.bias),
    fdSamples: c.fdSamples,
  });
}

// Odd shapes: partial tiles everywhere, channel counts not divisible by 4.
conv3dCase({ x: [2, 3, 5, 7, 9], co: 5, k: 3, bias: true, path: "odd shapes, partial tiles" });
conv3dCase({ x: [2, 3, 5, 7, 9], co: 5, k: 3, bias: false, path: "odd shapes, partial tiles" });
conv3dCase({ x: [2, 3, 5, 7, 9], co: 5, k: 1, bias: true, path: "k1 path" });
conv3dCase({ x: [1, 6, 4, 6, 5], co: 7, k: 1, bias: false, path: "k1 path, Ci 6 → Co 7" });
conv3dCase({ x: [1, 6, 3, 5, 6], co: 2, k: 3, bias: true, path: "Co 2: one channel group" });
// Round case.
conv3dCase({ x: [1, 8, 8, 8, 8], co: 16, k: 3, bias: true, path: "one full tile" });
// U-Net first layer: one input channel, no gradient wanted for the image.
conv3dCase({
  x: [1, 1, 10, 9, 12],
  co: 16,
  k: 3,
  bias: true,
  inputGrad: false,
  path: "first layer, no input gradient",
});
// Several tiles in every dimension: 2 channel tiles of 16, 2 input-channel chunks, 2×3×3
// voxel tiles of 8³, 2 batch items; the weight gradient spans 3 channel tiles and many slices.
conv3dCase({
  x: [2, 9, 9, 17, 17],
  co: 20,
  k: 3,
  bias: true,
  fdSamples: 8,
  path: "multi-tile: channels, chunks, z, y, x, batch",
});

Deno.test("conv3d rejects bad shapes with messages that print them", async () => {
  await initGpu();
  scope(() => {
    const x = new Tensor([1, 3, 4, 4, 4]);
    throws(() => conv3d(x, new Tensor([5, 4, 3, 3, 3]), null), /w has Ci=4 but x has C=3/);
    throws(() => conv3d(x, new Tensor([5, 4, 3, 3, 3]), null), /x \[1,3,4,4,4\] w \[5,4,3,3,3\]/);
    throws(() => conv3d(x, new Tensor([5, 3, 2, 2, 2]), null), /3×3×3 or 1×1×1.*\[5,3,2,2,2\]/);
    throws(() => conv3d(x, new Tensor([5, 3, 3, 3, 3]), new Tensor([4])), /bias must be \[5\]/);
    throws(() => conv3d(new Tensor([3, 4, 4, 4]), new Tensor([5, 3, 3, 3, 3]), null), /5 dim/);
  });
});
