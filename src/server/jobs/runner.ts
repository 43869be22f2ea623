/**
 * Runs jobs one at a time, first come first served, on the shared GPU lane: a training job
 * holds the lane for its run but yields it between optimizer steps (the trainer's `beforeStep`
 * hook) so synchronous predictions are served in between; a prediction job holds it for its
 * volume. Each change of state is written to the {@link JobStore} and announced as an event.
 *
 * Cancelling a running job aborts it: training stops after the current step and writes its
 * last checkpoint. Stopping the server (SIGTERM) aborts the running job the same way but marks
 * it `interrupted`; queued jobs stay queued on disk. After a restart, {@link JobRunner.recover}
 * queues the queued jobs again and marks jobs that were running `interrupted` (the process
 * died under them); POST /v1/jobs/{id}/resume queues an interrupted, cancelled or failed job
 * again, and a training job then continues from its last checkpoint.
 */

import { ApiError } from "../errors.ts";
import type { ModelEntry } from "../models.ts";
import { QueueFullError } from "../scheduler.ts";
import {
  type Job,
  JOB_STATES,
  type JobDeps,
  type JobState,
  newJobId,
  type PredictJobRequest,
  type TrainJobRequest,
} from "./job.ts";
import { trainConfig } from "./requests.ts";
import { runPredictJob } from "./predict_job.ts";
import { checkpointOf, runTrainJob } from "./train_job.ts";

/** Why a running job was aborted. */
class StopRequest extends Error {
  constructor(readonly kind: "cancel" | "shutdown") {
    super(kind === "cancel" ? "cancelled" : "the server is shutting down");
  }
}

export interface JobRunnerOptions extends JobDeps {
  /** Jobs that may wait in the queue at once. */
  maxQueue: number;
}

const now = () => new Date().toISOString();

export class JobRunner {
  readonly #o: JobRunnerOptions;
  readonly #queue: string[] = [];
  #current?: { id: string; controller: AbortController; done: Promise<void> };
  readonly #training = new Map<string, { loss: number; step: number }>();
  #stopped = false;

  constructor(options: JobRunnerOptions) {
    this.#o = options;
  }

  /** Latest loss and step of the running training job(s), for /metrics. */
  training(): Record<string, { loss: number; step: number }> {
    return Object.fromEntries(this.#training);
  }

  /** Jobs by state, every state present, for /metrics. */
  counts(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    for (const job of this.#o.store.list()) counts[job.state]++;
    return counts;
  }

  /** The models of succeeded training jobs: their best checkpoint, else their last. */
  jobModels(): ModelEntry[] {
    const out: ModelEntry[] = [];
    for (const job of this.#o.store.list()) {
      if (job.kind !== "train" || job.state !== "succeeded") continue;
      const path = checkpointOf(this.#o.store.runDir(job.id));
      if (path) out.push({ name: job.name, path, source: "job", jobId: job.id });
    }
    return out;
  }

  /** After a restart: jobs that were running become interrupted; queued ones queue again. */
  async recover(): Promise<void> {
    for (const job of this.#o.store.list().reverse()) {
      if (job.state === "running") {
        await this.#finish(job, "interrupted", {
          code: "interrupted",
          message: `the server stopped while this job ran; POST /v1/jobs/${job.id}/resume ` +
            (job.kind === "train" ? "continues it from its last checkpoint" : "runs it again"),
        });
      } else if (job.state === "queued") {
        this.#queue.push(job.id);
      }
    }
    this.#kick();
  }

  /** Queues a training job; 400 for a bad dataset or config, 409 when the name is taken. */
  async submitTrain(request: TrainJobRequest): Promise<Job> {
    this.#checkRoom();
    const id = newJobId();
    const name = request.name ?? id;
    await trainConfig(request, this.#o.root, this.#o.store.runDir(id)); // 400 before queueing
    if (
      await this.#o.models.has(name) ||
      this.#o.store.list().some((j) => j.kind === "train" && j.name === name)
    ) {
      throw new ApiError(
        409,
        "name_taken",
        `a model or training job named ${JSON.stringify(name)} exists; choose another "name"`,
      );
    }
    return await this.#create({ id, kind: "train", name, request });
  }

  /** Queues a prediction job; 400 for bad paths, 404 for an unknown model. */
  async submitPredict(request: PredictJobRequest): Promise<Job> {
    this.#checkRoom();
    await this.#o.models.entry(request.model);
    await this.#o.root.resolve(request.input, { what: "input", mustExist: true });
    await this.#o.root.resolve(request.output, { what: "output" });
    const id = newJobId();
    return await this.#create({ id, kind: "predict", name: request.model, request });
  }

  /** The job `id`; 404 `job_not_found` when there is none. */
  get(id: string): Job {
    const job = this.#o.store.get(id);
    if (!job) throw new ApiError(404, "job_not_found", `no job with id ${JSON.stringify(id)}`);
    return job;
  }

  /**
   * Cancels a queued job at once, or asks a running one to stop (training writes its last
   * checkpoint first; the job turns `cancelled` when it has stopped). 409 for a finished job.
   */
  async cancel(id: string): Promise<Job> {
    const job = this.get(id);
    if (job.state === "queued") {
      this.#queue.splice(this.#queue.indexOf(id), 1);
      await this.#finish(job, "cancelled");
    } else if (job.state === "running" && this.#current?.id === id) {
      this.#current.controller.abort(new StopRequest("cancel"));
    } else {
      throw new ApiError(409, "job_finished", `job ${id} is already ${job.state}`);
    }
    return job;
  }

  /** Queues an interrupted, cancelled or failed job again. */
  async resume(id: string): Promise<Job> {
    const job = this.get(id);
    if (!["interrupted", "cancelled", "failed"].includes(job.state)) {
      throw new ApiError(
        409,
        "not_resumable",
        `job ${id} is ${job.state}; only interrupted, cancelled or failed jobs can be resumed`,
      );
    }
    this.#checkRoom();
    await this.#o.store.events(id);
    job.state = "queued";
    delete job.error;
    delete job.finishedAt;
    this.#o.store.append(id, "state", { state: "queued", resumed: true });
    await this.#o.store.save(job);
    this.#queue.push(id);
    this.#kick();
    return job;
  }

  /**
   * Stops taking jobs, aborts the running one (training checkpoints first; the job is left
   * `interrupted`, resumable) and waits for it and for pending writes.
   */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    const current = this.#current;
    if (current) {
      current.controller.abort(new StopRequest("shutdown"));
      await current.done;
    }
    await this.#o.store.flush();
  }

  #checkRoom(): void {
    if (this.#queue.length >= this.#o.maxQueue) {
      throw new QueueFullError(30, this.#o.maxQueue, "job queue");
    }
  }

  async #create(
    init: Pick<Job, "id" | "kind" | "name" | "request">,
  ): Promise<Job> {
    const job: Job = { ...init, state: "queued", createdAt: now(), attempts: 0 };
    await this.#o.store.create(job);
    this.#o.store.append(job.id, "state", { state: "queued" });
    this.#queue.push(job.id);
    this.#kick();
    return job;
  }

  #kick(): void {
    if (this.#current || this.#stopped) return;
    const id = this.#queue.shift();
    if (!id) return;
    const job = this.#o.store.get(id)!;
    const controller = new AbortController();
    const done = this.#run(job, controller.signal).finally(() => {
      this.#current = undefined;
      this.#kick();
    });
    this.#current = { id, controller, done };
  }

  async #run(job: Job, signal: AbortSignal): Promise<void> {
    const store = this.#o.store;
    await store.events(job.id); // before any change: a stream sees the state and its event together
    job.state = "running";
    job.startedAt = now();
    job.attempts++;
    delete job.error;
    delete job.result;
    store.append(job.id, "state", { state: "running", attempt: job.attempts });
    await store.save(job);
    let state: JobState = "succeeded";
    let error: Job["error"];
    try {
      job.result = job.kind === "train"
        ? await runTrainJob(job, signal, this.#o, (loss, step) => {
          this.#training.set(job.id, { loss, step });
        })
        : await runPredictJob(job, signal, this.#o);
    } catch (e) {
      if (!signal.aborted) {
        state = "failed";
        const err = e as Error;
        error = { code: e instanceof ApiError ? e.code : "job_failed", message: err.message };
        if (!(e instanceof ApiError)) console.error(`voxseg serve: job ${job.id} failed:`, err);
      }
    }
    if (signal.aborted) {
      state = (signal.reason as StopRequest).kind === "shutdown" ? "interrupted" : "cancelled";
    }
    await this.#finish(job, state, error);
  }

  async #finish(job: Job, state: JobState, error?: Job["error"]): Promise<void> {
    await this.#o.store.events(job.id); // before any change, as in #run
    job.state = state;
    job.finishedAt = now();
    if (error) job.error = error;
    this.#training.delete(job.id);
    this.#o.store.append(job.id, "state", {
      state,
      ...(error ? { error } : {}),
      ...(job.result ? { result: job.result } : {}),
    });
    await this.#o.store.save(job);
  }
}
