/**
 * The image frames of an instance, each with its own plane geometry and rescale. A classic
 * image (CT Image, MR Image, …) is one frame whose attributes sit at the top level. An enhanced
 * multi-frame image (Enhanced CT / MR / PET, Legacy Converted) keeps them in functional groups:
 * PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence and
 * PixelValueTransformationSequence, each in the frame's item of the Per-Frame Functional Groups
 * Sequence or, when the same for all frames, in the Shared Functional Groups Sequence
 * (PS3.3 C.7.6.16); per-frame wins.
 */

import { DicomInputError } from "./errors.ts";
import {
  type Dataset,
  type DicomInstance,
  item,
  items,
  num,
  nums,
  text,
  texts,
} from "./instance.ts";
import type { SourceImage } from "./types.ts";

export type Vec3 = [number, number, number];
export type Orientation = [number, number, number, number, number, number];

/** One 2D frame of a series, before its pixels are decoded. */
export interface ImageFrame {
  instance: DicomInstance;
  /** 0-based index of the frame within its instance. */
  frameIndex: number;
  /** For messages: the file name, with the frame number when multi-frame. */
  label: string;
  source: SourceImage;
  /** ImagePositionPatient, LPS mm; undefined when the frame has none. */
  position?: Vec3;
  /** ImageOrientationPatient (row cosines, column cosines). */
  orientation?: Orientation;
  /** PixelSpacing: between rows, between columns (mm). */
  pixelSpacing?: [number, number];
  /** SpacingBetweenSlices or SliceThickness: the slice step of a one-frame stack. */
  sliceStepHint?: number;
  slope: number;
  intercept: number;
  /** ImageType (or the frame's FrameType) says LOCALIZER: a scout, not part of the stack. */
  localizer: boolean;
}

/** Functional-group macros a frame's attribute may come from, for each attribute voxseg uses. */
const MACRO = {
  position: "PlanePositionSequence",
  orientation: "PlaneOrientationSequence",
  measures: "PixelMeasuresSequence",
  rescale: "PixelValueTransformationSequence",
} as const;

/** Frame types live in a modality-specific sequence of the functional groups. */
const FRAME_TYPE_SEQUENCES = [
  "CTImageFrameTypeSequence",
  "MRImageFrameTypeSequence",
  "PETFrameTypeSequence",
  "XAXRFFrameCharacteristicsSequence",
];

/** Every frame of an instance (one for a classic image). */
export function instanceFrames(instance: DicomInstance): ImageFrame[] {
  const ds = instance.dataset;
  const count = num(ds, "NumberOfFrames") ?? 1;
  if (!Number.isInteger(count) || count < 1) {
    throw new DicomInputError(`${instance.name}: NumberOfFrames is ${count}`);
  }
  const shared = item(ds, "SharedFunctionalGroupsSequence");
  const perFrame = items(ds, "PerFrameFunctionalGroupsSequence");
  const enhanced = shared !== undefined || perFrame.length > 0;
  if (enhanced && perFrame.length !== count) {
    throw new DicomInputError(
      `${instance.name}: ${count} frames but ${perFrame.length} per-frame functional group ` +
        "items; the file is inconsistent",
    );
  }
  const multiFrame = enhanced || count > 1;
  if (count > 1 && !enhanced) {
    throw new DicomInputError(
      `${instance.name}: a multi-frame image (${count} frames) without per-frame functional ` +
        "groups has no position for each frame; voxseg reads enhanced multi-frame images " +
        "(Enhanced CT/MR/PET, Legacy Converted) and single-frame series",
    );
  }
  const imageLocalizer = texts(ds, "ImageType").includes("LOCALIZER");
  const sopClassUid = text(ds, "SOPClassUID");
  const sopInstanceUid = text(ds, "SOPInstanceUID");
  const frames: ImageFrame[] = [];
  for (let f = 0; f < count; f++) {
    /** The first item of a functional-group macro: this frame's, else the shared one. */
    const macro = (keyword: string): Dataset | undefined =>
      enhanced ? item(perFrame[f], keyword) ?? item(shared, keyword) : ds;
    const measures = macro(MACRO.measures);
    const rescale = macro(MACRO.rescale) ?? ds;
    const frameType = FRAME_TYPE_SEQUENCES
      .map((s) => texts(macro(s) ?? {}, "FrameType"))
      .find((t) => t.length > 0);
    frames.push({
      instance,
      frameIndex: f,
      label: multiFrame ? `${instance.name} frame ${f + 1}` : instance.name,
      source: multiFrame ? { sopClassUid, sopInstanceUid, frame: f + 1 } : {
        sopClassUid,
        sopInstanceUid,
      },
      position: nums(macro(MACRO.position), "ImagePositionPatient", 3) as Vec3 | undefined,
      orientation: nums(macro(MACRO.orientation), "ImageOrientationPatient", 6) as
        | Orientation
        | undefined,
      pixelSpacing: nums(measures, "PixelSpacing", 2) as [number, number] | undefined,
      sliceStepHint: num(measures, "SpacingBetweenSlices") ?? num(measures, "SliceThickness"),
      slope: num(rescale, "RescaleSlope") ?? 1,
      intercept: num(rescale, "RescaleIntercept") ?? 0,
      localizer: frameType ? frameType.includes("LOCALIZER") : imageLocalizer,
    });
  }
  return frames;
}
