import { throws } from "node:assert";
import { maxPool3d } from "../../src/autograd/mod.ts";
import * as pool from "../../src/ops/maxpool.ts";
import { fromArray, initGpu, readInt, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { opTest } from "./check_op.ts";

/** Distinct values 0.01 apart in shuffled order: no near-ties, so finite differences hold. */
function distinct(n: number, seed = 7): (rng: Random, i: number) => number {
  const perm = Array.from({ length: n }, (_, i) => i);
  const rng = new Random(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return (_rng, i) => (perm[i] - n / 2) * 0.01;
}

/** Float64 max pooling, kernel 2 stride 2, first maximum wins. */
function maxPoolRef(shape: number[]) {
  const [n, c, d, h, w] = shape;
  const [od, oh, ow] = [d >> 1, h >> 1, w >> 1];
  return ([x]: Float64Array[]) => {
    const y = new Float64Array(n * c * od * oh * ow);
    let o = 0;
    for (let nc = 0; nc < n * c; nc++) {
      for (let z = 0; z < od; z++) {
        for (let yy = 0; yy < oh; yy++) {
          for (let xx = 0; xx < ow; xx++) {
            let best = -Infinity;
            for (let k = 0; k < 8; k++) {
              const i = ((nc * d + 2 * z + (k >> 2)) * h + 2 * yy + ((k >> 1) & 1)) * w + 2 * xx +
                (k & 1);
              if (x[i] > best) best = x[i];
            }
            y[o++] = best;
          }
        }
      }
    }
    return y;
  };
}

for (const shape of [[2, 3, 5, 7, 9], [1, 4, 8, 8, 8], [2, 5, 6, 3, 10]]) {
  const n = shape.reduce((a, b) => a * b, 1);
  opTest({
    name: `maxPool3d [${shape}] → [${shape.slice(0, 2)},${shape.slice(2).map((s) => s >> 1)}]`,
    inputs: [{ shape, init: distinct(n) }],
    run: ([x]) => maxPool3d(x),
    reference: maxPoolRef(shape),
  });
}

Deno.test("maxPool3d ties pick the first maximum; backward puts gy there only", async () => {
  await initGpu();
  const shape = [1, 2, 4, 4, 5];
  const x = new Float32Array(2 * 4 * 4 * 5).fill(3);
  const gyHost = Float32Array.from({ length: 2 * 2 * 2 * 2 }, (_, i) => i + 1);
  const { argmax, gx } = scope(() => {
    const { y, argmax } = pool.maxPool3d(fromArray(shape, x));
    const gx = pool.maxPool3dBackward(fromArray(y.shape, gyHost), argmax, shape);
    return { argmax, gx };
  });
  const arg = await readInt(argmax);
  const [g] = await readTensors([gx]);
  argmax.dispose();
  gx.dispose();
  if (arg.some((v) => v !== 0)) throw new Error(`argmax should all be 0, got ${arg}`);
  // Window corners (even z, y, x inside the pooled region) get gy; everything else 0.
  let o = 0;
  for (let i = 0; i < g.length; i++) {
    const [xx, yy, z] = [i % 5, Math.floor(i / 5) % 4, Math.floor(i / 20) % 4];
    const corner = xx % 2 === 0 && yy % 2 === 0 && z % 2 === 0 && xx < 4;
    const want = corner ? gyHost[o++] : 0;
    if (g[i] !== want) throw new Error(`gx[${i}] = ${g[i]}, want ${want}`);
  }
});

Deno.test("maxPool3d backward [1,1,258,256,256]: 66048 workgroups fold into a 2D grid", async () => {
  await initGpu();
  const shape = [1, 1, 258, 256, 256];
  const size = 258 * 256 * 256;
  const x = new Float32Array(size);
  for (let i = 0; i < size; i++) x[i] = ((i * 2654435761) >>> 0) / 2 ** 32;
  const gx = scope(() => {
    const { y, argmax } = pool.maxPool3d(fromArray(shape, x));
    const gy = fromArray(y.shape, Float32Array.from({ length: y.size }, (_, i) => i % 1000 + 1));
    return pool.maxPool3dBackward(gy, argmax, shape);
  });
  const [g] = await readTensors([gx]);
  gx.dispose();
  // Every window sends its gy (o % 1000 + 1) to exactly its maximum.
  const [od, oh, ow] = [129, 128, 128];
  for (let o = 0; o < od * oh * ow; o += 97) {
    const [xx, yy, z] = [o % ow, Math.floor(o / ow) % oh, Math.floor(o / (ow * oh))];
    let best = -1;
    let arg = -1;
    for (let k = 0; k < 8; k++) {
      const i = ((2 * z + (k >> 2)) * 256 + 2 * yy + ((k >> 1) & 1)) * 256 + 2 * xx + (k & 1);
      if (x[i] > best) [best, arg] = [x[i], i];
      if (g[i] !== 0 && g[i] !== o % 1000 + 1) throw new Error(`gx[${i}] = ${g[i]}`);
    }
    if (g[arg] !== o % 1000 + 1) throw new Error(`window ${o}: gx at max is ${g[arg]}`);
  }
});

Deno.test("maxPool3d rejects inputs that are not [N,C,D,H,W] with D, H, W ≥ 2", async () => {
  await initGpu();
  scope(() => {
    throws(
      () => maxPool3d(new Tensor([2, 3, 4, 4])),
      /maxPool3d: input must have 5 dim.*\[2, 3, 4, 4\]/,
    );
    throws(() => maxPool3d(new Tensor([1, 1, 1, 4, 4])), /input \[1, 1, 1, 4, 4\] is too small/);
    const { argmax } = pool.maxPool3d(new Tensor([1, 1, 4, 4, 4]));
    throws(
      () => pool.maxPool3dBackward(new Tensor([1, 1, 2, 2, 3]), argmax, [1, 1, 4, 4, 4]),
      /gy and argmax \(u32\) must be \[1, 1, 2, 2, 2\], got gy \[1, 1, 2, 2, 3\]/,
    );
  });
});
