/**
 * A training job: the request's config resolved again (the dataset may have changed since it
 * was queued) — planned first, as `voxseg train` plans, unless the request says `"plan":
 * "none"` (./train_plan.ts) —, the trainer run holding the GPU lane and yielding it between
 * steps, and its events turned into job progress, metrics and checkpoints. Always
 * `resume: true`: a first run's folder is new, so it starts fresh; a resumed one continues
 * from `last.safetensors` with the plan and steps its first start recorded.
 */

import { join, relative } from "node:path";
import { datasetValidator } from "../../infer/dataset_validator.ts";
import { patchValidator } from "../../infer/patch_validator.ts";
import { VALIDATION_PATCHES } from "../../train/plan/run_plan.ts";
import type { TrainConfig } from "../../train/config.ts";
import { RUN_FILES, train, type TrainEvent } from "../../train/trainer.ts";
import type { JobDeps } from "./deps.ts";
import type { Job, TrainJobRequest } from "./job.ts";
import { trainDataset } from "./requests.ts";
import { trainRun } from "./train_plan.ts";

const finiteOrNull = (v: number) => (Number.isFinite(v) ? v : null);

/** Trains; returns the job's result (model name, checkpoint, scores, how it stopped, plan). */
export async function runTrainJob(
  job: Job,
  signal: AbortSignal,
  deps: JobDeps,
  onStep: (loss: number, step: number) => void,
): Promise<Record<string, unknown>> {
  const { root, scheduler } = deps;
  const { dataset, datasetPath } = await trainDataset(job.request as TrainJobRequest, root);
  // Planning (when the job is planned) comes first, inside the time budget.
  const run = await trainRun(job, dataset, datasetPath, deps, signal);
  const { config } = run;
  const hasVal = dataset.cases.some((c) => c.split === "val" && c.hasLabel);
  // A planned run validates as the CLI's does, on a fixed set of patches; else whole volumes.
  const validate = run.planned
    ? patchValidator({ patchSize: config.data.patchSize, patches: VALIDATION_PATCHES })
    : hasVal
    ? datasetValidator({ patchSize: config.data.patchSize, batchSize: 2 })
    : undefined;
  const lease = await scheduler.acquire(`train ${job.id}`, { bounded: false, signal });
  let result;
  try {
    result = await train({
      config,
      // A first run starts fresh (its folder is new); a resumed one continues from `last`.
      resume: true,
      validate,
      signal,
      beforeStep: () => lease.yield(),
      // dataset.json is read again by the trainer and the loader: keep those reads confined too.
      confineTo: run.confineTo,
      onEvent: (e) => reportTrainEvent(job, config, e, deps, onStep),
      ...(run.normalisation ? { normalisation: run.normalisation } : {}),
      ...(run.channelNormalisations ? { channelNormalisations: run.channelNormalisations } : {}),
      ...(run.fold ? { fold: run.fold } : {}),
      ...(run.deadline ? { deadline: run.deadline } : {}),
    });
  } finally {
    lease.release();
  }
  const checkpoint = checkpointOf(config.out);
  return {
    model: job.name,
    ...(checkpoint ? { checkpoint: shownPath(checkpoint, deps) } : {}),
    epochs: result.epochs,
    steps: result.steps,
    bestScore: result.bestScore,
    bestEpoch: result.bestEpoch,
    lastMetrics: Object.fromEntries(
      Object.entries(result.lastMetrics).map(([k, v]) => [k, finiteOrNull(v)]),
    ),
    stoppedBy: result.stoppedBy,
    seconds: result.seconds,
    ...(job.plan ? { plan: job.plan } : {}),
  };
}

/** Turns a trainer event into job progress, metrics and the job's events. */
/**
 * A run file as clients see it: relative to the data root when the job state lies inside it,
 * else relative to the state folder (`<id>/run/best.safetensors`): never where files live.
 */
export function shownPath(path: string, { root, store }: Pick<JobDeps, "root" | "store">): string {
  return root.contains(path) ? root.display(path) : relative(store.dir, path);
}

function reportTrainEvent(
  job: Job,
  config: TrainConfig,
  e: TrainEvent,
  deps: JobDeps,
  onStep: (loss: number, step: number) => void,
): void {
  const { store } = deps;
  switch (e.type) {
    case "start":
      store.append(job.id, "log", {
        message: `training ${e.params} parameters for ${config.epochs} epochs × ` +
          `${config.itersPerEpoch} steps` +
          (e.resumedFrom ? `, resumed after epoch ${e.resumedFrom}` : ""),
        params: e.params,
        ...(e.resumedFrom ? { resumedFrom: e.resumedFrom } : {}),
      });
      break;
    case "step": {
      const total = config.epochs * config.itersPerEpoch;
      const done = (e.epoch - 1) * config.itersPerEpoch + e.stepInEpoch;
      job.progress = {
        phase: "train",
        epoch: e.epoch,
        epochs: config.epochs,
        step: e.step,
        stepInEpoch: e.stepInEpoch,
        itersPerEpoch: config.itersPerEpoch,
        loss: e.loss,
        lr: e.lr,
        gradNorm: e.gradNorm,
        patchesPerSec: e.patchesPerSec,
        fraction: Math.min(1, done / total),
      };
      onStep(e.loss, e.step);
      store.append(job.id, "progress", job.progress);
      break;
    }
    case "skipped":
      store.append(job.id, "log", { message: `step ${e.step} skipped: ${e.reason}` });
      break;
    case "validation": {
      job.metrics = Object.fromEntries(
        Object.entries(e.metrics).map(([k, v]) => [k, finiteOrNull(v)]),
      );
      store.append(job.id, "metrics", {
        epoch: e.epoch,
        step: e.step,
        metrics: job.metrics,
        score: finiteOrNull(e.score),
        best: e.best,
      });
      store.save(job).catch(() => {});
      break;
    }
    case "checkpoint":
      store.append(job.id, "checkpoint", { path: shownPath(e.path, deps), epoch: e.epoch });
      break;
    case "stop":
      store.append(job.id, "log", { message: `stopped: ${e.reason}` });
      break;
    case "notice":
      store.append(job.id, "log", { message: e.message });
      break;
  }
}

/** A run folder's model checkpoint: best if written, else last; undefined when neither. */
export function checkpointOf(runDir: string): string | undefined {
  for (const file of [RUN_FILES.best, RUN_FILES.last]) {
    const path = join(runDir, file);
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not written
    }
  }
  return undefined;
}
