/**
 * Resampling to a target spacing: the grid convention shared with inference, identity at the
 * source spacing (bit-exact), analytic values of smooth functions (linear and Catmull-Rom
 * cubic, anisotropic target), the coarse-axis rule, label maps (hand-computed cases and round
 * trips), the resampled affine, and region resampling equal to a crop of the whole.
 */

import assert from "node:assert/strict";
import {
  axisMap,
  axisOrders,
  outputBox,
  resampledAffine,
  resampledShape,
  resampledSpacing,
  resampleImage,
  resampleLabels,
} from "../../src/data/resample.ts";
import * as inferResample from "../../src/infer/resample.ts";
import { affineFromSpacing, type Shape3, type Volume } from "../../src/data/volume.ts";
import { Random } from "../../src/base/random.ts";

/** A volume whose voxel (z, y, x) holds f at its centre, in mm from the grid's corner. */
function sampled(shape: Shape3, spacingMm: Shape3, f: (p: number[]) => number): Volume {
  const [D, H, W] = shape;
  const data = new Float32Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        data[i] = f([(z + 0.5) * spacingMm[0], (y + 0.5) * spacingMm[1], (x + 0.5) * spacingMm[2]]);
      }
    }
  }
  return { shape, spacingMm, affine: affineFromSpacing(spacingMm), data };
}

/** Largest |out − f| over output voxels whose sample lies ≥ `margin` voxels inside the input. */
function interiorError(
  input: Volume,
  out: Volume,
  f: (p: number[]) => number,
  margin: number,
): number {
  const [d, h, w] = out.shape;
  const inside = (o: number, a: number) => {
    const s = ((o + 0.5) * input.shape[a]) / out.shape[a] - 0.5;
    return input.shape[a] === 1 || (s >= margin && s <= input.shape[a] - 1 - margin);
  };
  let err = 0, counted = 0;
  for (let z = 0, i = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        if (!inside(z, 0) || !inside(y, 1) || !inside(x, 2)) continue;
        const p = [z, y, x].map((o, a) => (o + 0.5) * out.spacingMm[a]);
        err = Math.max(err, Math.abs(out.data[i] - f(p)));
        counted++;
      }
    }
  }
  assert.ok(counted >= 20, `only ${counted} interior voxels compared`);
  return err;
}

Deno.test("grid helpers: inference re-exports the data column's axisMap and resampledShape", () => {
  assert.equal(inferResample.axisMap, axisMap);
  assert.equal(inferResample.resampledShape, resampledShape);
  assert.deepEqual(resampledShape([10, 100, 7], [2.5, 0.8, 1], [1.25, 1.6, 3]), [20, 50, 2]);
  // 4 → 2: outputs sample input positions 0.5 and 2.5.
  const m = axisMap(2, 4);
  assert.deepEqual([...m.i0, ...m.i1, ...m.t], [0, 2, 1, 3, 0.5, 0.5]);
});

Deno.test("resampleImage: target = source spacing is the identity, bit for bit (order 1 and 3)", () => {
  const rng = new Random(3);
  const shape: Shape3 = [5, 7, 9], spacing: Shape3 = [3, 0.7, 0.7];
  const data = Int16Array.from({ length: 5 * 7 * 9 }, () => rng.int(-1024, 3000));
  const volume: Volume = { shape, spacingMm: spacing, affine: affineFromSpacing(spacing), data };
  const target = resampledShape(shape, spacing, spacing);
  assert.deepEqual(target, shape);
  for (const order of [1, 3] as const) {
    const out = resampleImage(volume, target, order);
    assert.deepEqual(out.shape, shape);
    assert.deepEqual([...out.data], [...data], `order ${order}`);
    assert.deepEqual(out.affine, volume.affine);
  }
  const labels = Uint8Array.from({ length: data.length }, () => rng.int(0, 4));
  assert.deepEqual(resampleLabels(labels, shape, 4, shape), labels);
});

Deno.test("resampleImage: a smooth function resamples to its analytic values (anisotropic target)", () => {
  const shape: Shape3 = [14, 22, 26], spacing: Shape3 = [2.4, 1, 1.2];
  const f = (p: number[]) => Math.sin(p[0] / 7) + Math.cos(p[1] / 5) * Math.sin(p[2] / 6 + 0.3);
  const input = sampled(shape, spacing, f);
  const target = resampledShape(shape, spacing, [1.5, 0.7, 1.9]);
  assert.deepEqual(target, [22, 31, 16]);
  const linear = resampleImage(input, target, 1);
  const cubic = resampleImage(input, target, 3);
  assert.deepEqual(cubic.spacingMm, resampledSpacing(shape, spacing, target));
  const eLinear = interiorError(input, linear, f, 1);
  const eCubic = interiorError(input, cubic, f, 1);
  // Linear interpolation errs by at most Σ h²/8·max|f''| = (2.4²/49 + 1/25 + 1.2²/36)/8.
  assert.ok(eLinear < 0.0247 && eLinear > 0.003, `linear error ${eLinear}`);
  // Catmull-Rom is third-order accurate: an order of magnitude closer on this function.
  assert.ok(eCubic < eLinear / 8, `cubic error ${eCubic} vs linear ${eLinear}`);
  // Against inference's independent trilinear resampling.
  const reference = inferResample.resampleTrilinear(input.data, shape, target);
  linear.data.forEach((v, i) => assert.ok(Math.abs(v - reference[i]) < 1e-5, `voxel ${i}`));
});

Deno.test("resampleImage: cubic reproduces a quadratic exactly inside the volume, linear does not", () => {
  const shape: Shape3 = [1, 1, 20], spacing: Shape3 = [1, 1, 1];
  const f = (p: number[]) => 3 + 0.5 * p[2] - 0.05 * p[2] * p[2];
  const input = sampled(shape, spacing, f);
  const cubic = resampleImage(input, [1, 1, 33], 3);
  const linear = resampleImage(input, [1, 1, 33], 1);
  assert.ok(interiorError(input, cubic, f, 1) < 1e-5);
  // Linear errs by c·h²·t(1−t) at fractional position t: up to 0.05/4 mid-voxel.
  assert.ok(interiorError(input, linear, f, 1) > 0.005);
});

Deno.test("axisOrders: order 3 falls back to linear along axes > 3× the finest spacing", () => {
  assert.deepEqual(axisOrders([5, 0.8, 0.8], [5, 0.8, 0.8], 3), [1, 3, 3]);
  assert.deepEqual(axisOrders([2.4, 0.8, 0.8], [2.4, 0.8, 0.8], 3), [3, 3, 3]); // exactly 3: cubic
  assert.deepEqual(axisOrders([1, 1, 1], [4, 1, 1], 3), [1, 3, 3]); // coarse in the target
  assert.deepEqual(axisOrders([5, 0.8, 0.8], [5, 0.8, 0.8], 1), [1, 1, 1]);
  // resampleImage applies the rule: same result as asking for [1, 3, 3] explicitly.
  const rng = new Random(1);
  const data = Float32Array.from({ length: 6 * 9 * 9 }, () => rng.normal());
  const v: Volume = {
    shape: [6, 9, 9],
    spacingMm: [5, 1, 1],
    affine: affineFromSpacing([5, 1, 1]),
    data,
  };
  const auto = resampleImage(v, [11, 13, 7], 3),
    explicit = resampleImage(v, [11, 13, 7], [1, 3, 3]);
  assert.deepEqual(auto.data, explicit.data);
  assert.notDeepEqual(resampleImage(v, [11, 13, 7], [3, 3, 3]).data, auto.data);
  assert.throws(() => resampleImage(v, [2, 2, 2], 2 as 1), /order must be 1 \(linear\) or 3/);
});

Deno.test("resampleLabels: hand-computed one-hot linear arg-max, ties to the lower class", () => {
  // 4 → 2 samples positions 0.5 and 2.5: each between two voxels of one class.
  assert.deepEqual([...resampleLabels(Uint8Array.of(0, 0, 1, 1), [1, 1, 4], 2, [1, 1, 2])], [0, 1]);
  // 2 → 4 samples 0 (clamped), 0.25, 0.75, 1.
  assert.deepEqual([...resampleLabels(Uint8Array.of(2, 1), [1, 1, 2], 3, [1, 1, 4])], [2, 2, 1, 1]);
  // 2 → 3 samples 0, 0.5 (a tie: class 0 wins), 1.
  assert.deepEqual([...resampleLabels(Uint8Array.of(0, 1), [1, 1, 2], 2, [1, 1, 3])], [0, 0, 1]);
  assert.throws(
    () => resampleLabels(Uint8Array.of(0, 3), [1, 1, 2], 3, [1, 1, 2]),
    /label value 3 is not a class index: the label map has 3 classes/,
  );
});

/** Two overlapping balls (classes 1, 2) in a 3-class label map of `shape`. */
function ballLabels(shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const out = new Uint8Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const r1 = Math.hypot((z - D * 0.45) / D, (y - H * 0.5) / H, (x - W * 0.4) / W);
        const r2 = Math.hypot((z - D * 0.6) / D, (y - H * 0.4) / H, (x - W * 0.65) / W);
        out[i] = r2 < 0.2 ? 2 : r1 < 0.33 ? 1 : 0;
      }
    }
  }
  return out;
}

/** Fraction of voxels farther than 1 voxel from a class boundary where `a` equals `b`. */
function interiorAgreement(a: Uint8Array, b: Uint8Array, shape: Shape3): number {
  const [D, H, W] = shape;
  let interior = 0, same = 0;
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = x + W * (y + H * z);
        let uniform = true;
        for (let dz = -2; dz <= 2 && uniform; dz++) {
          for (let dy = -2; dy <= 2 && uniform; dy++) {
            for (let dx = -2; dx <= 2 && uniform; dx++) {
              const zz = z + dz, yy = y + dy, xx = x + dx;
              if (zz < 0 || yy < 0 || xx < 0 || zz >= D || yy >= H || xx >= W) continue;
              uniform = a[xx + W * (yy + H * zz)] === a[i];
            }
          }
        }
        if (!uniform) continue;
        interior++;
        if (a[i] === b[i]) same++;
      }
    }
  }
  assert.ok(interior > (D * H * W) / 2, `only ${interior} interior voxels`);
  return same / interior;
}

Deno.test("resampleLabels: coarser and finer round trips keep the label map away from boundaries", () => {
  const shape: Shape3 = [30, 34, 38];
  const labels = ballLabels(shape);
  for (const target of [[17, 23, 21], [47, 41, 60]] as Shape3[]) {
    const there = resampleLabels(labels, shape, 3, target);
    const counts = [0, 1, 2].map((c) => there.filter((v) => v === c).length);
    assert.ok(counts.every((n) => n > 50), `every class survives on [${target}]: ${counts}`);
    const back = resampleLabels(there, target, 3, shape);
    const agree = interiorAgreement(labels, back, shape);
    assert.ok(agree >= 0.99, `round trip via [${target}] agrees on ${agree}`);
  }
});

Deno.test("resampledAffine: every output voxel keeps its world position on the input's extent", () => {
  // A rotated, anisotropic affine with an origin.
  const c = Math.cos(0.3), s = Math.sin(0.3);
  const affine = [0.7 * c, -0.8 * s, 0, 12, 0.7 * s, 0.8 * c, 0, -40, 0, 0, 2.5, 7, 0, 0, 0, 1];
  const shape: Shape3 = [10, 20, 30], out: Shape3 = [25, 16, 21];
  const next = resampledAffine(affine, shape, out);
  const world = (a: number[], [k, j, i]: number[]) =>
    [0, 1, 2].map((r) => a[4 * r] * i + a[4 * r + 1] * j + a[4 * r + 2] * k + a[4 * r + 3]);
  for (const o of [[0, 0, 0], [24, 15, 20], [3, 7, 11]]) {
    const p = o.map((v, a) => ((v + 0.5) * shape[a]) / out[a] - 0.5); // unclamped input index
    world(next, o).forEach((v, r) => assert.ok(Math.abs(v - world(affine, p)[r]) < 1e-9));
  }
});

Deno.test("outputBox and region resampling: a box of the output equals the crop of the whole", () => {
  const shape: Shape3 = [12, 15, 18], target: Shape3 = [19, 11, 26];
  const spacing: Shape3 = [1, 1, 1];
  const inBox = { start: [3, 4, 5] as Shape3, size: [5, 6, 7] as Shape3 };
  const rng = new Random(9);
  const data = new Float32Array(12 * 15 * 18).fill(-1000);
  for (let z = 3; z < 8; z++) {
    for (let y = 4; y < 10; y++) {
      for (let x = 5; x < 12; x++) data[x + 18 * (y + 15 * z)] = rng.normal(40, 30);
    }
  }
  const v: Volume = { shape, spacingMm: spacing, affine: affineFromSpacing(spacing), data };
  const whole = resampleImage(v, target, 3);
  const box = outputBox(shape, target, axisOrders(spacing, whole.spacingMm, 3), inBox);
  const part = resampleImage(v, target, 3, box);
  assert.deepEqual(part.shape, box.size);
  const [, h, w] = target;
  let outside = 0;
  for (let z = 0, i = 0; z < target[0]; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const rel = [z, y, x].map((o, a) => o - box.start[a]);
        if (rel.every((r, a) => r >= 0 && r < box.size[a])) {
          const j = rel[2] + box.size[2] * (rel[1] + box.size[1] * rel[0]);
          assert.equal(part.data[j], whole.data[i]); // same sums, same order: bit-exact
        } else {
          assert.ok(Math.abs(whole.data[i] + 1000) < 1e-3, `outside the box is background`);
          outside++;
        }
      }
    }
  }
  assert.ok(outside > 0);
  // The part's affine places its voxel 0 where the whole grid's voxel box.start is.
  const [k, j, i] = box.start;
  for (let r = 0; r < 3; r++) {
    const a = whole.affine;
    assert.ok(
      Math.abs(
        part.affine[4 * r + 3] -
          (a[4 * r] * i + a[4 * r + 1] * j + a[4 * r + 2] * k + a[4 * r + 3]),
      ) < 1e-9,
    );
  }
});
