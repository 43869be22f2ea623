import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { Random } from "../../src/base/random.ts";
import {
  adjustContrast,
  adjustGamma,
  augmentIntensity,
  bgContrast,
  drawSpatial,
  flipAxis,
  gaussianBlur,
  gaussianNoise,
  type IntensityAugmentation,
  mirrorPatch,
  multiplyBrightness,
  nnunetIntensity,
  nnunetSpatial,
  type PatchArrays,
  resampleSpatial,
  simulateLowResolution,
  sourceBox,
  type SpatialAugmentation,
  type SpatialMap,
  spatialMatrix,
} from "../../src/data/augment.ts";
import { DEFAULT_CT_WINDOW } from "../../src/data/normalize.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import {
  augmentationFromFlags,
  augmentPatch,
  type PatchRequest,
  readPatch,
} from "../../src/data/sampler.ts";
import { synthCase } from "../../src/data/synth.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { defaultTrainConfig } from "../../src/train/config.ts";
import { withTempDir } from "./temp_dir.ts";

const count = (s: Shape3) => s[0] * s[1] * s[2];
const at = (s: Shape3, z: number, y: number, x: number) => x + s[2] * (y + s[1] * z);

/** A random volume: image values in [0, 1), labels 0..2 in blocks of 2 voxels along x. */
function volume(size: Shape3, seed: number): PatchArrays {
  const rng = new Random(seed);
  const image = Float32Array.from({ length: count(size) }, () => rng.next());
  const label = Uint8Array.from({ length: count(size) }, (_, i) => Math.floor(i / 2) % 3);
  return { image, label };
}

/** The box `start`..`start + size` of a volume; voxels outside read 0 and label 0. */
function crop(v: PatchArrays, vs: Shape3, start: Shape3, size: Shape3): PatchArrays {
  const out = { image: new Float32Array(count(size)), label: new Uint8Array(count(size)) };
  for (let z = 0; z < size[0]; z++) {
    for (let y = 0; y < size[1]; y++) {
      for (let x = 0; x < size[2]; x++) {
        const [sz, sy, sx] = [start[0] + z, start[1] + y, start[2] + x];
        if (sz < 0 || sy < 0 || sx < 0 || sz >= vs[0] || sy >= vs[1] || sx >= vs[2]) continue;
        out.image[at(size, z, y, x)] = v.image[at(vs, sz, sy, sx)];
        out.label[at(size, z, y, x)] = v.label[at(vs, sz, sy, sx)];
      }
    }
  }
  return out;
}

/** Applies `map` to the patch of `size` at `start` of a volume, reading its source box. */
function transform(v: PatchArrays, vs: Shape3, start: Shape3, size: Shape3, map: SpatialMap) {
  const box = sourceBox(map, size);
  const source = crop(v, vs, start.map((s, a) => s + box.offset[a]) as Shape3, box.size);
  return resampleSpatial(source, box, map, size, 0);
}

function assertClose(actual: Float32Array, expected: Float32Array, tol: number, what: string) {
  strictEqual(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

const SPATIAL_OFF: SpatialAugmentation = {
  pRotation: 0,
  rotation: [0, 0],
  pScaling: 0,
  scaling: [1, 1],
  pElastic: 0,
  elasticScale: [0, 0],
  elasticMagnitude: [0, 0],
  inPlane: false,
};
/** Every spatial part drawn, with nnU-Net's ranges and elastic deformation. */
const SPATIAL_ALL: SpatialAugmentation = {
  ...nnunetSpatial({ elastic: true }),
  pRotation: 1,
  pScaling: 1,
  pElastic: 1,
};

Deno.test("resampleSpatial: identity map (rotation 0, scale 1) returns the patch bit for bit", () => {
  const size: Shape3 = [4, 5, 6], v = volume(size, 1);
  const map = { matrix: spatialMatrix([0, 0, 0], [1, 1, 1]) };
  const box = sourceBox(map, size);
  deepStrictEqual(box, { offset: [0, 0, 0], size });
  deepStrictEqual(resampleSpatial(v, box, map, size, 0), v);
  // Nothing drawn: no map at all, so readPatch reads the patch as it is.
  strictEqual(drawSpatial(new Random(1), SPATIAL_OFF, size), undefined);
});

Deno.test("resampleSpatial: 90° about z = rotate90's quarter turn (odd square patch)", () => {
  const vs: Shape3 = [3, 9, 9], v = volume(vs, 2), size: Shape3 = [3, 5, 5];
  const start: Shape3 = [0, 2, 2], plain = crop(v, vs, start, size);
  const checked = new Set<number>();
  for (let seed = 0; checked.size < 2; seed++) {
    const turns = new Random(seed).int(0, 4); // rotate90's first draw
    if (turns !== 1 && turns !== 3) continue;
    checked.add(turns);
    const quarter = augmentPatch(
      { image: plain.image.slice(), label: plain.label.slice() },
      size,
      { rotate90: true },
      new Random(seed),
    );
    const angle = turns === 1 ? Math.PI / 2 : -Math.PI / 2;
    const general = transform(v, vs, start, size, {
      matrix: spatialMatrix([angle, 0, 0], [1, 1, 1]),
    });
    assertClose(general.image, quarter.image, 1e-6, `${turns} turns`);
    deepStrictEqual(general.label, quarter.label);
  }
});

Deno.test("resampleSpatial: 90° about z on a 3×5×7 patch = transpose then flip of x", () => {
  const vs: Shape3 = [3, 11, 11], v = volume(vs, 3), size: Shape3 = [3, 5, 7];
  // The patch centre is (1, 5, 5); rotated, it covers y 2..8 (7 rows) and x 3..7 (5 columns).
  const rotated = transform(v, vs, [0, 3, 2], size, {
    matrix: spatialMatrix([Math.PI / 2, 0, 0], [1, 1, 1]),
  });
  const q = crop(v, vs, [0, 2, 3], [3, 7, 5]);
  // Reference: transpose (y, x) of q, then reverse x.
  const expected = { image: new Float32Array(count(size)), label: new Uint8Array(count(size)) };
  for (let z = 0; z < 3; z++) {
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 7; x++) {
        expected.image[at(size, z, y, x)] = q.image[at([3, 7, 5], z, x, y)];
        expected.label[at(size, z, y, x)] = q.label[at([3, 7, 5], z, x, y)];
      }
    }
  }
  flipAxis(expected.image, size, 2);
  flipAxis(expected.label, size, 2);
  assertClose(rotated.image, expected.image, 1e-6, "rotated");
  deepStrictEqual(rotated.label, expected.label);
});

Deno.test("resampleSpatial: scaling 2× samples the source at twice the offset", () => {
  const size: Shape3 = [5, 5, 5], map = { matrix: spatialMatrix([0, 0, 0], [2, 2, 2]) };
  const box = sourceBox(map, size);
  deepStrictEqual(box, { offset: [-2, -2, -2], size: [9, 9, 9] });
  // A linear image (trilinear interpolation reproduces it) and one labelled voxel.
  const source = { image: new Float32Array(729), label: new Uint8Array(729) };
  for (let z = 0; z < 9; z++) {
    for (let y = 0; y < 9; y++) {
      for (let x = 0; x < 9; x++) source.image[at([9, 9, 9], z, y, x)] = 100 * z + 10 * y + x;
    }
  }
  // Output voxel (3, 1, 4) is offset (1, −1, 2) from the centre (2, 2, 2): source (4+2, 4−2, 4+4).
  source.label[at([9, 9, 9], 6, 2, 8)] = 1;
  const out = resampleSpatial(source, box, map, size, 0);
  for (let z = 0; z < 5; z++) {
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 5; x++) {
        const [sz, sy, sx] = [4 + 2 * (z - 2), 4 + 2 * (y - 2), 4 + 2 * (x - 2)];
        strictEqual(out.image[at(size, z, y, x)], 100 * sz + 10 * sy + sx);
      }
    }
  }
  deepStrictEqual([...out.label.keys()].filter((i) => out.label[i] === 1), [at(size, 3, 1, 4)]);
});

Deno.test("drawSpatial: seeded; the source box covers every sample (no holes)", () => {
  const size: Shape3 = [8, 12, 10];
  for (let seed = 0; seed < 6; seed++) {
    const map = drawSpatial(new Random(seed), SPATIAL_ALL, size)!;
    deepStrictEqual(drawSpatial(new Random(seed), SPATIAL_ALL, size), map);
    notDeepStrictEqual(drawSpatial(new Random(seed + 100), SPATIAL_ALL, size), map);
    const box = sourceBox(map, size);
    const ones = {
      image: new Float32Array(count(box.size)).fill(1),
      label: new Uint8Array(count(box.size)).fill(2),
    };
    // Anything read from outside the box would be NaN or label 0.
    const out = resampleSpatial(ones, box, map, size, NaN);
    ok(out.image.every((v) => Math.abs(v - 1) < 1e-6), `seed ${seed}: a sample left the box`);
    ok(out.label.every((l) => l === 2), `seed ${seed}: a label sample left the box`);
    strictEqual(out.image.length, count(size));
    ok(out.label instanceof Uint8Array);
  }
});

Deno.test("drawSpatial: ranges of angles, scale and displacement; in-plane keeps z", () => {
  const size: Shape3 = [6, 16, 16];
  for (let seed = 0; seed < 20; seed++) {
    const map = drawSpatial(new Random(seed), { ...SPATIAL_ALL, pElastic: 0 }, size)!;
    // Rotation · uniform scale: every column has the scale as its length.
    const s = Math.hypot(map.matrix[0], map.matrix[3], map.matrix[6]);
    ok(s >= 0.7 && s <= 1.4, `scale ${s}`);
    const flat = drawSpatial(new Random(seed), { ...SPATIAL_ALL, inPlane: true }, size)!;
    deepStrictEqual([flat.matrix[0], flat.matrix[1], flat.matrix[2]], [1, 0, 0]);
    strictEqual(flat.matrix[3], 0);
    strictEqual(flat.matrix[6], 0);
    const n = count(size), disp = flat.displacement!;
    ok(disp.subarray(0, n).every((v) => v === 0), "in-plane: no z displacement");
    // The same (y, x) field on every slice, within the drawn peak (≤ 0.2 · size / 2, ×2 for the mean).
    const slice = 16 * 16;
    for (let z = 1; z < 6; z++) {
      deepStrictEqual(
        disp.subarray(n + z * slice, n + (z + 1) * slice),
        disp.subarray(n, n + slice),
      );
    }
    ok(flat.displacementMax![1] <= 0.2 * 16 + 1e-6 && flat.displacementMax![0] === 0);
  }
});

Deno.test("readPatch: a 180° in-plane rotation equals flipping y and x, no holes", async () => {
  await withTempDir(async (dir) => {
    const c = synthCase(2, { shape: [20, 40, 40], lesionCount: 3 });
    await writeCase(join(dir, "a.zarr"), { image: c.image, label: c.label, chunks: 16 });
    const reader = await openCase(join(dir, "a.zarr"));
    const size: Shape3 = [6, 10, 12];
    const request: PatchRequest = { caseId: "a", start: [7, 14, 13], centeredOn: 0, seed: 4 };
    const plain = await readPatch(reader, request, size, DEFAULT_CT_WINDOW);
    const half = { ...SPATIAL_OFF, pRotation: 1, rotation: [Math.PI, Math.PI], inPlane: true };
    const turned = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, {
      spatial: half as SpatialAugmentation,
    });
    mirrorPatch(plain, size, [1, 2]);
    assertClose(turned.image, plain.image, 1e-6, "180°");
    deepStrictEqual(turned.label, plain.label);
    // Drawn but neutral (probabilities 0): the plain read, bit for bit.
    const neutral = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, {
      spatial: SPATIAL_OFF,
    });
    deepStrictEqual(neutral, await readPatch(reader, request, size, DEFAULT_CT_WINDOW));
    // The whole nnU-Net set: seeded, shape- and dtype-preserving, labels among the case's.
    const nnunet = augmentationFromFlags({ preset: "nnunet", elastic: true });
    const forced = { ...nnunet, spatial: SPATIAL_ALL };
    const a = await readPatch(reader, request, size, DEFAULT_CT_WINDOW, forced);
    deepStrictEqual(await readPatch(reader, request, size, DEFAULT_CT_WINDOW, forced), a);
    const b = await readPatch(reader, { ...request, seed: 5 }, size, DEFAULT_CT_WINDOW, forced);
    notDeepStrictEqual(a.image, b.image);
    strictEqual(a.image.length, count(size));
    ok(a.label instanceof Uint8Array && a.label.length === count(size));
    const present = new Set(c.label.data);
    ok(a.label.every((l) => present.has(l)));
  });
});

Deno.test("gaussianNoise: seeded, with the requested standard deviation", () => {
  const n = 40_000, image = new Float32Array(n).fill(2);
  gaussianNoise(image, 0.3, new Random(7));
  const mean = image.reduce((s, v) => s + v, 0) / n;
  const std = Math.sqrt(image.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  ok(Math.abs(mean - 2) < 0.01, `mean ${mean}`);
  ok(Math.abs(std - 0.3) < 0.01, `std ${std}`);
  deepStrictEqual(gaussianNoise(new Float32Array(n).fill(2), 0.3, new Random(7)), image);
  notDeepStrictEqual(gaussianNoise(new Float32Array(n).fill(2), 0.3, new Random(8)), image);
});

Deno.test("gaussianBlur: batchgenerators' kernel; constants stay constant", () => {
  // σ 0.5: width 3 (odd width nearest 6σ + ½), weights ∝ exp(−2), 1, exp(−2).
  const line = new Float32Array(9);
  line[4] = 1;
  gaussianBlur(line, [1, 1, 9], [0, 0, 0.5]);
  const e = Math.exp(-2), sum = 1 + 2 * e;
  assertClose(line, Float32Array.of(0, 0, 0, e / sum, 1 / sum, e / sum, 0, 0, 0), 1e-7, "σ 0.5");
  const size: Shape3 = [5, 6, 7], flat = new Float32Array(count(size)).fill(0.25);
  assertClose(gaussianBlur(flat.slice(), size, [1, 0.7, 0.9]), flat, 1e-6, "constant");
});

Deno.test("brightness, contrast: multiplicative and about the mean, range kept", () => {
  const image = Float32Array.of(0, 1, 2, 5);
  deepStrictEqual(multiplyBrightness(image.slice(), 1.25), Float32Array.of(0, 1.25, 2.5, 6.25));
  assertClose(adjustContrast(image.slice(), 1), image, 1e-6, "factor 1");
  // mean 2: (v − 2)·0.5 + 2.
  deepStrictEqual(adjustContrast(image.slice(), 0.5), Float32Array.of(1, 1.5, 2, 3.5));
  // ×2 about 2 gives −2, 0, 2, 8: clipped to the old [0, 5] unless asked not to.
  deepStrictEqual(adjustContrast(image.slice(), 2), Float32Array.of(0, 0, 2, 5));
  deepStrictEqual(adjustContrast(image.slice(), 2, false), Float32Array.of(-2, 0, 2, 8));
});

Deno.test("adjustGamma: identity at 1, range kept, stats retained, inversion mirrors", () => {
  const rng = new Random(3), image = Float32Array.from({ length: 500 }, () => rng.normal(0, 1));
  assertClose(adjustGamma(image.slice(), 1), image, 1e-6, "γ 1");
  const min = Math.min(...image), max = Math.max(...image);
  for (const g of [0.7, 1.5]) {
    const out = adjustGamma(image.slice(), g);
    ok(Math.abs(Math.min(...out) - min) < 1e-6 && Math.abs(Math.max(...out) - max) < 1e-6);
    // Monotone, and bent the right way: γ < 1 raises the middle, γ > 1 lowers it.
    const i = image.indexOf(
      image.find((v) => v > min + 0.3 * (max - min) && v < max - 0.3 * (max - min))!,
    );
    ok(g < 1 ? out[i] > image[i] : out[i] < image[i]);
    const stats = (a: Float32Array) => {
      const m = a.reduce((s, v) => s + v, 0) / a.length;
      return [m, Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / (a.length - 1))];
    };
    const [m0, s0] = stats(image), [m1, s1] = stats(adjustGamma(image.slice(), g, false, true));
    ok(Math.abs(m1 - m0) < 1e-5 && Math.abs(s1 - s0) < 1e-5, `retained ${m1} ${s1}`);
    // Inverted gamma of x is minus gamma of −x.
    const negated = image.map((v) => -v);
    assertClose(
      adjustGamma(image.slice(), g, true),
      adjustGamma(negated, g).map((v) => -v),
      1e-6,
      "inv",
    );
  }
});

Deno.test("simulateLowResolution: constant stays constant; known down-and-up values", () => {
  const size: Shape3 = [6, 9, 10], flat = new Float32Array(count(size)).fill(0.3);
  deepStrictEqual(simulateLowResolution(flat.slice(), size, [0.5, 0.6, 0.73]), flat);
  const v = volume(size, 4).image;
  deepStrictEqual(simulateLowResolution(v.slice(), size, [1, 1, 1]), v);
  // [0 1 2 3] → nearest-exact to 2: [1 3] → linear (align_corners false) to 4: [1 1.5 2.5 3].
  const line = simulateLowResolution(Float32Array.of(0, 1, 2, 3), [1, 1, 4], [1, 1, 0.5]);
  deepStrictEqual(line, Float32Array.of(1, 1.5, 2.5, 3));
});

Deno.test("mirrorPatch: an involution, and one mirror reverses the axis", () => {
  const size: Shape3 = [3, 4, 5], v = volume(size, 5);
  for (const axes of [[0], [1], [2], [0, 1, 2]]) {
    const p = { image: v.image.slice(), label: v.label.slice() };
    mirrorPatch(p, size, axes);
    notDeepStrictEqual(p.image, v.image);
    mirrorPatch(p, size, axes);
    deepStrictEqual(p, v);
  }
  const p = mirrorPatch({ image: v.image.slice(), label: v.label.slice() }, size, [0]);
  strictEqual(p.image[at(size, 0, 1, 2)], v.image[at(size, 2, 1, 2)]);
});

Deno.test("augmentIntensity: seeded, labels untouched, neutral when nothing is drawn", () => {
  const size: Shape3 = [6, 8, 10], v = volume(size, 6), all = nnunetIntensity();
  const forced: IntensityAugmentation = {
    noise: { ...all.noise, p: 1 },
    blur: { ...all.blur, p: 1, pPerChannel: 1 },
    brightness: { ...all.brightness, p: 1 },
    contrast: { ...all.contrast, p: 1 },
    lowRes: { ...all.lowRes, p: 1, pPerChannel: 1 },
    gamma: { ...all.gamma, p: 1, pInverted: 1 },
  };
  const run = (seed: number, spec: IntensityAugmentation) =>
    augmentPatch(
      { image: v.image.slice(), label: v.label.slice() },
      size,
      { intensityTransforms: spec },
      new Random(seed),
    );
  const a = run(1, forced);
  deepStrictEqual(run(1, forced), a);
  deepStrictEqual(augmentIntensity(v.image.slice(), size, forced, new Random(1)), a.image);
  notDeepStrictEqual(run(2, forced).image, a.image);
  notDeepStrictEqual(a.image, v.image);
  deepStrictEqual(a.label, v.label);
  const never = Object.fromEntries(
    Object.entries(forced).map(([k, t]) => [k, { ...t, p: 0, pInverted: 0 }]),
  );
  deepStrictEqual(run(1, never), v);
  // BGContrast draws half below 1, half above, within the range.
  const rng = new Random(9),
    draws = Array.from({ length: 2000 }, () => bgContrast(rng, [0.7, 1.5]));
  ok(draws.every((f) => f >= 0.7 && f < 1.5));
  const below = draws.filter((f) => f < 1).length;
  ok(Math.abs(below - 1000) < 120, `${below} of 2000 below 1`);
});

Deno.test("augmentationFromFlags: defaults unchanged; nnunet preset; switches", () => {
  deepStrictEqual(augmentationFromFlags(defaultTrainConfig.data.augment), {
    flipAxes: [0, 1, 2],
    intensityScale: 0.25,
    intensityShift: 0.1,
  });
  const nnunet = augmentationFromFlags({ ...defaultTrainConfig.data.augment, preset: "nnunet" });
  deepStrictEqual(nnunet, {
    flipAxes: [0, 1, 2],
    spatial: nnunetSpatial({}),
    intensityTransforms: nnunetIntensity(),
  });
  strictEqual(nnunet.spatial!.pElastic, 0);
  deepStrictEqual([nnunet.spatial!.pRotation, nnunet.spatial!.pScaling], [0.2, 0.2]);
  deepStrictEqual(nnunet.spatial!.scaling, [0.7, 1.4]);
  ok(Math.abs(nnunet.spatial!.rotation[1] - Math.PI / 6) < 1e-12);
  const some = augmentationFromFlags({ gamma: true, elastic: true, inPlane: true });
  deepStrictEqual(Object.keys(some.intensityTransforms!), ["gamma"]);
  deepStrictEqual(
    [some.spatial!.pRotation, some.spatial!.pElastic, some.spatial!.inPlane],
    [0, 0.2, true],
  );
});
