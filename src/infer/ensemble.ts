/**
 * Ensembles of checkpoints — the folds of a cross-validation, `voxseg infer --model a,b,c` —
 * whose softmax probabilities prediction averages before the arg-max (src/infer/predict.ts,
 * src/infer/sliding_window.ts). The models must agree on everything that decides what a voxel
 * of the input means to them: classes (names and count), input channels, intensity
 * normalisation, training spacing and patch size (the windows are shared); and, unless it is
 * switched off, on their post-processing.
 */

import { channelNormalizations } from "../data/channels.ts";
import type { Postprocessing } from "../nn/checkpoint.ts";
import { type LoadedModel, loadModel } from "./model.ts";

/** Models that cannot be ensembled; the message names the first disagreement. */
export class EnsembleError extends Error {
  override name = "EnsembleError";
}

/** One model or an ensemble, as prediction takes them. */
export type Models = LoadedModel | readonly LoadedModel[];

/** The models as a non-empty list. */
export function modelList(models: Models): readonly LoadedModel[] {
  const list = Array.isArray(models) ? models as readonly LoadedModel[] : [models as LoadedModel];
  if (list.length === 0) throw new EnsembleError("an ensemble needs at least one model");
  return list;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const label = (m: LoadedModel, i: number) => `model ${i + 1}${m.name ? ` ("${m.name}")` : ""}`;

/** What each model must share with the first, and how to show it. */
const AGREEMENT: { what: string; get(m: LoadedModel): unknown; show?(v: unknown): string }[] = [
  { what: "classes", get: (m) => m.meta.classNames, show: (v) => (v as string[]).join(", ") },
  { what: "input channels", get: (m) => m.meta.model.inChannels },
  { what: "intensity normalisation", get: (m) => channelNormalizations(m.meta) },
  {
    what: "training spacing",
    get: (m) => m.meta.spacingMm,
    show: (v) => `${(v as number[]).join("×")} mm`,
  },
  { what: "patch size", get: (m) => m.meta.patchSize, show: (v) => (v as number[]).join("×") },
];

/**
 * Throws {@link EnsembleError} naming the first thing a model does not share with the first
 * model (see the module comment); `postprocess` false skips the post-processing check.
 */
export function checkEnsemble(models: readonly LoadedModel[], postprocess = true): void {
  const [first] = models;
  const checks = postprocess
    ? [...AGREEMENT, {
      what: "post-processing",
      get: (m: LoadedModel) => m.meta.postprocessing ?? "none",
    }]
    : AGREEMENT;
  for (const [i, m] of models.entries()) {
    for (const check of checks) {
      const { what } = check;
      const a = check.get(first), b = check.get(m);
      if (same(a, b)) continue;
      const fmt = "show" in check && check.show ? check.show : (v: unknown) => JSON.stringify(v);
      throw new EnsembleError(
        `models disagree on ${what}: ${label(first, 0)} has ${fmt(a)}, ${label(m, i)} ` +
          `${fmt(b)}; an ensemble averages its models' probabilities voxel by voxel, so they ` +
          "must share classes, input channels, normalisation, spacing and patch size (train " +
          "the folds from one configuration)" +
          (what === "post-processing"
            ? "; to ensemble them without post-processing, switch it off (--no-postprocess)"
            : ""),
      );
    }
  }
}

/**
 * The post-processing an ensemble applies: the one its models share (see
 * {@link checkEnsemble}), or undefined when they have none.
 */
export function ensemblePostprocessing(models: readonly LoadedModel[]): Postprocessing | undefined {
  checkEnsemble(models);
  return models[0].meta.postprocessing;
}

/**
 * Loads several checkpoints for an ensemble and checks that they agree; on any failure frees
 * the models already loaded and rethrows.
 *
 * @example
 * const folds = await loadModels(["runs/f0/best.safetensors", "runs/f1/best.safetensors"]);
 * const { labels } = await predictVolume(folds, ct);
 * for (const m of folds) m.dispose();
 */
export async function loadModels(
  paths: readonly string[],
  postprocess = true,
): Promise<LoadedModel[]> {
  if (paths.length === 0) throw new EnsembleError("an ensemble needs at least one model");
  const loaded: LoadedModel[] = [];
  try {
    for (const path of paths) loaded.push(await loadModel(path));
    checkEnsemble(loaded, postprocess);
    return loaded;
  } catch (e) {
    for (const m of loaded) m.dispose();
    throw e;
  }
}
