/**
 * The HTTP server as a Hono app: routes from one table (src/server/routes/), middleware in
 * order — HEAD bodies ended, request metrics, access log, Host allow-list, cross-origin
 * refusal, bearer auth, drain gate, body limit, event-stream caps — and one `onError` that
 * turns every failure into a JSON error. {@link createApp} builds it without a socket, so
 * tests call `app.request()`; src/cli/serve.ts puts it on `Deno.serve`.
 */

import { type Context, Hono } from "hono";
import { join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { type GpuInfo, initGpu } from "../gpu/mod.ts";
import { ApiError, errorResponse, renderError } from "./errors.ts";
import type { PacsHooks, TrainPlanner } from "./jobs/deps.ts";
import { RetentionSweeper } from "./jobs/retention.ts";
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
import { type PacsEndpoint, PacsRegistry } from "./pacs.ts";
import { DataRoot } from "./paths.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { healthRoutes } from "./routes/health.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { modelRoutes } from "./routes/models.ts";
import { pacsRoutes } from "./routes/pacs.ts";
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
  /** The PACS endpoints prediction jobs may name (`serve --pacs`); none by default. */
  pacsEndpoints?: readonly PacsEndpoint[];
  /** The DICOM pipeline of PACS prediction jobs; without it they fail `pacs_unavailable`. */
  pacs?: PacsHooks;
  /**
   * The command line's planner (`voxseg serve` passes src/cli/serve_planning.ts's): training
   * jobs are then planned as `voxseg train --data` plans; without it they train unplanned and
   * a request naming planning fields is refused (400 `planning_unavailable`).
   */
  planner?: TrainPlanner;
  /**
   * Purge finished jobs older than this many milliseconds (`serve --retain`), at start and
   * periodically; none by default.
   */
  retainMs?: number;
  /** The retention's clock (ms since the epoch); default `Date.now`. For tests. */
  now?: () => number;
  /** Acquires the GPU; default the process-wide {@link initGpu}. */
  acquireGpu?: () => Promise<{ info: GpuInfo }>;
}

export interface VoxsegServer {
  app: Hono;
  routes: readonly RouteSpec[];
  /** Resolves when the GPU is acquired, rejects when it cannot be. */
  gpuReady: Promise<void>;
  context: ServerContext;
  /** The retention sweeper, with `retainMs`. */
  retention?: RetentionSweeper;
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
  const parts = await openParts(root, options);
  const gpu = startAcquiringGpu(options.acquireGpu ?? initGpu);
  const lifecycle: Lifecycle = { draining: false, stopping: new AbortController() };
  const context = serverContext(parts, gpu, lifecycle);
  const tokens = tokensOf(options);
  const routes = routeTable(context, tokens.size ? options.auth ?? "all" : "none");

  const app = new Hono();
  useMiddleware(app, context, options, tokens);
  mountRoutes(app, routes);
  app.notFound((c) =>
    errorResponse(404, "not_found", `no route ${c.req.method} ${c.req.path}; see /openapi.json`)
  );
  app.onError(onServerError);

  await parts.runner.recover();
  const sweeper = await startRetention(parts.runner, options);
  return {
    app,
    routes,
    gpuReady: gpu.ready,
    context,
    retention: sweeper,
    shutdown: shutdownOnce(parts, lifecycle, sweeper),
  };
}

/** With `retainMs`: purges the expired jobs now, then on a timer. */
async function startRetention(
  runner: JobRunner,
  { retainMs, now }: ServerOptions,
): Promise<RetentionSweeper | undefined> {
  if (retainMs === undefined) return undefined;
  const sweeper = new RetentionSweeper({
    retainMs,
    now,
    list: () => runner.list(),
    purge: (id) => runner.purge(id, "retention"),
  });
  await sweeper.sweep();
  sweeper.start();
  return sweeper;
}

/** The server's parts and settings that do not depend on the GPU. */
interface ServerParts {
  root: DataRoot;
  store: JobStore;
  scheduler: GpuScheduler;
  models: ModelRegistry;
  runner: JobRunner;
  pacsEndpoints: PacsRegistry;
  metrics: Metrics;
  admission: MemoryBudget;
  maxBodyBytes: number;
}

/** The job store (recovered later), GPU scheduler, model registry and job runner, with defaults. */
async function openParts(root: DataRoot, options: ServerOptions): Promise<ServerParts> {
  const stateDir = options.stateDir ?? join(root.real, ".voxseg", "jobs");
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  // Before the store opens: a bad budget creates no state folder.
  const admission = new MemoryBudget(options.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET);
  const store = await JobStore.open(stateDir);
  const scheduler = new GpuScheduler({ maxQueue });
  const models: ModelRegistry = new ModelRegistry({
    dir: options.modelsDir ?? join(root.real, "models"),
    // Called per request, after `runner` exists.
    jobModels: (): ModelEntry[] => runner.jobModels(),
  });
  const pacsEndpoints = new PacsRegistry(options.pacsEndpoints);
  const runner = new JobRunner({
    store,
    scheduler,
    models,
    root,
    maxQueue,
    pacsEndpoints,
    pacs: options.pacs,
    planner: options.planner,
  });
  const metrics = new Metrics(() => ({
    gpuQueueDepth: scheduler.queueDepth,
    gpuBusySeconds: scheduler.busySeconds(),
    jobs: runner.counts(),
    training: runner.training(),
  }));
  return {
    root,
    store,
    scheduler,
    models,
    runner,
    pacsEndpoints,
    metrics,
    admission,
    maxBodyBytes,
  };
}

/** The GPU as the routes see it: the adapter once acquired, or why it could not be. */
export interface GpuState {
  /** Resolves when the GPU is acquired, rejects when it cannot be. */
  ready: Promise<void>;
  info(): GpuInfo | undefined;
  error(): string | undefined;
}

/** Starts acquiring the GPU without waiting; a failure is kept for /readyz and /v1/device. */
export function startAcquiringGpu(acquire: () => Promise<{ info: GpuInfo }>): GpuState {
  let info: GpuInfo | undefined;
  let error: string | undefined;
  const ready = acquire().then(
    (g) => {
      info = g.info;
    },
    (e) => {
      error = (e as Error).message;
      throw e;
    },
  );
  ready.catch(() => {}); // reported by /readyz and /v1/device
  return { ready, info: () => info, error: () => error };
}

/** Whether the server still takes work, and the signal that ends event streams at shutdown. */
interface Lifecycle {
  draining: boolean;
  stopping: AbortController;
}

function serverContext(parts: ServerParts, gpu: GpuState, lifecycle: Lifecycle): ServerContext {
  const { root, store, runner, models, scheduler, metrics, maxBodyBytes, admission } = parts;
  return {
    root,
    store,
    runner,
    models,
    pacsEndpoints: parts.pacsEndpoints,
    scheduler,
    metrics,
    gpu: gpu.info,
    gpuError: gpu.error,
    draining: () => lifecycle.draining,
    shutdownSignal: lifecycle.stopping.signal,
    maxBodyBytes,
    admission,
    version: denoJson.version,
  };
}

/** The bearer tokens by name: the token file's, plus `token` as `default`. */
export function tokensOf(options: Pick<ServerOptions, "token" | "tokens">): Map<string, string> {
  const tokens = new Map(options.tokens ?? []);
  if (options.token) tokens.set("default", options.token);
  return tokens;
}

/**
 * Every route, from the route modules, plus /openapi.json describing them all; `auth` is the
 * scope the description declares ("none" without tokens).
 */
export function routeTable(context: ServerContext, auth: AuthScope | "none"): RouteSpec[] {
  const routes: RouteSpec[] = [
    ...healthRoutes(context),
    ...modelRoutes(context),
    ...jobRoutes(context),
    ...pacsRoutes(context),
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
  return routes;
}

/** The middleware every request passes, in order. */
function useMiddleware(
  app: Hono,
  context: ServerContext,
  options: ServerOptions,
  tokens: TokenSet,
): void {
  // First: it ends the bodies of HEAD answers, which every later wrapper waits on.
  app.use("*", headResponse());
  app.use("*", requestMetrics(context.metrics));
  if (options.accessLog) app.use("*", accessLog(options.accessLog));
  app.use("*", hostCheck({ allowed: options.allowedHosts, anyHost: PROBE_PATHS }));
  app.use("*", originCheck());
  app.use("*", bearerAuth({ tokens, scope: options.auth ?? "all", public: OPEN_PATHS }));
  app.use("*", drainGate({ draining: context.draining }));
  const streams = new StreamSlots(options.streamLimits);
  app.use("/v1/jobs/:id/events", streamLimit(streams, (c) => c.req.param("id") ?? ""));
}

/** Registers each route behind its content-type check and body limit. */
function mountRoutes(app: Hono, routes: readonly RouteSpec[]): void {
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
}

/** The one error handler: a full GPU queue is 503 with Retry-After, the rest as rendered. */
export function onServerError(err: Error, c: Context): Response {
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
}

/**
 * Stops taking work, lets jobs and GPU work finish (a training job checkpoints), then ends
 * event streams and frees the models; the first call does it, later ones wait on it.
 */
function shutdownOnce(
  parts: ServerParts,
  lifecycle: Lifecycle,
  sweeper?: RetentionSweeper,
): () => Promise<void> {
  let shut: Promise<void> | undefined;
  return () =>
    shut ??= (async () => {
      lifecycle.draining = true;
      await sweeper?.stop();
      await parts.runner.shutdown();
      await parts.scheduler.idle();
      lifecycle.stopping.abort();
      parts.models.dispose();
    })();
}
