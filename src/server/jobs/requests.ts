/**
 * Checks the JSON bodies of POST /v1/jobs/train and /v1/jobs/predict and turns them into what
 * the runner needs: resolved paths inside the data root and a resolved training config. Every
 * problem is a 400 {@link ApiError} saying which field and why.
 */

import { isPrecision, type Precision, PRECISIONS } from "../../ops/precision.ts";
import { type Dataset, readDataset } from "../../data/dataset.ts";
import { configAliases, ConfigError, resolveConfig, type TrainConfig } from "../../train/config.ts";
import { datasetOverrides } from "../../train/dataset_fit.ts";
import { ApiError } from "../errors.ts";
import { NAME_PATTERN } from "../models.ts";
import type { DataRoot } from "../paths.ts";
import type { PredictJobRequest, TrainJobRequest } from "./job.ts";

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function invalid(message: string): never {
  throw new ApiError(400, "invalid_request", message);
}

function checkKeys(body: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      invalid(`unknown field "${key}" in the ${what} request; fields: ${allowed.join(", ")}`);
    }
  }
}

/** A name for a model or job label: letters, digits, `.`, `_`, `-`; at most 64. */
export function checkName(name: unknown, field = "name"): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    invalid(
      `${field} must be 1–64 letters, digits, ".", "_" or "-", starting with a letter or ` +
        `digit; got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

/** A train request's shape, checked; the dataset and config are checked by {@link trainConfig}. */
export function parseTrainRequest(body: unknown): TrainJobRequest {
  if (!isObject(body)) invalid("the body must be a JSON object");
  checkKeys(body, ["dataset", "config", "name"], "train");
  if (typeof body.dataset !== "string") {
    invalid('"dataset" (a folder under the data root) is required');
  }
  if (body.config !== undefined && !isObject(body.config)) invalid('"config" must be an object');
  return {
    dataset: body.dataset,
    ...(body.config ? { config: body.config as Record<string, unknown> } : {}),
    ...(body.name !== undefined ? { name: checkName(body.name) } : {}),
  };
}

/** A predict request's shape, checked; paths and the model are checked by the runner. */
export function parsePredictRequest(body: unknown): PredictJobRequest {
  if (!isObject(body)) invalid("the body must be a JSON object");
  checkKeys(body, ["model", "input", "output", "overlap", "tta", "precision"], "predict");
  const model = checkName(body.model, "model");
  if (typeof body.input !== "string") {
    invalid('"input" (a NIfTI file under the data root) is required');
  }
  if (typeof body.output !== "string") invalid('"output" (a .nii or .nii.gz path) is required');
  if (!/\.nii(\.gz)?$/i.test(body.output)) {
    invalid(`"output" must end in .nii or .nii.gz, got ${JSON.stringify(body.output)}`);
  }
  return {
    model,
    input: body.input,
    output: body.output,
    ...(body.overlap !== undefined ? { overlap: checkOverlap(body.overlap) } : {}),
    ...(body.tta !== undefined ? { tta: checkBoolean(body.tta, "tta") } : {}),
    ...(body.precision !== undefined ? { precision: checkPrecision(body.precision) } : {}),
  };
}

/** Convolution operand precision, "f32" or "f16". */
export function checkPrecision(value: unknown): Precision {
  if (!isPrecision(value)) {
    invalid(`precision must be one of ${PRECISIONS.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Sliding-window overlap in [0, 0.95]. */
export function checkOverlap(value: unknown): number {
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !(n >= 0 && n <= 0.95)) {
    invalid(`overlap must be a number in [0, 0.95], got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A boolean, or "true"/"false"/"1"/"0" from a query string. */
export function checkBoolean(value: unknown, field: string): boolean {
  if (typeof value === "boolean") return value;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  return invalid(`${field} must be true or false, got ${JSON.stringify(value)}`);
}

/**
 * The training config of a request: the request's overrides on the defaults, the dataset
 * resolved inside the data root, `out` = the job's run folder, and `model.classes` taken from
 * the dataset unless the request sets it.
 */
export async function trainConfig(
  request: TrainJobRequest,
  root: DataRoot,
  out: string,
): Promise<{ config: TrainConfig; dataset: Dataset }> {
  const datasetPath = await root.resolve(request.dataset, { what: "dataset", mustExist: true });
  let dataset: Dataset;
  try {
    dataset = await readDataset(datasetPath, { confineTo: root.real });
  } catch (e) {
    throw new ApiError(400, "invalid_dataset", root.redact((e as Error).message));
  }
  const file: Record<string, unknown> = {};
  const flags: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(request.config ?? {})) {
    const path = configAliases[key] ?? key;
    const nestedOut = key === "data" && isObject(value) && "dataset" in value;
    if (path === "out" || path === "data.dataset" || nestedOut) {
      invalid(
        `config may not set ${path === "out" ? "out" : "data.dataset"}: the server sets ` +
          `it (name the dataset with "dataset")`,
      );
    }
    if (isObject(value)) file[key] = value;
    else if (Array.isArray(value)) flags[key] = value.join(",");
    else if (typeof value === "boolean") flags[key] = value;
    else if (typeof value === "string" || typeof value === "number") flags[key] = String(value);
    else invalid(`config.${key} must be a number, string, boolean, list or object`);
  }
  flags.out = out;
  flags["data.dataset"] = datasetPath;
  let config: TrainConfig;
  try {
    // Layers as on the command line: defaults ← the dataset's classes ← the request.
    const base = resolveConfig(undefined, datasetOverrides(dataset));
    config = resolveConfig(Object.keys(file).length ? file : undefined, flags, base);
  } catch (e) {
    if (e instanceof ConfigError) throw new ApiError(400, "invalid_config", e.message);
    throw e;
  }
  if (config.model.classes !== dataset.classes.length) {
    throw new ApiError(
      400,
      "invalid_config",
      `model.classes is ${config.model.classes} but the dataset has ${dataset.classes.length} ` +
        `classes (${dataset.classes.join(", ")})`,
    );
  }
  return { config, dataset };
}
