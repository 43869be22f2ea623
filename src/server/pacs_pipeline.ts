/**
 * The DICOM pipeline of PACS prediction jobs (the `pacs.predict` hook of src/server/jobs):
 * find the series (the one named, else the CT series with the most slices, skipping localizers
 * and derived images), pull it over WADO-RS, read it into a volume in HU, segment it on the
 * GPU lane, and answer with a DICOM Segmentation — stored back to the same PACS over STOW-RS
 * when asked, and written to the job's output when one was named (`.dcm` the Segmentation,
 * `.nii`/`.nii.gz` the label map).
 *
 * Pulled instances stay in memory for the job's life and are never written to disk: the edge
 * box keeps no copy of a study it was sent to segment.
 */

import { DicomWebClient } from "../data/dicom/dicomweb.ts";
import { DicomInputError } from "../data/dicom/errors.ts";
import { pullSeries } from "../data/dicom/pull.ts";
import { segmentationOf } from "../infer/dicom_seg.ts";
import { ApiError } from "./errors.ts";
import type { PacsHooks, PacsPredictInput, PacsPredictOutput } from "./jobs/deps.ts";
import { encodeOutput } from "./jobs/predict_job.ts";

/** The hooks `createApp` takes to run PACS prediction jobs. */
export const DICOM_PIPELINE: PacsHooks = { predict: predictFromPacs };

async function predictFromPacs(input: PacsPredictInput): Promise<PacsPredictOutput> {
  const { pacs, study, signal } = input;
  const client = new DicomWebClient(pacs.url, {
    ...(pacs.auth.kind === "none" ? {} : { auth: pacs.auth }),
    signal,
  });
  let pulled;
  try {
    pulled = await pullSeries(
      client,
      study,
      input.series,
      (phase, message) => input.onProgress(phase === "pull" ? { phase, message } : { phase }),
    );
  } catch (e) {
    if (e instanceof DicomInputError) throw new ApiError(422, "invalid_dicom", e.message);
    throw e;
  }
  const { series, choice } = pulled;
  const seriesUid = series.seriesInstanceUid;
  signal.throwIfAborted();
  const { labels, summary, model } = await input.segment(series.volume);
  const segmentation = segmentationOf(labels.data as Uint8Array, series, [model]);
  if (input.output) {
    const { name, write } = input.output;
    await write(
      /\.dcm$/i.test(name)
        ? segmentation
        : await encodeOutput(name, labels, { volume: series.volume, series }, model),
    );
  }
  let stored: PacsPredictOutput["stored"];
  if (input.store) {
    input.onProgress({ phase: "store" });
    const result = await client.store(study, [segmentation]);
    const uid = result.stored[0]?.sopInstanceUid;
    if (uid) stored = { sopInstanceUid: uid };
  }
  return { seriesUid, choice, summary, ...(stored ? { stored } : {}) };
}
