/**
 * DICOM image series → voxseg volume. Files are grouped by SeriesInstanceUID; the chosen
 * series' frames (single-frame files, or the frames of enhanced multi-frame files) are ordered
 * by position along the slice normal and stacked into a {@link Volume} in HU (./geometry.ts,
 * ./pixels.ts), with what a Segmentation of it must reference.
 *
 * Nothing identifying leaves this module except inside `DicomSeries.patientStudy`: errors name
 * files by their names relative to the input and series by UID, modality and size only.
 */

import { checkVolume } from "../volume.ts";
import { DicomInputError } from "./errors.ts";
import { transferSyntax } from "./codecs.ts";
import { type ImageFrame, instanceFrames } from "./frames.ts";
import { stackGeometry } from "./geometry.ts";
import type { NamedBytes } from "./input.ts";
import { type DicomInstance, num, parseInstance, text, texts } from "./instance.ts";
import { type DecodedFrame, frameValues, frameWords, pixelFormat } from "./pixels.ts";
import type { DicomSeries, PatientStudyModules } from "./types.ts";

export { DicomInputError } from "./errors.ts";
export { loadDicomInput, type NamedBytes } from "./input.ts";

/** One series of the input, as listed for a choice. Holds nothing identifying. */
export interface DicomSeriesSummary {
  seriesInstanceUid: string;
  /** Modality (0008,0060), e.g. "CT". */
  modality: string;
  /** SeriesDescription; shown to the user who owns the scan, never logged by voxseg. */
  seriesDescription: string;
  seriesNumber?: number;
  /** Number of files. */
  instances: number;
  /** Number of image frames (slices), NumberOfFrames summed. */
  frames: number;
  /** Every image says LOCALIZER in ImageType: a scout / topogram. */
  localizer: boolean;
  /** Some image says DERIVED in ImageType (a reformat, MIP, or a computed map). */
  derived: boolean;
  /** Holds images voxseg could stack (pixel data, not a Segmentation). */
  image: boolean;
}

/** SOP Class of DICOM Segmentation: pixel data, but a result rather than an input image. */
const SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4";

/**
 * The series in `files`, by SeriesInstanceUID, in the order of SeriesNumber. Reads headers
 * only (stops before the pixel data).
 */
export function listDicomSeries(files: readonly NamedBytes[]): DicomSeriesSummary[] {
  return summarize(files.map((f) => parseInstance(f, false)));
}

function summarize(instances: readonly DicomInstance[]): DicomSeriesSummary[] {
  const bySeries = new Map<string, DicomSeriesSummary>();
  for (const { dataset: ds } of instances) {
    const uid = text(ds, "SeriesInstanceUID");
    const imageType = texts(ds, "ImageType");
    const hasPixels = ds.PixelData !== undefined || (num(ds, "Rows") ?? 0) > 0;
    const isImage = hasPixels && text(ds, "SOPClassUID") !== SEGMENTATION_SOP_CLASS;
    const s = bySeries.get(uid) ?? {
      seriesInstanceUid: uid,
      modality: text(ds, "Modality"),
      seriesDescription: text(ds, "SeriesDescription"),
      seriesNumber: num(ds, "SeriesNumber"),
      instances: 0,
      frames: 0,
      localizer: true,
      derived: false,
      image: false,
    };
    s.instances += 1;
    s.frames += isImage ? num(ds, "NumberOfFrames") ?? 1 : 0;
    s.localizer &&= imageType.includes("LOCALIZER");
    s.derived ||= imageType[0] === "DERIVED";
    s.image ||= isImage;
    bySeries.set(uid, s);
  }
  return [...bySeries.values()].sort((a, b) =>
    (a.seriesNumber ?? Infinity) - (b.seriesNumber ?? Infinity) ||
    a.seriesInstanceUid.localeCompare(b.seriesInstanceUid)
  );
}

/** One line per series for messages: UID, modality, size, flags — no description. */
export function describeSeries(list: readonly DicomSeriesSummary[]): string {
  return list.map((s) => {
    const flags = [
      s.localizer ? "localizer" : "",
      s.derived ? "derived" : "",
      s.image ? "" : "no images",
    ].filter(Boolean);
    const size = `${s.frames} image${s.frames === 1 ? "" : "s"}`;
    return `  ${s.seriesInstanceUid}  ${s.modality || "?"}  ${size}` +
      (flags.length ? ` (${flags.join(", ")})` : "");
  }).join("\n");
}

export interface ReadDicomSeriesOptions {
  /** SeriesInstanceUID to read when the input holds several series. */
  seriesUid?: string;
}

/**
 * Reads one image series from DICOM files into a volume in HU with its geometry.
 *
 * @example
 * const series = await readDicomSeries(await loadDicomInput("ct.zip"));
 * series.volume.shape; // [slices, rows, columns]
 */
export async function readDicomSeries(
  files: readonly NamedBytes[],
  options: ReadDicomSeriesOptions = {},
): Promise<DicomSeries> {
  if (files.length === 0) throw new DicomInputError("no DICOM files given");
  const headers = files.map((f) => parseInstance(f, false));
  const list = summarize(headers);
  const uid = chooseSeries(list, options.seriesUid);
  const instances = files
    .filter((_, i) => text(headers[i].dataset, "SeriesInstanceUID") === uid)
    .map((f) => parseInstance(f));
  return await stackSeries(instances);
}

/** The UID to read: the one asked for, or the input's only image series. */
function chooseSeries(list: readonly DicomSeriesSummary[], asked?: string): string {
  if (asked !== undefined) {
    const found = list.find((s) => s.seriesInstanceUid === asked.trim());
    if (!found) {
      throw new DicomInputError(
        `series ${asked} is not in the input; it holds:\n${describeSeries(list)}`,
      );
    }
    if (!found.image) {
      throw new DicomInputError(`series ${asked} holds no images voxseg can stack`);
    }
    return found.seriesInstanceUid;
  }
  const images = list.filter((s) => s.image);
  if (images.length === 1) return images[0].seriesInstanceUid;
  if (images.length === 0) {
    throw new DicomInputError(
      `no image series in the input (found ${list.length} series without images):\n` +
        describeSeries(list),
    );
  }
  throw new DicomInputError(
    `the input holds ${images.length} image series; pick one with --series UID:\n` +
      describeSeries(images),
  );
}

/** Stacks the frames of one series' instances into a volume. */
async function stackSeries(instances: DicomInstance[]): Promise<DicomSeries> {
  // Refuse a syntax without a codec before anything else, so that is the message one gets.
  for (const inst of instances) transferSyntax(inst.transferSyntaxUid, inst.name);
  let frames = instances.flatMap((inst) => instanceFrames(inst));
  // A scout saved into the axial series would break the stack; keep it only if it is all there is.
  if (frames.some((f) => !f.localizer)) frames = frames.filter((f) => !f.localizer);
  const formats = new Map(instances.map((inst) => [inst, pixelFormat(inst)]));
  const grid = stackGeometry(frames.map((f) => {
    const { rows, columns } = formats.get(f.instance)!;
    return { ...f, rows, columns };
  }));
  const ordered = grid.order.map((i) => frames[i]);
  const decoded: DecodedFrame[] = [];
  for (const f of ordered) decoded.push(await decodeFrame(f, formats.get(f.instance)!));
  const first = ordered[0].instance.dataset;
  const modality = text(first, "Modality");
  const volume = {
    shape: grid.shape,
    spacingMm: grid.spacingMm,
    affine: grid.affine,
    data: frameValues(decoded, modality),
  };
  checkVolume(volume, "DICOM series");
  const seriesNumber = num(first, "SeriesNumber");
  return {
    volume,
    studyInstanceUid: text(first, "StudyInstanceUID"),
    seriesInstanceUid: text(first, "SeriesInstanceUID"),
    frameOfReferenceUid: text(first, "FrameOfReferenceUID"),
    modality,
    seriesDescription: text(first, "SeriesDescription"),
    ...(seriesNumber !== undefined ? { seriesNumber } : {}),
    slices: ordered.map((f) => f.source),
    orientation: grid.orientation,
    positions: grid.positions,
    pixelSpacing: grid.pixelSpacing,
    patientStudy: patientStudyModules(ordered[0].instance),
  };
}

async function decodeFrame(
  frame: ImageFrame,
  format: ReturnType<typeof pixelFormat>,
): Promise<DecodedFrame> {
  const { instance } = frame;
  const syntax = transferSyntax(instance.transferSyntaxUid, instance.name);
  const count = num(instance.dataset, "NumberOfFrames") ?? 1;
  const words = await frameWords(instance, frame.frameIndex, count, format, syntax, frame.label);
  return { words, format, slope: frame.slope, intercept: frame.intercept };
}

/**
 * Attributes of the Patient, Clinical Trial Subject, General Study, Patient Study and Clinical
 * Trial Study modules (and the character set their text is in), which a Segmentation copies.
 */
const PATIENT_STUDY_KEYWORDS = [
  "SpecificCharacterSet",
  // Patient
  "PatientName",
  "PatientID",
  "IssuerOfPatientID",
  "PatientBirthDate",
  "PatientBirthTime",
  "PatientSex",
  "OtherPatientIDsSequence",
  "PatientComments",
  "PatientIdentityRemoved",
  "DeidentificationMethod",
  "DeidentificationMethodCodeSequence",
  // Clinical Trial Subject
  "ClinicalTrialSponsorName",
  "ClinicalTrialProtocolID",
  "ClinicalTrialProtocolName",
  "ClinicalTrialSiteID",
  "ClinicalTrialSiteName",
  "ClinicalTrialSubjectID",
  "ClinicalTrialSubjectReadingID",
  // General Study
  "StudyInstanceUID",
  "StudyDate",
  "StudyTime",
  "ReferringPhysicianName",
  "StudyID",
  "AccessionNumber",
  "IssuerOfAccessionNumberSequence",
  "StudyDescription",
  "PhysiciansOfRecord",
  "NameOfPhysiciansReadingStudy",
  "ProcedureCodeSequence",
  // Patient Study
  "AdmittingDiagnosesDescription",
  "PatientAge",
  "PatientSize",
  "PatientWeight",
  "Occupation",
  "AdditionalPatientHistory",
  // Clinical Trial Study
  "ClinicalTrialTimePointID",
  "ClinicalTrialTimePointDescription",
];

function patientStudyModules(instance: DicomInstance): PatientStudyModules {
  const out: PatientStudyModules = {};
  for (const k of PATIENT_STUDY_KEYWORDS) {
    const v = instance.dataset[k];
    // As dcmjs gives them (PN values carry dcmjs helpers a clone would drop).
    if (v !== undefined) out[k] = v;
  }
  return out;
}
