import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { Random } from "../../src/base/random.ts";
import {
  buildManifest,
  caseStats,
  type ManifestCase,
  percentileSorted,
  readDataset,
  writeDataset,
} from "../../src/data/dataset.ts";
import {
  detectIntensityConvention,
  fingerprintDataset,
  foregroundStats,
  inferModality,
} from "../../src/data/fingerprint.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import {
  affineFromSpacing,
  type Shape3,
  type Volume,
  type VoxelArray,
} from "../../src/data/volume.ts";
import { withTempDir } from "./temp_dir.ts";

const SHAPE: Shape3 = [10, 12, 14];
const N = 10 * 12 * 14;

function volume(data: VoxelArray, spacingMm: Shape3 = [2, 1, 1]): Volume {
  return { shape: SHAPE, spacingMm, affine: affineFromSpacing(spacingMm), data };
}

/** A ball of label 1 (and a corner block of label 2) in the middle of the volume. */
function labelMap(): Uint8Array {
  return Uint8Array.from({ length: N }, (_, i) => {
    const x = i % 14, y = Math.floor(i / 14) % 12, z = Math.floor(i / 168);
    if ((z - 5) ** 2 + (y - 6) ** 2 + (x - 7) ** 2 <= 9) return 1;
    return z < 2 && y < 2 && x < 2 ? 2 : 0;
  });
}

/**
 * Three cases: CT in HU (air −1000 outside, 40..44 inside the labels), a CT windowed to 0..255
 * (inside 200..204), and an MRI-like float image (inside 3.5..4.5, no label on one case).
 */
function images(label: Uint8Array) {
  const inside = (i: number) => label[i] > 0;
  const hu = Int16Array.from(
    { length: N },
    (_, i) => (inside(i) ? 40 + (i % 5) : i % 3 ? -1000 : 30),
  );
  const byte = Int16Array.from({ length: N }, (_, i) => (inside(i) ? 200 + (i % 5) : i % 7));
  const mri = Float32Array.from(
    { length: N },
    (_, i) => (inside(i) ? 3.5 + (i % 5) / 4 : 0.25 + (i % 11) / 10),
  );
  return { hu, byte, mri };
}

async function makeDataset(dir: string, modality = "CT") {
  const label = labelMap();
  const { hu, byte, mri } = images(label);
  const classes = ["background", "ball", "corner"];
  const cases: ManifestCase[] = [];
  const add = async (id: string, data: VoxelArray, labelled: boolean, spacing: Shape3) => {
    const image = volume(data, spacing), seg = volume(label, spacing);
    await writeCase(join(dir, "cases", `${id}.zarr`), {
      image,
      label: labelled ? seg : undefined,
      chunks: [4, 5, 14], // several rows of chunks: exercises the row-by-row reading
    });
    const stats = labelled
      ? caseStats(image, seg, classes, new Random(1))
      : { shape: image.shape, spacingMm: image.spacingMm };
    cases.push({ id, path: `cases/${id}.zarr`, split: labelled ? "train" : "test", stats });
  };
  await add("hu", hu, true, [2, 1, 1]);
  await add("byte", byte, true, [3, 1, 1]);
  await add("mri", mri, false, [2, 0.5, 1]);
  await writeDataset(dir, buildManifest({ name: "fp", modality, classes, cases }));
  return { label, hu, byte, mri };
}

function exact(data: ArrayLike<number>) {
  const a = Array.from(data);
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
  const sorted = Float64Array.from(a).sort();
  return {
    min: sorted[0],
    max: sorted[a.length - 1],
    mean,
    std,
    p50: percentileSorted(sorted, 50),
    air: a.filter((v) => v <= -900).length / a.length,
  };
}

Deno.test("fingerprintDataset: exact moments, sampled percentiles and foreground per case", async () => {
  await withTempDir(async (dir) => {
    const { label, hu, byte, mri } = await makeDataset(dir);
    const fp = await fingerprintDataset(await readDataset(dir), { samplesPerCase: 20_000 });
    deepStrictEqual(fp.cases.map((c) => c.id), ["hu", "byte", "mri"]);
    deepStrictEqual(fp.classes, ["background", "ball", "corner"]);
    ok(fp.intensity !== null);
    for (const [c, data] of [[fp.cases[0], hu], [fp.cases[1], byte], [fp.cases[2], mri]] as const) {
      const e = exact(data);
      strictEqual(c.image.min, e.min, c.id);
      strictEqual(c.image.max, e.max, c.id);
      ok(Math.abs(c.image.mean - e.mean) < 1e-6 * Math.max(1, Math.abs(e.mean)), c.id);
      ok(Math.abs(c.image.std - e.std) < 1e-6 * Math.max(1, e.std), c.id);
      strictEqual(c.image.airFraction, e.air, c.id);
      ok(Math.abs(c.image.p50 - e.p50) <= 0.05 * (e.max - e.min), `${c.id} p50 ${c.image.p50}`);
      ok(c.image.p0_5 <= c.image.p50 && c.image.p50 <= c.image.p99_5);
    }
    deepStrictEqual(fp.cases.map((c) => c.image.integerValued), [true, true, false]);
    deepStrictEqual(fp.cases[0].shape, SHAPE);
    deepStrictEqual(fp.cases[1].spacingMm, [3, 1, 1]);
    const count = (v: number) => label.filter((x) => x === v).length;
    deepStrictEqual(fp.cases[0].voxelsPerClass, [count(0), count(1), count(2)]);
    // Foreground samples land on labelled voxels only: 40..44 in HU, 200..204 in bytes.
    const [huFg, byteFg] = [fp.cases[0].foreground!, fp.cases[1].foreground!];
    deepStrictEqual([huFg.min, huFg.max, byteFg.min, byteFg.max], [40, 44, 200, 204]);
    strictEqual(huFg.samples, 10_000);
    strictEqual(fp.cases[2].foreground, null); // unlabelled
    strictEqual(fp.cases[2].split, "test");
  });
});

Deno.test("fingerprintDataset: seeded and reproducible; conventions and modality from it", async () => {
  await withTempDir(async (dir) => {
    await makeDataset(dir);
    const dataset = await readDataset(dir);
    const a = await fingerprintDataset(dataset, { samplesPerCase: 500, seed: 3 });
    const b = await fingerprintDataset(dataset, { samplesPerCase: 500, seed: 3 });
    deepStrictEqual(a, b);
    strictEqual(a.samplesPerCase, 500);
    const conventions = a.cases.map((c) => detectIntensityConvention(c.image).convention);
    deepStrictEqual(conventions, ["hu", "byte", "other"]);
    // HU with windowed CT is CT; an MRI-like case makes HU a minority; no HU at all is not CT.
    strictEqual(inferModality(a.modality, conventions.slice(0, 2)).isCT, true);
    strictEqual(inferModality(a.modality, conventions).isCT, false);
    strictEqual(inferModality(a.modality, conventions.slice(1)).isCT, false);
  });
});

Deno.test("fingerprintDataset: a case outside confineTo is refused", async () => {
  await withTempDir(async (dir) => {
    await makeDataset(join(dir, "inside"));
    await Deno.mkdir(join(dir, "other"));
    const dataset = await readDataset(join(dir, "inside"));
    await rejects(
      () => fingerprintDataset(dataset, { confineTo: join(dir, "other") }),
      /outside the data root/,
    );
    const fp = await fingerprintDataset(dataset, { confineTo: dir, samplesPerCase: 10 });
    strictEqual(fp.cases.length, 3);
  });
});

Deno.test("foregroundStats: percentiles and moments of a sample", () => {
  const s = foregroundStats(Float64Array.from({ length: 101 }, (_, i) => 100 - i));
  deepStrictEqual([s.min, s.p5, s.p50, s.p95, s.max, s.mean], [0, 5, 50, 95, 100, 50]);
  strictEqual(s.p0_5, 0.5);
  ok(Math.abs(s.std - Math.sqrt(850)) < 1e-9); // variance of 0..100 = (101² − 1) / 12
});
