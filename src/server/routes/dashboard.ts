/**
 * The dashboard: its page at `/` and its script and stylesheet (embedded, see
 * src/server/dashboard/), and the two NIfTI files a finished prediction job's view needs —
 * the input CT and the label map, both under the data root — which the JSON API names by path
 * but does not serve.
 */

import type { Context } from "hono";
import {
  CONTENT_SECURITY_POLICY,
  DASHBOARD_PAGE,
  DASHBOARD_SCRIPT,
  DASHBOARD_STYLE,
  type DashboardAsset,
} from "../dashboard/assets.ts";
import { ApiError } from "../errors.ts";
import { checkNiftiHead } from "../jobs/files.ts";
import { isPacsRequest, type PredictJobRequest } from "../jobs/job.ts";
import { sameFile, stampOf } from "../paths.ts";
import { errorResponse } from "./schemas.ts";
import type { ServerContext } from "../context.ts";
import type { RouteSpec } from "./table.ts";

/** Headers on every dashboard response: no sniffing, no framing, no referrer leaks. */
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
};

const etags = new Map<string, Promise<string>>();

/** A strong ETag from the content's SHA-256 (computed once per asset). */
function etagOf(asset: DashboardAsset): Promise<string> {
  let tag = etags.get(asset.path);
  if (!tag) {
    tag = crypto.subtle.digest("SHA-256", new TextEncoder().encode(asset.body)).then((d) =>
      `"${
        Array.from(new Uint8Array(d).subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join(
          "",
        )
      }"`
    );
    etags.set(asset.path, tag);
  }
  return tag;
}

/** Serves an embedded asset; revalidated by ETag on each load (304 when unchanged). */
async function serveAsset(c: Context, asset: DashboardAsset): Promise<Response> {
  const etag = await etagOf(asset);
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    "content-type": asset.type,
    "cache-control": "no-cache",
    etag,
  };
  if (asset === DASHBOARD_PAGE) headers["content-security-policy"] = CONTENT_SECURITY_POLICY;
  const match = c.req.header("if-none-match");
  if (match && match.split(",").some((t) => t.trim() === etag || t.trim() === "*")) {
    return c.body(null, 304, headers);
  }
  return c.body(asset.body, 200, headers);
}

type VolumeKind = "image" | "labels";

/**
 * Streams a prediction job's input volume or label map. The input only when it was checked to
 * be NIfTI when the job was accepted and still starts with a NIfTI header; the label map only
 * while it is the very file the job wrote (same inode, size and time). Both are opened through
 * `DataRoot.openRead`, so a folder swapped for a symbolic link is refused.
 */
async function servePredictionVolume(
  ctx: ServerContext,
  c: Context,
  which: VolumeKind,
): Promise<Response> {
  const job = ctx.runner.get(c.req.param("id")!);
  if (job.kind !== "predict") {
    throw new ApiError(
      409,
      "not_a_prediction",
      `job ${job.id} is a ${job.kind} job; only prediction jobs have volumes to show`,
    );
  }
  let path: string;
  if (which === "image") {
    if (isPacsRequest(job.request)) {
      throw new ApiError(
        409,
        "input_from_pacs",
        `job ${job.id}'s input is a study on a PACS; view it in the PACS's viewer`,
      );
    }
    if (job.dicomInput) {
      throw new ApiError(
        409,
        "input_is_dicom",
        `job ${job.id}'s input is a DICOM series; view it in a DICOM viewer`,
      );
    }
    if (!job.inputChecked) {
      throw new ApiError(
        409,
        "input_not_checked",
        `job ${job.id}'s input was not checked to be a NIfTI volume when it was accepted, so ` +
          "it is not shown; submit the prediction again",
      );
    }
    // A model of several input channels: the file of one (`?channel=K`, default channel 0,
    // on whose grid the label map lies).
    const input = (job.request as PredictJobRequest).input;
    const files = typeof input === "string" ? [input] : input;
    path = files[channelQuery(c.req.query("channel"), files.length, job.id)];
  } else {
    if (job.state !== "succeeded" || !job.wrote) {
      throw new ApiError(409, "no_result", `job ${job.id} is ${job.state} and has no label map`);
    }
    path = job.wrote.path;
    if (/\.dcm$/i.test(path)) {
      throw new ApiError(
        409,
        "labels_not_nifti",
        `job ${job.id} wrote a DICOM Segmentation; view it in a DICOM viewer with its series`,
      );
    }
  }
  const what = which === "image" ? "input" : "label map";
  const gone = (message: string) => new ApiError(404, "file_not_found", message);
  let file: string;
  try {
    file = await ctx.root.resolve(path, { what, mustExist: true });
  } catch (e) {
    // Gone since the job ran: for a GET that is a 404, not a bad request.
    if (e instanceof ApiError && e.code === "not_found") throw gone(e.message);
    throw e;
  }
  let handle: Deno.FsFile;
  try {
    handle = await ctx.root.openRead(file, what);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw gone(`the ${what} of job ${job.id} is gone`);
    throw e;
  }
  let size: number;
  try {
    const stat = await handle.stat();
    if (!stat.isFile) throw gone(`the ${what} of job ${job.id} is not a file`);
    size = stat.size;
    if (which === "image") {
      await checkNiftiHead(handle).catch(() => {
        throw new ApiError(
          409,
          "input_not_nifti",
          `the input of job ${job.id} is no longer a NIfTI volume; it is not shown`,
        );
      });
    } else if (!sameFile(stampOf(stat), job.wrote!)) {
      throw new ApiError(
        409,
        "output_changed",
        `the label map of job ${job.id} was replaced or changed since the job wrote it; it is ` +
          "not shown",
      );
    }
  } catch (e) {
    handle.close();
    throw e;
  }
  const gz = /\.gz$/i.test(file);
  return c.body(handle.readable, 200, {
    ...SECURITY_HEADERS,
    "content-type": gz ? "application/gzip" : "application/octet-stream",
    "content-length": String(size),
    "content-disposition": `attachment; filename="${which}.nii${gz ? ".gz" : ""}"`,
    "cache-control": "no-store",
  });
}

/** `?channel=K`: an input channel of a job whose input lists `count` files; default 0. */
function channelQuery(value: string | undefined, count: number, id: string): number {
  if (value === undefined) return 0;
  const k = Number(value);
  if (!/^\d+$/.test(value) || !(k < count)) {
    throw new ApiError(
      400,
      "invalid_request",
      `channel must be ${count === 1 ? "0" : `0…${count - 1}`}: job ${id}'s input ` +
        `${count === 1 ? "is one file" : `lists ${count} files, one per channel`}; got ` +
        JSON.stringify(value.slice(0, 40)),
    );
  }
  return k;
}

export function dashboardRoutes(ctx: ServerContext): RouteSpec[] {
  const assetRoute = (asset: DashboardAsset, summary: string): RouteSpec => ({
    method: "GET",
    path: asset.path,
    tag: "dashboard",
    summary,
    responses: {
      200: { description: summary, types: [asset.type.split(";")[0]] },
      304: { description: "unchanged since the ETag in If-None-Match", types: [] },
    },
    handler: (c) => serveAsset(c, asset),
  });
  const volumeRoute = (which: VolumeKind, summary: string): RouteSpec => ({
    method: "GET",
    path: `/dashboard/jobs/:id/${which}`,
    tag: "dashboard",
    summary,
    ...(which === "image"
      ? {
        query: [{
          name: "channel",
          description: "the input channel to show when the job's input lists one file per " +
            "channel (default 0, the grid of the label map)",
          schema: { type: "integer", minimum: 0 },
        }],
      }
      : {}),
    responses: {
      200: {
        description: "the NIfTI file as written (gzipped when its name ends in .gz)",
        types: ["application/octet-stream", "application/gzip"],
      },
      400: errorResponse(
        "a folder on the file's path was moved or became a symbolic link" +
          (which === "image" ? "; a channel the input does not have" : ""),
      ),
      404: errorResponse("no such job, or the file is gone"),
      409: errorResponse(
        "not a prediction job; (image) its input is not NIfTI (a PACS study, a DICOM series); " +
          "(labels) it has not succeeded, wrote a DICOM Segmentation, or its label map changed " +
          "since",
      ),
    },
    handler: (c) => servePredictionVolume(ctx, c, which),
  });
  return [
    assetRoute(
      DASHBOARD_PAGE,
      "The dashboard: models, jobs, live training curves, slices with the segmentation",
    ),
    assetRoute(DASHBOARD_SCRIPT, "The dashboard's script (Niivue and uPlot bundled in)"),
    assetRoute(DASHBOARD_STYLE, "The dashboard's stylesheet"),
    volumeRoute("image", "A prediction job's input volume, for the dashboard's slice view"),
    volumeRoute("labels", "A succeeded prediction job's label map, for the slice view"),
  ];
}
