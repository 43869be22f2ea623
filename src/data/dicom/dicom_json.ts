/**
 * The DICOM JSON model (PS3.18 Annex F) as QIDO-RS and WADO-RS metadata answer it: a dataset is
 * an object of 8-hex-digit tags, each element a VR and a list of values.
 */

/** One attribute in the DICOM JSON model (PS3.18 F.2): its VR and values. */
export interface DicomJsonElement {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}

/** A dataset in the DICOM JSON model, keyed by 8-hex-digit tag (`"0020000E"`). */
export type DicomJsonDataset = Record<string, DicomJsonElement>;

/** The values of `tag` in a DICOM JSON dataset, or [] when absent or empty. */
export function jsonValues(dataset: DicomJsonDataset, tag: string): unknown[] {
  const values = dataset[tag]?.Value;
  return Array.isArray(values) ? values : [];
}

/** The first value of `tag` as a string (numbers stringified), or undefined. */
export function jsonString(dataset: DicomJsonDataset, tag: string): string | undefined {
  const first = jsonValues(dataset, tag)[0];
  if (typeof first === "string") return first;
  if (typeof first === "number") return String(first);
  return undefined;
}

/** The first value of `tag` as a number; IS and DS values may come as numbers or strings. */
export function jsonNumber(dataset: DicomJsonDataset, tag: string): number | undefined {
  const first = jsonValues(dataset, tag)[0];
  const value = typeof first === "string" ? Number(first.trim()) : first;
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}
