/**
 * One DICOM Part 10 file parsed by dcmjs into a naturalized data set (attributes by keyword:
 * `Rows`, `ImagePositionPatient`, `PerFrameFunctionalGroupsSequence`, …), with typed readers
 * for the attributes voxseg uses. dcmjs reads the file meta group, every native transfer
 * syntax (inflating deflated ones) and splits encapsulated pixel data into frames.
 */

import dcmjs from "dcmjs";
import { DicomInputError } from "./errors.ts";
import type { NamedBytes } from "./input.ts";

/** A naturalized data set (or sequence item): attribute keyword → value. */
export type Dataset = Record<string, unknown>;

/** A parsed file: its name relative to the input, transfer syntax and data set. */
export interface DicomInstance {
  name: string;
  transferSyntaxUid: string;
  dataset: Dataset;
}

// dcmjs reports VRs it does not know (e.g. the dictionary's "xs" for US-or-SS in implicit VR)
// and short values through this logger; voxseg checks what it relies on itself and reports it
// as a DicomInputError, so the noise would only confuse a reader of the CLI's output.
dcmjs.log.getLogger("validation.dcmjs").setLevel("silent");

/**
 * Parses one file. `withPixels: false` stops before the pixel data (for listing series).
 * Throws {@link DicomInputError} naming the file when dcmjs cannot read it.
 */
export function parseInstance(file: NamedBytes, withPixels = true): DicomInstance {
  const { bytes, name } = file;
  const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes.buffer as ArrayBuffer
    : bytes.slice().buffer;
  let message: { meta: Dataset; dict: Dataset };
  try {
    message = dcmjs.data.DicomMessage.readFile(
      buffer,
      withPixels ? {} : { untilTag: "7FE00010", includeUntilTagValue: false },
    );
  } catch (e) {
    throw new DicomInputError(
      `${name}: not a readable DICOM file (${brief(e)}) — is it truncated or corrupt?`,
    );
  }
  const syntax = (message.meta["00020010"] as { Value?: string[] } | undefined)?.Value?.[0];
  if (!syntax) {
    throw new DicomInputError(`${name}: the file meta information has no TransferSyntaxUID`);
  }
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(message.dict) as Dataset;
  return { name, transferSyntaxUid: syntax.trim(), dataset };
}

/** dcmjs' error text, short; it describes structure, never attribute values. */
function brief(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

/** A string attribute ("" when absent). */
export function text(ds: Dataset, keyword: string): string {
  const v = ds[keyword];
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined || first === null ? "" : String(first).trim();
}

/** Every value of a multi-valued string attribute (ImageType), upper-cased. */
export function texts(ds: Dataset, keyword: string): string[] {
  const v = ds[keyword];
  if (v === undefined || v === null || v === "") return [];
  return (Array.isArray(v) ? v : String(v).split("\\")).map((s) => String(s).trim().toUpperCase());
}

/** A numeric attribute's first value, or undefined (absent, empty or not a number). */
export function num(ds: Dataset | undefined, keyword: string): number | undefined {
  const v = ds?.[keyword];
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined || first === null || first === "") return undefined;
  const n = Number(first);
  return Number.isFinite(n) ? n : undefined;
}

/** A numeric attribute of exactly `n` values, or undefined. */
export function nums(ds: Dataset | undefined, keyword: string, n: number): number[] | undefined {
  const v = ds?.[keyword];
  if (v === undefined || v === null) return undefined;
  const list = (Array.isArray(v) ? v : String(v).split("\\")).map(Number);
  return list.length === n && list.every(Number.isFinite) ? list : undefined;
}

/** The first item of a sequence, or undefined. */
export function item(ds: Dataset | undefined, keyword: string): Dataset | undefined {
  const v = ds?.[keyword];
  if (Array.isArray(v)) return v[0] as Dataset | undefined;
  return v && typeof v === "object" ? v as Dataset : undefined;
}

/** The items of a sequence ([] when absent). */
export function items(ds: Dataset | undefined, keyword: string): Dataset[] {
  const v = ds?.[keyword];
  if (Array.isArray(v)) return v as Dataset[];
  return v && typeof v === "object" ? [v as Dataset] : [];
}
