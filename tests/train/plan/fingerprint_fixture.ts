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
