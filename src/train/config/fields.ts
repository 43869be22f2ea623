/** Every field of the training configuration, its short aliases, and access by dotted path. */

import { PRECISIONS } from "../../ops/precision.ts";
import { MODEL_FIELDS } from "../../nn/model_config.ts";
import { bool, type ConfigField, field, int, num, oneOf } from "../../nn/config_fields.ts";
import {
  AUGMENT_PRESETS,
  MONITORS,
  NORMALISATION_KINDS,
  OPTIMIZER_KINDS,
  SCHEDULE_KINDS,
  THRESHOLD_MODES,
} from "./types.ts";

/** Every field of {@link TrainConfig}, in help order. */
export const configFields: readonly ConfigField[] = [
  ...MODEL_FIELDS,
  field("data.dataset", { kind: "string" }, "dataset folder or URL"),
  field("data.patchSize", { kind: "shape3" }, "patch D,H,W in voxels"),
  field("data.batchSize", int(1, 4096), "patches per step"),
  field("data.foregroundFraction", num(0, 1), "share of foreground patches"),
  field(
    "data.normalisation",
    oneOf(NORMALISATION_KINDS),
    "intensity normalisation",
  ),
  field("data.window", { kind: "range" }, "LOW,HIGH HU for ct-window"),
  field("data.augment.flip", bool, "random flips"),
  field("data.augment.rotate90", bool, "random axial 90° rotations"),
  field("data.augment.intensity", bool, "random intensity scale/shift"),
  field("data.augment.noise", bool, "Gaussian noise"),
  field("data.augment.preset", oneOf(AUGMENT_PRESETS), "basic (the switches) or nnunet (all)"),
  field("data.augment.spatial", bool, "random rotation ±30° and scaling 0.7–1.4"),
  field("data.augment.elastic", bool, "elastic deformation"),
  field("data.augment.inPlane", bool, "spatial and low-res transforms in the axial plane"),
  field("data.augment.blur", bool, "Gaussian blur"),
  field("data.augment.brightness", bool, "multiplicative brightness"),
  field("data.augment.contrast", bool, "contrast"),
  field("data.augment.lowRes", bool, "simulated low resolution"),
  field("data.augment.gamma", bool, "gamma"),
  field("data.workers", int(0, 64), "loader workers (0: main thread)"),
  field("loss.tverskyWeight", num(0), "weight of the Tversky loss"),
  field("loss.ceWeight", num(0), "weight of cross-entropy"),
  field("loss.diceWeight", num(0), "weight of the soft Dice loss"),
  field("loss.alpha", num(0), "Tversky false-positive weight"),
  field("loss.beta", num(0), "Tversky false-negative weight"),
  field("loss.smooth", num(0), "Tversky/Dice smoothing term"),
  field("loss.classWeights", { kind: "weights" }, "per-class weights W0,W1,…"),
  field("loss.includeBackground", bool, "count background in Tversky/Dice"),
  field("loss.batchDice", bool, "pool TP/FP/FN over the batch"),
  field("optimizer.kind", oneOf(OPTIMIZER_KINDS), "optimizer"),
  field("optimizer.lr", num(0, undefined, true), "initial learning rate"),
  field("optimizer.weightDecay", num(0), "weight decay"),
  field("optimizer.momentum", num(0, 1, false, true), "SGD momentum"),
  field("optimizer.nesterov", bool, "SGD Nesterov momentum"),
  field("optimizer.beta1", num(0, 1, false, true), "Adam β1"),
  field("optimizer.beta2", num(0, 1, false, true), "Adam β2"),
  field("optimizer.eps", num(0, undefined, true), "Adam ε"),
  field("optimizer.gradClip", num(0), "max gradient norm (0: no clipping)"),
  field("schedule.kind", oneOf(SCHEDULE_KINDS), "learning-rate schedule"),
  field("schedule.factor", num(0, 1, true, true), "plateau: reduction factor"),
  field("schedule.patience", int(0), "plateau: validations to wait"),
  field("schedule.threshold", num(0), "plateau: improvement threshold"),
  field("schedule.thresholdMode", oneOf(THRESHOLD_MODES), "plateau: threshold kind"),
  field("schedule.cooldown", int(0), "plateau: validations after a reduction"),
  field("schedule.minLr", num(0), "plateau/cosine: learning-rate floor"),
  field("schedule.eps", num(0), "plateau: smallest reduction applied"),
  field("schedule.exponent", num(0, undefined, true), "poly: exponent"),
  field("schedule.warmupSteps", int(0), "cosine: linear warm-up steps"),
  field("epochs", int(1), "epochs"),
  field("itersPerEpoch", int(1), "optimizer steps per epoch"),
  field("valEvery", int(1), "validate every N epochs"),
  field("monitor", oneOf(MONITORS), "metric for best/plateau/stopping"),
  field("earlyStopping.patience", int(0), "validations to wait (0: never stop)"),
  field("seed", int(0, 2 ** 31 - 1), "random seed"),
  field("out", { kind: "string" }, "output folder"),
  field("lossReadbackEvery", int(1), "steps between loss readbacks"),
  field("checkpointEvery", int(0), "steps between mid-epoch checkpoints (0: epoch ends)"),
  field("precision", oneOf(PRECISIONS), "forward conv operands: f32, or f16 with f32 sums"),
];

/**
 * Short flags and the field each stands for (top-level fields such as `--epochs`, `--seed` and
 * `--out` need none: their dotted path is already short).
 */
export const configAliases: Readonly<Record<string, string>> = {
  lr: "optimizer.lr",
  optimizer: "optimizer.kind",
  schedule: "schedule.kind",
  "batch-size": "data.batchSize",
  patch: "data.patchSize",
  dataset: "data.dataset",
  norm: "model.norm",
};

/** Each field by its dotted path. */
export const fieldByPath = new Map(configFields.map((f) => [f.path, f]));
/** The dotted paths of the groups that hold fields (`data`, `data.augment`, …). */
export const groups = new Set(
  configFields.flatMap((f) => {
    const parts = f.path.split(".");
    return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join("."));
  }),
);

/** A config as a tree of plain objects, for access by dotted path. */
export type Tree = Record<string, unknown>;

/** Sets (or, for undefined, deletes) the value at a dotted path. */
export function setPath(tree: Tree, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = tree;
  for (const p of parts.slice(0, -1)) node = node[p] as Tree;
  const last = parts[parts.length - 1];
  if (value === undefined) delete node[last];
  else node[last] = value;
}

/** The value at a dotted path; undefined where the path leads nowhere. */
export function getPath(tree: Tree, path: string): unknown {
  return path.split(".").reduce<unknown>((node, p) => (node as Tree)?.[p], tree);
}
