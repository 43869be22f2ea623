/**
 * Hand-made fingerprints for the planner's tests: a CT case in HU with a lesion's foreground
 * statistics, and a dataset of such cases.
 */

import type {
  CaseFingerprint,
  Fingerprint,
  ForegroundStats,
  IntensityProfile,
} from "../../../src/data/fingerprint.ts";

/** Whole-image intensities of a CT in HU: air present, integers. */
export const HU_IMAGE: IntensityProfile = {
  min: -1024,
  max: 1800,
  mean: -500,
  std: 480,
  airFraction: 0.35,
  integerValued: true,
  p0_5: -1024,
  p50: -600,
  p99_5: 900,
  samples: 1000,
};

/** Foreground (lesion) intensities in HU. */
export const FG: ForegroundStats = {
  samples: 1000,
  mean: -650,
  std: 150,
  min: -1000,
  max: 100,
  p0_5: -980,
  p5: -900,
  p50: -700,
  p95: -300,
  p99_5: 50,
};

/** A labelled training case at 1 mm; `o` overrides any field. */
export function fpCase(id: string, o: Partial<CaseFingerprint> = {}): CaseFingerprint {
  return {
    id,
    split: "train",
    shape: [64, 128, 128],
    spacingMm: [1, 1, 1],
    hasLabel: true,
    voxelsPerClass: [900_000, 100_000],
    image: HU_IMAGE,
    foreground: FG,
    ...o,
  };
}

/** A CT dataset of `cases`, two classes; `o` overrides any field. */
export function fingerprint(cases: CaseFingerprint[], o: Partial<Fingerprint> = {}): Fingerprint {
  return {
    name: "t",
    modality: "CT",
    classes: ["background", "lesion"],
    intensity: {
      mean: FG.mean,
      std: FG.std,
      p0_5: FG.p0_5,
      p99_5: FG.p99_5,
      min: FG.min,
      max: FG.max,
    },
    samplesPerCase: 1000,
    seed: 0,
    cases,
    ...o,
  };
}

/** Whole-image intensities of an MR-like channel: float, no air, nothing near −1000. */
export const MR_IMAGE: IntensityProfile = {
  min: 0,
  max: 1200,
  mean: 300,
  std: 200,
  airFraction: 0,
  integerValued: false,
  p0_5: 2,
  p50: 250,
  p99_5: 1000,
  samples: 1000,
};

/** Foreground intensities of the MR-like channel. */
export const MR_FG: ForegroundStats = {
  samples: 1000,
  mean: 600,
  std: 90,
  min: 350,
  max: 900,
  p0_5: 380,
  p5: 450,
  p50: 600,
  p95: 750,
  p99_5: 870,
};

/**
 * A labelled case of two channels: channel 0 `c0` (default CT in HU), channel 1 `c1` (default
 * MR-like); `o` overrides any field.
 */
export function twoChannelCase(
  id: string,
  c0: [IntensityProfile, ForegroundStats] = [HU_IMAGE, FG],
  c1: [IntensityProfile, ForegroundStats] = [MR_IMAGE, MR_FG],
  o: Partial<CaseFingerprint> = {},
): CaseFingerprint {
  return fpCase(id, {
    image: c0[0],
    foreground: c0[1],
    imageChannels: [c0[0], c1[0]],
    foregroundChannels: [c0[1], c1[1]],
    ...o,
  });
}

/** The pooled foreground statistics of a {@link ForegroundStats} (as dataset.json has them). */
export function pooled(f: ForegroundStats) {
  return { mean: f.mean, std: f.std, p0_5: f.p0_5, p99_5: f.p99_5, min: f.min, max: f.max };
}

/**
 * A dataset of two-channel cases named `names` (default: unnamed, as `convert --raw` names the
 * channels of a raw dataset without `channel_names`); the pooled statistics are channel 0's
 * and channel 1's foreground as given.
 */
export function twoChannelFingerprint(
  cases: CaseFingerprint[],
  names: [string, string] = ["channel_0", "channel_1"],
  o: Partial<Fingerprint> = {},
): Fingerprint {
  const fg = (c: number) => cases.find((k) => k.foregroundChannels?.[c])!.foregroundChannels![c]!;
  return fingerprint(cases, {
    modality: names[0],
    intensity: pooled(fg(0)),
    channels: names,
    intensityChannels: [pooled(fg(0)), pooled(fg(1))],
    ...o,
  });
}
