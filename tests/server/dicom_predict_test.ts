/**
 * DICOM in at the server: POST /v1/models/{name}/predict with a series zipped or as
 * multipart/related (answered as a DICOM Segmentation, a NIfTI label map or JSON), its bad
 * inputs (each a 4xx, the server still up, the memory budget given back), and prediction jobs
 * on a DICOM folder or zip under the data root. Series are written by pydicom (an independent
 * writer); the tests skip where its Debian tools are missing.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { zipSync } from "fflate";
import { overlappingZip } from "../fixtures/zip_bomb.ts";
import { buildMultipart } from "../../src/data/dicom/multipart.ts";
import { decodeSegmentation } from "../../src/data/dicom/seg_read.ts";
import { loadDicomInput, readDicomSeries } from "../../src/data/dicom/series.ts";
import type { DicomSeries } from "../../src/data/dicom/types.ts";
import { decodeNifti } from "../../src/data/nifti.ts";
import type { VoxsegServer } from "../../src/server/app.ts";
import { IDENTIFYING, missingTools, writeSeries } from "../fixtures/dicom_series.ts";
import {
  assertError,
  ctVolume,
  dataRoot,
  jsonPost,
  newServer,
  niftiBytes,
  testOpts,
  waitForJob,
} from "./server_fixture.ts";

const skip = missingTools();
const dicomTest = { ...testOpts, ignore: skip !== undefined };
const OTHER_SERIES = "1.2.826.0.1.3680043.8.498.7351944";
const MiB = 2 ** 20;

/** One series written once per module, under the data root (so jobs can name it). */
interface Written {
  /** The series' folder, relative to the data root. */
  folder: string;
  /** Its files' bytes, by base name. */
  files: Record<string, Uint8Array>;
  zip: Uint8Array<ArrayBuffer>;
  series: DicomSeries;
}

let written: Promise<Written> | undefined;

function series(): Promise<Written> {
  written ??= (async () => {
    const { root } = await dataRoot();
    const out = await writeSeries(join(root, "dicom", "ct"), {
      orientation: [0.9848078, 0.1736482, 0, -0.1736482, 0.9848078, 0],
    });
    const files: Record<string, Uint8Array> = {};
    for (const file of out.files) files[basename(file)] = await Deno.readFile(file);
    return {
      folder: "dicom/ct",
      files,
      zip: zipSync(files) as Uint8Array<ArrayBuffer>,
      series: await readDicomSeries(await loadDicomInput(out.dir)),
    };
  })();
  return written;
}

const predict = (
  server: VoxsegServer,
  body: Uint8Array,
  contentType: string,
  accept?: string,
  query = "",
) =>
  server.app.request(`/v1/models/tiny/predict${query}`, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { "content-type": contentType, ...(accept ? { accept } : {}) },
  });

/** Asserts no patient or study attribute of the fixture appears in `text`. */
function assertNoPatientData(text: string, where: string): void {
  for (const key of ["PatientName", "PatientID", "SeriesDescription", "AccessionNumber"] as const) {
    assert.ok(!text.includes(IDENTIFYING[key]), `${where} shows the ${key}: ${text}`);
  }
  assert.ok(!text.includes("Quirina"), `${where} shows the patient's name: ${text}`);
}

async function labelsOf(res: Response): Promise<Uint8Array> {
  assert.equal(res.status, 200, await res.clone().text());
  return (await decodeNifti(new Uint8Array(await res.arrayBuffer()))).data as Uint8Array;
}

Deno.test(
  "predict a zipped series: Accept dicom → a SEG with the labels of the NIfTI answer",
  dicomTest,
  async () => {
    const server = await newServer();
    const { zip, series: source } = await series();

    const nifti = await predict(server, zip, "application/zip");
    assert.equal(nifti.status, 200, await nifti.clone().text());
    assert.equal(nifti.headers.get("content-type"), "application/gzip");
    const map = await decodeNifti(new Uint8Array(await nifti.arrayBuffer()));
    assert.deepEqual(map.shape, source.volume.shape);
    map.affine.forEach((v, i) =>
      assert.ok(Math.abs(v - source.volume.affine[i]) < 1e-3, `affine ${i}: ${v}`)
    );
    const labels = map.data as Uint8Array;
    assert.ok(new Set(labels).size >= 2, "the random network marks some foreground");

    const res = await predict(server, zip, "application/zip", "application/dicom");
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("content-type"), "application/dicom");
    assert.equal(
      res.headers.get("content-disposition"),
      'attachment; filename="segmentation.dcm"',
    );
    assertNoPatientData(JSON.stringify([...res.headers]), "the headers");
    const decoded = decodeSegmentation(new Uint8Array(await res.arrayBuffer()), source);
    assert.deepEqual([...decoded.labels], [...labels]);
    assert.deepEqual(decoded.segments.map((s) => s.label), ["lung", "infection"]);

    const summary = await (await predict(server, zip, "application/zip", "application/json"))
      .json();
    assert.equal(summary.model, "tiny");
    assert.deepEqual(summary.classes.map((c: { name: string }) => c.name), [
      "background",
      "lung",
      "infection",
    ]);
    assert.equal(server.context.admission.reservedBytes, 0, "every reservation given back");
  },
);

Deno.test(
  "predict multipart/related DICOM (as STOW-RS sends it): the same labels as the zip",
  dicomTest,
  async () => {
    const server = await newServer();
    const { zip, files, series: source } = await series();
    const { body, contentType } = buildMultipart(
      Object.values(files).reverse().map((bytes) => ({
        contentType: "application/dicom",
        body: bytes,
      })),
      "application/dicom",
    );
    assert.match(contentType, /^multipart\/related; *type="?application\/dicom"?; *boundary=/);
    const fromParts = await labelsOf(await predict(server, body, contentType));
    const fromZip = await labelsOf(await predict(server, zip, "application/x-zip-compressed"));
    assert.deepEqual([...fromParts], [...fromZip]);
    const seg = await predict(
      server,
      body,
      contentType,
      "application/json;q=0.5, application/dicom",
    );
    assert.equal(seg.headers.get("content-type"), "application/dicom");
    const decoded = decodeSegmentation(new Uint8Array(await seg.arrayBuffer()), source);
    assert.deepEqual([...decoded.labels], [...fromZip]);
  },
);

Deno.test(
  "predict: several series need ?series — the 400 lists UIDs, never patient data",
  dicomTest,
  async () => {
    const server = await newServer();
    const { files } = await series();
    const dir = await Deno.makeTempDir({ prefix: "voxseg_dicom_other_" });
    try {
      const other = await writeSeries(dir, { seriesUid: OTHER_SERIES, seed: 3 });
      const both: Record<string, Uint8Array> = { ...files };
      for (const file of other.files) both[`other/${basename(file)}`] = await Deno.readFile(file);
      const zip = zipSync(both);
      const message = await assertError(
        await predict(server, zip, "application/zip"),
        400,
        "invalid_dicom",
      );
      assert.match(message, /2 image series/);
      assert.ok(message.includes(IDENTIFYING.SeriesInstanceUID) && message.includes(OTHER_SERIES));
      assert.match(message, /\?series=UID/);
      assertNoPatientData(message, "the 400");
      const chosen = await predict(
        server,
        zip,
        "application/zip",
        undefined,
        `?series=${OTHER_SERIES}`,
      );
      assert.equal(chosen.status, 200, await chosen.clone().text());
      await assertError(
        await predict(server, zip, "application/zip", undefined, "?series=1.2.3.99"),
        400,
        "invalid_dicom",
      );
      await assertError(
        await predict(server, zip, "application/zip", undefined, "?series=not-a-uid"),
        400,
        "invalid_request",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** A zip of one entry of `bytes` zeros, deflated: a few KiB that claim `bytes`. */
function zipBomb(bytes: number): Uint8Array {
  return zipSync({ "slice.dcm": new Uint8Array(bytes) }, { level: 9 });
}

Deno.test(
  "predict: truncated, non-DICOM and bomb zips, bad multipart and types → 4xx; still up",
  dicomTest,
  async () => {
    const server = await newServer({ maxBodyBytes: 2 * MiB });
    const { zip } = await series();
    const bad = async (body: Uint8Array, type: string, status: number, code: string) => {
      const res = await predict(server, body, type);
      const message = await assertError(res, status, code);
      const { root } = await dataRoot();
      assert.ok(!message.includes(root), `the message shows a path: ${message}`);
      return message;
    };
    assert.match(
      await bad(zip.slice(0, zip.length >> 1), "application/zip", 400, "invalid_dicom"),
      /not a readable zip/,
    );
    const text = zipSync({ "notes.txt": new TextEncoder().encode("not DICOM") });
    assert.match(await bad(text, "application/zip", 400, "invalid_dicom"), /no DICOM file/);
    const bomb = zipBomb(64 * MiB);
    assert.ok(bomb.length < 256 * 1024, `the bomb is ${bomb.length} bytes`);
    assert.match(await bad(bomb, "application/zip", 400, "invalid_dicom"), /zip bomb/);
    const overlapping = overlappingZip(1000, 64 * 1024);
    assert.match(await bad(overlapping, "application/zip", 400, "invalid_dicom"), /zip bomb/);
    const garbage = crypto.getRandomValues(new Uint8Array(4096));
    await bad(garbage, "application/zip", 400, "invalid_dicom");
    await bad(new Uint8Array(0), "application/zip", 400, "invalid_dicom");
    assert.match(
      await bad(garbage, 'multipart/related; type="application/dicom"', 400, "invalid_multipart"),
      /no boundary/,
    );
    await bad(
      garbage,
      "multipart/related; type=application/dicom; boundary=xyz",
      400,
      "invalid_multipart",
    );
    const notDicom = buildMultipart(
      [{ contentType: "application/dicom", body: new TextEncoder().encode("hello") }],
      "application/dicom",
    );
    assert.match(await bad(notDicom.body, notDicom.contentType, 400, "invalid_dicom"), /part 1/);
    await bad(
      garbage,
      "multipart/related; type=application/json; boundary=x",
      415,
      "unsupported_media_type",
    );
    assert.match(
      await bad(zip, "text/plain", 415, "unsupported_media_type"),
      /application\/zip.*multipart\/related/,
    );
    assert.match(
      await bad(new Uint8Array(3 * MiB), "application/zip", 413, "payload_too_large"),
      /--max-body/,
    );
    assert.equal(server.context.admission.reservedBytes, 0, "every reservation given back");
    assert.equal((await server.app.request("/healthz")).status, 200);
  },
);

Deno.test(
  "predict: Accept dicom for a NIfTI body → 406; ?series on NIfTI → 400; JSON still served",
  testOpts,
  async () => {
    const server = await newServer();
    const nifti = await niftiBytes(ctVolume([8, 16, 16]));
    const octet = "application/octet-stream";
    assert.match(
      await assertError(
        await predict(server, nifti, octet, "application/dicom"),
        406,
        "not_acceptable",
      ),
      /needs a DICOM series/,
    );
    await assertError(
      await predict(server, nifti, octet, undefined, `?series=${OTHER_SERIES}`),
      400,
      "invalid_request",
    );
    const json = await predict(server, nifti, octet, "application/dicom, application/json;q=0.9");
    assert.equal(json.status, 200, await json.clone().text());
    assert.equal((await json.json()).model, "tiny");
    assert.equal(server.context.admission.reservedBytes, 0);
  },
);

Deno.test(
  "prediction jobs on a DICOM folder (→ .dcm) and zip (→ .nii.gz); .dcm needs DICOM input",
  dicomTest,
  async () => {
    const server = await newServer();
    const { root } = await dataRoot();
    const { folder, zip, series: source } = await series();
    await Deno.writeFile(join(root, "dicom", "ct.zip"), zip);
    const expected = await labelsOf(await predict(server, zip, "application/zip"));
    const post = (body: unknown) => server.app.request("/v1/jobs/predict", jsonPost(body));

    const seg = await post({ model: "tiny", input: folder, output: "out/dicom_seg.dcm" });
    assert.equal(seg.status, 202, await seg.clone().text());
    const segJob = await waitForJob(server, (await seg.json()).id, ["succeeded", "failed"]);
    assert.equal(segJob.state, "succeeded", JSON.stringify(segJob.error));
    assert.equal(segJob.result?.seriesUid, source.seriesInstanceUid);
    assert.equal(segJob.result?.output, "out/dicom_seg.dcm");
    assertNoPatientData(JSON.stringify(segJob), "the job");
    const decoded = decodeSegmentation(
      await Deno.readFile(join(root, "out/dicom_seg.dcm")),
      source,
    );
    assert.deepEqual([...decoded.labels], [...expected]);
    await assertError(
      await server.app.request(`/dashboard/jobs/${segJob.id}/image`),
      409,
      "input_is_dicom",
    );
    await assertError(
      await server.app.request(`/dashboard/jobs/${segJob.id}/labels`),
      409,
      "labels_not_nifti",
    );

    const nii = await post({
      model: "tiny",
      input: "dicom/ct.zip",
      series: source.seriesInstanceUid,
      output: "out/dicom_labels.nii.gz",
    });
    assert.equal(nii.status, 202, await nii.clone().text());
    const niiJob = await waitForJob(server, (await nii.json()).id, ["succeeded", "failed"]);
    assert.equal(niiJob.state, "succeeded", JSON.stringify(niiJob.error));
    const labels = await decodeNifti(await Deno.readFile(join(root, "out/dicom_labels.nii.gz")));
    assert.deepEqual([...labels.data], [...expected]);

    await Deno.mkdir(join(root, "in"), { recursive: true });
    await Deno.writeFile(join(root, "in", "ct.nii"), await niftiBytes(ctVolume([8, 16, 16])));
    assert.match(
      await assertError(
        await post({ model: "tiny", input: "in/ct.nii", output: "out/x.dcm" }),
        400,
        "invalid_request",
      ),
      /references the series it segments/,
    );
    await assertError(
      await post({ model: "tiny", input: "in/ct.nii", series: OTHER_SERIES, output: "out/x.nii" }),
      400,
      "invalid_request",
    );
    await Deno.mkdir(join(root, "empty_series"), { recursive: true });
    await Deno.writeTextFile(join(root, "empty_series", "readme.txt"), "no images");
    assert.match(
      await assertError(
        await post({ model: "tiny", input: "empty_series", output: "out/y.dcm" }),
        400,
        "invalid_dicom",
      ),
      /without DICOM Part 10 files/,
    );
    // A series UID not in the folder: the job fails with the reader's list, no patient data.
    const missing = await post({
      model: "tiny",
      input: folder,
      series: OTHER_SERIES,
      output: "out/z.dcm",
    });
    const failed = await waitForJob(server, (await missing.json()).id, ["succeeded", "failed"]);
    assert.equal(failed.error?.code, "invalid_dicom");
    assertNoPatientData(failed.error!.message, "the job's error");
    assert.ok(!failed.error!.message.includes(root), failed.error!.message);
  },
);

Deno.test(
  "predict: a series larger than the memory budget → 413 before it is decoded",
  dicomTest,
  async () => {
    const { zip } = await series();
    const server = await newServer({ memoryBudgetBytes: zip.length + 1024 });
    const message = await assertError(
      await predict(server, zip, "application/zip"),
      413,
      "payload_too_large",
    );
    assert.match(message, /--memory-budget/);
    assert.equal(server.context.admission.reservedBytes, 0);
  },
);
