/**
 * `voxseg infer` on DICOM: a series written by pydicom (an independent writer) segmented to a
 * DICOM Segmentation that dciodvfy accepts and that decodes to the same labels as the NIfTI
 * output of the same run; and the whole PACS round trip against a real Orthanc — upload a
 * series, `infer --dicomweb`, and find a Segmentation of that series stored in the study.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../src/cli/infer.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import { DicomWebClient } from "../../src/data/dicom/dicomweb.ts";
import { jsonString } from "../../src/data/dicom/dicom_json.ts";
import { loadDicomInput, readDicomSeries } from "../../src/data/dicom/series.ts";
import { decodeSegmentation } from "../../src/data/dicom/seg_read.ts";
import { readNifti } from "../../src/data/nifti.ts";
import { missingTools, writeSeries } from "../fixtures/dicom_series.ts";
import { orthancMissing, startOrthanc } from "../fixtures/orthanc.ts";
import { TINY_CT, writeTinyCheckpoint } from "../fixtures/tiny_checkpoint.ts";

const OBLIQUE = [0.9848078, 0.1736482, 0, -0.1736482, 0.9848078, 0];

async function withWorkspace(fn: (dir: string, model: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "voxseg-infer-dicom-" });
  try {
    const model = join(dir, "tiny.safetensors");
    await writeTinyCheckpoint(model, TINY_CT);
    await fn(dir, model);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** dciodvfy's error lines for a file (warnings are allowed). */
async function dciodvfyErrors(path: string): Promise<string[]> {
  const { stdout, stderr } = await new Deno.Command("dciodvfy", { args: [path] }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return text.split("\n").filter((l) => /^Error/.test(l));
}

Deno.test({
  name: "infer --in a DICOM folder --out seg.dcm: a valid SEG with the labels of the NIfTI output",
  ignore: missingTools() !== undefined,
  sanitizeResources: false,
  async fn() {
    await withWorkspace(async (dir, model) => {
      const written = await writeSeries(join(dir, "series"), { orientation: OBLIQUE });
      const seg = join(dir, "seg.dcm"), nifti = join(dir, "labels.nii.gz");
      const run = (out: string, summary: string) =>
        main(["--model", model, "--in", written.dir, "--out", out, "--json", "--summary", summary]);
      assert.equal(await run(seg, join(dir, "summary.json")), 0);
      assert.equal(await run(nifti, join(dir, "nifti_summary.json")), 0);
      assert.deepEqual(await dciodvfyErrors(seg), []);
      const source = await readDicomSeries(await loadDicomInput(written.dir));
      const decoded = decodeSegmentation(await Deno.readFile(seg), source);
      const labels = (await readNifti(nifti)).data;
      assert.equal(decoded.labels.length, labels.length);
      assert.deepEqual([...decoded.labels], [...labels]);
      assert.ok(new Set(labels).size >= 2, "the random network marks some foreground");
      assert.deepEqual(decoded.segments.map((s) => s.label), ["lung", "infection"]);
      const summary = JSON.parse(await Deno.readTextFile(join(dir, "summary.json")));
      assert.equal(summary.output, seg);
      assert.ok(!JSON.stringify(summary).includes("Quirina"), "no patient name in the summary");
    });
  },
});

Deno.test({
  name: "infer: a SEG needs a DICOM source, and --dicomweb needs --study",
  sanitizeResources: false,
  async fn() {
    await withWorkspace(async (dir, model) => {
      const nifti = join(dir, "ct.nii");
      await Deno.writeFile(nifti, new Uint8Array(10));
      await assert.rejects(
        () => main(["--model", model, "--in", nifti, "--out", join(dir, "x.dcm")]),
        (e) => e instanceof UsageError && /references its source series/.test(e.message),
      );
      await assert.rejects(
        () => main(["--model", model, "--dicomweb", "http://127.0.0.1:9/dicom-web"]),
        (e) => e instanceof UsageError && /--dicomweb needs --study UID/.test(e.message),
      );
      await assert.rejects(
        () => main(["--model", model]),
        (e) => e instanceof UsageError && /give --in X, or --dicomweb URL/.test(e.message),
      );
    });
  },
});

Deno.test({
  name: "infer --dicomweb: pulls the series from Orthanc, stores a SEG of it back in the study",
  ignore: missingTools() !== undefined || orthancMissing() !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const orthanc = await startOrthanc();
    const env = ["VOXSEG_DICOMWEB_USER", "VOXSEG_DICOMWEB_PASSWORD"] as const;
    try {
      await withWorkspace(async (dir, model) => {
        const written = await writeSeries(join(dir, "series"), { orientation: OBLIQUE });
        for (const file of written.files) await orthanc.upload(await Deno.readFile(file));
        const source = await readDicomSeries(await loadDicomInput(written.dir));
        Deno.env.set(env[0], orthanc.user);
        Deno.env.set(env[1], orthanc.password);
        const local = join(dir, "local.nii.gz");
        const code = await main([
          "--model",
          model,
          "--dicomweb",
          orthanc.dicomWebUrl,
          "--study",
          source.studyInstanceUid,
          "--out",
          local,
          "--json",
        ]);
        assert.equal(code, 0);
        const client = new DicomWebClient(orthanc.dicomWebUrl, {
          auth: { kind: "basic", user: orthanc.user, password: orthanc.password },
        });
        const segs = await client.searchSeries(source.studyInstanceUid, { Modality: "SEG" });
        assert.equal(segs.length, 1, "one SEG series stored in the study");
        const segSeries = jsonString(segs[0], "0020000E")!;
        const [bytes] = await client.retrieveSeries(source.studyInstanceUid, segSeries);
        const decoded = decodeSegmentation(bytes, source);
        assert.deepEqual([...decoded.labels], [...(await readNifti(local)).data]);
      });
    } finally {
      for (const name of env) Deno.env.delete(name);
      await orthanc.stop();
    }
  },
});
