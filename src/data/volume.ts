/**
 * A 3D image or label map in host memory, with its geometry.
 *
 * Memory order: x fastest (NIfTI's native order), so the voxel (z, y, x) lives at flat index
 * `x + W·(y + H·z)` — the same order as voxseg's `N,C,D,H,W` tensors.
 */

/** Voxel storage types voxseg reads and writes. */
export type VoxelArray =
  | Int16Array
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** The name of a {@link VoxelArray}'s element type, as NIfTI and Zarr spell it. */
export type VoxelDtype = "uint8" | "int8" | "int16" | "uint16" | "int32" | "float32" | "float64";

/** D, H, W (z, y, x) sizes or coordinates. */
export type Shape3 = [number, number, number];

export interface Volume {
  /** D, H, W = z, y, x sizes. */
  shape: Shape3;
  /** Voxel size in millimetre, z, y, x order. */
  spacingMm: Shape3;
  /** 4×4 row-major: NIfTI world (RAS+ mm) from voxel index (i = x, j = y, k = z). */
  affine: number[];
  /** `shape[0]·shape[1]·shape[2]` voxels, x fastest. */
  data: VoxelArray;
}

/** Number of voxels in a volume of this shape. */
export function voxelCount(shape: Shape3): number {
  return shape[0] * shape[1] * shape[2];
}

/** The typed-array constructor of each dtype name: the one place the two are paired. */
const VOXEL_ARRAYS: {
  [D in VoxelDtype]: {
    new (length: number): VoxelArray;
    new (buffer: ArrayBuffer, byteOffset: number, length: number): VoxelArray;
  };
} = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** The dtype name of a voxel array. */
export function dtypeOf(data: VoxelArray): VoxelDtype {
  for (const [dtype, array] of Object.entries(VOXEL_ARRAYS)) {
    if (data instanceof array) return dtype as VoxelDtype;
  }
  throw new TypeError(`unsupported voxel array type ${(data as object).constructor.name}`);
}

/** The typed-array constructor for a dtype name. */
export function voxelArrayOf(dtype: VoxelDtype, length: number): VoxelArray {
  return new VOXEL_ARRAYS[dtype](length);
}

/** A voxel array of `dtype` over the first `length` elements of `buffer` (no copy). */
export function voxelArrayOver(dtype: VoxelDtype, buffer: ArrayBuffer, length: number): VoxelArray {
  return new VOXEL_ARRAYS[dtype](buffer, 0, length);
}

/** The affine of an axis-aligned grid with this spacing (z, y, x mm) and origin at voxel 0. */
export function affineFromSpacing(spacingMm: Shape3): number[] {
  const [sz, sy, sx] = spacingMm;
  return [sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 0, 0, 0, 0, 1];
}

/** Voxel spacing (z, y, x mm) implied by an affine: the lengths of its first three columns. */
export function spacingFromAffine(affine: number[]): Shape3 {
  const col = (c: number) => Math.hypot(affine[c], affine[4 + c], affine[8 + c]);
  return [col(2), col(1), col(0)];
}

/**
 * Throws when a volume is inconsistent: non-integer or non-positive shape, data length not
 * matching the shape, spacing not positive, affine not 16 finite numbers.
 */
export function checkVolume(volume: Volume, what = "volume"): void {
  const { shape, spacingMm, affine, data } = volume;
  if (shape.length !== 3 || shape.some((s) => !Number.isInteger(s) || s <= 0)) {
    throw new RangeError(`${what}: shape must be 3 positive integers (D,H,W), got [${shape}]`);
  }
  if (data.length !== voxelCount(shape)) {
    throw new RangeError(
      `${what}: data has ${data.length} voxels but shape [${shape}] needs ${voxelCount(shape)}`,
    );
  }
  if (spacingMm.length !== 3 || spacingMm.some((s) => !(s > 0) || !Number.isFinite(s))) {
    throw new RangeError(`${what}: spacingMm must be 3 positive numbers, got [${spacingMm}]`);
  }
  if (affine.length !== 16 || affine.some((v) => !Number.isFinite(v))) {
    throw new RangeError(`${what}: affine must be 16 finite numbers (4×4 row-major)`);
  }
}
