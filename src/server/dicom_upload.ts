/**
 * A DICOM series uploaded for a synchronous prediction: a zip of the series' files
 * (`Content-Type: application/zip`) or one instance per part of a `multipart/related;
 * type="application/dicom"` body, as STOW-RS sends them. Read into a series by the DICOM
 * reader (src/data/dicom/), under the memory budget the route reserved before the body was read:
 *
 * 1. the body, whole (a zip's directory is at its end): Content-Length bytes, or --max-body;
 * 2. a zip's entries, by the sizes its directory declares, before any is inflated — more than
 *    the route's expansion cap (4 × --max-body) is refused as a zip bomb (400), more than the
 *    budget is 413, and fflate inflates no entry past its declared size;
 * 3. the images, by Rows × Columns × frames from the files' headers, before any pixel is
 *    decoded: 8 bytes a voxel while the reader decodes and stacks them;
 * 4. once read, the volume and its label map and answer only.
 *
 * Every problem with what was sent is a 400 with the reader's message (names the parts or zip
 * entries, never a path or a patient attribute).
 */

import { DicomInputError } from "../data/dicom/errors.ts";
import {
  declaredZipBytes,
  isDicomPart10,
  type NamedBytes,
  unzipDicom,
} from "../data/dicom/input.ts";
import { num, parseInstance } from "../data/dicom/instance.ts";
import { BodyTooLargeError, parseMediaType, parseMultipart } from "../data/dicom/multipart.ts";
import { readDicomSeries } from "../data/dicom/series.ts";
import type { DicomSeries } from "../data/dicom/types.ts";
import type { AdmissionContext, Reservation } from "./admission.ts";
import { ApiError } from "./errors.ts";
import { formatBytes } from "./middleware/body_limit/body_limit.ts";
import { readUploadBody } from "./request_body.ts";

/** Content types of a zipped DICOM series. */
export const DICOM_ZIP_TYPES = ["application/zip", "application/x-zip-compressed"] as const;
/** The content type of DICOM instances one per part (STOW-RS). */
export const DICOM_MULTIPART_TYPE = "multipart/related";

/** How a DICOM series arrives: zipped, or one instance per multipart part (with its boundary). */
export type DicomUpload = { kind: "zip" } | { kind: "multipart"; boundary: string };

/**
 * The DICOM form of a request's Content-Type, checked before the body is read; undefined for
 * the other (NIfTI) types. A `multipart/related` without a boundary is a 400, one whose `type`
 * is not `application/dicom` a 415.
 */
export function dicomUploadOf(contentType: string | undefined): DicomUpload | undefined {
  const { type, params } = parseMediaType(contentType ?? "");
  if ((DICOM_ZIP_TYPES as readonly string[]).includes(type)) return { kind: "zip" };
  if (type !== DICOM_MULTIPART_TYPE) return undefined;
  const partType = params.type?.trim().toLowerCase();
  if (partType !== undefined && partType !== "application/dicom") {
    throw new ApiError(
      415,
      "unsupported_media_type",
      `multipart/related of type ${JSON.stringify(partType.slice(0, 80))} is not accepted; send ` +
        'multipart/related; type="application/dicom" with one DICOM instance per part',
    );
  }
  if (!params.boundary) {
    throw new ApiError(
      400,
      "invalid_multipart",
      "the multipart/related Content-Type names no boundary; send " +
        'multipart/related; type="application/dicom"; boundary=… (the delimiter of the parts)',
    );
  }
  return { kind: "multipart", boundary: params.boundary };
}

/** What reading an upload needs from the route. */
export interface DicomUploadOptions {
  /** The body's Content-Length, when it has one. */
  declared?: number;
  /** --max-body: the limit of a multipart body. */
  maxBodyBytes: number;
  /** What a zip's entries may expand to, in all (4 × --max-body); more is a zip bomb. */
  maxExpandedBytes: number;
  /** The request's share of the memory budget, resized as the sizes become known. */
  share: Reservation;
  /** Retry-After of a 503 from the budget. */
  retryAfterSeconds: () => number;
  /** The SeriesInstanceUID to read when the upload holds several series (`?series=`). */
  seriesUid?: string;
}

/**
 * The series in the request's body, read under the memory budget (see the module comment).
 * Leaves `share` at what the volume, its label map and the answer need.
 */
export async function readDicomUpload(
  request: Request,
  upload: DicomUpload,
  options: DicomUploadOptions,
): Promise<DicomSeries> {
  const { share } = options;
  const { body, admission } = await readUploadBody(request, options, {
    code: "invalid_dicom",
    message: "the body is empty; send a zip of the series' DICOM files, or multipart/related DICOM",
  });
  const files = upload.kind === "zip"
    ? unzipUpload(body, options, admission)
    : multipartFiles(body, upload.boundary, options.maxBodyBytes);
  const held = share.bytes;
  const voxels = imageVoxels(files);
  share.resize(
    held + filesBytes(files) + 8 * voxels,
    admission(`the series' images (${voxels} voxels)`),
  );
  const series = await readSeries(files, options.seriesUid);
  const volumeVoxels = series.volume.data.length;
  // The volume, and its uint8 label map and encoded answer (a SEG or NIfTI of at most that).
  share.resize(series.volume.data.byteLength + 2 * volumeVoxels, admission("the volume"));
  return series;
}

/** The series read from `files`; a {@link DicomInputError} becomes a 400 with its message. */
async function readSeries(files: NamedBytes[], seriesUid?: string): Promise<DicomSeries> {
  try {
    return await readDicomSeries(files, seriesUid === undefined ? {} : { seriesUid });
  } catch (e) {
    throw asInvalidDicom(e);
  }
}

/**
 * A DICOM reader's error as the 400 a client gets: the command-line flag its message may
 * suggest becomes the route's query parameter.
 */
export function asInvalidDicom(e: unknown, seriesHint = "?series=UID"): unknown {
  if (!(e instanceof DicomInputError)) return e;
  return new ApiError(400, "invalid_dicom", e.message.replaceAll("--series UID", seriesHint));
}

/** The DICOM entries of a zipped upload, inflated only after their declared sizes fit. */
function unzipUpload(
  zip: Uint8Array,
  options: DicomUploadOptions,
  admission: (what: string) => AdmissionContext,
): NamedBytes[] {
  let declared: number;
  try {
    declared = declaredZipBytes(zip, "the zip");
  } catch (e) {
    throw asInvalidDicom(e);
  }
  const cap = options.maxExpandedBytes;
  if (declared > cap) {
    throw new ApiError(
      400,
      "invalid_dicom",
      `the zip's entries expand to ${formatMiB(declared)}, more than the ${formatBytes(cap)} an ` +
        `upload may expand to (${cap / options.maxBodyBytes} × --max-body): a zip bomb, or more ` +
        "than one series; send the series alone",
    );
  }
  options.share.resize(zip.length + declared, admission("the zip's entries"));
  try {
    return unzipDicom(zip, "the zip", { maxBytes: declared });
  } catch (e) {
    throw asInvalidDicom(e);
  }
}

/** The parts of a multipart/related body, each a DICOM Part 10 instance (views into `body`). */
function multipartFiles(body: Uint8Array, boundary: string, maxBytes: number): NamedBytes[] {
  let parts;
  try {
    parts = parseMultipart(body, boundary, { maxTotalBytes: maxBytes });
  } catch (e) {
    if (e instanceof BodyTooLargeError) {
      throw new ApiError(413, "payload_too_large", `the body is over ${formatBytes(maxBytes)}`);
    }
    throw new ApiError(
      400,
      "invalid_multipart",
      `not a readable multipart/related body (${(e as Error).message}); send one DICOM ` +
        "instance per part, between delimiters of the Content-Type's boundary",
    );
  }
  if (parts.length === 0) {
    throw new ApiError(400, "invalid_dicom", "the multipart body has no parts; send the series");
  }
  return parts.map((part, i) => {
    if (!isDicomPart10(part.body)) {
      throw new ApiError(
        400,
        "invalid_dicom",
        `part ${i + 1} of the multipart body is not a DICOM Part 10 instance (no "DICM" at ` +
          "byte 128); send one DICOM file per part",
      );
    }
    return { name: `part ${i + 1}`, bytes: part.body };
  });
}

/**
 * Voxels of every image in `files`, by Rows × Columns × NumberOfFrames in their headers: an
 * upper bound on the volume of any one series of them, known before a pixel is decoded.
 */
function imageVoxels(files: readonly NamedBytes[]): number {
  let voxels = 0;
  for (const file of files) {
    let ds;
    try {
      ds = parseInstance(file, false).dataset;
    } catch (e) {
      throw asInvalidDicom(e);
    }
    const n = (num(ds, "Rows") ?? 0) * (num(ds, "Columns") ?? 0) * (num(ds, "NumberOfFrames") ?? 1);
    voxels += Number.isFinite(n) && n > 0 ? n : 0;
  }
  return voxels;
}

function filesBytes(files: readonly NamedBytes[]): number {
  return files.reduce((sum, f) => sum + f.bytes.length, 0);
}

const formatMiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
