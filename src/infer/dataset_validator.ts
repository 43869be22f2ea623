/**
 * The trainer's dataset validator: sliding-window prediction over whole validation volumes and
 * per-class Dice against their labels. The monitored score is the mean foreground Dice
 * (classes 1…C−1, each averaged over the cases where it is defined).
 */

import { openCase } from "../data/ome_zarr/reader.ts";
import { type Dataset, resolveCase, type Split } from "../data/dataset.ts";
import { type Normalization, normalizeInPlace, padIntensity } from "../data/normalize.ts";
import type { UNet3D } from "../nn/unet3d.ts";
import { dicePerClass, nanMean } from "./metrics.ts";
import { slidingWindowLabels } from "./sliding_window.ts";

/** Validation numbers for one evaluation of the model. */
export interface ValidationResult {
  /** Named metrics, e.g. "dice/lung". NaN where undefined. */
  metrics: Record<string, number>;
  /** The monitored value (mean foreground Dice, or validation loss). */
  score: number;
}

/** Evaluates the model (inference mode) on held-out data. */
export type Validator = (
  model: UNet3D,
  context: { norm: Normalization; dataset: Dataset },
) => Promise<ValidationResult>;

export interface ValidatorOptions {
  /** Window size: the training patch size. */
  patchSize: [number, number, number];
  split?: Split;
  overlap?: number;
  batchSize?: number;
  /** Validate on at most this many cases (the first ones of the split). */
  maxCases?: number;
}

/** A {@link Validator} over a dataset split (default "val"). */
export function datasetValidator(opts: ValidatorOptions): Validator {
  const { patchSize, split = "val", overlap = 0.5, batchSize = 2, maxCases = Infinity } = opts;
  return async (model, { norm, dataset }) => {
    const cases = dataset.cases.filter((c) => c.split === split && c.hasLabel).slice(0, maxCases);
    if (cases.length === 0) {
      throw new Error(`dataset "${dataset.name}" has no labelled ${split} cases to validate on`);
    }
    const classes = model.config.classes;
    const perClass: number[][] = Array.from({ length: classes }, () => []);
    for (const entry of cases) {
      const reader = await openCase(resolveCase(dataset, entry.id));
      const image = await reader.readFullImage();
      const label = await reader.readFullLabel();
      const data = normalizeInPlace(Float32Array.from(image.data as ArrayLike<number>), norm);
      // Labels only: full-volume probabilities are never held.
      const labels = await slidingWindowLabels(
        (x) => model.forward(x, { training: false }),
        data,
        image.shape,
        classes,
        {
          patchSize,
          overlap,
          batchSize,
          padValue: padIntensity(norm),
        },
      );
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
