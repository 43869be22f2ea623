/**
 * The HTTP server as a Hono app: routes from one table (src/server/routes/), middleware in
 * order — HEAD bodies ended, request metrics, access log, Host allow-list, cross-origin
 * refusal, bearer auth, drain gate, body limit, event-stream caps — and one `onError` that
 * turns every failure into a JSON error. {@link createApp} builds it without a socket, so
 * tests call `app.request()`; src/cli/serve.ts puts it on `Deno.serve`.
 */

import { Hono } from "hono";
import { join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { type GpuInfo, initGpu } from "../gpu/mod.ts";
import { ApiError, errorResponse, renderError } from "./errors.ts";
import { JobRunner } from "./jobs/runner.ts";
import { JobStore } from "./jobs/store.ts";
import { Metrics } from "./metrics.ts";
import { type AuthScope, bearerAuth, type TokenSet } from "./middleware/bearer_auth/bearer_auth.ts";
import { accessLog, type AccessLogSink } from "./middleware/access_log/access_log.ts";
import { hostCheck } from "./middleware/host_check/host_check.ts";
import { headResponse } from "./middleware/head_response/head_response.ts";
import { originCheck } from "./middleware/origin_check/origin_check.ts";
import {
  streamLimit,
  type StreamLimits,
  StreamSlots,
} from "./middleware/stream_limit/stream_limit.ts";
import { DASHBOARD_ASSETS } from "./dashboard/assets.ts";
import { bodyLimit, JSON_BODY_LIMIT } from "./middleware/body_limit/body_limit.ts";
import { DEFAULT_MEMORY_BUDGET, MemoryBudget } from "./admission.ts";
import { requireContentType } from "./middleware/content_type/content_type.ts";
import { drainGate } from "./middleware/drain_gate/drain_gate.ts";
import { requestMetrics } from "./middleware/request_metrics/request_metrics.ts";
import { type ModelEntry, ModelRegistry } from "./models.ts";
import { openApiDocument } from "./openapi.ts";
import { DataRoot } from "./paths.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { healthRoutes } from "./routes/health.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { modelRoutes } from "./routes/models.ts";
import type { ServerContext } from "./context.ts";
import type { RouteSpec } from "./routes/table.ts";
import { GpuScheduler, QueueFullError } from "./scheduler.ts";

export interface ServerOptions {
  /** Every path a client names stays inside this folder (created if missing). */
  dataRoot: string;
  /** Checkpoints to serve. Default `<dataRoot>/models`. */
  modelsDir?: string;
  /** Job records and training runs. Default `<dataRoot>/.voxseg/jobs`. */
  stateDir?: string;
  /** A bearer token (named `default`); without any token nothing is checked. */
  token?: string;
  /** Bearer tokens by client name (from a token file), besides `token`. */
  tokens?: TokenSet;
  /**
   * Which routes need a token. Default "all": every route but health and the dashboard shell.
   * "mutating" (reads open) is an explicit opt-in.
   */
  auth?: AuthScope;
  /** Host names clients use besides loopback names and IP literals (DNS-rebinding guard). */
  allowedHosts?: readonly string[];
  /** Where access-log lines go; none by default. */
  accessLog?: AccessLogSink;
  /** Caps on open event streams, server-wide and per job. */
  streamLimits?: StreamLimits;
  /** Request body limit in bytes (NIfTI uploads; JSON bodies get 1 MiB). Default 1 GiB. */
  maxBodyBytes?: number;
  /**
   * Host bytes the synchronous predictions may hold at once, each reserved before its body is
   * read (see src/server/admission.ts). Default 2 GiB.
   */
  memoryBudgetBytes?: number;
  /** GPU tasks and queued jobs that may wait at once. Default 16. */
  maxQueue?: number;
  /** Acquires the GPU; default the process-wide {@link initGpu}. */
  acquireGpu?: () => Promise<{ info: GpuInfo }>;
}

export interface VoxsegServer {
  app: Hono;
  routes: readonly RouteSpec[];
  /** Resolves when the GPU is acquired, rejects when it cannot be. */
  gpuReady: Promise<void>;
  context: ServerContext;
  /**
   * Stops taking work, lets the GPU work in progress finish, checkpoints and interrupts a
   * running training job, flushes job state and ends event streams. Idempotent.
   */
  shutdown(): Promise<void>;
}

export const DEFAULT_MAX_BODY = 1024 ** 3;
/** Health probes: they answer any Host and need no token (load balancers, Kubernetes). */
const PROBE_PATHS = ["/healthz", "/readyz"];
/**
 * GET paths open without a token: the probes, and the dashboard's static shell, which loads
 * before the page can send the token (it holds no data; every call it then makes carries it).
 */
const OPEN_PATHS = [...PROBE_PATHS, ...DASHBOARD_ASSETS.map((a) => a.path)];
export const DEFAULT_MAX_QUEUE = 16;

/**
 * @example
 * const server = await createApp({ dataRoot: "data", token: "s3cret" });
 * const res = await server.app.request("/healthz");
 */
export async function createApp(options: ServerOptions): Promise<VoxsegServer> {
  const root = await DataRoot.open(options.dataRoot);
  const stateDir = options.stateDir ?? join(root.real, ".voxseg", "jobs");
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const admission = new MemoryBudget(options.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET);
  const store = await JobStore.open(stateDir);
  const scheduler = new GpuScheduler({ maxQueue });
  const models: ModelRegistry = new ModelRegistry({
    dir: options.modelsDir ?? join(root.real, "models"),
    // Called per request, after `runner` exists.
    jobModels: (): ModelEntry[] => runner.jobModels(),
  });
  const runner = new JobRunner({ store, scheduler, models, root, maxQueue });

  let gpu: GpuInfo | undefined;
  let gpuError: string | undefined;
  const gpuReady = (options.acquireGpu ?? initGpu)().then(
    (g) => {
      gpu = g.info;
    },
    (e) => {
      gpuError = (e as Error).message;
      throw e;
    },
  );
  gpuReady.catch(() => {}); // reported by /readyz and /v1/device

  let draining = false;
  const stopping = new AbortController();
  const metrics = new Metrics(() => ({
    gpuQueueDepth: scheduler.queueDepth,
    gpuBusySeconds: scheduler.busySeconds(),
    jobs: runner.counts(),
    training: runner.training(),
  }));
  const tokens = new Map(options.tokens ?? []);
  if (options.token) tokens.set("default", options.token);
  const auth = tokens.size ? options.auth ?? "all" : "none";
  const context: ServerContext = {
    root,
    store,
    runner,
    models,
    scheduler,
    metrics,
    gpu: () => gpu,
    gpuError: () => gpuError,
    draining: () => draining,
    shutdownSignal: stopping.signal,
    maxBodyBytes,
    admission,
    version: denoJson.version,
  };

  const routes: RouteSpec[] = [
    ...healthRoutes(context),
    ...modelRoutes(context),
    ...jobRoutes(context),
    ...dashboardRoutes(context),
  ];
  let openapi: ReturnType<typeof openApiDocument> | undefined;
  routes.push({
    method: "GET",
    path: "/openapi.json",
    tag: "health",
    summary: "This description of every route, generated from the route table",
    responses: { 200: { description: "OpenAPI 3.1" } },
    handler: (c) =>
      c.json(
        openapi ??= openApiDocument(routes, {
          version: denoJson.version,
          auth,
          public: OPEN_PATHS,
        }),
      ),
  });

  const app = new Hono();
  // First: it ends the bodies of HEAD answers, which every later wrapper waits on.
  app.use("*", headResponse());
  app.use("*", requestMetrics(metrics));
  if (options.accessLog) app.use("*", accessLog(options.accessLog));
  app.use("*", hostCheck({ allowed: options.allowedHosts, anyHost: PROBE_PATHS }));
  app.use("*", originCheck());
  app.use("*", bearerAuth({ tokens, scope: options.auth ?? "all", public: OPEN_PATHS }));
  app.use("*", drainGate({ draining: () => draining }));
  const streams = new StreamSlots(options.streamLimits);
  app.use("/v1/jobs/:id/events", streamLimit(streams, (c) => c.req.param("id") ?? ""));
  for (const r of routes) {
    // Each route's own body limit: --max-body for NIfTI uploads, 1 MiB for JSON and the rest.
    const limit = bodyLimit(
      r.body?.maxBytes === undefined
        ? { maxBytes: JSON_BODY_LIMIT, source: "the limit of JSON and bodiless requests" }
        : { maxBytes: r.body.maxBytes },
    );
    if (r.body) app.on(r.method, r.path, requireContentType(r.body.types), limit, r.handler);
    else app.on(r.method, r.path, limit, r.handler);
  }
  app.notFound((c) =>
    errorResponse(404, "not_found", `no route ${c.req.method} ${c.req.path}; see /openapi.json`)
  );
  app.onError((err, c) => {
    if (err instanceof QueueFullError) {
      return new ApiError(503, "queue_full", err.message, {
        "retry-after": String(err.retryAfterSeconds),
      }).getResponse();
    }
    if (c.req.raw.signal.aborted) {
      // The client went away mid-request; nobody reads this answer.
      return errorResponse(503, "client_closed", "the client closed the connection");
    }
    return renderError(err, c);
  });

  await runner.recover();

  let shut: Promise<void> | undefined;
  const shutdown = () =>
    shut ??= (async () => {
      draining = true;
      await runner.shutdown();
      await scheduler.idle();
      stopping.abort();
      models.dispose();
    })();

  return { app, routes, gpuReady, context, shutdown };
}
