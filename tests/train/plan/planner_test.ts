import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { Random } from "../../../src/base/random.ts";
import {
  detectIntensityConvention,
  type ForegroundStats,
  foregroundStats,
  inferModality,
  type IntensityProfile,
} from "../../../src/data/fingerprint.ts";
import type { Shape3 } from "../../../src/data/volume.ts";
import { FG, fingerprint, fpCase, HU_IMAGE } from "./fingerprint_fixture.ts";
import { resolveConfig } from "../../../src/train/config/resolve.ts";
import { sizeForBudget, sizeForBudgetAsync } from "../../../src/train/plan/budget.ts";
import { huMapByQuantiles, poolForeground } from "../../../src/train/plan/normalisation.ts";
import { planNormalization } from "../../../src/train/plan/run_plan.ts";
import {
  budgetCandidates,
  formatPlanTable,
  plan,
  planOverrides,
} from "../../../src/train/plan/planner.ts";
import {
  estimateTrainingMemory,
  planSpacing,
  poolingTopology,
  unet3dDepth,
  unet3dLevels,
} from "../../../src/train/plan/topology.ts";

// ---------------------------------------------------------------------------------------------
// Hand-made fingerprints (more in ./fingerprint_fixture.ts)

const BYTE_IMAGE: IntensityProfile = {
  ...HU_IMAGE,
  min: 0,
  max: 255,
  mean: 90,
  std: 70,
  airFraction: 0,
  p0_5: 0,
  p50: 60,
  p99_5: 250,
};
/** A brain MRI stored as integers 8..131: no air in HU anywhere. */
const MRI_IMAGE: IntensityProfile = {
  ...BYTE_IMAGE,
  min: 8,
  max: 131,
  mean: 40,
  std: 30,
  p0_5: 8,
  p50: 30,
  p99_5: 125,
};
const BIG_GPU = {
  gpuMemoryBytes: 64 * 2 ** 30,
  maxStorageBufferBindingSize: 2 ** 31,
  maxBufferSize: 2 ** 31,
};

// ---------------------------------------------------------------------------------------------
// Spacing

Deno.test("planSpacing: isotropic data take the per-axis median", () => {
  const s = planSpacing([[1, 1, 1], [1.2, 0.8, 0.8], [0.9, 1, 1.1]]);
  deepStrictEqual(s.spacingMm, [1, 1, 1]);
  ok(s.reason.includes("isotropic"), s.reason);
});

Deno.test("planSpacing: an anisotropic axis takes its 10th percentile (nnU-Net)", () => {
  const z = [5, 5, 5, 5, 3, 2.5, 5, 5, 5, 5];
  const s = planSpacing(z.map((v): Shape3 => [v, 0.7, 0.7]));
  // Sorted z: 2.5, 3, 5…; position 0.1 × 9 = 0.9 → 2.5 + 0.9 × 0.5 = 2.95.
  strictEqual(s.spacingMm[0], 2.95);
  deepStrictEqual(s.spacingMm.slice(1), [0.7, 0.7]);
  ok(s.reason.includes("anisotropic"), s.reason);
  // The 10th percentile never goes finer than the other axes.
  const fine = planSpacing([0.2, 0.2, 5, 5, 5, 5, 5, 5, 5, 5].map((v): Shape3 => [v, 0.7, 0.7]));
  strictEqual(fine.spacingMm[0], 0.7);
});

// ---------------------------------------------------------------------------------------------
// Topology

const TOPO = { baseChannels: 32, maxChannels: 320, maxLevels: 8 };

Deno.test("poolingTopology [5,0.7,0.7] mm: early levels pool y,x only with 1×3×3 kernels", () => {
  const t = poolingTopology([5, 0.7, 0.7], [40, 192, 160], TOPO);
  deepStrictEqual(t.levels.map((l) => l.stride), [
    [1, 1, 1],
    [1, 2, 2],
    [1, 2, 2],
    [2, 2, 2],
    [2, 2, 2],
    [2, 2, 2],
  ]);
  deepStrictEqual(t.levels.map((l) => l.kernel), [
    [1, 3, 3],
    [1, 3, 3],
    [3, 3, 3], // z at 5 mm is within 2× of y,x at 2.8 mm
    [3, 3, 3],
    [3, 3, 3],
    [3, 3, 3],
  ]);
  deepStrictEqual(t.levels.map((l) => l.channels), [32, 64, 128, 256, 320, 320]);
  deepStrictEqual(t.divisibleBy, [8, 32, 32]);
  deepStrictEqual(t.levels[5].featureShape, [5, 6, 5]);
  deepStrictEqual(t.patchSize, [40, 192, 160]);
});

Deno.test("poolingTopology pads the patch up to the product of the strides", () => {
  const t = poolingTopology([5, 0.7, 0.7], [41, 190, 160], TOPO);
  deepStrictEqual(t.divisibleBy, [8, 32, 32]);
  deepStrictEqual(t.patchSize, [48, 192, 160]);
  for (const l of t.levels) ok(l.featureShape.every((e) => Number.isInteger(e) && e >= 4));
});

Deno.test("poolingTopology isotropic 64³: four 2× pools down to 4³, kernels 3", () => {
  const t = poolingTopology([1, 1, 1], [64, 64, 64], TOPO);
  strictEqual(t.levels.length, 5);
  deepStrictEqual(t.levels[4].featureShape, [4, 4, 4]);
  ok(t.levels.every((l) => l.kernel.every((k) => k === 3)));
  deepStrictEqual(t.divisibleBy, [16, 16, 16]);
  strictEqual(poolingTopology([1, 1, 1], [64, 64, 64], { ...TOPO, maxLevels: 3 }).levels.length, 3);
});

Deno.test("unet3dDepth: divisible by 2^(depth−1) with a bottleneck edge ≥ 4", () => {
  strictEqual(unet3dDepth([32, 64, 64], 8), 4); // 32 / 8 = 4
  strictEqual(unet3dDepth([48, 64, 64], 8), 4); // 48 / 16 = 3 < 4
  strictEqual(unet3dDepth([20, 64, 64], 8), 3); // 20 is not divisible by 8
  strictEqual(unet3dDepth([64, 64, 64], 3), 3); // capped
});

// ---------------------------------------------------------------------------------------------
// Memory

Deno.test("estimateTrainingMemory: a one-level network counted by hand", () => {
  // One level, 2 channels on 2×2×2 voxels, one conv, 1 input channel, 2 classes, batch 1.
  const m = estimateTrainingMemory({
    inChannels: 1,
    classes: 2,
    convsPerLevel: 1,
    levels: [{ stride: [1, 1, 1], kernel: [3, 3, 3], channels: 2, featureShape: [2, 2, 2] }],
  }, 1);
  // Values: input 8 + head (logits, softmax, gradient) 3·2·8 = 48 + conv (3 saved) 3·2·8 = 48
  // + two of the largest (16) live in backward = 32 → 136 values = 544 bytes.
  strictEqual(m.activationBytes, 544);
  // Parameters: conv 27·1·2 + 2 = 56, head 2·2 + 2 = 6 → 62 × 16 bytes (weight, grad, Adam m, v).
  strictEqual(m.parameterBytes, 62 * 16);
  strictEqual(m.largestBufferBytes, 54 * 4); // the conv weight is the largest tensor here
});

Deno.test("estimateTrainingMemory: activations scale with batch and patch, weights do not", () => {
  const net = (patch: Shape3) => ({
    inChannels: 1,
    classes: 3,
    convsPerLevel: 2,
    levels: unet3dLevels(patch, 4, 16),
  });
  const a = estimateTrainingMemory(net([32, 32, 32]), 2);
  const b = estimateTrainingMemory(net([32, 32, 32]), 4);
  const c = estimateTrainingMemory(net([64, 32, 32]), 2);
  strictEqual(b.activationBytes, 2 * a.activationBytes);
  strictEqual(c.activationBytes, 2 * a.activationBytes);
  strictEqual(c.parameterBytes, a.parameterBytes);
  // Level 0's concat: batch 2 × 2·16 channels × 32³ voxels × 4 bytes.
  strictEqual(a.largestBufferBytes, 2 * 32 * 32 ** 3 * 4);
  ok(!estimateTrainingMemory(net([32, 32, 32]), 2, { ...BIG_GPU, gpuMemoryBytes: 1e6 }).fits);
});

Deno.test("estimateTrainingMemory: deep supervision adds the heads of decoder levels 1 … L−2", () => {
  const levels = unet3dLevels([32, 32, 32], 4, 16); // 16, 32, 64, 128 channels; 32³ … 4³
  const net = { inChannels: 1, classes: 3, convsPerLevel: 2, levels };
  const plain = estimateTrainingMemory(net, 2);
  const deep = estimateTrainingMemory({ ...net, deepSupervision: true }, 2);
  // Levels 1 (16³, 32 channels) and 2 (8³, 64 channels): logits, softmax and gradient of 3
  // classes each, batch 2; weights 32·3 + 3 and 64·3 + 3.
  strictEqual(deep.activationBytes - plain.activationBytes, 2 * 3 * 3 * (16 ** 3 + 8 ** 3) * 4);
  strictEqual(deep.parameterBytes - plain.parameterBytes, (99 + 195) * 16);
});

Deno.test("plan: the whole median shape when it fits; shrunk, divisible and fitting when not", () => {
  const fp = fingerprint([fpCase("a"), fpCase("b"), fpCase("c")]);
  const roomy = plan(fp, BIG_GPU);
  deepStrictEqual(roomy.medianShape, [64, 128, 128]);
  deepStrictEqual(roomy.topology.patchSize, [64, 128, 128]);
  deepStrictEqual(roomy.unet3d.patchSize, [64, 128, 128]);
  strictEqual(roomy.unet3d.depth, 4); // base 32 · 2³ = 256 ≤ 320 channels
  const limit = 512 * 2 ** 20;
  const tight = plan(fp, { gpuMemoryBytes: limit });
  for (const net of [tight.topology, tight.unet3d]) {
    ok(net.memory.fits && net.memory.totalBytes <= limit, JSON.stringify(net.memory));
    ok(net.memory.largestBufferBytes <= 128 * 2 ** 20);
    ok(net.patchSize.every((e, i) => e <= roomy.medianShape[i]));
    ok(net.patchSize.some((e, i) => e < roomy.medianShape[i]));
  }
  const m = 2 ** (tight.unet3d.depth - 1);
  ok(tight.unet3d.patchSize.every((e) => e % m === 0), `${tight.unet3d.patchSize} by ${m}`);
  ok(tight.topology.patchSize.every((e, i) => e % tight.topology.divisibleBy[i] === 0));
  ok(tight.reasons.topology.includes("shrunk"), tight.reasons.topology);
});

Deno.test("plan: batch grows while memory and 5% of the dataset's voxels allow", () => {
  const many = Array.from({ length: 200 }, (_, i) => fpCase(`c${i}`, { shape: [32, 32, 32] }));
  const p = plan(fingerprint(many), BIG_GPU);
  const patch = p.unet3d.patchSize[0] * p.unet3d.patchSize[1] * p.unet3d.patchSize[2];
  ok(p.batchSize > 2, `batch ${p.batchSize}`);
  ok(p.batchSize * patch <= 0.05 * 200 * 32 ** 3);
  ok((p.batchSize + 1) * patch > 0.05 * 200 * 32 ** 3); // stopped by the 5% rule, not memory
  strictEqual(plan(fingerprint(many), { ...BIG_GPU, batchSize: 3 }).batchSize, 3);
  strictEqual(plan(fingerprint([fpCase("a")]), BIG_GPU).batchSize, 2);
});

// ---------------------------------------------------------------------------------------------
// Time budget

Deno.test("sizeForBudget: a too-slow candidate gives way; the total ends within the budget", () => {
  const ms: Record<string, number> = { big: 3000, small: 500 };
  const choice = sizeForBudget({
    budgetSeconds: 700,
    spentSeconds: 60,
    overheadSeconds: 40,
    candidates: ["big", "small"],
    msPerStep: (c) => ms[c],
    validationSeconds: 5,
  });
  // 600 s left. big: 3 s/step → at most 200 steps < 250. small: 250 steps/epoch would give 4
  // epochs < 10, so 10 epochs of ⌊(60 − 5) / 0.5⌋ = 110 steps: 10·110·0.5 + 10·5 = 600 s.
  strictEqual(choice.candidate, "small");
  deepStrictEqual([choice.epochs, choice.itersPerEpoch, choice.steps], [10, 110, 1100]);
  strictEqual(choice.estimatedSeconds, 600);
  ok(choice.reason.includes("big") && choice.reason.includes("< 250"), choice.reason);
});

Deno.test("sizeForBudget: plenty of time keeps 250 steps per epoch, capped at maxEpochs", () => {
  const c = sizeForBudget({ budgetSeconds: 1000, candidates: ["a"], msPerStep: () => 100 });
  deepStrictEqual([c.epochs, c.itersPerEpoch], [40, 250]); // 40 × 250 × 0.1 s = 1000 s
  const capped = sizeForBudget({
    budgetSeconds: 1e6,
    candidates: ["a"],
    msPerStep: () => 100,
    maxEpochs: 30,
  });
  deepStrictEqual([capped.epochs, capped.itersPerEpoch], [30, 250]);
});

Deno.test("sizeForBudget: none fast enough takes the most steps; no time left throws", () => {
  const c = sizeForBudget({
    budgetSeconds: 100,
    candidates: ["slow", "slower"],
    msPerStep: (k) => (k === "slow" ? 1000 : 2000),
  });
  strictEqual(c.candidate, "slow");
  strictEqual(c.steps, 100);
  ok(c.reason.includes("none reaches 250"), c.reason);
  throws(
    () =>
      sizeForBudget({ budgetSeconds: 10, spentSeconds: 10, candidates: ["a"], msPerStep: () => 1 }),
    /no time left/,
  );
});

Deno.test("sizeForBudgetAsync times candidates only until one is accepted", async () => {
  const timed: string[] = [];
  const c = await sizeForBudgetAsync({
    budgetSeconds: 600,
    candidates: ["a", "b", "c"],
    msPerStep: (k) => {
      timed.push(k);
      return Promise.resolve(k === "a" ? 5000 : 100);
    },
  });
  strictEqual(c.candidate, "b");
  deepStrictEqual(timed, ["a", "b"]);
  await rejects(
    () => sizeForBudgetAsync({ budgetSeconds: 1, candidates: ["a"], msPerStep: () => 5000 }),
    /cannot fit one epoch/,
  );
});

Deno.test("plan with a time budget: a smaller network when the planned one is too slow", () => {
  const fp = fingerprint([fpCase("a"), fpCase("b")]);
  const full = plan(fp, BIG_GPU);
  const candidates = budgetCandidates(full);
  strictEqual(candidates[0].baseChannels, full.unet3d.baseChannels);
  deepStrictEqual(candidates[0].patchSize, full.unet3d.patchSize);
  // 10 ms per million voxel-channels at level 0: the full network is too slow for 250 steps.
  const msPerStep = (c: (typeof candidates)[number]) =>
    (c.baseChannels * c.patchSize[0] * c.patchSize[1] * c.patchSize[2]) / 1e4;
  const p = plan(fp, { ...BIG_GPU, timeBudgetSeconds: 600, msPerStep, validationSeconds: 2 });
  ok(msPerStep(candidates[0]) * 250 > 600_000);
  ok(p.budget !== null && p.budget.timing === "measured");
  ok(p.epochs! * p.itersPerEpoch! >= 250);
  const seconds =
    p.epochs! * p.itersPerEpoch! * msPerStep({ ...p.unet3d, batchSize: p.batchSize }) /
      1000 + p.epochs! * 2;
  ok(seconds <= 600 + 1e-9, `${seconds} s`);
  ok(
    p.unet3d.baseChannels < full.unet3d.baseChannels ||
      p.unet3d.patchSize.some((e, i) => e < full.unet3d.patchSize[i]),
  );
  strictEqual(p.unet3d.patchSize.every((e) => e % 2 ** (p.unet3d.depth - 1) === 0), true);
});

// ---------------------------------------------------------------------------------------------
// Conventions and modality

Deno.test("detectIntensityConvention: HU, 0..255, 0..1 and MRI-like", () => {
  strictEqual(detectIntensityConvention(HU_IMAGE).convention, "hu");
  strictEqual(detectIntensityConvention(BYTE_IMAGE).convention, "byte");
  strictEqual(
    detectIntensityConvention({ min: 0, max: 1, airFraction: 0, integerValued: false }).convention,
    "unit",
  );
  const mriFloat = { min: 0.3, max: 812.7, airFraction: 0, integerValued: false };
  strictEqual(detectIntensityConvention(mriFloat).convention, "other");
  // Integer MRI in 8..131 looks like 0..255 data; the modality decision, not this, rules it out.
  strictEqual(detectIntensityConvention(MRI_IMAGE).convention, "byte");
  ok(detectIntensityConvention(HU_IMAGE).reason.includes("35.0%"));
});

Deno.test("inferModality: a brain MRI labelled CT by default is not CT; COVID mixes are", () => {
  const mri = inferModality("CT", ["byte", "byte", "byte"]);
  strictEqual(mri.isCT, false);
  ok(/dataset\.json says CT/.test(mri.reason) && /−1000/.test(mri.reason), mri.reason);
  const covid = inferModality("CT", ["hu", "hu", "byte", "byte"]);
  strictEqual(covid.isCT, true);
  ok(covid.reason.includes("windowed CT"), covid.reason);
  strictEqual(inferModality("", ["hu"]).isCT, true);
  const named = inferModality("MRI", ["other", "other"]);
  deepStrictEqual([named.isCT, named.modality], [false, "MRI"]);
  strictEqual(inferModality("CT", ["hu", "other", "other"]).isCT, false); // HU a minority
});

// ---------------------------------------------------------------------------------------------
// Normalisation

/** Foreground samples of a lung-like HU mixture, seeded. */
function huSamples(rng: Random, n: number): Float64Array {
  return Float64Array.from(
    { length: n },
    () => rng.next() < 0.8 ? rng.normal(-820, 60) : rng.normal(-300, 150),
  );
}

Deno.test("huMapByQuantiles recovers a known 0..255 window from foreground samples", () => {
  const rng = new Random(7);
  const hu = [0, 1, 2].map(() => foregroundStats(huSamples(rng, 20_000)));
  const reference = poolForeground(hu.map((stats) => ({ stats, weight: 1 })))!;
  // Windowed to −1250..250 HU as 0..255 (Radiopaedia style): hu = 1500/255 · byte − 1250.
  const scale = 1500 / 255, offset = -1250;
  const bytes = huSamples(rng, 20_000).map((v) =>
    Math.min(255, Math.max(0, Math.round((v - offset) / scale)))
  );
  const fit = huMapByQuantiles(foregroundStats(bytes), reference)!;
  ok(Math.abs(fit.scale / scale - 1) < 0.03, `scale ${fit.scale} vs ${scale}`);
  ok(Math.abs(fit.offset - offset) < 20, `offset ${fit.offset} vs ${offset}`);
  strictEqual(huMapByQuantiles({ p5: 3, p95: 3 }, reference), null);
});

Deno.test("plan: COVID-like mix → ct-window on HU with per-case maps for the 0..255 cases", () => {
  const scale = 1500 / 255, offset = -1250;
  const toByte = (v: number) => (v - offset) / scale;
  const byteFg: ForegroundStats = {
    ...FG,
    mean: toByte(FG.mean),
    std: FG.std / scale,
    min: toByte(FG.min),
    max: toByte(FG.max),
    p0_5: toByte(FG.p0_5),
    p5: toByte(FG.p5),
    p50: toByte(FG.p50),
    p95: toByte(FG.p95),
    p99_5: toByte(FG.p99_5),
  };
  const fp = fingerprint([
    fpCase("hu1"),
    fpCase("hu2"),
    fpCase("r1", { image: BYTE_IMAGE, foreground: byteFg }),
    fpCase("r2", { image: BYTE_IMAGE, foreground: null, hasLabel: false, voxelsPerClass: [] }),
  ]);
  const p = plan(fp, BIG_GPU);
  strictEqual(p.modality.isCT, true);
  strictEqual(p.normalisation.scheme, "ct-window");
  // The window comes from the HU cases only (the manifest's pooled statistics mix in 0..255).
  deepStrictEqual(p.normalisation.window, [FG.p0_5, FG.p99_5]);
  const r1 = p.normalisation.huMaps.r1;
  strictEqual(r1.source, "fit");
  ok(Math.abs(r1.scale - scale) < 1e-9 && Math.abs(r1.offset - offset) < 1e-6, JSON.stringify(r1));
  deepStrictEqual(p.normalisation.huMaps.r2, { ...r1, source: "median" });
  strictEqual(p.normalisation.huMaps.hu1, undefined);
  deepStrictEqual(p.normalisation.conventions, { hu1: "hu", hu2: "hu", r1: "byte", r2: "byte" });
  ok(p.notes.some((n) => n.includes("preprocessing applies the maps")));
  const z = plan(fp, { ...BIG_GPU, normalisation: "ct-zscore" }).normalisation;
  deepStrictEqual([z.zscore!.clipLo, z.zscore!.clipHi, z.zscore!.mean], [
    FG.p0_5,
    FG.p99_5,
    FG.mean,
  ]);
  ok(Math.abs(z.zscore!.std - FG.std) < 1e-9);
});

Deno.test("plan: an MRI converted as CT is z-scored per case; flags resolve", () => {
  const fp = fingerprint(
    [fpCase("m1", { image: MRI_IMAGE }), fpCase("m2", { image: MRI_IMAGE, split: "test" })],
    { classes: ["background", "tumour", "oedema"] },
  );
  const p = plan(fp, BIG_GPU);
  strictEqual(p.modality.isCT, false);
  strictEqual(p.normalisation.scheme, "zscore-per-case");
  deepStrictEqual(p.normalisation.huMaps, {});
  strictEqual(p.dataset.trainingCases, 1);
  const flags = planOverrides(p);
  strictEqual(flags["data.normalisation"], "zscore-case");
  deepStrictEqual(planNormalization(p), { kind: "zscore-case" });
  strictEqual(flags["model.classes"], "3");
  const config = resolveConfig(undefined, flags);
  deepStrictEqual(config.data.patchSize, p.unet3d.patchSize);
  strictEqual(config.model.depth, p.unet3d.depth);
  strictEqual(config.model.baseChannels, p.unet3d.baseChannels);
  strictEqual(config.data.batchSize, p.batchSize);
});

Deno.test("planOverrides: ct-window with its window, epochs when planned; table says why", () => {
  const fp = fingerprint([fpCase("a", { spacingMm: [5, 0.7, 0.7], shape: [40, 256, 256] })]);
  const p = plan(fp, { ...BIG_GPU, epochs: 20, itersPerEpoch: 50 });
  const flags = planOverrides(p);
  strictEqual(flags["data.normalisation"], "ct-window");
  strictEqual(flags["data.window"], `${FG.p0_5},${FG.p99_5}`);
  deepStrictEqual([flags.epochs, flags.itersPerEpoch], ["20", "50"]);
  const config = resolveConfig(undefined, flags);
  deepStrictEqual(config.data.window, [FG.p0_5, FG.p99_5]);
  deepStrictEqual([config.epochs, config.itersPerEpoch], [20, 50]);
  const table = formatPlanTable(p);
  for (const s of ["spacing", "5×0.7×0.7 mm", "kernel 1×3×3", "UNet3D", "ct-window"]) {
    ok(table.includes(s), `table lacks "${s}":\n${table}`);
  }
});

Deno.test("plan: every choice can be fixed", () => {
  const fp = fingerprint([fpCase("a"), fpCase("b")]);
  const p = plan(fp, {
    ...BIG_GPU,
    targetSpacingMm: [2, 2, 2],
    patchSize: [32, 48, 64],
    batchSize: 4,
    baseChannels: 8,
    depth: 3,
    normalisation: "ct-window",
    window: [-1000, 400],
  });
  deepStrictEqual(p.targetSpacingMm, [2, 2, 2]);
  deepStrictEqual(p.medianShape, [32, 64, 64]);
  deepStrictEqual(p.unet3d.patchSize, [32, 48, 64]);
  deepStrictEqual([p.unet3d.depth, p.unet3d.baseChannels, p.batchSize], [3, 8, 4]);
  deepStrictEqual(p.normalisation.window, [-1000, 400]);
  throws(() => plan(fingerprint([])), /no cases/);
});
