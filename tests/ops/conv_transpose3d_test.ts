import { deepStrictEqual, ok, throws } from "node:assert";
import { convTranspose3d } from "../../src/autograd/mod.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import * as ops from "../../src/ops/conv_transpose3d.ts";
import * as conv3dOps from "../../src/ops/conv3d.ts";
import { Random } from "../../src/base/random.ts";
import { opTest } from "./check_op.ts";
import { withInputBinding } from "./forced_tiles.ts";

/** Float64 ConvTranspose3d, kernel 2 stride 2: y[n,o,2z+a,2y+b,2x+c] += x[n,i,z,y,x]·w[i,o,a,b,c]. */
function convTransposeRef(xShape: number[], co: number, withBias: boolean) {
  const [n, ci, d, h, w] = xShape;
  const [d2, h2, w2] = [2 * d, 2 * h, 2 * w];
  const v = d * h * w;
  const v2 = d2 * h2 * w2;
  return ([x, wt, b]: Float64Array[]) => {
    const y = new Float64Array(n * co * v2);
    for (let nn = 0; nn < n; nn++) {
      for (let o = 0; o < co; o++) {
        const yo = (nn * co + o) * v2;
        if (withBias) y.fill(b[o], yo, yo + v2);
        for (let i = 0; i < ci; i++) {
          const xo = (nn * ci + i) * v;
          for (let t = 0; t < 8; t++) {
            const wv = wt[(i * co + o) * 8 + t];
            const [a, bb, c] = [t >> 2, (t >> 1) & 1, t & 1];
            for (let z = 0; z < d; z++) {
              for (let yy = 0; yy < h; yy++) {
                const yr = yo + ((2 * z + a) * h2 + 2 * yy + bb) * w2 + c;
                const xr = xo + (z * h + yy) * w;
                for (let xx = 0; xx < w; xx++) y[yr + 2 * xx] += wv * x[xr + xx];
              }
            }
          }
        }
      }
    }
    return y;
  };
}

function convTransposeCase(x: number[], co: number, bias: boolean, path: string): void {
  const w = [x[1], co, 2, 2, 2];
  const out = [x[0], co, 2 * x[2], 2 * x[3], 2 * x[4]];
  opTest({
    name: `convTranspose3d ${bias ? "bias" : "no bias"} x [${x}] w [${w}] → [${out}] (${path})`,
    inputs: [{ shape: x }, { shape: w }, ...(bias ? [{ shape: [co] }] : [])],
    run: ([xt, wt, b]) => convTranspose3d(xt, wt, b ?? null),
    reference: convTransposeRef(x, co, bias),
  });
}

convTransposeCase([2, 3, 3, 5, 4], 5, true, "odd shapes, partial tiles");
convTransposeCase([1, 6, 2, 3, 3], 7, false, "Ci 6 → Co 7");
convTransposeCase([1, 16, 4, 4, 4], 8, true, "round");
// Several tiles everywhere (software adapter's blocks): 40 tap-channels (2 tiles of 32), Ci 17
// in 5 steps of 4 (the last padded; 3 tiles of 8 in the weight gradient), a 9×3×3 block grid
// on 9×9×17, 2 batch items; the input gradient runs 10 steps of 4 tap-channels.
convTransposeCase([2, 17, 9, 9, 17], 5, true, "multi-tile: channels, steps, z, y, x, batch");

// Row loads: aligned vec4s when W % 4 == 0 (the up-sampled gy then too), scalars otherwise.
convTransposeCase([1, 5, 3, 4, 8], 6, true, "vec4 rows (W % 4 == 0), 8 voxels along x");
convTransposeCase([2, 4, 2, 3, 12], 3, false, "vec4 rows, W 12: the second x block half outside");
convTransposeCase([1, 4, 2, 3, 6], 3, true, "scalar rows, W 6 (even, not a multiple of 4)");

Deno.test("convTranspose3d rejects bad shapes with messages that print them", async () => {
  await initGpu();
  scope(() => {
    const x = new Tensor([1, 3, 4, 4, 4]);
    throws(
      () => convTranspose3d(x, new Tensor([4, 5, 2, 2, 2]), null),
      /w has Ci=4 but x has C=3, x \[1,3,4,4,4\] w \[4,5,2,2,2\]/,
    );
    throws(() => convTranspose3d(x, new Tensor([3, 5, 3, 3, 3]), null), /2×2×2.*\[3,5,3,3,3\]/);
    throws(
      () => convTranspose3d(x, new Tensor([3, 5, 2, 2, 2]), new Tensor([3])),
      /bias must be \[5\]/,
    );
  });
});

Deno.test(
  "conv3d_point.wgsl reads the same sums from texels as from storage: the transposed " +
    "convolution, its input gradient and a 1×1×1 convolution, with bias and ELU",
  { sanitizeResources: false, sanitizeOps: false },
  async () => {
    await initGpu();
    const rng = new Random(5);
    // W 12 (the second block half of 8 outside), Ci 6 (a padded step of 4), Co 5; and W 16.
    const cases = [[2, 6, 3, 5, 12], [1, 9, 2, 3, 16]].map((s) => ({
      s,
      co: 5,
      x: values(s, rng),
      wt: values([s[1], 5, 2, 2, 2], rng),
      w1: values([5, s[1], 1, 1, 1], rng),
      b: values([5], rng),
      gy: values([s[0], 5, 2 * s[2], 2 * s[3], 2 * s[4]], rng),
    }));
    const run = async (binding: "storage" | "texture") => {
      const dev = cases.map((c) => ({
        x: fromArray(c.s, c.x),
        wt: fromArray([c.s[1], 5, 2, 2, 2], c.wt),
        w1: fromArray([5, c.s[1], 1, 1, 1], c.w1),
        b: fromArray([5], c.b),
        gy: fromArray([c.s[0], 5, 2 * c.s[2], 2 * c.s[3], 2 * c.s[4]], c.gy),
      }));
      const out = await withInputBinding(binding, () =>
        scope(() =>
          dev.flatMap((d) => [
            ops.convTranspose3d(d.x, d.wt, d.b),
            ops.convTranspose3dBackwardInput(d.gy, d.wt),
            conv3dOps.conv3d(d.x, d.w1, d.b, { kind: "elu", param: 1 }),
          ])
        ));
      const read = await readTensors(out);
      for (const t of [...out, ...dev.flatMap((d) => Object.values(d))]) t.dispose();
      return read;
    };
    const storage = await run("storage");
    ok(storage.every((a) => a.some((v) => v !== 0)));
    deepStrictEqual(await run("texture"), storage);
  },
);

/** Random values of a shape, as f32. */
function values(shape: number[], rng: Random): Float32Array {
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}
