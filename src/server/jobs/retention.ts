/**
 * `voxseg serve --retain 7d`: finished jobs are purged (their outputs, pulled studies, run
 * folders and records: see ./purge.ts) once they are older than the retention, so patient
 * data does not pile up on the edge box. Checked at start and then every tenth of the
 * retention, at most hourly, on a timer that does not keep the process alive.
 *
 * Which jobs: succeeded, failed and cancelled ones whose `finishedAt` is older than the
 * retention. Interrupted jobs (the server stopped under them) can be resumed, so their age
 * counts from the later of `finishedAt` and this server's start: after a restart the operator
 * has one whole retention period to resume them, however long the server was down. Queued
 * and running jobs are never touched.
 */

import type { Job } from "./job.ts";

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };
/** Shorter retentions would remove results before a client could fetch them. */
export const MIN_RETENTION_MS = 60e3;

/**
 * Milliseconds in a duration such as `30m`, `12h`, `7d` or `1d12h`; throws an Error saying
 * what is accepted.
 *
 * @example
 * parseRetention("7d") // 604800000
 */
export function parseRetention(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)];
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]], 0);
  if (!parts.length || parts.map((p) => p[0]).join("") !== text || !Number.isFinite(ms)) {
    throw new Error(
      `--retain must be a duration with a unit, such as 30m, 12h, 7d or 1d12h (s, m, h, d), ` +
        `got ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  if (ms < MIN_RETENTION_MS) {
    throw new Error(
      `--retain must be at least 1m: shorter would purge results before a client could ` +
        `fetch them, got ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

/** How often the sweep runs: a tenth of the retention, at most hourly. */
export function sweepIntervalMs(retainMs: number): number {
  return Math.min(retainMs / 10, 3600e3);
}

/** The jobs the retention has expired at `now` (see the module comment). */
export function expiredJobs(
  jobs: readonly Job[],
  { retainMs, now, serverStart }: { retainMs: number; now: number; serverStart: number },
): Job[] {
  return jobs.filter((job) => {
    if (!job.finishedAt || job.purgeRequestedAt) return false;
    const finished = Date.parse(job.finishedAt);
    if (!Number.isFinite(finished)) return false;
    let since: number;
    if (job.state === "interrupted") since = Math.max(finished, serverStart);
    else if (["succeeded", "failed", "cancelled"].includes(job.state)) since = finished;
    else return false;
    return now - since > retainMs;
  });
}

export interface RetentionOptions {
  retainMs: number;
  /** The jobs now. */
  list(): Job[];
  /** Purges one job (the runner's purge, which logs it by id). */
  purge(id: string): Promise<unknown>;
  /** The clock, in ms since the epoch; injectable for tests. */
  now?: () => number;
}

/** Purges expired jobs at start and periodically; {@link stop} before shutting down. */
export class RetentionSweeper {
  readonly #o: RetentionOptions;
  readonly #now: () => number;
  readonly #serverStart: number;
  #timer?: ReturnType<typeof setInterval>;
  #running?: Promise<string[]>;
  #stopped = false;

  constructor(options: RetentionOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#serverStart = this.#now();
  }

  /**
   * Purges every expired job, one at a time; returns their ids. A sweep already running is
   * joined, not doubled; a failure is logged and the sweep goes on with the next job.
   */
  sweep(): Promise<string[]> {
    this.#running ??= this.#sweepOnce().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #sweepOnce(): Promise<string[]> {
    const due = expiredJobs(this.#o.list(), {
      retainMs: this.#o.retainMs,
      now: this.#now(),
      serverStart: this.#serverStart,
    });
    const purged: string[] = [];
    for (const job of due) {
      if (this.#stopped) break;
      try {
        await this.#o.purge(job.id);
        purged.push(job.id);
      } catch (e) {
        // The id and the error's kind only: its message may name files.
        console.error(`voxseg serve: retention: job ${job.id} not purged (${(e as Error).name})`);
      }
    }
    return purged;
  }

  /** Sweeps every {@link sweepIntervalMs} from now on. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    const timer = setInterval(() => void this.sweep(), sweepIntervalMs(this.#o.retainMs));
    Deno.unrefTimer(timer); // never what keeps the server running
    this.#timer = timer;
  }

  /** Stops the timer and waits for a sweep in progress to finish its current job. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }
}
