/** Models: list, detail, and synchronous prediction of one NIfTI volume. */

import { decodeNifti, encodeNifti, gzip, isGzip, type NiftiVolume } from "../../data/nifti.ts";
import { ApiError } from "../errors.ts";
import type { ModelSummary } from "../models.ts";
import { predictRequest } from "../inference.ts";
import { checkBoolean, checkOverlap, checkPrecision } from "../jobs/requests.ts";
import { errorResponse, queueFull, ref } from "./schemas.ts";
import { GUNZIP_FACTOR, requireGpu, type RouteSpec, type ServerContext } from "./table.ts";
import { formatBytes } from "../middleware/body_limit/body_limit.ts";

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
        "job is running; 503 with Retry-After when the GPU queue is full.",
      body: { types: NIFTI_TYPES, description: "a .nii or .nii.gz volume" },
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
        413: errorResponse("body over --max-body"),
        415: errorResponse("not a NIfTI content type"),
        422: errorResponse("the model's checkpoint cannot be loaded"),
        503: {
          ...queueFull,
          description: "the GPU queue is full, there is no GPU, or the " +
            "server is shutting down; see Retry-After",
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
        const bytes = new Uint8Array(await c.req.arrayBuffer());
        const volume = await decodeBody(bytes, ctx.maxBodyBytes * GUNZIP_FACTOR);
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
        const wantsJson = (c.req.header("accept") ?? "").toLowerCase().includes("application/json");
        if (wantsJson) return c.json({ model: name, ...prediction.summary });
        const nifti = encodeNifti(prediction.labels, {
          like: volume.header,
          description: `voxseg labels (${name})`,
        });
        const gz = isGzip(bytes);
        const body = (gz ? await gzip(nifti) : nifti) as Uint8Array<ArrayBuffer>;
        return c.body(body, 200, {
          "content-type": gz ? "application/gzip" : "application/octet-stream",
          "content-disposition": `attachment; filename="labels.nii${gz ? ".gz" : ""}"`,
          "x-voxseg-model": name,
          "x-voxseg-seconds": prediction.summary.seconds.toFixed(3),
        });
      },
    },
  ];
}

/**
 * The request body as a volume; 400 `invalid_nifti` with the decoder's reason otherwise, 413
 * when gzipped data would expand past `maxRawBytes` (a gzip bomb must not exhaust memory).
 */
async function decodeBody(bytes: Uint8Array, maxRawBytes: number): Promise<NiftiVolume> {
  if (bytes.length === 0) {
    throw new ApiError(400, "invalid_nifti", "the body is empty; send a .nii or .nii.gz volume");
  }
  const raw = isGzip(bytes) ? await gunzipAtMost(bytes, maxRawBytes) : bytes;
  try {
    return await decodeNifti(raw);
  } catch (e) {
    throw new ApiError(
      400,
      "invalid_nifti",
      `not a readable NIfTI volume: ${(e as Error).message}`,
    );
  }
}

async function gunzipAtMost(bytes: Uint8Array, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    for await (const chunk of stream) {
      size += chunk.byteLength;
      if (size > limit) {
        throw new ApiError(
          413,
          "payload_too_large",
          `the gzipped volume expands past ${formatBytes(limit)} (${GUNZIP_FACTOR} × --max-body)`,
        );
      }
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(400, "invalid_nifti", `corrupt gzip data: ${(e as Error).message}`);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
