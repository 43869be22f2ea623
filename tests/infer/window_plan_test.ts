/**
 * The host side of the sliding window, without a GPU: where the windows go and how batches
 * are formed (planWindows), how windows are cut out of the image (gatherWindows), and how
 * predictions are blended and handed out (BlendAccumulator).
 */

import assert from "node:assert/strict";
import { gaussianImportance, windowStarts } from "../../src/infer/gaussian.ts";
import {
  type Batch,
  BlendAccumulator,
  gatherWindows,
  planWindows,
} from "../../src/infer/sliding_window.ts";

Deno.test("planWindows on 5×7×9 with a 4³ patch: every window once per row, full batches", () => {
  const plan = planWindows([5, 7, 9], { patchSize: [4, 4, 4], overlap: 0.5, batchSize: 3 });
  assert.deepEqual(plan.padded, [5, 7, 9]);
  assert.deepEqual(plan.zStarts, windowStarts(5, 4, 0.5));
  const ys = windowStarts(7, 4, 0.5), xs = windowStarts(9, 4, 0.5);
  const perRow = ys.length * xs.length;
  assert.equal(plan.total, plan.zStarts.length * perRow);
  plan.zStarts.forEach((_, row) => {
    const batches = plan.batches.filter((b) => b.row === row);
    assert.equal(batches.filter((b) => b.firstOfRow).length, 1, `row ${row}: one first batch`);
    assert.equal(batches.filter((b) => b.lastOfRow).length, 1, `row ${row}: one last batch`);
    assert.ok(batches[0].firstOfRow && batches.at(-1)!.lastOfRow);
    for (const b of batches) assert.equal(b.windows.length, 3, "every batch has one shape");
    const real = batches.flatMap((b) => b.windows.slice(0, b.count).map(([y, x]) => `${y},${x}`));
    assert.deepEqual(real, ys.flatMap((y) => xs.map((x) => `${y},${x}`)));
  });
  const rows = plan.batches.map((b) => b.row);
  assert.deepEqual(rows, [...rows].sort((a, b) => a - b), "batches run row by row along z");
});

Deno.test("planWindows pads a 2×3×4 volume to its 4³ patch: one window, one batch", () => {
  const plan = planWindows([2, 3, 4], { patchSize: [4, 4, 4], batchSize: 2 });
  assert.deepEqual(plan.padded, [4, 4, 4]);
  assert.equal(plan.total, 1);
  assert.equal(plan.batches.length, 1);
  // A row with fewer windows than a batch is not padded up.
  assert.deepEqual(plan.batches[0].windows, [[0, 0]]);
  assert.equal(plan.batches[0].count, 1);
});

Deno.test("planWindows folds the flip average into the Gaussian importance map", () => {
  const patch: [number, number, number] = [3, 5, 6];
  const plain = planWindows(patch, { patchSize: patch });
  assert.deepEqual(plain.weights, gaussianImportance(patch));
  const flipped = planWindows(patch, { patchSize: patch, flips: [[2]] });
  assert.deepEqual(flipped.weights, gaussianImportance(patch).map((w) => w / 2));
});

Deno.test("gatherWindows cuts a 4³ window out of a 2×3×4 volume and pads the rest", () => {
  const plan = planWindows([2, 3, 4], { patchSize: [4, 4, 4] });
  const image = Float32Array.from({ length: 24 }, (_, i) => i + 1);
  const input = new Float32Array(64).fill(NaN);
  const x = gatherWindows(plan, { data: image, depth: 2 }, plan.batches[0], input, -7);
  assert.equal(x.length, 64);
  for (let z = 0; z < 4; z++) {
    for (let y = 0; y < 4; y++) {
      for (let xi = 0; xi < 4; xi++) {
        const want = z < 2 && y < 3 ? image[4 * (y + 3 * z) + xi] : -7;
        assert.equal(x[xi + 4 * (y + 4 * z)], want, `voxel (${z}, ${y}, ${xi})`);
      }
    }
  }
});

Deno.test("BlendAccumulator: one window's probabilities come back unweighted, arg-max per voxel", () => {
  const shape: [number, number, number] = [2, 3, 4];
  const plan = planWindows(shape, { patchSize: shape });
  const acc = new BlendAccumulator(plan, 2);
  // Class 1 wins where x ≥ 2.
  const host = new Float32Array(2 * 24);
  for (let i = 0; i < 24; i++) {
    const p1 = i % 4 >= 2 ? 0.75 : 0.25;
    host[i] = 1 - p1;
    host[24 + i] = p1;
  }
  const batch: Batch = plan.batches[0];
  acc.add(batch, host);
  const slab = acc.slab(0);
  assert.equal(slab.z0, 0);
  assert.equal(slab.depth, 2);
  const labels = new Uint8Array(24);
  slab.argmax(labels);
  assert.deepEqual([...labels], Array.from({ length: 24 }, (_, i) => (i % 4 >= 2 ? 1 : 0)));
  const plane = new Float32Array(2 * 12);
  for (let z = 0; z < 2; z++) {
    slab.probabilities(z, plane);
    for (let c = 0; c < 2; c++) {
      for (let i = 0; i < 12; i++) {
        const want = host[c * 24 + z * 12 + i];
        assert.ok(Math.abs(plane[c * 12 + i] - want) < 1e-6, `c ${c} z ${z} i ${i}`);
      }
    }
  }
  assert.throws(() => slab.probabilities(2, plane), /plane 2 outside the slab \(0\.\.1\)/);
});

Deno.test("BlendAccumulator over two overlapping rows (6×1×1, patch 4): slabs tile z, blends exact", () => {
  const plan = planWindows([6, 1, 1], { patchSize: [4, 1, 1] });
  assert.deepEqual(plan.zStarts, [0, 2]);
  const acc = new BlendAccumulator(plan, 2);
  // Row r predicts class 1 with probability 0.2 + 0.4·r: where the rows overlap (z 2, 3) the
  // blend lies strictly between, elsewhere it is the one row's value.
  const row = (r: number) =>
    Float32Array.from({ length: 8 }, (_, i) => i < 4 ? 0.8 - 0.4 * r : 0.2 + 0.4 * r);
  const p1: number[] = [];
  const slabs: [number, number][] = [];
  for (const b of plan.batches) {
    acc.add(b, row(b.row));
    const slab = acc.slab(b.row);
    slabs.push([slab.z0, slab.depth]);
    const plane = new Float32Array(2);
    for (let z = 0; z < slab.depth; z++) {
      slab.probabilities(z, plane);
      assert.ok(Math.abs(plane[0] + plane[1] - 1) < 1e-6, "probabilities sum to 1");
      p1.push(plane[1]);
    }
    acc.advance(b.row);
  }
  assert.deepEqual(slabs, [[0, 2], [2, 4]]);
  assert.ok(Math.abs(p1[0] - 0.2) < 1e-6 && Math.abs(p1[1] - 0.2) < 1e-6, `rows 0: ${p1}`);
  assert.ok(p1[2] > 0.2 + 1e-3 && p1[2] < 0.6 - 1e-3, `overlap blends both rows: ${p1}`);
  assert.ok(p1[3] > 0.2 + 1e-3 && p1[3] < 0.6 - 1e-3, `overlap blends both rows: ${p1}`);
  assert.ok(Math.abs(p1[4] - 0.6) < 1e-6 && Math.abs(p1[5] - 0.6) < 1e-6, `row 1 only: ${p1}`);
});
