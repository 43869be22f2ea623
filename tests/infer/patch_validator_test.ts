/**
 * The patch validator (nnU-Net's pseudo Dice): the same patches at every validation, and Dice
 * pooled over them equal to the metrics module's Dice of the concatenated predictions.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset, resolveCase } from "../../src/data/dataset.ts";
import { normalizationFromDataset } from "../../src/data/normalize.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { patchSampler, readPatch } from "../../src/data/sampler.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { fromArray, initGpu, readTensors } from "../../src/gpu/mod.ts";
import { dicePerClass } from "../../src/infer/metrics.ts";
import { patchValidator } from "../../src/infer/patch_validator.ts";
import { argmaxClasses } from "../../src/infer/sliding_window.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { defaultUNetConfig } from "../../src/nn/unet3d.ts";
import { withTempDir } from "../data/temp_dir.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test(
  "patch validator: fixed patches, Dice pooled over them as the metrics module's",
  opts,
  () =>
    withTempDir(async (dir) => {
      await initGpu();
      const data = join(dir, "ds");
      await generateSynthDataset(data, { cases: 3, shape: [16, 32, 32], val: 0.34, test: 0 });
      const dataset = await readDataset(data);
      const norm = normalizationFromDataset(dataset, "ct-window");
      const patch: Shape3 = [16, 16, 16];
      const model = new UNet3D({ ...defaultUNetConfig, baseChannels: 4, depth: 2 }, 5);
      const validate = patchValidator({ patchSize: patch, patches: 5, batchSize: 2, seed: 3 });
      const a = await validate(model, { norm, dataset, split: "val" });
      const b = await validate(model, { norm, dataset, split: "val" });
      assert.deepEqual(a, b, "the same patches give the same figures");

      // Independently: the same five patches, predicted one by one, Dice of all voxels pooled.
      const sampler = patchSampler(dataset, {
        patchSize: patch,
        seed: 3,
        split: "val",
        foregroundFraction: 0.5,
      });
      const preds: Uint8Array[] = [], truths: Uint8Array[] = [];
      for (let i = 0; i < 5; i++) {
        const request = sampler.next().value;
        const reader = await openCase(resolveCase(dataset, request.caseId));
        const p = await readPatch(reader, request, patch, norm);
        const logits = model.forward(fromArray([1, 1, ...patch], p.image), { training: false });
        const [host] = await readTensors([logits]);
        logits.dispose();
        preds.push(argmaxClasses(host, 3));
        truths.push(p.label);
      }
      const concat = (xs: Uint8Array[]) => {
        const out = new Uint8Array(xs.reduce((s, x) => s + x.length, 0));
        let o = 0;
        for (const x of xs) out.set(x, (o += x.length) - x.length);
        return out;
      };
      const dice = dicePerClass(concat(preds), concat(truths), 3);
      const close = (
        x: number,
        y: number,
      ) => (Number.isNaN(x) ? Number.isNaN(y) : Math.abs(x - y) < 1e-6);
      assert.ok(
        close(a.metrics["dice/background"], dice[0]),
        `${a.metrics["dice/background"]} vs ${dice[0]}`,
      );
      assert.ok(close(a.metrics["dice/lung"], dice[1]));
      assert.ok(close(a.metrics["dice/infection"], dice[2]));
      model.dispose();
    }),
);
