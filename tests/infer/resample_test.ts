/**
 * Resampling between the input grid and the network grid: identity when the grids match,
 * exact on linear ramps, a round trip that returns smooth images and label maps, streaming
 * resampling equal to whole-volume resampling, and the resampling decision.
 */

import assert from "node:assert/strict";
import {
  axisMap,
  needsResampling,
  ProbabilityResampler,
  resampledShape,
  resampleTrilinear,
} from "../../src/infer/resample.ts";
import { networkSource } from "../../src/infer/source.ts";
import { arraySource, type ProbabilitySlab } from "../../src/infer/sliding_window.ts";
import type { Shape3 } from "../../src/data/volume.ts";

/** Slabs of given depths over probabilities [C, D, H, W] held in memory, as the sliding window yields them. */
function* slabsOf(probs: Float32Array, shape: Shape3, classes: number, depths: number[]) {
  const [D, H, W] = shape;
  const v = D * H * W, plane = H * W;
  let z0 = 0;
  for (const depth of depths) {
    const start = z0;
    const slab: ProbabilitySlab = {
      z0: start,
      depth,
      argmax: () => {
        throw new Error("unused");
      },
      probabilities(z, out) {
        for (let c = 0; c < classes; c++) {
          out.set(
            probs.subarray(c * v + (start + z) * plane, c * v + (start + z + 1) * plane),
            c * plane,
          );
        }
      },
    };
    yield slab;
    z0 += depth;
  }
  assert.equal(z0, D);
}

function oneHot(labels: Uint8Array, classes: number): Float32Array {
  const out = new Float32Array(classes * labels.length);
  labels.forEach((l, i) => out[l * labels.length + i] = 1);
  return out;
}

/** Two nested ellipsoids: labels 1 and 2 inside background. */
function ellipsoids(shape: Shape3): Uint8Array {
  const [D, H, W] = shape;
  const out = new Uint8Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const r = ((z + 0.5) / D - 0.5) ** 2 / 0.16 + ((y + 0.5) / H - 0.5) ** 2 / 0.12 +
          ((x + 0.5) / W - 0.45) ** 2 / 0.1;
        out[i] = r < 0.3 ? 2 : r < 1 ? 1 : 0;
      }
    }
  }
  return out;
}

Deno.test("axisMap between equal lengths is the identity; ramps resample exactly", () => {
  const m = axisMap(7, 7);
  assert.deepEqual([...m.i0], [0, 1, 2, 3, 4, 5, 6]);
  assert.ok(m.t.every((t) => t === 0));
  // A linear ramp along x, 8 → 20 voxels: interior samples lie on the ramp.
  const shape: Shape3 = [2, 3, 8];
  const ramp = Float32Array.from({ length: 48 }, (_, i) => 3 * (i % 8) - 1);
  const up = resampleTrilinear(ramp, shape, [2, 3, 20]);
  for (let x = 0; x < 20; x++) {
    const src = Math.min(7, Math.max(0, ((x + 0.5) * 8) / 20 - 0.5));
    assert.ok(Math.abs(up[x] - (3 * src - 1)) < 1e-5, `x=${x}: ${up[x]}`);
  }
});

Deno.test("resampledShape keeps the extent; needsResampling uses a relative tolerance", () => {
  assert.deepEqual(resampledShape([100, 512, 512], [2.5, 0.7, 0.7], [5, 1.4, 1.4]), [50, 256, 256]);
  assert.deepEqual(resampledShape([1, 10, 10], [1, 1, 1], [4, 4, 4]), [1, 3, 3]);
  assert.equal(needsResampling([2.2, 1, 1], [2, 1, 1]), false); // 10 %: within
  assert.equal(needsResampling([2.3, 1, 1], [2, 1, 1]), true);
  assert.equal(needsResampling([2.3, 1, 1], [2, 1, 1], Infinity), false);
  assert.equal(needsResampling([1, 1, 1.0001], [1, 1, 1], 0), true);
});

Deno.test("a smooth image survives the round trip 24×30×28 → 13×41×19 → back within 1 % inside", () => {
  const shape: Shape3 = [24, 30, 28];
  const [D, H, W] = shape;
  const image = new Float32Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        image[i] = Math.sin(z / 6) + Math.cos(y / 7) * Math.sin(x / 8);
      }
    }
  }
  const there = resampleTrilinear(image, shape, [13, 41, 19]);
  const back = resampleTrilinear(there, [13, 41, 19], shape);
  // Inside (2 voxels from the border, where clamping to the edge voxels costs accuracy).
  let err = 0, sum = 0;
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const e = Math.abs(back[i] - image[i]);
        sum += e;
        const inside = [z, y, x].every((c, a) => c >= 2 && c < shape[a] - 2);
        if (inside) err = Math.max(err, e);
      }
    }
  }
  assert.ok(err < 0.04, `max error ${err} inside, on values within ±2`); // 1 % of the range
  assert.ok(sum / image.length < 0.02, `mean error ${sum / image.length}`);
});

Deno.test("label maps survive the round trip through a finer network grid", () => {
  const shape: Shape3 = [20, 24, 22];
  const labels = ellipsoids(shape);
  const fine: Shape3 = [40, 48, 44];
  const probsFine = new Float32Array(3 * 40 * 48 * 44);
  const hot = oneHot(labels, 3);
  const v = labels.length;
  for (let c = 0; c < 3; c++) {
    probsFine.set(
      resampleTrilinear(hot.subarray(c * v, (c + 1) * v), shape, fine),
      c * fine[0] * fine[1] * fine[2],
    );
  }
  const back = new ProbabilityResampler(3, fine, shape);
  const out = new Uint8Array(v);
  for (const slab of slabsOf(probsFine, fine, 3, [5, 7, 1, 13, 14])) {
    const { z0, labels: l } = back.push(slab);
    out.set(l, z0 * 24 * 22);
  }
  assert.equal(back.done, 20);
  assert.deepEqual(out, labels);
});

Deno.test("probabilities on the same grid come back unchanged, whatever the slab sizes", () => {
  const shape: Shape3 = [9, 6, 5];
  const labels = ellipsoids(shape);
  const back = new ProbabilityResampler(3, shape, shape);
  const out = new Uint8Array(labels.length);
  for (const slab of slabsOf(oneHot(labels, 3), shape, 3, [1, 3, 5])) {
    const { z0, labels: l } = back.push(slab);
    out.set(l, z0 * 30);
  }
  assert.deepEqual(out, labels);
});

Deno.test("a coarse network grid gives labels close to the original (nnU-Net-style round trip)", () => {
  const shape: Shape3 = [30, 32, 34];
  const labels = ellipsoids(shape);
  const coarse: Shape3 = [12, 16, 17];
  const v = labels.length, vc = 12 * 16 * 17;
  const hot = oneHot(labels, 3);
  const probs = new Float32Array(3 * vc);
  for (let c = 0; c < 3; c++) {
    probs.set(resampleTrilinear(hot.subarray(c * v, (c + 1) * v), shape, coarse), c * vc);
  }
  const back = new ProbabilityResampler(3, coarse, shape);
  const out = new Uint8Array(v);
  for (const slab of slabsOf(probs, coarse, 3, [4, 4, 4])) {
    const { z0, labels: l } = back.push(slab);
    out.set(l, z0 * 32 * 34);
  }
  let same = 0;
  for (let i = 0; i < v; i++) same += out[i] === labels[i] ? 1 : 0;
  assert.ok(same / v > 0.95, `${(100 * same / v).toFixed(1)} % of voxels kept their label`);
});

Deno.test("streaming network source equals whole-volume normalise-then-resample", async () => {
  const shape: Shape3 = [21, 10, 12];
  const raw = Float32Array.from({ length: 21 * 10 * 12 }, (_, i) => -1200 + (i * 37) % 1900);
  const norm = { kind: "ct-window", lo: -1000, hi: 400 } as const;
  const net: Shape3 = [9, 13, 7];
  const source = networkSource(
    { shape, read: (z0, z1) => arraySource(raw, shape).read(z0, z1).then((a) => a.slice()) },
    norm,
    net,
    4,
  );
  const normalised = raw.map((v) => Math.min(1, Math.max(0, (v + 1000) / 1400)));
  const want = resampleTrilinear(normalised, shape, net);
  const got = new Float32Array(want.length);
  for (const [z0, z1] of [[0, 3], [3, 4], [4, 9]]) got.set(await source.read(z0, z1), z0 * 13 * 7);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `voxel ${i}`);
});
