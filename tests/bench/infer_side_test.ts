/**
 * voxseg's side of `bench infer`'s throughput row runs in a fresh process, as the PyTorch
 * peer does, so that both peaks of resident memory are taken the same way
 * (src/cli/bench/infer.ts): the child's labels are those of the same prediction run here, and
 * it reports its own peak.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { initGpu } from "../../src/gpu/mod.ts";
import { checkpointMeta, phantomCt, voxsegInferSideInChild } from "../../src/cli/bench/infer.ts";
import { loadModel, predictVolume } from "../../src/infer/predict.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { saveCheckpoint } from "../../src/nn/checkpoint.ts";
import { readWeights } from "../../src/nn/weights.ts";
import type { Shape3 } from "../../src/data/volume.ts";

Deno.test("bench infer: voxseg's timed prediction runs in a child and gives this process's labels", async () => {
  await initGpu();
  const dir = await Deno.makeTempDir({ prefix: "voxseg_infer_side_" });
  try {
    const patch: Shape3 = [16, 16, 16];
    const net = new UNet3D({ inChannels: 1, classes: 3, baseChannels: 4, depth: 2 }, 3);
    const model = join(dir, "tiny.safetensors");
    await saveCheckpoint(model, {
      weights: await readWeights(net),
      meta: checkpointMeta(net, patch, [1, 1, 1]),
    });
    net.dispose();
    const shape: Shape3 = [16, 24, 40];
    const labelsOut = join(dir, "labels.u8");
    const side = await voxsegInferSideInChild(model, shape, labelsOut);
    strictEqual(side.process, "fresh child process");
    ok(side.seconds > 0 && side.windows > 1, JSON.stringify(side));
    if (Deno.build.os === "linux") ok(side.rss_peak_mb! >= side.rss_before_mb! * 0.5);

    const loaded = await loadModel(model);
    try {
      const here = await predictVolume(loaded, phantomCt(shape, [1, 1, 1]).image, {
        overlap: 0.5,
        batchSize: 2,
      });
      const labels = await Deno.readFile(labelsOut);
      strictEqual(labels.length, shape[0] * shape[1] * shape[2]);
      deepStrictEqual(labels, Uint8Array.from(here.labels.data));
      ok(new Set(labels).size > 1, "the random network's labels are not all one class");
    } finally {
      loaded.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
