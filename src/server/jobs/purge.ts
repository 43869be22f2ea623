/**
 * Purging a finished job: the label map it wrote under the data root (only while it is still
 * the very file it wrote), and its folder in the state directory — record, events, a training
 * run's checkpoints, a PACS job's pulled instances. The runner decides when (a running job
 * stops first); this module does the removing and says what it removed, by kind and count,
 * never by path.
 */

import { join } from "node:path";
import { ApiError } from "../errors.ts";
import { type DataRoot, sameFile, stampOf } from "../paths.ts";
import type { Job } from "./job.ts";
import type { JobStore } from "./store.ts";

/** Why a file the job wrote was left in place. */
export type KeptReason = "replaced" | "moved" | "not_a_file";

/** What a purge removed and left, as DELETE /v1/jobs/{id}?purge=true answers it. */
export interface PurgeReport {
  id: string;
  purged: true;
  /** True when the job was queued or running and was cancelled first. */
  cancelled: boolean;
  removed: {
    /** Label maps (or other outputs) under the data root: 0 or 1. */
    outputs: number;
    /** Files pulled from a PACS into the job's folder. */
    pulledFiles: number;
    /** Files of a training run: checkpoints, metrics. */
    runFiles: number;
    /** The job's record and event log. */
    record: boolean;
  };
  /** Files the job wrote that were left in place, and why. */
  kept: { what: "output"; reason: KeptReason; message: string }[];
}

/** The folder a PACS job pulls its study into. */
export function pulledDir(store: JobStore, id: string): string {
  return join(store.dir, id, "pulled");
}

/** Removes what `job` pulled and wrote, then its folder and record; see the module comment. */
export async function purgeJobFiles(
  job: Job,
  { root, store }: { root: DataRoot; store: JobStore },
  cancelled: boolean,
): Promise<PurgeReport> {
  const report: PurgeReport = {
    id: job.id,
    purged: true,
    cancelled,
    removed: { outputs: 0, pulledFiles: 0, runFiles: 0, record: false },
    kept: [],
  };
  if (job.wrote) {
    const outcome = await removeWrittenOutput(root, job.wrote);
    if (outcome === "removed") report.removed.outputs = 1;
    else if (outcome !== "gone") report.kept.push({ what: "output", ...keptOutput(outcome) });
  }
  report.removed.pulledFiles = await countFiles(pulledDir(store, job.id));
  report.removed.runFiles = await countFiles(store.runDir(job.id));
  try {
    await store.delete(job.id);
  } catch (e) {
    throw new ApiError(
      500,
      "purge_failed",
      `could not remove job ${job.id}'s folder in the state directory ` +
        `(${(e as Error).name}); check that the server may write there, then DELETE again`,
    );
  }
  report.removed.record = true;
  return report;
}

function keptOutput(reason: KeptReason): { reason: KeptReason; message: string } {
  const why = {
    replaced: "was replaced or changed since the job wrote it",
    moved: "is now reached through a symbolic link, or a folder on its way moved",
    not_a_file: "is no longer a file",
  }[reason];
  return { reason, message: `the job's output ${why}; it was left in place` };
}

/**
 * Deletes the file a job wrote when it is still that file (same device, inode, size and
 * modification time) at the same symlink-free place inside the data root. A file replaced
 * since, or a path that now leads through a symbolic link, is left alone: a purge removes
 * only what the job made. (The check and the unlink are two calls; a swap between them needs
 * write access to the data root, which the token already guards.)
 */
export async function removeWrittenOutput(
  root: DataRoot,
  wrote: NonNullable<Job["wrote"]>,
): Promise<"removed" | "gone" | KeptReason> {
  const lexical = join(root.real, wrote.path);
  let resolved: string;
  try {
    resolved = await root.resolve(wrote.path, { what: "output", mustExist: true });
  } catch (e) {
    if (e instanceof ApiError && e.code === "not_found") return "gone";
    if (e instanceof ApiError) return "moved";
    throw e;
  }
  // realPath differs from the path written when the file or a folder became a link.
  if (resolved !== lexical) return "moved";
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(resolved);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "gone";
    throw e;
  }
  if (!info.isFile) return "not_a_file";
  if (!sameFile(stampOf(info), wrote)) return "replaced";
  try {
    await Deno.remove(resolved);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "gone";
    throw e;
  }
  return "removed";
}

/** Files (and links) under `dir`, not following links; 0 when it does not exist. */
export async function countFiles(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      n += e.isDirectory ? await countFiles(join(dir, e.name)) : 1;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
  }
  return n;
}
