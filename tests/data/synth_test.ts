import {
  deepStrictEqual,
  notDeepStrictEqual,
  ok,
  rejects,
  strictEqual,
  throws,
} from "node:assert/strict";
import { join } from "node:path";
import { ensureSynthDataset, SYNTH_GENERATOR } from "../../src/cli/synth.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { Random } from "../../src/base/random.ts";
import { type LesionKind, smoothNoise, synthCase } from "../../src/data/synth.ts";
import { spacingFromAffine } from "../../src/data/volume.ts";
import { runCliCaptured } from "./cli_capture.ts";
import { withTempDir } from "./temp_dir.ts";

const SMALL: [number, number, number] = [32, 64, 64];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** HU values of the voxels with label `k`. */
function huOf(seed: number, k: number, options = {}): number[] {
  const { image, label } = synthCase(seed, { shape: SMALL, ...options });
  const out: number[] = [];
  for (let i = 0; i < label.data.length; i++) if (label.data[i] === k) out.push(image.data[i]);
  return out;
}

Deno.test("synthCase: the same seed gives the same bytes, another seed other bytes", () => {
  const a = synthCase(11, { shape: [24, 48, 48] });
  const b = synthCase(11, { shape: [24, 48, 48] });
  const c = synthCase(12, { shape: [24, 48, 48] });
  deepStrictEqual(a.image.data, b.image.data);
  deepStrictEqual(a.label.data, b.label.data);
  deepStrictEqual(a.image.affine, b.image.affine);
  notDeepStrictEqual(a.image.data, c.image.data);
  notDeepStrictEqual(a.label.data, c.label.data);
});

Deno.test("synthCase: int16 HU image, uint8 labels 0..2, geometry shared", () => {
  const { image, label } = synthCase(3, { shape: [20, 40, 56] });
  ok(image.data instanceof Int16Array);
  ok(label.data instanceof Uint8Array);
  strictEqual(image.data.length, 20 * 40 * 56);
  deepStrictEqual(label.shape, [20, 40, 56]);
  deepStrictEqual(label.affine, image.affine);
  ok(label.data.every((v) => v <= 2));
  // Corners are air outside the body.
  for (const i of [0, 55, 40 * 56 - 1, image.data.length - 1]) {
    ok(image.data[i] < -900, `corner voxel ${i} is ${image.data[i]} HU, expected air`);
  }
});

Deno.test("synthCase: anisotropic spacing and an axial-CT RAS affine that matches it", () => {
  const spacings = [1, 2, 3, 4].map((seed) => synthCase(seed, { shape: [16, 32, 32] }).image);
  for (const { spacingMm, affine } of spacings) {
    ok(spacingMm[0] > 1.4 * spacingMm[1], `slices ${spacingMm[0]} vs in-plane ${spacingMm[1]}`);
    strictEqual(spacingMm[1], spacingMm[2]);
    spacingFromAffine(affine).forEach((s, i) => ok(Math.abs(s - spacingMm[i]) < 1e-9));
    ok(affine[0] < 0 && affine[5] < 0 && affine[10] > 0, "x, y flipped (LPS → RAS), z up");
    deepStrictEqual(affine.slice(12), [0, 0, 0, 1]);
  }
  // Slight per-case variation, and an explicit spacing wins.
  ok(new Set(spacings.map((v) => v.spacingMm[0])).size > 1);
  const fixed = synthCase(1, { shape: [16, 32, 32], spacingMm: [2.5, 0.8, 0.8] });
  deepStrictEqual(fixed.image.spacingMm, [2.5, 0.8, 0.8]);
});

Deno.test("synthCase: two lungs of about −850 HU inside an attenuating body", () => {
  for (const seed of [1, 2, 3]) {
    const { image, label } = synthCase(seed, { shape: SMALL, lesionCount: 0 });
    const [D, H, W] = SMALL;
    let left = 0, right = 0;
    const lung: number[] = [];
    for (let i = 0; i < label.data.length; i++) {
      if (label.data[i] !== 1) continue;
      lung.push(image.data[i]);
      if (i % W < W / 2) right++;
      else left++;
    }
    ok(right > 0.25 * lung.length && left > 0.25 * lung.length, `lungs ${right} / ${left}`);
    ok(lung.length > 0.05 * D * H * W && lung.length < 0.3 * D * H * W, `${lung.length} voxels`);
    const m = median(lung);
    ok(m > -900 && m < -790, `median lung HU ${m}`);
  }
});

Deno.test("synthCase: every infection voxel lies inside the body, within the lung region", () => {
  for (const seed of [4, 5, 6]) {
    const { image, label } = synthCase(seed, { shape: SMALL, lesionCount: 6 });
    const [, H, W] = SMALL;
    let infected = 0;
    for (let i = 0; i < label.data.length; i++) {
      if (label.data[i] !== 2) continue;
      infected++;
      const x = i % W, row = i - x, y = Math.floor(i / W) % H;
      ok(x > 0 && x < W - 1 && y > 0 && y < H - 1, "infection on the volume border");
      // Along the row, soft tissue (the body wall) on both sides.
      let before = false, after = false;
      for (let k = 0; k < x; k++) before ||= image.data[row + k] > -200;
      for (let k = x + 1; k < W; k++) after ||= image.data[row + k] > -200;
      ok(before && after, `infection voxel ${i} is not enclosed by the body`);
    }
    ok(infected > 0, `seed ${seed}: no infection drawn`);
  }
});

Deno.test("synthCase: ground glass and consolidation have their HU ranges", () => {
  // Medians over the labelled voxels: at 6 mm voxels partial volume with the surrounding lung
  // pulls small consolidations below their nominal −100…+50 HU.
  const cases: [LesionKind, number, number][] = [["ggo", -700, -300], ["consolidation", -260, 60]];
  for (const [kind, lo, hi] of cases) {
    for (const seed of [7, 8]) {
      const hu = huOf(seed, 2, { lesionCount: 5, lesionKinds: [kind] });
      ok(hu.length > 20, `${kind}: ${hu.length} voxels`);
      const m = median(hu);
      ok(m > lo && m < hi, `${kind} seed ${seed}: median ${m} HU outside [${lo}, ${hi}]`);
    }
  }
});

Deno.test("synthCase: lesion count varies, some cases have none", () => {
  const counts = Array.from({ length: 40 }, (_, seed) => {
    return synthCase(seed, { shape: [12, 24, 24] }).lesions.length;
  });
  ok(counts.some((n) => n === 0), "no case without lesions");
  ok(counts.filter((n) => n > 0).length >= 25, `only ${counts.filter((n) => n > 0).length}/40`);
  ok(Math.max(...counts) >= 5, "no case with many lesions");
  strictEqual(synthCase(1, { shape: [12, 24, 24], lesionCount: 0 }).lesions.length, 0);
  ok(huOf(1, 2, { lesionCount: 0 }).length === 0);
});

Deno.test("synthCase: the patient of a seed does not depend on the shape", () => {
  const a = synthCase(21, { shape: [16, 32, 32] }).lesions;
  const b = synthCase(21, { shape: [24, 48, 48] }).lesions;
  deepStrictEqual(a.map((l) => [l.kind, l.radiusMm]), b.map((l) => [l.kind, l.radiusMm]));
});

Deno.test("synthCase: rejects shapes too small to draw", () => {
  throws(() => synthCase(1, { shape: [2, 32, 32] }), /shape/);
});

Deno.test("smoothNoise: seeded, bounded, spatially smooth", () => {
  const shape: [number, number, number] = [8, 16, 16];
  const a = smoothNoise(shape, [1, 1, 1], 4, new Random(1));
  deepStrictEqual(a, smoothNoise(shape, [1, 1, 1], 4, new Random(1)));
  ok(a.every((v) => v >= -1 && v <= 1));
  let neighbour = 0, far = 0;
  for (let i = 0; i < a.length - 8; i++) {
    neighbour += Math.abs(a[i + 1] - a[i]);
    far += Math.abs(a[i + 8] - a[i]);
  }
  ok(neighbour < 0.5 * far, "adjacent voxels should differ less than distant ones");
});

Deno.test("voxseg synth writes a dataset that readDataset and openCase accept", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "synth");
    const args = ["synth", "--out", out, "--cases", "5", "--shape", "16,32,32", "--seed", "4"];
    const run = await runCliCaptured(args);
    strictEqual(run.code, 0, run.stderr);
    strictEqual(run.stdout.split("\n").filter((l) => l.startsWith("synth_")).length, 5);
    const dataset = await readDataset(out);
    deepStrictEqual(dataset.classes, ["background", "lung", "infection"]);
    strictEqual(dataset.modality, "CT");
    strictEqual(dataset.cases.length, 5);
    deepStrictEqual(dataset.cases.map((c) => c.split).sort(), [
      "test",
      "train",
      "train",
      "train",
      "val",
    ]);
    ok(dataset.intensity && dataset.intensity.mean < -500, "foreground is mostly lung");
    for (const c of dataset.cases) {
      deepStrictEqual(c.shape, [16, 32, 32]);
      ok(c.foreground[1].length > 0, `${c.id} has no lung coordinates`);
    }
    const reader = await openCase(join(out, dataset.cases[0].path));
    ok(reader.hasLabel);
    strictEqual(reader.imageDtype, "int16");
    // Same seed, same dataset: a second run refuses to overwrite, --force regenerates it.
    strictEqual((await runCliCaptured(args)).code, 2);
    const before = await Deno.readTextFile(join(out, "dataset.json"));
    strictEqual((await runCliCaptured([...args, "--force"])).code, 0);
    strictEqual(await Deno.readTextFile(join(out, "dataset.json")), before);
  });
});

Deno.test("ensureSynthDataset generates only when dataset.json is missing", async () => {
  await withTempDir(async (dir) => {
    const opts = { cases: 2, shape: [12, 24, 24] as [number, number, number] };
    strictEqual(await ensureSynthDataset(dir, opts), true);
    const stat = await Deno.stat(join(dir, "dataset.json"));
    strictEqual(await ensureSynthDataset(dir, opts), false);
    deepStrictEqual((await Deno.stat(join(dir, "dataset.json"))).mtime, stat.mtime);
    strictEqual((await readDataset(dir)).cases.length, 2);
  });
});

Deno.test("ensureSynthDataset replaces an older or different synthetic dataset, not others", async () => {
  await withTempDir(async (dir) => {
    const opts = { cases: 2, shape: [12, 24, 24] as [number, number, number] };
    strictEqual(await ensureSynthDataset(dir, opts), true);
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "dataset.json")));
    strictEqual(manifest.source.generator, SYNTH_GENERATOR);
    // Other options (here a third case) regenerate it.
    strictEqual(await ensureSynthDataset(dir, { ...opts, cases: 3 }), true);
    strictEqual((await readDataset(dir)).cases.length, 3);
    // A manifest from an older generator (no stamp) is replaced too.
    delete manifest.source;
    await Deno.writeTextFile(join(dir, "dataset.json"), JSON.stringify(manifest));
    strictEqual(await ensureSynthDataset(dir, opts), true);
    strictEqual((await readDataset(dir)).cases.length, 2);
    // Someone else's dataset in the folder is an error, and stays.
    manifest.name = "mine";
    await Deno.writeTextFile(join(dir, "dataset.json"), JSON.stringify(manifest));
    await rejects(ensureSynthDataset(dir, opts), /holds dataset "mine"/);
    strictEqual(JSON.parse(await Deno.readTextFile(join(dir, "dataset.json"))).name, "mine");
  });
});

Deno.test("synthCase cohort: positive gives every case lesions; mixed keeps its negatives", () => {
  const seeds = Array.from({ length: 24 }, (_, i) => i);
  const count = (cohort: "positive" | "mixed") =>
    seeds.map((s) => synthCase(s, { shape: [12, 24, 24], cohort }).lesions.length);
  const positive = count("positive"), mixed = count("mixed");
  ok(positive.every((n) => n >= 2 && n <= 8), `positive: ${positive}`);
  ok(mixed.some((n) => n === 0), `mixed has cases without infection: ${mixed}`);
});
