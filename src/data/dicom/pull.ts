/**
 * A series pulled from a DICOMweb server and read into a volume: the one named, else the CT
 * series with the most slices (localizers and derived images skipped, see ./series_choice.ts).
 * The instances stay in memory; nothing is written to disk.
 */

import type { DicomWebClient } from "./dicomweb.ts";
import type { NamedBytes } from "./input.ts";
import { chooseSeriesOnServer } from "./series_choice.ts";
import { readDicomSeries } from "./series.ts";
import type { DicomSeries } from "./types.ts";

/** What {@link pullSeries} read, and why that series. */
export interface PulledSeries {
  series: DicomSeries;
  /** "requested", or how the series was chosen (UIDs and counts only, no patient data). */
  choice: string;
  /** Instances retrieved. */
  instances: number;
}

/**
 * Retrieves `seriesUid` of `study` (or the chosen series) over WADO-RS and reads it; the
 * reader's problems are {@link DicomInputError}s, the server's {@link DicomWebError}s.
 */
export async function pullSeries(
  client: DicomWebClient,
  study: string,
  seriesUid: string | undefined,
  onStep: (step: "find-series" | "pull", detail: string) => void = () => {},
): Promise<PulledSeries> {
  let uid = seriesUid;
  let choice = "requested";
  if (!uid) {
    onStep("find-series", study);
    const chosen = await chooseSeriesOnServer(client, study);
    uid = chosen.seriesInstanceUid;
    choice = chosen.reason;
  }
  onStep("pull", `series ${uid}`);
  const instances = await client.retrieveSeries(study, uid);
  const files: NamedBytes[] = instances.map((bytes, i) => ({ name: `instance ${i + 1}`, bytes }));
  const series = await readDicomSeries(files, { seriesUid: uid });
  return { series, choice, instances: files.length };
}
