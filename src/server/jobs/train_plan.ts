/**
 * Planned training jobs: a train request planned as `voxseg train --data` plans it — the
 * request's `plan`, else the `plans.json` beside the dataset, else a new plan made into the
 * job's run folder; the cases preprocessed there when the plan needs it; the run sized to
 * `timeBudget` — by the command line's own planner, which `voxseg serve` hands the server
 * ({@link TrainPlanner}). Layers, each overriding the one before: the defaults, the dataset's
 * classes, the plan, the request's `config`.
 *
 * What planning decided is recorded in the job (`plan`, shown by GET /v1/jobs/{id}) once it is
 * done, and the plan itself in the run folder (`plans.json`). A resumed job never plans again:
 * when its run has started it continues with the config its `run.json` stored (the budget's
 * epochs × steps included); when planning was done but training had not started, it takes the
 * run folder's `plans.json` as it is, without resizing it to a budget.
 */

import { join, sep } from "node:path";
import { writeFileAtomic } from "../../base/atomic.ts";
import { type Normalization, parseNormalization } from "../../base/normalization.ts";
import { type Dataset, readDataset } from "../../data/dataset.ts";
import type { TrainConfig } from "../../train/config.ts";
import { PLAN_FILE, readPlan } from "../../train/plan/plan_file.ts";
import { planOverrides } from "../../train/plan/planner.ts";
import { preprocessingReason } from "../../train/plan/run_plan.ts";
import type { Plan } from "../../train/plan/types.ts";
import { readRunRecord, type RunFold } from "../../train/trainer.ts";
import { ApiError } from "../errors.ts";
import type { DataRoot } from "../paths.ts";
import type { JobDeps, PlannedTraining, TrainPlanInput, TrainPlanner } from "./deps.ts";
import { pathExists } from "./files.ts";
import type { Job, JobPlan, TrainJobRequest } from "./job.ts";
import { asksForPlanning, resolveTrainConfig } from "./requests.ts";

/** How a training job runs: its config and what the trainer takes besides it. */
export interface TrainRun {
  config: TrainConfig;
  /** True for a planned run: it validates on a fixed set of patches, as the CLI's. */
  planned: boolean;
  /** The plan's exact normalisation (first start only: run.json keeps it). */
  normalisation?: Normalization;
  /** Each input channel's, when the plan has several (first start only). */
  channelNormalisations?: Normalization[];
  fold?: RunFold;
  /** `Date.now()` past which training stops (a time budget's first start only). */
  deadline?: number;
  /** The folder the dataset and its cases must stay inside. */
  confineTo: string;
}

/**
 * Checks at submit what planning a request asks for, before it is queued: 400
 * `planning_unavailable` without a planner, `invalid_plan` for a plan that is not there or
 * cannot be read (one made for another dataset fails the job when it runs, naming both).
 */
export async function checkTrainPlanning(
  request: TrainJobRequest,
  { root, planner }: Pick<JobDeps, "root" | "planner">,
): Promise<void> {
  if (!planner) {
    if (asksForPlanning(request)) throw unavailable();
    return;
  }
  if (request.plan !== undefined && request.plan !== "none") {
    await resolvePlanPath(request.plan, root);
  }
}

/**
 * The run a training job trains: unplanned (request `plan` "none", or a server without a
 * planner), resumed from what its first start recorded, or planned now. Planning's choices go
 * into `job.plan` (and are saved) before training starts.
 */
export async function trainRun(
  job: Job,
  dataset: Dataset,
  datasetPath: string,
  deps: JobDeps,
  signal: AbortSignal,
): Promise<TrainRun> {
  const { root, store, planner } = deps;
  const request = job.request as TrainJobRequest;
  const out = store.runDir(job.id);
  const unplanned = async (): Promise<TrainRun> => ({
    config: resolveTrainConfig(request, dataset, datasetPath, out),
    planned: false,
    ...(request.fold !== undefined && planner
      ? { fold: await planner.fold(dataset, undefined, request.fold) }
      : {}),
    confineTo: root.real,
  });
  if (!planner || request.plan === "none") {
    if (planner && !job.plan) {
      job.plan = { source: "none", reason: '"plan": "none": the defaults and "config" only' };
    }
    return await unplanned();
  }
  const log = (line: string) => store.append(job.id, "log", { message: shownLine(line, deps) });
  // Started before: continue with what was decided then, never planning again.
  const before = await readPlannedRun(out);
  if (before) job.plan ??= before.summary;
  const record = await readRunRecord(out).catch(() => undefined);
  if (record) {
    // run.json holds the config its first start resolved (a plan's epochs × steps included).
    if (before) log("resumed: the run continues with the plan and steps its first start chose");
    const config = { ...record.config, out };
    return {
      config,
      planned: before !== undefined,
      confineTo: confinement(config.data.dataset, out, root),
    };
  }
  if (before) {
    log("resumed: training had not started; it starts on the plan made before");
    return await plannedRun(request, dataset, datasetPath, out, before.planned, deps);
  }
  const startedAt = performance.now(), startedWall = Date.now();
  const { planPath, source } = await planSource(request, datasetPath, root);
  const planned = await planOnGpu(
    planner,
    dataset,
    {
      ...(planPath ? { planPath } : {}),
      out,
      startedAt,
      ...(request.timeBudget !== undefined ? { timeBudgetSeconds: request.timeBudget } : {}),
      ...(request.gpuMemory !== undefined ? { gpuMemoryBytes: request.gpuMemory } : {}),
      ...(request.network !== undefined ? { network: request.network } : {}),
    },
    log,
    deps,
    signal,
  );
  const run = await plannedRun(request, dataset, datasetPath, out, planned, deps);
  job.plan = {
    ...jobPlan(planned.plan, source, planPath && root.display(planPath), dataset),
    ...(run.fold ? { fold: run.fold.index } : {}),
  };
  await writePlannedRun(out, planned, job.plan);
  await store.save(job);
  store.append(job.id, "log", { message: "planned", plan: job.plan });
  return {
    ...run,
    ...(request.timeBudget !== undefined
      ? { deadline: startedWall + request.timeBudget * 1000 }
      : {}),
  };
}

/** The file in the run folder that says what planning decided besides the plan itself. */
const PLANNED_RUN_FILE = "planned_run.json";

/**
 * Records in the run folder what planning decided besides the plan (`plans.json`, which the
 * planner wrote there): the dataset trained on, the plan's folder, the exact normalisation and
 * what the job shows. Server-side only: it names folders, and is never served.
 */
async function writePlannedRun(
  out: string,
  planned: PlannedTraining,
  summary: JobPlan,
): Promise<void> {
  const { dataset, planDir, normalisation, channelNormalisations } = planned;
  await writeFileAtomic(
    join(out, PLANNED_RUN_FILE),
    JSON.stringify(
      { dataset, planDir, normalisation, channelNormalisations, summary },
      null,
      2,
    ) + "\n",
  );
}

/** What {@link writePlannedRun} recorded, with the run folder's plan; undefined when absent. */
async function readPlannedRun(
  out: string,
): Promise<{ planned: PlannedTraining; summary: JobPlan } | undefined> {
  try {
    const json = JSON.parse(await Deno.readTextFile(join(out, PLANNED_RUN_FILE)));
    const plan = await readPlan(join(out, PLAN_FILE));
    if (typeof json.dataset !== "string" || typeof json.planDir !== "string") return undefined;
    return {
      planned: {
        plan,
        dataset: json.dataset,
        planDir: json.planDir,
        normalisation: parseNormalization(json.normalisation),
        ...(Array.isArray(json.channelNormalisations)
          ? { channelNormalisations: json.channelNormalisations.map(parseNormalization) }
          : {}),
      },
      summary: json.summary as JobPlan,
    };
  } catch {
    return undefined; // not planned to the end: plan again
  }
}

/** The config, normalisation and fold of a run on a plan. */
async function plannedRun(
  request: TrainJobRequest,
  dataset: Dataset,
  datasetPath: string,
  out: string,
  planned: PlannedTraining,
  { root, planner }: JobDeps,
): Promise<TrainRun> {
  const config = resolveTrainConfig(request, dataset, datasetPath, out, {
    planned: planOverrides(planned.plan),
    trainOn: planned.dataset,
  });
  const confineTo = confinement(planned.dataset, out, root);
  let fold: RunFold | undefined;
  if (request.fold !== undefined) {
    // The fold of the cases trained on (the preprocessed ones keep their ids), as the CLI.
    const trained = planned.dataset === datasetPath
      ? dataset
      : await readDataset(planned.dataset, { confineTo });
    fold = await planner!.fold(trained, planned.planDir, request.fold);
  }
  return {
    config,
    planned: true,
    normalisation: planned.normalisation,
    ...(planned.channelNormalisations
      ? { channelNormalisations: planned.channelNormalisations }
      : {}),
    ...(fold ? { fold } : {}),
    confineTo,
  };
}

/** The planner's `plan`, its GPU work holding the server's GPU lane. */
function planOnGpu(
  planner: TrainPlanner,
  dataset: Dataset,
  input: Omit<TrainPlanInput, "log" | "onGpu">,
  log: (line: string) => void,
  { scheduler, root }: JobDeps,
  signal: AbortSignal,
): Promise<PlannedTraining> {
  return planner.plan(dataset, {
    ...input,
    log,
    onGpu: async <T>(work: () => Promise<T>): Promise<T> => {
      const lease = await scheduler.acquire("plan: timing", { bounded: false, signal });
      try {
        return await work();
      } finally {
        lease.release();
      }
    },
  }).catch((e) => {
    if (e instanceof ApiError) throw new ApiError(e.status, e.code, root.redact(e.message));
    throw e;
  });
}

/**
 * Where the plan comes from: the request's (a path under the data root), else `plans.json`
 * beside the dataset, else none (a new plan).
 */
async function planSource(
  request: TrainJobRequest,
  datasetPath: string,
  root: DataRoot,
): Promise<{ planPath?: string; source: JobPlan["source"] }> {
  if (request.plan !== undefined) {
    return { planPath: await resolvePlanPath(request.plan, root), source: "request" };
  }
  const beside = join(datasetPath, PLAN_FILE);
  if (!(await pathExists(beside))) return { source: "new" };
  // Resolved as a client's path would be: a plans.json that links out of the root is refused.
  const planPath = await root.resolve(root.display(beside), {
    what: "the dataset's plans.json",
    mustExist: true,
  });
  return { planPath, source: "dataset" };
}

/** The request's `plan` resolved inside the data root; 400 `invalid_plan` when it is no plan. */
async function resolvePlanPath(plan: string, root: DataRoot): Promise<string> {
  const path = await root.resolve(plan, { what: "plan", mustExist: true });
  const stat = await Deno.stat(path);
  const file = stat.isDirectory ? join(path, PLAN_FILE) : path;
  if (!stat.isDirectory && !/\.json$/i.test(path)) {
    throw new ApiError(
      400,
      "invalid_plan",
      `"plan" ${JSON.stringify(plan)} is neither a plans.json nor a folder holding one; name ` +
        'the plan `voxseg plan` wrote, or drop "plan" to plan the dataset now',
    );
  }
  if (!(await pathExists(file))) {
    throw new ApiError(
      400,
      "invalid_plan",
      `"plan" ${JSON.stringify(plan)} holds no ${PLAN_FILE}; write one with \`voxseg plan\`, ` +
        'or drop "plan" to plan the dataset now',
    );
  }
  await readPlan(path).catch((e) => {
    throw new ApiError(
      400,
      "invalid_plan",
      `"plan" ${JSON.stringify(plan)} cannot be used: ${root.redact((e as Error).message)}`,
    );
  });
  return path;
}

/** What the job shows of a plan: each choice and why. */
function jobPlan(
  p: Plan,
  source: JobPlan["source"],
  path: string | undefined,
  dataset: Dataset,
): JobPlan {
  const n = p.normalisation;
  const network = p.network ?? "unet3d";
  const plain = network === "plain";
  const preprocessed = preprocessingReason(p, dataset);
  return {
    source,
    ...(path ? { path } : {}),
    network,
    targetSpacingMm: [...p.targetSpacingMm],
    normalisation: { scheme: n.scheme, ...(n.window ? { window: n.window } : {}) },
    ...((p.channels?.length ?? 0) > 1
      ? {
        channels: p.channels!.map((c) => ({
          name: c.name,
          scheme: c.normalisation.scheme,
          ...(c.normalisation.window ? { window: c.normalisation.window } : {}),
        })),
      }
      : {}),
    ...(preprocessed ? { preprocessed } : {}),
    patchSize: [...(plain ? p.topology.patchSize : p.unet3d.patchSize)],
    batchSize: plain ? p.topology.batchSize : p.batchSize,
    baseChannels: plain ? p.topology.levels[0].channels : p.unet3d.baseChannels,
    depth: plain ? p.topology.levels.length : p.unet3d.depth,
    epochs: p.epochs,
    itersPerEpoch: p.itersPerEpoch,
    ...(p.budget
      ? {
        budget: {
          budgetSeconds: p.budget.budgetSeconds,
          msPerStep: p.budget.msPerStep,
          steps: p.budget.steps,
          estimatedSeconds: p.budget.estimatedSeconds,
          reason: p.budget.reason,
        },
      }
      : {}),
    reasons: { ...p.reasons },
    notes: [...p.notes],
  };
}

/** The folder a run's dataset must stay inside: the data root, or the run folder it was made in. */
function confinement(dataset: string, out: string, root: DataRoot): string {
  return root.contains(dataset) ? root.real : out;
}

/** A planner's line as a job event shows it: folders relative to the data root or state folder. */
function shownLine(line: string, { root, store }: Pick<JobDeps, "root" | "store">): string {
  return root.redact(root.contains(store.dir) ? line : line.split(store.dir + sep).join(""));
}

function unavailable(): ApiError {
  return new ApiError(
    400,
    "planning_unavailable",
    'this server trains unplanned (it was started without the planner): drop "plan", ' +
      '"timeBudget", "network", "fold" and "gpuMemory", or run the job with `voxseg serve`',
  );
}
