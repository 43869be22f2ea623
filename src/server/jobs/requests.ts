/**
 * Checks the JSON bodies of POST /v1/jobs/train and /v1/jobs/predict and turns them into what
 * the runner needs: resolved paths inside the data root and a resolved training config. Every
 * problem is a 400 {@link ApiError} saying which field and why.
 */

import { isPrecision, type Precision, PRECISIONS } from "../../ops/precision.ts";
import { type Dataset, readDataset } from "../../data/dataset.ts";
import { configAliases, ConfigError, resolveConfig, type TrainConfig } from "../../train/config.ts";
import { datasetOverrides } from "../../train/dataset_fit.ts";
import { parseDuration } from "../../base/duration.ts";
import { ApiError } from "../errors.ts";
import { parseBytes } from "../middleware/body_limit/body_limit.ts";
import { NAME_PATTERN } from "../models.ts";
import type { DataRoot } from "../paths.ts";
import { PACS_NAME, unknownPacsMessage } from "../pacs.ts";
import type { AnyPredictJobRequest, PacsPredictJobRequest, TrainJobRequest } from "./job.ts";

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

/** The planning fields of a train request, as `voxseg train` has them as flags. */
export const PLANNING_FIELDS = ["plan", "timeBudget", "network", "fold", "gpuMemory"] as const;

/** The networks a plan can train (src/train/plan/types.ts). */
const NETWORKS = ["unet3d", "plain"] as const;

/**
 * A train request's shape, checked; the dataset and config are checked by {@link trainConfig},
 * the plan when the job is submitted.
 */
export function parseTrainRequest(body: unknown): TrainJobRequest {
  if (!isObject(body)) invalid("the body must be a JSON object");
  checkKeys(body, ["dataset", "config", "name", ...PLANNING_FIELDS], "train");
  if (typeof body.dataset !== "string") {
    invalid('"dataset" (a folder under the data root) is required');
  }
  if (body.config !== undefined && !isObject(body.config)) invalid('"config" must be an object');
  return {
    dataset: body.dataset,
    ...(body.config ? { config: body.config as Record<string, unknown> } : {}),
    ...(body.name !== undefined ? { name: checkName(body.name) } : {}),
    ...planningFields(body),
  };
}

/** plan, timeBudget, network, fold and gpuMemory when the body sets them, checked. */
function planningFields(body: Record<string, unknown>): Partial<TrainJobRequest> {
  const { plan, timeBudget, network, fold, gpuMemory } = body;
  if (plan !== undefined && (typeof plan !== "string" || plan.trim() === "")) {
    invalid(
      '"plan" must be a plans.json (or the folder holding one) under the data root, or "none" ' +
        `for the defaults and "config" only; got ${JSON.stringify(plan)}`,
    );
  }
  let seconds: number | undefined;
  if (timeBudget !== undefined) {
    seconds = typeof timeBudget === "number" || typeof timeBudget === "string"
      ? parseDuration(timeBudget)
      : undefined;
    if (seconds === undefined || !(seconds > 0)) {
      invalid(
        '"timeBudget" must be a duration such as "15m", "90s" or "1h30m", or seconds (900); ' +
          `got ${JSON.stringify(timeBudget)}`,
      );
    }
    if (plan === "none") {
      invalid('"timeBudget" sizes the run from a plan: drop "plan": "none", or the budget');
    }
  }
  if (network !== undefined && !NETWORKS.includes(network as typeof NETWORKS[number])) {
    invalid(`"network" must be one of ${NETWORKS.join(", ")}; got ${JSON.stringify(network)}`);
  }
  if (network !== undefined && plan === "none") {
    invalid('"network" picks the network of a plan: drop "plan": "none", or the network');
  }
  if (fold === "all") {
    invalid(
      '"fold": "all" is not a job: submit one job per fold ("fold": 0, 1, …), each an ' +
        "independent run, and ensemble their models with `voxseg infer --model a,b,…` (or " +
        "run `voxseg train --fold all`)",
    );
  }
  if (fold !== undefined && !(Number.isInteger(fold) && (fold as number) >= 0)) {
    invalid(`"fold" must be a fold number (0, 1, …); got ${JSON.stringify(fold)}`);
  }
  let bytes: number | null | undefined;
  if (gpuMemory !== undefined) {
    bytes = typeof gpuMemory === "number"
      ? (Number.isSafeInteger(gpuMemory) && gpuMemory > 0 ? gpuMemory : null)
      : typeof gpuMemory === "string"
      ? parseBytes(gpuMemory)
      : null;
    if (bytes === null) {
      invalid(
        `"gpuMemory" must be a size such as "4GiB", or bytes; got ${JSON.stringify(gpuMemory)}`,
      );
    }
  }
  return {
    ...(plan !== undefined ? { plan: plan as string } : {}),
    ...(seconds !== undefined ? { timeBudget: seconds } : {}),
    ...(network !== undefined ? { network: network as TrainJobRequest["network"] } : {}),
    ...(fold !== undefined ? { fold: fold as number } : {}),
    ...(bytes ? { gpuMemory: bytes } : {}),
  };
}

/** True when a train request asks for planning beyond the defaults (see {@link PLANNING_FIELDS}). */
export function asksForPlanning(request: TrainJobRequest): boolean {
  return (request.plan !== undefined && request.plan !== "none") ||
    request.timeBudget !== undefined || request.network !== undefined ||
    request.fold !== undefined || request.gpuMemory !== undefined;
}

/** Fields of a prediction request besides where its input comes from. */
const PREDICT_OPTIONS = ["model", "output", "overlap", "tta", "precision"];
/** Fields that only a PACS prediction takes. */
const PACS_FIELDS = ["pacs", "study", "series", "store"];

/**
 * A predict request's shape, checked: a file or folder under the data root (`input`: NIfTI, or
 * a DICOM series as a folder or zip, with `series` to pick one of several) or a study on a
 * configured PACS (`pacs`, `study`); paths, the input's format and the model are checked by
 * the runner. `pacsNames` are the configured PACS names.
 */
export function parsePredictRequest(
  body: unknown,
  pacsNames: readonly string[] = [],
): AnyPredictJobRequest {
  if (!isObject(body)) invalid("the body must be a JSON object");
  refuseAddresses(body);
  // "series" goes with either form: with "input" it picks a series of a DICOM upload.
  const pacsField = PACS_FIELDS.find((f) => f in body && !(f === "series" && "input" in body));
  if (pacsField !== undefined) {
    if ("input" in body) {
      invalid('give either "input" (a file under the data root) or "pacs" and "study", not both');
    }
    return parsePacsRequest(body, pacsNames);
  }
  checkKeys(body, ["input", "series", ...PREDICT_OPTIONS], "predict");
  const input = checkInput(body.input);
  if (typeof body.output !== "string") {
    invalid('"output" (a .nii, .nii.gz or .dcm path) is required');
  }
  if (!/\.(?:nii|nii\.gz|dcm)$/i.test(body.output)) {
    invalid(
      `"output" must end in .nii or .nii.gz (a label map), or .dcm (a DICOM Segmentation, for ` +
        `a DICOM series input); got ${JSON.stringify(body.output)}`,
    );
  }
  if (Array.isArray(input) && /\.dcm$/i.test(body.output)) {
    invalid(
      `"output" .dcm is a DICOM Segmentation, which references the series it segments, but ` +
        '"input" lists NIfTI channels: name a .nii or .nii.gz "output"',
    );
  }
  if (Array.isArray(input) && body.series !== undefined) {
    invalid('"series" picks a series of a DICOM input, but "input" lists NIfTI files; drop it');
  }
  return {
    model: checkName(body.model, "model"),
    input,
    output: body.output,
    ...(body.series !== undefined ? { series: checkUid(body.series, "series") } : {}),
    ...predictOptions(body),
  };
}

/** Most input channels a prediction job takes. */
const MAX_INPUT_CHANNELS = 64;

/**
 * `input`: a path, or for a model of several input channels a list of them (channel order; a
 * list of one is one path).
 */
function checkInput(input: unknown): string | string[] {
  if (typeof input === "string") return input;
  if (
    Array.isArray(input) && input.length >= 1 && input.length <= MAX_INPUT_CHANNELS &&
    input.every((p) => typeof p === "string")
  ) {
    return input.length === 1 ? input[0] : [...input];
  }
  return invalid(
    '"input" (a NIfTI file, or a DICOM series folder or .zip, under the data root; for a ' +
      "model of several input channels a list of NIfTI files, one per channel in channel " +
      `order, at most ${MAX_INPUT_CHANNELS}) is required, or "pacs" and "study" to segment a ` +
      "study from a configured PACS",
  );
}

/** overlap, tta and precision when the body sets them, checked. */
function predictOptions(body: Record<string, unknown>) {
  return {
    ...(body.overlap !== undefined ? { overlap: checkOverlap(body.overlap) } : {}),
    ...(body.tta !== undefined ? { tta: checkBoolean(body.tta, "tta") } : {}),
    ...(body.precision !== undefined ? { precision: checkPrecision(body.precision) } : {}),
  };
}

/** Field names that carry an address: refused, whatever else the body holds. */
const ADDRESS_FIELD = /(?:url|uri|endpoint|host|address)$/i;

/**
 * Refuses a body that names a server by address (`url`, `pacsUrl`, a `pacs` holding "://"):
 * PACS endpoints are configured by the operator, so no request can make the server fetch
 * from, or send credentials to, an address of its choosing.
 */
function refuseAddresses(body: Record<string, unknown>): void {
  const field = Object.keys(body).find((k) => ADDRESS_FIELD.test(k));
  const pacs = typeof body.pacs === "string" && /:\/\/|^[a-z][a-z0-9+.-]*:/i.test(body.pacs);
  if (field === undefined && !pacs) return;
  throw new ApiError(
    400,
    "pacs_address_refused",
    `${field !== undefined ? `the field "${field}"` : '"pacs" holding an address'} is ` +
      "refused: PACS endpoints are configured by the server's operator (`voxseg serve --pacs " +
      'NAME=URL`); name one with "pacs" (GET /v1/pacs lists them)',
  );
}

/** The PACS form of a predict request; `pacsNames` are the configured PACS. */
function parsePacsRequest(
  body: Record<string, unknown>,
  pacsNames: readonly string[],
): PacsPredictJobRequest {
  checkKeys(body, [...PACS_FIELDS, ...PREDICT_OPTIONS], "PACS predict");
  if (typeof body.pacs !== "string") {
    invalid(
      '"pacs" (the name of a configured PACS; GET /v1/pacs lists them) is required with ' +
        '"study"',
    );
  }
  if (!PACS_NAME.test(body.pacs) || !pacsNames.includes(body.pacs)) {
    throw new ApiError(400, "unknown_pacs", unknownPacsMessage(body.pacs, pacsNames));
  }
  if (body.study === undefined) invalid('"study" (the StudyInstanceUID) is required with "pacs"');
  const study = checkUid(body.study, "study");
  if (body.output !== undefined) {
    if (typeof body.output !== "string" || !/\.(?:nii|nii\.gz|dcm)$/i.test(body.output)) {
      invalid(
        `"output" (optional) must be a path ending in .nii, .nii.gz or .dcm, got ` +
          JSON.stringify(body.output),
      );
    }
  }
  return {
    model: checkName(body.model, "model"),
    pacs: body.pacs,
    study,
    ...(body.series !== undefined ? { series: checkUid(body.series, "series") } : {}),
    ...(body.store !== undefined ? { store: checkBoolean(body.store, "store") } : {}),
    ...(body.output !== undefined ? { output: body.output as string } : {}),
    ...predictOptions(body),
  };
}

/** A DICOM UID: components of digits without leading zeros, joined by dots, ≤ 64 characters. */
const UID = /^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+$/;

/** `value` as a DICOM UID; 400 naming `field` otherwise. */
export function checkUid(value: unknown, field: string): string {
  if (typeof value === "string" && value.length <= 64 && UID.test(value)) return value;
  const got = typeof value === "string"
    ? `${value.length > 70 ? `${value.length} characters` : JSON.stringify(value)}`
    : typeof value;
  return invalid(
    `"${field}" must be a DICOM UID: digits in dot-separated components without leading ` +
      `zeros, at most 64 characters (e.g. "1.2.840.113619.2.55.3.1234"); got ${got}`,
  );
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
): Promise<{ config: TrainConfig; dataset: Dataset; datasetPath: string }> {
  const { dataset, datasetPath } = await trainDataset(request, root);
  return { config: resolveTrainConfig(request, dataset, datasetPath, out), dataset, datasetPath };
}

/** The request's dataset, resolved inside the data root and read (400 when it cannot be). */
export async function trainDataset(
  request: TrainJobRequest,
  root: DataRoot,
): Promise<{ dataset: Dataset; datasetPath: string }> {
  const datasetPath = await root.resolve(request.dataset, { what: "dataset", mustExist: true });
  try {
    return { dataset: await readDataset(datasetPath, { confineTo: root.real }), datasetPath };
  } catch (e) {
    throw new ApiError(400, "invalid_dataset", root.redact((e as Error).message));
  }
}

/**
 * The config layers as on the command line: defaults ← the dataset's classes ← the plan's
 * choices (`planned`, see `planOverrides`) ← the request's `config`. `datasetPath` is where
 * the dataset is; a planned run may train on its preprocessed copy (`trainOn`) instead.
 */
export function resolveTrainConfig(
  request: TrainJobRequest,
  dataset: Dataset,
  datasetPath: string,
  out: string,
  { planned, trainOn }: { planned?: Record<string, string>; trainOn?: string } = {},
): TrainConfig {
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
    const base = resolveConfig(undefined, { ...datasetOverrides(dataset), ...planned });
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
  if (trainOn) config.data.dataset = trainOn;
  return config;
}
