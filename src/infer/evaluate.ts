/**
 * Evaluation of a model on a dataset split: predict every labelled case of the split, compare
 * with its reference labels class by class ({@link segmentationMetrics}), and average over
 * cases. A mean skips the cases where the metric is undefined (NaN); an HD95 of +Infinity
 * (one of the two masks empty) is left out of the HD95 mean and counted in `hd95Infinite`.
 */

import { openCase } from "../data/ome_zarr/reader.ts";
import { type Dataset, resolveCase, type Split } from "../data/dataset.ts";
import type { Shape3 } from "../data/volume.ts";
import { type ClassMetrics, nanMean, segmentationMetrics } from "./metrics.ts";
import { type LoadedModel, type PredictOptions, predictVolume } from "./predict.ts";

/** One case's results. */
export interface CaseEvaluation {
  id: string;
  shape: Shape3;
  spacingMm: Shape3;
  /** Metrics by class name, foreground classes only. */
  metrics: Record<string, ClassMetrics>;
  /** Seconds for prediction and for the metrics. */
  predictSeconds: number;
  metricSeconds: number;
}

/** Per-class means over cases, with how many cases each mean covers. */
export type MeanMetrics = Record<string, ClassMetrics & { cases: number; hd95Infinite: number }>;

export interface EvaluateOptions extends PredictOptions {
  /** Default "test". */
  split?: Split;
  /** Evaluate at most this many cases (the first of the split). */
  maxCases?: number;
  /** Called when a case starts, with its index and the number of cases. */
  onCase?(id: string, index: number, total: number): void;
}

/** The labelled cases of a split; throws naming the split sizes when there are none. */
export function casesToEvaluate(dataset: Dataset, split: Split, maxCases = Infinity) {
  const cases = dataset.cases.filter((c) => c.split === split && c.hasLabel).slice(0, maxCases);
  if (cases.length === 0) {
    const sizes = ["train", "val", "test"].map((s) =>
      `${s} ${dataset.cases.filter((c) => c.split === s && c.hasLabel).length}`
    ).join(", ");
    throw new Error(
      `dataset "${dataset.name}" has no labelled ${split} cases (labelled cases per split: ` +
        `${sizes}); choose another --split`,
    );
  }
  return cases;
}

/**
 * Predicts and scores each labelled case of a split, yielding one result per case.
 *
 * @example
 * const results = [];
 * for await (const r of evaluateDataset(loaded, await readDataset("data/synth"))) results.push(r);
 * const mean = meanMetrics(results);
 */
export async function* evaluateDataset(
  loaded: LoadedModel,
  dataset: Dataset,
  opts: EvaluateOptions = {},
): AsyncGenerator<CaseEvaluation> {
  const cases = casesToEvaluate(dataset, opts.split ?? "test", opts.maxCases);
  const names = loaded.meta.classNames;
  const foreground = names.map((_, c) => c).slice(1);
  for (const [index, entry] of cases.entries()) {
    opts.onCase?.(entry.id, index, cases.length);
    const reader = await openCase(resolveCase(dataset, entry.id), { cacheBytes: 0 });
    const channels = await reader.readFullChannels();
    const image = channels[0];
    const reference = await reader.readFullLabel();
    const t0 = performance.now();
    const { labels } = await predictVolume(loaded, channels.length > 1 ? channels : image, opts);
    const t1 = performance.now();
    const values = segmentationMetrics(
      labels.data as Uint8Array,
      reference.data as Uint8Array,
      image.shape,
      image.spacingMm,
      foreground,
    );
    yield {
      id: entry.id,
      shape: image.shape,
      spacingMm: image.spacingMm,
      metrics: Object.fromEntries(foreground.map((c, i) => [names[c], values[i]])),
      predictSeconds: (t1 - t0) / 1000,
      metricSeconds: (performance.now() - t1) / 1000,
    };
  }
}

/** Per-class means over cases; see the module comment for undefined and infinite values. */
export function meanMetrics(results: readonly CaseEvaluation[]): MeanMetrics {
  const classes = [...new Set(results.flatMap((r) => Object.keys(r.metrics)))];
  const out: MeanMetrics = {};
  for (const name of classes) {
    const rows = results.map((r) => r.metrics[name]).filter(Boolean);
    const mean = (k: keyof ClassMetrics) => nanMean(rows.map((m) => m[k]));
    out[name] = {
      dice: mean("dice"),
      hd95Mm: mean("hd95Mm"),
      precision: mean("precision"),
      recall: mean("recall"),
      predMl: mean("predMl"),
      refMl: mean("refMl"),
      volumeDiffMl: mean("volumeDiffMl"),
      volumeDiffRel: mean("volumeDiffRel"),
      cases: rows.length,
      hd95Infinite: rows.filter((m) => m.hd95Mm === Infinity).length,
    };
  }
  return out;
}
