/** Jobs: queue training and prediction, follow them (JSON and server-sent events), cancel. */

import type { Context } from "hono";
import { ApiError } from "../errors.ts";
import { JOB_STATES, type JobState } from "../jobs/job.ts";
import { parsePredictRequest, parseTrainRequest } from "../jobs/requests.ts";
import { jobEventStream } from "../sse.ts";
import { errorResponse, queueFull, ref } from "./schemas.ts";
import { requireGpu, type ServerContext } from "../context.ts";
import type { RouteSpec } from "./table.ts";
import { parseJson } from "../../base/json.ts";

async function jsonBody(c: Context): Promise<unknown> {
  return parseJson(
    await c.req.text(),
    (where) => new ApiError(400, "invalid_json", `the body is not valid JSON${where}`),
  );
}

/** The `purge` query parameter: absent or "false" → false, "true" → true, else 400. */
function purgeFlag(value: string | undefined): boolean {
  if (value === undefined || value === "false") return false;
  if (value === "true") return true;
  throw new ApiError(
    400,
    "invalid_request",
    `purge must be true or false, got ${JSON.stringify(value.slice(0, 40))}`,
  );
}

const jobResponse = { description: "the job", schema: ref("Job") };
const notFound = errorResponse("no such job");
/** The answers every queued job shares: accepted, queue full, no space to record it. */
const queuedResponses = {
  202: { ...jobResponse, headers: { Location: "the job's URL" } },
  503: queueFull,
  507: errorResponse("no space left to record the job"),
};

export function jobRoutes(ctx: ServerContext): RouteSpec[] {
  const { runner, store } = ctx;
  const accepted = (c: Context, job: { id: string }) => {
    c.header("location", `/v1/jobs/${job.id}`);
    return c.json(job, 202);
  };
  /**
   * A handler that reads the JSON body as a request of one kind, refuses without a GPU, queues
   * the job and answers 202 with its URL.
   */
  const queueJob = <R>(
    parse: (body: unknown) => R,
    submit: (request: R) => Promise<{ id: string }>,
  ) =>
  async (c: Context) => {
    const request = parse(await jsonBody(c));
    requireGpu(ctx);
    return accepted(c, await submit(request));
  };
  return [
    {
      method: "POST",
      path: "/v1/jobs/train",
      tag: "jobs",
      summary: "Queue a training run on a dataset under the data root, planned as " +
        "`voxseg train --data` plans it",
      description: "The trained model is served under `name` (default: the job id) once the " +
        "job succeeds. As on the command line, the run is planned — the `plan` given, else " +
        "plans.json beside the dataset, else a new one — its cases preprocessed into the " +
        'job\'s run folder when the plan needs it, and sized to `timeBudget`; `plan: "none"` ' +
        "trains the defaults and `config` only. What the plan chose is the job's `plan` (GET " +
        "/v1/jobs/{id}) once planning is done; a resumed job keeps it and its steps. Dataset, " +
        "config and plan-file errors are reported now, as 400.",
      body: {
        types: ["application/json"],
        description: "what to train",
        schema: ref("TrainRequest"),
      },
      responses: {
        ...queuedResponses,
        400: errorResponse(
          "bad dataset path, dataset or config; invalid_plan (no plan at `plan`, or not one); " +
            "planning_unavailable (a server started without the planner)",
        ),
        409: errorResponse("the name is taken"),
      },
      handler: queueJob(parseTrainRequest, (request) => runner.submitTrain(request)),
    },
    {
      method: "POST",
      path: "/v1/jobs/predict",
      tag: "jobs",
      summary: "Queue a prediction: NIfTI or a DICOM series in, a label map or DICOM " +
        "Segmentation out, both under the data root; or a study from a configured PACS",
      description: "Either `input` (a NIfTI file, or a DICOM series: a folder, a .zip or one " +
        "multi-frame file; `series` picks one of several) and `output` (.nii, .nii.gz, or .dcm " +
        "for a DICOM input), or `pacs` (a name from GET " +
        "/v1/pacs), `study`, optional `series`, `store` and `output`. A PACS job pulls the " +
        "study into the job's own folder in the state directory; DELETE with purge=true " +
        "removes it.",
      body: {
        types: ["application/json"],
        description: "what to predict",
        schema: ref("PredictRequest"),
      },
      responses: {
        ...queuedResponses,
        400: errorResponse(
          "bad path or field, an input that is neither NIfTI nor DICOM (invalid_nifti, " +
            "invalid_dicom), a .dcm output or series for a NIfTI input, output = input; " +
            "unknown_pacs; " +
            "pacs_address_refused (a URL-like field: PACS are configured by the operator)",
        ),
        404: errorResponse("no such model"),
        409: errorResponse(
          "the output exists (or another job writes it): files are never replaced",
        ),
        422: errorResponse(
          "channel_count_mismatch: the input has another number of channels than the model's " +
            "input channels (the message says how to name them)",
        ),
      },
      handler: queueJob(
        (body) => parsePredictRequest(body, ctx.pacsEndpoints.names()),
        (request) => runner.submitPredict(request),
      ),
    },
    {
      method: "GET",
      path: "/v1/jobs",
      tag: "jobs",
      summary: "Jobs, newest first",
      query: [
        {
          name: "state",
          description: "only jobs in this state",
          schema: { enum: [...JOB_STATES] },
        },
        { name: "kind", description: "train or predict", schema: { enum: ["train", "predict"] } },
        {
          name: "limit",
          description: "at most this many (default 100)",
          schema: { type: "integer" },
        },
      ],
      responses: {
        200: {
          description: "jobs",
          schema: { type: "object", properties: { jobs: { type: "array", items: ref("Job") } } },
        },
        400: errorResponse("bad filter"),
      },
      handler: (c) => {
        const state = c.req.query("state");
        const kind = c.req.query("kind");
        const limit = Number(c.req.query("limit") ?? 100);
        if (state !== undefined && !JOB_STATES.includes(state as JobState)) {
          throw new ApiError(
            400,
            "invalid_request",
            `state must be one of ${JOB_STATES.join(", ")}`,
          );
        }
        if (kind !== undefined && kind !== "train" && kind !== "predict") {
          throw new ApiError(400, "invalid_request", "kind must be train or predict");
        }
        if (!Number.isInteger(limit) || limit < 1) {
          throw new ApiError(400, "invalid_request", "limit must be a positive integer");
        }
        const jobs = store.list()
          .filter((j) => (!state || j.state === state) && (!kind || j.kind === kind))
          .slice(0, limit);
        return c.json({ jobs });
      },
    },
    {
      method: "GET",
      path: "/v1/jobs/:id",
      tag: "jobs",
      summary: "One job: state, progress, latest metrics, result or error",
      responses: { 200: jobResponse, 404: notFound },
      handler: (c) => c.json(runner.get(c.req.param("id")!)),
    },
    {
      method: "GET",
      path: "/v1/jobs/:id/events",
      tag: "jobs",
      summary: "Server-sent events: past events, then live ones until the job ends",
      description: "Events: `state` (queued, running, and the final state with the result or " +
        "error), `progress` (training step, epoch, loss, learning rate; prediction windows), " +
        "`metrics` (validation), `checkpoint`, `log`. Each has an `id`; reconnect with " +
        "Last-Event-ID to continue where the stream broke.",
      responses: {
        200: { description: "the event stream", types: ["text/event-stream"] },
        404: notFound,
      },
      handler: async (c) => {
        const job = runner.get(c.req.param("id")!);
        const after = Number(c.req.header("last-event-id") ?? c.req.query("after") ?? 0);
        const stream = await jobEventStream(store, job, {
          after: Number.isFinite(after) ? after : 0,
          signal: ctx.shutdownSignal,
        });
        return c.body(stream, 200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache",
          "x-accel-buffering": "no",
        });
      },
    },
    {
      method: "GET",
      path: "/v1/jobs/:id/result",
      tag: "jobs",
      summary: "A finished job's result: the trained model and its scores, or the output and " +
        "per-class volumes",
      responses: {
        200: { description: "the result", schema: { type: "object" } },
        404: notFound,
        409: errorResponse("no result (yet): the job is queued, running, or failed"),
      },
      handler: (c) => {
        const job = runner.get(c.req.param("id")!);
        if (!job.result) {
          const why = job.error ? `: ${job.error.message}` : "";
          throw new ApiError(
            409,
            "no_result",
            `job ${job.id} is ${job.state} and has no result${why}`,
          );
        }
        return c.json({ id: job.id, kind: job.kind, state: job.state, ...job.result });
      },
    },
    {
      method: "DELETE",
      path: "/v1/jobs/:id",
      tag: "jobs",
      summary: "Cancel a job; a training run stops after its current step and keeps its last " +
        "checkpoint. With purge=true, remove the job and what it pulled and wrote",
      description: "`purge=true` removes the output file a prediction wrote under the data " +
        "root (only while it is still the file it wrote: one replaced since, or now behind a " +
        "symbolic link, is kept and listed under `kept`), the files a PACS job pulled, a " +
        "training run's folder, and the job's record and events: it is gone from GET " +
        "/v1/jobs. A queued job is cancelled first (200); a running one is asked to stop and " +
        "202 answers: the purge completes once it has stopped (or at the next start if the " +
        "server stops first). The answer counts what was removed, by kind; it names no path.",
      query: [{
        name: "purge",
        description: "true: remove the job and its files; false (default): cancel only",
        schema: { type: "boolean" },
      }],
      responses: {
        200: {
          description: "cancelled (it was queued); with purge=true: purged, what was removed",
          schema: { oneOf: [ref("Job"), ref("PurgeReport")] },
        },
        202: {
          description: "cancelling: the running job stops shortly (and is then purged, with " +
            "purge=true)",
          schema: ref("Job"),
        },
        400: errorResponse("purge is neither true nor false"),
        404: notFound,
        409: errorResponse("the job has already finished (without purge)"),
        500: errorResponse("purge_failed: a file could not be removed; the job stays listed"),
      },
      handler: async (c) => {
        const id = c.req.param("id")!;
        if (purgeFlag(c.req.query("purge"))) {
          const outcome = await runner.purge(id);
          if (outcome.pending) {
            return c.json({
              ...outcome.job,
              purge: "pending: it completes once the job has stopped",
            }, 202);
          }
          return c.json(outcome.report, 200);
        }
        const job = await runner.cancel(id);
        return c.json(job, job.state === "running" ? 202 : 200);
      },
    },
    {
      method: "POST",
      path: "/v1/jobs/:id/resume",
      tag: "jobs",
      summary: "Queue an interrupted, cancelled or failed job again; training continues from " +
        "its last checkpoint",
      responses: {
        202: jobResponse,
        404: notFound,
        409: errorResponse("the job is queued, running or succeeded"),
        503: queueFull,
      },
      handler: async (c) => accepted(c, await runner.resume(c.req.param("id")!)),
    },
  ];
}
