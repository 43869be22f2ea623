/** The training configuration's types, the value lists of its unions, and its defaults. */

import type { Precision } from "../../ops/precision.ts";
import { NORMALIZATION_KINDS } from "../../base/normalization.ts";
import { defaultUNetConfig } from "../../nn/unet3d.ts";
import type { ModelConfig } from "../../nn/model_config.ts";
import { AUGMENT_PRESETS, type AugmentPreset } from "../../data/augment.ts";

export { AUGMENT_PRESETS };

/**
 * Intensity normalisation applied to each image before it reaches the network: one of
 * src/data/normalize.ts's kinds, or `auto`: ct-window for CT; otherwise zscore-case (each case
 * by its own statistics) when the dataset records them, else zscore.
 */
export const NORMALISATION_KINDS = ["auto", ...NORMALIZATION_KINDS] as const;
export type NormalisationKind = (typeof NORMALISATION_KINDS)[number];

/** Where patches come from and how they are prepared. */
export interface DataConfig {
  /** Dataset folder or URL holding `dataset.json`. */
  dataset: string;
  /** Training patch D, H, W (z, y, x) in voxels; each divisible by 2^(model.depth − 1). */
  patchSize: [number, number, number];
  batchSize: number;
  /** Share of patches centred on a foreground voxel (nnU-Net oversampling); the rest random. */
  foregroundFraction: number;
  /**
   * `ct-window`: clip to {@link window} and scale to [0, 1]; `zscore`: clip to the dataset's
   * foreground 0.5/99.5 percentiles, then its mean/std (nnU-Net CT); `none`; `auto`.
   */
  normalisation: NormalisationKind;
  /** Intensity window [low, high] for `ct-window` (HU; the lung window by default). */
  window: [number, number];
  augment: {
    /** Random flips along each axis. */
    flip: boolean;
    /** Random 90° rotations in the axial (y, x) plane. */
    rotate90: boolean;
    /** Random intensity scale and shift. */
    intensity: boolean;
    /** Additive Gaussian noise. */
    noise: boolean;
    /**
     * `basic`: each switch stands for itself; `nnunet`: nnU-Net v2's default augmentation
     * (rotation, scaling, noise, blur, brightness, contrast, low resolution, gamma, mirroring)
     * whatever the other switches say, except `elastic` and `inPlane` (src/data/sampler.ts
     * augmentationFromFlags; the numbers are in src/data/augment.ts).
     */
    preset: AugmentPreset;
    /** nnU-Net's rotation (±30° about each axis) and scaling (0.7–1.4), each p 0.2. */
    spatial: boolean;
    /** Elastic deformation (p 0.2; off in nnU-Net v2's default). */
    elastic: boolean;
    /** Rotate (±180°), scale, deform and lower the resolution in the axial plane only. */
    inPlane: boolean;
    /** nnU-Net's Gaussian blur. */
    blur: boolean;
    /** nnU-Net's multiplicative brightness. */
    brightness: boolean;
    /** nnU-Net's contrast. */
    contrast: boolean;
    /** nnU-Net's simulated low resolution. */
    lowRes: boolean;
    /** nnU-Net's gamma (on the image and on the inverted image). */
    gamma: boolean;
  };
  /** Patch-loading workers; 0 loads on the main thread. */
  workers: number;
}

/** The weighted sum of loss terms the network is trained on. */
export interface LossConfig {
  /** Weights of the summed loss terms. */
  tverskyWeight: number;
  ceWeight: number;
  diceWeight: number;
  /** Tversky index TP / (TP + α·FP + β·FN): α weighs false positives, β false negatives. */
  alpha: number;
  beta: number;
  /** Added to the Tversky/Dice numerator and denominator. */
  smooth: number;
  /** Per-class weights (length model.classes) for cross-entropy and the region losses. */
  classWeights?: number[];
  /** Count class 0 (background) in the Tversky/Dice mean. */
  includeBackground: boolean;
  /** Sum TP/FP/FN over the batch before the ratio (nnU-Net "batch dice"). */
  batchDice: boolean;
}

/** The optimizer and its hyper-parameters. */
/** The optimizers, in help order. */
export const OPTIMIZER_KINDS = ["adam", "adamw", "sgd"] as const;

export interface OptimizerConfig {
  kind: (typeof OPTIMIZER_KINDS)[number];
  lr: number;
  /** L2 for adam and sgd, decoupled for adamw. */
  weightDecay: number;
  /** SGD momentum (nnU-Net: 0.99). */
  momentum: number;
  nesterov: boolean;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this; 0 turns clipping off (nnU-Net: 12). */
  gradClip: number;
}

/** The learning-rate schedules, in help order. */
export const SCHEDULE_KINDS = ["plateau", "poly", "cosine", "constant"] as const;
/** How the plateau schedule measures an improvement. */
export const THRESHOLD_MODES = ["rel", "abs"] as const;
/** The metrics a run may monitor for best, plateau and early stopping. */
export const MONITORS = ["dice", "loss"] as const;

/** The learning-rate schedule; each kind reads only its own fields. */
export interface ScheduleConfig {
  /**
   * `poly` and `cosine` advance once per optimizer step over epochs × itersPerEpoch steps;
   * `plateau` once per validation, on the {@link TrainConfig.monitor} metric.
   */
  kind: (typeof SCHEDULE_KINDS)[number];
  /** plateau: multiply the learning rate by this on a plateau. */
  factor: number;
  /** plateau: validations without improvement before reducing. */
  patience: number;
  /** plateau: how much better counts as better. */
  threshold: number;
  thresholdMode: (typeof THRESHOLD_MODES)[number];
  /** plateau: validations to wait after a reduction before counting again. */
  cooldown: number;
  /** plateau and cosine: lower bound of the learning rate. */
  minLr: number;
  /** plateau: reductions smaller than this are skipped. */
  eps: number;
  /** poly: lr0 · (1 − step/total)^exponent. */
  exponent: number;
  /** cosine: steps of linear warm-up before the cosine decay. */
  warmupSteps: number;
}

/** Everything a training run is configured by. */
export interface TrainConfig {
  model: ModelConfig;
  data: DataConfig;
  loss: LossConfig;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  epochs: number;
  itersPerEpoch: number;
  /** Validate every this many epochs. */
  valEvery: number;
  /**
   * The validation number that picks the best checkpoint and drives plateau and early
   * stopping: mean foreground Dice (higher is better) or validation loss (lower is better).
   */
  monitor: (typeof MONITORS)[number];
  earlyStopping: {
    /** Validations without improvement before stopping; 0 never stops early. */
    patience: number;
  };
  seed: number;
  /** Output folder: checkpoints, metrics.jsonl, summary.json. */
  out: string;
  /** Read the loss back to the host every this many steps (each readback costs ~10 ms). */
  lossReadbackEvery: number;
  /**
   * Also write the resumable training state every this many optimizer steps within an epoch
   * (0: only at the end of each epoch). A crash loses at most this many steps.
   */
  checkpointEvery: number;
  /**
   * Operand precision of the 3×3×3 convolutions in the training forward pass: "f32", or "f16"
   * (binary16 inputs and weights, f32 sums — mixed precision as under `torch.autocast`).
   * Gradients, master weights, optimizer state and validation stay f32.
   */
  precision: Precision;
}

/** The defaults every config starts from (frozen: resolveConfig returns fresh copies). */
export const defaultTrainConfig: TrainConfig = deepFreeze({
  model: { ...defaultUNetConfig },
  data: {
    dataset: "data/synth",
    patchSize: [64, 64, 64],
    batchSize: 2,
    foregroundFraction: 0.33,
    normalisation: "auto",
    window: [-1000, 400],
    augment: {
      flip: true,
      rotate90: false,
      intensity: true,
      noise: false,
      preset: "basic",
      spatial: false,
      elastic: false,
      inPlane: false,
      blur: false,
      brightness: false,
      contrast: false,
      lowRes: false,
      gamma: false,
    },
    workers: 1,
  },
  loss: {
    tverskyWeight: 1,
    ceWeight: 1,
    diceWeight: 0,
    alpha: 0.3,
    beta: 0.7,
    smooth: 1e-5,
    includeBackground: false,
    batchDice: false,
  },
  optimizer: {
    kind: "adam",
    lr: 1e-3,
    weightDecay: 0,
    momentum: 0.99,
    nesterov: true,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    gradClip: 12,
  },
  schedule: {
    kind: "poly",
    factor: 0.1,
    patience: 10,
    threshold: 1e-4,
    thresholdMode: "rel",
    cooldown: 0,
    minLr: 0,
    eps: 1e-8,
    exponent: 0.9,
    warmupSteps: 0,
  },
  epochs: 50,
  itersPerEpoch: 100,
  valEvery: 1,
  monitor: "dice",
  earlyStopping: { patience: 0 },
  seed: 0,
  out: "runs/train",
  lossReadbackEvery: 10,
  checkpointEvery: 0,
  precision: "f32",
});

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
