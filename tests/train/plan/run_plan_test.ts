/**
 * Sizing a plan to a time budget with an injected step timing (no clock): at most two
 * candidates are timed, the rest estimated from the measured FLOP rate; the time already spent
 * counts; what a plan gives the trainer beyond its flags (exact normalisation, preprocessing).
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { CaseEntry } from "../../../src/data/dataset.ts";
import {
  budgetCandidates,
  candidateFlops,
  describeCandidate,
  plan,
  planOverrides,
  type StepCandidate,
} from "../../../src/train/plan/planner.ts";
import {
  MEASURED_MIN_STEPS,
  planNormalization,
  preprocessingReason,
  sizeToBudget,
  validationSeconds,
} from "../../../src/train/plan/run_plan.ts";
import { resolveConfig, type TrainConfig } from "../../../src/train/config.ts";
import type { Fingerprint } from "../../../src/data/fingerprint.ts";
import type { Shape3 } from "../../../src/data/volume.ts";
import { fingerprint, fpCase } from "./fingerprint_fixture.ts";

const FP = fingerprint([
  fpCase("a"),
  fpCase("b"),
  fpCase("c", { split: "val" }),
]);

const BIG = {
  gpuMemoryBytes: 16 * 2 ** 30,
  maxBufferSize: 2 ** 31,
  maxStorageBufferBindingSize: 2 ** 31,
};

function entries(): CaseEntry[] {
  return FP.cases.map((c) => ({
    id: c.id,
    path: `cases/${c.id}.zarr`,
    split: c.split,
    shape: c.shape,
    spacingMm: c.spacingMm,
    hasLabel: true,
    voxelsPerClass: [],
    foreground: [],
  }));
}

/** Milliseconds a step of `config` takes at `msPerGflop` (the same rate for every network). */
function stepMs(p: ReturnType<typeof plan>, config: TrainConfig, msPerGflop: number): number {
  const c = {
    baseChannels: config.model.baseChannels,
    depth: config.model.depth,
    patchSize: config.data.patchSize,
    batchSize: config.data.batchSize,
  };
  return (candidateFlops(p, c) / 1e9) * msPerGflop;
}

Deno.test("sizeToBudget: a fast adapter keeps the plan's network, timed after the cheapest", async () => {
  const p = plan(FP, BIG);
  const timed: TrainConfig[] = [];
  const sized = await sizeToBudget(p, {
    timeBudgetSeconds: 900,
    startedAt: performance.now(),
    measure: (config) => {
      timed.push(config);
      return Promise.resolve({ msPerStep: stepMs(p, config, 0.1), firstStepMs: 0, spentMs: 0 });
    },
  });
  // The cheapest candidate, then the chosen one: the plan's own network.
  strictEqual(timed.length, 2);
  const cheapest = budgetCandidates(p).at(-1)!;
  strictEqual(timed[0].model.baseChannels, cheapest.baseChannels);
  deepStrictEqual(timed[0].data.patchSize, cheapest.patchSize);
  strictEqual(sized.unet3d.baseChannels, p.unet3d.baseChannels);
  deepStrictEqual(sized.unet3d.patchSize, p.unet3d.patchSize);
  strictEqual(timed[1].model.baseChannels, p.unet3d.baseChannels);
  strictEqual(sized.budget!.timing, "measured");
  const ms = sized.budget!.msPerStep;
  strictEqual(ms, stepMs(p, timed[1], 0.1));
  // Steps fit the budget: steps × step + validations ≤ 900 s.
  const steps = sized.epochs! * sized.itersPerEpoch!;
  strictEqual(steps, sized.budget!.steps);
  ok((steps * ms) / 1000 <= 900 && steps >= 250, `steps ${steps}`);
  ok(sized.budget!.estimatedSeconds <= 900);
});

Deno.test("sizeToBudget: a slow adapter gets a smaller network, timed again before it is taken", async () => {
  const p = plan(FP, BIG);
  const candidates = budgetCandidates(p);
  ok(candidates.length > 1);
  // 10 ms per GFLOP of a step, the same for every candidate: the estimate is exact.
  const msFor = (config: TrainConfig) => stepMs(p, config, 10);
  const first = msFor(
    {
      model: { baseChannels: p.unet3d.baseChannels, depth: p.unet3d.depth },
      data: { patchSize: p.unet3d.patchSize, batchSize: p.batchSize },
    } as TrainConfig,
  );
  // A budget in which the plan's network reaches only ~100 steps: too few.
  const budget = (first * 100) / 1000;
  const timed: TrainConfig[] = [];
  const sized = await sizeToBudget(p, {
    timeBudgetSeconds: budget,
    startedAt: performance.now(),
    measure: (config) => {
      timed.push(config);
      return Promise.resolve({ msPerStep: msFor(config), firstStepMs: 0, spentMs: 0 });
    },
  });
  strictEqual(timed.length, 2);
  const chosen = sized.unet3d;
  ok(
    chosen.baseChannels < p.unet3d.baseChannels ||
      chosen.patchSize.some((e, i) => e < p.unet3d.patchSize[i]),
    "a smaller candidate",
  );
  strictEqual(timed[1].model.baseChannels, chosen.baseChannels);
  deepStrictEqual(timed[1].data.patchSize, chosen.patchSize);
  ok(sized.budget!.steps >= 250, `steps ${sized.budget!.steps}`);
  ok(sized.budget!.estimatedSeconds <= budget + 1e-9);
});

Deno.test("sizeToBudget: the time already spent counts", async () => {
  const p = plan(FP, BIG);
  const run = (spentSeconds: number) =>
    sizeToBudget(p, {
      timeBudgetSeconds: 900,
      startedAt: performance.now() - spentSeconds * 1000,
      // One candidate (the plan's network, fixed), so only the time left differs.
      baseChannels: p.unet3d.baseChannels,
      patchSize: p.unet3d.patchSize,
      depth: p.unet3d.depth,
      measure: () => Promise.resolve({ msPerStep: 100, firstStepMs: 0, spentMs: 0 }),
    });
  const fresh = await run(0), late = await run(450);
  ok(
    late.budget!.steps < fresh.budget!.steps * 0.6,
    `${late.budget!.steps} vs ${fresh.budget!.steps}`,
  );
  // Half the budget spent: what is left is planned for, validations included.
  ok(late.budget!.estimatedSeconds <= 450, `${late.budget!.estimatedSeconds}`);
  for (const sized of [fresh, late]) {
    // A handful of validations (about 5), not one per epoch.
    const validations = Math.ceil(sized.epochs! / sized.budget!.valEvery!);
    ok(validations <= 5 && validations >= 1, `${validations} validations`);
    strictEqual(planOverrides(sized).valEvery, String(sized.budget!.valEvery));
  }
});

Deno.test("validationSeconds: the validation patches in batches × a third of a step each", () => {
  strictEqual(validationSeconds(64, 300, 2), (32 * 300) / 3 / 1000);
  strictEqual(validationSeconds(5, 300, 2), (3 * 300) / 3 / 1000);
});

Deno.test("a plan's exact normalisation and whether its dataset must be preprocessed", () => {
  const p = plan(FP, BIG);
  deepStrictEqual(planNormalization(p), {
    kind: "ct-window",
    lo: p.normalisation.window![0],
    hi: p.normalisation.window![1],
  });
  strictEqual(preprocessingReason(p, { cases: entries() }), undefined);
  const off = entries();
  off[1] = { ...off[1], spacingMm: [2.5, 1, 1] };
  strictEqual(preprocessingReason(p, { cases: off }), "1 case(s) are not at the plan's spacing");
  const mapped = {
    ...p,
    normalisation: {
      ...p.normalisation,
      huMaps: { a: { scale: 5.9, offset: -1250, source: "fit" as const } },
    },
  };
  strictEqual(
    preprocessingReason(mapped, { cases: entries() }),
    "1 case(s) are mapped onto Hounsfield units",
  );
});

Deno.test("a plan for the plain network gives the trainer nnU-Net's topology", () => {
  const aniso = {
    ...FP,
    cases: FP.cases.map((c) => ({ ...c, shape: [40, 256, 256], spacingMm: [5, 0.7, 0.7] })),
  } as Fingerprint;
  const p = plan(aniso, { ...BIG, network: "plain" });
  const flags = planOverrides(p);
  strictEqual(flags["model.arch"], "plain");
  const config = resolveConfig(undefined, flags);
  const model = config.model as unknown as { strides: number[][]; kernels: number[][] };
  deepStrictEqual(model.strides, p.topology.levels.map((l) => l.stride));
  deepStrictEqual(model.kernels, p.topology.levels.map((l) => l.kernel));
  // Anisotropic: the first stages keep z (kernel 1 along it), as planned.
  deepStrictEqual(model.kernels[0], [1, 3, 3]);
  strictEqual(model.strides[1][0], 1);
  deepStrictEqual(config.data.patchSize, p.topology.patchSize);
  strictEqual(config.model.norm, "instance");
  strictEqual(config.model.activation, "leaky_relu");
  strictEqual(config.model.deepSupervision, true);
});

// ---------------------------------------------------------------------------------------------
// A time budget for the plain network (nnU-Net's PlainConvUNet of the planned topology)

/** Anisotropic cases (5 × 0.7 × 0.7 mm): the planned topology has 1×3×3 stages. */
const ANISO = {
  ...FP,
  cases: FP.cases.map((c) => ({ ...c, shape: [40, 256, 256], spacingMm: [5, 0.7, 0.7] })),
} as Fingerprint;

type PlainModel = { strides: Shape3[]; kernels: Shape3[] };

/** The candidate a timed config runs (its plain stages included). */
function plainCandidate(config: TrainConfig): StepCandidate {
  const model = config.model as unknown as TrainConfig["model"] & PlainModel;
  strictEqual(config.model.arch, "plain", "a plain plan times plain networks");
  return {
    baseChannels: model.baseChannels,
    depth: model.depth,
    patchSize: config.data.patchSize,
    batchSize: config.data.batchSize,
    strides: model.strides,
    kernels: model.kernels,
  };
}

Deno.test("budgetCandidates: a plain plan's candidates are re-planned plain topologies, largest first", () => {
  const p = plan(ANISO, { ...BIG, network: "plain" });
  const candidates = budgetCandidates(p);
  ok(candidates.length > 3, `${candidates.length} candidates`);
  const first = candidates[0];
  deepStrictEqual(first.strides, p.topology.levels.map((l) => l.stride));
  deepStrictEqual(first.kernels, p.topology.levels.map((l) => l.kernel));
  deepStrictEqual(first.patchSize, p.topology.patchSize);
  strictEqual(first.baseChannels, p.topology.levels[0].channels);
  strictEqual(first.batchSize, p.topology.batchSize);
  const flops = candidates.map((c) => candidateFlops(p, c));
  ok(flops.every((f, i) => i === 0 || f <= flops[i - 1]), "costliest first");
  for (const c of candidates) {
    ok(c.strides && c.kernels, describeCandidate(c));
    strictEqual(c.depth, c.strides!.length);
    ok(c.depth <= p.topology.levels.length, "never more stages than planned");
    // Anisotropic: stage 0 convolves 1×3×3 and z is not pooled at first, as planned.
    deepStrictEqual(c.kernels![0], [1, 3, 3]);
    strictEqual(c.strides![1][0], 1);
    const div = [0, 1, 2].map((a) => c.strides!.reduce((m, s) => m * s[a], 1));
    ok(c.patchSize.every((e, a) => e % div[a] === 0), `${c.patchSize} by ${div}`);
    ok(describeCandidate(c).startsWith(`plain, ${c.depth} stages`), describeCandidate(c));
  }
  ok(candidates.some((c) => c.baseChannels < first.baseChannels));
  ok(candidates.some((c) => c.depth < first.depth), "fewer stages for smaller patches");
  // A fixed base stays fixed.
  ok(budgetCandidates(p, { baseChannels: 32 }).every((c) => c.baseChannels === 32));
});

Deno.test("sizeToBudget: a slow adapter gets a smaller plain network that fits the budget", async () => {
  const p = plan(ANISO, { ...BIG, network: "plain" });
  const candidates = budgetCandidates(p);
  const msFor = (c: StepCandidate) => (candidateFlops(p, c) / 1e9) * 2;
  // The planned network reaches only ~100 steps in this budget: far fewer than 750.
  const budget = (msFor(candidates[0]) * 100) / 1000;
  const timed: StepCandidate[] = [];
  const lines: string[] = [];
  const sized = await sizeToBudget(p, {
    timeBudgetSeconds: budget,
    startedAt: performance.now(),
    measure: (config) => {
      const c = plainCandidate(config);
      timed.push(c);
      return Promise.resolve({ msPerStep: msFor(c), firstStepMs: 0, spentMs: 0 });
    },
    log: (line) => lines.push(line),
  });
  // The cheapest timed first, then the one chosen on the FLOP estimate.
  strictEqual(timed.length, 2);
  deepStrictEqual(timed[0], candidates.at(-1));
  strictEqual(sized.network, "plain");
  const t = sized.topology;
  ok(
    t.levels[0].channels < p.topology.levels[0].channels ||
      t.patchSize.some((e, i) => e < p.topology.patchSize[i]),
    "a smaller plain network",
  );
  deepStrictEqual(timed[1].patchSize, t.patchSize);
  deepStrictEqual(timed[1].strides, t.levels.map((l) => l.stride));
  strictEqual(timed[1].baseChannels, t.levels[0].channels);
  ok(t.patchSize.every((e, i) => e % t.divisibleBy[i] === 0));
  ok(t.memory.fits);
  // It fits: steps × step + validations ≤ the budget, with enough steps.
  const b = sized.budget!;
  strictEqual(b.timing, "measured");
  strictEqual(b.msPerStep, msFor(timed[1]));
  ok(b.steps >= MEASURED_MIN_STEPS, `steps ${b.steps}`);
  strictEqual(sized.epochs! * sized.itersPerEpoch!, b.steps);
  ok((b.steps * b.msPerStep) / 1000 <= budget && b.estimatedSeconds <= budget + 1e-9);
  ok(b.reason.includes("plain,") && b.reason.includes("< 750"), b.reason);
  ok(sized.reasons.topology.includes("made smaller"), sized.reasons.topology);
  ok(lines.every((l) => l.startsWith("timed plain,")), lines.join("\n"));
  // The trainer gets exactly the chosen plain network.
  const config = resolveConfig(undefined, planOverrides(sized));
  deepStrictEqual(plainCandidate(config), { ...timed[1] });
  strictEqual(config.epochs, sized.epochs);
});

Deno.test("sizeToBudget: a fast adapter keeps the planned plain network", async () => {
  const p = plan(ANISO, { ...BIG, network: "plain" });
  const sized = await sizeToBudget(p, {
    timeBudgetSeconds: 900,
    startedAt: performance.now(),
    measure: (config) =>
      Promise.resolve({
        msPerStep: (candidateFlops(p, plainCandidate(config)) / 1e9) * 0.01,
        firstStepMs: 0,
        spentMs: 0,
      }),
  });
  deepStrictEqual(sized.topology.levels, p.topology.levels);
  deepStrictEqual(sized.topology.patchSize, p.topology.patchSize);
  ok(!sized.reasons.topology.includes("made smaller"));
  ok(sized.budget!.steps >= MEASURED_MIN_STEPS && sized.budget!.estimatedSeconds <= 900);
});

Deno.test("plan with a time budget and the plain network: estimated from FLOPs, sized to fit", () => {
  const full = plan(ANISO, { ...BIG, network: "plain" });
  const msPerStep = (c: StepCandidate) => (candidateFlops(full, c) / 1e9) * 2;
  const budget = (msPerStep(budgetCandidates(full)[0]) * 100) / 1000;
  const p = plan(ANISO, { ...BIG, network: "plain", timeBudgetSeconds: budget, msPerStep });
  ok(
    p.topology.patchSize.some((e, i) => e < full.topology.patchSize[i]) ||
      p.topology.levels[0].channels < full.topology.levels[0].channels,
  );
  ok(p.epochs! * p.itersPerEpoch! >= 250);
  ok(p.budget!.estimatedSeconds <= budget + 1e-9);
  strictEqual(planOverrides(p)["model.arch"], "plain");
});
