/**
 * What a STOW-RS answer says (PS3.18 §10.5): the instances stored and those that failed with
 * their reason codes, and one message for a store that did not take everything.
 */

import { type DicomJsonDataset, jsonNumber, jsonString, jsonValues } from "./dicom_json.ts";

/** An instance the server stored. */
export interface StoredInstance {
  sopClassUid?: string;
  sopInstanceUid: string;
  /** Where to retrieve it (RetrieveURL), when the server says. */
  retrieveUrl?: string;
  /** WarningReason (0008,1196), e.g. 0xB000 "coercion of data elements". */
  warning?: number;
}

/** An instance the server refused, with FailureReason (0008,1197). */
export interface FailedInstance {
  sopClassUid?: string;
  sopInstanceUid: string;
  reason?: number;
}

/** What a STOW-RS request stored and what it refused. */
export interface StowResult {
  stored: StoredInstance[];
  failed: FailedInstance[];
}

/** Stored and failed instances from a STOW-RS response (PS3.18 Table 10.5.3-1). */
export function stowResult(dataset: DicomJsonDataset): StowResult {
  const items = (tag: string) =>
    jsonValues(dataset, tag).filter((v): v is DicomJsonDataset => !!v && typeof v === "object");
  const stored = items("00081199").map((item) => ({
    sopClassUid: jsonString(item, "00081150"),
    sopInstanceUid: jsonString(item, "00081155") ?? "",
    retrieveUrl: jsonString(item, "00081190"),
    warning: jsonNumber(item, "00081196"),
  }));
  const failed = items("00081198").map((item) => ({
    sopClassUid: jsonString(item, "00081150"),
    sopInstanceUid: jsonString(item, "00081155") ?? "",
    reason: jsonNumber(item, "00081197"),
  }));
  return { stored, failed };
}

/** PS3.18 Table I.2-2 and PS3.4 status codes a STOW-RS FailureReason may carry. */
const FAILURE_REASONS: Record<number, string> = {
  0x0110: "processing failure",
  0x0111: "duplicate SOP instance",
  0x0122: "SOP class not supported",
  0x0124: "not authorized",
  0xc122: "transfer syntax not supported",
};

/** A STOW-RS FailureReason code in words. */
function failureMeaning(code: number | undefined): string {
  if (code === undefined) return "no reason given";
  const hex = `0x${code.toString(16).toUpperCase().padStart(4, "0")}`;
  const meaning = FAILURE_REASONS[code] ??
    ((code & 0xff00) === 0xa700
      ? "out of resources"
      : (code & 0xff00) === 0xa900
      ? "data set does not match SOP class"
      : (code & 0xf000) === 0xc000
      ? "cannot understand"
      : "unknown reason");
  return `reason ${hex} (${code}) ${meaning}`;
}

/** One message for a STOW-RS answer that did not store every instance sent. */
export function stowFailure(
  shown: string,
  status: number,
  sent: number,
  result: StowResult,
): string {
  const lines = [
    `STOW-RS to ${shown} stored ${result.stored.length} of ${sent} instances (HTTP ${status})`,
  ];
  for (const f of result.failed.slice(0, 5)) {
    lines.push(`failed ${f.sopInstanceUid || "(no SOPInstanceUID)"}: ${failureMeaning(f.reason)}`);
  }
  if (result.failed.length > 5) lines.push(`and ${result.failed.length - 5} more failures`);
  const unaccounted = sent - result.stored.length - result.failed.length;
  if (unaccounted > 0) {
    lines.push(
      `${unaccounted} instance(s) neither stored nor listed as failed: the server rejected them ` +
        "without a reason (not readable as DICOM?)",
    );
  }
  return lines.join("; ");
}
