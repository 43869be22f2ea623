/**
 * Multi-channel images, as nnU-Net's raw layout has them (CASE_0000 … CASE_000N: CT + PET,
 * MRI T1, T1ce, T2, FLAIR): how many channels a dataset has, how each channel is normalised,
 * the per-channel statistics written at conversion, and the channels of one case read from
 * NIfTI (one file per channel, or one 4D file whose 4th dimension is the channel).
 *
 * Layout everywhere: channel-major, C blocks of D·H·W voxels (x fastest) — a batch is
 * [B, C, D, H, W]. One channel keeps every one-channel field and format exactly as before:
 * a dataset without `channels`, a checkpoint without `channelNormalisations`.
 */

import type { Normalization } from "../base/normalization.ts";
import type { Random } from "../base/random.ts";
import {
  type CaseEntry,
  type DatasetManifest,
  type IntensityStats,
  intensityStats,
} from "./dataset.ts";
import { gunzip, isGzip } from "./gzip.ts";
import { type ImageStats, imageStats } from "./image_stats.ts";
import { decodeNifti, type NiftiVolume, readNifti } from "./nifti.ts";
import { forCase, normalizationFromDataset } from "./normalize.ts";
import type { NormalizationKind } from "./normalize.ts";
import type { Volume } from "./volume.ts";

/** Image channels of a dataset: the length of `channels`, 1 when it has none. */
export function channelCount(dataset: Pick<DatasetManifest, "channels">): number {
  return dataset.channels?.length ?? 1;
}

/** Whether a channel name (nnU-Net `channel_names`, or a dataset's modality) stands for CT. */
export function isCtChannel(name: string): boolean {
  return /^ct$/i.test(name.trim());
}

/**
 * What records a model's normalisation: a checkpoint's metadata (`model.inChannels`) or a
 * training run's record (`config.model.inChannels`). `normalisation` is channel 0's;
 * `channelNormalisations`, when present, one per channel.
 */
export interface NormalizationRecord {
  normalisation: Normalization;
  channelNormalisations?: Normalization[];
  model?: { inChannels: number };
  config?: { model: { inChannels: number } };
}

/**
 * The normalisation of each input channel (length C) of a checkpoint or run record, for any C:
 * `channelNormalisations` when recorded, else `normalisation` for every channel (a one-channel
 * record gives `[normalisation]`). `channels` defaults to the recorded list's length, else the
 * model's input channels; a recorded list of another length is refused.
 */
export function channelNormalizations(
  record: NormalizationRecord,
  channels?: number,
): Normalization[] {
  const list = record.channelNormalisations;
  const c = channels ?? list?.length ?? record.model?.inChannels ??
    record.config?.model.inChannels ?? 1;
  if (!Number.isInteger(c) || c < 1) throw new RangeError(`channels must be ≥ 1, got ${c}`);
  if (list) {
    if (list.length !== c) {
      throw new RangeError(
        `the record normalises ${list.length} channels (channelNormalisations) but the input ` +
          `has ${c}; give an input with ${list.length} channels`,
      );
    }
    return [...list];
  }
  return Array.from({ length: c }, () => record.normalisation);
}

/** The training config's normalisation choice: a kind, or `auto` (per channel, see below). */
export interface ChannelNormalizationChoice {
  kind: NormalizationKind | "auto";
  /** HU window of `ct-window` (default −1000…400, the lung window, as DEFAULT_CT_WINDOW). */
  window?: [number, number];
}

/**
 * The normalisation of each channel of a dataset (length C, channel order), as training uses
 * it. `auto` picks by channel: a CT channel (channel name, or the modality for one channel)
 * gets the CT window; any other zscore-case (each case by its own statistics, nnU-Net's MR
 * scheme) when every case records that channel's statistics, else zscore on the channel's
 * foreground statistics. An explicit kind applies to every channel, `zscore` with each
 * channel's own statistics. For one channel this is the trainer's single-channel choice.
 *
 * @example
 * const norms = resolveChannelNormalizations(dataset, { kind: "auto", window: [-1000, 400] });
 * // CT + PET: [{ kind: "ct-window", lo: -1000, hi: 400 }, { kind: "zscore-case" }]
 */
export function resolveChannelNormalizations(
  dataset: Pick<DatasetManifest, "name" | "modality" | "channels" | "intensity" | "cases"> & {
    intensityChannels?: (IntensityStats | null)[];
  },
  choice: ChannelNormalizationChoice,
): Normalization[] {
  const names = dataset.channels ?? [dataset.modality];
  const [lo, hi] = choice.window ?? [-1000, 400];
  return names.map((name, c): Normalization => {
    const intensity = names.length > 1 ? dataset.intensityChannels?.[c] ?? null : dataset.intensity;
    const of = (kind: NormalizationKind) => {
      try {
        return normalizationFromDataset({ intensity, name: dataset.name }, kind);
      } catch (e) {
        throw new Error(`channel ${c} ("${name}"): ${(e as Error).message}`);
      }
    };
    if (choice.kind === "ct-window" || (choice.kind === "auto" && isCtChannel(name))) {
      return { kind: "ct-window", lo, hi };
    }
    if (choice.kind !== "auto") return of(choice.kind);
    const recorded = dataset.cases.every((e) => caseImageStats(e, c, names.length));
    return recorded ? { kind: "zscore-case" } : of("zscore");
  });
}

/** A case's whole-image statistics of channel `c` of `channels` (`image` for one channel). */
function caseImageStats(entry: CaseEntry, c: number, channels: number): ImageStats | undefined {
  return channels > 1 ? entry.imageChannels?.[c] : entry.image;
}

/**
 * Each channel's normalisation for one case: per-case kinds (`zscore-case`) resolved with the
 * case's own statistics of that channel (`forCase`), the others as they are. Throws, naming
 * the case and channel, when a per-case kind meets a case without statistics.
 */
export function caseChannelNormalizations(
  entry: CaseEntry,
  norms: readonly Normalization[],
): Normalization[] {
  return norms.map((norm, c) => {
    try {
      return forCase(norm, caseImageStats(entry, c, norms.length));
    } catch (e) {
      const which = norms.length > 1 ? `, channel ${c}` : "";
      throw new Error(`case ${entry.id}${which}: ${(e as Error).message}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Statistics at conversion

/** A uniform sample of one channel's foreground intensities, with their exact extremes. */
export interface ForegroundSample {
  intensities: Float32Array;
  /** ±Infinity when there is no foreground. */
  min: number;
  max: number;
}

/** What conversion records for a multi-channel case, channel by channel. */
export interface ChannelCaseStats {
  /** Whole-image statistics of each channel (the manifest's `imageChannels`). */
  imageChannels: ImageStats[];
  /** Foreground samples of each channel, at the same voxels; absent without a label. */
  foreground?: ForegroundSample[];
}

/**
 * Per-channel statistics of one case: every channel's whole-image statistics and, with a label,
 * a sample of foreground intensities taken at the same `samples` voxels in every channel
 * (reservoir sampling driven by `rng`), plus exact foreground extremes.
 */
export function channelCaseStats(
  channels: readonly Volume[],
  label: Volume | undefined,
  rng: Random,
  samples = 10_000,
): ChannelCaseStats {
  const imageChannels = channels.map((c) => imageStats(c.data));
  if (!label) return { imageChannels };
  const lab = label.data;
  const picks = new Int32Array(samples);
  let seen = 0;
  for (let i = 0; i < lab.length; i++) {
    if (lab[i] === 0) continue;
    if (seen < samples) picks[seen] = i;
    else {
      const j = rng.int(0, seen + 1);
      if (j < samples) picks[j] = i;
    }
    seen++;
  }
  const chosen = picks.subarray(0, Math.min(seen, samples));
  const foreground = channels.map(({ data }) => {
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < lab.length; i++) {
      if (lab[i] === 0) continue;
      if (data[i] < min) min = data[i];
      if (data[i] > max) max = data[i];
    }
    return { intensities: Float32Array.from(chosen, (i) => data[i]), min, max };
  });
  return { imageChannels, foreground };
}

/**
 * The manifest of a multi-channel dataset: `manifest` (built from channel 0, so its one-channel
 * fields are channel 0's) with the channel names and each channel's pooled foreground
 * statistics. `foreground[k]` holds the samples of every channel of the k-th labelled case;
 * channel 0's statistics are the manifest's `intensity`, so the two fields agree.
 */
export function withChannels(
  manifest: DatasetManifest,
  names: string[],
  foreground: readonly ForegroundSample[][],
): DatasetManifest {
  if (names.length < 2) return manifest;
  const intensityChannels = names.map((_, c) => {
    if (c === 0) return manifest.intensity;
    const own = foreground.map((f) => f[c]);
    const min = Math.min(...own.map((s) => s.min)), max = Math.max(...own.map((s) => s.max));
    return intensityStats(own.map((s) => s.intensities), min, max);
  });
  const { cases, ...head } = manifest;
  return { ...head, channels: [...names], intensityChannels, cases };
}

// ---------------------------------------------------------------------------------------------
// Reading the channels of a case

/** Largest difference of affine entries (mm) accepted as the same grid. */
const GRID_TOLERANCE_MM = 1e-3;

/**
 * Throws unless every channel lies on channel 0's voxel grid (same shape, affine within
 * 1e-3 mm); the error names the file (`names[i]`) that differs.
 */
export function checkChannelGrids(volumes: readonly Volume[], names: readonly string[]): void {
  const ref = volumes[0];
  volumes.forEach((v, i) => {
    if (i === 0) return;
    const diff = Math.max(...ref.affine.map((a, k) => Math.abs(a - v.affine[k])));
    const shapeDiffers = v.shape.some((s, k) => s !== ref.shape[k]);
    if (!shapeDiffers && diff <= GRID_TOLERANCE_MM) return;
    const what = shapeDiffers
      ? `shape ${v.shape.join("×")} differs from ${ref.shape.join("×")}`
      : `affine differs by up to ${+diff.toPrecision(3)} mm`;
    throw new Error(
      `${names[i]}: channel ${i} is not on the grid of channel 0 (${names[0]}): ${what} — ` +
        "every channel of a case must lie on one voxel grid; resample it onto channel 0's",
    );
  });
}

/**
 * The channels of one case from NIfTI: one file per channel (3D each, on one grid, in channel
 * order), or a single file that is 3D (one channel) or 4D (its 4th dimension the channels).
 * Errors name the file.
 */
export async function readNiftiChannels(paths: readonly string[]): Promise<NiftiVolume[]> {
  if (paths.length === 0) throw new RangeError("give at least one NIfTI file");
  if (paths.length === 1) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(paths[0]);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new Error(`NIfTI file not found: ${paths[0]}`);
      throw e;
    }
    try {
      return await decodeNiftiChannels(bytes);
    } catch (e) {
      throw new Error(`${paths[0]}: ${(e as Error).message}`);
    }
  }
  const volumes: NiftiVolume[] = [];
  for (const path of paths) volumes.push(await readNifti(path));
  checkChannelGrids(volumes, paths);
  return volumes;
}

/** Bytes per voxel of the NIfTI datatypes voxseg reads. */
const DATATYPE_BYTES: Record<number, number> = {
  2: 1,
  4: 2,
  8: 4,
  16: 4,
  64: 8,
  256: 1,
  512: 2,
};

/**
 * Decodes NIfTI bytes (gzipped or not) into its channels: a 3D volume is one channel; a 4D one
 * (dim[4] = C, nothing beyond) is split into C 3D volumes sharing its header and geometry.
 */
export async function decodeNiftiChannels(bytes: Uint8Array): Promise<NiftiVolume[]> {
  // Only the header says whether the file is 4D: a 3D file is decoded as it always was.
  if (!fourDLayout(isGzip(bytes) ? await gunzipPrefix(bytes, 540) : bytes)) {
    return [await decodeNifti(bytes)];
  }
  const raw = isGzip(bytes) ? await gunzip(bytes) : bytes;
  const { channels, voxOffset, channelBytes, setDim } = fourDLayout(raw)!;
  const need = voxOffset + channels * channelBytes;
  if (raw.length < need) {
    throw new Error(
      `truncated NIfTI: ${channels} volumes need ${need} bytes from vox_offset ${voxOffset}, ` +
        `but the file has ${raw.length} (is the download complete?)`,
    );
  }
  const out: NiftiVolume[] = [];
  for (let c = 0; c < channels; c++) {
    // A 3D file of channel c: the same header with dim[0] = 3 and dim[4] = 1.
    const one = new Uint8Array(voxOffset + channelBytes);
    one.set(raw.subarray(0, voxOffset));
    setDim(one, 0, 3);
    setDim(one, 4, 1);
    const from = voxOffset + c * channelBytes;
    one.set(raw.subarray(from, from + channelBytes), voxOffset);
    out.push(await decodeNifti(one));
  }
  return out;
}

/** The first `n` (or fewer) bytes of gzipped data, inflating no more than needed. */
async function gunzipPrefix(bytes: Uint8Array, n: number): Promise<Uint8Array> {
  const reader = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip")).getReader();
  const out = new Uint8Array(n);
  let filled = 0;
  try {
    while (filled < n) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = value.subarray(0, n - filled);
      out.set(take, filled);
      filled += take.length;
    }
  } catch {
    // Corrupt data: the full decode reports it.
  } finally {
    await reader.cancel().catch(() => {});
  }
  return out.subarray(0, filled);
}

/**
 * Where the channels of a 4D NIfTI lie: undefined for anything else (a 3D file, or bytes that
 * are not NIfTI — left to {@link decodeNifti} to explain).
 */
function fourDLayout(raw: Uint8Array) {
  if (raw.length < 348) return undefined;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const le = [348, 540].includes(view.getInt32(0, true));
  const size = view.getInt32(0, le);
  if ((size !== 348 && size !== 540) || raw.length < size) return undefined;
  const v2 = size === 540;
  const dimAt = (i: number) =>
    v2 ? Number(view.getBigInt64(16 + 8 * i, le)) : view.getInt16(40 + 2 * i, le);
  const ndim = dimAt(0);
  if (!(ndim >= 4 && ndim <= 7) || !(dimAt(4) > 1)) return undefined;
  for (let i = 5; i <= ndim; i++) {
    if (dimAt(i) > 1) {
      throw new Error(
        `${ndim}D NIfTI (dim[${i}] = ${dimAt(i)}); voxseg reads 3D volumes, or 4D ones whose ` +
          "4th dimension is the image channels",
      );
    }
  }
  const datatype = view.getInt16(v2 ? 12 : 70, le);
  const bytes = DATATYPE_BYTES[datatype];
  if (!bytes) throw new Error(`unsupported NIfTI datatype ${datatype}`);
  const voxOffset = v2 ? Number(view.getBigInt64(168, le)) : view.getFloat32(108, le);
  const dims = [1, 2, 3].map(dimAt);
  if (!Number.isInteger(voxOffset) || voxOffset < size || dims.some((d) => !(d >= 1))) {
    throw new Error(`corrupt NIfTI header: vox_offset ${voxOffset}, dim[1..3] = ${dims}`);
  }
  return {
    channels: dimAt(4),
    voxOffset,
    channelBytes: dims[0] * dims[1] * dims[2] * bytes,
    setDim(target: Uint8Array, i: number, value: number) {
      const v = new DataView(target.buffer, target.byteOffset, target.byteLength);
      if (v2) v.setBigInt64(16 + 8 * i, BigInt(value), le);
      else v.setInt16(40 + 2 * i, value, le);
    },
  };
}
