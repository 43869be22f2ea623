/**
 * Jobs on disk, so they outlive the process:
 *
 *   <state>/<id>/job.json       the {@link Job} record, rewritten atomically on each change
 *   <state>/<id>/events.jsonl   its {@link JobEvent}s, one JSON per line, appended
 *   <state>/<id>/run/           a training job's run folder (checkpoints, metrics.jsonl)
 *
 * Writes of one job are chained so they land in the order they were made. Events are kept in
 * memory once read, and subscribers hear each new one as it is appended.
 */

import { join } from "node:path";
import { writeFileAtomic } from "../../data/atomic.ts";
import type { Job, JobEvent } from "./job.ts";

const JOB_FILE = "job.json";
const EVENTS_FILE = "events.jsonl";

type Listener = (event: JobEvent) => void;

export class JobStore {
  readonly dir: string;
  readonly #jobs = new Map<string, Job>();
  readonly #events = new Map<string, JobEvent[]>();
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #writes = new Map<string, Promise<void>>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (creating) the state folder and reads every job in it; unreadable ones are skipped. */
  static async open(dir: string): Promise<JobStore> {
    await Deno.mkdir(dir, { recursive: true });
    const store = new JobStore(dir);
    for await (const e of Deno.readDir(dir)) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      try {
        const job = JSON.parse(await Deno.readTextFile(join(dir, e.name, JOB_FILE))) as Job;
        if (job.id === e.name) store.#jobs.set(job.id, job);
      } catch (err) {
        console.error(`voxseg serve: skipping job folder ${e.name}: ${(err as Error).message}`);
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

  /** Adds a new job and writes it. */
  async create(job: Job): Promise<void> {
    this.#jobs.set(job.id, job);
    this.#events.set(job.id, []);
    await Deno.mkdir(join(this.dir, job.id), { recursive: true });
    await this.save(job);
  }

  /** Writes the job's record (after the writes already queued for it). */
  save(job: Job): Promise<void> {
    const snapshot = JSON.stringify(job, null, 2) + "\n";
    return this.#chain(job.id, () => writeFileAtomic(join(this.dir, job.id, JOB_FILE), snapshot));
  }

  /** Appends an event: in memory and to subscribers now, to disk in order. */
  append(id: string, type: JobEvent["type"], data: Record<string, unknown>): JobEvent {
    // A job from an earlier run: its numbering continues after the events on disk.
    const events = this.#events.get(id) ?? this.#readEventsSync(id);
    this.#events.set(id, events);
    const event: JobEvent = {
      id: (events.at(-1)?.id ?? 0) + 1,
      type,
      time: new Date().toISOString(),
      data,
    };
    events.push(event);
    const line = JSON.stringify(event) + "\n";
    this.#chain(
      id,
      () => Deno.writeTextFile(join(this.dir, id, EVENTS_FILE), line, { append: true }),
    ).catch((e) => console.error(`voxseg serve: job ${id}: cannot log an event: ${e.message}`));
    for (const listener of this.#listeners.get(id) ?? []) listener(event);
    return event;
  }

  /** Every event of a job so far (read from disk the first time). */
  async events(id: string): Promise<JobEvent[]> {
    let events = this.#events.get(id);
    if (!events) {
      let text = "";
      try {
        text = await Deno.readTextFile(join(this.dir, id, EVENTS_FILE));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      // Another caller may have loaded them (or appended) while this one read.
      events = this.#events.get(id) ?? parseEvents(text);
      this.#events.set(id, events);
    }
    return events;
  }

  #readEventsSync(id: string): JobEvent[] {
    try {
      return parseEvents(Deno.readTextFileSync(join(this.dir, id, EVENTS_FILE)));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
  }

  /** Calls `listener` with each event appended from now on; returns the unsubscribe function. */
  subscribe(id: string, listener: Listener): () => void {
    const set = this.#listeners.get(id) ?? new Set();
    set.add(listener);
    this.#listeners.set(id, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(id);
    };
  }

  /** Resolves when every write queued so far has landed. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#writes.values()]);
  }

  #chain(id: string, write: () => Promise<void>): Promise<void> {
    const next = (this.#writes.get(id) ?? Promise.resolve()).catch(() => {}).then(write);
    this.#writes.set(id, next);
    return next;
  }
}

/** Events from JSON lines; a line cut short by a crash is skipped, the others still count. */
function parseEvents(text: string): JobEvent[] {
  const events: JobEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      events.push(JSON.parse(line) as JobEvent);
    } catch {
      // incomplete last line
    }
  }
  return events;
}
