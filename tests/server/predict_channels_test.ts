/**
 * Models of several input channels over HTTP: the synchronous route takes one NIfTI per
 * multipart/form-data part (channel order) and answers exactly what `voxseg infer` computes on
 * the same channels; a prediction job takes a list of files or a 4D NIfTI; a wrong channel
 * count or channels on different grids are clear 4xx answers naming the problem and the fix.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeNifti, encodeNifti, writeNifti } from "../../src/data/nifti.ts";
import { gunzip, isGzip } from "../../src/data/gzip.ts";
import type { Shape3, Volume } from "../../src/data/volume.ts";
import { initGpu } from "../../src/gpu/mod.ts";
import { loadModel, predictVolume } from "../../src/infer/predict.ts";
import { saveCheckpoint } from "../../src/nn/checkpoint.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { readWeights } from "../../src/nn/weights.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  niftiBytes,
  PATCH,
  SPACING,
  testOpts,
  waitForJob,
} from "./server_fixture.ts";

const NORMS = [
  { kind: "ct-window" as const, lo: -1000, hi: 400 },
  { kind: "zscore" as const, clipLo: -5, clipHi: 5, mean: 2, std: 1.5 },
];

/** A tiny random U-Net of two input channels (CT windowed, the second z-scored). */
async function saveDuoCheckpoint(path: string): Promise<void> {
  await initGpu();
  const net = new UNet3D({ inChannels: 2, baseChannels: 4, depth: 2, classes: 3 }, 3);
  try {
    await saveCheckpoint(path, {
      weights: await readWeights(net),
      meta: {
        model: net.config,
        classNames: ["background", "lung", "infection"],
        normalisation: NORMS[0],
        channelNormalisations: NORMS,
        patchSize: PATCH,
        spacingMm: SPACING,
        training: { epoch: 0, step: 0, monitor: "dice", bestMetric: null, metrics: {} },
      },
    });
  } finally {
    net.dispose();
  }
}

let duo: Promise<string> | undefined;
/** The data root with the two-channel model `duo` in its models folder. */
function withDuo(): Promise<string> {
  duo ??= (async () => {
    const { root, models } = await dataRoot();
    await saveDuoCheckpoint(join(models, "duo.safetensors"));
    return root;
  })();
  return duo;
}

/** A second channel on the grid of {@link ctVolume}: float values around 2 (a PET-like map). */
function petVolume(shape: Shape3 = [12, 20, 24]): Volume {
  const ct = ctVolume(shape);
  const data = new Float32Array(ct.data.length);
  for (let i = 0; i < data.length; i++) {
    data[i] = 2 + Math.sin(i / 7) * (ct.data[i] > -900 ? 2 : 0.2);
  }
  return { ...ct, data };
}

/** A multipart/form-data body of NIfTI parts, in order. */
function form(parts: Uint8Array[]): FormData {
  const body = new FormData();
  parts.forEach((bytes, c) =>
    body.append(`c${c}`, new Blob([bytes as Uint8Array<ArrayBuffer>]), `channel_${c}.nii.gz`)
  );
  return body;
}

/** A 4D NIfTI of float32 channels on one grid (dim[4] = channels). */
function fourD(channels: Volume[]): Uint8Array {
  const first = encodeNifti({ ...channels[0], data: Float32Array.from(channels[0].data) });
  const out = new Uint8Array(first.length + (channels.length - 1) * channels[0].data.length * 4);
  out.set(first);
  const view = new DataView(out.buffer);
  view.setInt16(40, 4, true);
  view.setInt16(48, channels.length, true);
  channels.slice(1).forEach((ch, k) => {
    const bytes = new Uint8Array(Float32Array.from(ch.data).buffer);
    out.set(bytes, first.length + k * bytes.length);
  });
  return out;
}

/** The labels `voxseg infer` computes for these channels with the model at `path`. */
async function expectedLabels(path: string, channels: Volume[]): Promise<Uint8Array> {
  const loaded = await loadModel(path);
  try {
    return (await predictVolume(loaded, channels)).labels.data as Uint8Array;
  } finally {
    loaded.dispose();
  }
}

Deno.test(
  "predict: a two-channel model takes one NIfTI per multipart part, normalised per channel",
  testOpts,
  async () => {
    const root = await withDuo();
    const server = await newServer({ token: "t" });
    const auth = { authorization: "Bearer t" };
    try {
      const ct = ctVolume(), pet = petVolume();
      const body = form([await niftiBytes(ct, true), await niftiBytes(pet, true)]);
      // Behind the token like every data route.
      const refused = await server.app.request("/v1/models/duo/predict", {
        method: "POST",
        body,
      });
      assert.equal(refused.status, 401);
      await refused.body?.cancel();

      const res = await server.app.request("/v1/models/duo/predict", {
        method: "POST",
        headers: auth,
        body,
      });
      assert.equal(res.status, 200, await res.clone().text());
      const bytes = new Uint8Array(await res.arrayBuffer());
      assert.ok(isGzip(bytes), "gzipped as channel 0 came");
      const labels = await decodeNifti(await gunzip(bytes));
      assert.deepEqual(labels.shape, ct.shape);
      labels.affine.forEach((v, i) => assert.ok(Math.abs(v - ct.affine[i]) < 1e-4));
      const expected = await expectedLabels(join(root, "models", "duo.safetensors"), [ct, pet]);
      assert.deepEqual(labels.data, expected, "exactly what voxseg infer computes");

      const summary = await (await server.app.request("/v1/models/duo/predict", {
        method: "POST",
        headers: { ...auth, accept: "application/json" },
        body: form([await niftiBytes(ct), await niftiBytes(pet)]),
      })).json();
      assert.equal(summary.model, "duo");
      assert.equal(summary.classes.length, 3);
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test(
  "predict: a wrong channel count or channels on other grids answer 4xx naming the fix",
  testOpts,
  async () => {
    await withDuo();
    const server = await newServer();
    try {
      const ct = await niftiBytes(ctVolume(), true);
      const pet = await niftiBytes(petVolume(), true);
      const post = (model: string, init: RequestInit) =>
        server.app.request(`/v1/models/${model}/predict`, { method: "POST", ...init });
      // One volume for a model of two channels: refused before the body is read.
      let message = await assertError(
        await post("duo", { body: ct, headers: { "content-type": "application/gzip" } }),
        422,
        "channel_count_mismatch",
      );
      assert.match(message, /model "duo" takes 2 input channels, but the input is one NIfTI/);
      assert.match(message, /multipart\/form-data, one 3D NIfTI .* per part in channel order/);
      // Too many parts, too few.
      message = await assertError(
        await post("duo", { body: form([ct, pet, pet]) }),
        422,
        "channel_count_mismatch",
      );
      assert.match(message, /takes 2 input channels, but the input is 3 part\(s\)/);
      await assertError(await post("duo", { body: form([ct]) }), 422, "channel_count_mismatch");
      // A one-channel model takes one part, and refuses two.
      const one = await post("tiny", { body: form([ct]) });
      assert.equal(one.status, 200, await one.clone().text());
      await one.body?.cancel();
      message = await assertError(
        await post("tiny", { body: form([ct, pet]) }),
        422,
        "channel_count_mismatch",
      );
      assert.match(message, /takes one input channel \(one volume\).*send one volume/);
      // Channels on different grids: the part that differs, and what to do.
      const other = await niftiBytes(petVolume([12, 20, 20]), true);
      message = await assertError(
        await post("duo", { body: form([ct, other]) }),
        422,
        "channel_grid_mismatch",
      );
      assert.match(message, /part 2: channel 1 is not on the grid of channel 0 \(part 1\)/);
      assert.match(message, /resample it onto channel 0's/);
      // A 4D part, a part that is not NIfTI, a multipart body without a boundary.
      message = await assertError(
        await post("duo", { body: form([fourD([ctVolume(), petVolume()]), pet]) }),
        400,
        "invalid_nifti",
      );
      assert.match(message, /^part 1 \(channel 0\) is not a readable NIfTI volume: 4D NIfTI/);
      assert.match(message, /split it first/);
      message = await assertError(
        await post("duo", { body: form([ct, new TextEncoder().encode("not a volume")]) }),
        400,
        "invalid_nifti",
      );
      assert.match(message, /^part 2 \(channel 1\) is not a readable NIfTI volume/);
      await assertError(
        await post("duo", { body: "x", headers: { "content-type": "multipart/form-data" } }),
        400,
        "invalid_multipart",
      );
      // A DICOM Segmentation needs a DICOM series.
      await assertError(
        await post("duo", { body: form([ct, pet]), headers: { accept: "application/dicom" } }),
        406,
        "not_acceptable",
      );
      assert.equal((await server.app.request("/healthz")).status, 200);
    } finally {
      await server.shutdown();
    }
  },
);

Deno.test(
  "prediction jobs: a list of channel files or a 4D NIfTI; wrong counts are refused at submit",
  testOpts,
  async () => {
    const root = await withDuo();
    const server = await newServer();
    try {
      const ct = ctVolume(), pet = petVolume();
      await writeNifti(join(root, "channels", "a_0000.nii.gz"), ct);
      await writeNifti(join(root, "channels", "a_0001.nii.gz"), pet);
      await writeNifti(join(root, "channels", "b_0001.nii.gz"), petVolume([12, 20, 20]));
      await Deno.writeFile(join(root, "channels", "a_4d.nii"), fourD([ct, pet]));
      const submit = (body: Record<string, unknown>) =>
        server.app.request("/v1/jobs/predict", jsonPost({ model: "duo", ...body }));
      const expected = await expectedLabels(join(root, "models", "duo.safetensors"), [ct, pet]);

      const listed = await submit({
        input: ["channels/a_0000.nii.gz", "channels/a_0001.nii.gz"],
        output: "channels/a_seg.nii.gz",
      });
      assert.equal(listed.status, 202, await listed.clone().text());
      const a = await waitForJob(server, ((await listed.json()) as Job).id, [
        "succeeded",
        "failed",
      ]);
      assert.equal(a.state, "succeeded", JSON.stringify(a.error));
      const seg = await decodeNifti(await Deno.readFile(join(root, "channels", "a_seg.nii.gz")));
      assert.deepEqual(seg.data, expected);
      // The dashboard shows each channel of the input; channel 0 by default.
      const image = await server.app.request(`/dashboard/jobs/${a.id}/image?channel=1`);
      assert.equal(image.status, 200);
      const shown = await decodeNifti(new Uint8Array(await image.arrayBuffer()));
      assert.deepEqual(
        Array.from(shown.data.subarray(0, 50)),
        Array.from(pet.data.subarray(0, 50)),
      );
      await assertError(
        await server.app.request(`/dashboard/jobs/${a.id}/image?channel=2`),
        400,
        "invalid_request",
      );

      const four = await submit({ input: "channels/a_4d.nii", output: "channels/a_seg4d.nii" });
      assert.equal(four.status, 202, await four.clone().text());
      const b = await waitForJob(server, ((await four.json()) as Job).id, ["succeeded", "failed"]);
      assert.equal(b.state, "succeeded", JSON.stringify(b.error));
      const seg4d = await decodeNifti(await Deno.readFile(join(root, "channels", "a_seg4d.nii")));
      assert.deepEqual(seg4d.data, expected);

      // Counts are checked before the job is queued, with how to name the channels.
      let message = await assertError(
        await submit({ input: "channels/a_0000.nii.gz", output: "channels/x.nii" }),
        422,
        "channel_count_mismatch",
      );
      assert.match(message, /takes 2 input channels, but the input is one volume/);
      assert.match(message, /"input": \["a_0000\.nii\.gz", "a_0001\.nii\.gz", …\]/);
      message = await assertError(
        await server.app.request(
          "/v1/jobs/predict",
          jsonPost({
            model: "tiny",
            input: ["channels/a_0000.nii.gz", "channels/a_0001.nii.gz"],
            output: "channels/x.nii",
          }),
        ),
        422,
        "channel_count_mismatch",
      );
      assert.match(message, /takes one input channel/);
      await assertError(
        await submit({ input: [], output: "channels/x.nii" }),
        400,
        "invalid_request",
      );
      await assertError(
        await submit({
          input: ["channels/a_0000.nii.gz", "channels/a_0001.nii.gz"],
          output: "channels/x.dcm",
        }),
        400,
        "invalid_request",
      );
      // Grids are checked when the job reads the files: it fails naming the file.
      const off = await submit({
        input: ["channels/a_0000.nii.gz", "channels/b_0001.nii.gz"],
        output: "channels/c_seg.nii",
      });
      assert.equal(off.status, 202);
      const c = await waitForJob(server, ((await off.json()) as Job).id, ["succeeded", "failed"]);
      assert.equal(c.state, "failed");
      assert.equal(c.error!.code, "channel_grid_mismatch");
      assert.match(c.error!.message, /"channels\/b_0001\.nii\.gz": channel 1 is not on the grid/);
      assert.ok(!c.error!.message.includes(root), c.error!.message);
    } finally {
      await server.shutdown();
    }
  },
);
