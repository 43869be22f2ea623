/**
 * What a training run reads from its dataset instead of asking the user: the number of classes
 * and of input channels, and the split to validate on. Both are settled before the first step, so nothing known from
 * the dataset can stop a run after training has started.
 */

import type { DatasetManifest, Split } from "../data/dataset.ts";
import { channelCount } from "../data/channels.ts";

/**
 * Config values taken from the dataset, as dotted flags: the layer just above the defaults
 * (below a plan, a config file and the command line), so a run on a two-class dataset needs no
 * `--model.classes 2`.
 */
export function datasetOverrides(
  dataset: Pick<DatasetManifest, "classes" | "channels">,
): Record<string, string> {
  return {
    "model.classes": String(dataset.classes.length),
    "model.inChannels": String(channelCount(dataset)),
  };
}

/** The split a run validates on, and the warning to show when it is not "val". */
export interface ValidationChoice {
  split: Split;
  /** Set when the run validates on its training cases. */
  warning?: string;
}

/**
 * The split to validate on: "val" when it holds a labelled case, else "train" with a warning
 * (small datasets are common in medical imaging: the run still trains, and its validation
 * Dice measures fit, not generalisation). Throws when no case is labelled for training.
 */
export function validationSplit(
  dataset: Pick<DatasetManifest, "name" | "cases">,
): ValidationChoice {
  const labelled = (split: Split) => dataset.cases.filter((c) => c.split === split && c.hasLabel);
  const train = labelled("train");
  if (train.length === 0) {
    const counts = (["train", "val", "test"] as const)
      .map((s) => `${s} ${labelled(s).length}`)
      .join(", ");
    throw new Error(
      `dataset "${dataset.name}" has no labelled training case (labelled cases per split: ` +
        `${counts}); convert it again with labels in labelsTr/, or move cases to "train" in ` +
        "its dataset.json",
    );
  }
  if (labelled("val").length > 0) return { split: "val" };
  return {
    split: "train",
    warning: `dataset "${dataset.name}" has no labelled validation case: validating on its ` +
      `${train.length} training case(s), so validation Dice measures fit, not generalisation ` +
      "(convert with --val 0.2 and more cases for a held-out split)",
  };
}
