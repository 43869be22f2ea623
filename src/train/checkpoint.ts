/**
 * Checkpoints: the model's weights as a safetensors file whose `__metadata__` says how to use
 * them (model config, class names, intensity normalisation, patch size, spacing, training
 * summary), and the optimizer's state in a second file beside it for exact resume:
 *
 *   runs/a/best.safetensors         weights; PyTorch `state_dict` names; loadable anywhere
 *   runs/a/best.optim.safetensors   `<param>.exp_avg`, `<param>.exp_avg_sq` (Adam/AdamW) or
 *                                   `<param>.momentum_buffer` (SGD); step, schedule in metadata
 *
 * Metadata values are strings (the format allows nothing else): JSON under the stable keys of
 * {@link CHECKPOINT_KEYS}. Every write is atomic, and non-finite values are refused, so a NaN
 * never reaches a checkpoint.
 */

import { basename, join } from "node:path";
import { writeFileAtomic } from "../base/atomic.ts";
import { type Normalization, parseNormalization } from "../data/normalize.ts";
import { ConfigError, type ModelConfig, validateModelConfig } from "./config.ts";
import type { ScheduleState } from "./schedules.ts";
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

/** Everything besides the weights that a checkpoint records. */
export interface CheckpointMeta {
  model: ModelConfig;
  /** One name per output class, background first; length model.classes. */
  classNames: string[];
  /** How intensities were normalised in training; inference must do the same. */
  normalisation: Normalization;
  /** Training patch D, H, W (z, y, x) in voxels. */
  patchSize: [number, number, number];
  /** Voxel spacing the network was trained at, z, y, x in millimetre. */
  spacingMm: [number, number, number];
  training: TrainingSummary;
}

/** Weights plus their metadata. */
export interface Checkpoint {
  weights: Map<string, HostTensor>;
  meta: CheckpointMeta;
}

/** The optimizer's per-parameter slots, PyTorch's names, by optimizer kind. */
export const OPTIMIZER_SLOTS = {
  adam: ["exp_avg", "exp_avg_sq"],
  adamw: ["exp_avg", "exp_avg_sq"],
  sgd: ["momentum_buffer"],
} as const;

/** What exact resume needs besides the weights. */
export interface OptimizerState {
  kind: keyof typeof OPTIMIZER_SLOTS;
  /** Optimizer steps taken (the next step is step + 1, for Adam's bias correction). */
  step: number;
  /** `<param>.<slot>` tensors, slots from {@link OPTIMIZER_SLOTS}. */
  slots: Map<string, HostTensor>;
  /** The learning-rate schedule's state, when there is one. */
  schedule?: ScheduleState;
  /** Anything else the trainer needs to continue (epoch, early-stopping counters, …); JSON. */
  extra?: Record<string, unknown>;
}

/** An unreadable, invalid or unsafe checkpoint. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

const OPTIM_SUFFIX = ".optim.safetensors";

/**
 * The optimizer-state file beside a checkpoint: `x.safetensors` → `x.optim.safetensors`
 * (a path already ending in `.optim.safetensors` is returned as is).
 */
export function optimizerStatePath(checkpointPath: string): string {
  if (checkpointPath.endsWith(OPTIM_SUFFIX)) return checkpointPath;
  return checkpointPath.replace(/\.safetensors$/, "") + OPTIM_SUFFIX;
}

/** Throws naming the first tensor holding NaN or ±Infinity. */
function assertFinite(tensors: Map<string, HostTensor>, what: string): void {
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

const isObject = (v: unknown): v is Record<string, unknown> =>
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
  return { ...meta, model, normalisation } as unknown as CheckpointMeta;
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

function voxsegHeader(kind: "model" | "optimizer"): Record<string, string> {
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
  };
}

/** Parses safetensors bytes and checks the voxseg header of the given kind; returns both. */
function decodeKind(bytes: Uint8Array, kind: "model" | "optimizer", source: string) {
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
  const meta = validateMeta({
    model: json(K.model),
    classNames: json(K.classNames),
    normalisation: json(K.normalisation),
    patchSize: json(K.patchSize),
    spacingMm: json(K.spacingMm),
    training: json(K.training),
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

function checkSlots(state: OptimizerState, source: string): void {
  const allowed: readonly string[] | undefined = OPTIMIZER_SLOTS[state.kind];
  if (!allowed) {
    throw new CheckpointError(
      `${source}: optimizer kind ${JSON.stringify(state.kind)} is not one of ` +
        Object.keys(OPTIMIZER_SLOTS).join(", "),
    );
  }
  if (!Number.isSafeInteger(state.step) || state.step < 0) {
    throw new CheckpointError(
      `${source}: optimizer step must be an integer ≥ 0, got ${state.step}`,
    );
  }
  for (const name of state.slots.keys()) {
    const slot = name.slice(name.lastIndexOf(".") + 1);
    if (name.lastIndexOf(".") <= 0 || !allowed.includes(slot)) {
      throw new CheckpointError(
        `${source}: optimizer slot "${name}" must be named <param>.{${allowed.join(",")}} ` +
          `for ${state.kind}`,
      );
    }
  }
}

/** Optimizer state as safetensors bytes (what {@link saveOptimizerState} writes). */
export function encodeOptimizerState(
  state: OptimizerState,
  source = "optimizer state",
  stamp: Record<string, string> = {},
): Uint8Array {
  checkSlots(state, source);
  assertFinite(state.slots, source);
  const K = CHECKPOINT_KEYS;
  const metadata: Record<string, string> = {
    ...voxsegHeader("optimizer"),
    [K.optimizer]: state.kind,
    [K.step]: String(state.step),
  };
  if (state.schedule) metadata[K.schedule] = JSON.stringify(state.schedule);
  if (state.extra) metadata[K.extra] = JSON.stringify(state.extra);
  return encodeSafetensors(state.slots, { ...metadata, ...stamp });
}

/** Reads optimizer-state bytes. */
export function decodeOptimizerState(
  bytes: Uint8Array,
  source = "optimizer state",
): OptimizerState {
  const { tensors, text, json } = decodeKind(bytes, "optimizer", source);
  const K = CHECKPOINT_KEYS;
  const step = text(K.step);
  if (!/^\d+$/.test(step)) {
    throw new CheckpointError(`${source}: "${K.step}" must be an integer ≥ 0, got "${step}"`);
  }
  const state: OptimizerState = {
    kind: text(K.optimizer) as OptimizerState["kind"],
    step: Number(step),
    slots: tensors,
  };
  const schedule = json(K.schedule, true);
  if (schedule !== undefined) {
    if (!isObject(schedule) || typeof schedule.kind !== "string") {
      throw new CheckpointError(`${source}: "${K.schedule}" is not a schedule state`);
    }
    state.schedule = schedule as ScheduleState;
  }
  const extra = json(K.extra, true);
  if (extra !== undefined) {
    if (!isObject(extra)) throw new CheckpointError(`${source}: "${K.extra}" is not an object`);
    state.extra = extra;
  }
  checkSlots(state, source);
  return state;
}

/**
 * Writes optimizer state beside the checkpoint at `checkpointPath`, to
 * {@link optimizerStatePath}(checkpointPath), atomically; returns the path written. Refuses
 * non-finite slot values. The two files are written one after the other, so after a crash
 * between them their steps may differ: a trainer saves with {@link saveTrainingState}, which
 * commits the pair as one generation.
 */
export async function saveOptimizerState(
  checkpointPath: string,
  state: OptimizerState,
): Promise<string> {
  const path = optimizerStatePath(checkpointPath);
  await writeFileAtomic(path, encodeOptimizerState(state, path));
  return path;
}

/** Reads the optimizer state beside the checkpoint at `checkpointPath`. */
export async function loadOptimizerState(checkpointPath: string): Promise<OptimizerState> {
  const path = optimizerStatePath(checkpointPath);
  return decodeOptimizerState(await Deno.readFile(path), path);
}

/*
 * Training state: the weights and the optimizer state that resume needs, written as one
 * generation. Both files carry the same `voxseg.generation` (a counter that grows with every
 * write in a run folder) and `voxseg.step`, and the pair is committed so that at every instant
 * at least one complete matching pair is on disk:
 *
 *   1. last.g<G>.safetensors         written atomically (temp file, fsync, rename, fsync folder)
 *   2. last.g<G>.optim.safetensors   written atomically
 *   3. last.g<G>.optim.safetensors → last.optim.safetensors
 *   4. last.g<G>.safetensors       → last.safetensors
 *   5. leftover last.g<N>.* files of older generations removed
 *
 * Until 3 the previous pair (last + last.optim) is untouched; between 3 and 4 the new pair is
 * last.g<G> + last.optim; after 4 it is last + last.optim, the names every other reader
 * (inference, the server's model list) uses. A kill at any point leaves a pair that
 * {@link loadTrainingState} finds by matching the stamps, never the names.
 */

/** The file names of a run folder's training state. */
const STATE_MODEL = "last.safetensors";
const STATE_OPTIM = "last.optim.safetensors";
const STATE_FILE = /^last(?:\.g(\d+))?(\.optim)?\.safetensors$/;
/** Temp files of writes a killed process never finished (see tempSibling in data/atomic.ts). */
const TEMP_FILE = /^\.(?:last|best)\..*safetensors\.tmp-\d+-[0-9a-z]+$/;

/** What resume needs: weights with their metadata, optimizer state, and the write's stamp. */
export interface TrainingState {
  checkpoint: Checkpoint;
  optimizer: OptimizerState;
  /** The write counter shared by both files; 0 for a pair written before generations existed. */
  generation: number;
}

function stampMetadata(step: number, generation: number): Record<string, string> {
  return { [CHECKPOINT_KEYS.step]: String(step), [CHECKPOINT_KEYS.generation]: String(generation) };
}

async function fsyncFolder(path: string): Promise<void> {
  try {
    const dir = await Deno.open(path, { read: true });
    try {
      await dir.sync();
    } finally {
      dir.close();
    }
  } catch {
    // Some platforms cannot open or fsync a folder; the renames are still atomic.
  }
}

/**
 * Writes a run folder's training state as generation `state.generation` (see the scheme
 * above), then removes older generations' leftovers. `onCommit` observes each durable step
 * ("model", "optim", "rename-optim", "rename-model"); throwing from it stops the sequence there,
 * which is how tests simulate a crash.
 *
 * @example
 * await saveTrainingState("runs/a", { checkpoint, optimizer, generation: 7 });
 */
export async function saveTrainingState(
  runDir: string,
  state: TrainingState,
  onCommit: (done: string) => void | Promise<void> = () => {},
): Promise<void> {
  const { checkpoint, optimizer, generation } = state;
  const step = checkpoint.meta.training.step;
  if (!Number.isSafeInteger(generation) || generation < 1) {
    throw new CheckpointError(
      `training state generation must be an integer ≥ 1, got ${generation}`,
    );
  }
  if (optimizer.step !== step) {
    throw new CheckpointError(
      `refusing to save training state: the weights are at step ${step} but the optimizer ` +
        `state at step ${optimizer.step}`,
    );
  }
  const model = join(runDir, `last.g${generation}.safetensors`);
  const optim = optimizerStatePath(model);
  const stamp = stampMetadata(step, generation);
  await writeFileAtomic(model, encodeCheckpoint(checkpoint, basename(model), stamp));
  await onCommit("model");
  await writeFileAtomic(optim, encodeOptimizerState(optimizer, basename(optim), stamp));
  await onCommit("optim");
  await Deno.rename(optim, join(runDir, STATE_OPTIM));
  await fsyncFolder(runDir);
  await onCommit("rename-optim");
  await Deno.rename(model, join(runDir, STATE_MODEL));
  await fsyncFolder(runDir);
  await onCommit("rename-model");
  for (const name of await stateFiles(runDir)) {
    const g = STATE_FILE.exec(name)?.[1];
    if (g !== undefined && Number(g) !== generation) {
      await Deno.remove(join(runDir, name)).catch(() => {});
    }
  }
}

async function stateFiles(runDir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(runDir)) if (e.isFile) names.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return names.sort();
}

/** One decoded state file and its stamp. */
interface StampedFile {
  name: string;
  kind: "model" | "optim";
  step: number;
  generation: number;
  checkpoint?: Checkpoint;
  optimizer?: OptimizerState;
}

async function readStamped(runDir: string, name: string, optim: boolean): Promise<StampedFile> {
  const bytes = await Deno.readFile(join(runDir, name));
  const generationOf = (text: string | undefined) => {
    if (text === undefined) return 0;
    if (!/^[1-9]\d*$/.test(text)) {
      throw new CheckpointError(`"${CHECKPOINT_KEYS.generation}" must be an integer ≥ 1`);
    }
    return Number(text);
  };
  const generation = generationOf(decodeSafetensors(bytes).metadata[CHECKPOINT_KEYS.generation]);
  if (optim) {
    const optimizer = decodeOptimizerState(bytes, name);
    return { name, kind: "optim", step: optimizer.step, generation, optimizer };
  }
  const checkpoint = decodeCheckpoint(bytes, name);
  return { name, kind: "model", step: checkpoint.meta.training.step, generation, checkpoint };
}

/**
 * The newest complete training state in a run folder: the weights and optimizer files with the
 * highest generation whose stamps (generation and step) match; pairs written before
 * generations existed (`last` + `last.optim`, no stamp) count as generation 0 when their steps
 * agree. Unreadable, torn or unmatched files are passed over with a one-line `notice` naming
 * the file (never its folder). Returns undefined when the folder holds no training state, or
 * only the unfinished files of its first write; throws {@link CheckpointError} when it holds
 * state files but no complete pair.
 */
export async function loadTrainingState(
  runDir: string,
  notice: (line: string) => void = () => {},
): Promise<TrainingState | undefined> {
  const files: StampedFile[] = [];
  const names = (await stateFiles(runDir)).filter((n) => STATE_FILE.test(n));
  for (const name of names) {
    try {
      files.push(await readStamped(runDir, name, STATE_FILE.exec(name)![2] !== undefined));
    } catch (e) {
      if (!(e instanceof CheckpointError || e instanceof SafetensorsError)) throw e;
      notice(`ignoring ${name}: unreadable or torn (${firstLine((e as Error).message)})`);
    }
  }
  if (names.length === 0) return undefined;
  const models = files.filter((f) => f.kind === "model").sort((a, b) =>
    b.generation - a.generation || b.step - a.step
  );
  let chosen: { model: StampedFile; optim: StampedFile } | undefined;
  for (const model of models) {
    const optim = files.find((f) =>
      f.kind === "optim" && f.generation === model.generation && f.step === model.step
    );
    if (optim) {
      chosen = { model, optim };
      break;
    }
  }
  for (const f of files) {
    if (f !== chosen?.model && f !== chosen?.optim) {
      notice(
        `ignoring ${f.name} (generation ${f.generation}, step ${f.step}): ` +
          (chosen ? "not part of the newest complete pair" : "it has no matching partner"),
      );
    }
  }
  if (!chosen && names.every((n) => STATE_FILE.exec(n)![1] === "1")) {
    // Only the first generation's files, and they are incomplete: nothing was ever committed.
    notice("the first checkpoint was never completed; starting from the beginning");
    return undefined;
  }
  if (!chosen) {
    throw new CheckpointError(
      `the run folder holds training state (${names.join(", ")}) but no weights and optimizer ` +
        `files with matching steps, so it cannot be resumed exactly; resume from best.safetensors ` +
        `in a new run folder, or start over`,
    );
  }
  return {
    checkpoint: chosen.model.checkpoint!,
    optimizer: chosen.optim.optimizer!,
    generation: chosen.model.generation,
  };
}

/** The highest generation stamped on any training-state file in the folder (0 when none). */
export async function latestGeneration(runDir: string): Promise<number> {
  let max = 0;
  for (const name of await stateFiles(runDir)) {
    const m = STATE_FILE.exec(name);
    if (!m) continue;
    if (m[1] !== undefined) max = Math.max(max, Number(m[1]));
    try {
      const g = Number(
        decodeSafetensors(await Deno.readFile(join(runDir, name))).metadata[
          CHECKPOINT_KEYS.generation
        ] ?? 0,
      );
      if (Number.isSafeInteger(g)) max = Math.max(max, g);
    } catch {
      // torn: its name still counts
    }
  }
  return max;
}

/**
 * Removes the temp files of atomic writes that a killed process left in a run folder
 * (`.last.….tmp-PID-…`, `.best.….tmp-PID-…`); returns how many. Call it only while no other
 * process writes to the folder.
 */
export async function removeStaleTempFiles(runDir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(runDir)) {
      if (e.isFile && TEMP_FILE.test(e.name)) {
        await Deno.remove(join(runDir, e.name)).catch(() => {});
        n++;
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return n;
}

/** Removes every training-state file (all generations) from a run folder. */
export async function removeTrainingState(runDir: string): Promise<void> {
  for (const name of await stateFiles(runDir)) {
    if (STATE_FILE.test(name)) await Deno.remove(join(runDir, name));
  }
}

const firstLine = (s: string) => s.split("\n")[0].slice(0, 200);
