/**
 * Metrics on hand-made volumes with known values: Dice, HD95 (single voxels and parallel
 * planes at anisotropic spacing, shifted cubes against a brute-force reference), the
 * distance transform against brute force, surfaces, percentiles, and every empty-mask case.
 */

import assert from "node:assert/strict";
import { squaredDistanceTransform } from "../../src/infer/distance_transform.ts";
import {
  dicePerClass,
  hausdorffDistance,
  percentileSorted,
  segmentationMetrics,
  surfaceVoxels,
} from "../../src/infer/metrics.ts";
import { Random } from "../../src/base/random.ts";
import type { Shape3 } from "../../src/data/volume.ts";

const near = (a: number, b: number, tol = 1e-9) =>
  assert.ok(Math.abs(a - b) <= tol, `${a} is not ${b} (±${tol})`);

function box(shape: Shape3, lo: Shape3, hi: Shape3, value = 1): Uint8Array {
  const [D, H, W] = shape;
  const out = new Uint8Array(D * H * W);
  for (let z = lo[0]; z < hi[0]; z++) {
    for (let y = lo[1]; y < hi[1]; y++) {
      for (let x = lo[2]; x < hi[2]; x++) out[(z * H + y) * W + x] = value;
    }
  }
  return out;
}

function coords(i: number, [, H, W]: Shape3): Shape3 {
  return [Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W];
}

/** HD95 by brute force over surface voxel pairs (MONAI's definition). */
function bruteHd95(pred: Uint8Array, ref: Uint8Array, shape: Shape3, sp: Shape3): number {
  const sa = surfaceVoxels(pred, shape), sb = surfaceVoxels(ref, shape);
  const pts = (s: Uint8Array) => [...s.keys()].filter((i) => s[i]).map((i) => coords(i, shape));
  const a = pts(sa), b = pts(sb);
  const directed = (from: Shape3[], to: Shape3[]) =>
    from.map((p) =>
      Math.min(
        ...to.map((q) =>
          Math.hypot((p[0] - q[0]) * sp[0], (p[1] - q[1]) * sp[1], (p[2] - q[2]) * sp[2])
        ),
      )
    ).sort((x, y) => x - y);
  return Math.max(percentileSorted(directed(a, b), 95), percentileSorted(directed(b, a), 95));
}

Deno.test("Dice of two 2×2×2 cubes sharing half their voxels is 0.5; absent classes NaN", () => {
  const shape: Shape3 = [4, 4, 4];
  const pred = box(shape, [0, 0, 0], [2, 2, 2]);
  const ref = box(shape, [1, 0, 0], [3, 2, 2]);
  const [, fg, absent] = dicePerClass(pred, ref, 3);
  near(fg, 0.5);
  assert.ok(Number.isNaN(absent));
});

Deno.test("distance transform equals brute force on random features, anisotropic spacing", () => {
  const rng = new Random(11);
  const shape: Shape3 = [7, 9, 11];
  const spacing: Shape3 = [2.5, 0.7, 1.3];
  for (const density of [0.02, 0.3]) {
    const features = Uint8Array.from(
      { length: 7 * 9 * 11 },
      () => (rng.uniform() < density ? 1 : 0),
    );
    features[5] = 1;
    const d2 = squaredDistanceTransform(features, shape, spacing);
    const pts = [...features.keys()].filter((i) => features[i]).map((i) => coords(i, shape));
    for (let i = 0; i < features.length; i++) {
      const p = coords(i, shape);
      const want = Math.min(
        ...pts.map((q) =>
          ((p[0] - q[0]) * spacing[0]) ** 2 + ((p[1] - q[1]) * spacing[1]) ** 2 +
          ((p[2] - q[2]) * spacing[2]) ** 2
        ),
      );
      near(d2[i], want, 1e-9 * Math.max(1, want));
    }
  }
  assert.equal(squaredDistanceTransform(new Uint8Array(8), [2, 2, 2], [1, 1, 1])[0], Infinity);
});

Deno.test("surface of a 4³ cube is its 56 outer voxels; a cube at the border keeps its face", () => {
  const shape: Shape3 = [6, 6, 6];
  const surface = surfaceVoxels(box(shape, [1, 1, 1], [5, 5, 5]), shape);
  assert.equal(surface.reduce((a, b) => a + b, 0), 4 ** 3 - 2 ** 3);
  const atBorder = surfaceVoxels(box(shape, [0, 0, 0], [6, 6, 6]), shape);
  assert.equal(atBorder.reduce((a, b) => a + b, 0), 6 ** 3 - 4 ** 3);
});

Deno.test("HD95 of two single voxels is their distance in mm (spacing 2, 1, 0.5)", () => {
  const shape: Shape3 = [5, 6, 7];
  const pred = box(shape, [0, 0, 0], [1, 1, 1]);
  const ref = box(shape, [2, 3, 4], [3, 4, 5]);
  near(hausdorffDistance(pred, ref, shape, [2, 1, 0.5]), Math.hypot(4, 3, 2));
});

Deno.test("HD95 of two full planes 5 slices apart at 1.5 mm slices is 7.5 mm", () => {
  const shape: Shape3 = [10, 8, 9];
  const pred = box(shape, [2, 0, 0], [3, 8, 9]);
  const ref = box(shape, [7, 0, 0], [8, 8, 9]);
  near(hausdorffDistance(pred, ref, shape, [1.5, 0.8, 0.8]), 7.5);
  near(hausdorffDistance(pred, pred, shape, [1.5, 0.8, 0.8]), 0);
});

Deno.test("HD95 of shifted and resized boxes equals a brute-force reference", () => {
  const shape: Shape3 = [12, 14, 16];
  const spacing: Shape3 = [2, 0.9, 0.6];
  const cases: [Shape3, Shape3, Shape3, Shape3][] = [
    [[2, 2, 2], [8, 9, 10], [3, 2, 5], [9, 9, 13]],
    [[1, 1, 1], [11, 13, 15], [4, 5, 6], [7, 8, 9]],
    [[0, 0, 0], [3, 14, 16], [6, 3, 3], [10, 6, 12]],
  ];
  for (const [a0, a1, b0, b1] of cases) {
    const pred = box(shape, a0, a1), ref = box(shape, b0, b1);
    const want = bruteHd95(pred, ref, shape, spacing);
    near(hausdorffDistance(pred, ref, shape, spacing), want, 1e-9);
  }
});

Deno.test("empty masks: Dice NaN/0, HD95 NaN/inf, precision and recall NaN as documented", () => {
  const shape: Shape3 = [4, 4, 4];
  const empty = new Uint8Array(64);
  const some = box(shape, [1, 1, 1], [3, 3, 3]);
  assert.ok(Number.isNaN(hausdorffDistance(empty, empty, shape, [1, 1, 1])));
  assert.equal(hausdorffDistance(some, empty, shape, [1, 1, 1]), Infinity);
  assert.equal(hausdorffDistance(empty, some, shape, [1, 1, 1]), Infinity);
  const [none] = segmentationMetrics(empty, empty, shape, [1, 1, 1], [1]);
  assert.ok(Number.isNaN(none.dice) && Number.isNaN(none.precision) && Number.isNaN(none.recall));
  assert.equal(none.volumeDiffMl, 0);
  const [missed] = segmentationMetrics(empty, some, shape, [2, 2, 2], [1]);
  assert.equal(missed.dice, 0);
  assert.ok(Number.isNaN(missed.precision));
  assert.equal(missed.recall, 0);
  near(missed.refMl, (8 * 8) / 1000);
  assert.equal(missed.volumeDiffRel, -1);
  const [spurious] = segmentationMetrics(some, empty, shape, [1, 1, 1], [1]);
  assert.equal(spurious.precision, 0);
  assert.ok(Number.isNaN(spurious.recall) && Number.isNaN(spurious.volumeDiffRel));
});

Deno.test("segmentationMetrics: precision, recall, volumes of overlapping boxes", () => {
  const shape: Shape3 = [6, 6, 6];
  // Class 1: prediction 3×2×2 (12 voxels), reference 2×2×2 inside it (8 voxels).
  const pred = box(shape, [0, 0, 0], [3, 2, 2]);
  const ref = box(shape, [0, 0, 0], [2, 2, 2]);
  // Class 2 only in the reference, elsewhere.
  ref.set(box(shape, [4, 4, 4], [5, 5, 5], 2).map((v, i) => v || ref[i]));
  const [one, two] = segmentationMetrics(pred, ref, shape, [2, 1, 1], [1, 2]);
  near(one.dice, (2 * 8) / (12 + 8));
  near(one.precision, 8 / 12);
  near(one.recall, 1);
  near(one.predMl, 0.024);
  near(one.refMl, 0.016);
  near(one.volumeDiffMl, 0.008);
  near(one.volumeDiffRel, 0.5);
  // 4 of the 12 predicted surface voxels (the extra slice) lie 2 mm from the reference.
  near(one.hd95Mm, 2);
  assert.equal(two.hd95Mm, Infinity);
});

Deno.test("percentileSorted matches NumPy's linear interpolation", () => {
  near(percentileSorted([0, 1, 2, 3, 4], 95), 3.8);
  near(percentileSorted([5], 95), 5);
  assert.ok(Number.isNaN(percentileSorted([], 95)));
});
