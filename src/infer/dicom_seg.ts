/**
 * Segmenting a DICOM series and answering with a DICOM Segmentation: the prediction runs on the
 * series' own grid (resampled to the training spacing and back as for any volume), and the
 * label map becomes a binary Segmentation that references the series' instances, shares its
 * frame of reference, and states each class's coded meaning from the checkpoint (a known or
 * generic code where the training data gave none).
 */

import { segmentMeanings } from "../data/dicom/codes.ts";
import { encodeSegmentation } from "../data/dicom/seg.ts";
import type { DicomSeries } from "../data/dicom/types.ts";
import { modelList, type Models } from "./ensemble.ts";
import type { LoadedModel } from "./model.ts";
import { type Prediction, type PredictOptions, predictVolume } from "./predict.ts";

/** A series segmented: the label map and summary, and the Segmentation's Part 10 bytes. */
export interface SeriesSegmentation extends Prediction {
  segmentation: Uint8Array;
}

/** A model as a Segmentation names it: its display name and checkpoint metadata. */
export type NamedModel = Pick<LoadedModel, "name" | "meta">;

/**
 * The algorithm a Segmentation names: the model (or ensemble) and where its training stood.
 * Names only, never paths (LO values: at most 64 characters).
 */
export function algorithmIdentity(
  models: readonly NamedModel[],
): { name: string; version: string } {
  const names = models.map((m) => m.name ?? "model");
  const name = models.length > 1 ? `ensemble of ${models.length}: ${names.join(", ")}` : names[0];
  const t = models[0].meta.training;
  const score = t.bestMetric === null ? "" : ` ${t.monitor} ${+t.bestMetric.toFixed(4)}`;
  const version = models.length > 1
    ? `${models.length} folds`
    : `epoch ${t.epoch} step ${t.step}${score}`;
  return { name: name.slice(0, 64), version: version.slice(0, 64) };
}

/**
 * The binary Segmentation of `labels` (on `series`' grid) by `models`: one segment per
 * foreground class, coded from the checkpoint's `classCodes` or the known/generic codes.
 */
export function segmentationOf(
  labels: Uint8Array,
  series: DicomSeries,
  models: readonly NamedModel[],
): Uint8Array {
  const { classNames, classCodes } = models[0].meta;
  const identity = algorithmIdentity(models);
  return encodeSegmentation(labels, series, {
    segments: segmentMeanings(classNames, classCodes),
    algorithmName: identity.name,
    algorithmVersion: identity.version,
  });
}

/**
 * Predicts on `series` and writes the result as a DICOM Segmentation of it.
 *
 * @example
 * const series = await readDicomSeries(await loadDicomInput("ct_series/"));
 * const { segmentation, summary } = await segmentSeries(loaded, series);
 * await Deno.writeFile("seg.dcm", segmentation);
 */
export async function segmentSeries(
  models: Models,
  series: DicomSeries,
  opts: PredictOptions = {},
): Promise<SeriesSegmentation> {
  const list = modelList(models);
  // The meanings are checked before the GPU work, so a bad class code fails at once.
  segmentMeanings(list[0].meta.classNames, list[0].meta.classCodes);
  const prediction = await predictVolume(models, series.volume, opts);
  const segmentation = segmentationOf(prediction.labels.data as Uint8Array, series, list);
  return { ...prediction, segmentation };
}
