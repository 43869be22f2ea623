/**
 * The input channels of a model of several (CT + PET, MRI sequences) uploaded for a synchronous
 * prediction: a `multipart/form-data` body with one 3D NIfTI (`.nii` or `.nii.gz`) per part, in
 * channel order — `curl -F c0=@a_0000.nii.gz -F c1=@a_0001.nii.gz`, the channels
 * `voxseg infer --in a_0000.nii.gz,a_0001.nii.gz` takes. Read under the memory budget the route
 * reserved before the body was read:
 *
 * 1. the body, whole (a multipart body is split on its delimiters): Content-Length bytes, or
 *    --max-body;
 * 2. each part's NIfTI header, before its voxels are read or inflated: the reservation grows
 *    by what the channel needs (413 over the budget, or a part over 4 × --max-body inflated),
 *    so a gzip bomb stops at its header;
 * 3. once every channel is decoded, the channels, the label map and its file only.
 *
 * The channels must be as many as the model's input channels and lie on one voxel grid (422
 * naming the part that differs and what to do); parts are named by their place, never by a
 * file name the client sent.
 */

import {
  InvalidNiftiError,
  type NiftiHeader,
  niftiShape,
  type NiftiSizes,
  type NiftiStreamResult,
  readNiftiStream,
} from "../data/nifti.ts";
import { checkChannelGrids } from "../data/channels.ts";
import { BodyTooLargeError, parseMediaType, parseMultipart } from "../data/dicom/multipart.ts";
import type { Reservation } from "./admission.ts";
import { ApiError } from "./errors.ts";
import { channelCountError } from "./inference.ts";
import { formatBytes } from "./middleware/body_limit/body_limit.ts";
import { readUploadBody } from "./request_body.ts";

/** The content type of channels one per part. */
export const CHANNELS_MULTIPART_TYPE = "multipart/form-data";

/** More parts than this is not a list of channels. */
const MAX_PARTS = 64;

/** How a client sends the channels of a multi-channel model, for error messages. */
export const CHANNELS_HOW = "send them as multipart/form-data, one 3D NIfTI (.nii or .nii.gz) " +
  "per part in channel order (curl -F c0=@a_0000.nii.gz -F c1=@a_0001.nii.gz …)";

/**
 * The boundary of a `multipart/form-data` Content-Type (checked before the body is read);
 * undefined for the other types. One without a boundary is a 400.
 */
export function channelUploadOf(contentType: string | undefined): { boundary: string } | undefined {
  const { type, params } = parseMediaType(contentType ?? "");
  if (type !== CHANNELS_MULTIPART_TYPE) return undefined;
  if (!params.boundary) {
    throw new ApiError(
      400,
      "invalid_multipart",
      "the multipart/form-data Content-Type names no boundary; send multipart/form-data; " +
        "boundary=… (curl -F sets it)",
    );
  }
  return { boundary: params.boundary };
}

/** What reading the channels needs from the route. */
export interface ChannelUploadOptions {
  /** The body's Content-Length, when it has one. */
  declared?: number;
  /** --max-body: the limit of the whole body. */
  maxBodyBytes: number;
  /** What one part may inflate to (4 × --max-body). */
  maxExpandedBytes: number;
  /** The request's share of the memory budget, resized as the sizes become known. */
  share: Reservation;
  /** Retry-After of a 503 from the budget. */
  retryAfterSeconds: () => number;
  /** The model's name and input channels: the parts must be as many. */
  model: string;
  channels: number;
}

/** Host bytes of the answer to a volume of `voxels`: the uint8 label map and its NIfTI file. */
const answerBytes = (voxels: number) => 2 * voxels + 352;

/**
 * The channels in the request's body, in order, decoded under the memory budget (see the module
 * comment). Leaves `share` at what the channels, the label map and the answer need.
 */
export async function readChannelUpload(
  request: Request,
  upload: { boundary: string },
  options: ChannelUploadOptions,
): Promise<NiftiStreamResult[]> {
  const { share } = options;
  const { body, admission } = await readUploadBody(request, options, {
    code: "invalid_multipart",
    message: `the body is empty; ${CHANNELS_HOW}`,
  });
  let parts;
  try {
    parts = parseMultipart(body, upload.boundary, {
      maxTotalBytes: options.maxBodyBytes,
      maxParts: MAX_PARTS,
    });
  } catch (e) {
    if (e instanceof BodyTooLargeError) {
      throw new ApiError(413, "payload_too_large", `${e.message} (--max-body)`);
    }
    throw new ApiError(
      400,
      "invalid_multipart",
      `the multipart/form-data body cannot be read: ${(e as Error).message}; ${CHANNELS_HOW}`,
    );
  }
  if (parts.length !== options.channels) {
    throw channelCountError(
      options.model,
      options.channels,
      parts.length,
      `${parts.length} part(s)`,
      CHANNELS_HOW,
    );
  }
  const channels: NiftiStreamResult[] = [];
  let decoded = 0, voxels = 0;
  for (const [c, part] of parts.entries()) {
    const what = `part ${c + 1} (channel ${c})`;
    const onHeader = (header: NiftiHeader, sizes: NiftiSizes, gzipped: boolean) => {
      const max = gzipped ? options.maxExpandedBytes : options.maxBodyBytes;
      if (sizes.fileBytes > max) {
        throw new ApiError(
          413,
          "payload_too_large",
          `${what}: its NIfTI header describes a ${niftiShape(header).join("×")} volume of ` +
            `${formatBytes(sizes.fileBytes)}, over the ${formatBytes(max)} a part may take`,
        );
      }
      // The body, the channels so far and this one, and the answer (on channel 0's grid).
      share.resize(
        body.length + decoded + sizes.decodedBytes + answerBytes(voxels || sizes.voxels),
        admission(`${what}, ${niftiShape(header).join("×")}`),
      );
    };
    try {
      const one = await readNiftiStream(singleChunk(part.body), { onHeader });
      decoded += one.volume.data.byteLength;
      voxels ||= one.volume.data.length;
      channels.push(one);
    } catch (e) {
      if (e instanceof InvalidNiftiError) {
        throw new ApiError(
          400,
          "invalid_nifti",
          `${what} is not a readable NIfTI volume: ${e.message}`,
        );
      }
      throw e;
    }
  }
  try {
    checkChannelGrids(
      channels.map((ch) => ch.volume),
      channels.map((_, c) => `part ${c + 1}`),
    );
  } catch (e) {
    throw new ApiError(422, "channel_grid_mismatch", (e as Error).message);
  }
  // The body goes: what stays is the channels, the label map and its file.
  share.resize(decoded + answerBytes(voxels), admission("the channels"));
  return channels;
}

/** A stream of one chunk: a part's bytes, as the NIfTI reader takes a body. */
function singleChunk(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}
