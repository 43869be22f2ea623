/**
 * A PACS prediction job end to end against a real Orthanc (Debian's, with its DICOMweb
 * plugin): a series uploaded to Orthanc, `POST /v1/jobs/predict {pacs, study, store: true}` on
 * a server wired with the DICOM pipeline, and a Segmentation found in that study that decodes
 * to the labels of a local prediction of the same series; then the job purged. Skips where the
 * Debian tools (pydicom, Orthanc) are missing.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { zipSync } from "fflate";
import { jsonString } from "../../src/data/dicom/dicom_json.ts";
import { DicomWebClient } from "../../src/data/dicom/dicomweb.ts";
import { decodeSegmentation } from "../../src/data/dicom/seg_read.ts";
import { loadDicomInput, readDicomSeries } from "../../src/data/dicom/series.ts";
import { decodeNifti } from "../../src/data/nifti.ts";
import { DICOM_PIPELINE } from "../../src/server/pacs_pipeline.ts";
import { missingTools, writeSeries } from "../fixtures/dicom_series.ts";
import { orthancMissing, startOrthanc } from "../fixtures/orthanc.ts";
import { jsonPost, newServer, testOpts, waitForJob } from "./server_fixture.ts";

Deno.test({
  ...testOpts,
  name: "PACS job on Orthanc: pulls the study's series, stores a SEG of it, then purges",
  ignore: missingTools() !== undefined || orthancMissing() !== undefined,
  async fn() {
    const orthanc = await startOrthanc();
    const dir = await Deno.makeTempDir({ prefix: "voxseg_pacs_e2e_" });
    try {
      const written = await writeSeries(join(dir, "series"));
      const files: Record<string, Uint8Array> = {};
      for (const file of written.files) {
        files[basename(file)] = await Deno.readFile(file);
        await orthanc.upload(files[basename(file)]);
      }
      const source = await readDicomSeries(await loadDicomInput(written.dir));
      const auth = { kind: "basic" as const, user: orthanc.user, password: orthanc.password };
      const server = await newServer({
        pacsEndpoints: [{ name: "orthanc", url: orthanc.dicomWebUrl, auth }],
        pacs: DICOM_PIPELINE,
      });

      // The local prediction of the same series, through the synchronous route.
      const local = await server.app.request("/v1/models/tiny/predict", {
        method: "POST",
        body: zipSync(files) as Uint8Array<ArrayBuffer>,
        headers: { "content-type": "application/zip" },
      });
      assert.equal(local.status, 200, await local.clone().text());
      const labels = (await decodeNifti(new Uint8Array(await local.arrayBuffer()))).data;

      const study = source.studyInstanceUid;
      const res = await server.app.request(
        "/v1/jobs/predict",
        jsonPost({ model: "tiny", pacs: "orthanc", study, store: true }),
      );
      assert.equal(res.status, 202, await res.clone().text());
      const id = (await res.json()).id;
      const job = await waitForJob(server, id, ["succeeded", "failed"], 120_000);
      assert.equal(job.state, "succeeded", JSON.stringify(job.error));
      assert.equal(job.result?.seriesUid, source.seriesInstanceUid, "the result names the series");
      assert.equal(typeof job.result?.choice, "string");
      const stored = (job.result?.stored as { sopInstanceUid?: string } | undefined)
        ?.sopInstanceUid;
      assert.ok(stored, "the result names the stored Segmentation");
      assert.ok(!JSON.stringify(job).includes(orthanc.password), "no credential in the job");

      const client = new DicomWebClient(orthanc.dicomWebUrl, { auth });
      const segs = await client.searchSeries(study, { Modality: "SEG" });
      assert.equal(segs.length, 1, "one SEG series stored in the study");
      const [bytes] = await client.retrieveSeries(study, jsonString(segs[0], "0020000E")!);
      const decoded = decodeSegmentation(bytes, source);
      assert.deepEqual([...decoded.labels], [...labels]);

      const purge = await server.app.request(`/v1/jobs/${id}?purge=true`, { method: "DELETE" });
      assert.equal(purge.status, 200, await purge.clone().text());
      const report = await purge.json();
      assert.equal(report.purged, true);
      assert.equal(report.removed.record, true);
      assert.equal((await server.app.request(`/v1/jobs/${id}`)).status, 404);
      await server.shutdown();
    } finally {
      await orthanc.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
