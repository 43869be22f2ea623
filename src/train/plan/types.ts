/**
 * The training plan: what nnU-Net-style self-configuration chose for a dataset (spacing,
 * normalisation, network topology, patch, batch, schedule length) and why. Written to
 * `plans.json` (./plan_file.ts), turned into trainer flags by `planOverrides` (./planner.ts).
 * Shapes and spacings are z, y, x (D, H, W).
 */

import type { Shape3 } from "../../data/volume.ts";
import type { IntensityConvention, ModalityVerdict } from "../../data/fingerprint.ts";

export const PLAN_FORMAT = "voxseg-plan";
export const PLAN_VERSION = 1;

/**
 * How intensities are normalised: `ct-window` clips HU to a window and scales to 0..1;
 * `ct-zscore` is nnU-Net's CT scheme (clip to the foreground 0.5/99.5 percentiles, subtract the
 * foreground mean, divide by its std); `zscore-per-case` subtracts each case's own mean and
 * divides by its own std (nnU-Net's scheme for MRI and other non-CT images).
 */
export const NORMALISATION_SCHEMES = ["ct-window", "ct-zscore", "zscore-per-case"] as const;
export type NormalisationScheme = (typeof NORMALISATION_SCHEMES)[number];

/** A per-case linear map onto HU: `hu = scale · value + offset`. */
export interface HuMap {
  scale: number;
  offset: number;
  /**
   * `fit`: foreground quantiles of this case matched to the HU cases'; `median`: the median of
   * the fitted maps (a case without a label); `window`: 0..255 assumed to span the CT window.
   */
  source: "fit" | "median" | "window";
}

/** The intensity normalisation the plan chose. */
export interface PlanNormalisation {
  scheme: NormalisationScheme;
  /** `ct-window`: [low, high] in HU; null for the other schemes. */
  window: [number, number] | null;
  /** `ct-zscore`: clip range and moments in HU; null for the other schemes. */
  zscore: { clipLo: number; clipHi: number; mean: number; std: number } | null;
  /** Each case's intensity convention, by case id. */
  conventions: Record<string, IntensityConvention>;
  /** CT datasets: the map onto HU of each case that is not already HU, by case id. */
  huMaps: Record<string, HuMap>;
  reason: string;
}

/** What decided a channel's normalisation (multi-channel plans). */
export const CHANNEL_DECISIONS = ["channel_names", "intensities"] as const;

/**
 * One input channel of a multi-channel plan (nnU-Net's CASE_0000 … CASE_000N: CT + PET,
 * multi-sequence MRI), normalised by its own scheme: a channel named in dataset.json's
 * `channel_names` as nnU-Net does it (CT → the CT scheme, any other name → z-score per case);
 * an unnamed one (`channel_N`) from its own intensities, as a one-channel dataset.
 */
export interface PlanChannel {
  /** The channel's name in dataset.json (`channel_N` when the raw dataset named none). */
  name: string;
  decidedBy: (typeof CHANNEL_DECISIONS)[number];
  modality: ModalityVerdict;
  normalisation: PlanNormalisation;
}

/** One resolution level of the planned network (level 0 = full resolution). */
export interface LevelPlan {
  /** Pooling stride into this level (z, y, x); [1, 1, 1] at level 0. */
  stride: Shape3;
  /** Convolution kernel of this level's blocks (z, y, x): 3 or 1 per axis. */
  kernel: Shape3;
  channels: number;
  /** Feature-map D, H, W at this level for the planned patch. */
  featureShape: Shape3;
}

/** Estimated training memory of one network, patch and batch. */
export interface MemoryEstimate {
  /** Activations, gradients, weights and Adam state, bytes. */
  totalBytes: number;
  /** The largest single activation buffer, bytes (must fit the GPU's buffer limits). */
  largestBufferBytes: number;
  /** True when both fit the limits the plan was made for. */
  fits: boolean;
}

/** The planned (nnU-Net) topology: anisotropic pooling and kernels, capped features. */
export interface TopologyPlan {
  patchSize: Shape3;
  /** The feature cap (nnU-Net: 320); today's UNet3D depth is capped so it stays under it. */
  maxChannels: number;
  batchSize: number;
  /** The patch must be divisible by this along each axis (product of the strides). */
  divisibleBy: Shape3;
  levels: LevelPlan[];
  memory: MemoryEstimate;
}

/** What today's UNet3D (isotropic 2× pooling, 3×3×3 kernels) runs: the trainer's flags. */
export interface UNet3DPlan {
  inChannels: number;
  /** Output classes, background included. */
  classes: number;
  convsPerLevel: number;
  depth: number;
  baseChannels: number;
  /** Each axis divisible by 2^(depth − 1). */
  patchSize: Shape3;
  memory: MemoryEstimate;
}

/** How the training length was sized to a time budget. */
export interface BudgetPlan {
  budgetSeconds: number;
  /** Milliseconds per optimizer step of the chosen candidate. */
  msPerStep: number;
  /** `measured` when a timing function was given, `estimated` from a FLOP rate otherwise. */
  timing: "measured" | "estimated";
  steps: number;
  /** Training plus validation seconds the plan expects (≤ the budget left). */
  estimatedSeconds: number;
  /** Validate every this many epochs (a handful of validations per run; absent: every epoch). */
  valEvery?: number;
  reason: string;
}

/** The whole plan, as stored in `plans.json`. */
export interface Plan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  dataset: { name: string; classes: string[]; cases: number; trainingCases: number };
  modality: ModalityVerdict;
  /** z, y, x mm. */
  targetSpacingMm: Shape3;
  /** The median case shape after resampling to the target spacing, D, H, W. */
  medianShape: Shape3;
  /** Channel 0's on a multi-channel plan (as `modality`); see {@link Plan.channels}. */
  normalisation: PlanNormalisation;
  /**
   * Each input channel's normalisation, when there are C > 1 (length C = `unet3d.inChannels`;
   * `[0]` repeats `modality` and `normalisation`). Absent: one channel (plans written before
   * channels were planned read as one-channel plans).
   */
  channels?: PlanChannel[];
  topology: TopologyPlan;
  unet3d: UNet3DPlan;
  /** The trainer's batch size (for `unet3d`). */
  batchSize: number;
  /** The limits the memory estimates were checked against, bytes. */
  limits: { gpuMemoryBytes: number; maxStorageBufferBindingSize: number; maxBufferSize: number };
  /** null: left to the trainer's defaults. */
  epochs: number | null;
  itersPerEpoch: number | null;
  budget: BudgetPlan | null;
  /** Why each choice was made, by choice name (spacing, normalisation, patch, …). */
  reasons: Record<string, string>;
  /** Warnings and things the trainer must apply that its flags cannot express. */
  notes: string[];
  /**
   * The network the run trains: `unet3d` (absent: today's isotropic U-Net, the fast kernels) or
   * `plain` (nnU-Net's PlainConvUNet with the planned per-axis strides and kernels).
   */
  network?: PlanNetwork;
}

/** The networks a plan can train, in help order. */
export const PLAN_NETWORKS = ["unet3d", "plain"] as const;
export type PlanNetwork = (typeof PLAN_NETWORKS)[number];
