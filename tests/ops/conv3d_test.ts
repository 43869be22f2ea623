import { throws } from "node:assert";
import { conv3d, conv3dAct } from "../../src/autograd/mod.ts";
import * as ops from "../../src/ops/conv3d.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { checkOp, type OpCase } from "./check_op.ts";
import { builtinTiles, CONV_TILES, WGRAD_TILES } from "../../src/ops/tuning.ts";
import { conv3dRef } from "./conv3d_ref.ts";
import { type ForcedTiles, withForcedTiles, withWeightBinding } from "./forced_tiles.ts";
import type { WeightBinding } from "../../src/ops/tuning.ts";

/** The software adapter's built-in K = 3 blocks (tuning.ts), whatever the adapter. */
const SOFTWARE_TILES = {
  conv3: { ...CONV_TILES.software[3] },
  wgrad3: { ...WGRAD_TILES.software[3] },
};

interface Case {
  x: number[];
  co: number;
  k: 1 | 3;
  bias: boolean;
  path: string;
  inputGrad?: boolean;
  fdSamples?: number;
  /** Forces where the kernel reads its packed weights (else the adapter's choice). */
  binding?: WeightBinding;
  /** The forward block (CG×VZ×VX), else the software adapter's built-in one. */
  conv3?: ForcedTiles["conv3"];
}

function conv3dCase(c: Case): void {
  const ci = c.x[1];
  const w = [c.co, ci, c.k, c.k, c.k];
  tiledTest(c.conv3 ? { ...SOFTWARE_TILES, conv3: c.conv3 } : SOFTWARE_TILES, {
    name: `conv3d k${c.k} ${c.bias ? "bias" : "no bias"} x [${c.x}] w [${w}] (${c.path})`,
    binding: c.binding,
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
conv3dCase({
  x: [2, 20, 3, 4, 5],
  co: 6,
  k: 1,
  bias: false,
  path: "k1 path, 3 input-channel tiles of 8 in the weight gradient",
});
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
// Several blocks in every dimension (software adapter's register blocks): 5 channel tiles of
// 4, 3×3×3 voxel blocks of 4×4×8 with partial ones at every far edge, 2 batch items; the
// weight gradient sums several slices of voxel blocks.
conv3dCase({
  x: [2, 9, 9, 17, 17],
  co: 20,
  k: 3,
  bias: true,
  fdSamples: 8,
  path: "multi-tile: channels, z, y, x, batch",
});

// The packed weights in a storage binding, where the software adapter would read them through
// a uniform one (they fit in 64 KiB): the path GPUs take, and CPUs for larger weights.
conv3dCase({
  x: [2, 9, 9, 17, 17],
  co: 20,
  k: 3,
  bias: true,
  fdSamples: 8,
  binding: "storage",
  path: "multi-tile, weights in a storage binding",
});
conv3dCase({
  x: [2, 5, 3, 6, 8],
  co: 7,
  k: 1,
  bias: true,
  binding: "storage",
  path: "k1 path, weights in a storage binding",
});
// And through a uniform binding, whatever the adapter.
conv3dCase({
  x: [1, 6, 3, 5, 9],
  co: 7,
  k: 3,
  bias: true,
  binding: "uniform",
  path: "weights in a uniform binding",
});

// 16 channels per thread (CG = 4, 4×2×8): a full tile and a partial one (Co 20), and Co 12,
// three groups of 4 in a block of four; the input gradient (Co 5, 7) takes CG 2.
conv3dCase({
  x: [2, 5, 5, 7, 16],
  co: 20,
  k: 3,
  bias: true,
  conv3: { cg: 4, vz: 2, vx: 8, wg: 64 },
  path: "block 4×2×8: 16 channels per thread",
});
conv3dCase({
  x: [1, 7, 3, 5, 9],
  co: 12,
  k: 3,
  bias: false,
  binding: "storage",
  conv3: { cg: 4, vz: 2, vx: 8, wg: 64 },
  path: "block 4×2×8, Co 12, weights in a storage binding",
});

// Many channels on a small grid: 9 output-channel tiles of 4 in the forward pass, 5 × 17
// channel tiles in the weight gradient, 5 tiles in the input gradient; the packed weights
// (16 524 and 19 440 floats) too large for a uniform binding.
conv3dCase({
  x: [1, 17, 4, 5, 6],
  co: 36,
  k: 3,
  bias: true,
  path: "channel tiles: forward 9, weight gradient 5×17",
});
// Two channel groups per thread (block 2×4×8): 3 channel tiles of 8, the last half empty.
conv3dCase({
  x: [2, 9, 9, 17, 16],
  co: 20,
  k: 3,
  bias: true,
  fdSamples: 8,
  conv3: { cg: 2, vz: 4, vx: 8, wg: 64 },
  path: "block 2×4×8: 8 channels per thread",
});

// Row loads: aligned vec4s when W % 4 == 0, checked scalars otherwise; 8 voxels per thread
// along x, 4 when W ≤ 4. Same shapes but W, so a broken path shows up on its own.
conv3dCase({
  x: [2, 5, 4, 6, 16],
  co: 6,
  k: 3,
  bias: true,
  fdSamples: 16,
  path: "vec4 rows (W % 4 == 0), two x blocks of 8",
});
conv3dCase({
  x: [2, 5, 4, 6, 15],
  co: 6,
  k: 3,
  bias: true,
  fdSamples: 16,
  path: "scalar rows (W odd), two x blocks of 8",
});
conv3dCase({
  x: [1, 3, 5, 6, 12],
  co: 5,
  k: 3,
  bias: false,
  path: "vec4 rows, W 12: the second x block half outside",
});
conv3dCase({
  x: [1, 3, 5, 6, 4],
  co: 5,
  k: 3,
  bias: true,
  path: "vec4 rows, W 4: 4 voxels along x",
});
conv3dCase({
  x: [1, 3, 5, 6, 3],
  co: 5,
  k: 3,
  bias: true,
  path: "scalar rows, W 3: 4 voxels along x",
});
conv3dCase({ x: [2, 6, 3, 5, 8], co: 7, k: 1, bias: true, path: "k1 path, vec4 rows" });

// Activations fused into the convolution's store; the gradient is taken from the output.
const ACTS = {
  relu: (v: number) => Math.max(v, 0),
  leaky_relu: (v: number) => (v > 0 ? v : 0.1 * v),
  elu: (v: number) => (v > 0 ? v : 1.3 * Math.expm1(v)),
} as const;
for (
  const [kind, x, k] of [
    ["relu", [2, 3, 5, 7, 9], 3],
    ["leaky_relu", [1, 5, 4, 6, 16], 3],
    ["elu", [2, 3, 5, 7, 9], 3],
    ["relu", [1, 6, 3, 5, 8], 1],
  ] as const
) {
  const [ci, co] = [x[1], 5];
  const conv = conv3dRef([...x], co, k, true);
  const param = kind === "leaky_relu" ? 0.1 : kind === "elu" ? 1.3 : undefined;
  tiledTest(SOFTWARE_TILES, {
    name: `conv3dAct ${kind} k${k} x [${x}] w [${co},${ci},${k},${k},${k}] (fused activation)`,
    inputs: [{ shape: [...x] }, { shape: [co, ci, k, k, k] }, { shape: [co] }],
    run: ([xt, wt, b]) => conv3dAct(xt, wt, b, { kind, param }),
    reference: (xs) => conv(xs).map(ACTS[kind]),
  });
}

// The register blocks a GPU gets (tuning.ts CONV_TILES / WGRAD_TILES), forced on this adapter
// for the forward and the backward pass.
for (const [x, co, k] of [[[2, 5, 3, 6, 9], 6, 3], [[1, 6, 3, 5, 8], 7, 1]] as const) {
  const ci = x[1];
  const w = [co, ci, k, k, k];
  const c: OpCase = {
    name: `conv3d k${k} bias x [${x}] w [${w}] (GPU register blocks: 4 channels × 1×4×4)`,
    inputs: [{ shape: [...x] }, { shape: w }, { shape: [co] }],
    run: ([xt, wt, b]) => conv3d(xt, wt, b),
    reference: conv3dRef([...x], co, k, true),
  };
  Deno.test({
    name: c.name,
    fn: () => withGpuTiles(() => checkOp(c)),
    sanitizeResources: false,
    sanitizeOps: false,
  });
}

/**
 * Like opTest, with the K = 3 register blocks forced for the whole check (forward and
 * backward), so that a block tuned and cached on this machine (`voxseg tune`) cannot change
 * the path a case covers. The cases' comments describe these blocks.
 */
function tiledTest(tiles: ForcedTiles, c: OpCase & { binding?: WeightBinding }): void {
  const check = () => withForcedTiles(tiles, () => checkOp(c));
  Deno.test({
    name: c.name,
    fn: () => c.binding ? withWeightBinding(c.binding, check) : check(),
    sanitizeResources: false,
    sanitizeOps: false,
  });
}

/**
 * Runs `fn` with the software adapter's tile tables set to the GPU's, and the GPU's K = 3
 * blocks forced (a cached tuned block would otherwise take precedence over the table).
 */
async function withGpuTiles(fn: () => Promise<void>): Promise<void> {
  const tables = [
    [CONV_TILES.software[1], CONV_TILES.gpu[1]],
    [CONV_TILES.software[3], CONV_TILES.gpu[3]],
    [WGRAD_TILES.software[1], WGRAD_TILES.gpu[1]],
    [WGRAD_TILES.software[3], WGRAD_TILES.gpu[3]],
  ] as const;
  const saved = tables.map(([sw]) => ({ ...sw }));
  for (const [sw, gpu] of tables) Object.assign(sw, gpu);
  try {
    await withForcedTiles({ conv3: CONV_TILES.gpu[3], wgrad3: WGRAD_TILES.gpu[3] }, fn);
  } finally {
    tables.forEach(([sw], i) => Object.assign(sw, saved[i]));
  }
}

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

Deno.test(
  "conv3d k3 x [1,16,128,128,128] w [16,16,3,3,3]: 128 MiB tensors, forward, input and weight " +
    "gradients at sampled points",
  async () => {
    await initGpu();
    const [c, s] = [16, 128];
    const v = s ** 3;
    // Cheap deterministic values in [-1, 1): a 32-bit LCG, since the volume has 33.5M values.
    const fill = (n: number, seed: number) => {
      const a = new Float32Array(n);
      let state = seed >>> 0;
      for (let i = 0; i < n; i++) {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        a[i] = state / 2 ** 31 - 1;
      }
      return a;
    };
    const xh = fill(c * v, 1);
    const wh = fill(c * c * 27, 2);
    const bh = fill(c, 3);
    const at = (ch: number, z: number, y: number, x: number) =>
      z < 0 || y < 0 || x < 0 || z >= s || y >= s || x >= s
        ? 0
        : xh[((ch * s + z) * s + y) * s + x];
    // The adapter's built-in blocks, forced: the far-corner sample below must land in their
    // last tile of every grid dimension whatever block is cached on this machine.
    const builtin = { conv3: builtinTiles("conv3"), wgrad3: builtinTiles("wgrad3") };
    const { y, gx, gw } = await withForcedTiles(builtin, () =>
      scope(() => {
        const x = fromArray([1, c, s, s, s], xh);
        const w = fromArray([c, c, 3, 3, 3], wh);
        const y = ops.conv3d(x, w, fromArray([c], bh));
        // x doubles as gy, so the gradients are checkable from the same host copy.
        return { y, gx: ops.conv3dBackwardInput(x, w), gw: ops.conv3dBackwardWeight(x, x, 3) };
      }));
    const [yd, gxd, gwd] = await readTensors([y, gx, gw]);
    for (const t of [y, gx, gw]) t.dispose();
    const rng = new Random(5);
    let worst = 0;
    for (let k = 0; k < 64; k++) {
      // The first sample is the far corner: the last tile of every grid dimension.
      const [o, z, yy, xx] = k === 0
        ? [c - 1, s - 1, s - 1, s - 1]
        : [rng.int(0, c), rng.int(0, s), rng.int(0, s), rng.int(0, s)];
      let fwd = bh[o];
      let bwd = 0;
      for (let i = 0; i < c; i++) {
        for (let t = 0; t < 27; t++) {
          const [dz, dy, dx] = [Math.floor(t / 9) - 1, (Math.floor(t / 3) % 3) - 1, (t % 3) - 1];
          fwd += wh[(o * c + i) * 27 + t] * at(i, z + dz, yy + dy, xx + dx);
          // Input gradient at channel o: Σ_i Σ_t w[i, o, t] · gy[i, v - t + 1].
          bwd += wh[(i * c + o) * 27 + t] * at(i, z - dz, yy - dy, xx - dx);
        }
      }
      const idx = ((o * s + z) * s + yy) * s + xx;
      worst = Math.max(worst, Math.abs(yd[idx] - fwd), Math.abs(gxd[idx] - bwd));
    }
    if (!(worst < 1e-3)) throw new Error(`sampled forward / input-gradient error ${worst}`);
    for (const [o, i, t] of [[0, 0, 13], [15, 3, 0], [7, 11, 26], [2, 9, 5]]) {
      const [dz, dy, dx] = [Math.floor(t / 9) - 1, (Math.floor(t / 3) % 3) - 1, (t % 3) - 1];
      // A sum of 2M products: compare against its mass Σ|term|, the scale of f32 rounding.
      let g = 0;
      let mass = 0;
      for (let z = 0; z < s; z++) {
        for (let yy = 0; yy < s; yy++) {
          for (let xx = 0; xx < s; xx++) {
            const p = at(o, z, yy, xx) * at(i, z + dz, yy + dy, xx + dx);
            g += p;
            mass += Math.abs(p);
          }
        }
      }
      const got = gwd[(o * c + i) * 27 + t];
      if (!(Math.abs(got - g) <= 1e-6 * mass)) {
        throw new Error(`weight gradient [${o},${i},${t}] = ${got}, want ${g}`);
      }
    }
  },
);
