/**
 * `voxseg eval` on a tiny synthetic dataset (3 cases of 16×32×32) with a random checkpoint:
 * the reports hold one row per case and class plus the means, the numbers agree with the
 * metrics recomputed from a prediction, and a split without labelled cases is refused.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset, resolveCase } from "../../src/data/dataset.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { segmentationMetrics } from "../../src/infer/metrics.ts";
import { loadModel, predictVolume } from "../../src/infer/predict.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { opts, tempRoot, tinyCheckpoint } from "./infer_fixture.ts";

const root = tempRoot("voxseg_eval_test_");

Deno.test(
  "eval CLI writes JSON and CSV reports whose numbers match the metrics",
  opts,
  async () => {
    const data = join(root, "synth");
    await generateSynthDataset(data, { cases: 3, shape: [16, 32, 32], val: 0, test: 0.67 });
    const dataset = await readDataset(data);
    const test = dataset.cases.filter((c) => c.split === "test");
    assert.ok(test.length >= 1, "the split has test cases");
    const model = await tinyCheckpoint(root, "m.safetensors", {
      spacingMm: dataset.targetSpacingMm,
      normalisation: { kind: "ct-window", lo: -1000, hi: 400 },
    });
    const prefix = join(root, "report");
    const r = await runCliCaptured(["eval", "--model", model, "--data", data, "--out", prefix]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mean\s+lung\s/);

    const csv = (await Deno.readTextFile(`${prefix}.csv`)).trim().split("\n");
    assert.equal(
      csv[0],
      "case,class,dice,hd95_mm,precision,recall,pred_ml,ref_ml,vol_diff_ml,vol_diff_rel",
    );
    assert.equal(csv.length, 1 + 2 * test.length + 2, "rows: header, case × class, class means");
    const report = JSON.parse(await Deno.readTextFile(`${prefix}.json`));
    assert.deepEqual(report.classes, ["lung", "infection"]);
    assert.equal(report.cases.length, test.length);

    // Recompute the first case's lung metrics from a prediction.
    const loaded = await loadModel(model);
    try {
      const reader = await openCase(resolveCase(dataset, test[0].id));
      const image = await reader.readFullImage();
      const { labels } = await predictVolume(loaded, image);
      const ref = (await reader.readFullLabel()).data as Uint8Array;
      const [lung] = segmentationMetrics(
        labels.data as Uint8Array,
        ref,
        image.shape,
        image.spacingMm,
        [1],
      );
      const got = report.cases[0].metrics.lung;
      for (const k of ["dice", "precision", "recall", "predMl", "refMl"] as const) {
        if (Number.isNaN(lung[k])) assert.equal(got[k], null, k);
        else assert.ok(Math.abs(got[k] - lung[k]) < 1e-9, `${k}: ${got[k]} vs ${lung[k]}`);
      }
      const hd = lung.hd95Mm;
      assert.equal(got.hd95Mm, Number.isNaN(hd) ? null : hd === Infinity ? "inf" : hd);
    } finally {
      loaded.dispose();
    }

    const none = await runCliCaptured(["eval", "--model", model, "--data", data, "--split", "val"]);
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /no labelled val cases \(labelled cases per split: train \d+, val 0, test \d+\)/,
    );
  },
);
