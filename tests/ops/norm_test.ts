import { throws } from "node:assert";
import { batchNorm, instanceNorm } from "../../src/autograd/mod.ts";
import * as norm from "../../src/ops/norm.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { opTest, relError } from "./check_op.ts";

const EPS = 1e-5;

/**
 * Float64 normalisation of x [N, C, …] by statistics over either each (n, c) slab
 * ("instance") or each channel across N ("batch"), with optional gamma and beta, or with
 * given per-channel mean and variance (`fixed`, batch norm eval).
 */
function normRef(
  shape: number[],
  kind: "instance" | "batch",
  x: Float64Array,
  gamma: Float64Array | null,
  beta: Float64Array | null,
  fixed?: { mean: Float64Array; var: Float64Array },
): Float64Array {
  const [n, c] = shape;
  const s = x.length / (n * c);
  const y = new Float64Array(x.length);
  const slabsOf = (i: number, k: number) =>
    (kind === "instance" ? [i] : [...Array(n).keys()])
      .map((j) => (j * c + k) * s);
  for (let i = 0; i < (kind === "instance" ? n : 1); i++) {
    for (let k = 0; k < c; k++) {
      const slabs = slabsOf(i, k);
      let mean = 0;
      let v = 0;
      if (fixed) {
        [mean, v] = [fixed.mean[k], fixed.var[k]];
      } else {
        for (const b of slabs) for (let e = 0; e < s; e++) mean += x[b + e];
        mean /= slabs.length * s;
        for (const b of slabs) for (let e = 0; e < s; e++) v += (x[b + e] - mean) ** 2;
        v /= slabs.length * s;
      }
      const inv = 1 / Math.sqrt(v + EPS);
      for (const b of slabs) {
        for (let e = 0; e < s; e++) {
          y[b + e] = (x[b + e] - mean) * inv * (gamma ? gamma[k] : 1) + (beta ? beta[k] : 0);
        }
      }
    }
  }
  return y;
}

const affineCases: [string, boolean, boolean][] = [
  ["gamma, beta", true, true],
  ["no affine", false, false],
  ["gamma only", true, false],
  ["beta only", false, true],
];

for (const shape of [[2, 3, 5, 7, 9], [2, 5, 5, 7, 9], [1, 4, 8, 8, 8]]) {
  for (const [what, g, b] of affineCases) {
    if (shape[1] !== 3 && !(g && b)) continue;
    const c = shape[1];
    opTest({
      name: `instanceNorm [${shape}] ${what}`,
      inputs: [
        { shape, init: (r) => 0.5 + 2 * r.normal() },
        ...(g ? [{ shape: [c], init: (r: Random) => r.uniform(0.5, 1.5) }] : []),
        ...(b ? [{ shape: [c] }] : []),
      ],
      run: ([x, ...ab]) => instanceNorm(x, g ? ab[0] : null, b ? ab.at(-1)! : null),
      reference: ([x, ...ab]) =>
        normRef(shape, "instance", x, g ? ab[0] : null, b ? ab.at(-1)! : null),
    });
  }
}

opTest({
  name: "instanceNorm [1,2,17,16,16] two chunks per slab (4352 voxels), gamma, beta",
  inputs: [{ shape: [1, 2, 17, 16, 16] }, { shape: [2], init: "positive" }, { shape: [2] }],
  run: ([x, g, b]) => instanceNorm(x, g, b),
  reference: ([x, g, b]) => normRef([1, 2, 17, 16, 16], "instance", x, g, b),
});

opTest({
  name: "instanceNorm [2,3,5,7,9] far from zero mean (x ≈ 1000 ± 50, raw HU)",
  inputs: [{ shape: [2, 3, 5, 7, 9], init: (r) => 1000 + 50 * r.normal() }, { shape: [3] }],
  run: ([x, g]) => instanceNorm(x, g, null),
  reference: ([x, g]) => normRef([2, 3, 5, 7, 9], "instance", x, g, null),
  fdStep: 1e-2,
});

for (const shape of [[2, 3, 5, 7, 9], [2, 5, 5, 7, 9], [4, 4, 4, 4, 4], [2, 3, 17, 16, 16]]) {
  const c = shape[1];
  opTest({
    name: `batchNorm training [${shape}] gamma, beta (gradient through batch statistics)`,
    inputs: [
      { shape, init: (r) => 0.5 + 2 * r.normal() },
      { shape: [c], init: (r) => r.uniform(0.5, 1.5) },
      { shape: [c] },
    ],
    run: ([x, g, b]) => batchNorm(x, g, b),
    reference: ([x, g, b]) => normRef(shape, "batch", x, g, b),
  });
}

opTest({
  name: "batchNorm training [2,3,5,7,9] no affine, with running stats",
  inputs: [{ shape: [2, 3, 5, 7, 9] }, { shape: [3], grad: false }, {
    shape: [3],
    init: "positive",
    grad: false,
  }],
  run: ([x, rm, rv]) => batchNorm(x, null, null, { runningMean: rm, runningVar: rv }),
  reference: ([x]) => normRef([2, 3, 5, 7, 9], "batch", x, null, null),
});

for (const shape of [[2, 3, 5, 7, 9], [1, 4, 8, 8, 8]]) {
  const c = shape[1];
  opTest({
    name: `batchNorm eval [${shape}] uses running stats; gradients of x, gamma, beta`,
    inputs: [
      { shape },
      { shape: [c], init: (r) => r.uniform(0.5, 1.5) },
      { shape: [c] },
      { shape: [c], grad: false },
      { shape: [c], init: "positive", grad: false },
    ],
    run: ([x, g, b, rm, rv]) =>
      batchNorm(x, g, b, { training: false, runningMean: rm, runningVar: rv }),
    reference: ([x, g, b, rm, rv]) => normRef(shape, "batch", x, g, b, { mean: rm, var: rv }),
  });
}

Deno.test("batchNorm training updates running stats in place with PyTorch's formula", async () => {
  await initGpu();
  const shape = [2, 3, 5, 7, 9];
  const rng = new Random(99);
  const xs = [0, 1].map(() => Float32Array.from({ length: 1890 }, () => 3 + 2 * rng.normal()));
  const rm0 = Float32Array.from([0.1, -0.2, 0.3]);
  const rv0 = Float32Array.from([1, 0.5, 2]);
  const momentum = 0.25;
  const running = scope(() => {
    const rm = fromArray([3], rm0);
    const rv = fromArray([3], rv0);
    for (const x of xs) {
      batchNorm(fromArray(shape, x), null, null, { runningMean: rm, runningVar: rv, momentum });
    }
    return [rm, rv];
  });
  const [rm, rv] = await readTensors(running);
  running.forEach((t) => t.dispose());
  // r ← (1 − m)·r + m·batch statistic; the variance one unbiased (divided by count − 1).
  const wantM = Float64Array.from(rm0);
  const wantV = Float64Array.from(rv0);
  for (const x of xs) {
    for (let c = 0; c < 3; c++) {
      const v = [0, 1].flatMap((n) => [...x.subarray((n * 3 + c) * 315, (n * 3 + c + 1) * 315)]);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const unbiased = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1);
      wantM[c] = (1 - momentum) * wantM[c] + momentum * mean;
      wantV[c] = (1 - momentum) * wantV[c] + momentum * unbiased;
    }
  }
  const err = Math.max(relError(rm, wantM), relError(rv, wantV));
  if (!(err < 1e-5)) throw new Error(`running stats ${rm} ${rv}, want ${wantM} ${wantV}`);
});

Deno.test("instanceNorm [1,1,257,256,256] forward and backward, 65792 workgroups fold", async () => {
  await initGpu();
  const shape = [1, 1, 257, 256, 256];
  const size = 257 * 256 * 256;
  const x = Float32Array.from({ length: size }, (_, i) => 100 + ((i * 2654435761) >>> 0) / 2 ** 26);
  // gy correlated with x, so the gradient's path through the variance matters.
  const gy = Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.001) + x[i] / 32 - 4);
  const out = scope(() => {
    const xt = fromArray(shape, x);
    const { y, stats } = norm.instanceNorm(xt, null, null);
    const [gx] = norm.normBackward(fromArray(shape, gy), xt, null, stats, "instance", true, [
      true,
      false,
      false,
    ]);
    return [y, gx!];
  });
  const [y, gx] = await readTensors(out);
  out.forEach((t) => t.dispose());
  let mean = 0;
  for (const v of x) mean += v;
  mean /= size;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  const inv = 1 / Math.sqrt(variance / size + EPS);
  let mg = 0;
  let mgx = 0;
  for (let i = 0; i < size; i++) {
    mg += gy[i] / size;
    mgx += gy[i] * (x[i] - mean) * inv / size;
  }
  const yRef = new Float64Array(size / 16);
  const gRef = new Float64Array(size / 16);
  const [ySub, gSub] = [new Float64Array(size / 16), new Float64Array(size / 16)];
  for (let k = 0; k < size / 16; k++) {
    const i = k * 16 + (k % 16);
    const xh = (x[i] - mean) * inv;
    [yRef[k], gRef[k], ySub[k], gSub[k]] = [xh, inv * (gy[i] - mg - xh * mgx), y[i], gx[i]];
  }
  const err = [relError(ySub, yRef), relError(gSub, gRef)];
  if (!(err[0] < 1e-4 && err[1] < 1e-3)) throw new Error(`relative errors y, gx: ${err}`);
});

Deno.test("norms reject bad shapes and options with messages that print them", async () => {
  await initGpu();
  scope(() => {
    const x = new Tensor([2, 3, 4, 4, 4]);
    const c4 = new Tensor([4]);
    throws(() => instanceNorm(x, c4, null), /gamma must be \[3\].*\[2, 3, 4, 4, 4\].*got \[4\]/);
    throws(() => instanceNorm(x, null, new Tensor([3, 1])), /beta must be \[3\].*got \[3, 1\]/);
    throws(
      () => instanceNorm(new Tensor([2, 3]), null, null),
      /x must be \[N, C, D, …\], got \[2, 3\]/,
    );
    throws(() => batchNorm(x, null, c4), /batchNorm: beta must be \[3\]/);
    throws(() => batchNorm(x, null, null, { training: false }), /eval mode.*runningMean/);
    throws(
      () => batchNorm(x, null, null, { runningMean: new Tensor([3]) }),
      /both runningMean and runningVar/,
    );
    throws(
      () => batchNorm(x, null, null, { runningMean: c4, runningVar: c4 }),
      /runningMean must be \[3\]/,
    );
    throws(
      () => batchNorm(new Tensor([1, 3, 1, 1, 1]), null, null),
      /more than one value per channel, x is \[1, 3, 1, 1, 1\]/,
    );
  });
});
