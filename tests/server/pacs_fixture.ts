/**
 * Fixtures for the tests of purging, retention and PACS jobs, none of which touch the GPU: a
 * server on a fresh data root with a stand-in adapter and a placeholder model file, job
 * records written straight to the state folder, and captured log lines.
 */

import { join } from "node:path";
import { createApp, type ServerOptions, type VoxsegServer } from "../../src/server/app.ts";
import type { Job } from "../../src/server/jobs/job.ts";
import { stampOf } from "../../src/server/paths.ts";

/** An adapter that is "acquired" at once: routes that need the GPU accept work. */
export const FAKE_GPU = {
  info: {
    description: "stand-in adapter",
    vendor: "test",
    architecture: "",
    device: "",
    isFallbackAdapter: true,
    backend: "none",
    features: [],
    limits: {},
  },
};

export interface Box {
  server: VoxsegServer;
  root: string;
  stateDir: string;
}

/** A server on a fresh data root (removed at unload) with a model `m` that is never loaded. */
export async function newBox(options: Partial<ServerOptions> = {}, stateDir?: string) {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "voxseg_purge_" }));
  globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
  await Deno.mkdir(join(root, "models"));
  await Deno.writeTextFile(join(root, "models", "m.safetensors"), "placeholder");
  const state = stateDir ?? join(root, ".voxseg", "jobs");
  return await openBox(root, state, options);
}

/** A server on an existing data root and state folder. */
export async function openBox(
  root: string,
  stateDir: string,
  options: Partial<ServerOptions> = {},
): Promise<Box> {
  const server = await createApp({
    dataRoot: root,
    stateDir,
    acquireGpu: () => Promise.resolve(FAKE_GPU),
    ...options,
  });
  return { server, root, stateDir };
}

/**
 * Writes a finished prediction job's record to `stateDir`, and its label map (`output`,
 * under `root`) with the stamp a real job records.
 */
export async function writeFinishedPredictJob(
  root: string,
  stateDir: string,
  { id, state = "succeeded", finishedAt, output }: {
    id: string;
    state?: Job["state"];
    finishedAt: string;
    output?: string;
  },
): Promise<Job> {
  const job: Job = {
    id,
    kind: "predict",
    name: "m",
    state,
    createdAt: finishedAt,
    startedAt: finishedAt,
    finishedAt,
    request: { model: "m", input: "in/ct.nii", output: output ?? `out/${id}.nii` },
    attempts: 1,
  };
  if (output) {
    const path = join(root, output);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, `labels of ${id}`);
    job.wrote = { path: output, ...stampOf(await Deno.stat(path)) };
  }
  await Deno.mkdir(join(stateDir, id), { recursive: true });
  await Deno.writeTextFile(join(stateDir, id, "job.json"), JSON.stringify(job));
  await Deno.writeTextFile(
    join(stateDir, id, "events.jsonl"),
    JSON.stringify({ id: 1, type: "state", time: finishedAt, data: { state } }) + "\n",
  );
  return job;
}

/** Runs `fn` with console output captured; returns what it returned and the lines. */
export async function captureLogs<T>(
  fn: () => T | Promise<T>,
): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const saved = { ...console };
  const keep = (...args: unknown[]) => {
    lines.push(args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" "));
  };
  Object.assign(console, { error: keep, log: keep, warn: keep, info: keep, debug: keep });
  try {
    return { value: await fn(), lines };
  } finally {
    Object.assign(console, saved);
  }
}

/** True when `path` exists (a file, folder or link). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `ok()`, at most ~10 s. */
export async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}
