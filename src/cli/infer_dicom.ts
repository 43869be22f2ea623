/**
 * DICOM for `voxseg infer`: a series as input (a folder, a `.zip`, DICOM files separated by
 * commas, or a study on a DICOMweb server), and a DICOM Segmentation as output (`--out x.dcm`,
 * or stored back to the server the series came from).
 */

import { DicomWebClient } from "../data/dicom/dicomweb.ts";
import { dicomWebAuthFromEnv } from "../data/dicom/dicomweb_auth.ts";
import { DicomInputError } from "../data/dicom/errors.ts";
import { isDicomPart10, isZip } from "../data/dicom/input.ts";
import { pullSeries } from "../data/dicom/pull.ts";
import { loadDicomInput, readDicomSeries } from "../data/dicom/series.ts";
import type { DicomSeries } from "../data/dicom/types.ts";
import { writeNifti } from "../data/nifti.ts";
import { writeFileAtomic } from "../base/atomic.ts";
import { segmentSeries } from "../infer/dicom_seg.ts";
import type { Models } from "../infer/ensemble.ts";
import type { PredictionSummary, PredictOptions } from "../infer/predict.ts";
import { UsageError } from "./usage_error.ts";
import { readHead } from "../base/bytes.ts";

/** True when `--out` names a DICOM Segmentation file. */
export const isDicomOutName = (s: string) => /\.dcm$/i.test(s);

/**
 * True when a local `--in` is DICOM: a `.zip` (or zip bytes), a folder that is not an OME-Zarr
 * case (no zarr.json), a Part 10 file, or a list of Part 10 files.
 */
export async function isDicomLocation(location: string): Promise<boolean> {
  if (/^https?:\/\//i.test(location)) return false;
  const first = location.split(",")[0].trim();
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(first);
  } catch {
    return false; // the NIfTI/case reader names the missing input
  }
  if (info.isDirectory) {
    return !(await Deno.stat(`${first}/zarr.json`).then(() => true, () => false));
  }
  if (/\.zip$/i.test(first)) return true;
  const file = await Deno.open(first);
  try {
    const head = await readHead(file, 132); // the preamble and "DICM"
    return isDicomPart10(head) || isZip(head);
  } finally {
    file.close();
  }
}

/** Reads the series at `location` (the only one, or `seriesUid`); errors become usage errors. */
export async function readSeriesInput(location: string, seriesUid?: string): Promise<DicomSeries> {
  return await asUsage(async () =>
    await readDicomSeries(await loadDicomInput(location), seriesUid ? { seriesUid } : {})
  );
}

/** A study on a DICOMweb server: the series pulled, and the client to store the result with. */
export interface PulledStudy {
  series: DicomSeries;
  client: DicomWebClient;
  /** Why this series (when it was chosen, not named). */
  choice?: string;
}

/**
 * Pulls a series of `study` from the DICOMweb server at `url` (credentials from
 * VOXSEG_DICOMWEB_TOKEN or VOXSEG_DICOMWEB_USER/PASSWORD); with no `seriesUid`, the CT series
 * with the most slices, skipping localizers and derived images.
 */
export async function pullStudy(
  url: string,
  study: string,
  seriesUid: string | undefined,
  log: (line: string) => void,
): Promise<PulledStudy> {
  const client = new DicomWebClient(url, { auth: dicomWebAuthFromEnv(Deno.env) });
  const pulled = await asUsage(() => pullSeries(client, study, seriesUid));
  const chosen = pulled.choice !== "requested";
  if (chosen) log(`series: ${pulled.choice}`);
  log(`pulled ${pulled.instances} instance(s) of series ${pulled.series.seriesInstanceUid}`);
  return { series: pulled.series, client, ...(chosen ? { choice: pulled.choice } : {}) };
}

/** What a DICOM prediction wrote and stored. */
export interface DicomPredictResult {
  summary: PredictionSummary;
  written?: string;
  /** The SOP instance UID of the Segmentation stored on the server. */
  stored?: string;
}

/**
 * Segments `series`; writes the Segmentation to `out` (`.dcm`) or the label map as NIfTI with
 * the series' geometry (`.nii`, `.nii.gz`), and stores the Segmentation with `store` when given.
 */
export async function predictSeries(
  models: Models,
  series: DicomSeries,
  out: string | undefined,
  opts: PredictOptions,
  store?: DicomWebClient,
): Promise<DicomPredictResult> {
  const { labels, summary, segmentation } = await segmentSeries(models, series, opts);
  if (out && isDicomOutName(out)) await writeFileAtomic(out, segmentation);
  else if (out) await writeNifti(out, labels, { description: "voxseg labels" });
  let stored: string | undefined;
  if (store) {
    const result = await store.store(series.studyInstanceUid, [segmentation]);
    stored = result.stored[0]?.sopInstanceUid;
  }
  return { summary, ...(out ? { written: out } : {}), ...(stored ? { stored } : {}) };
}

/** Runs `fn`, turning a {@link DicomInputError} into a {@link UsageError} (exit 2, no trace). */
async function asUsage<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof DicomInputError) throw new UsageError(e.message);
    throw e;
  }
}
