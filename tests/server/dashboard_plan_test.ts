/**
 * The dashboard's plan view (plan_rows.ts): what a planned training job's `plan` shows as
 * rows — a one-channel plan sized to a time budget, a two-channel plain plan from a request's
 * plans.json with a fold, a dataset plan on the trainer's defaults — and that prediction jobs,
 * jobs not planned (yet) and `"plan": "none"` jobs show none.
 */

import assert from "node:assert/strict";
import { duration, num, type PlanRow, planRows } from "../../src/server/dashboard/plan_rows.ts";
import type { JobPlan } from "../../src/server/jobs/job.ts";

/** A new plan sized to a 10-minute budget, as train_plan.ts records it for one CT channel. */
const BUDGETED: JobPlan = {
  source: "new",
  network: "unet3d",
  targetSpacingMm: [2.5, 0.78125, 0.78125],
  normalisation: { scheme: "ct-window", window: [-1000, 400] },
  preprocessed: "3 case(s) are not at the plan's spacing",
  patchSize: [32, 96, 96],
  batchSize: 2,
  baseChannels: 16,
  depth: 4,
  epochs: 12,
  itersPerEpoch: 25,
  budget: {
    budgetSeconds: 600,
    msPerStep: 1843.75,
    steps: 300,
    estimatedSeconds: 571.3,
    reason: "587 s left: base 16, depth 4, patch 32×96×96, batch 2 at 1844 ms/step → " +
      "12 epochs × 25 steps ≈ 571 s with validation; base 32, depth 4, patch 32×128×128, " +
      "batch 2 at 7412 ms/step: 75 steps < 250",
  },
  reasons: {
    modality: 'dataset.json says "CT": nnU-Net\'s CT scheme',
    conventions: "4 hu (e.g. case_000: min -1024)",
    spacing: "per-axis median of 4 cases; anisotropic (coarsest/finest 3.2 > 3), so the z " +
      "axis takes its 10th percentile 2.5 mm (nnU-Net)",
    normalisation: "CT: clip HU to -1000..400 (the default lung window) and scale to 0..1",
    topology: "5 levels for patch 32×128×128 (median shape); pools per axis (z,y,x) 3,5,5; " +
      "channels ≤ 320",
    unet3d: "isotropic 2× pooling: depth 4 keeps every patch edge divisible by 8 and ≥ 4 at " +
      "the bottleneck, bottleneck ≤ 320 channels; the planned network's patch, rounded; made " +
      "smaller to train enough steps in time",
    batch: "nnU-Net's minimum of 2",
    schedule: "587 s left: base 16, depth 4, patch 32×96×96, batch 2 at 1844 ms/step → 12 " +
      "epochs × 25 steps ≈ 571 s with validation",
  },
  notes: ["step time estimated at 1.0e+12 FLOP/s; measure it for a real budget"],
};

/** A request's plans.json for CT + PET, training nnU-Net's plain network on fold 2. */
const TWO_CHANNEL: JobPlan = {
  source: "request",
  path: "plans/<b>ct_pet</b>/plans.json",
  network: "plain",
  targetSpacingMm: [3, 2, 2],
  normalisation: { scheme: "ct-window", window: [-160, 240] },
  channels: [
    { name: "CT", scheme: "ct-window", window: [-160, 240] },
    { name: "PET (SUV)", scheme: "zscore-per-case" },
  ],
  patchSize: [48, 112, 112],
  batchSize: 2,
  baseChannels: 32,
  depth: 5,
  epochs: 50,
  itersPerEpoch: 250,
  reasons: {
    spacing: "per-axis median of 12 cases (coarsest/finest 1.5 ≤ 3: isotropic)",
    normalisation: "channel 0 (CT): CT: clip HU to -160..240 (foreground 0.5/99.5 " +
      "percentiles) and scale to 0..1; channel 1 (PET (SUV)): each case z-scored with its own " +
      "mean and std (not CT: nnU-Net's scheme for MRI and other images)",
    channels: "2 input channels, each normalised by its own scheme: channel 0 (CT) by its " +
      "name, channel 1 (PET (SUV)) by its name",
    topology: "5 levels for patch 48×112×112 (median shape); pools per axis (z,y,x) 4,4,4; " +
      "channels ≤ 320",
    unet3d: "isotropic 2× pooling: depth 4 keeps every patch edge divisible by 8",
    batch: "nnU-Net's minimum of 2",
    schedule: "given",
  },
  notes: [],
  fold: 2,
};

/** The rows by label (each label once, notes aside). */
function byLabel(rows: PlanRow[]): Map<string, PlanRow> {
  const labels = rows.map((r) => r.label).filter((l) => l !== "note");
  assert.equal(new Set(labels).size, labels.length, `labels twice: ${labels}`);
  return new Map(rows.map((r) => [r.label, r]));
}

Deno.test("planRows: a budgeted one-channel plan, each choice with its reason", () => {
  const rows = planRows({ kind: "train", plan: BUDGETED });
  const row = byLabel(rows);
  assert.deepEqual(rows.map((r) => r.label), [
    "plan",
    "preprocessed",
    "network",
    "levels",
    "patch (z, y, x)",
    "batch size",
    "target spacing (z, y, x)",
    "normalisation",
    "schedule",
    "time budget",
    "note",
  ]);
  assert.deepEqual(row.get("plan"), { label: "plan", value: "new", why: "planned for this job" });
  assert.equal(row.get("preprocessed")!.value, "3 case(s) are not at the plan's spacing");
  assert.equal(row.get("network")!.value, "unet3d");
  // UNet3D: its own reason (pooling, depth), not the planned network's.
  assert.deepEqual(row.get("levels"), {
    label: "levels",
    value: "4 levels, 16 base channels",
    why: BUDGETED.reasons!.unet3d,
  });
  assert.equal(row.get("patch (z, y, x)")!.value, "32×96×96");
  assert.deepEqual(row.get("batch size"), {
    label: "batch size",
    value: "2",
    why: "nnU-Net's minimum of 2",
  });
  assert.equal(row.get("target spacing (z, y, x)")!.value, "2.5×0.7813×0.7813 mm");
  assert.match(row.get("target spacing (z, y, x)")!.why!, /anisotropic/);
  assert.deepEqual(row.get("normalisation"), {
    label: "normalisation",
    value: "ct-window -1000..400 HU",
    why: BUDGETED.reasons!.normalisation,
  });
  // The schedule's reason is the budget's: said once, in the budget's row.
  assert.deepEqual(row.get("schedule"), {
    label: "schedule",
    value: "12 epochs × 25 steps per epoch = 300 steps",
  });
  assert.deepEqual(row.get("time budget"), {
    label: "time budget",
    value: "10 min: 300 steps at 1844 ms/step, ≈ 9 min 31 s with validation",
    why: BUDGETED.budget!.reason,
  });
  assert.equal(row.get("note")!.value, BUDGETED.notes![0]);
  assert.ok(!row.has("cross-validation fold"));
});

Deno.test("planRows: a two-channel plain plan shows each channel's normalisation", () => {
  const rows = planRows({ kind: "train", plan: TWO_CHANNEL });
  const row = byLabel(rows);
  assert.deepEqual(rows.map((r) => r.label), [
    "plan",
    "network",
    "levels",
    "patch (z, y, x)",
    "batch size",
    "target spacing (z, y, x)",
    "input channels",
    "channel 0 normalisation",
    "channel 1 normalisation",
    "schedule",
    "cross-validation fold",
  ]);
  // The path as given (the page puts it in as text: no markup is made of it).
  assert.deepEqual(row.get("plan"), {
    label: "plan",
    value: "plans/<b>ct_pet</b>/plans.json",
    why: "named by the request",
  });
  assert.equal(row.get("network")!.value, "plain");
  assert.match(row.get("network")!.why!, /PlainConvUNet/);
  // The plain network: the planned topology's reason (per-axis pooling).
  assert.equal(row.get("levels")!.why, TWO_CHANNEL.reasons!.topology);
  assert.deepEqual(row.get("input channels"), {
    label: "input channels",
    value: "2",
    why: TWO_CHANNEL.reasons!.channels,
  });
  // Each channel's scheme from the job's channels, its reason from the planner's text.
  assert.deepEqual(row.get("channel 0 normalisation"), {
    label: "channel 0 normalisation",
    value: "CT: ct-window -160..240 HU",
    why: "CT: clip HU to -160..240 (foreground 0.5/99.5 percentiles) and scale to 0..1",
  });
  const petWhy = "each case z-scored with its own mean and std (not CT: nnU-Net's scheme for " +
    "MRI and other images)";
  assert.deepEqual(row.get("channel 1 normalisation"), {
    label: "channel 1 normalisation",
    value: "PET (SUV): zscore-per-case",
    why: petWhy,
  });
  // A job recorded before `channels` existed: channel 0's scheme, the others' names.
  const { channels: _, ...older } = TWO_CHANNEL;
  const olderRows = byLabel(planRows({ kind: "train", plan: older }));
  assert.equal(olderRows.get("channel 0 normalisation")!.value, "CT: ct-window -160..240 HU");
  assert.deepEqual(olderRows.get("channel 1 normalisation"), {
    label: "channel 1 normalisation",
    value: "PET (SUV)",
    why: petWhy,
  });
  assert.ok(!row.has("normalisation"));
  assert.deepEqual(row.get("schedule"), {
    label: "schedule",
    value: "50 epochs × 250 steps per epoch = 12500 steps",
    why: "given",
  });
  assert.ok(!row.has("time budget"));
  assert.deepEqual(row.get("cross-validation fold"), {
    label: "cross-validation fold",
    value: "2",
  });
});

Deno.test("planRows: a dataset plan on the trainer's defaults, and sparse records", () => {
  const rows = planRows({
    kind: "train",
    plan: {
      source: "dataset",
      path: "Task02_Heart/plans.json",
      network: "unet3d",
      targetSpacingMm: [1.37, 1.25, 1.25],
      normalisation: { scheme: "zscore-per-case" },
      patchSize: [64, 128, 96],
      batchSize: 2,
      baseChannels: 32,
      depth: 5,
      epochs: null,
      itersPerEpoch: null,
      reasons: { schedule: "no time budget: the trainer's defaults" },
      notes: [],
    },
  });
  const row = byLabel(rows);
  assert.deepEqual(row.get("plan"), {
    label: "plan",
    value: "Task02_Heart/plans.json",
    why: "the plans.json beside the dataset",
  });
  assert.deepEqual(row.get("normalisation"), { label: "normalisation", value: "zscore-per-case" });
  assert.deepEqual(row.get("schedule"), {
    label: "schedule",
    value: "the trainer's defaults",
    why: "no time budget: the trainer's defaults",
  });
  assert.equal(row.get("levels")!.why, undefined);

  // Only where it came from (a record cut short): no row is made up for what it lacks.
  assert.deepEqual(planRows({ kind: "train", plan: { source: "new", epochs: 3 } }), [
    { label: "plan", value: "new", why: "planned for this job" },
    { label: "schedule", value: "3 epochs × default steps per epoch" },
  ]);
});

Deno.test("planRows: nothing for predictions, unplanned jobs and plan none", () => {
  assert.deepEqual(planRows({ kind: "train" }), []);
  assert.deepEqual(planRows({ kind: "predict" }), []);
  assert.deepEqual(planRows({ kind: "predict", plan: BUDGETED }), []);
  assert.deepEqual(
    planRows({
      kind: "train",
      plan: { source: "none", reason: '"plan": "none": the defaults and "config" only' },
    }),
    [],
  );
});

Deno.test("plan view numbers and durations", () => {
  assert.equal(num(0.78125), "0.7813");
  assert.equal(num(2.5), "2.5");
  assert.equal(num(-1000), "-1000");
  assert.equal(num(20_000), "20000");
  assert.equal(duration(45), "45 s");
  assert.equal(duration(600), "10 min");
  assert.equal(duration(571.3), "9 min 31 s");
  assert.equal(duration(5400), "1 h 30 min");
  assert.equal(duration(7200), "2 h");
});
