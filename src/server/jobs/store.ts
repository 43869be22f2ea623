/**
 * Jobs on disk, so they outlive the process:
 *
 *   <state>/<id>/job.json       the {@link Job} record, rewritten atomically on each change
 *   <state>/<id>/events.jsonl   its {@link JobEvent}s, one JSON per line, appended
 *   <state>/<id>/run/           a training job's run folder (checkpoints, metrics.jsonl)
 *   <state>/<id>/pulled/        a PACS prediction job's pulled study
 *
 * Writes of one job are chained so they land in the order they were made. A failed write (a
 * full disk) rejects with a {@link StorageError} whose message names no path, and is reported
 * to the {@link JobStore.onWriteFailure} listeners; it never escapes as an unhandled rejection.
 *
 * Events live on disk. Memory holds only the last {@link RECENT_EVENTS} events of each job
 * that is queued, running, followed by a listener or still writing, so a finished job costs
 * nothing once its writes have landed; {@link JobStore.events} reads the file and adds the
 * recent events that are not on disk yet.
 */

import { join } from "node:path";
import { writeFileAtomic } from "../../base/atomic.ts";
import { isFinal, type Job, type JobEvent } from "./job.ts";

const JOB_FILE = "job.json";
const EVENTS_FILE = "events.jsonl";

/** Events of an active job kept in memory (older ones are read from its events.jsonl). */
export const RECENT_EVENTS = 512;

type Listener = (event: JobEvent) => void;
type FailureListener = (id: string, error: StorageError) => void;

/** The writes the store makes: Deno's by default, replaceable to test failing disks. */
export interface JobFiles {
  mkdir(path: string): Promise<void>;
  /** Replaces the file's content atomically. */
  writeAtomic(path: string, text: string): Promise<void>;
  append(path: string, text: string): Promise<void>;
}

export const DENO_JOB_FILES: JobFiles = {
  mkdir: (path) => Deno.mkdir(path, { recursive: true }),
  writeAtomic: (path, text) => writeFileAtomic(path, text),
  append: (path, text) => Deno.writeTextFile(path, text, { append: true }),
};

/** A write of the job state failed; the message says why and what to do, and names no path. */
export class StorageError extends Error {
  override name = "StorageError";
  /** `storage_full` (no space or quota left) or `storage_failed`. */
  readonly code: string;

  constructor(cause: unknown, where = "the job state") {
    const code = (cause as { code?: string })?.code;
    const full = code === "ENOSPC" || code === "EDQUOT";
    super(
      full
        ? `no space left on the device holding ${where}; free space and resume the job`
        : `cannot write ${where} (${code ?? (cause as Error)?.name ?? "error"}); check that ` +
          "its folder is writable, then resume the job",
      { cause },
    );
    this.code = full ? "storage_full" : "storage_failed";
  }
}

export interface JobStoreOptions {
  files?: JobFiles;
}

export class JobStore {
  readonly dir: string;
  readonly #files: JobFiles;
  readonly #jobs = new Map<string, Job>();
  /** The last event id of each job whose events were read or appended in this process. */
  readonly #lastId = new Map<string, number>();
  /** The latest events of active (or followed, or writing) jobs. */
  readonly #recent = new Map<string, JobEvent[]>();
  /** Jobs whose events.jsonl may end in a torn line: the next append starts a new line. */
  readonly #torn = new Set<string>();
  /** Arrays just returned by {@link events}: appends join them until the next macrotask. */
  readonly #views = new Map<string, Set<JobEvent[]>>();
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #failureListeners = new Set<FailureListener>();
  readonly #writes = new Map<string, Promise<void>>();
  /** Jobs being or already deleted: writes for them are dropped, so no folder comes back. */
  readonly #deleted = new Set<string>();

  private constructor(dir: string, files: JobFiles) {
    this.dir = dir;
    this.#files = files;
  }

  /** Opens (creating) the state folder and reads every job in it; unreadable ones are skipped. */
  static async open(dir: string, { files = DENO_JOB_FILES }: JobStoreOptions = {}): Promise<
    JobStore
  > {
    await Deno.mkdir(dir, { recursive: true });
    const store = new JobStore(dir, files);
    for await (const e of Deno.readDir(dir)) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      try {
        const job = JSON.parse(await Deno.readTextFile(join(dir, e.name, JOB_FILE))) as Job;
        if (job.id === e.name) store.#jobs.set(job.id, job);
      } catch (err) {
        const why = err instanceof SyntaxError ? "job.json is not valid JSON" : (err as Error).name;
        console.error(`voxseg serve: skipping job folder ${e.name}: ${why}`);
      }
    }
    return store;
  }

  /** Every job, newest first. */
  list(): Job[] {
    return [...this.#jobs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  /** A training job's run folder. */
  runDir(id: string): string {
    return join(this.dir, id, "run");
  }

  /** Adds a new job now (it is listed at once) and writes it; rejects when the write fails. */
  create(job: Job): Promise<void> {
    this.#jobs.set(job.id, job);
    this.#lastId.set(job.id, 0);
    this.#recent.set(job.id, []);
    const snapshot = JSON.stringify(job, null, 2) + "\n";
    return this.#chain(job.id, async () => {
      await this.#files.mkdir(join(this.dir, job.id));
      await this.#files.writeAtomic(join(this.dir, job.id, JOB_FILE), snapshot);
    });
  }

  /** Forgets a job whose creation failed (its folder is removed if it was made). */
  async remove(id: string): Promise<void> {
    this.#jobs.delete(id);
    this.#lastId.delete(id);
    this.#recent.delete(id);
    await this.#writes.get(id)?.catch(() => {});
    this.#writes.delete(id);
    await Deno.remove(join(this.dir, id), { recursive: true }).catch(() => {});
  }

  /**
   * Deletes a job for good: no write for it is made from now on, the ones in flight land, then
   * its folder (record, events, run, pulled files) is removed and it leaves the listing. When
   * the folder cannot be removed the job stays listed and the error is thrown.
   */
  async delete(id: string): Promise<void> {
    this.#deleted.add(id);
    await this.#writes.get(id)?.catch(() => {});
    try {
      await Deno.remove(join(this.dir, id), { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        this.#deleted.delete(id);
        throw e;
      }
    }
    this.#jobs.delete(id);
    this.#lastId.delete(id);
    this.#recent.delete(id);
    this.#torn.delete(id);
    this.#listeners.delete(id);
    this.#views.delete(id);
  }

  /** Writes the job's record (after the writes already queued for it). */
  save(job: Job): Promise<void> {
    const snapshot = JSON.stringify(job, null, 2) + "\n";
    return this.#chain(
      job.id,
      () => this.#files.writeAtomic(join(this.dir, job.id, JOB_FILE), snapshot),
    );
  }

  /** Appends an event: to subscribers now, to disk in order. */
  append(id: string, type: JobEvent["type"], data: Record<string, unknown>): JobEvent {
    if (this.#deleted.has(id)) {
      return { id: 0, type, time: new Date().toISOString(), data }; // gone: recorded nowhere
    }
    // A job from an earlier run: its numbering continues after the events on disk.
    const last = this.#lastId.get(id) ?? this.#loadLastId(id);
    const event: JobEvent = { id: last + 1, type, time: new Date().toISOString(), data };
    this.#lastId.set(id, event.id);
    const recent = this.#recent.get(id) ?? [];
    recent.push(event);
    if (recent.length > RECENT_EVENTS) recent.splice(0, recent.length - RECENT_EVENTS);
    this.#recent.set(id, recent);
    for (const view of this.#views.get(id) ?? []) view.push(event);
    const line = JSON.stringify(event) + "\n";
    const path = join(this.dir, id, EVENTS_FILE);
    this.#chain(id, async () => {
      const torn = this.#torn.has(id);
      try {
        await this.#files.append(path, torn ? "\n" + line : line);
      } catch (e) {
        this.#torn.add(id); // a partial write may have left half a line
        throw e;
      }
      this.#torn.delete(id);
    }).catch(() => {}); // reported to the failure listeners by #chain
    for (const listener of this.#listeners.get(id) ?? []) listener(event);
    return event;
  }

  /**
   * Every event of a job with an id above `after`: those on disk, then the recent ones not
   * written yet. Events appended before the caller's next macrotask join the returned array,
   * so a caller that subscribes right after misses none.
   */
  async events(id: string, after = 0): Promise<JobEvent[]> {
    await this.#writes.get(id)?.catch(() => {});
    let text = "";
    try {
      text = await Deno.readTextFile(join(this.dir, id, EVENTS_FILE));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const onDisk = parseEvents(text);
    const lastOnDisk = onDisk.at(-1)?.id ?? 0;
    if (!this.#lastId.has(id)) {
      this.#lastId.set(id, lastOnDisk);
      if (text !== "" && !text.endsWith("\n")) this.#torn.add(id);
    }
    const events = onDisk.filter((e) => e.id > after);
    for (const e of this.#recent.get(id) ?? []) {
      if (e.id > lastOnDisk && e.id > after) events.push(e);
    }
    const views = this.#views.get(id) ?? new Set();
    views.add(events);
    this.#views.set(id, views);
    setTimeout(() => {
      views.delete(events);
      if (views.size === 0 && this.#views.get(id) === views) this.#views.delete(id);
    }, 0);
    return events;
  }

  /** Events held in memory, all jobs together (at most {@link RECENT_EVENTS} per active job). */
  get eventsInMemory(): number {
    let n = 0;
    for (const events of this.#recent.values()) n += events.length;
    return n;
  }

  /** Calls `listener` with each event appended from now on; returns the unsubscribe function. */
  subscribe(id: string, listener: Listener): () => void {
    const set = this.#listeners.get(id) ?? new Set();
    set.add(listener);
    this.#listeners.set(id, set);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(id) === set) this.#listeners.delete(id);
      this.#trim(id);
    };
  }

  /** Calls `listener` whenever a write of a job's state fails (after its promise rejects). */
  onWriteFailure(listener: FailureListener): () => void {
    this.#failureListeners.add(listener);
    return () => this.#failureListeners.delete(listener);
  }

  /** Drops a job's recent events once they are on disk and nobody needs them in memory. */
  release(id: string): void {
    this.#trim(id);
  }

  /** Resolves when every write queued so far has landed. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#writes.values()]);
  }

  #trim(id: string): void {
    const job = this.#jobs.get(id);
    if (job && !isFinal(job.state)) return;
    if (this.#listeners.has(id) || this.#writes.has(id)) return;
    this.#recent.delete(id);
  }

  #loadLastId(id: string): number {
    let text = "";
    try {
      text = Deno.readTextFileSync(join(this.dir, id, EVENTS_FILE));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        console.error(`voxseg serve: job ${id}: cannot read its events (${(e as Error).name})`);
      }
    }
    if (text !== "" && !text.endsWith("\n")) this.#torn.add(id);
    return parseEvents(text).at(-1)?.id ?? 0;
  }

  #chain(id: string, write: () => Promise<void>): Promise<void> {
    const next = (this.#writes.get(id) ?? Promise.resolve()).catch(() => {}).then(() =>
      this.#deleted.has(id) ? undefined : write()
    ).catch(
      (e) => {
        const error = e instanceof StorageError ? e : new StorageError(e);
        for (const listener of this.#failureListeners) listener(id, error);
        throw error;
      },
    );
    this.#writes.set(id, next);
    next.catch(() => {}).finally(() => {
      if (this.#writes.get(id) !== next) return;
      this.#writes.delete(id);
      this.#trim(id);
    });
    return next;
  }
}

/** Events from JSON lines; a line cut short by a crash is skipped, the others still count. */
function parseEvents(text: string): JobEvent[] {
  const events: JobEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const event = JSON.parse(line) as JobEvent;
      if (Number.isInteger(event?.id)) events.push(event);
    } catch {
      // a torn line
    }
  }
  return events;
}
