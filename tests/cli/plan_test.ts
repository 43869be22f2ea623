/**
 * `voxseg plan` and planning through `voxseg train` on a user's dataset: the plan and the
 * folds written beside the dataset, found again by train; a dataset that is not CT in HU
 * planned as such; `--fold all` trains every fold and stores the post-processing chosen on
 * their validation predictions in every fold's checkpoint; a dataset of two channels planned
 * channel by channel and trained past its plan.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { buildManifest, caseStats, readDataset, writeDataset } from "../../src/data/dataset.ts";
import { readSplits } from "../../src/data/folds.ts";
import { writeNifti } from "../../src/data/nifti.ts";
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

/**
 * An nnU-Net raw dataset of two channels — CT in HU (`_0000`) and an MRI-like T2 (`_0001`),
 * named in `channel_names` — converted at `dir`/ds: 3 train cases and 1 val case, two at 1 mm
 * between slices and two at 1.5 mm (so a plan at the median, 1.25 mm, resamples all four).
 */
async function twoChannelDataset(dir: string): Promise<string> {
  const raw = join(dir, "raw");
  for (const sub of ["imagesTr", "labelsTr"]) await Deno.mkdir(join(raw, sub), { recursive: true });
  const shape: Shape3 = [12, 16, 16], n = 12 * 16 * 16;
  for (let i = 0; i < 4; i++) {
    const ct = new Int16Array(n), t2 = new Float32Array(n), label = new Uint8Array(n);
    for (let v = 0; v < n; v++) {
      const z = Math.floor(v / 256), y = Math.floor(v / 16) % 16, x = v % 16;
      const inside = (z - 6) ** 2 / 16 + (y - 8) ** 2 / 25 + (x - 8 + (i % 2)) ** 2 / 16 < 1;
      label[v] = inside ? 1 : 0;
      ct[v] = inside ? 40 + (v % 7) : x < 2 ? -1000 : -300 + (v % 11);
      t2[v] = inside ? 300 + (v % 13) : 80 + (v % 5);
    }
    const spacingMm: Shape3 = [i % 2 ? 1.5 : 1, 1, 1];
    const geometry = { shape, spacingMm, affine: affineFromSpacing(spacingMm) };
    await writeNifti(join(raw, "imagesTr", `c${i}_0000.nii.gz`), { ...geometry, data: ct });
    await writeNifti(join(raw, "imagesTr", `c${i}_0001.nii.gz`), { ...geometry, data: t2 });
    await writeNifti(join(raw, "labelsTr", `c${i}.nii.gz`), { ...geometry, data: label });
  }
  await Deno.writeTextFile(
    join(raw, "dataset.json"),
    JSON.stringify({
      channel_names: { "0": "CT", "1": "T2" },
      labels: { background: 0, organ: 1 },
    }),
  );
  const out = join(dir, "ds");
  const r = await runCliCaptured([
    "convert",
    "--raw",
    raw,
    "--out",
    out,
    "--val",
    "0.25",
    "--test",
    "0",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

Deno.test(
  "voxseg plan and train --plan on a two-channel dataset: each channel by its own scheme",
  opts,
  () =>
    withTempDir(async (dir) => {
      const data = await twoChannelDataset(dir);
      const planDir = join(dir, "plan");
      const planned = await runCliCaptured(["plan", "--data", data, "--out", planDir]);
      assert.equal(planned.code, 0, planned.stderr);
      // The table prints each channel's choice and its reason.
      assert.match(planned.stdout, /channels\s+2: CT, T2/);
      assert.match(
        planned.stdout,
        /channel 0\s+CT: CT\s+by name: dataset\.json channel_names says "CT"/,
      );
      assert.match(planned.stdout, /channel 1\s+T2: T2\s+by name: .*not CT/);
      assert.match(planned.stdout, /normalisation\s+ct-window/);
      assert.match(planned.stdout, /normalisation\s+zscore-per-case/);
      const plan = await readPlan(planDir);
      assert.equal(plan.unet3d.inChannels, 2);
      assert.deepEqual(plan.channels!.map((c) => c.normalisation.scheme), [
        "ct-window",
        "zscore-per-case",
      ]);
      const [lo, hi] = plan.channels![0].normalisation.window!;
      assert.ok(lo >= 40 && hi <= 46, `CT window from the foreground: ${lo}..${hi}`);

      // train past the plan: preprocesses both channels alike, trains 2 input channels, and
      // normalises each exactly as planned.
      const out = join(dir, "run");
      const run = await runCliCaptured([
        "train",
        "--data",
        data,
        "--plan",
        planDir,
        "--out",
        out,
        ...TINY,
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /preprocessing: 4 case\(s\) are not at the plan's spacing/);
      const record = (await readRunRecord(out))!;
      assert.equal(record.config.model.inChannels, 2);
      assert.deepEqual(record.channelNormalisations, [{ kind: "ct-window", lo, hi }, {
        kind: "zscore-case",
      }]);
      assert.deepEqual(record.normalisation, { kind: "ct-window", lo, hi });
      const trained = await readDataset(record.config.data.dataset);
      assert.deepEqual(trained.channels, ["CT", "T2"]);
      assert.equal(trained.source?.preprocessedFrom, (await readDataset(data)).name);
      assert.ok(trained.cases.every((c) => c.imageChannels?.length === 2));
      assert.deepEqual((await readPlan(out)).channels, plan.channels);
      const summary = JSON.parse(await Deno.readTextFile(join(out, "summary.json")));
      assert.deepEqual([summary.steps, summary.stoppedBy], [2, "completed"]);
    }),
);
