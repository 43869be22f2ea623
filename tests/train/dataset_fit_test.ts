/**
 * What a run reads from its dataset before the first step: the class count, the validation
 * split (training cases, with a warning, when there is no labelled val case), a dataset with
 * nothing to train on refused up front; and the time-budget guard.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { initGpu } from "../../src/gpu/mod.ts";
import { datasetValidator } from "../../src/infer/dataset_validator.ts";
import type { CaseEntry } from "../../src/data/dataset.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { datasetOverrides, validationSplit } from "../../src/train/dataset_fit.ts";
import { readRunRecord, train, type TrainEvent } from "../../src/train/trainer.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { writeNifti } from "../../src/data/nifti.ts";
import { affineFromSpacing } from "../../src/data/volume.ts";
import { loadCheckpoint } from "../../src/nn/checkpoint.ts";
import { runCliCaptured } from "../data/cli_capture.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const root = Deno.makeTempDirSync({ prefix: "voxseg_dataset_fit_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

function entry(id: string, split: CaseEntry["split"], hasLabel: boolean): CaseEntry {
  return {
    id,
    path: `cases/${id}.zarr`,
    split,
    shape: [4, 4, 4],
    spacingMm: [1, 1, 1],
    hasLabel,
    voxelsPerClass: [],
    foreground: [],
  };
}

Deno.test("dataset fit: the class and channel counts come from the dataset", () => {
  assert.deepEqual(datasetOverrides({ classes: ["background", "brain"] }), {
    "model.classes": "2",
    "model.inChannels": "1",
  });
  assert.equal(
    datasetOverrides({ classes: ["bg", "tumour"], channels: ["T1", "T2", "FLAIR"] })[
      "model.inChannels"
    ],
    "3",
  );
  const config = resolveConfig(undefined, datasetOverrides({ classes: ["bg", "a", "b", "c"] }));
  assert.equal(config.model.classes, 4);
});

Deno.test("dataset fit: validation on val when labelled, else on train with a warning", () => {
  const withVal = validationSplit({
    name: "d",
    cases: [entry("a", "train", true), entry("b", "val", true)],
  });
  assert.deepEqual(withVal, { split: "val" });
  const unlabelledVal = validationSplit({
    name: "d",
    cases: [entry("a", "train", true), entry("b", "val", false), entry("c", "test", true)],
  });
  assert.equal(unlabelledVal.split, "train");
  assert.match(unlabelledVal.warning!, /no labelled validation case: validating on its 1 training/);
});

Deno.test("dataset fit: no labelled training case is refused, with the counts per split", () => {
  assert.throws(
    () =>
      validationSplit({
        name: "d",
        cases: [entry("a", "train", false), entry("b", "val", true)],
      }),
    /dataset "d" has no labelled training case \(labelled cases per split: train 0, val 1, test 0\)/,
  );
});

async function oneCaseDataset(): Promise<string> {
  const dir = join(root, "one_case");
  await generateSynthDataset(dir, { cases: 1, shape: [16, 32, 32], val: 0, test: 0 });
  return dir;
}

function tinyConfig(dataset: string, out: string, flags: Record<string, string> = {}) {
  return resolveConfig(undefined, {
    "data.dataset": dataset,
    out: join(root, out),
    "model.baseChannels": "4",
    "model.depth": "2",
    "data.patchSize": "16,16,16",
    "data.batchSize": "2",
    "data.workers": "0",
    epochs: "1",
    itersPerEpoch: "3",
    ...flags,
  });
}

Deno.test(
  "trainer: a dataset without a val case trains and validates on its training case, warned first",
  opts,
  async () => {
    await initGpu();
    const events: TrainEvent[] = [];
    const result = await train({
      config: tinyConfig(await oneCaseDataset(), "no_val"),
      validate: datasetValidator({ patchSize: [16, 16, 16], batchSize: 2 }),
      onEvent: (e) => events.push(e),
    });
    assert.equal(result.stoppedBy, "completed");
    const warned = events.findIndex((e) =>
      e.type === "notice" && /no labelled validation case/.test(e.message)
    );
    const firstStep = events.findIndex((e) => e.type === "step");
    assert.ok(warned >= 0 && warned < firstStep, "the warning comes before the first step");
    const validation = events.find((e) => e.type === "validation");
    assert.ok(validation && Number.isFinite(validation.score), "validated on the training case");
  },
);

Deno.test(
  "trainer: a passed deadline stops the run, validates and checkpoints (stoppedBy time-budget)",
  opts,
  async () => {
    await initGpu();
    const config = tinyConfig(await oneCaseDataset(), "deadline", { itersPerEpoch: "50" });
    const events: TrainEvent[] = [];
    const result = await train({
      config,
      validate: datasetValidator({ patchSize: [16, 16, 16], batchSize: 2 }),
      deadline: Date.now() - 1,
      onEvent: (e) => events.push(e),
    });
    assert.equal(result.stoppedBy, "time-budget");
    assert.equal(result.steps, 0);
    assert.ok(events.some((e) => e.type === "validation"));
    await Deno.stat(join(config.out, "best.safetensors"));
    await Deno.stat(join(config.out, "last.safetensors"));
  },
);

/** A converted two-channel dataset (CT in HU and an MRI-like channel): 3 train, 1 val case. */
async function twoChannelDataset(): Promise<string> {
  const raw = join(root, "raw2");
  for (const sub of ["imagesTr", "labelsTr"]) await Deno.mkdir(join(raw, sub), { recursive: true });
  for (let i = 0; i < 4; i++) {
    const shape: [number, number, number] = [16, 20, 20];
    const n = 16 * 20 * 20;
    const ct = new Int16Array(n), mr = new Float32Array(n), label = new Uint8Array(n);
    for (let v = 0; v < n; v++) {
      const z = Math.floor(v / 400), y = Math.floor(v / 20) % 20, x = v % 20;
      const inside = (z - 8) ** 2 / 36 + (y - 10) ** 2 / 49 + (x - 10 + i) ** 2 / 36 < 1;
      label[v] = inside ? 1 : 0;
      ct[v] = inside ? -800 + (v % 7) : 30 + (v % 11);
      mr[v] = inside ? 300 + (v % 13) : 80 + (v % 5);
    }
    const geometry = {
      shape,
      spacingMm: [1, 1, 1] as [number, number, number],
      affine: affineFromSpacing([1, 1, 1]),
    };
    await writeNifti(join(raw, "imagesTr", `c${i}_0000.nii.gz`), { ...geometry, data: ct });
    await writeNifti(join(raw, "imagesTr", `c${i}_0001.nii.gz`), { ...geometry, data: mr });
    await writeNifti(join(raw, "labelsTr", `c${i}.nii.gz`), { ...geometry, data: label });
  }
  await Deno.writeTextFile(
    join(raw, "dataset.json"),
    JSON.stringify({
      channel_names: { "0": "CT", "1": "T2" },
      labels: { background: 0, organ: 1 },
    }),
  );
  const out = join(root, "two_channels");
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
  "trainer: a two-channel dataset trains with 2 input channels, each normalised by its scheme",
  opts,
  async () => {
    await initGpu();
    const data = await twoChannelDataset();
    const dataset = await readDataset(data);
    const config = resolveConfig(undefined, {
      ...datasetOverrides(dataset),
      "data.dataset": data,
      out: join(root, "two_channel_run"),
      "model.baseChannels": "4",
      "model.depth": "2",
      "data.patchSize": "16,16,16",
      "data.workers": "0",
      epochs: "1",
      itersPerEpoch: "2",
    });
    assert.equal(config.model.inChannels, 2);
    assert.equal(config.model.classes, 2);
    const result = await train({
      config,
      validate: datasetValidator({ patchSize: [16, 16, 16], batchSize: 2 }),
    });
    assert.equal(result.steps, 2);
    const record = (await readRunRecord(config.out))!;
    assert.deepEqual(record.channelNormalisations, [
      { kind: "ct-window", lo: -1000, hi: 400 },
      { kind: "zscore-case" },
    ]);
    const ckpt = await loadCheckpoint(join(config.out, "best.safetensors"));
    assert.deepEqual(ckpt.meta.channelNormalisations, record.channelNormalisations);
    // A one-channel config on this dataset is refused before training, naming the fix.
    await assert.rejects(
      train({
        config: { ...config, model: { ...config.model, inChannels: 1 }, out: join(root, "x") },
      }),
      /the dataset has 2 input channel\(s\) but model\.inChannels is 1; set --model\.inChannels 2/,
    );
  },
);
