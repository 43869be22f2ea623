/**
 * Whole-volume prediction with tiny random checkpoints: output geometry equals the input's on
 * real NIfTI files (Debian's mricron templates), with and without resampling; OME-Zarr cases
 * get a labels/pred image written chunk by chunk that equals the in-memory prediction; bad
 * input fails with messages that say what is wrong.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import * as zarr from "zarrita";
import FileSystemStore from "@zarrita/storage/fs";
import { readNifti, writeNifti } from "../../src/data/nifti.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import type { Normalization } from "../../src/data/normalize.ts";
import { initGpu } from "../../src/gpu/mod.ts";
import { saveCheckpoint } from "../../src/nn/checkpoint.ts";
import { encodeSafetensors } from "../../src/nn/safetensors.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { readWeights } from "../../src/nn/weights.ts";
import { buildNifti, float32Bytes } from "../data/nifti_builder.ts";
import { Random } from "../../src/base/random.ts";
import { channelCaseStats, withChannels } from "../../src/data/channels.ts";
import { buildManifest, caseStats, readDataset, writeDataset } from "../../src/data/dataset.ts";
import { datasetValidator } from "../../src/infer/dataset_validator.ts";
import type { LoadedModel } from "../../src/infer/model.ts";
import { loadModel, predictCase, predictVolume } from "../../src/infer/predict.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { withStaticServer } from "../data/static_server.ts";
import { blobVolume, opts, tempRoot, tinyCheckpoint } from "./infer_fixture.ts";

const root = tempRoot("voxseg_predict_test_");
const TEMPLATES = "/usr/share/mricron/templates";
const brainNorm = { kind: "zscore", clipLo: 0, clipHi: 255, mean: 60, std: 40 } as const;

/** True (the test is skipped, saying why) when a real NIfTI file is not installed. */
async function missing(path: string): Promise<boolean> {
  if (await Deno.stat(path).then(() => true, () => false)) return false;
  console.log(`skipping a test: ${path} is absent (Debian: apt-get install mricron-data)`);
  return true;
}

function sameGeometry(a: Volume, b: Volume) {
  assert.deepEqual(b.shape, a.shape);
  assert.deepEqual(b.spacingMm.map((s) => +s.toFixed(6)), a.spacingMm.map((s) => +s.toFixed(6)));
  a.affine.forEach((v, i) =>
    assert.ok(Math.abs(v - b.affine[i]) < 1e-5, `affine[${i}] ${b.affine[i]} vs ${v}`)
  );
}

Deno.test({
  name: "infer CLI on AICHAmc.nii.gz (91×109×91, 2 mm, x flipped) keeps the exact header geometry",
  ...opts,
  ignore: await missing(`${TEMPLATES}/AICHAmc.nii.gz`),
  async fn() {
    const model = await tinyCheckpoint(root, "aicha.safetensors", {
      spacingMm: [2, 2, 2],
      patchSize: [32, 32, 32],
      normalisation: brainNorm,
    });
    const input = `${TEMPLATES}/AICHAmc.nii.gz`;
    const out = join(root, "aicha_seg.nii.gz"), summary = join(root, "aicha.json");
    const r = await runCliCaptured([
      ...["infer", "--model", model, "--in", input, "--out", out],
      ...["--overlap", "0", "--batch-size", "4", "--summary", summary],
    ]);
    assert.equal(r.code, 0, r.stderr);
    const source = await readNifti(input), seg = await readNifti(out);
    sameGeometry(source, seg);
    for (
      const k of [
        "qformCode",
        "sformCode",
        "quatern",
        "qoffset",
        "srow",
        "pixdim",
        "xyztUnits",
      ] as const
    ) {
      assert.deepEqual(seg.header[k], source.header[k], k);
    }
    assert.ok(seg.data instanceof Uint8Array);
    const report = JSON.parse(await Deno.readTextFile(summary));
    const counts = [0, 0, 0];
    for (const v of seg.data) counts[v]++;
    assert.deepEqual(report.classes.map((c: { voxels: number }) => c.voxels), counts);
    assert.ok(Math.abs(report.classes[1].volumeMl - counts[1] * 8 / 1000) < 1e-9);
    assert.equal(report.network, undefined, "2 mm input, 2 mm model: no resampling");
    assert.match(r.stdout, /background\s+\d+/);
  },
});

Deno.test({
  name:
    "ch2.nii.gz (181×217×181, 1 mm) with a 3 mm model: network grid 60×72×60, labels on the input grid",
  ...opts,
  ignore: await missing(`${TEMPLATES}/ch2.nii.gz`),
  async fn() {
    const model = await tinyCheckpoint(root, "ch2.safetensors", {
      spacingMm: [3, 3, 3],
      patchSize: [32, 32, 32],
      normalisation: brainNorm,
    });
    const loaded = await loadModel(model);
    try {
      const ct = await readNifti(`${TEMPLATES}/ch2.nii.gz`);
      const { labels, summary } = await predictVolume(loaded, ct, { batchSize: 4 });
      assert.deepEqual(summary.network?.shape, [60, 72, 60]);
      sameGeometry(ct, labels);
      assert.equal(labels.data.length, 181 * 217 * 181);
      assert.equal(summary.classes.reduce((a, c) => a + c.voxels, 0), labels.data.length);
      const out = join(root, "ch2_seg.nii.gz");
      await writeNifti(out, labels, { like: ct.header });
      const back = await readNifti(out);
      sameGeometry(ct, back);
      assert.deepEqual(back.header.srow, ct.header.srow);
      assert.equal(back.header.sformCode, ct.header.sformCode);
    } finally {
      loaded.dispose();
    }
  },
});

Deno.test(
  "spacing within 10 % runs as is; beyond it the input is resampled and comes back",
  opts,
  async () => {
    const model = await tinyCheckpoint(root, "spacing.safetensors", { spacingMm: [2, 1, 1] });
    const loaded = await loadModel(model);
    try {
      const near = await predictVolume(loaded, blobVolume([16, 20, 18], 1, [2.1, 1.05, 0.95]));
      assert.equal(near.summary.network, undefined);
      const far = blobVolume([16, 20, 18], 1, [3, 0.5, 1]);
      const { labels, summary } = await predictVolume(loaded, far);
      assert.deepEqual(summary.network?.shape, [24, 10, 18]);
      sameGeometry(far, labels);
    } finally {
      loaded.dispose();
    }
  },
);

Deno.test(
  "predictCase writes labels/pred chunk by chunk (local and over HTTP), equal to predictVolume",
  opts,
  async () => {
    const model = await tinyCheckpoint(root, "case.safetensors", {
      normalisation: { kind: "ct-window", lo: -1000, hi: 400 },
    });
    const volume = blobVolume([21, 24, 19], 7);
    const hu = Int16Array.from(volume.data, (v) => Math.round(v * 500 - 300));
    const image: Volume = { ...volume, data: hu };
    const dir = join(root, "a.zarr");
    await writeCase(dir, {
      image,
      label: { ...volume, data: new Uint8Array(hu.length) },
      chunks: 8,
    });
    const loaded = await loadModel(model);
    try {
      const { labels, summary: want } = await predictVolume(loaded, image);
      const { labelsPath, summary } = await predictCase(loaded, dir, {
        memoryBudgetBytes: 8 * 2 ** 20,
      });
      assert.equal(labelsPath, join(dir, "labels", "pred"));
      assert.deepEqual(summary.classes, want.classes);
      const store = new FileSystemStore(dir);
      const array = await zarr.open.v3(zarr.root(store).resolve("labels/pred/0"), {
        kind: "array",
      });
      assert.deepEqual(array.chunks, [8, 8, 8]);
      const got = await zarr.get(array);
      assert.deepEqual(got.data, labels.data);
      const group = JSON.parse(await Deno.readTextFile(join(dir, "labels", "pred", "zarr.json")));
      assert.deepEqual(
        group.attributes.ome["image-label"].properties.map((p: { name: string }) => p.name),
        ["lung", "infection"],
      );
      const list = JSON.parse(await Deno.readTextFile(join(dir, "labels", "zarr.json")));
      assert.deepEqual(list.attributes.ome.labels, ["seg", "pred"]);
      // The case still opens, its reference labels untouched.
      const reader = await openCase(dir);
      assert.ok((await reader.readFullLabel()).data.every((v) => v === 0));
      // Over HTTP: read chunk by chunk from the URL, labels written to a local folder.
      await withStaticServer(root, async (url) => {
        const remote = `${url}/a.zarr`;
        await assert.rejects(predictCase(loaded, remote), /is remote: voxseg cannot write into it/);
        const out = join(root, "remote_pred");
        const r = await predictCase(loaded, remote, { out });
        assert.deepEqual(r.summary.classes, want.classes);
        const back = await zarr.open.v3(zarr.root(new FileSystemStore(out)).resolve("0"), {
          kind: "array",
        });
        assert.deepEqual((await zarr.get(back)).data, labels.data);
        const nii = join(root, "remote.nii.gz");
        const cli = await runCliCaptured(["infer", "--model", model, "--in", remote, "--out", nii]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.deepEqual((await readNifti(nii)).data, labels.data);
      });
      await assert.rejects(
        predictCase(loaded, dir, { memoryBudgetBytes: 2 ** 16 }),
        /needs about \d+ MiB of host memory, above the budget of 0 MiB; raise the budget/,
      );
    } finally {
      loaded.dispose();
    }
  },
);

Deno.test(
  "bad input: a volume smaller than a patch is padded; NaN voxels and bad options refused",
  opts,
  async () => {
    const loaded = await loadModel(
      await tinyCheckpoint(root, "bad.safetensors", { patchSize: [16, 16, 16] }),
    );
    try {
      const small = blobVolume([5, 7, 3], 2);
      const { labels } = await predictVolume(loaded, small);
      sameGeometry(small, labels);
      const nan = blobVolume([8, 8, 8], 3);
      (nan.data as Float32Array)[2 + 8 * (1 + 8 * 4)] = NaN;
      await assert.rejects(predictVolume(loaded, nan), /1 non-finite voxel .*\(z=4, y=1, x=2\)/);
      await assert.rejects(
        predictVolume(loaded, small, { overlap: 1 }),
        /overlap must be in \[0, 1\)/,
      );
      const controller = new AbortController();
      controller.abort(new Error("cancelled by the client"));
      await assert.rejects(
        predictVolume(loaded, small, { signal: controller.signal }),
        /cancelled/,
      );
    } finally {
      loaded.dispose();
    }
  },
);

Deno.test(
  "bad input: two-channel checkpoint, non-checkpoint files, a file that is not NIfTI",
  opts,
  async () => {
    const two = await loadModel(
      await tinyCheckpoint(root, "two.safetensors", { model: { inChannels: 2 } }),
    );
    try {
      await assert.rejects(predictVolume(two, blobVolume([8, 8, 8])), /expects 2 input channels/);
    } finally {
      two.dispose();
    }
    const text = join(root, "notes.txt");
    await Deno.writeTextFile(text, "this is not a volume\n");
    await assert.rejects(loadModel(text), /is not a voxseg checkpoint/);
    const plain = join(root, "plain.safetensors");
    await Deno.writeFile(
      plain,
      encodeSafetensors({ w: { shape: [1], data: new Float32Array(1) } }),
    );
    await assert.rejects(loadModel(plain), /is not a voxseg checkpoint.*__metadata__/);
    await assert.rejects(loadModel(join(root, "missing.safetensors")), /model not found/);
    const model = await tinyCheckpoint(root, "cli.safetensors");
    const r = await runCliCaptured([
      "infer",
      "--model",
      model,
      "--in",
      text,
      "--out",
      join(root, "x.nii.gz"),
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /notes\.txt is neither a NIfTI file .* nor an OME-Zarr case .*not a NIfTI file/,
    );
    const usage = await runCliCaptured(["infer", "--model", model, "--in", text]);
    assert.equal(usage.code, 1);
    const precision = await runCliCaptured([
      ...["infer", "--model", model, "--in", text, "--precision", "f8"],
    ]);
    assert.equal(precision.code, 2, precision.stderr);
    assert.match(precision.stderr, /--precision takes f32 or f16, got "f8"/);
  },
);

// ---------------------------------------------------------------------------------------------
// Multi-channel input

const CH0 = { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 } as const;

/** A tiny random 2-channel U-Net checkpoint normalising channel 1 with `ch1`. */
async function twoChannelCheckpoint(name: string, ch1: Normalization): Promise<string> {
  await initGpu();
  const net = new UNet3D({ baseChannels: 4, depth: 2, classes: 3, inChannels: 2 }, 5);
  const path = join(root, name);
  try {
    await saveCheckpoint(path, {
      weights: await readWeights(net),
      meta: {
        model: net.config,
        classNames: ["background", "lung", "infection"],
        normalisation: CH0,
        channelNormalisations: [CH0, ch1],
        patchSize: [8, 8, 8],
        spacingMm: [1, 1, 1],
        training: { epoch: 0, step: 0, monitor: "dice", bestMetric: null, metrics: {} },
      },
    });
  } finally {
    net.dispose();
  }
  return path;
}

/** A 4D NIfTI (dim[4] = channels) of float32 volumes sharing `like`'s geometry. */
function fourD(like: Volume, channels: Volume[]): Uint8Array {
  const [D, H, W] = like.shape;
  const [sz, sy, sx] = like.spacingMm;
  return buildNifti({
    dim: [4, W, H, D, channels.length, 1, 1, 1],
    datatype: 16,
    bitpix: 32,
    pixdim: [1, sx, sy, sz, 1, 1, 1, 1],
    sformCode: 1,
    srow: like.affine.slice(0, 12),
    data: float32Bytes(channels.flatMap((c) => Array.from(c.data)), true),
  });
}

Deno.test(
  "two-channel model: a list of 2 files, a 4D NIfTI, volumes in memory and a 2-channel case agree",
  opts,
  async () => {
    const shape: Shape3 = [10, 12, 14];
    const a = blobVolume(shape, 1);
    // Channel 1 on its own scale: 2·v + 10, v on a 1/64 grid so the map is exact in float32.
    const b = blobVolume(shape, 2);
    b.data = Float32Array.from(b.data, (v) => Math.round(v * 64) / 64);
    const bRaw = { ...b, data: Float32Array.from(b.data, (v) => 2 * v + 10) };
    const model = await twoChannelCheckpoint(
      "two_ch.safetensors",
      { kind: "zscore", clipLo: 0, clipHi: 20, mean: 10, std: 2 },
    );
    const files = [join(root, "two_0000.nii.gz"), join(root, "two_0001.nii.gz")];
    await writeNifti(files[0], a);
    await writeNifti(files[1], bRaw);
    const four = join(root, "two_4d.nii.gz");
    await Deno.writeFile(four, fourD(a, [a, bRaw]));
    const outs = [join(root, "two_list.nii.gz"), join(root, "two_4d_seg.nii.gz")];
    for (const [input, out] of [[files.join(","), outs[0]], [four, outs[1]]]) {
      const r = await runCliCaptured(["infer", "--model", model, "--in", input, "--out", out]);
      assert.equal(r.code, 0, r.stderr);
    }
    const [fromList, from4d] = await Promise.all(outs.map((o) => readNifti(o)));
    sameGeometry(a, fromList);
    assert.deepEqual(from4d.data, fromList.data);
    const counts = [0, 0, 0];
    for (const v of fromList.data) counts[v]++;
    assert.ok(counts.filter((c) => c > 0).length >= 2, `labels vary: ${counts}`);

    const loaded = await loadModel(model);
    // The same weights with channel 1 normalised as identity: the model above sees the same
    // network input from bRaw as this one from b, so each channel had its own normalisation.
    const plain = await loadModel(await twoChannelCheckpoint("two_ch_plain.safetensors", CH0));
    try {
      const { labels } = await predictVolume(loaded, [a, bRaw]);
      assert.deepEqual(labels.data, fromList.data);
      assert.deepEqual((await predictVolume(plain, [a, b])).labels.data, labels.data);
      assert.notDeepEqual((await predictVolume(plain, [a, bRaw])).labels.data, labels.data);
      // A two-channel case, read chunk by chunk, gives the same labels.
      const casePath = join(root, "two.zarr");
      await writeCase(casePath, { image: [a, bRaw], chunks: 4 });
      const { labelsPath } = await predictCase(loaded, casePath);
      const pred = await zarr.open.v3(
        zarr.root(new FileSystemStore(labelsPath)).resolve("0"),
        { kind: "array" },
      );
      assert.deepEqual((await zarr.get(pred)).data, labels.data);
      await validatesPerfectly(loaded, [a, bRaw], labels);
      await assert.rejects(
        predictVolume(loaded, a),
        /expects 2 input channels, but the input is one volume/,
      );
      await assert.rejects(
        predictVolume(loaded, [a, b, b]),
        /expects 2 input channels, but the input is 3 channels/,
      );
    } finally {
      loaded.dispose();
      plain.dispose();
    }
  },
);

/**
 * The dataset validator on a two-channel case whose reference is the model's own prediction:
 * every class present scores Dice 1 only if both channels were read and normalised as
 * predictVolume does.
 */
async function validatesPerfectly(loaded: LoadedModel, channels: Volume[], labels: Volume) {
  const dir = join(root, "two_ds");
  const rng = new Random(0);
  const stats = caseStats(channels[0], labels, 3, rng);
  const perChannel = channelCaseStats(channels, labels, rng);
  await writeCase(join(dir, "cases", "v.zarr"), { image: channels, label: labels, chunks: 8 });
  const manifest = buildManifest({
    name: "two",
    modality: "CT",
    classes: ["background", "lung", "infection"],
    cases: [{
      id: "v",
      path: "cases/v.zarr",
      split: "val",
      stats: { ...stats, imageChannels: perChannel.imageChannels },
    }],
  });
  await writeDataset(dir, withChannels(manifest, ["T1", "T2"], [perChannel.foreground!]));
  const norms = loaded.meta.channelNormalisations!;
  const { metrics } = await datasetValidator({ patchSize: [8, 8, 8] })(loaded.model, {
    norm: norms[0],
    channelNorms: norms,
    dataset: await readDataset(dir),
  });
  const present = [0, 1, 2].filter((c) => labels.data.includes(c));
  assert.ok(present.length >= 2);
  for (const c of present) {
    assert.equal(metrics[`dice/${["background", "lung", "infection"][c]}`], 1);
  }
}
