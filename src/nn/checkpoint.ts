/**
 * The model checkpoint format: the model's weights as a safetensors file whose `__metadata__`
 * says how to use them (model config, class names, intensity normalisation, patch size,
 * spacing, training summary), loadable anywhere by PyTorch `state_dict` names:
 *
 *   runs/a/best.safetensors         weights and their metadata
 *
 * Metadata values are strings (the format allows nothing else): JSON under the stable keys of
 * {@link CHECKPOINT_KEYS}. Every write is atomic, and non-finite values are refused, so a NaN
 * never reaches a checkpoint. The trainer's optimizer state and its generations of training
 * state (src/train/checkpoint.ts) are written in this same format.
 */

import { writeFileAtomic } from "../base/atomic.ts";
import { type Normalization, parseNormalization } from "../base/normalization.ts";
import { type ClassCodes, parseClassCodes } from "../base/class_codes.ts";
import { ConfigError } from "./config_fields.ts";
import { type ModelConfig, validateModelConfig } from "./model_config.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  SafetensorsError,
} from "./safetensors.ts";

/** The checkpoint layout this code writes and reads; bumped on an incompatible change. */
export const CHECKPOINT_FORMAT = "1";

/** `__metadata__` keys, fixed for format 1. */
export const CHECKPOINT_KEYS = {
  format: "voxseg.format",
  kind: "voxseg.kind",
  model: "voxseg.model",
  classNames: "voxseg.classes",
  normalisation: "voxseg.normalisation",
  patchSize: "voxseg.patch_size",
  spacingMm: "voxseg.spacing_mm",
  training: "voxseg.training",
  optimizer: "voxseg.optimizer",
  step: "voxseg.step",
  schedule: "voxseg.schedule",
  extra: "voxseg.extra",
  generation: "voxseg.generation",
  postprocessing: "voxseg.postprocessing",
  channelNormalisations: "voxseg.channel_normalisations",
  classCodes: "voxseg.class_codes",
} as const;

/** Where training stood when the checkpoint was written. */
export interface TrainingSummary {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps taken. */
  step: number;
  /** Name of the monitored validation metric, e.g. "dice" or "loss". */
  monitor: string;
  /** Best value of the monitored metric so far; null before the first validation. */
  bestMetric: number | null;
  /** Latest validation numbers by name (e.g. "dice/lung"); null where undefined (NaN). */
  metrics: Record<string, number | null>;
}

/**
 * Post-processing chosen on cross-validation predictions (src/infer/postprocess.ts), applied to
 * every prediction after the arg-max: first, when `foregroundLcc`, all but the largest connected
 * component of the foreground (all classes > 0 as one) become background; then, for each class
 * of `perClassLcc` in order, all but that class's largest component. Components use
 * `connectivity` neighbours in 3D (6 faces, or 26 with edges and corners).
 */
export interface Postprocessing {
  /** 26 (nnU-Net v2, skimage's full connectivity) or 6 (faces only, scipy's default). */
  connectivity: 6 | 26;
  foregroundLcc: boolean;
  /** Foreground classes (1 … classes − 1), ascending, each reduced to its largest component. */
  perClassLcc: number[];
}

/** Everything besides the weights that a checkpoint records. */
export interface CheckpointMeta {
  model: ModelConfig;
  /** One name per output class, background first; length model.classes. */
  classNames: string[];
  /**
   * How intensities were normalised in training; inference must do the same. Channel 0's for a
   * model of several input channels.
   */
  normalisation: Normalization;
  /**
   * One normalisation per input channel (length `model.inChannels` > 1, channel order), for a
   * multi-channel model; absent for one channel. Read it with `channelNormalizations`
   * (src/data/channels.ts), which gives the list for any channel count.
   */
  channelNormalisations?: Normalization[];
  /** Training patch D, H, W (z, y, x) in voxels. */
  patchSize: [number, number, number];
  /** Voxel spacing the network was trained at, z, y, x in millimetre. */
  spacingMm: [number, number, number];
  training: TrainingSummary;
  /** Post-processing to apply after the arg-max; absent (none) in older checkpoints. */
  postprocessing?: Postprocessing;
  /**
   * The coded meaning of classes by name (from the dataset's `classCodes`), for DICOM
   * Segmentations; absent when the dataset gave none.
   */
  classCodes?: ClassCodes;
}

/** Weights plus their metadata. */
export interface Checkpoint {
  weights: Map<string, HostTensor>;
  meta: CheckpointMeta;
}

/** An unreadable, invalid or unsafe checkpoint. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** The suffix of the optimizer-state file beside a checkpoint (src/train/checkpoint.ts). */
export const OPTIM_SUFFIX = ".optim.safetensors";

/** Throws naming the first tensor holding NaN or ±Infinity. */
export function assertFinite(tensors: Map<string, HostTensor>, what: string): void {
  for (const [name, { data }] of tensors) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        let count = 0;
        for (const v of data) if (!Number.isFinite(v)) count++;
        throw new CheckpointError(
          `refusing to save ${what}: tensor "${name}" holds ${count} non-finite value(s) ` +
            `(first: ${data[i]} at index ${i} of ${data.length})`,
        );
      }
    }
  }
}

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isFiniteNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isTriple = (v: unknown, min: number) =>
  Array.isArray(v) && v.length === 3 && v.every((x) => isFiniteNumber(x) && x >= min);

/** Checks a {@link CheckpointMeta} from anywhere (a file's JSON, a caller); returns it typed. */
function validateMeta(meta: Record<string, unknown>, source: string): CheckpointMeta {
  const fail = (key: string, message: string): never => {
    throw new CheckpointError(`${source}: ${key} ${message}`);
  };
  let model: ModelConfig;
  try {
    model = validateModelConfig(meta.model, source);
  } catch (e) {
    if (e instanceof ConfigError) throw new CheckpointError(e.message);
    throw e;
  }
  const classes = meta.classNames;
  if (!Array.isArray(classes) || !classes.every((c) => typeof c === "string" && c !== "")) {
    fail("classNames", `must be a list of non-empty names, got ${JSON.stringify(classes)}`);
  }
  if ((classes as string[]).length !== model.classes) {
    fail(
      "classNames",
      `has ${(classes as string[]).length} names but model.classes is ${model.classes}`,
    );
  }
  let normalisation: Normalization;
  try {
    normalisation = parseNormalization(meta.normalisation);
  } catch (e) {
    return fail("normalisation", `is invalid: ${(e as Error).message}`);
  }
  if (!isTriple(meta.patchSize, 1) || !(meta.patchSize as number[]).every(Number.isInteger)) {
    fail("patchSize", `must be [D, H, W] positive integers, got ${JSON.stringify(meta.patchSize)}`);
  }
  if (!isTriple(meta.spacingMm, 0) || (meta.spacingMm as number[]).some((s) => s <= 0)) {
    fail(
      "spacingMm",
      `must be [z, y, x] positive millimetres, got ${JSON.stringify(meta.spacingMm)}`,
    );
  }
  const t = meta.training;
  if (
    !isObject(t) || !Number.isSafeInteger(t.epoch) || (t.epoch as number) < 0 ||
    !Number.isSafeInteger(t.step) || (t.step as number) < 0 || typeof t.monitor !== "string" ||
    !(t.bestMetric === null || isFiniteNumber(t.bestMetric)) || !isObject(t.metrics) ||
    !Object.values(t.metrics).every((v) => v === null || isFiniteNumber(v))
  ) {
    fail(
      "training",
      `must be {epoch, step (integers ≥ 0), monitor, bestMetric (number|null), ` +
        `metrics {name: number|null}}, got ${JSON.stringify(t)}`,
    );
  }
  const out = { ...meta, model, normalisation } as unknown as CheckpointMeta;
  delete out.postprocessing;
  delete out.channelNormalisations;
  delete out.classCodes;
  if (meta.classCodes !== undefined) {
    try {
      out.classCodes = parseClassCodes(meta.classCodes, classes as string[]);
    } catch (e) {
      fail("classCodes", `is invalid: ${(e as Error).message}`);
    }
  }
  if (meta.postprocessing !== undefined) {
    out.postprocessing = parsePostprocessing(meta.postprocessing, model.classes, source);
  }
  if (meta.channelNormalisations !== undefined) {
    out.channelNormalisations = parseChannelNormalisations(
      meta.channelNormalisations,
      model.inChannels,
      source,
    );
  }
  return out;
}

/** Checks a checkpoint's per-channel normalisations: one valid entry per input channel (> 1). */
function parseChannelNormalisations(
  value: unknown,
  inChannels: number,
  source: string,
): Normalization[] {
  if (!Array.isArray(value) || value.length !== inChannels || inChannels < 2) {
    throw new CheckpointError(
      `${source}: channelNormalisations must hold one normalisation per input channel ` +
        `(model.inChannels ${inChannels}, and only when it is above 1), got ` +
        `${JSON.stringify(value)?.slice(0, 200)}`,
    );
  }
  return value.map((v, c) => {
    try {
      return parseNormalization(v);
    } catch (e) {
      throw new CheckpointError(
        `${source}: channelNormalisations[${c}] is invalid: ${(e as Error).message}`,
      );
    }
  });
}

/**
 * Checks a {@link Postprocessing} record (from a checkpoint's JSON or a caller) for a model of
 * `classes` classes; returns a clean copy. Throws {@link CheckpointError} naming the problem.
 */
export function parsePostprocessing(
  value: unknown,
  classes: number,
  source = "checkpoint",
): Postprocessing {
  const v = isObject(value) ? value : {};
  const per = v.perClassLcc;
  const ok = isObject(value) && (v.connectivity === 6 || v.connectivity === 26) &&
    typeof v.foregroundLcc === "boolean" && Array.isArray(per) &&
    per.every((c, i) =>
      Number.isInteger(c) && c >= 1 && c < classes && (i === 0 || c > (per[i - 1] as number))
    );
  if (!ok) {
    throw new CheckpointError(
      `${source}: postprocessing must be {connectivity: 6 or 26, foregroundLcc: true or false, ` +
        `perClassLcc: ascending distinct classes in 1..${classes - 1}}, got ` +
        `${JSON.stringify(value)}; choose it again with choosePostprocessing`,
    );
  }
  return {
    connectivity: v.connectivity as 6 | 26,
    foregroundLcc: v.foregroundLcc as boolean,
    perClassLcc: [...(per as number[])],
  };
}

/** NaN/±Infinity in the free-form numbers become null (JSON has no such values). */
function jsonSafe(meta: CheckpointMeta): CheckpointMeta {
  if (!isObject(meta?.training) || !isObject(meta.training.metrics)) return meta;
  const fix = (v: number | null) => (v === null || Number.isFinite(v) ? v : null);
  return {
    ...meta,
    training: {
      ...meta.training,
      bestMetric: fix(meta.training.bestMetric),
      metrics: Object.fromEntries(
        Object.entries(meta.training.metrics).map(([k, v]) => [k, fix(v)]),
      ),
    },
  };
}

export function voxsegHeader(kind: "model" | "optimizer"): Record<string, string> {
  // "format": "pt" is the Hugging Face convention for PyTorch-layout tensors.
  return {
    format: "pt",
    [CHECKPOINT_KEYS.format]: CHECKPOINT_FORMAT,
    [CHECKPOINT_KEYS.kind]: kind,
  };
}

/**
 * A checkpoint as safetensors bytes (what {@link saveCheckpoint} writes). Throws
 * {@link CheckpointError} for invalid metadata or a non-finite weight, naming it.
 */
export function encodeCheckpoint(
  { weights, meta }: Checkpoint,
  source = "checkpoint",
  stamp: Record<string, string> = {},
): Uint8Array {
  const safe = validateMeta(jsonSafe(meta) as unknown as Record<string, unknown>, source);
  assertFinite(weights, source);
  return encodeSafetensors(weights, {
    ...voxsegHeader("model"),
    ...metadataStrings(safe),
    ...stamp,
  });
}

/**
 * A checkpoint's metadata as the string entries it is stored under (JSON values under
 * `voxseg.*` keys): the safetensors `__metadata__`, and the ONNX export's metadata_props.
 */
export function metadataStrings(meta: CheckpointMeta): Record<string, string> {
  const K = CHECKPOINT_KEYS;
  return {
    [K.model]: JSON.stringify(meta.model),
    [K.classNames]: JSON.stringify(meta.classNames),
    [K.normalisation]: JSON.stringify(meta.normalisation),
    [K.patchSize]: JSON.stringify(meta.patchSize),
    [K.spacingMm]: JSON.stringify(meta.spacingMm),
    [K.training]: JSON.stringify(meta.training),
    ...(meta.postprocessing ? { [K.postprocessing]: JSON.stringify(meta.postprocessing) } : {}),
    ...(meta.channelNormalisations
      ? { [K.channelNormalisations]: JSON.stringify(meta.channelNormalisations) }
      : {}),
    ...(meta.classCodes ? { [K.classCodes]: JSON.stringify(meta.classCodes) } : {}),
  };
}

/**
 * Parses safetensors bytes and checks the voxseg header of the given kind; returns the tensors
 * and readers of its metadata (`text`, `json`) that throw {@link CheckpointError} naming the key.
 */
export function decodeKind(bytes: Uint8Array, kind: "model" | "optimizer", source: string) {
  let file: ReturnType<typeof decodeSafetensors>;
  try {
    file = decodeSafetensors(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new CheckpointError(`${source}: ${e.message}`);
    throw e;
  }
  const md = file.metadata;
  const format = md[CHECKPOINT_KEYS.format];
  if (format === undefined) {
    throw new CheckpointError(
      `${source} is not a voxseg ${kind === "model" ? "checkpoint" : "optimizer state"}: ` +
        `its __metadata__ has no "${CHECKPOINT_KEYS.format}" (plain safetensors tensors can ` +
        `still be read with decodeSafetensors)`,
    );
  }
  if (format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      `${source} has checkpoint format ${JSON.stringify(format)}; this voxseg reads format ` +
        `${CHECKPOINT_FORMAT}`,
    );
  }
  const found = md[CHECKPOINT_KEYS.kind];
  if (found !== kind) {
    throw new CheckpointError(
      `${source} holds ${JSON.stringify(found)} data, expected ${kind}` +
        (found === "optimizer" ? " (this is the .optim file; load the checkpoint beside it)" : ""),
    );
  }
  const text = (key: string): string => {
    const value = md[key];
    if (value === undefined) {
      throw new CheckpointError(`${source}: __metadata__ is missing "${key}"`);
    }
    return value;
  };
  const json = (key: string, optional = false): unknown => {
    if (optional && md[key] === undefined) return undefined;
    try {
      return JSON.parse(text(key));
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(`${source}: "${key}" is not valid JSON: ${(e as Error).message}`);
    }
  };
  return { tensors: file.tensors, text, json };
}

/** Reads checkpoint bytes; throws {@link CheckpointError} saying what is missing or wrong. */
export function decodeCheckpoint(bytes: Uint8Array, source = "checkpoint"): Checkpoint {
  const { tensors, json } = decodeKind(bytes, "model", source);
  const K = CHECKPOINT_KEYS;
  const postprocessing = json(K.postprocessing, true);
  const channelNormalisations = json(K.channelNormalisations, true);
  const classCodes = json(K.classCodes, true);
  const meta = validateMeta({
    model: json(K.model),
    classNames: json(K.classNames),
    normalisation: json(K.normalisation),
    patchSize: json(K.patchSize),
    spacingMm: json(K.spacingMm),
    training: json(K.training),
    ...(postprocessing === undefined ? {} : { postprocessing }),
    ...(channelNormalisations === undefined ? {} : { channelNormalisations }),
    ...(classCodes === undefined ? {} : { classCodes }),
  }, source);
  return { weights: tensors, meta };
}

/**
 * Writes weights and metadata to `path` (`….safetensors`) atomically. Throws
 * {@link CheckpointError}, writing nothing, when a weight holds NaN/Infinity or the metadata is
 * invalid.
 *
 * @example
 * // weights: Map<name, { shape, data: Float32Array }> read back from the GPU
 * await saveCheckpoint("runs/a/best.safetensors", { weights, meta });
 */
export async function saveCheckpoint(path: string, checkpoint: Checkpoint): Promise<void> {
  if (path.endsWith(OPTIM_SUFFIX)) {
    throw new CheckpointError(`${path}: names ending in ${OPTIM_SUFFIX} are for optimizer state`);
  }
  await writeFileAtomic(path, encodeCheckpoint(checkpoint, path));
}

/** Reads and validates a checkpoint written by {@link saveCheckpoint}. */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(await Deno.readFile(path), path);
}

/**
 * Reads and decodes a checkpoint file, for a command or a loader that was given its path.
 * Throws {@link CheckpointError} saying what is wrong with the file: missing, a folder, not
 * safetensors, or safetensors without voxseg's metadata.
 */
export async function readCheckpointFile(path: string): Promise<Checkpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CheckpointError(`model not found: ${path}`);
    if (e instanceof Deno.errors.IsADirectory) {
      throw new CheckpointError(
        `${path} is a folder; name the checkpoint file in it (e.g. ${path}/best.safetensors)`,
      );
    }
    throw e;
  }
  try {
    return decodeCheckpoint(bytes, path);
  } catch (e) {
    throw new CheckpointError(
      `${path} is not a voxseg checkpoint (a .safetensors file written by \`voxseg train\`): ` +
        (e as Error).message,
    );
  }
}
