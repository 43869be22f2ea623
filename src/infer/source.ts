/**
 * Where the sliding window's image comes from: raw planes of the input (a volume in memory or
 * an OME-Zarr case read chunk by chunk), normalised as in training and, when the spacing
 * differs from the training spacing, resampled to the network's grid — a slab at a time.
 *
 * Channels: an input of C > 1 channels (one volume per channel on one grid, or a case with a
 * channel axis) is read C planes-blocks at a time, channel-major — C blocks of
 * (z1 − z0)·H·W voxels — and each channel is normalised by its own scheme and resampled alone.
 */

import type { CaseReader } from "../data/ome_zarr/reader.ts";
import { forCase, type Normalization, normalizeInPlace } from "../data/normalize.ts";
import { StatsAccumulator } from "../data/image_stats.ts";
import type { Shape3, Volume } from "../data/volume.ts";
import { axisMap, bilinearPlane } from "./resample.ts";
import type { SlabSource } from "./sliding_window.ts";

/** Raw intensities of an input grid, a range of z-planes at a time. */
export interface PlaneReader {
  /** D, H, W. */
  shape: Shape3;
  /** Image channels (default 1). */
  channels?: number;
  /**
   * Planes z0 ≤ z < z1 (0 ≤ z0 < z1 ≤ D) as float32, x fastest; with C channels, C such
   * blocks one after another (channel-major).
   */
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

/**
 * A {@link PlaneReader} over a volume in memory, or over the channels of one (a list of
 * volumes on one grid, channel order); checks for non-finite voxels once.
 */
export function volumePlanes(
  volume: Volume | readonly Volume[],
  what = "the input volume",
): PlaneReader {
  const list = "data" in volume ? [volume as Volume] : volume as readonly Volume[];
  if (list.length === 0) throw new RangeError(`${what}: no channels`);
  const { shape } = list[0];
  list.forEach(({ data, shape: s }, c) => {
    const name = list.length > 1 ? `${what} (channel ${c})` : what;
    if (s.some((n, i) => n !== shape[i])) {
      throw new RangeError(
        `${name}: shape ${s.join("×")} differs from channel 0's ${shape.join("×")}; every ` +
          "channel must lie on one voxel grid",
      );
    }
    if (data instanceof Float32Array || data instanceof Float64Array) {
      checkFinitePlanes(data, 0, shape, name);
    }
  });
  const plane = shape[1] * shape[2];
  if (list.length === 1) {
    const { data } = list[0];
    return {
      shape,
      read: (z0, z1) => Promise.resolve(Float32Array.from(data.subarray(z0 * plane, z1 * plane))),
    };
  }
  return {
    shape,
    channels: list.length,
    read(z0, z1) {
      const n = (z1 - z0) * plane;
      const out = new Float32Array(list.length * n);
      list.forEach(({ data }, c) => out.set(data.subarray(z0 * plane, z1 * plane), c * n));
      return Promise.resolve(out);
    },
  };
}

/** A {@link PlaneReader} over a case's image (every channel), read through its chunk cache. */
export function casePlanes(reader: CaseReader): PlaneReader {
  const [, H, W] = reader.shape;
  return {
    shape: reader.shape,
    ...(reader.channels > 1 ? { channels: reader.channels } : {}),
    async read(z0, z1) {
      const data = await reader.readImage([z0, 0, 0], [z1 - z0, H, W]);
      if (reader.imageDtype === "float32") {
        const n = (z1 - z0) * H * W;
        for (let c = 0; c < reader.channels; c++) {
          const what = reader.channels > 1
            ? `case ${reader.location} (channel ${c})`
            : `case ${reader.location}`;
          checkFinitePlanes(data.subarray(c * n, (c + 1) * n), z0, reader.shape, what);
        }
      }
      return data;
    },
  };
}

/**
 * `norm` resolved for the image `raw` reads: a per-case kind (`zscore-case`) takes its
 * statistics from one streamed pass over the planes (16 at a time); every other kind is
 * returned as it is, without reading anything. One-channel input.
 */
export async function caseNormalization(
  raw: PlaneReader,
  norm: Normalization,
  blockPlanes = 16,
): Promise<Normalization> {
  return (await caseNormalizations(raw, [norm], blockPlanes))[0];
}

/**
 * One normalisation per channel of `raw` (`norms` in channel order), each per-case kind
 * (`zscore-case`) resolved with that channel's statistics from one streamed pass over the
 * planes; nothing is read when no channel needs it.
 */
export async function caseNormalizations(
  raw: PlaneReader,
  norms: readonly Normalization[],
  blockPlanes = 16,
): Promise<Normalization[]> {
  const C = raw.channels ?? 1;
  if (norms.length !== C) {
    throw new RangeError(
      `the model normalises ${norms.length} channel(s) but the input has ${C}; give one ` +
        "image per input channel",
    );
  }
  if (!norms.some((n) => n.kind === "zscore-case")) return [...norms];
  const acc = norms.map(() => new StatsAccumulator());
  const [depth, H, W] = raw.shape;
  for (let z = 0; z < depth; z += blockPlanes) {
    const z1 = Math.min(depth, z + blockPlanes), n = (z1 - z) * H * W;
    const data = await raw.read(z, z1);
    acc.forEach((a, c) => a.add(data.subarray(c * n, (c + 1) * n)));
  }
  return norms.map((n, c) => forCase(n, acc[c].result()));
}

/** Normalises each channel block of `data` (C blocks, channel-major) in place. */
function normalizeChannels(data: Float32Array, norms: readonly Normalization[]): Float32Array {
  const n = data.length / norms.length;
  norms.forEach((norm, c) => normalizeInPlace(data.subarray(c * n, (c + 1) * n), norm));
  return data;
}

/**
 * The network's input: `raw` normalised with `norm` (one per channel for C > 1) and, when
 * `netShape` differs from the raw grid, trilinearly resampled to it (normalised first, as
 * nnU-Net does), channel by channel. Resampling reads the raw planes in blocks of
 * `blockPlanes`, keeping two blocks. The source has `raw`'s channels.
 */
export function networkSource(
  raw: PlaneReader,
  norm: Normalization | readonly Normalization[],
  netShape: Shape3,
  blockPlanes = 16,
): SlabSource {
  const norms = "kind" in norm ? [norm as Normalization] : norm as readonly Normalization[];
  const C = raw.channels ?? 1;
  if (norms.length !== C) {
    throw new RangeError(`${norms.length} normalisation(s) for an input of ${C} channel(s)`);
  }
  const channels = C > 1 ? { channels: C } : {};
  const [D, H, W] = raw.shape;
  if (netShape.every((n, i) => n === raw.shape[i])) {
    return {
      shape: netShape,
      ...channels,
      read: async (z0, z1) => normalizeChannels(await raw.read(z0, z1), norms),
    };
  }
  const [, hn, wn] = netShape;
  const zm = axisMap(netShape[0], D), ym = axisMap(hn, H), xm = axisMap(wn, W);
  type Block = { z0: number; z1: number; data: Float32Array };
  let blocks: Block[] = [];
  /** Plane z of channel c, normalised. */
  const rawPlane = async (z: number, c: number): Promise<Float32Array> => {
    let b = blocks.find((b) => z >= b.z0 && z < b.z1);
    if (!b) {
      const z1 = Math.min(D, z + blockPlanes);
      b = { z0: z, z1, data: normalizeChannels(await raw.read(z, z1), norms) };
      blocks = [blocks.at(-1)!, b].filter(Boolean);
    }
    const o = (c * (b.z1 - b.z0) + z - b.z0) * H * W;
    return b.data.subarray(o, o + H * W);
  };
  return {
    shape: netShape,
    ...channels,
    async read(z0, z1) {
      const n = (z1 - z0) * hn * wn;
      const out = new Float32Array(C * n);
      const p0 = new Float32Array(hn * wn), p1 = new Float32Array(hn * wn);
      for (let z = z0; z < z1; z++) {
        for (let c = 0; c < C; c++) {
          // Both planes are fetched before either is used: a fetch may drop an older block.
          const a = await rawPlane(zm.i0[z], c);
          const b = await rawPlane(zm.i1[z], c);
          bilinearPlane(a, W, ym, xm, p0);
          bilinearPlane(b, W, ym, xm, p1);
          const t = zm.t[z], o = c * n + (z - z0) * hn * wn;
          for (let i = 0; i < p0.length; i++) out[o + i] = p0[i] + t * (p1[i] - p0[i]);
        }
      }
      return out;
    },
  };
}

/**
 * A {@link SlabSource} over a normalised image of `channels` channels held in memory
 * (channel-major, C blocks of D·H·W).
 */
export function channelArraySource(
  image: Float32Array,
  shape: Shape3,
  channels: number,
): SlabSource {
  const [D, H, W] = shape, n = D * H * W;
  if (image.length !== channels * n) {
    throw new RangeError(
      `image has ${image.length} voxels but ${channels} channel(s) of ${shape.join("×")} need ` +
        `${channels * n}`,
    );
  }
  return {
    shape,
    ...(channels > 1 ? { channels } : {}),
    read(z0, z1) {
      if (channels === 1) return Promise.resolve(image.subarray(z0 * H * W, z1 * H * W));
      const m = (z1 - z0) * H * W, out = new Float32Array(channels * m);
      for (let c = 0; c < channels; c++) {
        out.set(image.subarray(c * n + z0 * H * W, c * n + z1 * H * W), c * m);
      }
      return Promise.resolve(out);
    },
  };
}
