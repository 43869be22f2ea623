/**
 * Cropping to the non-background region: the box on hand-made volumes under each background
 * rule, margins, the all-background case, crop/uncrop identity, and the cropped affine.
 */

import assert from "node:assert/strict";
import {
  backgroundValue,
  type Box3,
  cropArray,
  cropVolume,
  fullBox,
  nonZeroBox,
  uncrop,
  uncropInto,
  unionBox,
} from "../../src/data/crop.ts";
import { affineFromSpacing, type Shape3, type Volume } from "../../src/data/volume.ts";
import { Random } from "../../src/base/random.ts";

const SHAPE: Shape3 = [6, 7, 8];
const at = (z: number, y: number, x: number) => x + SHAPE[2] * (y + SHAPE[1] * z);

/** Air (−1024) with tissue at (1, 2, 3) and (4, 5, 3), and one −2000 voxel at (2, 3, 6). */
function handMade(): Volume {
  const data = new Int16Array(6 * 7 * 8).fill(-1024);
  data[at(1, 2, 3)] = 40;
  data[at(4, 5, 3)] = 60;
  data[at(2, 3, 6)] = -2000;
  return { shape: SHAPE, spacingMm: [2, 1, 0.5], affine: affineFromSpacing([2, 1, 0.5]), data };
}

Deno.test("nonZeroBox: the bounding box of voxels differing from the background, per rule", () => {
  const v = handMade();
  assert.equal(backgroundValue(v, "min"), -2000);
  assert.equal(backgroundValue(v, "corners"), -1024);
  // Corner mode: air is background; the box spans the three non-air voxels.
  assert.deepEqual(nonZeroBox(v, { background: "corners" }), {
    start: [1, 2, 3],
    size: [4, 4, 4],
  });
  assert.deepEqual(nonZeroBox(v, { background: -1024 }), nonZeroBox(v, { background: "corners" }));
  // The minimum is a single voxel inside: every other voxel differs, so nothing is cropped.
  assert.deepEqual(nonZeroBox(v), fullBox(SHAPE));
  // A margin grows the box, clipped to the volume.
  assert.deepEqual(nonZeroBox(v, { background: "corners", margin: 2 }), {
    start: [0, 0, 1],
    size: [6, 7, 7],
  });
  assert.throws(() => nonZeroBox(v, { margin: -1 }), /margin must be a whole number/);
});

Deno.test("nonZeroBox: a zero-background image (MRI style) with the default min rule", () => {
  const data = new Float32Array(6 * 7 * 8);
  data[at(2, 1, 0)] = 0.5;
  data[at(3, 6, 2)] = 1.5;
  assert.deepEqual(nonZeroBox({ data, shape: SHAPE }), { start: [2, 1, 0], size: [2, 6, 3] });
  assert.equal(nonZeroBox({ data: new Float32Array(6 * 7 * 8).fill(-3), shape: SHAPE }), undefined);
});

Deno.test("unionBox joins boxes and passes one through when the other is nothing", () => {
  const a: Box3 = { start: [1, 2, 3], size: [2, 2, 2] };
  const b: Box3 = { start: [0, 3, 4], size: [1, 4, 5] };
  assert.deepEqual(unionBox(a, b), { start: [0, 2, 3], size: [3, 5, 6] });
  assert.deepEqual(unionBox(undefined, b), b);
  assert.equal(unionBox(undefined, undefined), undefined);
});

Deno.test("cropVolume / uncrop: the crop holds the box's voxels and pastes back to the original", () => {
  const v = handMade();
  const box = nonZeroBox(v, { background: "corners" })!;
  const crop = cropVolume(v, box);
  assert.deepEqual(crop.shape, [4, 4, 4]);
  assert.ok(crop.data instanceof Int16Array);
  assert.equal(crop.data[3 * 16 + 3 * 4 + 0], 60); // (4,5,3) − (1,2,3)
  assert.equal(crop.data[0], 40); // (1,2,3) is the box's first voxel
  // Everything outside is −1024, so pasting into −1024 restores the volume exactly.
  assert.deepEqual(uncrop(crop.data, box, SHAPE, -1024), v.data);
  // The affine moves the origin to the box start: voxel 0 of the crop is where (1,2,3) was.
  assert.deepEqual(crop.affine.filter((_, i) => i % 4 === 3).slice(0, 3), [3 * 0.5, 2 * 1, 1 * 2]);
  assert.deepEqual(crop.spacingMm, v.spacingMm);
});

Deno.test("cropArray / uncropInto: random boxes round-trip and leave the rest untouched", () => {
  const rng = new Random(5);
  const data = Float32Array.from({ length: 6 * 7 * 8 }, () => rng.normal());
  for (let t = 0; t < 20; t++) {
    const start = SHAPE.map((n) => rng.int(0, n)) as Shape3;
    const size = SHAPE.map((n, a) => rng.int(1, n - start[a] + 1)) as Shape3;
    const box = { start, size };
    const crop = cropArray(data, SHAPE, box);
    const dest = new Float32Array(data.length).fill(7);
    uncropInto(dest, SHAPE, crop, box);
    for (let z = 0; z < 6; z++) {
      for (let y = 0; y < 7; y++) {
        for (let x = 0; x < 8; x++) {
          const inside = [z, y, x].every((c, a) => c >= start[a] && c < start[a] + size[a]);
          assert.equal(dest[at(z, y, x)], inside ? data[at(z, y, x)] : 7);
        }
      }
    }
  }
  assert.throws(
    () => cropArray(data, SHAPE, { start: [5, 0, 0], size: [2, 1, 1] }),
    /must lie inside the volume \[6,7,8\]/,
  );
});
