import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
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
import { channelCaseStats, withChannels } from "../../src/data/channels.ts";
import {
  channelFingerprint,
  detectIntensityConvention,
  fingerprintChannels,
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

/**
 * A dataset of two labelled cases of two channels, CT in HU and MRI-like (written as
 * `convert --raw` writes them: channel axis, names, per-channel statistics), at `dir`; with
 * `only0`, a one-channel dataset of channel 0 alone.
 */
async function twoChannelDataset(dir: string, only0 = false) {
  const label = labelMap();
  const { hu, mri } = images(label);
  const classes = ["background", "ball", "corner"];
  const names = ["CT", "T2"];
  const cases: ManifestCase[] = [];
  const foreground = [];
  for (const id of ["p", "q"]) {
    const channels = [volume(hu), volume(mri)], seg = volume(label);
    await writeCase(join(dir, "cases", `${id}.zarr`), {
      image: only0 ? channels[0] : channels,
      label: seg,
      chunks: [4, 5, 14],
      ...(only0 ? {} : { channelNames: names }),
    });
    const rng = new Random(1);
    const stats: ManifestCase["stats"] = caseStats(channels[0], seg, classes, rng);
    if (!only0) {
      const per = channelCaseStats(channels, seg, rng);
      stats.imageChannels = per.imageChannels;
      foreground.push(per.foreground!);
    }
    cases.push({ id, path: `cases/${id}.zarr`, split: "train", stats });
  }
  const manifest = buildManifest({ name: "two", modality: "CT", classes, cases });
  await writeDataset(dir, only0 ? manifest : withChannels(manifest, names, foreground));
  return { hu, mri };
}

Deno.test("fingerprintDataset: every channel of a multi-channel dataset, sampled at the same voxels", async () => {
  await withTempDir(async (dir) => {
    const { hu, mri } = await twoChannelDataset(join(dir, "two"));
    const dataset = await readDataset(join(dir, "two"));
    const fp = await fingerprintDataset(dataset, { samplesPerCase: 2_000, seed: 3 });
    strictEqual(fingerprintChannels(fp), 2);
    deepStrictEqual(fp.channels, ["CT", "T2"]);
    deepStrictEqual(fp.intensityChannels, dataset.intensityChannels);
    for (const c of fp.cases) {
      strictEqual(c.imageChannels!.length, 2);
      deepStrictEqual(c.imageChannels![0], c.image);
      deepStrictEqual(c.foregroundChannels![0], c.foreground);
      for (const [k, data] of [hu, mri].entries()) {
        const e = exact(data), s = c.imageChannels![k];
        deepStrictEqual([s.min, s.max, s.airFraction], [e.min, e.max, e.air]);
        ok(Math.abs(s.mean - e.mean) < 1e-6 * Math.max(1, Math.abs(e.mean)));
      }
      // Foreground voxels only, in each channel: 40..44 HU, 3.5..4.5 in the MRI-like channel.
      const [f0, f1] = c.foregroundChannels!;
      deepStrictEqual([f0!.min, f0!.max, f1!.min, f1!.max], [40, 44, 3.5, 4.5]);
      strictEqual(f0!.samples, f1!.samples);
      deepStrictEqual(
        c.imageChannels!.map((s) => detectIntensityConvention(s).convention),
        ["hu", "other"],
      );
    }
    // One channel's view: its statistics in the one-channel fields, its name as the modality.
    const t2 = channelFingerprint(fp, 1);
    strictEqual(t2.modality, "T2");
    deepStrictEqual(t2.intensity, dataset.intensityChannels![1]);
    deepStrictEqual(t2.cases[0].image, fp.cases[0].imageChannels![1]);
    deepStrictEqual(t2.cases[0].foreground, fp.cases[0].foregroundChannels![1]);
    strictEqual(t2.channels, undefined);
    throws(() => channelFingerprint(fp, 2), /channel 2 does not exist: the fingerprint has 2/);
    // Channel 0 reads exactly as the same image alone would (the same draws).
    await twoChannelDataset(join(dir, "one"), true);
    const alone = await fingerprintDataset(await readDataset(join(dir, "one")), {
      samplesPerCase: 2_000,
      seed: 3,
    });
    strictEqual(alone.channels, undefined);
    strictEqual(alone.cases[0].imageChannels, undefined);
    deepStrictEqual(
      alone.cases.map((c) => [c.image, c.foreground]),
      fp.cases.map((c) => [c.image, c.foreground]),
    );
    deepStrictEqual(channelFingerprint(alone, 0), alone);
  });
});
