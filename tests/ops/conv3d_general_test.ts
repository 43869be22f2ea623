import { throws } from "node:assert";
import { conv3dGeneral, convTranspose3dGeneral } from "../../src/autograd/mod.ts";
import * as ops from "../../src/ops/mod.ts";
import { fromArray, initGpu, readTensors, scope, Tensor } from "../../src/gpu/mod.ts";
import { drawInputs, opTest, relError } from "./check_op.ts";
import { builtinTiles } from "../../src/ops/tuning.ts";
import { withForcedTiles } from "./forced_tiles.ts";
import {
  conv3dGeneralInputGradRef,
  conv3dGeneralRef,
  conv3dGeneralWeightGradRef,
  convOutSize,
  convTranspose3dGeneralGradRefs,
  convTranspose3dGeneralRef,
  type Zyx,
} from "./conv3d_ref.ts";

interface ConvCase {
  x: number[];
  co: number;
  k: Zyx;
  s: Zyx;
  bias: boolean;
  path: string;
}

const fmt = (v: readonly number[]) => v.join("×");

function convOut(c: ConvCase): number[] {
  return [c.x[0], c.co, ...[0, 1, 2].map((j) => convOutSize(c.x[2 + j], c.k[j], c.s[j]))];
}

/** Forward vs float64 and tape gradients of x, w, b vs finite differences (check_op.ts). */
function convCase(c: ConvCase): void {
  const w = [c.co, c.x[1], ...c.k];
  opTest({
    name: `conv3dGeneral k${fmt(c.k)} s${fmt(c.s)} ${c.bias ? "bias" : "no bias"} x [${c.x}] ` +
      `w [${w}] → [${convOut(c)}] (${c.path})`,
    inputs: [{ shape: c.x }, { shape: w }, ...(c.bias ? [{ shape: [c.co] }] : [])],
    run: ([x, wt, b]) => conv3dGeneral(x, wt, b ?? null, { stride: c.s }),
    reference: conv3dGeneralRef(c.x, c.co, c.k, c.s, c.bias),
  });
}

// nnU-Net's kernels and strides on odd shapes, odd channel counts, batch 2.
convCase({ x: [2, 3, 5, 7, 9], co: 5, k: [1, 3, 3], s: [1, 1, 1], bias: true, path: "1×3×3" });
convCase({ x: [1, 3, 5, 6, 7], co: 5, k: [3, 3, 3], s: [2, 2, 2], bias: true, path: "stride 2" });
convCase({
  x: [2, 3, 3, 7, 9],
  co: 6,
  k: [1, 3, 3],
  s: [1, 2, 2],
  bias: false,
  path: "anisotropic down-sampling",
});
convCase({ x: [1, 5, 5, 4, 6], co: 3, k: [3, 1, 1], s: [1, 1, 1], bias: true, path: "3×1×1" });
convCase({
  x: [2, 3, 5, 6, 7],
  co: 5,
  k: [1, 1, 1],
  s: [2, 2, 2],
  bias: true,
  path: "1×1×1 stride 2: odd voxels get no gradient",
});
convCase({
  x: [1, 6, 6, 5, 10],
  co: 7,
  k: [3, 3, 1],
  s: [2, 1, 2],
  bias: true,
  path: "mixed kernel and stride, 2 channel groups, 2 x blocks",
});
// The delegated paths through the autograd function: the tuned stride-1 kernels.
convCase({
  x: [2, 3, 4, 5, 6],
  co: 5,
  k: [1, 1, 1],
  s: [1, 1, 1],
  bias: true,
  path: "delegated to conv3d k1",
});

interface TransposeCase {
  x: number[];
  co: number;
  k: Zyx;
  bias: boolean;
  path: string;
}

function transposeCase(c: TransposeCase): void {
  const w = [c.x[1], c.co, ...c.k];
  const out = [c.x[0], c.co, c.x[2] * c.k[0], c.x[3] * c.k[1], c.x[4] * c.k[2]];
  opTest({
    name: `convTranspose3dGeneral k=s ${fmt(c.k)} ${c.bias ? "bias" : "no bias"} x [${c.x}] ` +
      `w [${w}] → [${out}] (${c.path})`,
    inputs: [{ shape: c.x }, { shape: w }, ...(c.bias ? [{ shape: [c.co] }] : [])],
    run: ([x, wt, b]) => convTranspose3dGeneral(x, wt, b ?? null),
    reference: convTranspose3dGeneralRef(c.x, c.co, c.k, c.bias),
  });
}

transposeCase({ x: [2, 3, 3, 4, 5], co: 5, k: [1, 2, 2], bias: true, path: "anisotropic" });
transposeCase({ x: [1, 6, 2, 3, 3], co: 7, k: [2, 1, 2], bias: false, path: "mixed" });
transposeCase({ x: [1, 5, 3, 2, 3], co: 3, k: [1, 1, 1], bias: true, path: "1×1×1" });
transposeCase({ x: [2, 3, 2, 3, 3], co: 5, k: [2, 2, 2], bias: true, path: "delegated" });

/** What one run of the op-level functions returns, on the host. */
interface Results {
  y: Float32Array;
  gx: Float32Array;
  gw: Float32Array;
  gb: Float32Array;
}

/** Forward, input, weight and bias gradients of ops.conv3dGeneral for one gy. */
async function convResults(
  c: ConvCase,
  data: Float64Array[],
  delegate: boolean,
): Promise<Results> {
  const [x, w, b, gy] = data;
  const wShape = [c.co, c.x[1], ...c.k];
  const opts = { stride: c.s, delegate };
  const ts = scope(() => {
    const xt = fromArray(c.x, x);
    const wt = fromArray(wShape, w);
    const gyt = fromArray(convOut(c), gy);
    return [
      ops.conv3dGeneral(xt, wt, fromArray([c.co], b), opts),
      ops.conv3dGeneralBackwardInput(gyt, wt, c.x, opts),
      ops.conv3dGeneralBackwardWeight(xt, gyt, c.k, opts),
      ops.biasGrad(gyt),
    ];
  });
  const [y, gx, gw, gb] = await readTensors(ts);
  for (const t of ts) t.dispose();
  return { y, gx, gw, gb };
}

/** x, w, b and gy for a case, seeded. */
function convData(c: ConvCase): Float64Array[] {
  const shapes = [c.x, [c.co, c.x[1], ...c.k], [c.co], convOut(c)];
  return drawInputs(shapes.map((shape) => ({ shape })), 99);
}

function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-5) {
  const err = relError(got, want);
  if (!(err <= tol)) throw new Error(`${what}: relative error ${err.toExponential(2)} > ${tol}`);
}

// Each backward kernel on its own against float64 (the tape checks above see only its sum of
// paths through finite differences at sampled points).
for (
  const c of [
    { x: [2, 3, 5, 6, 7], co: 5, k: [3, 3, 3], s: [2, 2, 2], bias: true, path: "stride 2" },
    { x: [2, 10, 3, 7, 9], co: 6, k: [1, 3, 3], s: [1, 2, 2], bias: true, path: "Ci 10" },
    { x: [1, 3, 4, 6, 8], co: 9, k: [3, 1, 3], s: [1, 1, 1], bias: true, path: "3×1×3" },
  ] satisfies ConvCase[]
) {
  Deno.test(
    `conv3dGeneral k${fmt(c.k)} s${fmt(c.s)} x [${c.x}] Co ${c.co}: forward, input, weight ` +
      `and bias gradients vs float64 (general kernels, ${c.path})`,
    async () => {
      await initGpu();
      const data = convData(c);
      const [x, w, , gy] = data;
      const got = await convResults(c, data, false);
      assertClose("forward", got.y, conv3dGeneralRef(c.x, c.co, c.k, c.s, true)(data));
      assertClose("input gradient", got.gx, conv3dGeneralInputGradRef(c.x, c.co, c.k, c.s, gy, w));
      assertClose(
        "weight gradient",
        got.gw,
        conv3dGeneralWeightGradRef(c.x, c.co, c.k, c.s, x, gy),
      );
      const v = gy.length / (c.x[0] * c.co);
      const gb = new Float64Array(c.co).map((_, o) => {
        let s = 0;
        for (let n = 0; n < c.x[0]; n++) {
          for (let j = 0; j < v; j++) s += gy[(n * c.co + o) * v + j];
        }
        return s;
      });
      assertClose("bias gradient", got.gb, gb);
    },
  );
}

Deno.test(
  "conv3dGeneral k3×3×3 s1 x [2,3,5,7,9] Co 5: the delegated tuned kernels and the general " +
    "kernels agree with each other and with float64",
  async () => {
    await initGpu();
    const c: ConvCase = {
      x: [2, 3, 5, 7, 9],
      co: 5,
      k: [3, 3, 3],
      s: [1, 1, 1],
      bias: true,
      path: "",
    };
    const data = convData(c);
    const [x, w, , gy] = data;
    const general = await convResults(c, data, false);
    // The adapter's built-in K = 3 blocks, forced: a block cached by `voxseg tune` on this
    // machine would otherwise decide which delegated kernel variant this compares.
    const builtin = { conv3: builtinTiles("conv3"), wgrad3: builtinTiles("wgrad3") };
    const tuned = await withForcedTiles(builtin, () => convResults(c, data, true));
    const want = {
      y: conv3dGeneralRef(c.x, c.co, c.k, c.s, true)(data),
      gx: conv3dGeneralInputGradRef(c.x, c.co, c.k, c.s, gy, w),
      gw: conv3dGeneralWeightGradRef(c.x, c.co, c.k, c.s, x, gy),
    };
    for (const key of ["y", "gx", "gw"] as const) {
      assertClose(`${key} general vs tuned`, general[key], tuned[key]);
      assertClose(`${key} general vs float64`, general[key], want[key]);
    }
  },
);

/** Forward, input and weight gradients of ops.convTranspose3dGeneral vs float64. */
async function checkTransposeOps(c: TransposeCase, delegate: boolean): Promise<Results> {
  const wShape = [c.x[1], c.co, ...c.k];
  const out = [c.x[0], c.co, c.x[2] * c.k[0], c.x[3] * c.k[1], c.x[4] * c.k[2]];
  const data = drawInputs([c.x, wShape, [c.co], out].map((shape) => ({ shape })), 7);
  const [x, w, b, gy] = data;
  const ts = scope(() => {
    const xt = fromArray(c.x, x);
    const wt = fromArray(wShape, w);
    const gyt = fromArray(out, gy);
    return [
      ops.convTranspose3dGeneral(xt, wt, fromArray([c.co], b), { delegate }),
      ops.convTranspose3dGeneralBackwardInput(gyt, wt, { delegate }),
      ops.convTranspose3dGeneralBackwardWeight(xt, gyt, c.k, { delegate }),
    ];
  });
  const [yh, gxh, gwh] = await readTensors(ts);
  for (const t of ts) t.dispose();
  const refs = convTranspose3dGeneralGradRefs(c.x, c.co, c.k, x, w, gy);
  assertClose("forward", yh, convTranspose3dGeneralRef(c.x, c.co, c.k, true)(data));
  assertClose("input gradient", gxh, refs.gx);
  assertClose("weight gradient", gwh, refs.gw);
  return { y: yh, gx: gxh, gw: gwh, gb: new Float32Array() };
}

Deno.test(
  "convTranspose3dGeneral k=s 1×2×2 x [2,5,3,3,5] Co 6: forward, input and weight gradients " +
    "vs float64 (general kernels)",
  async () => {
    await initGpu();
    await checkTransposeOps(
      { x: [2, 5, 3, 3, 5], co: 6, k: [1, 2, 2], bias: true, path: "" },
      false,
    );
  },
);

Deno.test(
  "convTranspose3dGeneral k=s 2×2×2 x [2,3,2,3,5] Co 5: the delegated tuned kernel and the " +
    "general kernels agree with each other and with float64",
  async () => {
    await initGpu();
    const c: TransposeCase = { x: [2, 3, 2, 3, 5], co: 5, k: [2, 2, 2], bias: true, path: "" };
    // Nothing to force: the delegated transposed kernels run K = 1 blocks, which are never
    // tuned or cached (tuning_test.ts checks that).
    const general = await checkTransposeOps(c, false);
    const tuned = await checkTransposeOps(c, true);
    for (const key of ["y", "gx", "gw"] as const) {
      assertClose(`${key} general vs tuned`, general[key], tuned[key]);
    }
  },
);

Deno.test("conv3dGeneral, convTranspose3dGeneral: bad shapes throw, printing them", async () => {
  await initGpu();
  scope(() => {
    const x = new Tensor([1, 3, 4, 4, 4]);
    throws(
      () => conv3dGeneral(x, new Tensor([5, 4, 1, 3, 3]), null),
      /w has Ci=4 but x has C=3, x \[1,3,4,4,4\] w \[5,4,1,3,3\]/,
    );
    throws(
      () => conv3dGeneral(x, new Tensor([5, 3, 2, 3, 3]), null),
      /1 or 3 per axis.*\[5,3,2,3,3\]/,
    );
    throws(
      () => conv3dGeneral(x, new Tensor([5, 3, 1, 3, 3]), null, { stride: [1, 3, 2] }),
      /stride must be 1 or 2 per axis.*\[1,3,2\]/,
    );
    throws(
      () => conv3dGeneral(x, new Tensor([5, 3, 1, 3, 3]), new Tensor([4])),
      /bias must be \[5\]/,
    );
    throws(
      () =>
        ops.conv3dGeneralBackwardInput(
          new Tensor([1, 5, 4, 4, 4]),
          new Tensor([5, 3, 1, 3, 3]),
          x.shape,
          { stride: 2 },
        ),
      /gy must be \[1,5,2,2,2\].*got \[1,5,4,4,4\]/,
    );
    throws(
      () => convTranspose3dGeneral(x, new Tensor([3, 5, 1, 3, 3]), null),
      /1 or 2 per axis.*\[3,5,1,3,3\]/,
    );
    throws(
      () => ops.convTranspose3dGeneral(x, new Tensor([3, 5, 1, 2, 2]), null, { stride: 2 }),
      /stride \[2,2,2\] must equal the kernel/,
    );
    throws(
      () => convTranspose3dGeneral(x, new Tensor([4, 5, 1, 2, 2]), null),
      /w has Ci=4 but x has C=3/,
    );
  });
});
