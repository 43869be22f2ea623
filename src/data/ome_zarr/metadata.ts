/**
 * What a voxseg case is on disk, shared by its writer and its reader. One case = one OME-Zarr
 * 0.5 group (Zarr v3):
 *
 * ```
 * case.zarr/zarr.json              group; attributes.ome = multiscales (axes z,y,x in mm,
 *                                  scale = spacing), attributes.voxseg = affine, NIfTI geometry
 * case.zarr/0/                     image array: int16 (CT HU, any integer image) or float32
 * case.zarr/labels/zarr.json       attributes.ome.labels = ["seg"]
 * case.zarr/labels/seg/zarr.json   attributes.ome["image-label"] + multiscales
 * case.zarr/labels/seg/0/          label array: uint8
 * ```
 *
 * A case of C > 1 channels (CT + PET, MRI sequences: nnU-Net's CASE_0000 … CASE_000N) keeps
 * them in the one image array `0` with a leading channel axis, OME-Zarr 0.5's `c`: axes
 * c, z, y, x (the multiscales axis of type "channel", scale 1 along it), chunks of one channel
 * each (1, d, h, w), channel names in `attributes.voxseg.channels`. A one-channel case keeps
 * axes z, y, x exactly, so older readers and older cases are unchanged. Every channel shares
 * the grid (shape, spacing, affine); the label map stays z, y, x.
 */

import type { Box3 } from "../crop.ts";
import type { NiftiGeometry } from "../nifti_geometry.ts";
import type { Shape3 } from "../volume.ts";

/** Chunk compressors voxseg writes. zstd is the default; gzip for readers without zstd. */
export type CaseCodec = "zstd" | "gzip";
export const CASE_CODECS: readonly CaseCodec[] = ["zstd", "gzip"];

/** Image storage type: int16 for integer images (CT HU), float32 otherwise. */
export type ImageDtype = "int16" | "float32";

export const IMAGE_PATH = "0";
/** The image array's axis names: z, y, x for one channel; c, z, y, x for more. */
export function imageAxes(channels: number): string[] {
  return channels > 1 ? ["c", "z", "y", "x"] : ["z", "y", "x"];
}
export const LABEL_PATH = "labels/seg/0";

/** What `attributes.voxseg` of a case group holds. */
export interface CaseAttributes {
  version: 1;
  /** 4×4 row-major NIfTI affine (RAS+ mm from voxel i=x, j=y, k=z). */
  affine: number[];
  imageDtype: ImageDtype;
  /** The source NIfTI's geometry fields, for an export with the same header geometry. */
  nifti?: NiftiGeometry;
  classNames?: string[];
  /** Present on a preprocessed case: how its grid maps back onto the original one. */
  preprocessing?: CasePreprocessing;
  /** Channel names (e.g. "CT", "PET"), one per channel, on a case of C > 1 channels. */
  channels?: string[];
  [key: string]: unknown;
}

/**
 * How a preprocessed case (resampled to a target spacing, then cropped; see
 * `data/preprocess.ts`) maps back onto the grid of the case it came from. Shapes are D, H, W;
 * spacings z, y, x mm; the crop box is in voxels of the resampled grid.
 */
export interface CasePreprocessing {
  version: 1;
  originalShape: Shape3;
  originalSpacingMm: Shape3;
  /** 4×4 row-major NIfTI affine of the original grid. */
  originalAffine: number[];
  /** The original case's NIfTI geometry, when it had one. */
  originalNifti?: NiftiGeometry;
  /** The whole original volume resampled: round(n·s/t) per axis. */
  resampledShape: Shape3;
  targetSpacingMm: Shape3;
  /** The stored voxels: this box of the resampled grid (the whole grid when not cropped). */
  cropBox: Box3;
  /** Image interpolation order asked for (1 linear, 3 cubic in-plane). */
  order: 1 | 3;
  /** Image value of every resampled voxel outside the crop box. */
  background: number;
}

/**
 * Throws, naming the field, unless `value` is a well-formed {@link CasePreprocessing} whose
 * crop box lies inside its resampled shape.
 */
export function checkPreprocessing(
  value: unknown,
  where: string,
): asserts value is CasePreprocessing {
  const fail = (field: string, want: string): never => {
    throw new Error(
      `${where}: attributes.voxseg.preprocessing.${field} must be ${want} — preprocess the ` +
        "dataset again",
    );
  };
  if (typeof value !== "object" || value === null) fail("(the record)", "an object");
  const r = value as Record<string, unknown>;
  if (r.version !== 1) fail("version", "1");
  const triple = (v: unknown, field: string, min: number, int: boolean) => {
    const ok = Array.isArray(v) && v.length === 3 &&
      v.every((x) => typeof x === "number" && x >= min && (!int || Number.isInteger(x)));
    if (!ok) fail(field, `3 ${int ? "integers" : "numbers"} ≥ ${min}`);
  };
  triple(r.originalShape, "originalShape", 1, true);
  triple(r.originalSpacingMm, "originalSpacingMm", Number.MIN_VALUE, false);
  triple(r.resampledShape, "resampledShape", 1, true);
  triple(r.targetSpacingMm, "targetSpacingMm", Number.MIN_VALUE, false);
  const affine = r.originalAffine;
  if (!Array.isArray(affine) || affine.length !== 16 || !affine.every(Number.isFinite)) {
    fail("originalAffine", "16 finite numbers");
  }
  if (r.order !== 1 && r.order !== 3) fail("order", "1 or 3");
  if (!Number.isFinite(r.background)) fail("background", "a number");
  const box = r.cropBox as Box3 | undefined;
  triple(box?.start, "cropBox.start", 0, true);
  triple(box?.size, "cropBox.size", 1, true);
  const shape = r.resampledShape as Shape3;
  if (box!.start.some((s, i) => s + box!.size[i] > shape[i])) {
    fail("cropBox", `a box inside resampledShape [${shape}]`);
  }
}
