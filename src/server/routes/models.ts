/**
 * Models: list, detail, and synchronous prediction of one volume — a NIfTI body, streamed, a
 * DICOM series (../dicom_upload.ts), or for a model of several input channels one NIfTI per
 * multipart/form-data part (../channel_upload.ts) — answered as a label map, a DICOM
 * Segmentation or JSON.
 */

import type { Context } from "hono";
import { segmentMeanings } from "../../data/dicom/codes.ts";
import { parseMediaType } from "../../data/dicom/multipart.ts";
import type { DicomSeries } from "../../data/dicom/types.ts";
import { gzip } from "../../data/gzip.ts";
import {
  encodeNifti,
  InvalidNiftiError,
  type NiftiHeader,
  niftiShape,
  type NiftiSizes,
  type NiftiStreamResult,
  readNiftiStream,
} from "../../data/nifti.ts";
import type { Volume } from "../../data/volume.ts";
import { type NamedModel, segmentationOf } from "../../infer/dicom_seg.ts";
import type { PredictOptions } from "../../infer/predict.ts";
import type { Reservation } from "../admission.ts";
import {
  DICOM_MULTIPART_TYPE,
  DICOM_ZIP_TYPES,
  dicomUploadOf,
  readDicomUpload,
} from "../dicom_upload.ts";
import { ApiError } from "../errors.ts";
import type { ModelSummary } from "../models.ts";
import { channelCountError, metaChannels, predictRequest } from "../inference.ts";
import {
  CHANNELS_HOW,
  CHANNELS_MULTIPART_TYPE,
  channelUploadOf,
  readChannelUpload,
} from "../channel_upload.ts";
import { checkBoolean, checkOverlap, checkPrecision, checkUid } from "../jobs/requests.ts";
import { incompleteBody, isConnectionError } from "../request_body.ts";
import { errorResponse, queueFull, ref } from "./schemas.ts";
import { GUNZIP_FACTOR, requireGpu, type ServerContext } from "../context.ts";
import type { RouteSpec } from "./table.ts";
import { formatBytes } from "../middleware/body_limit/body_limit.ts";
import { QueueFullError } from "../scheduler.ts";

/** Request body types taken as NIfTI (`.nii` or `.nii.gz` bytes). */
export const NIFTI_TYPES = [
  "application/octet-stream",
  "application/gzip",
  "application/x-gzip",
  "application/x-nifti*",
  "application/nifti*",
  "image/x-nifti*",
  "image/nifti*",
] as const;

/**
 * Request body types of a synchronous prediction: NIfTI, a DICOM series, or the channels of a
 * model of several, one NIfTI per multipart/form-data part.
 */
export const PREDICT_TYPES: readonly string[] = [
  ...NIFTI_TYPES,
  ...DICOM_ZIP_TYPES,
  DICOM_MULTIPART_TYPE,
  CHANNELS_MULTIPART_TYPE,
];

export function modelRoutes(ctx: ServerContext): RouteSpec[] {
  const nameParam = "name";
  /** Synchronous predictions admitted and still reading their body (not yet in the GPU queue). */
  let reading = 0;
  return [
    {
      method: "GET",
      path: "/v1/models",
      tag: "models",
      summary: "Models: checkpoints in --models and those of finished training jobs",
      responses: {
        200: {
          description: "every model",
          schema: {
            type: "object",
            properties: { models: { type: "array", items: ref("Model") } },
          },
        },
      },
      handler: async (c) => {
        const entries = await ctx.models.entries();
        const models: ModelSummary[] = [];
        for (const entry of entries) {
          try {
            const { meta: _meta, ...summary } = await ctx.models.summary(entry);
            models.push(summary);
          } catch (e) {
            if (!(e instanceof ApiError)) throw e; // else: removed while listing
          }
        }
        return c.json({ models });
      },
    },
    {
      method: "GET",
      path: `/v1/models/:${nameParam}`,
      tag: "models",
      summary: "One model with its checkpoint metadata (classes, patch, spacing, training)",
      responses: {
        200: { description: "the model", schema: ref("Model") },
        404: errorResponse("no such model"),
      },
      handler: async (c) => {
        const entry = await ctx.models.entry(c.req.param(nameParam)!);
        return c.json(await ctx.models.summary(entry));
      },
    },
    {
      method: "POST",
      path: `/v1/models/:${nameParam}/predict`,
      tag: "models",
      summary: "Segment one volume now — NIfTI (one per channel as multipart/form-data for a " +
        "model of several), or a DICOM series (zip or multipart/related) — " +
        "into a label map (NIfTI), a DICOM Segmentation (Accept: application/dicom), or " +
        "per-class voxels and mL (Accept: application/json)",
      description: "A NIfTI body (`.nii`, `.nii.gz`) answers a label map with its geometry " +
        "(shape, spacing, affine), gzipped when the input was. A DICOM series comes as a zip of " +
        "its files (`application/zip`) or one instance per part (`multipart/related; " +
        'type="application/dicom"; boundary=…`, as STOW-RS sends them); `?series=UID` picks ' +
        "one when the upload holds several (else 400 listing them). It answers a DICOM " +
        "Segmentation of the series with `Accept: application/dicom` (one segment per class, " +
        "coded, referencing the series' instances; file name `segmentation.dcm`), else a " +
        "gzipped NIfTI label map with the series' geometry (RAS affine). A model of several " +
        "input channels (CT + PET, MRI sequences) takes them as `multipart/form-data`, one 3D " +
        "NIfTI per part in channel order (`curl -F c0=@a_0000.nii.gz -F c1=@a_0001.nii.gz`), " +
        "on one voxel grid; each is normalised by the model's scheme for its channel, and the " +
        "label map has channel 0's geometry. Another number of parts, or a single volume, is " +
        "422 `channel_count_mismatch`; channels on different grids 422 " +
        "`channel_grid_mismatch`, naming the part. Runs on the GPU " +
        "between training steps when a training job is running; 503 with Retry-After when the " +
        "GPU queue is full. Before its body is read the request reserves memory " +
        "(Content-Length bytes, or --max-body without one) under --memory-budget, 503 with " +
        "Retry-After when that is taken; once the NIfTI header has arrived the reservation " +
        "becomes what the volume needs (decoded voxels plus the label map), 413 when more than " +
        "the whole budget. A DICOM upload is read whole; its reservation grows to the zip's " +
        "declared entry sizes before they are inflated (more than 4 × --max-body: 400, a zip " +
        "bomb) and to the images' Rows × Columns × frames before a pixel is decoded.",
      body: {
        types: PREDICT_TYPES,
        description: "a .nii or .nii.gz volume, a zip of one DICOM series, multipart/related " +
          "DICOM instances, or multipart/form-data of one NIfTI per input channel",
        maxBytes: ctx.maxBodyBytes,
      },
      query: [
        {
          name: "overlap",
          description: "sliding-window overlap, 0…0.95 (default 0.5)",
          schema: { type: "number" },
        },
        {
          name: "tta",
          description: "test-time flips (true/false)",
          schema: { type: "boolean" },
        },
        {
          name: "precision",
          description: "f32 (default) or f16: convolution operands in binary16, sums in f32",
          schema: { type: "string" },
        },
        {
          name: "series",
          description: "DICOM uploads: the SeriesInstanceUID to segment when the upload holds " +
            "several series",
          schema: { type: "string" },
        },
      ],
      responses: {
        200: {
          description: "the uint8 label map, the DICOM Segmentation, or the JSON summary",
          types: [
            "application/octet-stream",
            "application/gzip",
            "application/dicom",
            "application/json",
          ],
          schema: ref("PredictSummary"),
        },
        400: errorResponse(
          "malformed NIfTI (invalid_nifti; a 4D part), unreadable DICOM or zip (invalid_dicom: " +
            "truncated, not DICOM, a zip bomb, several series without ?series), a multipart " +
            "body without a boundary or unreadable (invalid_multipart), or a bad query parameter",
        ),
        404: errorResponse("no such model"),
        406: errorResponse(
          "Accept: application/dicom for a NIfTI body: a Segmentation references its source " +
            "series, so send the DICOM series",
        ),
        413: errorResponse(
          "body over --max-body, or a volume larger than --memory-budget or 4 × --max-body",
        ),
        415: errorResponse(
          "not a NIfTI, zip, multipart/related DICOM or multipart/form-data content type",
        ),
        422: errorResponse(
          "the model's checkpoint cannot be loaded, or its classes cannot be coded as segments; " +
            "channel_count_mismatch (not as many channels as the model's input channels), " +
            "channel_grid_mismatch (channels on different voxel grids)",
        ),
        503: {
          ...queueFull,
          description: "the GPU queue is full, the memory budget is taken, there is no GPU, " +
            "or the server is shutting down; see Retry-After",
        },
      },
      handler: async (c) => {
        const name = c.req.param(nameParam)!;
        const entry = await ctx.models.entry(name);
        requireGpu(ctx);
        const options = predictQuery(c);
        const upload = dicomUploadOf(c.req.header("content-type"));
        const channelUpload = channelUploadOf(c.req.header("content-type"));
        const answer = answerOf(c.req.header("accept"), upload !== undefined);
        const seriesUid = seriesQuery(c, upload !== undefined);
        // A model of several input channels takes them one per part: refused before the body.
        const channels = metaChannels((await ctx.models.summary(entry)).meta);
        if (channels > 1 && !channelUpload) {
          const what = upload ? "a DICOM series (one channel)" : "one NIfTI volume";
          throw channelCountError(name, channels, 1, what, CHANNELS_HOW);
        }
        // Admission, before a byte of the body is read: the GPU queue, then the memory budget.
        checkQueue(ctx, reading);
        const declared = contentLength(c.req.header("content-length"));
        const share = ctx.admission.reserve(
          Math.min(declared ?? ctx.maxBodyBytes, ctx.admission.totalBytes),
          { what: "the request body", retryAfterSeconds: ctx.scheduler.retryAfterSeconds() },
        );
        try {
          reading++;
          let input: PredictInput;
          // What both kinds of upload are read under: the body's size and the memory budget.
          const limits = {
            declared,
            maxBodyBytes: ctx.maxBodyBytes,
            maxExpandedBytes: GUNZIP_FACTOR * ctx.maxBodyBytes,
            share,
            retryAfterSeconds: () => ctx.scheduler.retryAfterSeconds(),
          };
          try {
            input = upload
              ? dicomInput(await readDicomUpload(c.req.raw, upload, { ...limits, seriesUid }))
              : channelUpload
              ? channelsInput(
                await readChannelUpload(c.req.raw, channelUpload, {
                  ...limits,
                  model: name,
                  channels,
                }),
              )
              : niftiInput(await decodeBody(c.req.raw, ctx, share, declared));
          } finally {
            reading--;
          }
          const signal = c.req.raw.signal;
          const { prediction, model } = await ctx.scheduler.run(
            `predict ${name}`,
            async () => {
              const loaded = await ctx.models.load(entry);
              const prediction = await predictRequest(
                loaded,
                input.channels ?? input.volume,
                { ...options, signal },
                { model: name, send: CHANNELS_HOW },
              );
              return { prediction, model: { name, meta: loaded.meta } };
            },
            { signal },
          );
          if (answer === "json") return c.json({ model: name, ...prediction.summary });
          const headers = {
            "x-voxseg-model": name,
            "x-voxseg-seconds": prediction.summary.seconds.toFixed(3),
          };
          const file = answer === "segmentation"
            ? segmentationAnswer(prediction.labels, input.series!, model)
            : await labelMapAnswer(prediction.labels, input, name);
          return c.body(file.body, 200, { ...headers, ...file.headers });
        } finally {
          share.release();
        }
      },
    },
  ];
}

/** What was sent: its volume, and the NIfTI header or the DICOM series it came with. */
interface PredictInput {
  /** Channel 0's, on whose grid the label map lies. */
  volume: Volume;
  /** Every channel, in order, when the model takes several. */
  channels?: Volume[];
  /** A NIfTI body's header: the label map copies its geometry fields. */
  header?: NiftiHeader;
  /** A DICOM body's series: a Segmentation references it. */
  series?: DicomSeries;
  /** Answer the label map gzipped (as a gzipped NIfTI came; always for DICOM). */
  gzipped: boolean;
}

const niftiInput = ({ volume, gzipped }: NiftiStreamResult): PredictInput => ({
  volume,
  header: volume.header,
  gzipped,
});

/** The channels of a multipart/form-data upload: the label map copies channel 0's header. */
const channelsInput = (channels: NiftiStreamResult[]): PredictInput => ({
  volume: channels[0].volume,
  channels: channels.map((c) => c.volume),
  header: channels[0].volume.header,
  gzipped: channels[0].gzipped,
});

const dicomInput = (series: DicomSeries): PredictInput => ({
  volume: series.volume,
  series,
  gzipped: true,
});

/** overlap, tta and precision from the query string, checked (400 naming the bad one). */
function predictQuery(c: Context): Pick<PredictOptions, "overlap" | "tta" | "precision"> {
  const overlap = c.req.query("overlap");
  const tta = c.req.query("tta");
  const precision = c.req.query("precision");
  return {
    ...(overlap === undefined ? {} : { overlap: checkOverlap(overlap) }),
    ...(tta === undefined ? {} : { tta: checkBoolean(tta, "tta") }),
    ...(precision === undefined ? {} : { precision: checkPrecision(precision) }),
  };
}

/** `?series=`, a DICOM UID, for DICOM bodies only. */
function seriesQuery(c: Context, isDicom: boolean): string | undefined {
  const series = c.req.query("series");
  if (series === undefined) return undefined;
  if (!isDicom) {
    throw new ApiError(
      400,
      "invalid_request",
      "?series picks a series of a DICOM upload; a NIfTI body holds one volume — drop it",
    );
  }
  return checkUid(series, "series");
}

/** What the answer is, by the Accept header: see {@link acceptQuality}. */
type Answer = "labels" | "segmentation" | "json";

/**
 * The answer the client asked for: a Segmentation when it accepts application/dicom (at least
 * as much as JSON) and sent a series; JSON when it accepts application/json; else the label map.
 * 406 when it asks for a Segmentation of a NIfTI body and not for JSON.
 */
function answerOf(accept: string | undefined, isDicom: boolean): Answer {
  const dicom = acceptQuality(accept, "application/dicom");
  const json = acceptQuality(accept, "application/json");
  if (isDicom && dicom > 0 && dicom >= json) return "segmentation";
  if (json > 0) return "json";
  if (dicom > 0) {
    throw new ApiError(
      406,
      "not_acceptable",
      "a DICOM Segmentation references the series it segments, so it needs a DICOM series as " +
        "input: send the series (Content-Type application/zip or multipart/related; " +
        'type="application/dicom"), or accept the NIfTI label map or application/json',
    );
  }
  return "labels";
}

/**
 * The quality (q) the Accept header gives `type` by name (wildcards do not count): 0 when it
 * is not named.
 */
export function acceptQuality(accept: string | undefined, type: string): number {
  let best = 0;
  for (const range of (accept ?? "").split(",")) {
    const { type: named, params } = parseMediaType(range);
    if (named !== type) continue;
    const q = params.q === undefined ? 1 : Number(params.q);
    if (Number.isFinite(q)) best = Math.max(best, Math.min(1, Math.max(0, q)));
  }
  return best;
}

/** The encoded answer: its bytes and content headers. */
interface AnswerFile {
  body: Uint8Array<ArrayBuffer>;
  headers: Record<string, string>;
}

/** The label map as NIfTI, with the input's geometry, gzipped when {@link PredictInput} says. */
async function labelMapAnswer(
  labels: Volume,
  input: PredictInput,
  name: string,
): Promise<AnswerFile> {
  const nifti = encodeNifti(labels, {
    ...(input.header ? { like: input.header } : {}),
    description: `voxseg labels (${name})`,
  });
  const gz = input.gzipped;
  return {
    body: (gz ? await gzip(nifti) : nifti) as Uint8Array<ArrayBuffer>,
    headers: {
      "content-type": gz ? "application/gzip" : "application/octet-stream",
      "content-disposition": `attachment; filename="labels.nii${gz ? ".gz" : ""}"`,
    },
  };
}

/**
 * The label map as a DICOM Segmentation of `series`: one segment per foreground class, coded
 * from the checkpoint. A file name that says nothing of the patient or the series.
 */
function segmentationAnswer(labels: Volume, series: DicomSeries, model: NamedModel): AnswerFile {
  try {
    segmentMeanings(model.meta.classNames, model.meta.classCodes);
  } catch (e) {
    throw new ApiError(
      422,
      "invalid_model",
      `model ${JSON.stringify(model.name)}'s classes cannot be written as DICOM segments: ` +
        (e as Error).message,
    );
  }
  const body = segmentationOf(labels.data as Uint8Array, series, [model]);
  return {
    body: body as Uint8Array<ArrayBuffer>,
    headers: {
      "content-type": "application/dicom",
      "content-disposition": 'attachment; filename="segmentation.dcm"',
    },
  };
}

/**
 * Host bytes a synchronous prediction holds while admitted: the decoded volume (with its
 * float32 copy when scaled), the uint8 label map, and the label map's encoded file. The
 * prediction's own working memory (windows, probabilities) is bounded separately, inside the
 * GPU lane that runs one prediction at a time.
 */
function predictionBytes(sizes: NiftiSizes): number {
  return sizes.decodedBytes + 2 * sizes.voxels + 352;
}

/** The Content-Length header as a byte count; undefined when absent (a chunked body). */
function contentLength(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const n = Number(header);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ApiError(
      400,
      "bad_request",
      `Content-Length ${JSON.stringify(header)} is not a size`,
    );
  }
  return n;
}

/**
 * 503 before the body is read when the GPU queue is full: the tasks waiting plus those admitted
 * and still uploading (which will wait next) fill it while the GPU is busy.
 */
function checkQueue(ctx: ServerContext, reading: number): void {
  const s = ctx.scheduler;
  const ahead = s.queueDepth + reading + (s.holder === null ? -1 : 0);
  if (ahead >= s.maxQueue) throw new QueueFullError(s.retryAfterSeconds(), s.maxQueue);
}

/**
 * The request body as a volume, streamed: the header is read first and the reservation grown to
 * what the volume needs (or refused: 413 over 4 × --max-body or the whole budget, 503 when the
 * budget is taken now) before the voxels are read or inflated into one buffer of that size.
 * 400 `invalid_nifti` with the decoder's reason for a malformed body.
 */
async function decodeBody(
  request: Request,
  ctx: ServerContext,
  share: Reservation,
  declared: number | undefined,
): Promise<NiftiStreamResult> {
  if (!request.body || declared === 0) {
    throw new ApiError(400, "invalid_nifti", "the body is empty; send a .nii or .nii.gz volume");
  }
  const onHeader = (header: NiftiHeader, sizes: NiftiSizes, gzipped: boolean) => {
    const [nz, ny, nx] = niftiShape(header);
    const what = `a ${nx}×${ny}×${nz} volume`;
    const maxFile = gzipped ? ctx.maxBodyBytes * GUNZIP_FACTOR : ctx.maxBodyBytes;
    if (sizes.fileBytes > maxFile) {
      throw new ApiError(
        413,
        "payload_too_large",
        `the NIfTI header describes ${what} of ${formatMiB(sizes.fileBytes)}, over ` +
          (gzipped
            ? `the ${
              formatBytes(maxFile)
            } a gzipped body may expand to (${GUNZIP_FACTOR} × --max-body)`
            : `the ${formatBytes(maxFile)} body limit (--max-body)`),
      );
    }
    if (!gzipped && declared !== undefined && declared !== sizes.fileBytes) {
      throw new ApiError(
        400,
        "invalid_nifti",
        `the body is ${declared} bytes (Content-Length) but its NIfTI header describes ` +
          `${sizes.fileBytes} (vox_offset ${header.voxOffset} + the voxels of ${what}); send ` +
          "one complete .nii file",
      );
    }
    share.resize(predictionBytes(sizes), {
      what,
      retryAfterSeconds: ctx.scheduler.retryAfterSeconds(),
    });
  };
  try {
    return await readNiftiStream(request.body, { onHeader, signal: request.signal });
  } catch (e) {
    if (e instanceof InvalidNiftiError) {
      throw new ApiError(400, "invalid_nifti", `not a readable NIfTI volume: ${e.message}`);
    }
    // The client closed or broke the connection mid-body: its fault, and nobody reads this.
    if (isConnectionError(e)) throw incompleteBody();
    throw e;
  }
}

const formatMiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
