/**
 * The loader's memory on the consumer's thread: batches the consumer drops must be collected
 * as it goes, not pile up. When batch buffers were allocated in the workers and reached this
 * thread only by transfer, dropped batches piled up to 290–480 MiB here before V8 collected
 * them; allocated on this thread and lent to the workers, they stay under ~70 MiB.
 */

import { ok, rejects, strictEqual } from "node:assert/strict";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset, resolveCase } from "../../src/data/dataset.ts";
import { batchBuffers, BatchReader, createLoader } from "../../src/data/loader.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { withTempDir } from "./temp_dir.ts";

const MiB = 2 ** 20;
const PATCH: Shape3 = [32, 64, 64];

Deno.test("loader memory: 720 MiB of dropped batches never hold this thread's buffers above 200 MiB", async () => {
  await withTempDir(async (dir) => {
    await generateSynthDataset(dir, { cases: 2, shape: [32, 64, 64], seed: 4, chunks: 32 });
    const batchSize = 4, batches = 160;
    const voxels = batchSize * PATCH[0] * PATCH[1] * PATCH[2];
    const batchBytes = voxels * (4 + 1 + 4); // image f32, label u8, label u32
    const loader = await createLoader({
      dataset: dir,
      patchSize: PATCH,
      batchSize,
      seed: 0,
      workers: 2,
      split: "all",
    });
    const before = Deno.memoryUsage().external;
    let peak = 0;
    try {
      for (let i = 0; i < batches; i++) {
        const { value } = await loader.next();
        strictEqual(value.image.length, voxels);
        peak = Math.max(peak, Deno.memoryUsage().external - before);
      }
    } finally {
      loader.close();
    }
    ok(batches * batchBytes >= 720 * MiB);
    ok(peak < 200 * MiB, `external memory grew by ${(peak / MiB).toFixed(0)} MiB`);
  });
});

Deno.test("BatchReader fills the buffers it is lent and refuses ones of the wrong size", async () => {
  await withTempDir(async (dir) => {
    await generateSynthDataset(dir, { cases: 1, shape: [16, 32, 32], seed: 5, chunks: 16 });
    const dataset = await readDataset(dir);
    const locations = { [dataset.cases[0].id]: resolveCase(dataset, dataset.cases[0].id) };
    const patch: Shape3 = [8, 16, 16];
    const reader = new BatchReader({
      type: "init",
      locations,
      patchSize: patch,
      norm: { kind: "ct-window", lo: -1000, hi: 400 },
      cacheBytes: MiB,
    });
    const requests = [...Array(2)].map((_, i) => ({
      caseId: dataset.cases[0].id,
      start: [4, 8 * i, 8] as Shape3,
      centeredOn: 0,
      seed: i,
    }));
    const lent = batchBuffers(2, patch);
    const reply = await reader.read(0, requests, lent);
    ok(reply.image === lent.image && reply.label === lent.label);
    ok(reply.labelU32 === lent.labelU32);
    ok(lent.image.some((v) => v > 0), "the image was written");
    ok(lent.labelU32.every((v, i) => v === lent.label[i]));
    await rejects(
      reader.read(1, requests, batchBuffers(3, patch)),
      /batch 1: buffers of 6144 voxels for 2 patches of 2048/,
    );
  });
});
