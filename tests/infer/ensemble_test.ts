/**
 * Ensembles and post-processing in prediction, with tiny random checkpoints: one model twice
 * is that model exactly; two models give the arg-max of the mean of their separately computed
 * probabilities; models that disagree are refused naming the disagreement; a checkpoint's
 * post-processing is applied by predictVolume, predictCase and `voxseg infer`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import * as zarr from "zarrita";
import FileSystemStore from "@zarrita/storage/fs";
import { readNifti, writeNifti } from "../../src/data/nifti.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import type { Tensor } from "../../src/gpu/mod.ts";
import {
  EnsembleError,
  type LoadedModel,
  loadModel,
  loadModels,
  predictCase,
  predictVolume,
} from "../../src/infer/predict.ts";
import { applyPostprocessing, writePostprocessing } from "../../src/infer/postprocess.ts";
import { argmaxClasses, slidingWindow } from "../../src/infer/sliding_window.ts";
import type { Postprocessing } from "../../src/nn/checkpoint.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { blobVolume, opts, tempRoot, tinyCheckpoint } from "./infer_fixture.ts";

const root = tempRoot("voxseg_ensemble_test_");
const NONE = { kind: "none" } as const;
const SHAPE: Shape3 = [20, 22, 18];
const volume = blobVolume(SHAPE, 3);
const A = await tinyCheckpoint(root, "a.safetensors", { normalisation: NONE, seed: 1 });
const B = await tinyCheckpoint(root, "b.safetensors", { normalisation: NONE, seed: 2 });

/** Runs `fn` with the checkpoints loaded, disposing them after. */
async function withModels(paths: string[], fn: (m: LoadedModel[]) => Promise<void>) {
  const models: LoadedModel[] = [];
  try {
    for (const p of paths) models.push(await loadModel(p));
    await fn(models);
  } finally {
    for (const m of models) m.dispose();
  }
}

const counts = (labels: Uint8Array) => {
  const c = [0, 0, 0];
  for (const v of labels) c[v]++;
  return c;
};

Deno.test(
  "an ensemble of one model twice gives exactly its labels, with and without flips",
  opts,
  async () => {
    await withModels([A, A], async ([a1, a2]) => {
      for (const tta of [false, [2]]) {
        const alone = await predictVolume(a1, volume, { tta });
        const twice = await predictVolume([a1, a2], volume, { tta });
        assert.deepEqual(twice.labels.data, alone.labels.data, `tta ${tta}`);
        assert.deepEqual(twice.summary.classes, alone.summary.classes);
        assert.equal(twice.summary.models, 2);
        assert.equal(alone.summary.models, undefined);
        assert.equal(twice.summary.windows, 2 * alone.summary.windows!);
      }
      const same = await predictVolume([a1, a1], volume);
      assert.deepEqual(same.labels.data, (await predictVolume([a1], volume)).labels.data);
    });
  },
);

Deno.test(
  "an ensemble of two models is the arg-max of their mean probabilities",
  opts,
  async () => {
    await withModels([A, B], async ([a, b]) => {
      const net = (m: LoadedModel) => (x: Tensor) => m.model.forward(x, { training: false });
      const sw = { patchSize: a.meta.patchSize, overlap: 0.5, batchSize: 1 };
      const image = volume.data as Float32Array;
      const pa = await slidingWindow(net(a), image, SHAPE, 3, sw);
      const pb = await slidingWindow(net(b), image, SHAPE, 3, sw);
      const mean = pa.map((p, i) => (p + pb[i]) / 2);
      const both = await slidingWindow([net(a), net(b)], image, SHAPE, 3, sw);
      let worst = 0;
      for (let i = 0; i < mean.length; i++) worst = Math.max(worst, Math.abs(both[i] - mean[i]));
      assert.ok(worst < 1e-6, `ensemble probabilities differ from the mean by ${worst}`);

      const want = argmaxClasses(mean, 3);
      const got = (await predictVolume([a, b], volume, { batchSize: 1 })).labels.data as Uint8Array;
      const v = want.length;
      for (let i = 0; i < v; i++) {
        if (got[i] === want[i]) continue;
        const gap = Math.abs(mean[want[i] * v + i] - mean[got[i] * v + i]);
        assert.ok(gap < 1e-5, `voxel ${i}: ${got[i]} against ${want[i]}, not a tie (gap ${gap})`);
      }
      // The ensemble is neither model alone.
      for (const m of [a, b]) {
        const alone = (await predictVolume(m, volume, { batchSize: 1 })).labels.data;
        assert.ok(alone.some((l, i) => l !== got[i]), `the ensemble equals ${m.name} alone`);
      }
    });
  },
);

Deno.test("models that disagree are refused, naming the first disagreement", opts, async () => {
  const spacing = await tinyCheckpoint(root, "c.safetensors", {
    normalisation: NONE,
    spacingMm: [2, 1, 1],
  });
  const classes = await tinyCheckpoint(root, "d.safetensors", {
    normalisation: NONE,
    model: { classes: 2 },
  });
  const norm = await tinyCheckpoint(root, "e.safetensors");
  await withModels([A, spacing, classes, norm], async ([a, c, d, e]) => {
    await assert.rejects(
      predictVolume([a, c], volume),
      (err: Error) =>
        err instanceof EnsembleError &&
        /^models disagree on training spacing: model 1 \("a"\) has 1×1×1 mm, model 2 \("c"\) 2×1×1 mm; an ensemble averages/
          .test(err.message),
    );
    await assert.rejects(
      predictVolume([a, a, d], volume),
      /disagree on classes: model 1 \("a"\) has background, lung, infection, model 3 \("d"\) background, lung;/,
    );
    await assert.rejects(predictVolume([a, e], volume), /disagree on intensity normalisation: /);
  });
  await assert.rejects(loadModels([A, spacing]), EnsembleError);
  const input = join(root, "in.nii.gz");
  await writeNifti(input, volume);
  const out = join(root, "bad.nii.gz");
  const r = await runCliCaptured([
    "infer",
    "--model",
    `${A},${spacing}`,
    "--in",
    input,
    "--out",
    out,
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /models disagree on training spacing/);
  const empty = await runCliCaptured(["infer", "--model", `${A},`, "--in", input, "--out", out]);
  assert.match(empty.stderr, /--model takes a checkpoint or checkpoints separated by commas/);
});

Deno.test("voxseg infer --model a,b writes the ensemble's labels", opts, async () => {
  const input = join(root, "ens_in.nii.gz"), out = join(root, "ens_out.nii.gz");
  const summary = join(root, "ens.json");
  await writeNifti(input, volume);
  const r = await runCliCaptured([
    ...["infer", "--model", `${A},${B}`, "--in", input, "--out", out, "--summary", summary],
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(await Deno.readTextFile(summary));
  assert.equal(report.models, 2);
  assert.equal(report.model, `${A},${B}`);
  await withModels([A, B], async (models) => {
    const want = await predictVolume(models, await readNifti(input));
    assert.deepEqual((await readNifti(out)).data, want.labels.data);
  });
});

Deno.test(
  "a checkpoint's post-processing is applied by predictVolume, predictCase and the CLI",
  opts,
  async () => {
    const path = join(root, "pp.safetensors");
    await Deno.copyFile(A, path);
    const pp: Postprocessing = { connectivity: 6, foregroundLcc: true, perClassLcc: [1, 2] };
    await writePostprocessing(path, pp);
    await withModels([path, A], async ([p, a]) => {
      assert.deepEqual(p.meta.postprocessing, pp);
      const raw = await predictVolume(p, volume, { postprocess: false });
      assert.equal(raw.summary.postprocessing, undefined);
      const want = (raw.labels.data as Uint8Array).slice();
      const removed = applyPostprocessing(want, SHAPE, pp);
      assert.ok(removed > 0, "the random network's labels have components to remove");
      const got = await predictVolume(p, volume);
      assert.deepEqual(got.labels.data, want);
      assert.deepEqual(got.summary.postprocessing, { applied: true, removedVoxels: removed });
      assert.deepEqual(got.summary.classes.map((c) => c.voxels), counts(want));
      // An ensemble needs its models to agree on it, unless it is switched off.
      await assert.rejects(
        predictVolume([p, a], volume),
        /disagree on post-processing: .*--no-postprocess/,
      );
      const off = await predictVolume([p, a], volume, { postprocess: false });
      assert.deepEqual(off.labels.data, raw.labels.data, "the same weights twice");
      // A case: the label map is held, post-processed, then written chunk by chunk.
      const dir = join(root, "pp.zarr");
      await writeCase(dir, {
        image: volume,
        label: { ...volume, data: new Uint8Array(want.length) },
        chunks: 8,
      });
      const c = await predictCase(p, dir);
      assert.deepEqual(c.summary.classes, got.summary.classes);
      assert.deepEqual(c.summary.postprocessing, got.summary.postprocessing);
      const array = await zarr.open.v3(
        zarr.root(new FileSystemStore(dir)).resolve("labels/pred/0"),
        { kind: "array" },
      );
      assert.deepEqual((await zarr.get(array)).data, want);
      // The CLI applies it, and --no-postprocess leaves it out.
      const input = join(root, "pp_in.nii.gz"), out = join(root, "pp_out.nii.gz");
      await writeNifti(input, volume);
      const summary = join(root, "pp.json");
      const r = await runCliCaptured([
        ...["infer", "--model", path, "--in", input, "--out", out, "--summary", summary],
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(summary)).postprocessing, {
        applied: true,
        removedVoxels: removed,
      });
      assert.deepEqual((await readNifti(out)).data, want);
      const r2 = await runCliCaptured([
        ...["infer", "--model", path, "--in", input, "--out", out, "--no-postprocess"],
      ]);
      assert.equal(r2.code, 0, r2.stderr);
      assert.deepEqual((await readNifti(out)).data, raw.labels.data);
    });
  },
);
