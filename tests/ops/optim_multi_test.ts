// The multi-tensor optimizer steps and gradient norm against the per-tensor ones, bit for bit:
// adamStepMulti / sgdStepMulti against adamStep / sgdStep on every tensor, gradNormControl and
// sumSquaresAll against the per-tensor first pass they replace, on lists of odd sizes larger
// than one dispatch holds, under every kernel variant this device offers.

import assert from "node:assert/strict";
import {
  fromArray,
  gpu,
  initGpu,
  readTensors,
  recorder,
  Tensor,
  zeros,
} from "../../src/gpu/mod.ts";
import {
  ADAM_MULTI_SETS,
  type AdamOptions,
  adamStep,
  adamStepMulti,
  gradNormControl,
  gradNormKernel,
  SGD_MULTI_SETS,
  type SgdOptions,
  sgdStep,
  sgdStepMulti,
} from "../../src/ops/optim.ts";
import {
  partialCount,
  REDUCE_TILE,
  reduceRows,
  reduceRowsKernel,
  SUM_SQUARES_SETS,
  sumSquaresAll,
  sumSquaresPartials,
} from "../../src/ops/reduce.ts";
import { planGroups } from "../../src/ops/multi_tensor.ts";
import { Random } from "../../src/base/random.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });

/** Odd sizes, more tensors than the largest variant binds (10 sets), and an empty one. */
const SIZES = [1, 3, 17, 1000, 5, 4096, 2, 257, 8, 1, 33, 70000, 7, 0, 9, 11, 1025, 216, 24, 3];

function draw(n: number, seed: number, std = 1): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => std * r.normal());
}

function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

function assertSameBits(got: Float32Array[], want: Float32Array[], what: string): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    const a = bits(g), b = bits(want[i]);
    const at = a.findIndex((v, j) => v !== b[j]);
    assert.ok(
      a.length === b.length && at < 0,
      `${what}: tensor ${i} of ${g.length} differs at ${at}: ${g[at]} vs ${want[i][at]}`,
    );
  });
}

/** Sets per dispatch to try: the default plan, then every variant that fits this device. */
function perDispatchChoices(all: readonly number[], perSet: number): (number | undefined)[] {
  const limit = gpu().device.limits.maxStorageBuffersPerShaderStage;
  return [undefined, ...all.filter((s) => s * perSet + 1 <= limit)];
}

/** Controls for the steps 1…5: none, clipping by 0.37, not finite (skip), none, scale 0.9. */
function controls(): (Tensor | undefined)[] {
  return [
    undefined,
    fromArray([3], [0.37, 1, 31.5]),
    fromArray([3], [1, 0, NaN]),
    undefined,
    fromArray([3], [0.9, 1, 13.25]),
  ];
}

/** One tensor per size for each of `count` roles, drawn from `seed`. */
function tensors(count: number, seed: number, abs = false): Tensor[][] {
  return Array.from({ length: count }, (_, r) =>
    SIZES.map((n, i) => {
      const d = draw(n, seed + 100 * r + i, 0.5);
      return fromArray([n], abs ? d.map(Math.abs) : d);
    }));
}

async function checkAdam(opts: Omit<AdamOptions, "step">): Promise<void> {
  await initGpu();
  const ctl = controls();
  for (const perDispatch of perDispatchChoices(ADAM_MULTI_SETS, 4)) {
    // [param, m, v] twice (multi, per tensor) from the same values; a gradient per step.
    const [p, m] = tensors(2, 1);
    const [v] = tensors(1, 3, true);
    const [p2, m2] = tensors(2, 1);
    const [v2] = tensors(1, 3, true);
    const grads = Array.from({ length: ctl.length }, (_, t) => tensors(1, 1000 * (t + 1))[0]);
    ctl.forEach((c, t) => {
      const o = { ...opts, step: t + 1 };
      adamStepMulti(
        SIZES.map((_, i) => ({ param: p[i], grad: grads[t][i], m: m[i], v: v[i] })),
        o,
        c,
        { perDispatch },
      );
      SIZES.forEach((_, i) => adamStep(p2[i], grads[t][i], m2[i], v2[i], o, c));
    });
    const got = await readTensors([...p, ...m, ...v]);
    const want = await readTensors([...p2, ...m2, ...v2]);
    assertSameBits(got, want, `perDispatch ${perDispatch ?? "planned"}`);
    [p, m, v, p2, m2, v2, ...grads].flat().forEach((x) => x.dispose());
  }
  ctl.forEach((c) => c?.dispose());
}

async function checkSgd(opts: Omit<SgdOptions, "step">): Promise<void> {
  await initGpu();
  const ctl = controls();
  for (const perDispatch of perDispatchChoices(SGD_MULTI_SETS, 3)) {
    const [p, b] = tensors(2, 5);
    const [p2, b2] = tensors(2, 5);
    const grads = Array.from({ length: ctl.length }, (_, t) => tensors(1, 2000 * (t + 1))[0]);
    ctl.forEach((c, t) => {
      const o = { ...opts, step: t + 1 };
      sgdStepMulti(
        SIZES.map((_, i) => ({ param: p[i], grad: grads[t][i], momentumBuf: b[i] })),
        o,
        c,
        { perDispatch },
      );
      SIZES.forEach((_, i) => sgdStep(p2[i], grads[t][i], b2[i], o, c));
    });
    const got = await readTensors([...p, ...b]);
    const want = await readTensors([...p2, ...b2]);
    assertSameBits(got, want, `perDispatch ${perDispatch ?? "planned"}`);
    [p, b, p2, b2, ...grads].flat().forEach((x) => x.dispose());
  }
  ctl.forEach((c) => c?.dispose());
}

test("adamStepMulti = adamStep bit for bit: Adam, L2 0.01, clipping and a skipped step", () =>
  checkAdam({ lr: 1e-3, weightDecay: 0.01 }));
test("adamStepMulti = adamStep bit for bit: AdamW wd 0.1, betas (0.8, 0.95), eps 1e-6", () =>
  checkAdam({ lr: 1e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, decoupled: true }));
test("sgdStepMulti = sgdStep bit for bit: Nesterov 0.99, wd 3e-5 (step 1 copies the gradient)", () =>
  checkSgd({ lr: 0.01, momentum: 0.99, weightDecay: 3e-5 }));
test("sgdStepMulti = sgdStep bit for bit: heavy ball 0.9, dampening 0.1, wd 1e-3", () =>
  checkSgd({ lr: 0.05, momentum: 0.9, dampening: 0.1, nesterov: false, weightDecay: 1e-3 }));
test("sgdStepMulti = sgdStep bit for bit: momentum 0 leaves the buffers as they were", () =>
  checkSgd({ lr: 0.1, momentum: 0, nesterov: false }));

test("multi-tensor steps take fewer dispatches and reject shared or mismatched buffers", async () => {
  await initGpu();
  const [p, g, m, v] = tensors(4, 7);
  const sets = SIZES.map((_, i) => ({ param: p[i], grad: g[i], m: m[i], v: v[i] }));
  const largest = perDispatchChoices(ADAM_MULTI_SETS, 4).at(-1)!;
  const before = recorder().dispatchCount;
  adamStepMulti(sets, { lr: 1e-3, step: 1 }, undefined, { perDispatch: largest });
  const nonEmpty = SIZES.filter((n) => n > 0).length;
  assert.equal(recorder().dispatchCount - before, Math.ceil(nonEmpty / largest));
  const planned = recorder().dispatchCount;
  adamStepMulti(sets, { lr: 1e-3, step: 1 });
  assert.ok(recorder().dispatchCount - planned < nonEmpty, "the plan groups some tensors");

  assert.equal(SIZES[0], SIZES[9]);
  assert.throws(
    () => adamStepMulti([sets[0], { ...sets[9], m: sets[0].m }], { lr: 1, step: 1 }),
    /adamStepMulti: sets 0 and 1 share a buffer that one of them writes/,
  );
  assert.throws(
    () => adamStepMulti([{ ...sets[3], grad: g[5] }], { lr: 1, step: 1 }),
    /adamStepMulti \(set 0\): tensors must be f32 of equal size/,
  );
  assert.throws(
    () => adamStepMulti(sets, { lr: 1, step: 1 }, undefined, { perDispatch: 3 }),
    /sets per dispatch must be one of/,
  );
  // A gradient shared by two parameters is only read: allowed.
  adamStepMulti([sets[0], { ...sets[9], grad: g[0] }], { lr: 1, step: 1 });
  [p, g, m, v].flat().forEach((x) => x.dispose());
});

// ---- gradient norm ------------------------------------------------------------------------

/** The per-tensor first pass that sumSquaresAll replaced: one dispatch per tensor. */
function perTensorPartials(xs: readonly Tensor[]): Tensor {
  const total = xs.reduce((a, x) => a + partialCount(x.size), 0);
  const partials = new Tensor([Math.max(total, 1)]);
  let offset = 0;
  for (const x of xs) {
    if (x.size === 0) continue;
    const groups = partialCount(x.size);
    recorder().dispatch(
      reduceRowsKernel,
      { rows: 1, len: x.size, groups, inOffset: 0, outOffset: offset, scale: 1 },
      [x.buffer, partials.buffer],
      reduceRowsKernel.grid(groups * reduceRowsKernel.workgroupSize),
      { SQUARE: 1 },
    );
    offset += groups;
  }
  return partials;
}

/** The control as computed before: per-tensor partials, reduceRows, gradNormKernel. */
function perTensorControl(xs: readonly Tensor[], maxNorm: number): Tensor {
  const partials = perTensorPartials(xs);
  const ss = reduceRows(partials, 1);
  partials.dispose();
  const control = new Tensor([3]);
  const clip = Number.isFinite(maxNorm);
  recorder().dispatch(
    gradNormKernel,
    { maxNorm: clip ? maxNorm : 0, clip: clip ? 1 : 0 },
    [ss.buffer, control.buffer],
    [1, 1, 1],
  );
  ss.dispose();
  return control;
}

test("sumSquaresPartials = the per-tensor first pass bit for bit, under every variant", async () => {
  await initGpu();
  const [xs] = tensors(1, 11);
  const want = perTensorPartials(xs);
  const total = xs.reduce((a, x) => a + partialCount(x.size), 0);
  for (const sets of perDispatchChoices(SUM_SQUARES_SETS, 1)) {
    const got = sumSquaresPartials(xs, sets)!;
    assert.equal(got.size, total);
    const [g, w] = await readTensors([got, want]);
    assertSameBits([g], [w], `sets ${sets ?? "planned"}`);
    got.dispose();
  }
  const [all, ref] = await readTensors([sumSquaresAll(xs), reduceRows(want, 1)]);
  assertSameBits([all], [ref], "sumSquaresAll");
  assert.equal(sumSquaresPartials([zeros([0])]), undefined);
  want.dispose();
  xs.forEach((x) => x.dispose());
});

test("gradNormControl = the per-tensor control bit for bit: clipping, no clip, > 1024 partials, NaN", async () => {
  await initGpu();
  const [xs] = tensors(1, 21);
  // 1100 tiles of one tensor: the partials take a reduceRows pass before the fused last one.
  const big = fromArray([1100 * REDUCE_TILE + 5], draw(1100 * REDUCE_TILE + 5, 99, 0.01));
  const broken = draw(300, 98);
  broken[17] = NaN;
  const bad = fromArray([300], broken);
  const cases: [string, Tensor[], number][] = [
    ["clip", xs, 3],
    ["no clip", xs, Infinity],
    ["large", [...xs, big], 1],
    ["NaN", [...xs, bad], 1],
    ["empty list", [], 1],
  ];
  for (const [name, list, maxNorm] of cases) {
    const got = gradNormControl(list, maxNorm);
    const want = perTensorControl(list, maxNorm);
    const [g, w] = await readTensors([got, want]);
    assertSameBits([g], [w], name);
    if (name === "clip") assert.ok(g[0] < 1 && g[1] === 1, `clipping scale ${g}`);
    if (name === "NaN") assert.equal(g[1], 0);
    got.dispose();
    want.dispose();
  }
  [...xs, big, bad].forEach((x) => x.dispose());
});

Deno.test("planGroups: every item once, groups within their variant, fewest dispatches with one", () => {
  const sizes = SIZES.filter((n) => n > 0);
  const cost = { dispatch: 700, perSet: 0.12 };
  for (const variants of [[7], [1, 2, 4, 7], [1, 3, 7, 15, 31]]) {
    const groups = planGroups(sizes, variants, (n) => n, (n) => n, cost);
    assert.deepEqual(
      groups.flatMap((g) => g.items).sort((a, b) => a - b),
      [...sizes].sort((a, b) => a - b),
    );
    for (const g of groups) {
      assert.ok(variants.includes(g.sets) && g.items.length <= g.sets, JSON.stringify(g));
      assert.equal(g.sets, variants.find((v) => v >= g.items.length));
    }
    if (variants.length === 1) assert.equal(groups.length, Math.ceil(sizes.length / variants[0]));
  }
  // A software adapter's plan: the small tensors share dispatches, the 70000 goes alone.
  const plan = planGroups(sizes, [1, 2, 4, 7], (n) => n, (n) => n, cost);
  assert.deepEqual(plan.find((g) => g.items.includes(70000)), { sets: 1, items: [70000] });
  assert.ok(plan.length < sizes.length / 2, `${plan.length} dispatches`);
  assert.deepEqual(planGroups([], [7], (n: number) => n, (n) => n, cost), []);
});
