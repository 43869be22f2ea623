/**
 * nnU-Net's validation during training: instead of a sliding window over whole validation
 * volumes, a fixed set of validation patches (drawn once, seeded, half of them centred on
 * foreground) is predicted each time, and the Dice of each class is computed from true and
 * false positives and negatives summed over all patches (nnU-Net's "pseudo Dice"). It costs
 * a few dozen forward passes instead of thousands of windows, which is what a time-budgeted run
 * on a slow adapter can afford; the whole-volume figures come from the final evaluation.
 * A case of several channels is normalised channel by channel (the run's `channelNorms`).
 */

import { caseChannelNormalizations } from "../data/channels.ts";
import { type Dataset, resolveCase, type Split } from "../data/dataset.ts";
import type { Normalization } from "../data/normalize.ts";
import type { CaseReader } from "../data/ome_zarr/reader.ts";
import { openCase } from "../data/ome_zarr/reader.ts";
import { patchSampler, readPatch } from "../data/sampler.ts";
import type { Shape3 } from "../data/volume.ts";
import { fromArray, keep, readTensors, scope } from "../gpu/mod.ts";
import type { SegmentationNet } from "../nn/model.ts";
import type { ValidationResult, Validator } from "./dataset_validator.ts";
import { nanMean } from "./metrics.ts";
import { argmaxClasses } from "./sliding_window.ts";

export interface PatchValidatorOptions {
  /** The training patch size (D, H, W). */
  patchSize: Shape3;
  /** Validation patches (default 64, nnU-Net's 50 iterations being of batch ≥ 2). */
  patches?: number;
  /** Patches per forward pass (default 2). */
  batchSize?: number;
  /** Seed of the patch draw (default 0): the same patches at every validation. */
  seed?: number;
}

/** The patches of one validation set, read and normalised once. */
interface PatchSet {
  key: string;
  images: Float32Array[];
  labels: Uint8Array[];
}

/** A {@link Validator} on a fixed set of patches of the split the trainer validates on. */
export function patchValidator(opts: PatchValidatorOptions): Validator {
  const { patchSize, patches = 64, batchSize = 2, seed = 0 } = opts;
  let set: PatchSet | undefined;
  return async (model, { norm, channelNorms, dataset, split = "val" }) => {
    const norms = channelNorms ?? [norm];
    const key = JSON.stringify([dataset.root, split, norms]);
    if (set?.key !== key) {
      set = { key, ...await readPatches(dataset, split, norms, patchSize, patches, seed) };
    }
    return await scorePatches(model, set, patchSize, batchSize, dataset.classes);
  };
}

/**
 * Draws `count` patches of `split` (half centred on foreground) and reads them normalised, each
 * channel by its own normalisation (`norms`, one per channel).
 */
async function readPatches(
  dataset: Dataset,
  split: Split,
  norms: readonly Normalization[],
  patchSize: Shape3,
  count: number,
  seed: number,
): Promise<Omit<PatchSet, "key">> {
  const sampler = patchSampler(dataset, { patchSize, seed, split, foregroundFraction: 0.5 });
  const readers = new Map<string, CaseReader>();
  const images: Float32Array[] = [], labels: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const request = sampler.next().value;
    let reader = readers.get(request.caseId);
    if (!reader) {
      reader = await openCase(resolveCase(dataset, request.caseId));
      readers.set(request.caseId, reader);
    }
    const entry = dataset.cases.find((c) => c.id === request.caseId)!;
    const patch = await readPatch(
      reader,
      request,
      patchSize,
      caseChannelNormalizations(entry, norms),
    );
    images.push(patch.image);
    labels.push(patch.label);
  }
  return { images, labels };
}

/** Predicts the patches in batches; Dice per class from TP/FP/FN summed over all of them. */
async function scorePatches(
  model: SegmentationNet,
  set: Omit<PatchSet, "key">,
  patchSize: Shape3,
  batchSize: number,
  names: string[],
): Promise<ValidationResult> {
  const classes = model.config.classes, channels = model.config.inChannels;
  const voxels = patchSize[0] * patchSize[1] * patchSize[2];
  const tp = new Float64Array(classes),
    fp = new Float64Array(classes),
    fn = new Float64Array(classes);
  for (let b0 = 0; b0 < set.images.length; b0 += batchSize) {
    const n = Math.min(batchSize, set.images.length - b0);
    const input = new Float32Array(n * channels * voxels);
    for (let b = 0; b < n; b++) input.set(set.images[b0 + b], b * channels * voxels);
    const logits = scope(() => {
      const x = fromArray([n, channels, ...patchSize], input);
      return keep(model.forward(x, { training: false }));
    });
    const [host] = await readTensors([logits]);
    logits.dispose();
    for (let b = 0; b < n; b++) {
      const pred = argmaxClasses(
        host.subarray(b * classes * voxels, (b + 1) * classes * voxels),
        classes,
      );
      const truth = set.labels[b0 + b];
      for (let i = 0; i < voxels; i++) {
        const p = pred[i], t = truth[i];
        if (p === t) tp[p]++;
        else {
          fp[p]++;
          fn[t]++;
        }
      }
    }
  }
  const dice = Array.from(tp, (t, c) => {
    const d = 2 * t + fp[c] + fn[c];
    return d === 0 ? NaN : (2 * t) / d;
  });
  const metrics: Record<string, number> = {};
  dice.forEach((d, c) => (metrics[`dice/${names[c] ?? c}`] = d));
  const score = nanMean(dice.slice(1));
  metrics["dice/mean_fg"] = score;
  return { metrics, score };
}
