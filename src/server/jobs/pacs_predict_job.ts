/**
 * A PACS prediction job, the server's side: the endpoint resolved from the operator's
 * registry (a PACS removed from `--pacs` since the job was queued fails it), the job's
 * `pulled/` folder made, and the DICOM pipeline called through the `pacs.predict` hook with
 * what it may use — a `segment` call that holds the GPU lane, and an `output.write` that
 * writes under the data root as a new file and records it for a later purge. Without the
 * hook the job fails `pacs_unavailable`.
 */

import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ApiError } from "../errors.ts";
import { PacsRegistry, scrubSecrets, unknownPacsMessage } from "../pacs.ts";
import type { JobDeps, PacsPredictInput } from "./deps.ts";
import { pathExists } from "./files.ts";
import type { Job, PacsPredictJobRequest } from "./job.ts";
import { pulledDir } from "./purge.ts";
import { segmentOnGpu, writeJobOutput } from "./predict_job.ts";

/** Runs the pipeline hook; returns the job's result (model, PACS, series, summary, stored). */
export async function runPacsPredictJob(
  job: Job,
  signal: AbortSignal,
  deps: JobDeps,
): Promise<Record<string, unknown>> {
  const request = job.request as PacsPredictJobRequest;
  const registry = deps.pacsEndpoints ?? new PacsRegistry();
  const pacs = registry.get(request.pacs);
  if (!pacs) {
    throw new ApiError(400, "unknown_pacs", unknownPacsMessage(request.pacs, registry.names()));
  }
  const predict = deps.pacs?.predict;
  if (!predict) {
    throw new ApiError(
      501,
      "pacs_unavailable",
      "this build's DICOM pipeline is not wired, so studies cannot be pulled from a PACS; " +
        'segment a NIfTI file with "input" instead',
    );
  }
  const entry = await deps.models.entry(request.model);
  const dir = pulledDir(deps.store, job.id);
  // Patient data: readable by the server's user alone.
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const input: PacsPredictInput = {
    pacs,
    study: request.study,
    ...(request.series !== undefined ? { series: request.series } : {}),
    store: request.store ?? false,
    pulledDir: dir,
    model: entry.name,
    segment: (volume) => segmentOnGpu(job, volume, signal, deps),
    ...(request.output !== undefined ? { output: outputWriter(job, request.output, deps) } : {}),
    signal,
    onProgress: (p) => {
      const fraction = p.done !== undefined && p.total ? { fraction: p.done / p.total } : {};
      job.progress = { ...p, ...fraction };
      deps.store.append(job.id, "progress", job.progress);
    },
  };
  signal.throwIfAborted(); // a hook may listen for "abort" only from its call on
  let output;
  try {
    output = await predict(input);
  } catch (e) {
    throw withoutSecrets(e, registry.secrets());
  }
  signal.throwIfAborted();
  return {
    model: entry.name,
    pacs: pacs.name,
    study: request.study,
    seriesUid: output.seriesUid,
    choice: output.choice,
    summary: output.summary,
    ...(output.stored ? { stored: output.stored } : {}),
    ...(job.wrote ? { output: job.wrote.path } : {}),
  };
}

/** `output.write` of the hook: a new file under the data root, recorded as the job's. */
function outputWriter(job: Job, name: string, { root }: JobDeps) {
  return {
    name,
    write: async (bytes: Uint8Array) => {
      if (job.wrote) throw new Error("output.write may be called once per job");
      const output = await root.resolve(name, { what: "output" });
      if (await pathExists(output)) throw root.exists(output, "output");
      await writeJobOutput(job, root, output, bytes);
    },
  };
}

/**
 * The pipeline's error with any credential scrubbed from its message: a DICOMweb client
 * that echoes a request's headers must not put a token into the job's error or the log.
 */
function withoutSecrets(e: unknown, secrets: readonly string[]): unknown {
  if (!(e instanceof Error)) return new Error(scrubSecrets(String(e), secrets));
  const message = scrubSecrets(e.message, secrets);
  if (message === e.message) return e;
  if (e instanceof ApiError) {
    return new ApiError(e.status as ContentfulStatusCode, e.code, message, e.headers);
  }
  const clean = new Error(message);
  clean.name = e.name;
  return clean;
}
