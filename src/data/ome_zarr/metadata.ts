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
 */

import type { NiftiGeometry } from "../nifti_geometry.ts";

/** Chunk compressors voxseg writes. zstd is the default; gzip for readers without zstd. */
export type CaseCodec = "zstd" | "gzip";
export const CASE_CODECS: readonly CaseCodec[] = ["zstd", "gzip"];

/** Image storage type: int16 for integer images (CT HU), float32 otherwise. */
export type ImageDtype = "int16" | "float32";

export const IMAGE_PATH = "0";
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
  [key: string]: unknown;
}
