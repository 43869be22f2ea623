/**
 * The voxel grid of a stack of DICOM frames: slices ordered by position along the slice normal
 * (never by file name or InstanceNumber), the slice step measured from ImagePositionPatient
 * (never SliceThickness), and the affine to NIfTI world coordinates.
 *
 * DICOM places pixel (column c, row r) of a frame at
 *   ImagePositionPatient + c·PixelSpacing[1]·rowCosines + r·PixelSpacing[0]·columnCosines
 * in LPS mm; the slice normal is rowCosines × columnCosines. voxseg's voxel (i, j, k) is
 * (column, row, slice), so the affine's columns are the row direction times the column
 * spacing, the column direction times the row spacing, and the normal times the slice step;
 * RAS+ negates its first two rows.
 *
 * A stack voxseg cannot represent on a regular grid is refused with a message naming the
 * problem: frames of different orientation, pixel spacing or size; two frames at one position;
 * uneven steps (a missing slice); and a gantry tilt, where each slice is shifted in-plane
 * relative to the last (the slice step is not along the normal). Tilted stacks are refused,
 * not given a sheared affine, because the rest of voxseg (resampling, NIfTI qform, patch
 * sampling) assumes orthogonal voxel axes; dcm2niix corrects tilt by resampling.
 */

import { DicomInputError } from "./errors.ts";
import type { Orientation, Vec3 } from "./frames.ts";
import type { Shape3 } from "../volume.ts";

/** The geometry of one frame, as read from its attributes. */
export interface Plane {
  /** For messages: the file name (and frame). */
  label: string;
  position?: Vec3;
  orientation?: Orientation;
  pixelSpacing?: [number, number];
  rows: number;
  columns: number;
  /** SpacingBetweenSlices or SliceThickness, used only for a one-slice stack. */
  sliceStepHint?: number;
}

/** A regular voxel grid for the stack. */
export interface StackGeometry {
  /** Indices into the input planes, in slice (z) order: increasing position along the normal. */
  order: number[];
  /** ImagePositionPatient of each slice, z order. */
  positions: Vec3[];
  orientation: Orientation;
  pixelSpacing: [number, number];
  /** z, y, x (mm): slice step, row spacing, column spacing. */
  spacingMm: Shape3;
  /** 4×4 row-major, NIfTI RAS+ world from voxel (i = column, j = row, k = slice). */
  affine: number[];
  /** D, H, W. */
  shape: Shape3;
}

/** Direction cosines may differ in their last printed digits between frames of one stack. */
const ORIENTATION_TOLERANCE = 1e-4;
/** Relative difference of PixelSpacing accepted as equal. */
const SPACING_TOLERANCE = 1e-4;
/** Relative deviation of a slice step from the median step accepted as even (1 %). */
export const STEP_TOLERANCE = 0.01;
/**
 * In-plane drift of the stack (mm per pixel) accepted before calling it a gantry tilt: 1/20
 * of a pixel over the whole stack, far above the rounding of positions written with a few
 * decimals, far below a tilt of even 0.1° over a 20-slice stack.
 */
const TILT_TOLERANCE_PIXELS = 0.05;

const dot = (a: Vec3, b: Vec3) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: Vec3, b: Vec3): Vec3 => [
  a[1] * b[2] - a[2] * b[1],
  a[2] * b[0] - a[0] * b[2],
  a[0] * b[1] - a[1] * b[0],
];
const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const norm = (a: Vec3) => Math.hypot(a[0], a[1], a[2]);
const unit = (a: Vec3): Vec3 => {
  const n = norm(a);
  return [a[0] / n, a[1] / n, a[2] / n];
};
const fmt = (v: number) => String(+v.toFixed(3));

/** The voxel grid of a stack of planes, or a {@link DicomInputError} saying why there is none. */
export function stackGeometry(planes: readonly Plane[]): StackGeometry {
  const first = planes[0];
  for (const p of planes) checkSameFrame(first, p);
  const orientation = first.orientation!;
  const rowDir = unit(orientation.slice(0, 3) as Vec3);
  const colDir = unit(orientation.slice(3, 6) as Vec3);
  if (Math.abs(dot(rowDir, colDir)) > 1e-3) {
    throw new DicomInputError(
      `${first.label}: ImageOrientationPatient's row and column directions are not ` +
        "perpendicular; the orientation is corrupt",
    );
  }
  const normal = unit(cross(rowDir, colDir));
  const along = planes.map((p) => dot(p.position!, normal));
  const order = planes.map((_, i) => i).sort((a, b) => along[a] - along[b]);
  const positions = order.map((i) => planes[i].position!);
  const sliceStep = planes.length === 1 ? oneSliceStep(first) : checkSteps(planes, order, along);
  if (planes.length > 1) checkTilt(planes, order, normal, sliceStep);
  const [rowSpacing, colSpacing] = first.pixelSpacing!;
  const lps = [
    rowDir.map((v) => v * colSpacing),
    colDir.map((v) => v * rowSpacing),
    normal.map((v) => v * sliceStep),
  ];
  const origin = positions[0];
  const affine: number[] = [];
  for (let r = 0; r < 3; r++) {
    // LPS → RAS+: x and y change sign.
    const sign = r < 2 ? -1 : 1;
    affine.push(sign * lps[0][r], sign * lps[1][r], sign * lps[2][r], sign * origin[r]);
  }
  affine.push(0, 0, 0, 1);
  return {
    order,
    positions,
    orientation: [...orientation],
    pixelSpacing: [rowSpacing, colSpacing],
    spacingMm: [sliceStep, rowSpacing, colSpacing],
    affine: affine.map((v) => (Object.is(v, -0) ? 0 : v)),
    shape: [planes.length, first.rows, first.columns],
  };
}

/** Every frame needs a position, the first frame's orientation, pixel spacing and size. */
function checkSameFrame(first: Plane, p: Plane): void {
  const missing = ["position", "orientation", "pixelSpacing"].filter((k) =>
    p[k as keyof Plane] === undefined
  );
  if (missing.length > 0) {
    const names = { position: "ImagePositionPatient", orientation: "ImageOrientationPatient" };
    throw new DicomInputError(
      `${p.label}: no ${
        missing.map((k) => names[k as keyof typeof names] ?? "PixelSpacing").join(", ")
      } — voxseg needs each image's position and orientation in the patient to build a volume ` +
        "(secondary captures and screenshots have none)",
    );
  }
  if (p.rows !== first.rows || p.columns !== first.columns) {
    throw new DicomInputError(
      `mixed image sizes in one series: ${first.label} is ${first.columns}×${first.rows} but ` +
        `${p.label} is ${p.columns}×${p.rows} (columns×rows) — pick a series of one size`,
    );
  }
  const dOrient = Math.max(...p.orientation!.map((v, i) => Math.abs(v - first.orientation![i])));
  if (dOrient > ORIENTATION_TOLERANCE) {
    throw new DicomInputError(
      `mixed orientations in one series: ${first.label} has ImageOrientationPatient ` +
        `[${first.orientation!.map(fmt)}] but ${p.label} has [${p.orientation!.map(fmt)}] — a ` +
        "volume needs one orientation (is a localizer or a reformat mixed in? pick the series " +
        "with --series)",
    );
  }
  const dSpacing = Math.max(
    ...p.pixelSpacing!.map((v, i) =>
      Math.abs(v - first.pixelSpacing![i]) / Math.abs(first.pixelSpacing![i])
    ),
  );
  if (!(dSpacing <= SPACING_TOLERANCE) || p.pixelSpacing!.some((v) => !(v > 0))) {
    throw new DicomInputError(
      `mixed pixel spacing in one series: ${first.label} has PixelSpacing ` +
        `${first.pixelSpacing!.map(fmt).join("\\")} mm but ${p.label} has ` +
        `${p.pixelSpacing!.map(fmt).join("\\")} mm — a volume needs one spacing`,
    );
  }
}

/** A one-slice stack has no step to measure; SpacingBetweenSlices or SliceThickness stand in. */
function oneSliceStep(p: Plane): number {
  const hint = p.sliceStepHint;
  return hint !== undefined && hint > 0 ? hint : 1;
}

/**
 * The slice step: the median distance between neighbours along the normal, after checking
 * that no two slices share a position and that every step is within 1 % of the median.
 */
function checkSteps(planes: readonly Plane[], order: number[], along: number[]): number {
  const steps = order.slice(1).map((i, k) => along[i] - along[order[k]]);
  const median = [...steps].sort((a, b) => a - b)[Math.floor(steps.length / 2)];
  const at = (k: number) => `${fmt(along[order[k]])} mm`;
  for (const [k, step] of steps.entries()) {
    if (step < Math.max(1e-3, 1e-3 * median)) {
      throw new DicomInputError(
        `two images at one slice position (${at(k)} along the slice normal): ` +
          `${planes[order[k]].label} and ${planes[order[k + 1]].label} — the series holds ` +
          "duplicates or several acquisitions (time points, echoes, phases); pick one set",
      );
    }
  }
  for (const [k, step] of steps.entries()) {
    if (Math.abs(step - median) > STEP_TOLERANCE * median) {
      const ratio = step / median;
      const missing = Math.round(ratio) - 1;
      const why = missing >= 1 && Math.abs(ratio - Math.round(ratio)) < 0.1
        ? ` — ${missing} slice${missing > 1 ? "s" : ""} missing there?`
        : "";
      throw new DicomInputError(
        `uneven slice spacing: between slice positions ${at(k)} and ${at(k + 1)} (along the ` +
          `slice normal; ${planes[order[k]].label} and ${planes[order[k + 1]].label}) the ` +
          `step is ${fmt(step)} mm but the series' step is ${fmt(median)} mm${why}. A volume ` +
          "needs evenly spaced slices: give the complete series",
      );
    }
  }
  // The mean step over the whole stack: rounding errors of single positions average out.
  return (along[order[order.length - 1]] - along[order[0]]) / steps.length;
}

/** Refuses a stack whose slices drift in-plane (gantry tilt), naming the tilt angle. */
function checkTilt(planes: readonly Plane[], order: number[], normal: Vec3, step: number): void {
  const p0 = planes[order[0]].position!;
  const pixel = Math.min(...planes[0].pixelSpacing!);
  let worst = 0;
  let worstAlong = 1;
  for (const i of order) {
    const v = sub(planes[i].position!, p0);
    const a = dot(v, normal);
    const lateral = norm(sub(v, normal.map((n) => n * a) as Vec3));
    if (lateral > worst) [worst, worstAlong] = [lateral, a];
  }
  if (worst > TILT_TOLERANCE_PIXELS * pixel) {
    const degrees = Math.atan2(worst, worstAlong) * 180 / Math.PI;
    throw new DicomInputError(
      `gantry tilt or sheared stack: each slice is shifted in-plane by ` +
        `${fmt(worst / Math.max(1, Math.round(worstAlong / step)))} mm per ${fmt(step)} mm ` +
        `step (tilt ${degrees.toFixed(2)}°); voxseg needs slices stacked along their normal. ` +
        "Resample the series first (dcm2niix corrects gantry tilt) or reconstruct it without tilt",
    );
  }
}
