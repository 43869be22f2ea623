/**
 * Which series of a study to segment when the user names none: the CT volume with the most
 * slices. Localizers (scouts, topograms), derived images (reformats, secondary captures),
 * single images and other modalities (MR, SEG, SR, PR, …) are skipped, each with its reason.
 *
 * The reason names series by UID, series number, modality and slice count only: a
 * SeriesDescription is free text that may carry a name or a date, so it is read (to spot a
 * localizer) but never repeated.
 */

import type { DicomWebClient } from "./dicomweb.ts";
import { type DicomJsonDataset, jsonNumber, jsonString, jsonValues } from "./dicom_json.ts";

/** What instance-level metadata adds to a QIDO series result. */
export interface SeriesDetail {
  /** ImageType (0008,0008) of the series' images, e.g. ["ORIGINAL", "PRIMARY", "AXIAL"]. */
  imageType?: string[];
  /** Image planes: instances, or frames of a multi-frame instance. */
  sliceCount?: number;
}

/** A series passed over, and why. */
export interface SkippedSeries {
  seriesInstanceUid: string;
  why: string;
}

/** The series chosen, with a one-line reason fit for a log. */
export interface SeriesChoice {
  seriesInstanceUid: string;
  seriesNumber?: number;
  /** Slices (image planes), when the server said. */
  sliceCount?: number;
  reason: string;
  skipped: SkippedSeries[];
}

const TAG = {
  modality: "00080060",
  imageType: "00080008",
  seriesDescription: "0008103E",
  seriesInstanceUid: "0020000E",
  seriesNumber: "00200011",
  instances: "00201209",
  frames: "00280008",
};

/** ImageType values vendors use for planning images (GE, Siemens, Philips, Canon). */
const LOCALIZER_TYPES = new Set(["LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM"]);
/** The same words in a SeriesDescription, for scouts whose ImageType says nothing. */
const LOCALIZER_WORDS = /\b(localizer|localiser|scout|topogram|surview|scanogram)\b/i;

interface Candidate {
  uid: string;
  seriesNumber?: number;
  sliceCount?: number;
}

/**
 * Chooses the series to segment from QIDO-RS series results (`searchSeries`), with optional
 * per-series details from instance metadata (ImageType is an instance attribute; a server may
 * or may not return it at series level). Throws when no series qualifies, listing why each
 * was skipped.
 *
 * @example
 * const choice = chooseSeries(await pacs.searchSeries(study, { includefield: "00080008" }));
 * console.log(choice.reason); // "CT series 1.2.3 (number 2): 120 slices, the most of 2 CT volumes; …"
 */
export function chooseSeries(
  series: DicomJsonDataset[],
  details: ReadonlyMap<string, SeriesDetail> = new Map(),
): SeriesChoice {
  const skipped: SkippedSeries[] = [];
  const candidates: Candidate[] = [];
  for (const dataset of series) {
    const uid = jsonString(dataset, TAG.seriesInstanceUid);
    if (!uid) continue;
    const detail = details.get(uid) ?? {};
    const why = skipReason(dataset, detail);
    if (why) {
      skipped.push({ seriesInstanceUid: uid, why });
      continue;
    }
    candidates.push({
      uid,
      seriesNumber: jsonNumber(dataset, TAG.seriesNumber),
      sliceCount: detail.sliceCount ?? jsonNumber(dataset, TAG.instances),
    });
  }
  const skippedText = skipped.map((s) => `${s.seriesInstanceUid} (${s.why})`).join(", ");
  if (candidates.length === 0) {
    throw new Error(
      `no CT volume series to segment among ${series.length} series` +
        (skipped.length ? `: skipped ${skippedText}` : "") + "; name the series to use explicitly",
    );
  }
  candidates.sort(compareCandidates);
  const [best, second] = candidates;
  const slices = best.sliceCount === undefined
    ? "slice count unknown"
    : `${best.sliceCount} slices`;
  const rank = candidates.length === 1
    ? "the only CT volume"
    : second.sliceCount === best.sliceCount
    ? `tied with another of ${candidates.length} CT volumes on slices, lowest series number`
    : `the most of ${candidates.length} CT volumes`;
  const number = best.seriesNumber === undefined ? "" : ` (number ${best.seriesNumber})`;
  return {
    seriesInstanceUid: best.uid,
    seriesNumber: best.seriesNumber,
    sliceCount: best.sliceCount,
    reason: `CT series ${best.uid}${number}: ${slices}, ${rank}` +
      (skipped.length ? `; skipped ${skippedText}` : ""),
    skipped,
  };
}

/** Why a series is not a CT volume to segment, or undefined when it is one. */
function skipReason(dataset: DicomJsonDataset, detail: SeriesDetail): string | undefined {
  const modality = jsonString(dataset, TAG.modality)?.trim().toUpperCase();
  if (modality !== "CT") return modality ? `${modality}, not CT` : "no modality, not CT";
  const imageType = (detail.imageType ?? jsonValues(dataset, TAG.imageType))
    .filter((v): v is string => typeof v === "string")
    .map((v) => v.trim().toUpperCase());
  const localizer = imageType.find((v) => LOCALIZER_TYPES.has(v));
  if (localizer) return `localizer, ImageType ${localizer}`;
  if (LOCALIZER_WORDS.test(jsonString(dataset, TAG.seriesDescription) ?? "")) {
    return "localizer, by its description";
  }
  if (imageType[0] === "DERIVED") return "derived images, ImageType DERIVED";
  const slices = detail.sliceCount ?? jsonNumber(dataset, TAG.instances);
  if (slices !== undefined && slices < 2) return "a single image, not a volume";
  return undefined;
}

/** Most slices first (unknown counts last), then lowest series number, then UID. */
function compareCandidates(a: Candidate, b: Candidate): number {
  const slices = (b.sliceCount ?? -1) - (a.sliceCount ?? -1);
  if (slices !== 0) return slices;
  const number = (a.seriesNumber ?? Infinity) - (b.seriesNumber ?? Infinity);
  if (number !== 0 && !Number.isNaN(number)) return number;
  return a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0;
}

/**
 * Asks the server for what {@link chooseSeries} needs and chooses: the study's series with
 * ImageType requested at series level, one instance's ImageType for CT series whose result
 * lacks it, and the frame count of single-instance CT series (an enhanced multi-frame CT).
 */
export async function chooseSeriesOnServer(
  client: DicomWebClient,
  studyUid: string,
): Promise<SeriesChoice> {
  const series = await client.searchSeries(studyUid, { includefield: [TAG.imageType] });
  const details = new Map<string, SeriesDetail>();
  for (const dataset of series) {
    const uid = jsonString(dataset, TAG.seriesInstanceUid);
    if (!uid || jsonString(dataset, TAG.modality)?.trim().toUpperCase() !== "CT") continue;
    const hasImageType = jsonValues(dataset, TAG.imageType).length > 0;
    const single = jsonNumber(dataset, TAG.instances) === 1;
    if (hasImageType && !single) continue;
    const [instance] = await client.searchInstances(studyUid, uid, {
      includefield: [TAG.imageType, TAG.frames],
      limit: 1,
    });
    if (!instance) continue;
    const imageType = jsonValues(instance, TAG.imageType).filter((v): v is string =>
      typeof v === "string"
    );
    const frames = jsonNumber(instance, TAG.frames);
    details.set(uid, {
      imageType: imageType.length ? imageType : undefined,
      sliceCount: single && frames !== undefined ? frames : undefined,
    });
  }
  return chooseSeries(series, details);
}
