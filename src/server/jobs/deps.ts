/**
 * What running a job needs from the server. Kept apart from ./job.ts, which describes jobs as
 * stored and served, so the job store can import the job types without importing itself back.
 */

import type { ModelRegistry } from "../models.ts";
import type { DataRoot } from "../paths.ts";
import type { GpuScheduler } from "../scheduler.ts";
import type { JobStore } from "./store.ts";

/** The server's parts a job runs with. */
export interface JobDeps {
  store: JobStore;
  scheduler: GpuScheduler;
  models: ModelRegistry;
  root: DataRoot;
}
