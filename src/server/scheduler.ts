/**
 * One GPU, one piece of work at a time. The GPU is a lane that one holder owns: a synchronous
 * prediction for its whole run, a job (a training run, an asynchronous prediction) for its
 * whole run too — but a training job gives the lane up between optimizer steps
 * ({@link GpuLease.yield}) to every task waiting at that moment, so predictions are served
 * between steps instead of after the run. Waiters are served first come, first served; the
 * number that may wait is bounded and a full queue is refused with {@link QueueFullError}
 * (503 + Retry-After at the HTTP layer).
 */

/** The GPU queue is full; the caller should retry after `retryAfterSeconds`. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(readonly retryAfterSeconds: number, limit: number, queue = "GPU queue") {
    super(`the ${queue} is full (${limit} waiting); retry in ${retryAfterSeconds} s`);
  }
}

/** Ownership of the GPU lane, from {@link GpuScheduler.acquire}. */
export interface GpuLease {
  readonly label: string;
  /**
   * Lets every task waiting now take its turn, then takes the lane back (behind them, ahead of
   * later arrivals). Returns at once when nobody waits.
   */
  yield(): Promise<void>;
  /** Gives the lane up; later calls do nothing. */
  release(): void;
}

interface Waiter {
  label: string;
  grant: () => void;
}

export interface SchedulerOptions {
  /** Tasks that may wait for the GPU at once (the holder not counted). */
  maxQueue: number;
}

export class GpuScheduler {
  readonly maxQueue: number;
  #holder: string | null = null;
  #heldSince = 0;
  #busyMs = 0;
  #waiters: Waiter[] = [];
  /** Exponentially weighted mean task time in ms, for Retry-After. */
  #taskMs = 1000;
  #idle: (() => void)[] = [];

  constructor({ maxQueue }: SchedulerOptions) {
    this.maxQueue = maxQueue;
  }

  /** Tasks waiting for the lane. */
  get queueDepth(): number {
    return this.#waiters.length;
  }

  /** Label of the current holder, or null when the GPU is free. */
  get holder(): string | null {
    return this.#holder;
  }

  /** Seconds the lane has been held since the scheduler was made (the current hold included). */
  busySeconds(): number {
    const current = this.#holder === null ? 0 : performance.now() - this.#heldSince;
    return (this.#busyMs + current) / 1000;
  }

  /** Seconds a refused client should wait: the queue ahead times the typical task, 1…300. */
  retryAfterSeconds(): number {
    const s = Math.ceil((this.#taskMs * (this.#waiters.length + 1)) / 1000);
    return Math.min(300, Math.max(1, s));
  }

  /**
   * Waits for the lane. `bounded` requests (the default) are refused with
   * {@link QueueFullError} when `maxQueue` tasks already wait; a job's own re-acquire after a
   * yield is not bounded. An aborted `signal` removes the waiter and rejects with its reason.
   */
  acquire(
    label: string,
    options: { signal?: AbortSignal; bounded?: boolean } = {},
  ): Promise<GpuLease> {
    return this.#hold(label, options).then((end) => this.#lease(label, end));
  }

  /**
   * Runs `task` holding the lane and releases it afterwards, however the task ends.
   *
   * @example
   * const labels = await scheduler.run("predict lung", () => predictVolume(model, volume));
   */
  async run<T>(
    label: string,
    task: () => Promise<T>,
    options: { signal?: AbortSignal } = {},
  ): Promise<T> {
    const lease = await this.acquire(label, options);
    const t0 = performance.now();
    try {
      return await task();
    } finally {
      this.#taskMs = 0.8 * this.#taskMs + 0.2 * (performance.now() - t0);
      lease.release();
    }
  }

  /** Resolves once nobody holds or waits for the lane. */
  idle(): Promise<void> {
    if (this.#holder === null && this.#waiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Waits for the lane and takes it; resolves to the function that ends this hold. */
  #hold(
    label: string,
    { signal, bounded = true }: { signal?: AbortSignal; bounded?: boolean },
  ): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#holder === null && this.#waiters.length === 0) {
      return Promise.resolve(this.#take(label));
    }
    if (bounded && this.#waiters.length >= this.maxQueue) {
      return Promise.reject(new QueueFullError(this.retryAfterSeconds(), this.maxQueue));
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
        this.#checkIdle();
      };
      const waiter: Waiter = {
        label,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.#take(label));
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Marks the lane held by `label`; returns the (idempotent) function that hands it on. */
  #take(label: string): () => void {
    this.#holder = label;
    this.#heldSince = performance.now();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#busyMs += performance.now() - this.#heldSince;
      this.#holder = null;
      const next = this.#waiters.shift();
      if (next) next.grant();
      else this.#checkIdle();
    };
  }

  #lease(label: string, end: () => void): GpuLease {
    let endHold = end;
    let active = true;
    return {
      label,
      release: () => {
        active = false;
        endHold();
      },
      yield: async () => {
        if (!active || this.#waiters.length === 0) return;
        endHold();
        endHold = await this.#hold(label, { bounded: false });
        if (!active) endHold(); // released while waiting to come back
      },
    };
  }

  #checkIdle(): void {
    if (this.#holder !== null || this.#waiters.length > 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
