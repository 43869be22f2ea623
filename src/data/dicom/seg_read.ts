/**
 * Reads a DICOM Segmentation (binary or fractional, native transfer syntax) back into a label
 * map and the meaning of its segments: what `encodeSegmentation` (seg.ts) writes, and what
 * other writers that follow the standard write (frames in any order, empty frames omitted or
 * not, segments numbered 1…N).
 *
 * With the source series, each frame lands on the plane of the source image it derives from
 * (DerivationImageSequence → ReferencedSOPInstanceUID and frame); a frame without a usable
 * reference lands on the source plane at its ImagePositionPatient (it must lie on one, within a
 * quarter of the slice spacing along the normal and 0.01 mm in plane). Without the source, the
 * grid is the frames' own distinct positions, ordered along the slice normal.
 *
 * A voxel's label is the number of the segment that covers it (segment k = class k, as
 * voxseg writes them); where segments overlap, the highest segment number wins. A fractional
 * segment covers a voxel where its value is above half of MaximumFractionalValue.
 */

import dcmjs from "dcmjs";
import { DicomInputError } from "./errors.ts";
import type { CodedConcept, DicomSeries, SegmentMeaning } from "./types.ts";
import { SEGMENTATION_SOP_CLASS_UID } from "./seg.ts";

/** What a Segmentation holds, on a grid of planes. */
export interface DecodedSegmentation {
  /** Segment k's meaning is `segments[k - 1]`; k is the label value in `labels`. */
  segments: SegmentMeaning[];
  /** SegmentationType (0062,0001). */
  type: "BINARY" | "FRACTIONAL";
  /** Planes × Rows × Columns, x fastest: the source's volume order when a source was given. */
  shape: [number, number, number];
  /** Label per voxel (0 = no segment), `shape` in volume order. */
  labels: Uint8Array;
  /** ImagePositionPatient of each plane (LPS mm), in plane order. */
  positions: [number, number, number][];
  /** FrameOfReferenceUID (0020,0052). */
  frameOfReferenceUid: string;
}

type Item = Record<string, unknown>;

const NATIVE_SYNTAXES = new Set([
  "1.2.840.10008.1.2", // implicit VR little endian
  "1.2.840.10008.1.2.1", // explicit VR little endian
  "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian (dcmjs inflates it)
  "1.2.840.10008.1.2.2", // explicit VR big endian
]);

/**
 * Decodes a Part 10 DICOM Segmentation. With `source`, the labels are on the source series'
 * grid (its `volume.shape`); without, on the frames' own planes. Throws
 * {@link DicomInputError} naming what is wrong (not a SEG, an unsupported transfer syntax, a
 * frame off the source grid, a different frame of reference).
 */
export function decodeSegmentation(bytes: Uint8Array, source?: DicomSeries): DecodedSegmentation {
  const { ds, syntax } = parse(bytes);
  if (first(ds.SOPClassUID) !== SEGMENTATION_SOP_CLASS_UID) {
    throw new DicomInputError(
      `not a DICOM Segmentation (SOPClassUID ${first(ds.SOPClassUID) || "missing"}, expected ` +
        `${SEGMENTATION_SOP_CLASS_UID})`,
    );
  }
  if (!NATIVE_SYNTAXES.has(syntax)) {
    throw new DicomInputError(
      `the Segmentation uses transfer syntax ${syntax}; voxseg reads uncompressed ones only — ` +
        `convert it first (e.g. dcmconv +te)`,
    );
  }
  const type = first(ds.SegmentationType);
  if (type !== "BINARY" && type !== "FRACTIONAL") {
    throw new DicomInputError(`SegmentationType "${type}" is neither BINARY nor FRACTIONAL`);
  }
  const rows = Number(first(ds.Rows));
  const columns = Number(first(ds.Columns));
  const count = Number(first(ds.NumberOfFrames) ?? 1);
  const frameOfReferenceUid = String(first(ds.FrameOfReferenceUID) ?? "");
  const segments = items(ds.SegmentSequence).map(segmentOf);
  const numbers = items(ds.SegmentSequence).map((s) => Number(first(s.SegmentNumber)));
  if (segments.length > 255 || numbers.some((n, i) => n !== i + 1)) {
    throw new DicomInputError(
      `segments are numbered ${numbers.join(", ")}; voxseg reads 1…N (N ≤ 255) as class labels`,
    );
  }
  if (source) checkSource(source, rows, columns, frameOfReferenceUid);

  const shared = items(ds.SharedFunctionalGroupsSequence)[0] ?? {};
  const perFrame = items(ds.PerFrameFunctionalGroupsSequence);
  if (perFrame.length !== count) {
    throw new DicomInputError(
      `NumberOfFrames is ${count} but PerFrameFunctionalGroupsSequence has ${perFrame.length} items`,
    );
  }
  const orientation = numbers6(group(shared, perFrame[0], "PlaneOrientationSequence"));
  const frames = perFrame.map((f) => frameOf(shared, f));
  const grid = source
    ? { positions: source.positions, planeOf: sourcePlanes(source, frames) }
    : ownPlanes(orientation, frames);

  const plane = rows * columns;
  const labels = new Uint8Array(grid.positions.length * plane);
  const pixels = pixelBytes(ds.PixelData);
  const max = Number(first(ds.MaximumFractionalValue) ?? 255);
  const needed = type === "BINARY" ? Math.ceil((count * plane) / 8) : count * plane;
  if (pixels.length < needed) {
    throw new DicomInputError(
      `PixelData has ${pixels.length} bytes, ${count} frames of ${rows}×${columns} need ${needed}`,
    );
  }
  frames.forEach((f, n) => {
    const z = grid.planeOf[n];
    for (let i = 0; i < plane; i++) {
      const on = type === "BINARY"
        ? (pixels[(n * plane + i) >> 3] >> ((n * plane + i) & 7)) & 1
        : pixels[n * plane + i] * 2 > max;
      const at = z * plane + i;
      // The highest segment number wins where segments overlap.
      if (on && f.segment > labels[at]) labels[at] = f.segment;
    }
  });
  return {
    segments,
    type,
    shape: [grid.positions.length, rows, columns],
    labels,
    positions: grid.positions.map((p) => [...p] as [number, number, number]),
    frameOfReferenceUid,
  };
}

function parse(bytes: Uint8Array): { ds: Item; syntax: string } {
  const buffer = bytes.slice().buffer;
  let message: { meta: Item; dict: Item };
  try {
    message = dcmjs.data.DicomMessage.readFile(buffer);
  } catch (e) {
    const why = e instanceof Error ? e.message.slice(0, 160) : String(e);
    throw new DicomInputError(`not a readable DICOM file (${why}) — is it truncated?`);
  }
  const syntax = (message.meta["00020010"] as { Value?: string[] } | undefined)?.Value?.[0];
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(message.dict) as Item;
  return { ds, syntax: (syntax ?? "").trim() };
}

/** One frame's segment, position and source reference. */
interface FrameInfo {
  segment: number;
  position: [number, number, number];
  sopInstanceUid?: string;
  frame?: number;
}

function frameOf(shared: Item, f: Item): FrameInfo {
  const segment = Number(first(
    group(shared, f, "SegmentIdentificationSequence")
      .ReferencedSegmentNumber,
  ));
  const p = (group(shared, f, "PlanePositionSequence").ImagePositionPatient ?? []) as unknown[];
  if (p.length !== 3) {
    throw new DicomInputError("a frame has no PlanePositionSequence ImagePositionPatient");
  }
  const derivation = items(f.DerivationImageSequence)[0];
  const image = derivation ? items(derivation.SourceImageSequence)[0] : undefined;
  const frame = image ? first(image.ReferencedFrameNumber) : undefined;
  return {
    segment,
    position: p.map(Number) as [number, number, number],
    sopInstanceUid: image ? String(first(image.ReferencedSOPInstanceUID) ?? "") : undefined,
    frame: frame === undefined || frame === null ? undefined : Number(frame),
  };
}

/** A functional group's single item, per frame if present there, else shared. */
function group(shared: Item, frame: Item | undefined, name: string): Item {
  const item = items(frame?.[name])[0] ?? items(shared[name])[0];
  if (!item) throw new DicomInputError(`the Segmentation has no ${name}`);
  return item;
}

function checkSource(source: DicomSeries, rows: number, columns: number, frameOfRef: string) {
  const [, h, w] = source.volume.shape;
  if (rows !== h || columns !== w) {
    throw new DicomInputError(
      `the Segmentation's frames are ${rows}×${columns}, the source series' images ${h}×${w}; ` +
        `is it a Segmentation of this series?`,
    );
  }
  if (frameOfRef !== source.frameOfReferenceUid) {
    throw new DicomInputError(
      "the Segmentation's FrameOfReferenceUID differs from the source series'; " +
        "is it a Segmentation of this series?",
    );
  }
}

/** Plane index in the source of each frame: by referenced instance, else by position. */
function sourcePlanes(source: DicomSeries, frames: FrameInfo[]): number[] {
  const byInstance = new Map(
    source.slices.map((s, z) => [`${s.sopInstanceUid}/${s.frame ?? 1}`, z]),
  );
  const o = source.orientation;
  const normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
  const tolerance = Math.max(source.volume.spacingMm[0] / 4, 1e-3);
  return frames.map((f, n) => {
    const z = byInstance.get(`${f.sopInstanceUid}/${f.frame ?? 1}`);
    if (z !== undefined) return z;
    const along = dot(f.position, normal);
    let best = -1;
    let bestDistance = Infinity;
    source.positions.forEach((p, i) => {
      const d = Math.abs(dot(p, normal) - along);
      if (d < bestDistance) [best, bestDistance] = [i, d];
    });
    // The offset from the nearest plane's origin, less its component along the normal.
    const offset = [0, 1, 2].map((k) => f.position[k] - (source.positions[best]?.[k] ?? NaN));
    const normalPart = dot(offset, normal);
    const inPlane = Math.hypot(...offset.map((v, k) => v - normalPart * normal[k]));
    if (!(bestDistance <= tolerance && inPlane <= 0.01)) {
      throw new DicomInputError(
        `frame ${n + 1} references no source image and lies on no plane of the source series ` +
          `(${bestDistance.toFixed(3)} mm along the normal, ${inPlane.toFixed(3)} mm in plane ` +
          `from the nearest); resample the Segmentation onto the series first`,
      );
    }
    return best;
  });
}

/** The frames' distinct positions along the normal, in order, and each frame's plane. */
function ownPlanes(orientation: number[], frames: FrameInfo[]) {
  const normal = cross(
    [orientation[0], orientation[1], orientation[2]],
    [orientation[3], orientation[4], orientation[5]],
  );
  const sorted = frames.map((f) => f.position).sort((a, b) => dot(a, normal) - dot(b, normal));
  const positions: [number, number, number][] = [];
  for (const p of sorted) {
    const last = positions.at(-1);
    if (!last || Math.abs(dot(p, normal) - dot(last, normal)) > 1e-3) positions.push(p);
  }
  const planeOf = frames.map((f) =>
    positions.findIndex((p) => Math.abs(dot(p, normal) - dot(f.position, normal)) <= 1e-3)
  );
  return { positions, planeOf };
}

function segmentOf(s: Item): SegmentMeaning {
  return {
    label: String(first(s.SegmentLabel) ?? ""),
    category: conceptOf(items(s.SegmentedPropertyCategoryCodeSequence)[0], "category"),
    type: conceptOf(items(s.SegmentedPropertyTypeCodeSequence)[0], "type"),
  };
}

function conceptOf(item: Item | undefined, what: string): CodedConcept {
  if (!item) throw new DicomInputError(`a segment has no SegmentedProperty ${what} code`);
  return {
    value: String(first(item.CodeValue) ?? first(item.LongCodeValue) ?? first(item.URNCodeValue)),
    scheme: String(first(item.CodingSchemeDesignator) ?? ""),
    meaning: String(first(item.CodeMeaning) ?? ""),
  };
}

function pixelBytes(value: unknown): Uint8Array {
  const buffer = (Array.isArray(value) ? value[0] : value) as ArrayBuffer | undefined;
  if (!(buffer instanceof ArrayBuffer)) throw new DicomInputError("the Segmentation has no pixels");
  return new Uint8Array(buffer);
}

function numbers6(item: Item): number[] {
  const v = (item.ImageOrientationPatient ?? []) as unknown[];
  if (v.length !== 6) throw new DicomInputError("ImageOrientationPatient needs 6 values");
  return v.map(Number);
}

/** dcmjs gives a sequence as an array of items (or nothing when empty). */
function items(value: unknown): Item[] {
  return Array.isArray(value) ? value as Item[] : [];
}

/** The first value of a naturalized attribute (dcmjs unwraps single values, not all). */
function first(value: unknown): unknown {
  return Array.isArray(value) ? value[0] : value;
}

function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

function dot(a: number[], b: number[]): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
