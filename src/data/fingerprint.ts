/**
 * The dataset fingerprint (nnU-Net's term): what a planner needs to know about a dataset before
 * choosing spacing, normalisation, patch and network — per case its geometry, label counts and
 * intensity statistics, plus the dataset's foreground statistics. From it, each case's intensity
 * convention (HU, 0..255, 0..1 or other) and the dataset's modality are told apart from the
 * numbers, not only from what `dataset.json` claims (a converter's default "CT" can be wrong).
 *
 * Reading is bounded in memory: a case is read one row of chunks at a time (chunk depth × chunk
 * height × full width, z, y, x), each chunk once, without caching.
 *
 * A dataset of C > 1 image channels (nnU-Net's CASE_0000 … CASE_000N, on one voxel grid) is
 * fingerprinted channel by channel, as its manifest records it: the one-channel fields (`image`,
 * `foreground`, `intensity`) hold channel 0's, and `imageChannels`, `foregroundChannels`,
 * `intensityChannels` every channel's, sampled at the same voxels; {@link channelFingerprint}
 * gives one channel's view as a one-channel fingerprint.
 */

import { isAbsolute, relative } from "node:path";
import { Random } from "../base/random.ts";
import { ChunkCache } from "./chunk_cache.ts";
import {
  type Dataset,
  type IntensityStats,
  percentileSorted,
  resolveCase,
  type Split,
} from "./dataset.ts";
import { type CaseReader, openCase } from "./ome_zarr/reader.ts";
import type { Shape3 } from "./volume.ts";

/** Intensity threshold of air in HU: voxels at or below it count as air. */
export const AIR_HU = -900;

/** Whole-image intensity statistics of one case. */
export interface IntensityProfile {
  /** Exact, over every voxel. */
  min: number;
  max: number;
  mean: number;
  std: number;
  /** Share (0..1) of voxels ≤ −900 (air, when the values are HU); exact. */
  airFraction: number;
  /** Every voxel holds an integer (always true for int16 storage); exact. */
  integerValued: boolean;
  /** Percentiles 0.5, 50 and 99.5 of a seeded uniform voxel sample. */
  p0_5: number;
  p50: number;
  p99_5: number;
  /** Size of that sample. */
  samples: number;
}

/** Statistics of a sample of one case's labelled (foreground) voxel intensities. */
export interface ForegroundStats {
  samples: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  p0_5: number;
  p5: number;
  p50: number;
  p95: number;
  p99_5: number;
}

/** One case of a {@link Fingerprint}. */
export interface CaseFingerprint {
  id: string;
  split: Split;
  /** D, H, W voxels. */
  shape: Shape3;
  /** z, y, x mm. */
  spacingMm: Shape3;
  hasLabel: boolean;
  /** Voxels per label value (from the manifest); empty without a label. */
  voxelsPerClass: number[];
  image: IntensityProfile;
  /**
   * Intensities at foreground voxels drawn from the manifest's sampled class coordinates,
   * classes weighted by their voxel counts; null without a label or foreground.
   */
  foreground: ForegroundStats | null;
  /** C > 1 channels only: each channel's whole-image statistics (`[0]` is `image`). */
  imageChannels?: IntensityProfile[];
  /**
   * C > 1 channels only: each channel's foreground statistics at the same voxels (`[0]` is
   * `foreground`).
   */
  foregroundChannels?: (ForegroundStats | null)[];
}

/** The fingerprint of a dataset: everything the planner reads. */
export interface Fingerprint {
  name: string;
  /** The modality `dataset.json` states (may be a converter's default). */
  modality: string;
  /** Class names, background first. */
  classes: string[];
  /**
   * The manifest's pooled foreground statistics (all labelled cases; channel 0's when there
   * are several); null without labels.
   */
  intensity: IntensityStats | null;
  /**
   * C > 1 channels only: the channel names in channel order (dataset.json `channels`, from
   * nnU-Net's `channel_names`; `channel_N` where the raw dataset named none).
   */
  channels?: string[];
  /** C > 1 channels only: each channel's pooled foreground statistics (`[0]` is `intensity`). */
  intensityChannels?: (IntensityStats | null)[];
  samplesPerCase: number;
  seed: number;
  cases: CaseFingerprint[];
}

export interface FingerprintOptions {
  /** Voxels sampled uniformly per case for the percentiles (default 100 000). */
  samplesPerCase?: number;
  /** Foreground voxels sampled per labelled case (default 10 000). */
  foregroundSamples?: number;
  /** Seed of the sampling (default 0); each case's stream also depends on its id. */
  seed?: number;
  /** A folder every local case must resolve inside (as `readDataset`'s option); no URLs. */
  confineTo?: string;
}

/**
 * Reads every case of `dataset` once and returns its fingerprint. Deterministic for a seed.
 *
 * @example
 * const fp = await fingerprintDataset(await readDataset("data/covid"), { seed: 0 });
 */
export async function fingerprintDataset(
  dataset: Dataset,
  opts: FingerprintOptions = {},
): Promise<Fingerprint> {
  const { samplesPerCase = 100_000, foregroundSamples = 10_000, seed = 0, confineTo } = opts;
  if (!(Number.isInteger(samplesPerCase) && samplesPerCase > 0)) {
    throw new RangeError(`samplesPerCase must be a positive integer, got ${samplesPerCase}`);
  }
  const channels = dataset.channels?.length ?? 1;
  const cases: CaseFingerprint[] = [];
  for (const entry of dataset.cases) {
    const location = resolveCase(dataset, entry.id);
    if (confineTo !== undefined) await checkInside(location, confineTo, entry.id);
    const reader = await openCase(location, { cache: new ChunkCache(0) });
    if (reader.shape.some((s, i) => s !== entry.shape[i])) {
      throw new Error(
        `case "${entry.id}": image shape [${reader.shape}] differs from dataset.json's ` +
          `[${entry.shape}]; rebuild the manifest (voxseg convert --raw)`,
      );
    }
    if (reader.channels !== channels) {
      throw new Error(
        `case "${entry.id}" has ${reader.channels} image channel(s) but dataset.json lists ` +
          `${channels}; rebuild the dataset (voxseg convert --raw) so every case has its channels`,
      );
    }
    const rng = new Random(seed ^ hashId(entry.id));
    const picks = foregroundPicks(entry.voxelsPerClass, entry.foreground, foregroundSamples, rng);
    const scanned = await scanCase(reader, samplesPerCase, picks, rng);
    const fg = scanned.map((s) => (s.foreground.length ? foregroundStats(s.foreground) : null));
    cases.push({
      id: entry.id,
      split: entry.split,
      shape: [...entry.shape],
      spacingMm: [...entry.spacingMm],
      hasLabel: entry.hasLabel,
      voxelsPerClass: [...entry.voxelsPerClass],
      image: scanned[0].image,
      foreground: fg[0],
      ...(channels > 1
        ? { imageChannels: scanned.map((s) => s.image), foregroundChannels: fg }
        : {}),
    });
  }
  return {
    name: dataset.name,
    modality: dataset.modality,
    classes: [...dataset.classes],
    intensity: dataset.intensity ? { ...dataset.intensity } : null,
    ...(channels > 1
      ? {
        channels: [...dataset.channels!],
        intensityChannels: dataset.channels!.map((_, c) =>
          c === 0 ? dataset.intensity : dataset.intensityChannels?.[c] ?? null
        ).map((s) => (s ? { ...s } : null)),
      }
      : {}),
    samplesPerCase,
    seed,
    cases,
  };
}

/** The image channels of a fingerprint: 1 unless it lists several. */
export function fingerprintChannels(fp: Pick<Fingerprint, "channels">): number {
  return fp.channels?.length ?? 1;
}

/**
 * Channel `c` of a fingerprint as a one-channel fingerprint (its whole-image and foreground
 * statistics in the one-channel fields, its name as the modality); a one-channel fingerprint
 * is its own channel 0.
 *
 * @example
 * const pet = channelFingerprint(fp, 1); // pet.cases[k].image: case k's channel-1 statistics
 */
export function channelFingerprint(fp: Fingerprint, c: number): Fingerprint {
  const n = fingerprintChannels(fp);
  if (!(Number.isInteger(c) && c >= 0 && c < n)) {
    throw new RangeError(`channel ${c} does not exist: the fingerprint has ${n} channel(s)`);
  }
  if (n === 1) return fp;
  const { channels, intensityChannels, ...rest } = fp;
  return {
    ...rest,
    modality: channels![c],
    intensity: c === 0 ? fp.intensity : intensityChannels?.[c] ?? null,
    cases: fp.cases.map(({ imageChannels, foregroundChannels, ...k }) => {
      const image = imageChannels?.[c], foreground = foregroundChannels?.[c];
      if (!image) {
        throw new Error(
          `case "${k.id}" has no statistics of channel ${c}; fingerprint the dataset again`,
        );
      }
      return { ...k, image, foreground: foreground ?? null };
    }),
  };
}

/** FNV-1a of a case id, so a case's sample does not depend on the other cases. */
function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h | 0;
}

async function checkInside(location: string, folder: string, id: string): Promise<void> {
  const fail = (): never => {
    throw new Error(`case "${id}" lies outside the data root; case paths must stay inside it`);
  };
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) fail();
  const real = await Deno.realPath(location).catch(() => location);
  const root = await Deno.realPath(folder).catch(() => folder);
  const rel = relative(root, real);
  if (rel.startsWith("..") || isAbsolute(rel)) fail();
}

/**
 * Flat z,y,x coordinates of `n` foreground voxels drawn from the manifest's per-class samples:
 * a class with probability proportional to its voxel count, then one of its coordinates.
 */
function foregroundPicks(
  voxelsPerClass: number[],
  foreground: number[][],
  n: number,
  rng: Random,
): number[][] {
  const classes = voxelsPerClass
    .map((count, c) => ({ c, count }))
    .filter(({ c, count }) => c > 0 && count > 0 && (foreground[c]?.length ?? 0) >= 3);
  const total = classes.reduce((s, k) => s + k.count, 0);
  const out: number[][] = [];
  for (let k = 0; total > 0 && k < n; k++) {
    let u = rng.uniform(0, total), pick = classes[classes.length - 1];
    for (const cls of classes) {
      if (u < cls.count) {
        pick = cls;
        break;
      }
      u -= cls.count;
    }
    const coords = foreground[pick.c], j = 3 * rng.int(0, coords.length / 3);
    out.push([coords[j], coords[j + 1], coords[j + 2]]);
  }
  return out;
}

/** Running exact statistics over every voxel seen. */
class Moments {
  n = 0;
  sum = 0;
  sumSq = 0;
  min = Infinity;
  max = -Infinity;
  air = 0;
  integer = true;

  add(data: Float32Array, checkInteger: boolean): void {
    let sum = 0, sumSq = 0, min = this.min, max = this.max, air = 0, integer = this.integer;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      sum += v;
      sumSq += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v <= AIR_HU) air++;
      if (checkInteger && integer && v !== Math.round(v)) integer = false;
    }
    this.sum += sum;
    this.sumSq += sumSq;
    this.min = min;
    this.max = max;
    this.air += air;
    this.integer = integer;
    this.n += data.length;
  }
}

/**
 * Reads a case one row of chunks at a time: per channel, exact moments over every voxel, the
 * values at `samples` uniformly drawn voxels and at the given foreground coordinates (the same
 * voxels in every channel). One entry per channel.
 */
async function scanCase(
  reader: CaseReader,
  samples: number,
  foregroundCoords: number[][],
  rng: Random,
): Promise<{ image: IntensityProfile; foreground: Float64Array }[]> {
  const [D, H, W] = reader.shape;
  const [cd, ch] = reader.chunks;
  const rowsY = Math.ceil(H / ch);
  const blockOf = (z: number, y: number) => Math.floor(z / cd) * rowsY + Math.floor(y / ch);
  const buckets = new Map<number, { z: number; y: number; x: number; slot: number }[]>();
  const put = (z: number, y: number, x: number, slot: number) => {
    const key = blockOf(z, y);
    let list = buckets.get(key);
    if (!list) buckets.set(key, list = []);
    list.push({ z, y, x, slot });
  };
  for (let k = 0; k < samples; k++) {
    const f = rng.int(0, D * H * W);
    put(Math.floor(f / (H * W)), Math.floor(f / W) % H, f % W, k);
  }
  foregroundCoords.forEach(([z, y, x], k) => put(z, y, x, samples + k));
  const C = reader.channels;
  const values = Array.from(
    { length: C },
    () => new Float64Array(samples + foregroundCoords.length),
  );
  const moments = Array.from({ length: C }, () => new Moments());
  for (let z0 = 0; z0 < D; z0 += cd) {
    for (let y0 = 0; y0 < H; y0 += ch) {
      const size: Shape3 = [Math.min(cd, D - z0), Math.min(ch, H - y0), W];
      // C > 1: C blocks of size voxels one after another (channel-major).
      const block = await reader.readImage([z0, y0, 0], size);
      const n = size[0] * size[1] * size[2];
      for (let c = 0; c < C; c++) {
        moments[c].add(
          C > 1 ? block.subarray(c * n, (c + 1) * n) : block,
          reader.imageDtype !== "int16",
        );
      }
      for (const { z, y, x, slot } of buckets.get(blockOf(z0, y0)) ?? []) {
        const at = ((z - z0) * size[1] + (y - y0)) * W + x;
        for (let c = 0; c < C; c++) values[c][slot] = block[c * n + at];
      }
    }
  }
  return moments.map((m, c) => profile(m, values[c], samples));
}

/** A channel's whole-image profile and foreground sample from its moments and sampled values. */
function profile(
  moments: Moments,
  values: Float64Array,
  samples: number,
): { image: IntensityProfile; foreground: Float64Array } {
  const sample = values.slice(0, samples).sort();
  const mean = moments.sum / moments.n;
  return {
    image: {
      min: moments.min,
      max: moments.max,
      mean,
      std: Math.sqrt(Math.max(0, moments.sumSq / moments.n - mean * mean)),
      airFraction: moments.air / moments.n,
      integerValued: moments.integer,
      p0_5: percentileSorted(sample, 0.5),
      p50: percentileSorted(sample, 50),
      p99_5: percentileSorted(sample, 99.5),
      samples,
    },
    foreground: values.slice(samples),
  };
}

/**
 * Statistics of a foreground intensity sample (any order; not modified).
 *
 * @example
 * foregroundStats(Float64Array.of(1, 2, 3)).p50 // 2
 */
export function foregroundStats(values: ArrayLike<number>): ForegroundStats {
  if (values.length === 0) throw new RangeError("foregroundStats needs at least one value");
  const sorted = Float64Array.from(values).sort();
  let sum = 0, sq = 0;
  for (const v of sorted) sum += v;
  const mean = sum / sorted.length;
  for (const v of sorted) sq += (v - mean) ** 2;
  const p = (q: number) => percentileSorted(sorted, q);
  return {
    samples: sorted.length,
    mean,
    std: Math.sqrt(sq / sorted.length),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    p0_5: p(0.5),
    p5: p(5),
    p50: p(50),
    p95: p(95),
    p99_5: p(99.5),
  };
}

// ---------------------------------------------------------------------------------------------
// Conventions and modality

/**
 * How a case's intensities are expressed: `hu` (CT in Hounsfield units), `byte` (integers in
 * 0..255, e.g. CT windowed to 8 bits), `unit` (within 0..1), `other` (e.g. MRI).
 */
export type IntensityConvention = "hu" | "byte" | "unit" | "other";

/** A case's convention and the evidence for it. */
export interface ConventionVerdict {
  convention: IntensityConvention;
  reason: string;
}

/**
 * Classifies one case's intensities (see {@link IntensityConvention}): HU when some voxels are
 * at or below −900 (air), byte when every value is an integer in 0..255 with a maximum above
 * 1, unit when all lie in 0..1, else other.
 *
 * @example
 * detectIntensityConvention(fp.cases[0].image) // { convention: "hu", reason: "…" }
 */
export function detectIntensityConvention(
  stats: Pick<IntensityProfile, "min" | "max" | "airFraction" | "integerValued">,
): ConventionVerdict {
  const { min, max, airFraction, integerValued } = stats;
  const range = `values ${fmt(min)}..${fmt(max)}`;
  if (min <= AIR_HU) {
    const share = `${(100 * airFraction).toFixed(1)}% of voxels ≤ ${AIR_HU}`;
    return { convention: "hu", reason: `${range}, ${share} (air in HU)` };
  }
  if (integerValued && min >= 0 && max <= 255 && max > 1) {
    return { convention: "byte", reason: `${range}, all integers within 0..255` };
  }
  if (min >= 0 && max <= 1) return { convention: "unit", reason: `${range}, within 0..1` };
  return { convention: "other", reason: `${range}, nothing near −1000 (no air in HU)` };
}

/** The modality a planner should assume, and why. */
export interface ModalityVerdict {
  /** Treat intensities as CT (HU after any per-case mapping). */
  isCT: boolean;
  /** "CT", the manifest's non-CT name, or "other". */
  modality: string;
  reason: string;
}

/**
 * The dataset's modality: a non-CT name in `dataset.json` is trusted (someone chose it); "CT"
 * (a converter's default) or no name is checked against the data: CT when at least one case is
 * HU and the rest are HU or 0..255 (windowed CT), or HU cases are the majority; otherwise not
 * CT — a dataset with nothing near −1000 is not HU CT, whatever the manifest says.
 *
 * @example
 * inferModality("CT", ["byte", "byte"]).isCT // false: e.g. MRI stored as 0..255
 */
export function inferModality(
  manifestModality: string | undefined,
  conventions: IntensityConvention[],
): ModalityVerdict {
  const count = (c: IntensityConvention) => conventions.filter((x) => x === c).length;
  const hu = count("hu"), byte = count("byte"), n = conventions.length;
  const tally = (["hu", "byte", "unit", "other"] as const)
    .filter((c) => count(c) > 0).map((c) => `${count(c)} ${c}`).join(", ") || "no cases";
  const stated = (manifestModality ?? "").trim();
  const saysCT = /^ct$/i.test(stated);
  if (stated && !saysCT && !/^(unknown|other|none)$/i.test(stated)) {
    const clash = hu > n / 2 ? " (although most cases look like HU)" : "";
    return { isCT: false, modality: stated, reason: `dataset.json says ${stated}${clash}` };
  }
  const ct = hu > 0 && (hu + byte === n || hu > n / 2);
  const claim = saysCT ? "dataset.json says CT and " : "";
  if (ct) {
    const mix = byte > 0 ? `; the ${byte} 0..255 cases are windowed CT mapped onto HU` : "";
    return { isCT: true, modality: "CT", reason: `${claim}cases are HU (${tally})${mix}` };
  }
  const why = hu === 0 ? "no case has values near −1000 HU" : "HU cases are a minority";
  const override = saysCT ? "dataset.json says CT (possibly a converter's default), but " : "";
  return { isCT: false, modality: "other", reason: `${override}${why} (${tally}): not CT` };
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(4);
}
