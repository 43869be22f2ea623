/**
 * The trainer's dataset validator: sliding-window prediction over whole validation volumes and
 * per-class Dice against their labels. The monitored score is the mean foreground Dice
 * (classes 1…C−1, each averaged over the cases where it is defined). A dataset of several
 * image channels is validated on all of them, each normalised by its own scheme.
 */

import { openCase } from "../data/ome_zarr/reader.ts";
import { type CaseEntry, type Dataset, resolveCase, type Split } from "../data/dataset.ts";
import {
  forCase,
  type Normalization,
  normalizeInPlace,
  normalizeValue,
  padIntensity,
} from "../data/normalize.ts";
import { imageStats } from "../data/image_stats.ts";
import type { Volume } from "../data/volume.ts";
import type { SegmentationNet } from "../nn/model.ts";
import { dicePerClass, nanMean } from "./metrics.ts";
import { slidingWindowSlabs } from "./sliding_window.ts";
import { channelArraySource } from "./source.ts";

/** Validation numbers for one evaluation of the model. */
export interface ValidationResult {
  /** Named metrics, e.g. "dice/lung". NaN where undefined. */
  metrics: Record<string, number>;
  /** The monitored value (mean foreground Dice, or validation loss). */
  score: number;
}

/**
 * Evaluates the model (inference mode) on held-out data. `split` is the split the trainer
 * settled on before the first step ("val", or "train" when the dataset has no labelled val
 * case); a validator built with an explicit split keeps its own.
 */
export type Validator = (
  model: SegmentationNet,
  context: {
    norm: Normalization;
    /** One normalisation per image channel, for a dataset of C > 1 channels (length C). */
    channelNorms?: Normalization[];
    dataset: Dataset;
    split?: Split;
  },
) => Promise<ValidationResult>;

export interface ValidatorOptions {
  /** Window size: the training patch size. */
  patchSize: [number, number, number];
  /** The split to validate on; default: the trainer's choice (see {@link Validator}). */
  split?: Split;
  overlap?: number;
  batchSize?: number;
  /** Validate on at most this many cases (the first ones of the split). */
  maxCases?: number;
}

/** A {@link Validator} over a dataset split (default: the trainer's, else "val"). */
export function datasetValidator(opts: ValidatorOptions): Validator {
  const { patchSize, overlap = 0.5, batchSize = 2, maxCases = Infinity } = opts;
  return async (model, context) => {
    const { norm, dataset } = context;
    const norms = context.channelNorms ?? [norm];
    const split = opts.split ?? context.split ?? "val";
    const cases = dataset.cases.filter((c) => c.split === split && c.hasLabel).slice(0, maxCases);
    if (cases.length === 0) {
      throw new Error(`dataset "${dataset.name}" has no labelled ${split} cases to validate on`);
    }
    const classes = model.config.classes;
    const perClass: number[][] = Array.from({ length: classes }, () => []);
    for (const entry of cases) {
      const reader = await openCase(resolveCase(dataset, entry.id));
      const channels = await reader.readFullChannels();
      if (channels.length !== norms.length) {
        throw new Error(
          `validation case ${entry.id} has ${channels.length} image channel(s) but the run ` +
            `normalises ${norms.length}`,
        );
      }
      const label = await reader.readFullLabel();
      const { data, pads } = normalizedChannels(channels, norms, entry);
      const [D, H, W] = channels[0].shape;
      // Labels only: full-volume probabilities are never held.
      const labels = new Uint8Array(D * H * W);
      const slabs = slidingWindowSlabs(
        (x) => model.forward(x, { training: false }),
        channelArraySource(data, channels[0].shape, channels.length),
        classes,
        {
          patchSize,
          overlap,
          batchSize,
          // The window pads normalised data: the pad intensity normalised like the image.
          padValue: pads.length === 1 ? pads[0] : pads,
        },
      );
      for await (const slab of slabs) {
        slab.argmax(labels.subarray(slab.z0 * H * W, (slab.z0 + slab.depth) * H * W));
      }
      const dice = dicePerClass(labels, label.data as Uint8Array, classes);
      dice.forEach((d, c) => perClass[c].push(d));
    }
    const metrics: Record<string, number> = {};
    const means = perClass.map(nanMean);
    means.forEach((m, c) => metrics[`dice/${dataset.classes[c] ?? c}`] = m);
    const score = nanMean(means.slice(1));
    metrics["dice/mean_fg"] = score;
    return { metrics, score };
  };
}

/**
 * The channels of a case normalised (each by its scheme, a per-case kind with the case's own
 * statistics of that channel), channel-major, and each channel's normalised pad value.
 */
function normalizedChannels(
  channels: readonly Volume[],
  norms: readonly Normalization[],
  entry: CaseEntry,
): { data: Float32Array; pads: number[] } {
  const n = channels[0].data.length;
  const data = new Float32Array(channels.length * n);
  const pads = channels.map((image, c) => {
    const recorded = channels.length > 1 ? entry.imageChannels?.[c] : entry.image;
    const caseNorm = forCase(norms[c], recorded ?? imageStats(image.data));
    const part = data.subarray(c * n, (c + 1) * n);
    part.set(image.data as ArrayLike<number>);
    normalizeInPlace(part, caseNorm);
    return normalizeValue(padIntensity(caseNorm), caseNorm);
  });
  return { data, pads };
}
