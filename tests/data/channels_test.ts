/**
 * Multi-channel helpers: per-channel normalisation choice and resolution, statistics at
 * conversion (checked against hand computations), reading channels from 3D and 4D NIfTI.
 */

import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  caseChannelNormalizations,
  channelCaseStats,
  channelCount,
  channelNormalizations,
  checkChannelGrids,
  decodeNiftiChannels,
  resolveChannelNormalizations,
  withChannels,
} from "../../src/data/channels.ts";
import {
  buildManifest,
  type CaseEntry,
  intensityStats,
  validateManifest,
} from "../../src/data/dataset.ts";
import { gzip } from "../../src/data/gzip.ts";
import { decodeNifti } from "../../src/data/nifti.ts";
import type { Normalization } from "../../src/data/normalize.ts";
import { Random } from "../../src/base/random.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { buildNifti, float32Bytes, int16Bytes } from "./nifti_builder.ts";

const CT: Normalization = { kind: "ct-window", lo: -1000, hi: 400 };
const Z: Normalization = { kind: "zscore", clipLo: 0, clipHi: 9, mean: 4, std: 2 };

Deno.test("channelNormalizations: the recorded list, or normalisation for every channel", () => {
  deepStrictEqual(channelNormalizations({ normalisation: CT }), [CT]);
  deepStrictEqual(channelNormalizations({ normalisation: CT, model: { inChannels: 2 } }), [CT, CT]);
  const record = { normalisation: CT, channelNormalisations: [CT, Z] };
  deepStrictEqual(channelNormalizations({ ...record, config: { model: { inChannels: 2 } } }), [
    CT,
    Z,
  ]);
  deepStrictEqual(channelNormalizations(record, 2), [CT, Z]);
  throws(() => channelNormalizations(record, 3), /normalises 2 channels .* the input has 3/);
});

const stats = (mean: number, std: number) => ({
  mean,
  std,
  min: mean - 3 * std,
  max: mean + 3 * std,
});
const fg = (mean: number) => ({ mean, std: 5, p0_5: mean - 10, p99_5: mean + 10, min: 0, max: 99 });

function entry(id: string, imageChannels?: ReturnType<typeof stats>[]): CaseEntry {
  return {
    id,
    path: `cases/${id}.zarr`,
    split: "train",
    shape: [2, 2, 2],
    spacingMm: [1, 1, 1],
    hasLabel: false,
    voxelsPerClass: [],
    foreground: [],
    ...(imageChannels ? { image: imageChannels[0], imageChannels } : {}),
  };
}

Deno.test("resolveChannelNormalizations: CT window for CT channels, zscore-case for the others", () => {
  const dataset = {
    name: "petct",
    modality: "CT",
    channels: ["CT", "PET"],
    intensity: fg(-100),
    intensityChannels: [fg(-100), fg(7)],
    cases: [
      entry("a", [stats(-500, 300), stats(2, 1)]),
      entry("b", [stats(-400, 200), stats(3, 2)]),
    ],
  };
  deepStrictEqual(resolveChannelNormalizations(dataset, { kind: "auto", window: [-200, 300] }), [
    { kind: "ct-window", lo: -200, hi: 300 },
    { kind: "zscore-case" },
  ]);
  // Without per-case statistics the non-CT channel falls back to its own foreground z-score.
  const old = { ...dataset, cases: [entry("a")] };
  deepStrictEqual(resolveChannelNormalizations(old, { kind: "auto" }), [
    { kind: "ct-window", lo: -1000, hi: 400 },
    { kind: "zscore", clipLo: -3, clipHi: 17, mean: 7, std: 5 },
  ]);
  // An explicit kind applies to every channel, zscore with each channel's statistics.
  deepStrictEqual(resolveChannelNormalizations(dataset, { kind: "zscore" }), [
    { kind: "zscore", clipLo: -110, clipHi: -90, mean: -100, std: 5 },
    { kind: "zscore", clipLo: -3, clipHi: 17, mean: 7, std: 5 },
  ]);
  throws(
    () =>
      resolveChannelNormalizations({ ...dataset, intensityChannels: [fg(1), null] }, {
        kind: "zscore",
      }),
    /channel 1 \("PET"\): .*no intensity statistics/,
  );
  // One channel: the modality decides, as for a one-channel dataset.
  const one = { ...dataset, channels: undefined, intensityChannels: undefined, modality: "MR" };
  deepStrictEqual(
    resolveChannelNormalizations({ ...one, cases: [entry("a", [stats(1, 1)])] }, {
      kind: "auto",
    }),
    [{ kind: "zscore-case" }],
  );
  strictEqual(channelCount(dataset), 2);
  strictEqual(channelCount(one), 1);
});

Deno.test("caseChannelNormalizations: each channel by the case's own statistics of it", () => {
  const e = entry("a", [stats(-500, 300), stats(2, 0.5)]);
  deepStrictEqual(caseChannelNormalizations(e, [CT, { kind: "zscore-case" }]), [
    CT,
    { kind: "zscore", clipLo: 0.5, clipHi: 3.5, mean: 2, std: 0.5 },
  ]);
  throws(
    () => caseChannelNormalizations(entry("b"), [CT, { kind: "zscore-case" }]),
    /case b, channel 1: zscore-case normalisation needs each case's image statistics/,
  );
});

function volume(shape: Shape3, data: ArrayLike<number>, affine?: number[]): Volume {
  return {
    shape,
    spacingMm: [1, 1, 1],
    affine: affine ?? [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    data: Float32Array.from(data),
  };
}

Deno.test("channelCaseStats: whole-image statistics per channel, foreground sampled at the same voxels", () => {
  const shape: Shape3 = [1, 2, 3];
  const ch0 = volume(shape, [10, 20, 30, 40, 50, 60]);
  const ch1 = volume(shape, [1, 2, 3, 4, 5, 6]);
  const label = volume(shape, [0, 1, 0, 2, 2, 0]);
  const s = channelCaseStats([ch0, ch1], label, new Random(0));
  deepStrictEqual(s.imageChannels[0].mean, 35);
  ok(Math.abs(s.imageChannels[1].std - Math.sqrt(35 / 12)) < 1e-12);
  // Three foreground voxels, fewer than the sample size: all of them, in voxel order.
  deepStrictEqual(s.foreground!.map((f) => Array.from(f.intensities)), [[20, 40, 50], [2, 4, 5]]);
  deepStrictEqual(s.foreground!.map((f) => [f.min, f.max]), [[20, 50], [2, 5]]);
  // A reservoir of 2: the same voxels in both channels.
  const few = channelCaseStats([ch0, ch1], label, new Random(3), 2);
  deepStrictEqual(
    Array.from(few.foreground![1].intensities, (v) => v * 10),
    Array.from(few.foreground![0].intensities),
  );
  strictEqual(channelCaseStats([ch0], undefined, new Random(0)).foreground, undefined);
});

Deno.test("withChannels: names and pooled per-channel foreground statistics; channel 0's is `intensity`", () => {
  const manifest = buildManifest({ name: "d", modality: "CT", classes: ["bg", "fg"], cases: [] });
  const a = [{ intensities: Float32Array.of(1, 2), min: 1, max: 2 }, {
    intensities: Float32Array.of(7, 9),
    min: 7,
    max: 9,
  }];
  const b = [a[0], { intensities: Float32Array.of(11), min: 11, max: 11 }];
  const out = withChannels(manifest, ["CT", "T1"], [a, b]);
  deepStrictEqual(out.channels, ["CT", "T1"]);
  strictEqual(out.intensityChannels![0], manifest.intensity);
  deepStrictEqual(out.intensityChannels![1], intensityStats([Float32Array.of(7, 9, 11)], 7, 11));
  strictEqual(out.intensityChannels![1]!.mean, 9);
  strictEqual(withChannels(manifest, ["CT"], []), manifest);
});

Deno.test("checkChannelGrids names the file of the channel off channel 0's grid", () => {
  const a = volume([1, 1, 2], [0, 0]);
  checkChannelGrids([a, volume([1, 1, 2], [1, 1])], ["a", "b"]);
  throws(
    () => checkChannelGrids([a, volume([1, 2, 1], [1, 1])], ["a.nii", "b.nii"]),
    /b\.nii: channel 1 is not on the grid of channel 0 \(a\.nii\): shape 1×2×1 differs from 1×1×2/,
  );
  const shifted = volume([1, 1, 2], [1, 1], [1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  throws(
    () => checkChannelGrids([a, shifted], ["a", "c.nii"]),
    /c\.nii: .*affine differs by up to 0\.5 mm/,
  );
});

Deno.test("decodeNiftiChannels: a 4D NIfTI (v1 and v2, gz or not) splits into its 3D channels", async () => {
  const dims = [3, 2, 2]; // x, y, z
  const n = 12;
  const values = [
    Array.from({ length: n }, (_, i) => i - 5),
    Array.from({ length: n }, (_, i) => 100 + 3 * i),
  ];
  const pixdim = [1, 0.5, 0.75, 2, 1, 1, 1, 1];
  for (const version of [1, 2] as const) {
    for (const littleEndian of [true, false]) {
      const int16 = buildNifti({
        version,
        littleEndian,
        dim: [4, ...dims, 2, 1, 1, 1],
        datatype: 4,
        bitpix: 16,
        pixdim,
        data: int16Bytes(values.flat(), littleEndian),
      });
      for (const bytes of [int16, await gzip(int16)]) {
        const channels = await decodeNiftiChannels(bytes);
        strictEqual(channels.length, 2);
        channels.forEach((c, k) => {
          deepStrictEqual(c.shape, [2, 2, 3]);
          deepStrictEqual(c.spacingMm, [2, 0.75, 0.5]);
          deepStrictEqual(Array.from(c.data), values[k]);
        });
      }
    }
  }
  // A 3D file is one channel, decoded as decodeNifti does.
  const three = buildNifti({
    dim: [3, ...dims, 1, 1, 1, 1],
    datatype: 16,
    bitpix: 32,
    pixdim,
    data: float32Bytes(values[1], true),
  });
  const [only, ...rest] = await decodeNiftiChannels(three);
  strictEqual(rest.length, 0);
  deepStrictEqual(only.data, (await decodeNifti(three)).data);
  const five = buildNifti({
    dim: [5, ...dims, 2, 2, 1, 1],
    datatype: 4,
    bitpix: 16,
    data: int16Bytes(Array(4 * n).fill(0), true),
  });
  await rejects(decodeNiftiChannels(five), /5D NIfTI \(dim\[5\] = 2\)/);
  const truncated = buildNifti({
    dim: [4, ...dims, 3, 1, 1, 1],
    datatype: 4,
    bitpix: 16,
    data: int16Bytes(values.flat(), true),
  });
  await rejects(decodeNiftiChannels(truncated), /truncated NIfTI: 3 volumes need/);
});

Deno.test("validateManifest checks the channel fields", () => {
  const base = buildManifest({ name: "d", modality: "CT", classes: ["bg", "fg"], cases: [] });
  const two = { ...base, channels: ["CT", "PET"], intensityChannels: [null, null] };
  validateManifest(two);
  throws(
    () => validateManifest({ ...base, channels: ["CT"] }),
    /channels must list at least 2 channel names/,
  );
  throws(
    () => validateManifest({ ...two, intensityChannels: [null] }),
    /intensityChannels must have 2 entries \(one per channel\)/,
  );
  throws(
    () => validateManifest({ ...base, intensityChannels: [null, null] }),
    /intensityChannels is only for a dataset of several channels/,
  );
  const one = { ...entry("a"), imageChannels: [stats(1, 1)] };
  throws(
    () => validateManifest({ ...two, cases: [one] }),
    /cases\[0\] \("a"\)\.imageChannels must have 2 entries/,
  );
  throws(
    () =>
      validateManifest({ ...two, cases: [{ ...one, imageChannels: [stats(1, 1), { mean: 1 }] }] }),
    /imageChannels\[1\]\.std must be a number/,
  );
});
