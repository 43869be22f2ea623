// Optimizer.apply (multi-tensor steps) against the per-tensor path it replaced, bit for bit:
// gradNormControl, then adamStep / sgdStep on each parameter with a gradient. (That
// gradNormControl has the bits of the per-tensor gradient norm is tests/ops/optim_multi_test.ts.)

import assert from "node:assert/strict";
import { fromArray, initGpu, readTensors, recorder, Tensor, zeros } from "../../src/gpu/mod.ts";
import { adamStep, gradNormControl, sgdStep } from "../../src/ops/optim.ts";
import { type NamedParam, Optimizer } from "../../src/train/optimizer.ts";
import { OPTIMIZER_SLOTS } from "../../src/train/checkpoint.ts";
import { defaultTrainConfig } from "../../src/train/config.ts";
import type { OptimizerConfig } from "../../src/train/config/types.ts";
import { Random } from "../../src/base/random.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });

/** Parameter sizes of odd lengths, more than one dispatch holds; an empty one. */
const SIZES = [216, 8, 1728, 1, 3, 17, 1000, 5, 4096, 2, 257, 8, 0, 33, 7000, 7, 9, 11, 1025, 3];
/** Parameters without a gradient in every step. */
const NO_GRAD = new Set([2, 7, 12]);
const STEPS = 4;

function draw(n: number, seed: number, std = 1): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => std * r.normal());
}

function bits(x: Float32Array): number[] {
  return [...new Uint32Array(x.buffer, x.byteOffset, x.length)];
}

function params(): NamedParam[] {
  return SIZES.map((n, i) => ({ name: `p${i}`, tensor: fromArray([n], draw(n, i + 1)) }));
}

/** The gradients of step t (1-based); step 3 has a NaN when `nan`. */
function grads(ps: NamedParam[], t: number, nan: boolean): Map<Tensor, Tensor> {
  const map = new Map<Tensor, Tensor>();
  ps.forEach((p, i) => {
    if (NO_GRAD.has(i)) return;
    const g = draw(SIZES[i], 1000 * t + i, 2);
    if (nan && t === 3 && i === 6) g[500] = NaN;
    map.set(p.tensor, fromArray([SIZES[i]], g));
  });
  return map;
}

async function check(overrides: Partial<OptimizerConfig>, nan = false): Promise<void> {
  await initGpu();
  const config = { ...defaultTrainConfig.optimizer, ...overrides };
  const ps = params();
  const ref = params();
  const opt = new Optimizer(ps, config);
  const slots = OPTIMIZER_SLOTS[config.kind].map(() => ref.map((p) => zeros(p.tensor.shape)));
  const initial = await readTensors(ps.map((p) => p.tensor));
  let dispatches = 0;
  let refDispatches = 0;
  for (let t = 1; t <= STEPS; t++) {
    const lr = config.lr * (1 - 0.2 * t);
    const g = grads(ps, t, nan);
    const d0 = recorder().dispatchCount;
    const control = opt.apply(g, lr);
    dispatches = recorder().dispatchCount - d0;

    const gr = grads(ref, t, nan);
    const d1 = recorder().dispatchCount;
    const present = ref.map((p) => gr.get(p.tensor));
    const refControl = gradNormControl(
      present.filter((x): x is Tensor => x !== undefined),
      config.gradClip > 0 ? config.gradClip : Infinity,
    );
    ref.forEach((p, i) => {
      const gi = present[i];
      if (!gi) return;
      if (config.kind === "sgd") {
        sgdStep(p.tensor, gi, slots[0][i], {
          lr,
          momentum: config.momentum,
          nesterov: config.nesterov,
          weightDecay: config.weightDecay,
          step: t,
        }, refControl);
      } else {
        adamStep(p.tensor, gi, slots[0][i], slots[1][i], {
          lr,
          beta1: config.beta1,
          beta2: config.beta2,
          eps: config.eps,
          weightDecay: config.weightDecay,
          decoupled: config.kind === "adamw",
          step: t,
        }, refControl);
      }
    });
    refDispatches = recorder().dispatchCount - d1;
    const [c, rc] = await readTensors([control, refControl]);
    assert.deepEqual(bits(c), bits(rc), `control of step ${t}`);
    if (nan && t === 3) assert.equal(c[1], 0, "a NaN gradient makes the step a no-op");
    [control, refControl, ...g.values(), ...gr.values()].forEach((x) => x.dispose());
  }
  assert.equal(opt.step, STEPS);
  const got = await readTensors([...ps.map((p) => p.tensor), ...[...opt.slots.values()].flat()]);
  const want = await readTensors([...ref.map((p) => p.tensor), ...slots.flat()]);
  got.forEach((x, i) => assert.deepEqual(bits(x), bits(want[i]), `tensor ${i}`));
  for (const i of NO_GRAD) {
    assert.deepEqual(bits(got[i]), bits(initial[i]), `p${i} has no gradient: unchanged`);
  }
  assert.ok(
    dispatches < refDispatches,
    `${dispatches} dispatches per apply, ${refDispatches} per tensor`,
  );
  opt.dispose();
  [...ps, ...ref].forEach((p) => p.tensor.dispose());
  slots.flat().forEach((x) => x.dispose());
}

test("Optimizer.apply = per-tensor Adam bit for bit: L2 0.01, clipping, no-gradient params", () =>
  check({ kind: "adam", lr: 1e-3, weightDecay: 0.01, gradClip: 5 }));
test("Optimizer.apply = per-tensor AdamW bit for bit: wd 0.1, no clipping, a NaN step skipped", () =>
  check({ kind: "adamw", lr: 1e-2, weightDecay: 0.1, gradClip: 0 }, true));
test("Optimizer.apply = per-tensor SGD bit for bit: Nesterov 0.99, wd 3e-5, clipping, NaN", () =>
  check({ kind: "sgd", lr: 0.01, momentum: 0.99, weightDecay: 3e-5, gradClip: 12 }, true));
