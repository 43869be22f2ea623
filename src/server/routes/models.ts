/** Models: list, detail, and synchronous prediction of one NIfTI volume. */

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
import type { Reservation } from "../admission.ts";
import { ApiError } from "../errors.ts";
import type { ModelSummary } from "../models.ts";
import { predictRequest } from "../inference.ts";
import { checkBoolean, checkOverlap, checkPrecision } from "../jobs/requests.ts";
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
      summary: "Segment one NIfTI volume now: label map (NIfTI) or, with Accept: " +
        "application/json, per-class voxels and mL",
      description: "The label map has the input's geometry (shape, spacing, affine) and is " +
        "gzipped when the input was. Runs on the GPU between training steps when a training " +
        "job is running; 503 with Retry-After when the GPU queue is full. Before its body is " +
        "read the request reserves memory (Content-Length bytes, or --max-body without one) " +
        "under --memory-budget, 503 with Retry-After when that is taken; once the NIfTI header " +
        "has arrived the reservation becomes what the volume needs (decoded voxels plus the " +
        "label map), 413 when more than the whole budget.",
      body: {
        types: NIFTI_TYPES,
        description: "a .nii or .nii.gz volume",
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
      ],
      responses: {
        200: {
          description: "the uint8 label map, or the JSON summary",
          types: ["application/octet-stream", "application/gzip", "application/json"],
          schema: ref("PredictSummary"),
        },
        400: errorResponse("malformed NIfTI, or a bad query parameter"),
        404: errorResponse("no such model"),
        413: errorResponse(
          "body over --max-body, or a volume larger than --memory-budget or 4 × --max-body",
        ),
        415: errorResponse("not a NIfTI content type"),
        422: errorResponse("the model's checkpoint cannot be loaded"),
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
        const overlapText = c.req.query("overlap");
        const ttaText = c.req.query("tta");
        const overlap = overlapText === undefined ? undefined : checkOverlap(overlapText);
        const tta = ttaText === undefined ? undefined : checkBoolean(ttaText, "tta");
        const precisionText = c.req.query("precision");
        const precision = precisionText === undefined ? undefined : checkPrecision(precisionText);
        // Admission, before a byte of the body is read: the GPU queue, then the memory budget.
        checkQueue(ctx, reading);
        const declared = contentLength(c.req.header("content-length"));
        const share = ctx.admission.reserve(
          Math.min(declared ?? ctx.maxBodyBytes, ctx.admission.totalBytes),
          { what: "the request body", retryAfterSeconds: ctx.scheduler.retryAfterSeconds() },
        );
        try {
          reading++;
          let decoded: NiftiStreamResult;
          try {
            decoded = await decodeBody(c.req.raw, ctx, share, declared);
          } finally {
            reading--;
          }
          const { volume, gzipped } = decoded;
          const signal = c.req.raw.signal;
          const prediction = await ctx.scheduler.run(
            `predict ${name}`,
            async () =>
              predictRequest(await ctx.models.load(entry), volume, {
                overlap,
                tta,
                precision,
                signal,
              }),
            { signal },
          );
          const wantsJson = (c.req.header("accept") ?? "").toLowerCase()
            .includes("application/json");
          if (wantsJson) return c.json({ model: name, ...prediction.summary });
          const nifti = encodeNifti(prediction.labels, {
            like: volume.header,
            description: `voxseg labels (${name})`,
          });
          const body = (gzipped ? await gzip(nifti) : nifti) as Uint8Array<ArrayBuffer>;
          return c.body(body, 200, {
            "content-type": gzipped ? "application/gzip" : "application/octet-stream",
            "content-disposition": `attachment; filename="labels.nii${gzipped ? ".gz" : ""}"`,
            "x-voxseg-model": name,
            "x-voxseg-seconds": prediction.summary.seconds.toFixed(3),
          });
        } finally {
          share.release();
        }
      },
    },
  ];
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
    if (CONNECTION_ERRORS.some((E) => e instanceof E)) {
      // The client closed or broke the connection mid-body: its fault, and nobody reads this.
      throw new ApiError(
        400,
        "incomplete_body",
        "the request body ended before its Content-Length (the connection closed); resend it",
      );
    }
    throw e;
  }
}

const CONNECTION_ERRORS = [
  Deno.errors.BadResource,
  Deno.errors.Http,
  Deno.errors.ConnectionReset,
  Deno.errors.ConnectionAborted,
  Deno.errors.UnexpectedEof,
  Deno.errors.Interrupted,
];

const formatMiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
