/**
 * What a cross-validation decides after its folds are trained (nnU-Net's last step): every
 * fold's best checkpoint predicts the cases it validated on — together, each training case
 * exactly once, by a model that never trained on it — and the post-processing is chosen on
 * those predictions and stored in every fold's checkpoint, so `infer` with one fold or with
 * the ensemble of all applies it.
 */

import { type Dataset, resolveCase } from "../data/dataset.ts";
import { withSplits } from "../data/folds.ts";
import type { Split } from "../data/dataset.ts";
import { openCase } from "../data/ome_zarr/reader.ts";
import { loadModel } from "./model.ts";
import { predictVolume } from "./predict.ts";
import {
  choosePostprocessing,
  type PostprocessingCase,
  type PostprocessingChoice,
  writePostprocessing,
} from "./postprocess.ts";

/** One trained fold: its best checkpoint and each case's split in it. */
export interface TrainedFold {
  checkpoint: string;
  splits: Record<string, Split>;
}

/**
 * Predicts each fold's labelled val cases with its checkpoint (no post-processing), chooses
 * the post-processing on all of them, and writes it into every fold's checkpoint. Holds every
 * prediction and reference in memory (two bytes a voxel over the training cases).
 */
export async function choosePostprocessingForFolds(
  dataset: Dataset,
  folds: readonly TrainedFold[],
  onCase?: (fold: number, id: string) => void,
): Promise<PostprocessingChoice> {
  const cases: PostprocessingCase[] = [];
  let classes = 0;
  for (const [k, fold] of folds.entries()) {
    const loaded = await loadModel(fold.checkpoint);
    try {
      classes = loaded.meta.model.classes;
      const view = withSplits(dataset, fold.splits);
      for (const entry of view.cases.filter((c) => c.split === "val" && c.hasLabel)) {
        onCase?.(k, entry.id);
        const reader = await openCase(resolveCase(view, entry.id), { cacheBytes: 0 });
        const channels = await reader.readFullChannels();
        const truth = (await reader.readFullLabel()).data as Uint8Array;
        const input = channels.length > 1 ? channels : channels[0];
        const { labels } = await predictVolume(loaded, input, { postprocess: false });
        cases.push({ prediction: labels.data as Uint8Array, truth, shape: channels[0].shape });
      }
    } finally {
      loaded.dispose();
    }
  }
  if (cases.length === 0) {
    throw new Error("the folds have no labelled validation case to choose on");
  }
  const choice = choosePostprocessing(cases, classes);
  const { connectivity, foregroundLcc, perClassLcc } = choice;
  for (const fold of folds) {
    await writePostprocessing(fold.checkpoint, { connectivity, foregroundLcc, perClassLcc });
  }
  return choice;
}
