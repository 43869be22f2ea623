/**
 * Where the sliding window's image comes from: raw planes of the input (a volume in memory or
 * an OME-Zarr case read chunk by chunk), normalised as in training and, when the spacing
 * differs from the training spacing, resampled to the network's grid — a slab at a time.
 */

import type { CaseReader } from "../data/ome_zarr/reader.ts";
import { type Normalization, normalizeInPlace } from "../data/normalize.ts";
import type { Shape3, Volume } from "../data/volume.ts";
import { axisMap, bilinearPlane } from "./resample.ts";
import type { SlabSource } from "./sliding_window.ts";

/** Raw intensities of an input grid, a range of z-planes at a time. */
export interface PlaneReader {
  /** D, H, W. */
  shape: Shape3;
  /** Planes z0 ≤ z < z1 (0 ≤ z0 < z1 ≤ D) as float32, x fastest. */
  read(z0: number, z1: number): Promise<Float32Array>;
}

/**
 * Throws when `data` (planes from `z0` of a `shape` grid) holds NaN or ±Infinity, naming the
 * count and the first voxel: such a voxel would turn a window's prediction into NaN.
 */
export function checkFinitePlanes(
  data: ArrayLike<number>,
  z0: number,
  shape: Shape3,
  what: string,
): void {
  let bad = 0, first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) { // false only for NaN and ±Infinity
      if (bad++ === 0) first = i;
    }
  }
  if (bad === 0) return;
  const [, H, W] = shape;
  const x = first % W, y = Math.floor(first / W) % H, z = z0 + Math.floor(first / (H * W));
  throw new RangeError(
    `${what} has ${bad} non-finite voxel${bad === 1 ? "" : "s"} (NaN or ±Infinity)` +
      `${z0 > 0 ? ` in planes from z=${z0}` : ""}, the first ${data[first]} at voxel ` +
      `(z=${z}, y=${y}, x=${x}); replace them (e.g. with the background intensity) first`,
  );
}

/** A {@link PlaneReader} over a volume in memory; checks for non-finite voxels once. */
export function volumePlanes(volume: Volume, what = "the input volume"): PlaneReader {
  const { data, shape } = volume;
  if (data instanceof Float32Array || data instanceof Float64Array) {
    checkFinitePlanes(data, 0, shape, what);
  }
  const plane = shape[1] * shape[2];
  return {
    shape,
    read: (z0, z1) => Promise.resolve(Float32Array.from(data.subarray(z0 * plane, z1 * plane))),
  };
}

/** A {@link PlaneReader} over a case's image, read through its chunk cache. */
export function casePlanes(reader: CaseReader): PlaneReader {
  const [, H, W] = reader.shape;
  return {
    shape: reader.shape,
    async read(z0, z1) {
      const data = await reader.readImage([z0, 0, 0], [z1 - z0, H, W]);
      if (reader.imageDtype === "float32") {
        checkFinitePlanes(data, z0, reader.shape, `case ${reader.location}`);
      }
      return data;
    },
  };
}

/**
 * The network's input: `raw` normalised with `norm` and, when `netShape` differs from the raw
 * grid, trilinearly resampled to it (normalised first, as nnU-Net does). Resampling reads the
 * raw planes in blocks of `blockPlanes`, keeping two blocks.
 */
export function networkSource(
  raw: PlaneReader,
  norm: Normalization,
  netShape: Shape3,
  blockPlanes = 16,
): SlabSource {
  const [D, H, W] = raw.shape;
  if (netShape.every((n, i) => n === raw.shape[i])) {
    return {
      shape: netShape,
      read: async (z0, z1) => normalizeInPlace(await raw.read(z0, z1), norm),
    };
  }
  const [, hn, wn] = netShape;
  const zm = axisMap(netShape[0], D), ym = axisMap(hn, H), xm = axisMap(wn, W);
  type Block = { z0: number; z1: number; data: Float32Array };
  let blocks: Block[] = [];
  const rawPlane = async (z: number): Promise<Float32Array> => {
    let b = blocks.find((b) => z >= b.z0 && z < b.z1);
    if (!b) {
      const z1 = Math.min(D, z + blockPlanes);
      b = { z0: z, z1, data: normalizeInPlace(await raw.read(z, z1), norm) };
      blocks = [blocks.at(-1)!, b].filter(Boolean);
    }
    return b.data.subarray((z - b.z0) * H * W, (z - b.z0 + 1) * H * W);
  };
  return {
    shape: netShape,
    async read(z0, z1) {
      const out = new Float32Array((z1 - z0) * hn * wn);
      const p0 = new Float32Array(hn * wn), p1 = new Float32Array(hn * wn);
      for (let z = z0; z < z1; z++) {
        // Both planes are fetched before either is used: a fetch may drop an older block.
        const a = await rawPlane(zm.i0[z]);
        const b = await rawPlane(zm.i1[z]);
        bilinearPlane(a, W, ym, xm, p0);
        bilinearPlane(b, W, ym, xm, p1);
        const t = zm.t[z], o = (z - z0) * hn * wn;
        for (let i = 0; i < p0.length; i++) out[o + i] = p0[i] + t * (p1[i] - p0[i]);
      }
      return out;
    },
  };
}
