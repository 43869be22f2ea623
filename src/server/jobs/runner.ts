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
 *
 * Purging (DELETE /v1/jobs/{id}?purge=true, or the retention sweep) removes a finished job's
 * files and record at once; a queued job is cancelled first; a running one is asked to stop,
 * its purge is written down (`purgeRequestedAt`) and completes right after it stops — or at
 * the next start, when the server stopped first — so nothing it wrote is left behind.
 *
 * Every change of a job's state happens synchronously (a queue slot is reserved before a
 * submission's checks await anything, a cancelled job leaves the queue before its record is
 * written), so concurrent requests cannot overshoot the queue or run a cancelled job. Writing
 * the state may fail (a full disk): the job then fails with a message saying so, the server
 * keeps answering and the next job runs.
 */

import { resolve } from "node:path";
import { ApiError } from "../errors.ts";
import type { ModelEntry } from "../models.ts";
import { QueueFullError } from "../scheduler.ts";
import { checkPredictInput } from "./dicom_input.ts";
import { checkNiftiInput, freeName, pathExists } from "./files.ts";
import { channelCountError, CHANNELS_IN_JOBS, metaChannels } from "../inference.ts";
import type { JobDeps } from "./deps.ts";
import {
  type AnyPredictJobRequest,
  isFinal,
  isPacsRequest,
  type Job,
  JOB_STATES,
  type JobState,
  newJobId,
  type TrainJobRequest,
} from "./job.ts";
import { trainConfig } from "./requests.ts";
import { runPacsPredictJob } from "./pacs_predict_job.ts";
import { runPredictJob } from "./predict_job.ts";
import { purgeJobFiles, type PurgeReport } from "./purge.ts";
import { StorageError } from "./store.ts";
import { checkpointOf, runTrainJob } from "./train_job.ts";
import { checkTrainPlanning } from "./train_plan.ts";

/** Why a running job was aborted. */
class StopRequest extends Error {
  constructor(readonly kind: "cancel" | "shutdown" | "storage", readonly error?: StorageError) {
    super(
      kind === "cancel"
        ? "cancelled"
        : kind === "shutdown"
        ? "the server is shutting down"
        : error!.message,
    );
  }
}

export interface JobRunnerOptions extends JobDeps {
  /** Jobs that may wait in the queue at once. */
  maxQueue: number;
}

const now = () => new Date().toISOString();

/** An error of a write that found no space (or quota) left. */
const isDiskFull = (e: unknown) => ["ENOSPC", "EDQUOT"].includes((e as { code?: string })?.code!);

export class JobRunner {
  readonly #o: JobRunnerOptions;
  readonly #queue: string[] = [];
  /** Queue slots held by submissions still being checked. */
  #reserved = 0;
  #current?: { id: string; controller: AbortController; done: Promise<void> };
  /** Purges in progress, by job id. */
  readonly #purging = new Map<string, Promise<PurgeReport>>();
  readonly #training = new Map<string, { loss: number; step: number }>();
  #stopped = false;

  constructor(options: JobRunnerOptions) {
    this.#o = options;
    // A failed write of the running job's state stops it (training checkpoints first).
    options.store.onWriteFailure((id, error) => {
      if (this.#current?.id === id && !this.#current.controller.signal.aborted) {
        this.#current.controller.abort(new StopRequest("storage", error));
      }
    });
  }

  /** Every job, newest first. */
  list(): Job[] {
    return this.#o.store.list();
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

  /**
   * After a restart: jobs that were running become interrupted; queued ones queue again; a
   * purge asked for before the stop completes now.
   */
  async recover(): Promise<void> {
    for (const job of this.#o.store.list().reverse()) {
      if (job.purgeRequestedAt) {
        if (!isFinal(job.state)) await this.#finish(job, "cancelled");
        await this.#purgeNow(job, "requested before a restart", true).catch((e) => {
          console.error(`voxseg serve: job ${job.id}: purge failed: ${(e as Error).message}`);
        });
      } else if (job.state === "running") {
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

  /**
   * Queues a training job; 400 for a bad dataset, config or plan (or planning asked of a server
   * without a planner), 409 when the name is taken.
   */
  async submitTrain(request: TrainJobRequest): Promise<Job> {
    const release = this.#reserve();
    try {
      const id = newJobId();
      const name = request.name ?? id;
      // 400 before queueing: the dataset, the config, and the planning asked for.
      await trainConfig(request, this.#o.root, this.#o.store.runDir(id));
      await checkTrainPlanning(request, this.#o);
      const taken = await this.#o.models.has(name);
      // Checked again after the await, in the same synchronous run as the job's creation.
      if (taken || this.#o.store.list().some((j) => j.kind === "train" && j.name === name)) {
        throw new ApiError(
          409,
          "name_taken",
          `a model or training job named ${JSON.stringify(name)} exists; choose another "name"`,
        );
      }
      return await this.#create({ id, kind: "train", name, request }, release);
    } finally {
      release();
    }
  }

  /**
   * Queues a prediction job: 404 for an unknown model; 400 for bad paths, an input that is
   * neither NIfTI nor a DICOM series (a .dcm output or "series" needs a series), or an output
   * naming the input; 409 `output_exists` when the output exists (or another queued or running
   * job will write it): predictions never replace files. A PACS prediction has no input file
   * and its output is optional. A model of several input channels takes a list of NIfTI files
   * (one per channel) or one 4D NIfTI: another count is a 422 `channel_count_mismatch`.
   */
  async submitPredict(request: AnyPredictJobRequest): Promise<Job> {
    const release = this.#reserve();
    try {
      const { root, models } = this.#o;
      const entry = await models.entry(request.model);
      const wanted = metaChannels((await models.summary(entry)).meta);
      let checked: Pick<Job, "inputChecked" | "dicomInput"> = {};
      if (!isPacsRequest(request)) {
        const inputs = typeof request.input === "string" ? [request.input] : request.input;
        const resolved: string[] = [];
        for (const [c, input] of inputs.entries()) {
          const what = inputs.length > 1 ? `input channel ${c}` : "input";
          resolved.push(await root.resolve(input, { what, mustExist: true }));
        }
        const output = await root.resolve(request.output, { what: "output" });
        if (resolved.includes(output)) {
          throw new ApiError(
            400,
            "invalid_request",
            '"output" names the input; the label map goes to a new file: choose another "output"',
          );
        }
        let given = inputs.length;
        if (inputs.length === 1) {
          const input = await checkPredictInput(root, resolved[0], request);
          checked = input.checked;
          given = input.channels;
        } else {
          for (const [c, path] of resolved.entries()) {
            if (await checkNiftiInput(root, path) > 1) {
              throw new ApiError(
                400,
                "invalid_nifti",
                `"input" channel ${c} (${JSON.stringify(root.display(path))}) is a 4D NIfTI; a ` +
                  "list of channels takes 3D files, one per channel (or name the 4D file alone)",
              );
            }
          }
          checked = { inputChecked: true };
        }
        if (given !== wanted) {
          const what = inputs.length > 1
            ? `${given} files`
            : checked.dicomInput
            ? "a DICOM series"
            : given > 1
            ? `a 4D NIfTI of ${given} volumes`
            : "one volume";
          throw channelCountError(request.model, wanted, given, what, CHANNELS_IN_JOBS);
        }
      } else if (wanted !== 1) {
        throw channelCountError(
          request.model,
          wanted,
          1,
          "a DICOM series from a PACS",
          "a PACS study is one channel: segment it with a one-channel model",
        );
      }
      if (request.output !== undefined) await this.#checkOutputFree(request.output);
      const init = { id: newJobId(), kind: "predict" as const, name: request.model, request };
      return await this.#create({ ...init, ...checked }, release);
    } finally {
      release();
    }
  }

  /** 409 `output_exists` when `output` exists or a queued or running job will write it. */
  async #checkOutputFree(name: string): Promise<void> {
    const { root } = this.#o;
    const output = await root.resolve(name, { what: "output" });
    const exists = await pathExists(output);
    if (!exists && !this.#outputTaken(output)) return;
    const other = await freeName(root, name);
    const error = root.exists(output, "output");
    if (!exists) {
      error.message = `another queued or running job writes ${
        JSON.stringify(root.display(output))
      }; choose another "output" name`;
    }
    if (other) error.message += ` (e.g. ${JSON.stringify(other)})`;
    throw error;
  }

  /** True when a queued or running prediction job writes `output` (a resolved path). */
  #outputTaken(output: string): boolean {
    return this.#o.store.list().some((j) => {
      if (j.kind !== "predict" || (j.state !== "queued" && j.state !== "running")) return false;
      const theirs = (j.request as AnyPredictJobRequest).output;
      return theirs !== undefined && resolve(this.#o.root.real, theirs) === output;
    });
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
      // Not in the queue while its record is still being created: it then is never queued.
      const at = this.#queue.indexOf(id);
      if (at >= 0) this.#queue.splice(at, 1);
      await this.#finish(job, "cancelled");
    } else if (job.state === "running" && this.#current?.id === id) {
      this.#current.controller.abort(new StopRequest("cancel"));
    } else {
      throw new ApiError(409, "job_finished", `job ${id} is already ${job.state}`);
    }
    return job;
  }

  /**
   * Purges a job (see the module comment): the report when done now; `pending` when the job
   * is running and the purge completes once it has stopped. 500 `purge_failed` when a file
   * cannot be removed (the job then stays listed, and a retry goes on where it stopped).
   */
  async purge(
    id: string,
    why: "requested" | "retention" = "requested",
  ): Promise<{ pending: true; job: Job } | { pending: false; report: PurgeReport }> {
    const job = this.get(id);
    const inFlight = this.#purging.get(id);
    if (inFlight) return { pending: false, report: await inFlight };
    if (job.state === "running" && this.#current?.id === id) {
      if (!job.purgeRequestedAt) {
        job.purgeRequestedAt = now();
        this.#o.store.append(id, "log", { message: "purge requested: stopping first" });
        this.#current.controller.abort(new StopRequest("cancel"));
        await this.#save(job); // so a restart before it stops still purges it
      }
      return { pending: true, job };
    }
    let cancelled = false;
    if (job.state === "queued" || job.state === "running") {
      await this.cancel(id);
      cancelled = true;
    }
    return { pending: false, report: await this.#purgeNow(job, why, cancelled) };
  }

  /** Purges a job that is not running; concurrent calls share one purge. */
  #purgeNow(job: Job, why: string, cancelled: boolean): Promise<PurgeReport> {
    const running = this.#purging.get(job.id);
    if (running) return running;
    const purge = (async () => {
      try {
        const report = await purgeJobFiles(job, this.#o, cancelled);
        // The id alone: the log never names files, studies or patients.
        console.error(`voxseg serve: purged job ${job.id} (${why})`);
        return report;
      } catch (e) {
        if (e instanceof ApiError) throw e;
        throw new ApiError(
          500,
          "purge_failed",
          `could not remove a file of job ${job.id} (${(e as Error).name}); check that the ` +
            "server may write there, then DELETE again",
        );
      } finally {
        this.#purging.delete(job.id);
      }
    })();
    this.#purging.set(job.id, purge);
    return purge;
  }

  /** Queues an interrupted, cancelled or failed job again. */
  async resume(id: string): Promise<Job> {
    const job = this.get(id);
    if (this.#purging.has(id) || job.purgeRequestedAt) {
      throw new ApiError(409, "being_purged", `job ${id} is being purged; it cannot be resumed`);
    }
    if (!["interrupted", "cancelled", "failed"].includes(job.state)) {
      throw new ApiError(
        409,
        "not_resumable",
        `job ${id} is ${job.state}; only interrupted, cancelled or failed jobs can be resumed`,
      );
    }
    this.#checkRoom();
    // Queued before anything is awaited: a cancel from now on finds it in the queue.
    job.state = "queued";
    delete job.error;
    delete job.finishedAt;
    this.#o.store.append(id, "state", { state: "queued", resumed: true });
    this.#queue.push(id);
    const saved = this.#save(job);
    this.#kick();
    await saved;
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
    if (this.#queue.length + this.#reserved >= this.#o.maxQueue) {
      throw new QueueFullError(30, this.#o.maxQueue, "job queue");
    }
  }

  /** Holds a queue slot while a submission is checked; the returned function frees it once. */
  #reserve(): () => void {
    this.#checkRoom();
    this.#reserved++;
    let held = true;
    return () => {
      if (held) this.#reserved--;
      held = false;
    };
  }

  /**
   * Lists the job and queues it in one synchronous run (its reserved slot passes to it), then
   * writes it; a failed write removes it again: 507 `insufficient_storage`.
   */
  async #create(
    init: Pick<Job, "id" | "kind" | "name" | "request" | "inputChecked" | "dicomInput">,
    release: () => void,
  ): Promise<Job> {
    const job: Job = { ...init, state: "queued", createdAt: now(), attempts: 0 };
    const written = this.#o.store.create(job);
    this.#o.store.append(job.id, "state", { state: "queued" });
    try {
      await written;
    } catch (e) {
      await this.#o.store.remove(job.id);
      throw new ApiError(507, "insufficient_storage", (e as Error).message);
    }
    release();
    if (job.state !== "queued") return job; // cancelled while it was written
    this.#queue.push(job.id);
    this.#kick();
    return job;
  }

  #kick(): void {
    while (!this.#current && !this.#stopped) {
      const id = this.#queue.shift();
      if (!id) return;
      const job = this.#o.store.get(id);
      if (job?.state !== "queued") continue;
      const controller = new AbortController();
      const done = this.#run(job, controller.signal)
        .catch((e) => {
          // #run records its failures; this is the last guard that keeps the server up.
          console.error(`voxseg serve: job ${id}: ${this.#o.root.redact(String(e))}`);
        })
        .finally(() => {
          this.#current = undefined;
          this.#kick();
        });
      this.#current = { id, controller, done };
    }
  }

  async #run(job: Job, signal: AbortSignal): Promise<void> {
    const store = this.#o.store;
    job.state = "running";
    job.startedAt = now();
    job.attempts++;
    delete job.error;
    delete job.result;
    store.append(job.id, "state", { state: "running", attempt: job.attempts });
    let state: JobState = "succeeded";
    let error: Job["error"];
    try {
      await store.save(job);
      job.result = job.kind === "train"
        ? await runTrainJob(job, signal, this.#o, (loss, step) => {
          this.#training.set(job.id, { loss, step });
        })
        : isPacsRequest(job.request)
        ? await runPacsPredictJob(job, signal, this.#o)
        : await runPredictJob(job, signal, this.#o);
    } catch (e) {
      if (!signal.aborted) {
        state = "failed";
        error = this.#errorOf(job, e);
      }
    }
    if (signal.aborted) {
      const stop = signal.reason as StopRequest;
      if (stop.kind === "storage") {
        state = "failed";
        error = { code: stop.error!.code, message: stop.error!.message };
      } else {
        state = stop.kind === "shutdown" ? "interrupted" : "cancelled";
      }
    }
    await this.#finish(job, state, error);
    if (job.purgeRequestedAt) {
      // Asked for while it ran: now that it has stopped nothing writes to its files.
      await this.#purgeNow(job, "requested", true).catch((e) => {
        console.error(`voxseg serve: job ${job.id}: purge failed: ${(e as Error).message}`);
      });
    }
  }

  /** A job's error as clients see it: no absolute path, no file content. */
  #errorOf(job: Job, e: unknown): Job["error"] {
    const { root } = this.#o;
    if (e instanceof ApiError) return { code: e.code, message: root.redact(e.message) };
    if (e instanceof StorageError) return { code: e.code, message: e.message };
    if (isDiskFull(e) || isDiskFull((e as Error)?.cause)) {
      // A training checkpoint, say: where the job's files are, without the path.
      const full = new StorageError(isDiskFull(e) ? e : (e as Error).cause, "the job's files");
      return { code: full.code, message: full.message };
    }
    const message = root.redact((e as Error)?.message ?? String(e));
    console.error(`voxseg serve: job ${job.id} failed: ${message}`);
    return { code: "job_failed", message };
  }

  /** Records a final state; a failed write is logged and the state stays in memory. */
  async #finish(job: Job, state: JobState, error?: Job["error"]): Promise<void> {
    job.state = state;
    job.finishedAt = now();
    if (error) job.error = error;
    this.#training.delete(job.id);
    this.#o.store.append(job.id, "state", {
      state,
      ...(error ? { error } : {}),
      ...(job.result ? { result: job.result } : {}),
    });
    await this.#save(job);
    this.#o.store.release(job.id);
  }

  /** Writes the job's record; a failure (already reported to the store's listeners) is logged. */
  async #save(job: Job): Promise<void> {
    try {
      await this.#o.store.save(job);
    } catch (e) {
      console.error(`voxseg serve: job ${job.id}: ${(e as Error).message}`);
    }
  }
}
