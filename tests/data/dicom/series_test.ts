/**
 * The DICOM series reader against files nobody here wrote: pydicom's test files (each transfer
 * syntax of MR_small, voxel for voxel), series written by pydicom and re-encoded by dcmtk
 * (tests/fixtures/dicom_series.ts), and dcm2niix's NIfTI of the same series as the reference
 * for geometry (voxel centres in world space) and values. Then every refusal, zip input, and
 * `convert --dicom` leaking nothing identifying into what it writes.
 */

import { deepStrictEqual, match, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { zipSync } from "fflate";
import { declaredZipBytes, unzipDicom } from "../../../src/data/dicom/input.ts";
import { overlappingZip } from "../../fixtures/zip_bomb.ts";
import {
  DicomInputError,
  listDicomSeries,
  loadDicomInput,
  readDicomSeries,
} from "../../../src/data/dicom/series.ts";
import { TRANSFER_SYNTAXES } from "../../../src/data/dicom/codecs.ts";
import { openCase } from "../../../src/data/ome_zarr/reader.ts";
import { writeNifti } from "../../../src/data/nifti.ts";
import type { Volume } from "../../../src/data/volume.ts";
import {
  dcm2niix,
  IDENTIFYING,
  missingTools,
  PYDICOM_FILES,
  run,
  type SeriesSpec,
  writeSeries,
} from "../../fixtures/dicom_series.ts";
import { runCliCaptured } from "../cli_capture.ts";
import { withTempDir } from "../temp_dir.ts";

const skip = missingTools();
if (skip) console.warn(`tests/data/dicom/series_test.ts ${skip}`);
const test = (name: string, fn: () => Promise<void>) => Deno.test({ name, ignore: !!skip, fn });

const pydicom = (name: string) => join(PYDICOM_FILES, name);

/** Rejects with a DicomInputError whose message matches every pattern. */
async function refuses(p: Promise<unknown>, ...patterns: RegExp[]): Promise<string> {
  let message = "";
  await rejects(p, (e) => {
    ok(e instanceof DicomInputError, `expected DicomInputError, got ${(e as Error).stack}`);
    message = e.message;
    return true;
  });
  for (const re of patterns) match(message, re);
  return message;
}

/** Reads a series file list, folder or zip. */
const read = async (path: string, seriesUid?: string) =>
  await readDicomSeries(await loadDicomInput(path), { seriesUid });

test("MR_small in every transfer syntax pydicom ships or dcmtk writes decodes voxel for voxel", async () => {
  const ref = await read(pydicom("MR_small.dcm"));
  deepStrictEqual(ref.volume.shape, [1, 64, 64]);
  strictEqual(ref.volume.data.constructor, Int16Array);
  deepStrictEqual(ref.pixelSpacing, [0.3125, 0.3125]);
  strictEqual(ref.modality, "MR");
  await withTempDir(async (dir) => {
    const made: [string, string[]][] = [
      ["sv1", ["dcmcjpeg", "+e1"]],
      ["p14", ["dcmcjpeg", "+el", "+sv", "6"]],
      ["rle", ["dcmcrle"]],
      ["jls", ["dcmcjpls"]],
      ["deflate", ["dcmconv", "+td"]],
    ];
    const files = [
      "MR_small_implicit.dcm",
      "MR_small_bigendian.dcm",
      "MR_small_expb.dcm",
      "MR_small_RLE.dcm",
      "MR_small_jpeg_ls_lossless.dcm",
      "MR_small_jp2klossless.dcm",
    ].map(pydicom);
    for (const [name, [tool, ...args]] of made) {
      const out = join(dir, `${name}.dcm`);
      await run(`/usr/bin/${tool}`, [...args, pydicom("MR_small.dcm"), out]);
      files.push(out);
    }
    const seen = new Set<string>();
    for (const file of files) {
      const bytes = await Deno.readFile(file);
      seen.add(
        new TextDecoder().decode(bytes.subarray(0, 400)).match(/1\.2\.840\.10008\.1\.2[.\d]*/)![0],
      );
      const s = await read(file);
      deepStrictEqual(s.volume.shape, ref.volume.shape, file);
      deepStrictEqual(s.volume.affine, ref.volume.affine, file);
      strictEqual(s.volume.data.constructor, Int16Array, file);
      const diff = s.volume.data.findIndex((v, i) => v !== ref.volume.data[i]);
      strictEqual(diff, -1, `${file}: voxel ${diff} differs`);
    }
    // Every syntax of the table was exercised (the JPEG 2000 lossy one shares the lossless path).
    for (const t of TRANSFER_SYNTAXES) {
      if (t.uid === "1.2.840.10008.1.2.4.91" || t.uid === "1.2.840.10008.1.2.4.81") continue;
      ok([...seen].some((u) => u.startsWith(t.uid)), `${t.name} not tested`);
    }
  });
});

test("CT_small: HU = stored + RescaleIntercept, as pydicom reads it", async () => {
  const s = await read(pydicom("CT_small.dcm"));
  strictEqual(s.modality, "CT");
  strictEqual(s.volume.data.constructor, Int16Array);
  // pydicom's pixel_array: min 128, max 2191, 175 at row 0 column 0, 186 at row 5 column 7
  // (no voxel holds the padding value −2000); RescaleIntercept −1024.
  strictEqual(Math.min(...s.volume.data), 128 - 1024);
  strictEqual(Math.max(...s.volume.data), 2191 - 1024);
  strictEqual(s.volume.data[0], 175 - 1024);
  strictEqual(s.volume.data[7 + 128 * 5], 186 - 1024);
});

/**
 * voxseg's voxel centres, mapped into world space by its affine, must land on dcm2niix's
 * voxel centres (within 0.05 voxel) and carry the same values.
 */
function sameAsReference(ours: Volume, ref: Volume): void {
  const inv = invert(ref.affine);
  const [D, H, W] = ours.shape;
  const [rD, rH, rW] = ref.shape;
  deepStrictEqual([...ref.shape].sort(), [...ours.shape].sort());
  let worst = 0;
  for (let k = 0; k < D; k++) {
    for (let j = 0; j < H; j++) {
      for (let i = 0; i < W; i++) {
        const world = apply(ours.affine, [i, j, k]);
        const [x, y, z] = apply(inv, world);
        const [rx, ry, rz] = [Math.round(x), Math.round(y), Math.round(z)];
        worst = Math.max(worst, Math.abs(x - rx), Math.abs(y - ry), Math.abs(z - rz));
        ok(
          rx >= 0 && rx < rW && ry >= 0 && ry < rH && rz >= 0 && rz < rD,
          "outside dcm2niix's grid",
        );
        const theirs = Number(ref.data[rx + rW * (ry + rH * rz)]);
        const mine = Number(ours.data[i + W * (j + H * k)]);
        ok(
          Math.abs(theirs - mine) <= 1e-3 * Math.max(1, Math.abs(mine)),
          `(${i},${j},${k}): ${mine} vs ${theirs}`,
        );
      }
    }
  }
  ok(worst < 0.05, `voxel centres off by up to ${worst} voxel`);
}

function apply(a: number[], [x, y, z]: number[]): number[] {
  return [0, 1, 2].map((r) => a[4 * r] * x + a[4 * r + 1] * y + a[4 * r + 2] * z + a[4 * r + 3]);
}

/** Inverse of a 4×4 affine (rotation-scale part by cofactors). */
function invert(a: number[]): number[] {
  const m = [0, 1, 2].map((r) => [a[4 * r], a[4 * r + 1], a[4 * r + 2]]);
  const det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  const c = (r: number, s: number) => {
    const rows = [0, 1, 2].filter((x) => x !== r), cols = [0, 1, 2].filter((x) => x !== s);
    const v = m[rows[0]][cols[0]] * m[rows[1]][cols[1]] - m[rows[0]][cols[1]] * m[rows[1]][cols[0]];
    return ((r + s) % 2 ? -v : v) / det;
  };
  const inv = [0, 1, 2].map((r) => [0, 1, 2].map((s) => c(s, r)));
  const t = [0, 1, 2].map((r) => -(inv[r][0] * a[3] + inv[r][1] * a[7] + inv[r][2] * a[11]));
  return [...inv[0], t[0], ...inv[1], t[1], ...inv[2], t[2], 0, 0, 0, 1];
}

/** An oblique orientation: rotated 20° about z, then 15° about x. */
function oblique(): number[] {
  const a = 20 * Math.PI / 180, b = 15 * Math.PI / 180;
  const row = [Math.cos(a), Math.sin(a), 0];
  const col = [-Math.sin(a), Math.cos(a), 0];
  const rx = (
    v: number[],
  ) => [v[0], v[1] * Math.cos(b) - v[2] * Math.sin(b), v[1] * Math.sin(b) + v[2] * Math.cos(b)];
  return [...rx(row), ...rx(col)];
}

const REFERENCE_CASES: [string, SeriesSpec][] = [
  ["axial, unsigned + intercept −1024, shuffled names", {}],
  ["oblique", { orientation: oblique(), spacing: [3, 0.7, 0.75] }],
  ["signed words, float slope", { pixelRepresentation: 1, slope: "0.5", intercept: "-3.25" }],
  ["Enhanced CT multi-frame, frames out of order", { multiFrame: true }],
];

for (const [name, spec] of REFERENCE_CASES) {
  test(`series matches dcm2niix in world space: ${name}`, async () => {
    await withTempDir(async (dir) => {
      const w = await writeSeries(join(dir, "dcm"), spec);
      const s = await read(w.dir);
      deepStrictEqual(s.volume.shape, w.shape);
      const float = spec.slope !== undefined && !Number.isInteger(Number(spec.slope));
      strictEqual(s.volume.data.constructor, float ? Float32Array : Int16Array);
      s.volume.data.forEach((v, i) => {
        if (v !== w.values[i]) throw new Error(`voxel ${i}: ${v}, expected ${w.values[i]}`);
      });
      const [dz, dy, dx] = s.volume.spacingMm;
      ok(Math.abs(dz - w.spacing[0]) < 1e-3 && dy === w.spacing[1] && dx === w.spacing[2]);
      deepStrictEqual(s.positions, w.positions);
      strictEqual(s.slices.length, w.shape[0]);
      strictEqual(s.slices[0].frame !== undefined, spec.multiFrame === true);
      sameAsReference(s.volume, await dcm2niix(w.dir, join(dir, "nii")));
    });
  });
}

test("dcmtk-encoded series (JPEG lossless SV1 and process 14, RLE, JPEG-LS, deflate, big endian, implicit) read the same voxels", async () => {
  await withTempDir(async (dir) => {
    const syntaxes = [
      "jpeg-sv1",
      "jpeg-p14",
      "rle",
      "jpeg-ls",
      "deflate",
      "big-endian",
      "implicit",
    ] as const;
    for (const syntax of syntaxes) {
      for (const signed of [false, true]) {
        const spec: SeriesSpec = signed
          ? { syntax, pixelRepresentation: 1, intercept: "0" }
          : { syntax };
        const w = await writeSeries(join(dir, `${syntax}${signed}`), spec);
        const s = await read(w.dir);
        const bad = s.volume.data.findIndex((v, i) => v !== w.values[i]);
        strictEqual(bad, -1, `${syntax} signed=${signed}: voxel ${bad}`);
      }
    }
  });
});

test("BitsStored 12: high bits masked, signed values sign-extended from bit 11", async () => {
  await withTempDir(async (dir) => {
    for (const signed of [false, true]) {
      const w = await writeSeries(join(dir, String(signed)), {
        bitsStored: 12,
        garbageHighBits: true,
        ...(signed ? { pixelRepresentation: 1, intercept: "0" } : {}),
      });
      const s = await read(w.dir);
      ok(Math.min(...s.volume.data) < (signed ? -1000 : -1000));
      const bad = s.volume.data.findIndex((v, i) => v !== w.values[i]);
      strictEqual(
        bad,
        -1,
        `signed=${signed}: voxel ${bad}: ${s.volume.data[bad]} vs ${w.values[bad]}`,
      );
    }
  });
});

test("PixelPaddingValue voxels become the series' floor (CT: at most −1024 HU)", async () => {
  await withTempDir(async (dir) => {
    const w = await writeSeries(join(dir, "pad"), {
      pixelRepresentation: 1,
      intercept: "0",
      padding: -3024,
    });
    const s = await read(w.dir);
    const W = w.shape[2];
    const real = [...w.values].filter((v) => !Number.isNaN(v));
    const floor = Math.min(-1024, ...real);
    s.volume.data.forEach((v, i) => {
      const want = i % W === 0 ? floor : w.values[i];
      if (v !== want) throw new Error(`voxel ${i}: ${v}, expected ${want}`);
    });
  });
});

test("two series: listed without patient data; --series picks one; a zip reads the same", async () => {
  await withTempDir(async (dir) => {
    const a = await writeSeries(join(dir, "in", "a"), {});
    await writeSeries(join(dir, "in", "b"), { seriesUid: "1.2.3.4.5", seed: 9, modality: "MR" });
    const files = await loadDicomInput(join(dir, "in"));
    const list = listDicomSeries(files);
    deepStrictEqual(list.map((s) => [s.seriesInstanceUid, s.modality, s.frames]), [
      ["1.2.3.4.5", "MR", 12],
      [IDENTIFYING.SeriesInstanceUID, "CT", 12],
    ]);
    const message = await refuses(
      readDicomSeries(files),
      /2 image series/,
      /--series UID/,
      /1\.2\.3\.4\.5 {2}MR {2}12 images/,
    );
    for (
      const v of [
        IDENTIFYING.PatientName,
        IDENTIFYING.PatientID,
        IDENTIFYING.StudyDate,
        IDENTIFYING.SeriesDescription,
        "Quirina",
        dir,
      ]
    ) {
      ok(!message.includes(v), `message shows ${v}`);
    }
    const s = await readDicomSeries(files, { seriesUid: IDENTIFYING.SeriesInstanceUID });
    strictEqual(s.seriesInstanceUid, IDENTIFYING.SeriesInstanceUID);
    strictEqual(s.studyInstanceUid, IDENTIFYING.StudyInstanceUID);
    strictEqual(s.frameOfReferenceUid, IDENTIFYING.FrameOfReferenceUID);
    strictEqual(s.seriesNumber, 3);
    strictEqual(s.patientStudy.PatientID as string, IDENTIFYING.PatientID);
    await refuses(readDicomSeries(files, { seriesUid: "9.9" }), /series 9\.9 is not in the input/);
    // The same files zipped (with a non-DICOM entry) read the same.
    const entries: Record<string, Uint8Array> = { "notes.txt": new TextEncoder().encode("hi") };
    for (const f of a.files) entries[`x/${f.split("/").pop()}`] = await Deno.readFile(f);
    const zip = join(dir, "a.zip");
    await Deno.writeFile(zip, zipSync(entries));
    const z = await read(zip);
    deepStrictEqual(z.volume.data, s.volume.data);
    deepStrictEqual(z.volume.affine, s.volume.affine);
    // A comma-separated list of files.
    const listed = await read(a.files.join(","));
    deepStrictEqual(listed.volume.data, s.volume.data);
  });
});

test("zip limits: too many entries or too many bytes is refused before inflating", async () => {
  await withTempDir(async (dir) => {
    const zip = join(dir, "bomb.zip");
    const big = new Uint8Array(1 << 20); // 1 MiB of zeros deflates to ~1 kB
    await Deno.writeFile(zip, zipSync({ a: big, b: big, c: big }, { level: 9 }));
    await refuses(
      loadDicomInput(zip, { maxBytes: 2 << 20 }),
      /bomb\.zip: entries expand to more than/,
    );
    await refuses(loadDicomInput(zip, { maxEntries: 2 }), /more than 2 entries/);
    await refuses(loadDicomInput(zip), /no DICOM file in the zip/);
    // 1000 entries declaring 0 bytes, all pointing at the same 64 KiB: 64 MB once copied.
    const overlapping = overlappingZip(1000, 64 * 1024);
    ok(declaredZipBytes(overlapping, "o.zip") >= 1000 * 64 * 1024);
    await refuses(
      Promise.resolve().then(() => unzipDicom(overlapping, "o.zip", { maxBytes: 8 << 20 })),
      /o\.zip: entries expand to more than/,
    );
  });
});

test("bad input: each is a DicomInputError naming the problem, with relative names only", async () => {
  await withTempDir(async (dir) => {
    await refuses(loadDicomInput(pydicom("README.txt")), /README\.txt: not a DICOM file/);
    await refuses(read(pydicom("MR_truncated.dcm")), /MR_truncated\.dcm: .*truncated/);
    await refuses(read(pydicom("SC_rgb_rle.dcm")), /colour image/);
    await refuses(loadDicomInput(join(dir, "nothing")), /no such file or folder/);
    await Deno.mkdir(join(dir, "empty"));
    await Deno.writeTextFile(join(dir, "empty", "a.txt"), "x");
    await refuses(loadDicomInput(join(dir, "empty")), /no DICOM file in the folder/);

    const missing = await writeSeries(join(dir, "missing"), { drop: [5] });
    await refuses(
      read(missing.dir),
      /uneven slice spacing/,
      /step is 5 mm but the series' step is 2\.5 mm/,
      /1 slice missing/,
    );
    const tilt = await writeSeries(join(dir, "tilt"), { tiltDegrees: 12 });
    await refuses(read(tilt.dir), /gantry tilt/, /tilt 12\.00°/);
    const dup = await writeSeries(join(dir, "dup"), { duplicateOf: 4 });
    await refuses(read(dup.dir), /two images at one slice position/);

    // One series UID, two orientations / two pixel spacings.
    await writeSeries(join(dir, "mixed", "a"), {});
    await writeSeries(join(dir, "mixed", "b"), { orientation: oblique(), seed: 3 });
    await refuses(read(join(dir, "mixed")), /mixed orientations in one series/);
    await writeSeries(join(dir, "spacing", "a"), {});
    await writeSeries(join(dir, "spacing", "b"), { spacing: [2.5, 0.5, 0.5], seed: 4 });
    await refuses(read(join(dir, "spacing")), /mixed pixel spacing/);

    // A syntax without a codec: JPEG Extended (lossy 12-bit), written by dcmtk.
    const lossy = await writeSeries(join(dir, "lossy"), { bitsStored: 12 });
    for (const f of lossy.files) {
      await run("/usr/bin/dcmcjpeg", ["+ee", f, `${f}.jpg`]);
      await Deno.rename(`${f}.jpg`, f);
    }
    await refuses(
      read(lossy.dir),
      /1\.2\.840\.10008\.1\.2\.4\.51 \(JPEG Extended/,
      /not supported/,
      /dcmdjpeg/,
    );

    // No message above showed the temp folder.
    for (const p of [missing.dir, tilt.dir, dup.dir, lossy.dir]) {
      const m = await read(p).catch((e: Error) => e.message);
      ok(typeof m === "string" && !m.includes(dir), m as string);
    }
  });
});

test("convert --dicom writes a case with the series' geometry and nothing identifying", async () => {
  await withTempDir(async (dir) => {
    const w = await writeSeries(join(dir, "dcm"), { orientation: oblique() });
    const expected = await read(w.dir);
    for (const deidentify of [false, true]) {
      const out = join(dir, `case${deidentify}.zarr`);
      const r = await runCliCaptured([
        "convert",
        "--dicom",
        w.dir,
        "--out",
        out,
        "--chunks",
        "8",
        ...(deidentify ? ["--deidentify"] : []),
      ]);
      strictEqual(r.code, 0, r.stderr);
      strictEqual(r.stdout.includes(IDENTIFYING.SeriesInstanceUID), !deidentify);
      const c = await openCase(out);
      deepStrictEqual(c.shape, expected.volume.shape);
      deepStrictEqual(c.affine, expected.volume.affine);
      const back = await c.readFullImage();
      deepStrictEqual([...back.data], [...expected.volume.data]);
      for await (const json of jsonFiles(out)) {
        const text = await Deno.readTextFile(json);
        for (const [key, value] of Object.entries(IDENTIFYING)) {
          ok(!text.includes(value), `${json} holds ${key}`);
        }
        ok(!text.includes("Quirina") && !text.includes("1947") && !text.includes("2024"), json);
        if (json.endsWith("/zarr.json") && text.includes("voxseg")) {
          match(text, /"modality":\s*"CT"/);
        }
      }
    }
    const both = await runCliCaptured([
      "convert",
      "--dicom",
      w.dir,
      "--image",
      "x.nii",
      "--out",
      join(dir, "x.zarr"),
    ]);
    strictEqual(both.code, 2);
    const bad = await runCliCaptured([
      "convert",
      "--dicom",
      pydicom("MR_truncated.dcm"),
      "--out",
      join(dir, "t.zarr"),
    ]);
    strictEqual(bad.code, 1);
    match(bad.stderr, /DicomInputError: MR_truncated\.dcm: .*truncated/);
    ok(!bad.stderr.includes("    at "), "no stack trace");
  });
});

async function* jsonFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* jsonFiles(p);
    else if (e.name.endsWith(".json")) yield p;
  }
}

test("convert --raw takes DICOM series (a CASE_0000 folder or CASE_0000.zip) as nnU-Net images", async () => {
  await withTempDir(async (dir) => {
    const raw = join(dir, "Dataset001_Dicom");
    const a = await writeSeries(join(raw, "imagesTr", "a_0000"), { seed: 1 });
    const b = await writeSeries(join(dir, "b_series"), { seed: 2, orientation: oblique() });
    const zip: Record<string, Uint8Array> = {};
    for (const file of b.files) zip[file.slice(b.dir.length + 1)] = await Deno.readFile(file);
    await Deno.writeFile(join(raw, "imagesTr", "b_0000.zip"), zipSync(zip));
    await Deno.mkdir(join(raw, "labelsTr"));
    for (const [id, w] of [["a", a], ["b", b]] as const) {
      const volume = (await read(w.dir)).volume;
      const labels = new Uint8Array(volume.data.length).map((_, i) => (i % 7 === 0 ? 1 : 0));
      await writeNifti(join(raw, "labelsTr", `${id}.nii.gz`), { ...volume, data: labels });
    }
    const out = join(dir, "ds");
    const r = await runCliCaptured(["convert", "--raw", raw, "--out", out, "--val", "0.5"]);
    strictEqual(r.code, 0, r.stderr);
    for (const [id, w] of [["a", a], ["b", b]] as const) {
      const expected = (await read(w.dir)).volume;
      const c = await openCase(join(out, "cases", `${id}.zarr`));
      deepStrictEqual(c.affine, expected.affine);
      deepStrictEqual([...(await c.readFullImage()).data], [...expected.data]);
    }
    for await (const json of jsonFiles(out)) {
      const text = await Deno.readTextFile(json);
      ok(!text.includes(IDENTIFYING.PatientName) && !text.includes(IDENTIFYING.PatientID), json);
    }
  });
});
