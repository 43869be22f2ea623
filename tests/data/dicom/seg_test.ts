/**
 * DICOM Segmentation write and read on in-memory source series (an oblique 5-plane grid of
 * 7×9 pixels, so a 1-bit frame is 63 bits and frames start mid-byte): dciodvfy (dicom3tools)
 * finds no errors, an independent reader (pydicom + numpy, tests/fixtures/pydicom_seg.py)
 * gets the same labels, references and patient/study attributes back, and voxseg's own reader
 * round-trips binary and fractional objects. Plus the coded meanings and UIDs.
 */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  encodeFractionalSegmentation,
  encodeSegmentation,
  type SegmentationOptions,
  srgbToDicomLab,
} from "../../../src/data/dicom/seg.ts";
import { decodeSegmentation } from "../../../src/data/dicom/seg_read.ts";
import {
  classCodeFor,
  GENERIC_CLASS_CODE,
  parseCodedConcept,
  segmentMeanings,
} from "../../../src/data/dicom/codes.ts";
import { isUid, newUid } from "../../../src/data/dicom/uid.ts";
import { DicomInputError } from "../../../src/data/dicom/errors.ts";
import type { DicomSeries } from "../../../src/data/dicom/types.ts";
import { withTempDir } from "../temp_dir.ts";

const [D, H, W] = [5, 7, 9];
const PLANE = H * W;
const CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2";
const ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1";
const HELPER = fileURLToPath(new URL("../../fixtures/pydicom_seg.py", import.meta.url));

/** An oblique series: rows rotated 30° about z, columns tilted 20° out of the axial plane. */
function sourceSeries(multiFrame = false): DicomSeries {
  const [a, b] = [Math.PI / 6, Math.PI / 9];
  const row = [Math.cos(a), Math.sin(a), 0];
  const col = [-Math.sin(a) * Math.cos(b), Math.cos(a) * Math.cos(b), -Math.sin(b)];
  const normal = [
    row[1] * col[2] - row[2] * col[1],
    row[2] * col[0] - row[0] * col[2],
    row[0] * col[1] - row[1] * col[0],
  ];
  const spacing = 2.5;
  const enhanced = newUid();
  return {
    volume: {
      shape: [D, H, W],
      spacingMm: [spacing, 0.8, 0.7],
      affine: [],
      data: new Int16Array(D * PLANE),
    },
    studyInstanceUid: newUid(),
    seriesInstanceUid: newUid(),
    frameOfReferenceUid: newUid(),
    modality: "CT",
    seriesDescription: "",
    slices: Array.from(
      { length: D },
      (_, z) =>
        multiFrame
          ? { sopClassUid: ENHANCED_CT_IMAGE, sopInstanceUid: enhanced, frame: z + 1 }
          : { sopClassUid: CT_IMAGE, sopInstanceUid: newUid() },
    ),
    orientation: [...row, ...col] as DicomSeries["orientation"],
    positions: Array.from(
      { length: D },
      (_, z) =>
        [0, 1, 2].map((k) => [-120, 35.5, 60][k] + z * spacing * normal[k]) as [
          number,
          number,
          number,
        ],
    ),
    pixelSpacing: [0.8, 0.7],
    patientStudy: {
      PatientName: [{ Alphabetic: "Doe^Jane" }],
      PatientID: "VOX-0001",
      PatientBirthDate: "19700101",
      PatientSex: "F",
      StudyDate: "20261203",
      StudyTime: "101500",
      StudyID: "S1",
      AccessionNumber: "A123",
      ReferringPhysicianName: null,
    },
  };
}

/**
 * Labels 0…2: lung (1) on planes 1–3, infection (2) inside it on planes 2–3, nothing on planes
 * 0 and 4, so empty frames are left out.
 */
function labelMap(): Uint8Array {
  const labels = new Uint8Array(D * PLANE);
  for (let z = 1; z <= 3; z++) {
    for (let y = 1; y < H - 1; y++) {
      for (let x = 1 + (z % 2); x < W - 1; x++) {
        labels[x + W * (y + H * z)] = z >= 2 && x + y < 7 ? 2 : 1;
      }
    }
  }
  return labels;
}

const CLASSES = ["background", "lung", "infection"];

function options(extra: Partial<SegmentationOptions> = {}): SegmentationOptions {
  return {
    segments: segmentMeanings(CLASSES),
    algorithmName: "voxseg-unet",
    algorithmVersion: "run-20261203",
    colors: [[128, 174, 128], [255, 0, 0]],
    ...extra,
  };
}

/** dciodvfy's report: its Error lines (must be none) and Warning lines. */
async function dciodvfy(path: string): Promise<{ errors: string[]; warnings: string[] }> {
  const out = await new Deno.Command("dciodvfy", { args: [path], stdout: "piped", stderr: "piped" })
    .output();
  const lines = new TextDecoder().decode(out.stderr).concat(new TextDecoder().decode(out.stdout))
    .split("\n");
  return {
    errors: lines.filter((l) => l.startsWith("Error")),
    warnings: lines.filter((l) => l.startsWith("Warning")),
  };
}

interface PydicomView {
  labels: number[];
  pixelArrayMatchesBits: boolean;
  fractions: number[] | null;
  references: { z: number; segment: number; sopInstanceUid: string; purpose: string }[];
  patientName: string;
  patientId: string;
  studyInstanceUid: string;
  frameOfReferenceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  segmentLabels: string[];
  segmentTypes: string[];
  referencedInstances: string[];
}

/**
 * Writes the SEG and the source geometry, checks it with dciodvfy (no errors, no warnings) and
 * reads it with pydicom.
 */
function independentRead(bytes: Uint8Array, source: DicomSeries): Promise<PydicomView> {
  return withTempDir(async (dir) => {
    const seg = `${dir}/seg.dcm`;
    await Deno.writeFile(seg, bytes);
    const { errors, warnings } = await dciodvfy(seg);
    deepStrictEqual(errors, [], "dciodvfy reports errors");
    // With a complete source (StudyTime, StudyID, … present) there is nothing to warn about.
    deepStrictEqual(warnings, [], "dciodvfy warns");
    const geometry = `${dir}/source.json`;
    await Deno.writeTextFile(
      geometry,
      JSON.stringify({
        positions: source.positions,
        orientation: source.orientation,
        shape: source.volume.shape,
      }),
    );
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [HELPER, seg, geometry],
      stdout: "piped",
      stderr: "piped",
    }).output();
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    return JSON.parse(new TextDecoder().decode(out.stdout)) as PydicomView;
  });
}

/** (segment, plane) pairs with a voxel: the frames a SEG without empty frames holds. */
function nonEmptyFrames(labels: Uint8Array, segments: number): string[] {
  const pairs: string[] = [];
  for (let s = 1; s <= segments; s++) {
    for (let z = 0; z < D; z++) {
      if (labels.subarray(z * PLANE, (z + 1) * PLANE).includes(s)) pairs.push(`${s}@${z}`);
    }
  }
  return pairs;
}

Deno.test("binary SEG of an oblique 5×7×9 series: dciodvfy clean, pydicom reads the labels back", async () => {
  const source = sourceSeries();
  const labels = labelMap();
  const seg = encodeSegmentation(labels, source, options());
  const view = await independentRead(seg, source);

  deepStrictEqual(view.labels, [...labels]);
  ok(view.pixelArrayMatchesBits, "pydicom's pixel_array differs from the bits unpacked by hand");
  // Empty frames left out: one frame per (segment, plane) with a voxel, by segment then plane.
  deepStrictEqual(
    view.references.map((r) => `${r.segment}@${r.z}`),
    nonEmptyFrames(labels, 2),
  );
  for (const r of view.references) {
    strictEqual(r.sopInstanceUid, source.slices[r.z].sopInstanceUid, `frame on plane ${r.z}`);
    strictEqual(r.purpose, "121322");
  }
  strictEqual(view.patientName, "Doe^Jane");
  strictEqual(view.patientId, "VOX-0001");
  strictEqual(view.studyInstanceUid, source.studyInstanceUid);
  strictEqual(view.frameOfReferenceUid, source.frameOfReferenceUid);
  ok(view.seriesInstanceUid !== source.seriesInstanceUid && isUid(view.seriesInstanceUid));
  ok(isUid(view.sopInstanceUid));
  deepStrictEqual(view.segmentLabels, ["lung", "infection"]);
  deepStrictEqual(view.segmentTypes, ["39607008", "52988006"]);
  deepStrictEqual(view.referencedInstances, source.slices.map((s) => s.sopInstanceUid));
});

Deno.test("binary SEG round trip through decodeSegmentation, with and without the source", () => {
  const source = sourceSeries();
  const labels = labelMap();
  const seg = encodeSegmentation(labels, source, options());

  const decoded = decodeSegmentation(seg, source);
  deepStrictEqual(decoded.labels, labels);
  deepStrictEqual(decoded.shape, [D, H, W]);
  strictEqual(decoded.type, "BINARY");
  strictEqual(decoded.frameOfReferenceUid, source.frameOfReferenceUid);
  deepStrictEqual(decoded.segments, segmentMeanings(CLASSES));

  // Without the source the grid is the frames' own planes: 1, 2, 3 (0 and 4 had no frame).
  const own = decodeSegmentation(seg);
  deepStrictEqual(own.shape, [3, H, W]);
  deepStrictEqual(own.labels, labels.subarray(PLANE, 4 * PLANE));
  for (let i = 0; i < 3; i++) {
    own.positions[i].forEach((v, k) => ok(Math.abs(v - source.positions[i + 1][k]) < 1e-6));
  }

  // Source images it does not reference (same grid, other UIDs): frames land by position.
  const other = { ...sourceSeries(), positions: source.positions };
  other.orientation = source.orientation;
  other.frameOfReferenceUid = source.frameOfReferenceUid;
  deepStrictEqual(decodeSegmentation(seg, other).labels, labels);
});

Deno.test("a frame off the source grid or another frame of reference is refused", () => {
  const source = sourceSeries();
  const seg = encodeSegmentation(labelMap(), source, options());
  const shifted = sourceSeries();
  shifted.frameOfReferenceUid = source.frameOfReferenceUid;
  shifted.positions = source.positions.map(([x, y, z]) => [x + 1, y, z]);
  throws(() => decodeSegmentation(seg, shifted), /lies on no plane of the source series/);
  throws(
    () => decodeSegmentation(seg, sourceSeries()),
    (e: Error) => e instanceof DicomInputError && /FrameOfReferenceUID differs/.test(e.message),
  );
});

Deno.test("multi-frame source: frames reference the instance and its frame number", async () => {
  const source = sourceSeries(true);
  const labels = labelMap();
  const seg = encodeSegmentation(labels, source, options());
  const view = await independentRead(seg, source);
  deepStrictEqual(view.labels, [...labels]);
  deepStrictEqual(view.referencedInstances, [source.slices[0].sopInstanceUid]);
  deepStrictEqual(decodeSegmentation(seg, source).labels, labels);
});

Deno.test("an empty label map is a valid SEG with one empty frame per segment", async () => {
  const source = sourceSeries();
  const labels = new Uint8Array(D * PLANE);
  const seg = encodeSegmentation(labels, source, options());
  const view = await independentRead(seg, source);
  deepStrictEqual(view.references.map((r) => `${r.segment}@${r.z}`), ["1@0", "2@0"]);
  deepStrictEqual(view.labels, [...labels]);
  deepStrictEqual(decodeSegmentation(seg, source).labels, labels);
});

Deno.test("fractional SEG: 8-bit probabilities, dciodvfy clean; overlaps go to the highest segment", async () => {
  const source = sourceSeries();
  const probabilities = new Float32Array(3 * D * PLANE);
  for (let i = 0; i < D * PLANE; i++) {
    const z = Math.floor(i / PLANE);
    probabilities[D * PLANE + i] = z === 0 ? 0 : ((i * 37) % 101) / 100; // lung
    probabilities[2 * D * PLANE + i] = z === 4 ? 0 : ((i * 53) % 97) / 96; // infection
  }
  const seg = encodeFractionalSegmentation({ data: probabilities, classes: 3 }, source, options());
  const view = await independentRead(seg, source);
  ok(view.pixelArrayMatchesBits);
  // Planes where a class is 0 everywhere have no frame.
  deepStrictEqual(
    view.references.map((r) => `${r.segment}@${r.z}`),
    ["1@1", "1@2", "1@3", "1@4", "2@0", "2@1", "2@2", "2@3"],
  );
  // The stored values are round(p·255) of each frame's plane.
  const fractions = view.fractions!;
  view.references.forEach((r, n) => {
    for (let i = 0; i < PLANE; i++) {
      const p = probabilities[r.segment * D * PLANE + r.z * PLANE + i];
      strictEqual(fractions[n * PLANE + i], Math.round(p * 255));
    }
  });
  // A voxel is in a segment above half the maximum; where both are, segment 2 wins.
  const expected = new Uint8Array(D * PLANE);
  for (let i = 0; i < D * PLANE; i++) {
    const inLung = Math.round(probabilities[D * PLANE + i] * 255) * 2 > 255;
    const inInfection = Math.round(probabilities[2 * D * PLANE + i] * 255) * 2 > 255;
    expected[i] = inInfection ? 2 : inLung ? 1 : 0;
  }
  ok(expected.some((v, i) => v === 2 && probabilities[D * PLANE + i] > 0.5), "no overlap tested");
  deepStrictEqual(view.labels, [...expected]);
  const decoded = decodeSegmentation(seg, source);
  strictEqual(decoded.type, "FRACTIONAL");
  deepStrictEqual(decoded.labels, expected);
});

Deno.test("encodeSegmentation refuses wrong sizes, unknown labels and bad options, saying why", () => {
  const source = sourceSeries();
  throws(
    () => encodeSegmentation(new Uint8Array(10), source, options()),
    /label map has 10 voxels, the source series 315/,
  );
  const labels = labelMap();
  labels[5] = 3;
  throws(() => encodeSegmentation(labels, source, options()), /label 3 at voxel 5 has no segment/);
  throws(
    () => encodeSegmentation(labelMap(), source, options({ contentLabel: "my seg" })),
    /contentLabel "my seg" is not a DICOM code string/,
  );
  throws(
    () => encodeSegmentation(labelMap(), { ...source, positions: [] }, options()),
    /5 planes but 5 source images and 0 positions/,
  );
  throws(
    () =>
      encodeFractionalSegmentation(
        { data: new Float32Array(2 * D * PLANE), classes: 2 },
        source,
        options(),
      ),
    /2 channels \(background included\), but 2 segment\(s\)/,
  );
});

Deno.test("decodeSegmentation refuses what is not a Segmentation", () => {
  throws(() => decodeSegmentation(new Uint8Array(200)), DicomInputError);
});

Deno.test("segmentMeanings: known names get SNOMED CT codes, others the generic code, given codes win", () => {
  const [lung, left, infection, liver] = segmentMeanings([
    "background",
    "Lung",
    "left-lung",
    "COVID-19 lesion",
    "liver",
  ]);
  deepStrictEqual([lung.category.value, lung.type.value, lung.label], [
    "123037004",
    "39607008",
    "Lung",
  ]);
  strictEqual(left.type.value, "44029006");
  strictEqual(classCodeFor("right_lung").type.value, "3341006");
  deepStrictEqual([infection.category.value, infection.type.value], ["49755003", "52988006"]);
  deepStrictEqual({ category: liver.category, type: liver.type }, GENERIC_CLASS_CODE);
  const liverCode = parseCodedConcept("SCT:10200004:Liver");
  const [given] = segmentMeanings(["bg", "liver"], {
    liver: { category: parseCodedConcept("SCT:123037004:Anatomical Structure"), type: liverCode },
  });
  deepStrictEqual(given.type, { scheme: "SCT", value: "10200004", meaning: "Liver" });
  throws(() => segmentMeanings(["background"]), /at least one foreground class/);
});

Deno.test("parseCodedConcept: SCHEME:VALUE:Meaning, meaning may hold colons, clear errors", () => {
  deepStrictEqual(parseCodedConcept("DCM:113076:Segmentation: of lungs"), {
    scheme: "DCM",
    value: "113076",
    meaning: "Segmentation: of lungs",
  });
  throws(() => parseCodedConcept("SCT:39607008"), /fewer than three parts; expected/);
  throws(() => parseCodedConcept("SCT::Lung"), /empty code value/);
  throws(() => parseCodedConcept("SCT:lung:Lung"), /SNOMED CT code value is a number/);
  throws(() => parseCodedConcept(`SCT:39607008:${"x".repeat(65)}`), /longer than DICOM's 64/);
  throws(() => parseCodedConcept("S C T:1:x"), /should be a designator like SCT or DCM/);
});

Deno.test("newUid: 2.25.<128-bit decimal>, valid and unique", () => {
  const uids = new Set(Array.from({ length: 1000 }, newUid));
  strictEqual(uids.size, 1000);
  for (const uid of uids) {
    ok(isUid(uid) && uid.startsWith("2.25.") && uid.length <= 44, uid);
    ok(BigInt(uid.slice(5)) < 1n << 128n);
  }
  ok(!isUid("1.02.3") && !isUid("1..2") && !isUid("1.2."));
});

Deno.test("srgbToDicomLab: white, black and red in DICOM's scaled CIELab", () => {
  deepStrictEqual(srgbToDicomLab([255, 255, 255]), [65535, 32896, 32896]);
  deepStrictEqual(srgbToDicomLab([0, 0, 0]), [0, 32896, 32896]);
  const [l, a, b] = srgbToDicomLab([255, 0, 0]); // L 53.24, a 80.09, b 67.20
  ok(Math.abs(l - 34891) < 40 && Math.abs(a - 53480) < 40 && Math.abs(b - 50172) < 40);
});
