/**
 * Preprocessing: a case at its own spacing is unchanged, cropping changes nothing but the
 * extent, preprocessCase + restoreLabels lands exactly on the original grid, and
 * preprocessDataset writes a dataset whose cases carry the record that restores their original
 * geometry (while cases without it still read).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Random } from "../../src/base/random.ts";
import {
  caseChannelNormalizations,
  channelCaseStats,
  withChannels,
} from "../../src/data/channels.ts";
import { cropArray } from "../../src/data/crop.ts";
import { ctWindow, normalizeInPlace } from "../../src/data/normalize.ts";
import {
  buildManifest,
  caseStats,
  type ManifestCase,
  readDataset,
  resolveCase,
  type Split,
  writeDataset,
} from "../../src/data/dataset.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import {
  preprocessCase,
  preprocessChannels,
  preprocessDataset,
  type PreprocessProgress,
  restoreLabels,
} from "../../src/data/preprocess.ts";
import { resampledShape } from "../../src/data/resample.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { withTempDir } from "./temp_dir.ts";

const CLASSES = ["background", "lung", "lesion"];

/** A rotated affine with an origin, for spacing z, y, x. */
function affineOf([sz, sy, sx]: Shape3): number[] {
  const c = Math.cos(0.2), s = Math.sin(0.2);
  return [sx * c, -sy * s, 0, -30, sx * s, sy * c, 0, 12, 0, 0, sz, 80, 0, 0, 0, 1];
}

/**
 * A CT-like case: −1024 outside a body box, noisy tissue inside, a lung ball (1) with a lesion
 * ball (2) in it.
 */
function ctCase(shape: Shape3, spacingMm: Shape3, seed: number): { image: Volume; label: Volume } {
  const [D, H, W] = shape;
  const rng = new Random(seed);
  const image = new Int16Array(D * H * W).fill(-1024);
  const label = new Uint8Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        const body = z >= 1 && z < D - 2 && y >= 4 && y < H - 3 && x >= 3 && x < W - 5;
        if (!body) continue;
        image[i] = rng.int(-900, 200);
        const r1 = Math.hypot((z - D / 2) / D, (y - H / 2) / H, (x - W / 2) / W);
        const r2 = Math.hypot((z - D / 2) / D, (y - H * 0.45) / H, (x - W * 0.55) / W);
        label[i] = r2 < 0.15 ? 2 : r1 < 0.3 ? 1 : 0;
      }
    }
  }
  const affine = affineOf(spacingMm);
  return {
    image: { shape, spacingMm, affine, data: image },
    label: { shape, spacingMm, affine, data: label },
  };
}

/** Fraction of voxels farther than 1 voxel from a class boundary of `a` where `b` agrees. */
function interiorAgreement(a: Uint8Array, b: Uint8Array, [D, H, W]: Shape3): number {
  let interior = 0, same = 0;
  const label = (z: number, y: number, x: number) =>
    z < 0 || y < 0 || x < 0 || z >= D || y >= H || x >= W ? -1 : a[x + W * (y + H * z)];
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = label(z, y, x);
        let uniform = true;
        for (let n = 0; n < 125 && uniform; n++) {
          const u = label(
            z + (n % 5) - 2,
            y + (Math.floor(n / 5) % 5) - 2,
            x + Math.floor(n / 25) - 2,
          );
          uniform = u === -1 || u === v;
        }
        if (!uniform) continue;
        interior++;
        if (b[x + W * (y + H * z)] === v) same++;
      }
    }
  }
  assert.ok(interior > (D * H * W) / 3, `only ${interior} interior voxels`);
  return same / interior;
}

const sum = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0);

const world = (a: number[], [k, j, i]: number[]) =>
  [0, 1, 2].map((r) => a[4 * r] * i + a[4 * r + 1] * j + a[4 * r + 2] * k + a[4 * r + 3]);

Deno.test("preprocessCase: at the case's own spacing, image and label are unchanged (bit-exact)", () => {
  const { image, label } = ctCase([8, 14, 16], [2.5, 0.8, 0.8], 1);
  for (const order of [1, 3] as const) {
    const out = preprocessCase(image, label, {
      targetSpacingMm: [2.5, 0.8, 0.8],
      crop: false,
      order,
    });
    assert.ok(out.image.data instanceof Int16Array);
    assert.deepEqual(out.image.data, image.data);
    assert.deepEqual(out.label!.data, label.data);
    assert.deepEqual(out.image.affine, image.affine);
    assert.deepEqual(out.record.cropBox, { start: [0, 0, 0], size: [8, 14, 16] });
    assert.deepEqual(restoreLabels(out.label!.data as Uint8Array, out.record, 3).data, label.data);
  }
});

Deno.test("preprocessCase + restoreLabels: resample, crop, and back onto exactly the original grid", () => {
  const shape: Shape3 = [10, 26, 24], spacing: Shape3 = [2.5, 0.8, 0.9];
  const { image, label } = ctCase(shape, spacing, 2);
  const opts = { targetSpacingMm: [1.5, 1.2, 1.1] as Shape3, order: 3 as const };
  const cropped = preprocessCase(image, label, { ...opts, crop: true });
  const whole = preprocessCase(image, label, { ...opts, crop: false });
  const { record } = cropped;
  const outShape = resampledShape(shape, spacing, opts.targetSpacingMm);
  assert.deepEqual(record.resampledShape, outShape);
  assert.deepEqual(record.originalShape, shape);
  assert.deepEqual(record.originalSpacingMm, spacing);
  assert.deepEqual(record.originalAffine, image.affine);
  assert.equal(record.background, -1024);
  assert.deepEqual(cropped.image.shape, record.cropBox.size);
  assert.ok(cropped.image.data instanceof Int16Array);
  assert.ok(record.cropBox.size.some((s, a) => s < outShape[a]), "the body box is cropped");
  // Cropping changes nothing but the extent: the crop of the whole, and background around it.
  assert.deepEqual(cropped.image.data, cropArray(whole.image.data, outShape, record.cropBox));
  assert.deepEqual(cropped.label!.data, cropArray(whole.label!.data, outShape, record.cropBox));
  const outside = whole.image.data.filter((_, i) => {
    const c = [
      Math.floor(i / (outShape[1] * outShape[2])),
      Math.floor(i / outShape[2]) % outShape[1],
      i % outShape[2],
    ];
    return !c.every((v, a) =>
      v >= record.cropBox.start[a] && v < record.cropBox.start[a] + record.cropBox.size[a]
    );
  });
  assert.ok(outside.length > 0 && outside.every((v) => v === -1024));
  // The stored grid sits where the resampled grid's box does in the world.
  const p = record.cropBox.start.map((o, a) => ((o + 0.5) * shape[a]) / outShape[a] - 0.5);
  world(cropped.image.affine, [0, 0, 0]).forEach((v, r) =>
    assert.ok(Math.abs(v - world(image.affine, p)[r]) < 1e-9)
  );
  // Back onto the original grid.
  const restored = restoreLabels(cropped.label!.data as Uint8Array, record, 3);
  assert.deepEqual(restored.shape, shape);
  assert.deepEqual(restored.spacingMm, spacing);
  assert.deepEqual(restored.affine, image.affine);
  assert.deepEqual(
    restored.data,
    restoreLabels(whole.label!.data as Uint8Array, whole.record, 3).data,
  );
  const agree = interiorAgreement(label.data as Uint8Array, restored.data as Uint8Array, shape);
  assert.ok(agree >= 0.99, `restored labels agree on ${agree} of interior voxels`);
  assert.throws(
    () => restoreLabels(new Uint8Array(5), record),
    /labels have 5 voxels but the preprocessed grid/,
  );
});

Deno.test("preprocessCase: float images stay float32; a label outside the image's region is kept", () => {
  const shape: Shape3 = [6, 12, 12];
  const data = new Float32Array(6 * 12 * 12);
  data[5 + 12 * (5 + 12 * 3)] = 2.5; // one bright voxel on zero background
  const labels = new Uint8Array(data.length);
  labels[1 + 12 * (10 + 12 * 1)] = 1; // a labelled voxel far from it
  const affine = affineOf([2, 1, 1]);
  const out = preprocessCase(
    { shape, spacingMm: [2, 1, 1], affine, data },
    { shape, spacingMm: [2, 1, 1], affine, data: labels },
    { targetSpacingMm: [2, 1, 1], crop: true, order: 1 },
  );
  assert.ok(out.image.data instanceof Float32Array);
  assert.equal(out.record.background, 0);
  assert.deepEqual(out.record.cropBox, { start: [1, 5, 1], size: [3, 6, 5] });
  assert.equal(sum(out.label!.data), 1);
  assert.equal(sum(out.image.data), 2.5);
});

/** Writes a source dataset of three cases (train and val labelled, test unlabelled) at `dir`. */
async function sourceDataset(dir: string) {
  const specs: [string, Split, Shape3, Shape3, boolean][] = [
    ["a", "train", [9, 20, 22], [2.5, 0.8, 0.9], true],
    ["b", "val", [12, 18, 18], [2, 1, 1], true],
    ["c", "test", [8, 16, 20], [3, 0.7, 0.8], false],
  ];
  const rng = new Random(4);
  const cases: ManifestCase[] = [];
  const originals = new Map<string, { image: Volume; label: Volume }>();
  for (const [id, split, shape, spacing, labelled] of specs) {
    const c = ctCase(shape, spacing, cases.length + 10);
    originals.set(id, c);
    const path = `cases/${id}.zarr`;
    await writeCase(join(dir, path), {
      image: c.image,
      label: labelled ? c.label : undefined,
      chunks: 8,
      name: id,
    });
    const stats = labelled
      ? caseStats(c.image, c.label, CLASSES, rng.fork())
      : { shape: c.image.shape, spacingMm: c.image.spacingMm };
    cases.push({ id, path, split, stats });
  }
  await writeDataset(dir, buildManifest({ name: "tiny", modality: "CT", classes: CLASSES, cases }));
  return originals;
}

Deno.test("preprocessDataset: readable cases whose preprocessing record restores the original geometry", async () => {
  await withTempDir(async (tmp) => {
    const src = join(tmp, "src"), out = join(tmp, "pp");
    const originals = await sourceDataset(src);
    const dataset = await readDataset(src);
    const progress: PreprocessProgress[] = [];
    const manifest = await preprocessDataset(dataset, out, {
      targetSpacingMm: [2, 1, 1],
      crop: true,
      order: 3,
      chunks: 8,
      codec: "gzip",
      seed: 1,
      onCase: (p) => progress.push(p),
    });
    assert.deepEqual(progress.map((p) => [p.index, p.total, p.id]), [[0, 3, "a"], [1, 3, "b"], [
      2,
      3,
      "c",
    ]]);
    const pp = await readDataset(out);
    assert.deepEqual(pp.cases, manifest.cases);
    assert.equal(pp.name, "tiny");
    assert.equal(pp.modality, "CT");
    assert.deepEqual(pp.classes, CLASSES);
    assert.deepEqual(pp.targetSpacingMm, [2, 1, 1]);
    assert.equal(pp.source?.preprocessedFrom, "tiny");
    assert.deepEqual(pp.source?.targetSpacingMm, [2, 1, 1]);
    assert.deepEqual(pp.cases.map((c) => [c.id, c.split, c.hasLabel]), [["a", "train", true], [
      "b",
      "val",
      true,
    ], ["c", "test", false]]);
    assert.ok(pp.intensity !== null && pp.intensity.min >= -900 && pp.intensity.max <= 200);
    for (const entry of pp.cases) {
      const original = originals.get(entry.id)!;
      const reader = await openCase(resolveCase(pp, entry.id));
      const record = reader.preprocessing!;
      assert.ok(record, `case ${entry.id} has its preprocessing record`);
      assert.equal(reader.imageDtype, "int16");
      assert.deepEqual(reader.shape, record.cropBox.size);
      assert.deepEqual(entry.shape, reader.shape);
      assert.deepEqual(entry.spacingMm, reader.spacingMm);
      assert.deepEqual(record.originalShape, original.image.shape);
      assert.deepEqual(record.originalAffine, original.image.affine);
      assert.deepEqual(
        record.resampledShape,
        resampledShape(original.image.shape, original.image.spacingMm, [2, 1, 1]),
      );
      assert.equal(reader.hasLabel, entry.hasLabel);
      if (!entry.hasLabel) continue;
      const labels = (await reader.readFullLabel()).data as Uint8Array;
      // Foreground coordinates point at voxels of their class on the preprocessed grid.
      const [, h, w] = reader.shape;
      entry.foreground.forEach((f, c) => {
        for (let j = 0; j < f.length; j += 3) {
          assert.equal(labels[f[j + 2] + w * (f[j + 1] + h * f[j])], c);
        }
      });
      assert.ok(entry.voxelsPerClass[1] > 0 && entry.voxelsPerClass[2] > 0);
      const restored = restoreLabels(labels, record, CLASSES.length);
      assert.deepEqual(restored.shape, original.label.shape);
      assert.deepEqual(restored.affine, original.label.affine);
      const agree = interiorAgreement(
        original.label.data as Uint8Array,
        restored.data as Uint8Array,
        restored.shape,
      );
      assert.ok(agree >= 0.99, `case ${entry.id}: restored labels agree on ${agree}`);
    }
    // Cases without the attribute (the source's) still read.
    const old = await openCase(resolveCase(dataset, "a"));
    assert.equal(old.preprocessing, undefined);
    assert.deepEqual((await old.readFullImage()).data, originals.get("a")!.image.data);
    // Assembled atomically: nothing is left beside the output.
    const names = [];
    for await (const e of Deno.readDir(tmp)) names.push(e.name);
    assert.deepEqual(names.sort(), ["pp", "src"]);
  });
});

Deno.test("preprocessDataset: a case's intensity map brings it onto the others' scale (int16)", async () => {
  await withTempDir(async (tmp) => {
    const src = join(tmp, "src"), out = join(tmp, "pp");
    const originals = await sourceDataset(src);
    const dataset = await readDataset(src);
    const map = { scale: 2, offset: -100 };
    await preprocessDataset(dataset, out, {
      targetSpacingMm: dataset.cases[1].spacingMm,
      crop: false,
      order: 1,
      intensityMaps: { b: map },
    });
    const pp = await readDataset(out);
    assert.deepEqual(pp.source?.intensityMaps, { b: map });
    const reader = await openCase(resolveCase(pp, "b"));
    assert.equal(reader.imageDtype, "int16");
    const got = (await reader.readFullImage()).data;
    const want = originals.get("b")!.image.data;
    // Case b is at the target spacing: only the map changes its voxels.
    for (let i = 0; i < want.length; i += 97) assert.equal(got[i], Math.round(want[i] * 2 - 100));
    // The unlabelled case gets its whole-image statistics too.
    const c = pp.cases.find((e) => e.id === "c")!;
    assert.ok(c.image && Number.isFinite(c.image.mean) && c.image.std > 0);
  });
});

Deno.test("preprocessDataset refuses an output folder that holds the source or other files", async () => {
  await withTempDir(async (tmp) => {
    const src = join(tmp, "src");
    await sourceDataset(src);
    const dataset = await readDataset(src);
    const opts = { targetSpacingMm: [2, 1, 1] as Shape3, crop: true, order: 1 as const };
    await assert.rejects(
      preprocessDataset(dataset, src, opts),
      /holds the dataset being preprocessed/,
    );
    await assert.rejects(
      preprocessDataset(dataset, tmp, opts),
      /holds the dataset being preprocessed/,
    );
    await Deno.mkdir(join(tmp, "busy"));
    await Deno.writeTextFile(join(tmp, "busy", "notes.txt"), "keep");
    await assert.rejects(
      preprocessDataset(dataset, join(tmp, "busy"), opts),
      /not empty and holds no voxseg dataset/,
    );
    assert.equal(await Deno.readTextFile(join(tmp, "busy", "notes.txt")), "keep");
  });
});

Deno.test("a case's preprocessing attribute is checked on write and on read", async () => {
  await withTempDir(async (tmp) => {
    const { image, label } = ctCase([6, 10, 10], [2, 1, 1], 3);
    const { record } = preprocessCase(image, label, {
      targetSpacingMm: [2, 1, 1],
      crop: false,
      order: 1,
    });
    await assert.rejects(
      writeCase(join(tmp, "bad.zarr"), { image, preprocessing: { ...record, order: 2 as 1 } }),
      /preprocessing\.order must be 1 or 3/,
    );
    const path = join(tmp, "a.zarr");
    await writeCase(path, { image, preprocessing: record });
    assert.deepEqual((await openCase(path)).preprocessing, record);
    // A record whose crop box does not match the stored image is refused on read.
    const meta = JSON.parse(await Deno.readTextFile(join(path, "zarr.json")));
    meta.attributes.voxseg.preprocessing.cropBox = { start: [0, 0, 0], size: [5, 10, 10] };
    await Deno.writeTextFile(join(path, "zarr.json"), JSON.stringify(meta));
    await assert.rejects(openCase(path), /cropBox\.size \[5,10,10\] differs from the image shape/);
  });
});

// ---------------------------------------------------------------------------------------------
// Several channels

/**
 * A two-channel case: CT in HU (−1024 outside a body box, x 5..15) and a float PET-like channel
 * (0 outside a box further left, x 2..10), a label ball where they overlap.
 */
function twoChannelCase(shape: Shape3, spacingMm: Shape3, seed: number) {
  const [D, H, W] = shape;
  const rng = new Random(seed);
  const ct = new Int16Array(D * H * W).fill(-1024);
  const pet = new Float32Array(D * H * W);
  const label = new Uint8Array(D * H * W);
  for (let z = 0, i = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++, i++) {
        if (z >= 1 && y >= 3 && y < H - 2 && x >= 5 && x < 15) ct[i] = rng.int(-900, 200);
        if (z < D - 1 && y >= 5 && y < H - 4 && x >= 2 && x < 10) {
          pet[i] = 1 + 9 * rng.uniform(0, 1);
        }
        if (Math.hypot(z - D / 2, y - H / 2, x - 8) < 2.5) label[i] = 1;
      }
    }
  }
  const affine = affineOf(spacingMm);
  const vol = <T extends Volume["data"]>(data: T): Volume => ({ shape, spacingMm, affine, data });
  return { channels: [vol(ct), vol(pet)], label: vol(label) };
}

/** Writes a two-channel dataset (CT, PET) of a train and a val case at `dir`. */
async function twoChannelSource(dir: string) {
  const names = ["CT", "PET"], classes = ["background", "lesion"];
  const rng = new Random(7);
  const cases: ManifestCase[] = [], foreground = [];
  const originals = new Map<string, ReturnType<typeof twoChannelCase>>();
  for (
    const [id, split, spacing] of [["a", "train", [2, 1, 1]], ["b", "val", [2.5, 1, 1]]] as const
  ) {
    const c = twoChannelCase([8, 16, 18], [...spacing], originals.size + 1);
    originals.set(id, c);
    const path = `cases/${id}.zarr`;
    await writeCase(join(dir, path), {
      image: c.channels,
      label: c.label,
      chunks: 8,
      name: id,
      channelNames: names,
    });
    const caseRng = rng.fork();
    const stats: ManifestCase["stats"] = caseStats(c.channels[0], c.label, classes, caseRng);
    const per = channelCaseStats(c.channels, c.label, caseRng);
    stats.imageChannels = per.imageChannels;
    foreground.push(per.foreground!);
    cases.push({ id, path, split, stats });
  }
  const manifest = buildManifest({ name: "ctpet", modality: "CT", classes, cases });
  await writeDataset(dir, withChannels(manifest, names, foreground));
  return originals;
}

Deno.test("preprocessChannels: every channel resampled onto one grid and cropped to the union of their regions", () => {
  const { channels, label } = twoChannelCase([8, 16, 18], [2, 1, 1], 3);
  const opts = { targetSpacingMm: [3, 1.5, 1.5] as Shape3, order: 3 as const };
  const whole = preprocessChannels(channels, label, { ...opts, crop: false });
  const cropped = preprocessChannels(channels, label, { ...opts, crop: true });
  const outShape = whole.record.resampledShape;
  // Each channel as it would be alone, on the same grid.
  whole.channels.forEach((c, k) => {
    assert.deepEqual(c.shape, outShape);
    assert.deepEqual(
      c.data,
      preprocessCase(channels[k], label, { ...opts, crop: false }).image.data,
    );
  });
  assert.ok(whole.channels[0].data instanceof Int16Array);
  assert.ok(whole.channels[1].data instanceof Float32Array);
  // One crop for all: the union of the CT's body (x from 5) and the PET's region (x 2..10).
  const box = cropped.record.cropBox;
  const ctOnly = preprocessCase(channels[0], label, { ...opts, crop: true }).record.cropBox;
  assert.ok(
    box.start[2] < ctOnly.start[2],
    `the PET region widens the box: ${box.start} vs ${ctOnly.start}`,
  );
  cropped.channels.forEach((c, k) => {
    assert.deepEqual(c.shape, box.size);
    assert.deepEqual(
      c.data,
      cropArray(whole.channels[k].data, outShape, box),
      `channel ${k} aligned`,
    );
  });
  assert.deepEqual(cropped.label!.data, cropArray(whole.label!.data, outShape, box));
  assert.equal(cropped.record.background, -1024);
  assert.throws(
    () =>
      preprocessChannels(
        [channels[0], twoChannelCase([8, 16, 17], [2, 1, 1], 3).channels[1]],
        label,
        {
          ...opts,
          crop: true,
        },
      ),
    /image channel 1: .* differs from channel 0's/,
  );
});

Deno.test("preprocessDataset: a two-channel dataset keeps its channels aligned, each with its own statistics", async () => {
  await withTempDir(async (tmp) => {
    const src = join(tmp, "src"), out = join(tmp, "pp");
    const originals = await twoChannelSource(src);
    const dataset = await readDataset(src);
    // At case a's own spacing along z: a is only cropped; b is resampled. A map on b's PET only.
    const manifest = await preprocessDataset(dataset, out, {
      targetSpacingMm: [2, 1, 1],
      crop: true,
      order: 3,
      chunks: 8,
      intensityMaps: { b: [null, { scale: 10, offset: 5 }] },
    });
    const pp = await readDataset(out);
    assert.deepEqual(pp.channels, ["CT", "PET"]);
    assert.equal(pp.intensityChannels?.length, 2);
    assert.deepEqual(pp.intensity, pp.intensityChannels![0]);
    assert.deepEqual(pp.cases, manifest.cases);
    for (const entry of pp.cases) {
      const reader = await openCase(resolveCase(pp, entry.id));
      assert.equal(reader.channels, 2);
      assert.deepEqual(reader.channelNames, ["CT", "PET"]);
      const [ct, pet] = await reader.readFullChannels();
      assert.deepEqual(ct.shape, pet.shape);
      assert.deepEqual(entry.shape, ct.shape);
      // Each channel's own whole-image statistics, as z-scoring per case needs them.
      for (const [k, c] of [ct, pet].entries()) {
        const s = entry.imageChannels![k];
        const mean = sum(c.data) / c.data.length;
        assert.ok(Math.abs(s.mean - mean) < 1e-3 * Math.max(1, Math.abs(mean)), `${entry.id} ${k}`);
      }
      assert.deepEqual(entry.imageChannels![0], entry.image);
      const norms = caseChannelNormalizations(entry, [ctWindow(-1000, 400), {
        kind: "zscore-case",
      }]);
      assert.deepEqual(norms[0], { kind: "ct-window", lo: -1000, hi: 400 });
      assert.equal(norms[1].kind, "zscore");
      const z = normalizeInPlace(Float32Array.from(pet.data), norms[1]);
      assert.ok(Math.abs(sum(z) / z.length) < 1e-3, "PET z-scored by its own mean");
      if (entry.id !== "a") continue;
      // Case a at its own spacing: each channel is exactly its original, cropped to one box.
      const record = reader.preprocessing!;
      const original = originals.get("a")!;
      original.channels.forEach((c, k) => {
        const got = k === 0 ? ct.data : pet.data;
        assert.deepEqual(
          Array.from(got),
          Array.from(cropArray(c.data, c.shape, record.cropBox)),
          `channel ${k}`,
        );
      });
    }
    // b's map changed its PET channel only (onto int16, ×10 + 5): values well above 1..10.
    const b = await (await openCase(resolveCase(pp, "b"))).readFullChannels();
    assert.ok(Math.max(...b[1].data) > 50 && Math.min(...b[0].data) >= -1024);
    assert.deepEqual(pp.source?.intensityMaps, { b: [null, { scale: 10, offset: 5 }] });
    // A per-channel list of the wrong length is refused, naming the fix.
    await assert.rejects(
      () =>
        preprocessDataset(dataset, join(tmp, "bad"), {
          targetSpacingMm: [2, 1, 1],
          crop: false,
          order: 1,
          intensityMaps: { a: [null] },
        }),
      /intensityMaps\["a"\] lists 1 channel maps for 2 channels; give one per channel/,
    );
  });
});
