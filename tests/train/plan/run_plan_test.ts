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
  plan,
  planOverrides,
} from "../../../src/train/plan/planner.ts";
import {
  planNormalization,
  preprocessingReason,
  sizeToBudget,
  validationSeconds,
} from "../../../src/train/plan/run_plan.ts";
import { resolveConfig, type TrainConfig } from "../../../src/train/config.ts";
import type { Fingerprint } from "../../../src/data/fingerprint.ts";
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
