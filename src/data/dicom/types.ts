/**
 * The shapes the DICOM parts of voxseg hand each other: a series read into a volume (with what
 * a Segmentation must reference), the patient and study attributes that stay in memory only,
 * and the coded meaning of a segment.
 *
 * A series' voxels follow {@link Volume}'s conventions: x = column, y = row, z = slice in the
 * order of position along the slice normal (ImagePositionPatient · normal, increasing), and the
 * affine maps (x, y, z) to NIfTI world coordinates (RAS+ mm: DICOM's LPS with the first two
 * axes negated).
 */

import type { CodedConcept } from "../../base/class_codes.ts";
import type { Volume } from "../volume.ts";

export type { CodedConcept };

/** One source image a voxel plane came from: an instance, and a frame of it when multi-frame. */
export interface SourceImage {
  /** SOPClassUID (0008,0016). */
  sopClassUid: string;
  /** SOPInstanceUID (0008,0018). */
  sopInstanceUid: string;
  /** 1-based frame number within a multi-frame instance; absent for single-frame images. */
  frame?: number;
}

/**
 * Attributes of the Patient, General Study and Patient Study modules, as dcmjs names them in a
 * naturalized dataset (`PatientName`, `PatientID`, `StudyInstanceUID`, `StudyDate`, …). They
 * identify a patient: a Segmentation copies them, as the standard requires, and nothing else
 * may — not Zarr attributes, `dataset.json`, logs or error messages.
 */
export type PatientStudyModules = Record<string, unknown>;

/** A DICOM image series read into a volume, with what a result must reference. */
export interface DicomSeries {
  /**
   * The voxels: HU (RescaleSlope/Intercept applied) as int16 when every value is an integer in
   * int16's range, float32 otherwise.
   */
  volume: Volume;
  /** StudyInstanceUID (0020,000D). */
  studyInstanceUid: string;
  /** SeriesInstanceUID (0020,000E). */
  seriesInstanceUid: string;
  /** FrameOfReferenceUID (0020,0052); a Segmentation shares it. */
  frameOfReferenceUid: string;
  /** Modality (0008,0060), e.g. "CT", "MR". */
  modality: string;
  /** SeriesDescription (0008,103E), or "" — not identifying by itself, but never logged. */
  seriesDescription: string;
  /** SeriesNumber (0020,0011), when present. */
  seriesNumber?: number;
  /** The source image of each z plane, `volume.shape[0]` entries in z order. */
  slices: SourceImage[];
  /** ImageOrientationPatient (0020,0037) of the series: row then column direction cosines, LPS. */
  orientation: [number, number, number, number, number, number];
  /** ImagePositionPatient (0020,0032) of each z plane, LPS mm, in z order. */
  positions: [number, number, number][];
  /** PixelSpacing (0028,0030): between rows, between columns (mm). */
  pixelSpacing: [number, number];
  /** Patient and study attributes for the Segmentation; in memory only. */
  patientStudy: PatientStudyModules;
}

/** What one segment (one foreground class) is, as a Segmentation states it. */
export interface SegmentMeaning {
  /** SegmentLabel (0062,0005): the class name. */
  label: string;
  /** SegmentedPropertyCategoryCodeSequence, e.g. SCT 123037004 "Anatomical Structure". */
  category: CodedConcept;
  /** SegmentedPropertyTypeCodeSequence, e.g. SCT 39607008 "Lung". */
  type: CodedConcept;
}
