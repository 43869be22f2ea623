/**
 * Writes a label map (or per-class probabilities) on a source series' grid as a DICOM
 * Segmentation (SOP Class 1.2.840.10008.5.1.4.1.1.66.4, PS3.3 A.51), Part 10, explicit VR
 * little endian, that references the source instances so a PACS and a viewer overlay it on
 * the images it came from.
 *
 * What it writes:
 * - One segment per foreground class (class 0, the background, is no segment), numbered like
 *   the classes: segment k is class k, so a reader maps segments back to classes directly.
 * - One frame per (segment, plane) that holds a voxel of the segment, ordered by segment, then
 *   plane; frames without a voxel are left out, as most writers do. A segment with no voxel
 *   anywhere still gets one empty frame on the first plane, so every segment in
 *   SegmentSequence is referenced by a frame (some viewers drop unreferenced segments, and a
 *   fully empty result is still a valid object with one frame — the standard needs ≥ 1).
 * - BINARY: 1 bit per pixel, frames packed back to back with no padding between them (a frame
 *   may start mid-byte), first pixel in the least significant bit (PS3.5 §8.1.1).
 *   FRACTIONAL (PROBABILITY): 8 bits per pixel, 0…255 for probability 0…1.
 * - Geometry: Rows × Columns = the source's height × width (volume x = column, y = row); the
 *   shared PlaneOrientation and PixelMeasures (PixelSpacing as the source's, SliceThickness and
 *   SpacingBetweenSlices = the series' z spacing); per frame the source plane's
 *   ImagePositionPatient and a DerivationImageSequence naming that plane's SOP instance (and
 *   frame). FrameOfReferenceUID, the Patient and Study modules are the source's.
 */

import dcmjs from "dcmjs";
import type { DicomSeries, SegmentMeaning } from "./types.ts";
import { newUid } from "./uid.ts";

/** DICOM Segmentation Storage. */
export const SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4";
const EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1";
/** voxseg's implementation class UID (a fixed UUID-derived UID, PS3.5 §B.2). */
const IMPLEMENTATION_CLASS_UID = "2.25.153870466359187302434907016426834178337";

/** Who made the segmentation and how: the model and the program. */
export interface SegmentationOptions {
  /** The meaning of each foreground class: entry i describes class (and segment) i + 1. */
  segments: SegmentMeaning[];
  /** The model: SegmentAlgorithmName and the algorithm identification's name (LO, ≤ 64). */
  algorithmName: string;
  /** The model's version (AlgorithmVersion, LO ≤ 64), e.g. a checkpoint's hash or run id. */
  algorithmVersion: string;
  /** ManufacturerModelName; default "voxseg". */
  manufacturerModelName?: string;
  /** SoftwareVersions; default `algorithmVersion`. */
  softwareVersions?: string;
  /** DeviceSerialNumber (required by Enhanced General Equipment); default "0". */
  deviceSerialNumber?: string;
  /** SeriesDescription; default "voxseg segmentation". */
  seriesDescription?: string;
  /** SeriesNumber; default 300 (past the numbers scanners use for acquired series). */
  seriesNumber?: number;
  /** ContentLabel (CS: upper case, digits, space, underscore, ≤ 16); default "VOXSEG". */
  contentLabel?: string;
  /** ContentDescription; default none. */
  contentDescription?: string;
  /** RecommendedDisplayCIELabValue from sRGB 0…255 per segment (entry i = segment i + 1). */
  colors?: ([number, number, number] | undefined)[];
  /** When the content was created (ContentDate/Time, SeriesDate/Time); default now. */
  createdAt?: Date;
}

/**
 * Per-class probabilities in voxseg's tensor layout: channel-first `C, D, H, W`, x fastest,
 * channel 0 = background (not written), channel k = class k. float32 in 0…1, or uint8 already
 * scaled to 0…255.
 */
export interface ClassProbabilities {
  data: Float32Array | Uint8Array;
  /** C, including the background. */
  classes: number;
}

/**
 * A binary DICOM Segmentation of `labels` (one byte per voxel, class index, on the source's
 * grid in volume order: x fastest, z in the series' slice order), as Part 10 bytes.
 *
 * @example
 * const bytes = encodeSegmentation(labels, series, {
 *   segments: segmentMeanings(["background", "lung", "infection"]),
 *   algorithmName: "voxseg-unet", algorithmVersion: "run-2026-12-03",
 * });
 */
export function encodeSegmentation(
  labels: Uint8Array,
  source: DicomSeries,
  options: SegmentationOptions,
): Uint8Array {
  const grid = checkGrid(source);
  const count = options.segments.length;
  checkOptions(options);
  if (labels.length !== grid.voxels) {
    throw new Error(
      `label map has ${labels.length} voxels, the source series ${grid.voxels} ` +
        `(${source.volume.shape.join("×")}); predict on the series' own grid`,
    );
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] > count) {
      throw new Error(
        `label ${labels[i]} at voxel ${i} has no segment: ${count} foreground class(es) were ` +
          `described; pass one SegmentMeaning per foreground class`,
      );
    }
  }
  const frames = selectFrames(grid, count, (s, z) => planeHas(labels, grid, z, (v) => v === s));
  const pixels = packBits(grid, frames, (s, i) => labels[i] === s);
  return writeSegmentation(source, grid, options, frames, pixels, "BINARY");
}

/**
 * A fractional (PROBABILITY, 8-bit) DICOM Segmentation of per-class probabilities on the
 * source's grid; one segment per foreground channel. Frames where a segment's probability is
 * 0 everywhere (after scaling to 0…255) are left out.
 */
export function encodeFractionalSegmentation(
  probabilities: ClassProbabilities,
  source: DicomSeries,
  options: SegmentationOptions,
): Uint8Array {
  const grid = checkGrid(source);
  checkOptions(options);
  const { data, classes } = probabilities;
  if (classes - 1 !== options.segments.length) {
    throw new Error(
      `probabilities have ${classes} channels (background included), but ` +
        `${options.segments.length} segment(s) were described; pass one per foreground class`,
    );
  }
  if (data.length !== classes * grid.voxels) {
    throw new Error(
      `probabilities hold ${data.length} values, expected ${classes} channels × ${grid.voxels} ` +
        `voxels (C, D, H, W on the source grid ${source.volume.shape.join("×")})`,
    );
  }
  // Scale once to bytes: 0…1 → 0…255, rounded, clamped (softmax output can overshoot by ulps).
  const scaled = data instanceof Uint8Array ? data : new Uint8Array(data.length);
  if (!(data instanceof Uint8Array)) {
    for (let i = 0; i < data.length; i++) {
      const p = data[i];
      if (Number.isNaN(p)) throw new Error(`probability at index ${i} is NaN`);
      scaled[i] = Math.round(Math.min(1, Math.max(0, p)) * 255);
    }
  }
  const value = (s: number, i: number) => scaled[s * grid.voxels + i];
  const frames = selectFrames(grid, options.segments.length, (s, z) => {
    const offset = s * grid.voxels;
    return planeHas(scaled.subarray(offset, offset + grid.voxels), grid, z, (v) => v > 0);
  });
  const pixels = new Uint8Array(padEven(frames.length * grid.plane));
  frames.forEach((f, n) => {
    for (let i = 0; i < grid.plane; i++) {
      pixels[n * grid.plane + i] = value(f.segment, f.z * grid.plane + i);
    }
  });
  return writeSegmentation(source, grid, options, frames, pixels, "FRACTIONAL");
}

/** The source grid's sizes. */
interface Grid {
  depth: number;
  rows: number;
  columns: number;
  plane: number;
  voxels: number;
}

/** One frame: a segment (1-based) on a plane (0-based z). */
interface Frame {
  segment: number;
  z: number;
}

function checkGrid(source: DicomSeries): Grid {
  const [depth, rows, columns] = source.volume.shape;
  if (source.slices.length !== depth || source.positions.length !== depth) {
    throw new Error(
      `the source series has ${depth} planes but ${source.slices.length} source images and ` +
        `${source.positions.length} positions; it must have one of each per plane`,
    );
  }
  return { depth, rows, columns, plane: rows * columns, voxels: depth * rows * columns };
}

function checkOptions(options: SegmentationOptions): void {
  if (options.segments.length === 0) {
    throw new Error("no segments: pass one SegmentMeaning per foreground class");
  }
  if (options.segments.length > 255) {
    throw new Error(
      `${options.segments.length} segments; voxseg's label maps (uint8) hold at most 255 classes`,
    );
  }
  options.segments.forEach((m, i) => checkLongString(`segments[${i}].label`, m.label));
  const label = options.contentLabel ?? "VOXSEG";
  if (!/^[A-Z0-9_ ]{1,16}$/.test(label)) {
    throw new Error(
      `contentLabel "${label}" is not a DICOM code string: use 1–16 upper-case letters, ` +
        `digits, spaces or underscores`,
    );
  }
  checkLongString("algorithmName", options.algorithmName);
  checkLongString("algorithmVersion", options.algorithmVersion);
  for (const key of ["manufacturerModelName", "softwareVersions", "seriesDescription"] as const) {
    const value = options[key];
    if (value !== undefined) checkLongString(key, value);
  }
}

/** A DICOM LO value: 1–64 characters, no backslash (the value separator) or line break. */
function checkLongString(what: string, s: string): void {
  if (s.trim() === "" || s.length > 64 || /[\\\r\n]/.test(s)) {
    throw new Error(`${what} must be 1–64 characters without backslashes or line breaks`);
  }
}

function planeHas(
  values: Uint8Array,
  grid: Grid,
  z: number,
  hit: (v: number) => boolean,
): boolean {
  const end = (z + 1) * grid.plane;
  for (let i = z * grid.plane; i < end; i++) if (hit(values[i])) return true;
  return false;
}

/**
 * The frames to write, by segment then plane: every plane where the segment has a voxel, or
 * the first plane alone when it has none (see the module comment).
 */
function selectFrames(
  grid: Grid,
  segments: number,
  has: (segment: number, z: number) => boolean,
): Frame[] {
  const frames: Frame[] = [];
  for (let s = 1; s <= segments; s++) {
    const before = frames.length;
    for (let z = 0; z < grid.depth; z++) if (has(s, z)) frames.push({ segment: s, z });
    if (frames.length === before) frames.push({ segment: s, z: 0 });
  }
  return frames;
}

/** 1-bit frames packed back to back, LSB first; the total padded to an even byte count. */
function packBits(grid: Grid, frames: Frame[], on: (s: number, i: number) => boolean): Uint8Array {
  const bits = new Uint8Array(padEven(Math.ceil((frames.length * grid.plane) / 8)));
  frames.forEach((f, n) => {
    const base = n * grid.plane;
    const voxel0 = f.z * grid.plane;
    for (let i = 0; i < grid.plane; i++) {
      if (on(f.segment, voxel0 + i)) {
        const bit = base + i;
        bits[bit >> 3] |= 1 << (bit & 7);
      }
    }
  });
  return bits;
}

function padEven(n: number): number {
  return n + (n & 1);
}

type Item = Record<string, unknown>;

function code(c: { value: string; scheme: string; meaning: string }): Item {
  return { CodeValue: c.value, CodingSchemeDesignator: c.scheme, CodeMeaning: c.meaning };
}

/** A decimal string (DS) of at most 16 characters, as precise as fits. */
function ds(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} as a DICOM decimal string`);
  const v = Math.abs(x) < 1e-10 ? 0 : x;
  for (let p = 15; p > 0; p--) {
    const s = String(Number(v.toPrecision(p)));
    if (s.length <= 16) return s;
  }
  return v.toExponential(6);
}

function dicomDate(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll("-", "");
}

function dicomTime(d: Date): string {
  return d.toISOString().slice(11, 19).replaceAll(":", "");
}

/** sRGB 0…255 → DICOM's scaled CIELab (L 0…100, a/b −128…127 mapped to 0…65535), D65. */
export function srgbToDicomLab(rgb: [number, number, number]): [number, number, number] {
  const lin = rgb.map((c) => {
    const v = Math.min(255, Math.max(0, c)) / 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  // sRGB → XYZ (D65), each row divided by the white point's so white maps to exactly 1.
  const x = (0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]) / 0.95047;
  const y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.072175 * lin[2];
  const z = (0.0193339 * lin[0] + 0.119192 * lin[1] + 0.9503041 * lin[2]) / 1.08883;
  const f = (t: number) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 * t + 16) / 116);
  const l = 116 * f(y) - 16;
  const a = 500 * (f(x) - f(y));
  const b = 200 * (f(y) - f(z));
  const scale = (v: number, lo: number, hi: number) =>
    Math.round((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo) * 65535);
  return [scale(l, 0, 100), scale(a, -128, 127), scale(b, -128, 127)];
}

/** Type 2 attributes of the Patient and General Study modules: present, empty if unknown. */
const PATIENT_STUDY_TYPE2 = [
  "PatientName",
  "PatientID",
  "PatientBirthDate",
  "PatientSex",
  "StudyDate",
  "StudyTime",
  "ReferringPhysicianName",
  "StudyID",
  "AccessionNumber",
];

/** The Patient and Study modules from the source, and only attributes dcmjs can write. */
function patientStudy(source: DicomSeries): Item {
  const names = dcmjs.data.DicomMetaDictionary.nameMap as Record<string, unknown>;
  const out: Item = {};
  for (const k of PATIENT_STUDY_TYPE2) out[k] = null;
  // Unknown keywords are skipped silently: dcmjs would log the value, which identifies a patient.
  for (const [k, v] of Object.entries(source.patientStudy)) {
    if (k in names && v !== undefined) out[k] = v;
  }
  out.StudyInstanceUID = source.studyInstanceUid;
  return out;
}

function writeSegmentation(
  source: DicomSeries,
  grid: Grid,
  options: SegmentationOptions,
  frames: Frame[],
  pixels: Uint8Array,
  type: "BINARY" | "FRACTIONAL",
): Uint8Array {
  const created = options.createdAt ?? new Date();
  const sopInstanceUid = newUid();
  const dimensionUid = newUid();
  const [rowSpacing, columnSpacing] = source.pixelSpacing;
  const sliceSpacing = source.volume.spacingMm[0];
  const bits = type === "BINARY" ? 1 : 8;
  const instances = new Map(source.slices.map((s) => [s.sopInstanceUid, s.sopClassUid]));

  const segmentItems = options.segments.map((m, i) => {
    const item: Item = {
      SegmentNumber: i + 1,
      SegmentLabel: m.label,
      SegmentedPropertyCategoryCodeSequence: [code(m.category)],
      SegmentedPropertyTypeCodeSequence: [code(m.type)],
      SegmentAlgorithmType: "AUTOMATIC",
      SegmentAlgorithmName: options.algorithmName,
      SegmentationAlgorithmIdentificationSequence: [{
        AlgorithmFamilyCodeSequence: [
          code({ value: "123110", scheme: "DCM", meaning: "Artificial Intelligence" }),
        ],
        AlgorithmName: options.algorithmName,
        AlgorithmVersion: options.algorithmVersion,
      }],
    };
    const color = options.colors?.[i];
    if (color) item.RecommendedDisplayCIELabValue = srgbToDicomLab(color);
    return item;
  });

  const perFrame = frames.map((f) => {
    const image = source.slices[f.z];
    const sourceItem: Item = {
      ReferencedSOPClassUID: image.sopClassUid,
      ReferencedSOPInstanceUID: image.sopInstanceUid,
      PurposeOfReferenceCodeSequence: [
        code({
          value: "121322",
          scheme: "DCM",
          meaning: "Source image for image processing operation",
        }),
      ],
    };
    if (image.frame !== undefined) sourceItem.ReferencedFrameNumber = image.frame;
    return {
      DerivationImageSequence: [{
        DerivationCodeSequence: [code({ value: "113076", scheme: "DCM", meaning: "Segmentation" })],
        SourceImageSequence: [sourceItem],
      }],
      FrameContentSequence: [{ DimensionIndexValues: [f.segment, f.z + 1] }],
      PlanePositionSequence: [{ ImagePositionPatient: source.positions[f.z].map(ds) }],
      SegmentIdentificationSequence: [{ ReferencedSegmentNumber: f.segment }],
    };
  });

  const dataset: Item = {
    _vrMap: { PixelData: "OB" },
    SpecificCharacterSet: "ISO_IR 192",
    ImageType: ["DERIVED", "PRIMARY"],
    InstanceCreationDate: dicomDate(created),
    InstanceCreationTime: dicomTime(created),
    SOPClassUID: SEGMENTATION_SOP_CLASS_UID,
    SOPInstanceUID: sopInstanceUid,
    SeriesDate: dicomDate(created),
    SeriesTime: dicomTime(created),
    ContentDate: dicomDate(created),
    ContentTime: dicomTime(created),
    Modality: "SEG",
    Manufacturer: "voxseg",
    ManufacturerModelName: options.manufacturerModelName ?? "voxseg",
    DeviceSerialNumber: options.deviceSerialNumber ?? "0",
    SoftwareVersions: options.softwareVersions ?? options.algorithmVersion,
    SeriesDescription: options.seriesDescription ?? "voxseg segmentation",
    ...patientStudy(source),
    SeriesInstanceUID: newUid(),
    SeriesNumber: options.seriesNumber ?? 300,
    InstanceNumber: 1,
    FrameOfReferenceUID: source.frameOfReferenceUid,
    PositionReferenceIndicator: null,
    ReferencedSeriesSequence: [{
      SeriesInstanceUID: source.seriesInstanceUid,
      ReferencedInstanceSequence: [...instances].map(([uid, cls]) => ({
        ReferencedSOPClassUID: cls,
        ReferencedSOPInstanceUID: uid,
      })),
    }],
    DimensionOrganizationSequence: [{ DimensionOrganizationUID: dimensionUid }],
    DimensionIndexSequence: [
      {
        DimensionOrganizationUID: dimensionUid,
        DimensionIndexPointer: 0x0062000b, // ReferencedSegmentNumber
        FunctionalGroupPointer: 0x0062000a, // SegmentIdentificationSequence
        DimensionDescriptionLabel: "ReferencedSegmentNumber",
      },
      {
        DimensionOrganizationUID: dimensionUid,
        DimensionIndexPointer: 0x00200032, // ImagePositionPatient
        FunctionalGroupPointer: 0x00209113, // PlanePositionSequence
        DimensionDescriptionLabel: "ImagePositionPatient",
      },
    ],
    SamplesPerPixel: 1,
    PhotometricInterpretation: "MONOCHROME2",
    NumberOfFrames: frames.length,
    Rows: grid.rows,
    Columns: grid.columns,
    BitsAllocated: bits,
    BitsStored: bits,
    HighBit: bits - 1,
    PixelRepresentation: 0,
    LossyImageCompression: "00",
    SegmentationType: type,
    ...(type === "FRACTIONAL"
      ? { SegmentationFractionalType: "PROBABILITY", MaximumFractionalValue: 255 }
      : {}),
    ContentLabel: options.contentLabel ?? "VOXSEG",
    ContentDescription: options.contentDescription ?? null,
    ContentCreatorName: null,
    SegmentSequence: segmentItems,
    SharedFunctionalGroupsSequence: [{
      PlaneOrientationSequence: [{ ImageOrientationPatient: source.orientation.map(ds) }],
      PixelMeasuresSequence: [{
        PixelSpacing: [ds(rowSpacing), ds(columnSpacing)],
        SliceThickness: ds(sliceSpacing),
        SpacingBetweenSlices: ds(sliceSpacing),
      }],
    }],
    PerFrameFunctionalGroupsSequence: perFrame,
    PixelData: pixels.buffer.slice(pixels.byteOffset, pixels.byteOffset + pixels.byteLength),
  };

  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: SEGMENTATION_SOP_CLASS_UID,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: "VOXSEG",
  };
  const dictionary = dcmjs.data.DicomMetaDictionary;
  const dict = new dcmjs.data.DicomDict(dictionary.denaturalizeDataset(meta));
  dict.dict = dictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}
