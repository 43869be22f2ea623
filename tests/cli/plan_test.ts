/**
 * `voxseg plan` and planning through `voxseg train` on a user's dataset: the plan and the
 * folds written beside the dataset, found again by train; a dataset that is not CT in HU
 * planned as such; `--fold all` trains every fold and stores the post-processing chosen on
 * their validation predictions in every fold's checkpoint.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { buildManifest, caseStats, writeDataset } from "../../src/data/dataset.ts";
import { readSplits } from "../../src/data/folds.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import { Random } from "../../src/base/random.ts";
import { affineFromSpacing, type Shape3 } from "../../src/data/volume.ts";
import { loadCheckpoint } from "../../src/nn/checkpoint.ts";
import { readPlan } from "../../src/train/plan/plan_file.ts";
import { readRunRecord } from "../../src/train/trainer.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { withTempDir } from "../data/temp_dir.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const TINY = [
  "--model.baseChannels",
  "4",
  "--model.depth",
  "2",
  "--patch",
  "16",
  "--epochs",
  "1",
  "--itersPerEpoch",
  "2",
  "--data.workers",
  "0",
];

Deno.test(
  "voxseg plan writes plans.json and splits.json beside the dataset; train uses them",
  opts,
  () =>
    withTempDir(async (dir) => {
      const data = join(dir, "ct");
      await generateSynthDataset(data, { cases: 7, shape: [16, 32, 32], val: 0.3, test: 0.15 });
      const planned = await runCliCaptured(["plan", "--data", data]);
      assert.equal(planned.code, 0, planned.stderr);
      assert.match(planned.stdout, /modality\s+CT/);
      assert.match(planned.stdout, /normalisation\s+ct-window/);
      const plan = await readPlan(data);
      assert.equal(plan.normalisation.scheme, "ct-window");
      assert.deepEqual(plan.dataset.classes, ["background", "lung", "infection"]);
      const splits = await readSplits(join(data, "splits.json"));
      assert.equal(splits.folds.length, 5);
      const trainVal = new Set(splits.folds.flatMap((f) => f.val));
      assert.equal(trainVal.size, 6, "each train/val case validates in exactly one fold");

      const out = join(dir, "run");
      const run = await runCliCaptured(["train", "--data", data, "--out", out, ...TINY]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /plan: .*plans\.json/);
      // The run keeps the plan it started with, and the plan's exact normalisation.
      const record = (await readRunRecord(out))!;
      assert.deepEqual(record.normalisation, {
        kind: "ct-window",
        lo: plan.normalisation.window![0],
        hi: plan.normalisation.window![1],
      });
      assert.deepEqual((await readPlan(out)).normalisation, plan.normalisation);
      // Flags override the plan.
      assert.equal(record.config.model.baseChannels, 4);
    }),
);

/** A two-class dataset of brain-MRI-like intensities (8..131), recorded as "CT" by mistake. */
async function mriDataset(dir: string): Promise<void> {
  const shape: Shape3 = [12, 20, 20];
  const rng = new Random(3);
  const cases = [];
  for (const [i, split] of (["train", "train", "val"] as const).entries()) {
    const n = shape[0] * shape[1] * shape[2];
    const image = new Int16Array(n), label = new Uint8Array(n);
    for (let v = 0; v < n; v++) {
      const z = Math.floor(v / 400), y = Math.floor(v / 20) % 20, x = v % 20;
      const brain = (z - 6) ** 2 / 25 + (y - 10) ** 2 / 64 + (x - 10) ** 2 / 64 < 1;
      label[v] = brain ? 1 : 0;
      image[v] = brain ? 90 + Math.round(20 * rng.normal()) : 8 + (v % 5);
    }
    const spacingMm: Shape3 = [1.2, 1, 1];
    const img = { data: image, shape, spacingMm, affine: affineFromSpacing(spacingMm) };
    const lab = { ...img, data: label };
    const id = `mri_${i}`;
    await writeCase(join(dir, `cases/${id}.zarr`), { image: img, label: lab, name: id });
    cases.push({
      id,
      path: `cases/${id}.zarr`,
      split,
      stats: caseStats(img, lab, ["background", "brain"], rng.fork()),
    });
  }
  await writeDataset(
    dir,
    buildManifest({ name: "brains", modality: "CT", classes: ["background", "brain"], cases }),
  );
}

Deno.test(
  "voxseg plan: MRI intensities recorded as CT are planned as not CT, z-scored per case",
  opts,
  () =>
    withTempDir(async (dir) => {
      const data = join(dir, "mri");
      await mriDataset(data);
      const { code, stdout, stderr } = await runCliCaptured(["plan", "--data", data, "--out", dir]);
      assert.equal(code, 0, stderr);
      const plan = await readPlan(dir);
      assert.equal(plan.modality.isCT, false);
      assert.equal(plan.normalisation.scheme, "zscore-per-case");
      assert.match(stdout, /zscore/);
      // train takes the classes from the dataset (2) and the plan's per-case normalisation.
      const out = join(dir, "run");
      const run = await runCliCaptured([
        "train",
        "--data",
        data,
        "--plan",
        dir,
        "--out",
        out,
        ...TINY,
      ]);
      assert.equal(run.code, 0, run.stderr);
      const record = (await readRunRecord(out))!;
      assert.equal(record.config.model.classes, 2);
      assert.deepEqual(record.normalisation, { kind: "zscore-case" });
    }),
);

Deno.test(
  "voxseg train --fold all: every fold, then post-processing in every checkpoint",
  opts,
  () =>
    withTempDir(async (dir) => {
      const data = join(dir, "ct");
      await generateSynthDataset(data, { cases: 7, shape: [16, 32, 32], val: 0.3, test: 0.15 });
      const out = join(dir, "cv");
      const run = await runCliCaptured([
        "train",
        "--data",
        data,
        "--plan",
        "none",
        "--fold",
        "all",
        "--out",
        out,
        ...TINY,
      ]);
      assert.equal(run.code, 0, run.stderr);
      const seen: string[] = [];
      for (let k = 0; k < 5; k++) {
        const record = (await readRunRecord(join(out, `fold_${k}`)))!;
        assert.equal(record.fold!.index, k);
        const splits = Object.entries(record.fold!.splits);
        seen.push(...splits.filter(([, s]) => s === "val").map(([id]) => id));
        // The held-out test case stays out of every fold.
        assert.ok(splits.filter(([, s]) => s === "test").length >= 1);
        const ckpt = await loadCheckpoint(join(out, `fold_${k}`, "best.safetensors"));
        assert.ok(ckpt.meta.postprocessing, `fold ${k} has the post-processing choice`);
      }
      assert.equal(new Set(seen).size, seen.length, "no case validates in two folds");
      assert.equal(seen.length, 6);
    }),
);
