import assert from "node:assert/strict";
import * as F from "../../src/autograd/functional.ts";
import { fromArray, initGpu, readTensors, scope, type Tensor } from "../../src/gpu/mod.ts";
import type { SegmentationLossOptions, TverskyOptions } from "../../src/ops/losses.ts";
import { Tape } from "../../src/autograd/mod.ts";
import { type InputSpec, opTest } from "./check_op.ts";

// ---- float64 references ------------------------------------------------------------------

/** Multi-class Tversky loss of probs [N,C,V] against labels [N,V], as documented. */
function tverskyRef(
  p: Float64Array,
  labels: Float64Array,
  [n, c, ...spatial]: number[],
  o: TverskyOptions = {},
): number {
  const { alpha = 0.3, beta = 0.7, smooth = 1e-5, includeBackground = true, batch = false } = o;
  const v = spatial.reduce((a, b) => a * b, 1);
  const w = o.classWeights ? [...o.classWeights] : new Array(c).fill(1);
  if (!includeBackground) w[0] = 0;
  const wsum = w.reduce((a, b) => a + b, 0);
  const stats = (samples: number[], k: number) => {
    let tp = 0, fp = 0, fn = 0;
    for (const s of samples) {
      for (let i = 0; i < v; i++) {
        const g = labels[s * v + i] === k ? 1 : 0;
        const q = p[(s * c + k) * v + i];
        tp += q * g;
        fp += q * (1 - g);
        fn += (1 - q) * g;
      }
    }
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth);
  };
  const all = Array.from({ length: n }, (_, i) => i);
  const groups = batch ? [all] : all.map((i) => [i]);
  let loss = 0;
  for (const g of groups) {
    for (let k = 0; k < c; k++) loss += (w[k] * (1 - stats(g, k))) / wsum;
  }
  return loss / groups.length;
}

/** Cross-entropy of logits [N,C,V] against labels [N,V], weighted mean as in PyTorch. */
function crossEntropyRef(
  x: Float64Array,
  labels: Float64Array,
  [n, c, ...spatial]: number[],
  weights?: number[],
): number {
  const v = spatial.reduce((a, b) => a * b, 1);
  let num = 0, den = 0;
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < v; i++) {
      const at = (k: number) => x[(s * c + k) * v + i];
      let m = -Infinity;
      for (let k = 0; k < c; k++) m = Math.max(m, at(k));
      let e = 0;
      for (let k = 0; k < c; k++) e += Math.exp(at(k) - m);
      const y = labels[s * v + i];
      const w = weights?.[y] ?? 1;
      num += w * (m + Math.log(e) - at(y));
      den += w;
    }
  }
  return num / den;
}

// ---- cases -------------------------------------------------------------------------------

const shape = [2, 3, 5, 7, 9];
const labelSpec = (s: number[]): InputSpec => ({
  shape: [s[0], ...s.slice(2)],
  init: "labels",
  classes: s[1],
  dtype: "u32",
  grad: false,
});
const probsSpec = (s: number[]): InputSpec => ({
  shape: s,
  init: (r) => r.uniform(0.02, 0.98),
});

const tverskyCases: [string, TverskyOptions][] = [
  ["defaults (α 0.3, β 0.7, with background)", {}],
  ["α 0.6 β 0.4, no background, weights [5,1,2.5]", {
    alpha: 0.6,
    beta: 0.4,
    includeBackground: false,
    classWeights: [5, 1, 2.5],
  }],
  ["batch, α 0.2 β 0.8, weights [0.5,1,2], smooth 1", {
    batch: true,
    alpha: 0.2,
    beta: 0.8,
    classWeights: [0.5, 1, 2],
    smooth: 1,
  }],
  ["batch, no background", { batch: true, includeBackground: false }],
];
for (const [label, opts] of tverskyCases) {
  opTest({
    name: `tversky ${label} probs [2,3,5,7,9] labels u32 [2,5,7,9]`,
    inputs: [probsSpec(shape), labelSpec(shape)],
    run: ([p, l]) => F.tversky(p, l, opts),
    reference: ([p, l]) => Float64Array.of(tverskyRef(p, l, shape, opts)),
  });
}

opTest({
  name: "dice defaults probs [2,3,5,7,9]",
  inputs: [probsSpec(shape), labelSpec(shape)],
  run: ([p, l]) => F.dice(p, l),
  reference: ([p, l]) => Float64Array.of(tverskyRef(p, l, shape, { alpha: 0.5, beta: 0.5 })),
});
opTest({
  name: "dice batch, no background, weights [1,2,0.5] probs [2,3,5,7,9]",
  inputs: [probsSpec(shape), labelSpec(shape)],
  run: ([p, l]) =>
    F.dice(p, l, { batch: true, includeBackground: false, classWeights: [1, 2, 0.5] }),
  reference: ([p, l]) =>
    Float64Array.of(tverskyRef(p, l, shape, {
      alpha: 0.5,
      beta: 0.5,
      batch: true,
      includeBackground: false,
      classWeights: [1, 2, 0.5],
    })),
});

const big = [1, 2, 40, 40, 40];
opTest({
  name: "tversky multi-pass statistics probs [1,2,40,40,40] (63 tiles per class)",
  inputs: [probsSpec(big), labelSpec(big)],
  run: ([p, l]) => F.tversky(p, l, { alpha: 0.4, beta: 0.6 }),
  reference: ([p, l]) => Float64Array.of(tverskyRef(p, l, big, { alpha: 0.4, beta: 0.6 })),
  fdSamples: 24,
});

opTest({
  name: "crossEntropy logits [2,3,5,7,9]",
  inputs: [{ shape }, labelSpec(shape)],
  run: ([x, l]) => F.crossEntropy(x, l),
  reference: ([x, l]) => Float64Array.of(crossEntropyRef(x, l, shape)),
});
const shape5 = [2, 5, 3, 4, 5];
opTest({
  name: "crossEntropy weights [0.3,1,2,0.7,1.5] logits [2,5,3,4,5] scaled ×4",
  inputs: [{ shape: shape5, init: (r) => 4 * r.normal() }, labelSpec(shape5)],
  run: ([x, l]) => F.crossEntropy(x, l, { classWeights: [0.3, 1, 2, 0.7, 1.5] }),
  reference: ([x, l]) => Float64Array.of(crossEntropyRef(x, l, shape5, [0.3, 1, 2, 0.7, 1.5])),
});
const ceBig = [2, 3, 24, 24, 24];
opTest({
  name: "crossEntropy multi-pass logits [2,3,24,24,24] (27 tiles, then reduceRows)",
  inputs: [{ shape: ceBig }, labelSpec(ceBig)],
  run: ([x, l]) => F.crossEntropy(x, l, { classWeights: [1, 3, 0.5] }),
  reference: ([x, l]) => Float64Array.of(crossEntropyRef(x, l, ceBig, [1, 3, 0.5])),
  fdSamples: 24,
});

// The trainer's combined loss: built from the differentiable pieces with axpby on [1] tensors.
opTest({
  name: "combined 0.7·tversky(probs) + 1.3·crossEntropy(logits) through axpby [2,3,5,7,9]",
  inputs: [probsSpec(shape), { shape }, labelSpec(shape)],
  run: ([p, x, l]) =>
    F.axpby(0.7, F.tversky(p, l, { includeBackground: false }), 1.3, F.crossEntropy(x, l)),
  reference: ([p, x, l]) =>
    Float64Array.of(
      0.7 * tverskyRef(p, l, shape, { includeBackground: false }) +
        1.3 * crossEntropyRef(x, l, shape),
    ),
});
/** Softmax over channels of x [N,C,V] in float64 (reference only). */
function softmaxRef(x: Float64Array, [n, c, ...spatial]: number[]): Float64Array {
  const v = spatial.reduce((a, b) => a * b, 1);
  const y = new Float64Array(x.length);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < v; i++) {
      let m = -Infinity;
      for (let k = 0; k < c; k++) m = Math.max(m, x[(s * c + k) * v + i]);
      let e = 0;
      for (let k = 0; k < c; k++) e += Math.exp(x[(s * c + k) * v + i] - m);
      for (let k = 0; k < c; k++) y[(s * c + k) * v + i] = Math.exp(x[(s * c + k) * v + i] - m) / e;
    }
  }
  return y;
}
opTest({
  name: "end to end: tversky(softmaxChannels(logits)) + crossEntropy(logits) [2,3,5,7,9]",
  inputs: [{ shape, init: (r) => 2 * r.normal() }, labelSpec(shape)],
  run: ([x, l]) =>
    F.axpby(1, F.tversky(F.softmaxChannels(x), l, { batch: true }), 1, F.crossEntropy(x, l)),
  reference: ([x, l]) =>
    Float64Array.of(
      tverskyRef(softmaxRef(x, shape), l, shape, { batch: true }) + crossEntropyRef(x, l, shape),
    ),
});
opTest({
  name: "combined dice(batch) + 0.25·mean(probs) via add/scale [2,3,5,7,9]",
  inputs: [probsSpec(shape), labelSpec(shape)],
  run: ([p, l]) => F.add(F.dice(p, l, { batch: true }), F.scale(F.mean(p), 0.25)),
  reference: ([p, l]) =>
    Float64Array.of(
      tverskyRef(p, l, shape, { alpha: 0.5, beta: 0.5, batch: true }) +
        0.25 * p.reduce((a, b) => a + b, 0) / p.length,
    ),
});

// ---- limits and validation ----------------------------------------------------------------

/** One-hot probabilities [N,C,V] of `labels` shifted by `shift` classes. */
function oneHot(labels: Uint32Array, c: number, v: number, shift: number): Float32Array {
  const n = labels.length / v;
  const p = new Float32Array(n * c * v);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < v; i++) p[(s * c + (labels[s * v + i] + shift) % c) * v + i] = 1;
  }
  return p;
}

Deno.test({
  name: "tversky and dice: perfect prediction ≈ 0, all-wrong prediction ≈ 1 [2,3,5,7,9]",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initGpu();
    const v = 5 * 7 * 9;
    // Every class occurs in every sample (an absent class has TI = 1 either way).
    const labels = Uint32Array.from({ length: 2 * v }, (_, i) => (i * 7 + (i >> 3)) % 3);
    const out = scope(() => {
      const l = fromArray([2, 5, 7, 9], labels, "u32");
      const perfect = fromArray(shape, oneHot(labels, 3, v, 0));
      const wrong = fromArray(shape, oneHot(labels, 3, v, 1));
      const losses: Tensor[] = [];
      for (const p of [perfect, wrong]) {
        losses.push(F.tversky(p, l), F.dice(p, l, { includeBackground: false, batch: true }));
        losses.push(F.tversky(p, l, { alpha: 0.9, beta: 0.1, classWeights: [1, 2, 3] }));
      }
      return losses;
    });
    const host = await readTensors(out);
    out.forEach((t) => t.dispose());
    host.slice(0, 3).forEach((h) => assert.ok(Math.abs(h[0]) < 1e-5, `perfect: ${h[0]}`));
    host.slice(3).forEach((h) => assert.ok(Math.abs(h[0] - 1) < 1e-5, `all wrong: ${h[0]}`));
  },
});

Deno.test({
  name: "losses validate shapes and options with messages that print them",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initGpu();
    scope(() => {
      const p = fromArray(shape, new Float32Array(2 * 3 * 315).fill(0.5));
      const l = fromArray([2, 5, 7, 9], new Uint32Array(2 * 315), "u32");
      const lBad = fromArray([2, 5, 7, 8], new Uint32Array(2 * 280), "u32");
      const lF32 = fromArray([2, 5, 7, 9], new Float32Array(2 * 315));
      const p1 = fromArray([2, 1, 5, 7, 9], new Float32Array(2 * 315));
      assert.throws(
        () => F.tversky(p, l, { classWeights: [1, 2] }),
        /tversky: classWeights has 2 values \[1, 2\] but there are 3 classes/,
      );
      assert.throws(
        () => F.dice(p, lBad),
        /labels \[2, 5, 7, 8\] do not match probs \[2, 3, 5, 7, 9\]; expected \[2, 5, 7, 9\]/,
      );
      assert.throws(() => F.tversky(p, l, { alpha: -0.1 }), /alpha must be finite and ≥ 0/);
      assert.throws(() => F.tversky(p, l, { beta: NaN }), /beta must be finite and ≥ 0, got NaN/);
      assert.throws(() => F.tversky(p, lF32), /labels must be u32 class indices, got f32/);
      assert.throws(
        () => F.dice(p1, l, { includeBackground: false }),
        /no class left to average \(C = 1, includeBackground = false/,
      );
      assert.throws(
        () => F.crossEntropy(p, l, { classWeights: [1, 2, 3, 4] }),
        /crossEntropy: classWeights has 4 values/,
      );
      assert.throws(() => F.crossEntropy(p, l, { classWeights: [1, -2, 3] }), /≥ 0/);
      assert.throws(
        () => F.crossEntropy(l, l),
        /logits \[N,C,D,H,W\] must have 5 dimensions, got \[2, 5, 7, 9\]/,
      );
      return [];
    });
  },
});

// ---- the trainer's loss as one op (segmentationLoss): one-pass gradient w.r.t. logits -------

const segmentationCases: [string, number[], SegmentationLossOptions][] = [
  ["tversky + CE, defaults", shape, { tverskyWeight: 1, diceWeight: 0, ceWeight: 1 }],
  ["0.7·tversky + 0.4·dice + 1.3·CE, no background, weights, batch", [2, 4, 3, 5, 7], {
    tverskyWeight: 0.7,
    diceWeight: 0.4,
    ceWeight: 1.3,
    region: {
      alpha: 0.2,
      beta: 0.8,
      includeBackground: false,
      classWeights: [0.5, 1, 2, 0.7],
      batch: true,
      smooth: 0.1,
    },
  }],
  ["dice only", [1, 2, 4, 3, 5], { tverskyWeight: 0, diceWeight: 1, ceWeight: 0 }],
  ["2·CE only, class weights", [2, 3, 3, 3, 3], {
    tverskyWeight: 0,
    diceWeight: 0,
    ceWeight: 2,
    region: { classWeights: [1, 3, 0.5] },
  }],
  ["tversky + dice + CE, 17 classes (more than a thread holds)", [2, 17, 2, 3, 3], {
    tverskyWeight: 1,
    diceWeight: 0.5,
    ceWeight: 1,
  }],
  ["1.5·tversky only, one sample, 5 classes", [1, 5, 3, 4, 5], {
    tverskyWeight: 1.5,
    diceWeight: 0,
    ceWeight: 0,
  }],
];
for (const [label, s, opts] of segmentationCases) {
  opTest({
    name: `segmentationLoss ${label} logits [${s}]`,
    inputs: [{ shape: s, init: (r) => 2 * r.normal() }, labelSpec(s)],
    run: ([x, l]) => F.segmentationLoss(x, l, opts),
    reference: ([x, l]) => {
      const region = opts.region ?? {};
      const p = softmaxRef(x, s);
      return Float64Array.of(
        opts.tverskyWeight * tverskyRef(p, l, s, region) +
          opts.diceWeight * tverskyRef(p, l, s, { ...region, alpha: 0.5, beta: 0.5 }) +
          opts.ceWeight * crossEntropyRef(x, l, s, region.classWeights as number[] | undefined),
      );
    },
  });
}

Deno.test({
  name: "segmentationLoss: its logits gradient equals the composed losses' (tversky + dice + CE)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initGpu();
    const s = [2, 3, 6, 5, 7];
    const v = s[2] * s[3] * s[4];
    const x = Float32Array.from(
      { length: s.reduce((a, b) => a * b, 1) },
      (_, i) => Math.sin(i * 1.7) * 3,
    );
    const l = Uint32Array.from({ length: s[0] * v }, (_, i) => (i * 7 + (i >> 3)) % 3);
    const region = { alpha: 0.3, beta: 0.7, includeBackground: false, classWeights: [1, 2, 3] };
    const grads = async (fused: boolean) => {
      const result = scope(() => {
        const xt = fromArray(s, x);
        const lt = fromArray([s[0], ...s.slice(2)], l, "u32");
        const tape = new Tape().watch(xt);
        const loss = tape.record(() =>
          fused
            ? F.segmentationLoss(xt, lt, {
              tverskyWeight: 0.6,
              diceWeight: 0.3,
              ceWeight: 1.1,
              region,
            })
            : F.axpby(
              1,
              F.axpby(
                0.6,
                F.tversky(F.softmaxChannels(xt), lt, region),
                0.3,
                F.dice(F.softmaxChannels(xt), lt, region),
              ),
              1.1,
              F.crossEntropy(xt, lt, { classWeights: region.classWeights }),
            )
        );
        const g = tape.backward(loss).get(xt)!;
        tape.dispose();
        return [loss, g];
      });
      const host = await readTensors(result);
      for (const t of result) t.dispose();
      return host;
    };
    const [[lf, gf], [lc, gc]] = [await grads(true), await grads(false)];
    assert.ok(Math.abs(lf[0] - lc[0]) <= 1e-6 * Math.abs(lc[0]), `loss ${lf[0]} vs ${lc[0]}`);
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < gc.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(gf[i] - gc[i]));
      maxRef = Math.max(maxRef, Math.abs(gc[i]));
    }
    assert.ok(maxDiff <= 1e-5 * maxRef, `gradient differs by ${maxDiff} (max ${maxRef})`);
  },
});

Deno.test({
  name: "segmentationLoss: every weight 0 or a negative weight is refused by name",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initGpu();
    scope(() => {
      const x = fromArray([1, 2, 2, 2, 2], new Float32Array(16));
      const l = fromArray([1, 2, 2, 2], new Uint32Array(8), "u32");
      assert.throws(
        () => F.segmentationLoss(x, l, { tverskyWeight: 0, diceWeight: 0, ceWeight: 0 }),
        /every loss weight is 0/,
      );
      assert.throws(
        () => F.segmentationLoss(x, l, { tverskyWeight: -1, diceWeight: 0, ceWeight: 1 }),
        /loss weights must be finite and ≥ 0/,
      );
    });
  },
});
