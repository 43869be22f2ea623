/**
 * Training state: the optimizer's state in a file beside a checkpoint, for exact resume, and
 * the generations that commit weights and optimizer state as one pair. The model checkpoint
 * format itself is src/nn/checkpoint.ts's.
 *
 *   runs/a/best.safetensors         weights; PyTorch `state_dict` names; loadable anywhere
 *   runs/a/best.optim.safetensors   `<param>.exp_avg`, `<param>.exp_avg_sq` (Adam/AdamW) or
 *                                   `<param>.momentum_buffer` (SGD); step, schedule in metadata
 */

import { basename, join } from "node:path";
import { syncFolder, writeFileAtomic } from "../base/atomic.ts";
import {
  assertFinite,
  type Checkpoint,
  CHECKPOINT_KEYS,
  CheckpointError,
  decodeCheckpoint,
  decodeKind,
  encodeCheckpoint,
  isObject,
  OPTIM_SUFFIX,
  voxsegHeader,
} from "../nn/checkpoint.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  SafetensorsError,
} from "../nn/safetensors.ts";
import type { ScheduleState } from "./schedules.ts";

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

/**
 * The optimizer-state file beside a checkpoint: `x.safetensors` → `x.optim.safetensors`
 * (a path already ending in `.optim.safetensors` is returned as is).
 */
export function optimizerStatePath(checkpointPath: string): string {
  if (checkpointPath.endsWith(OPTIM_SUFFIX)) return checkpointPath;
  return checkpointPath.replace(/\.safetensors$/, "") + OPTIM_SUFFIX;
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
/** Temp files of writes a killed process never finished (see tempSibling in base/atomic.ts). */
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
  await syncFolder(runDir);
  await onCommit("rename-optim");
  await Deno.rename(model, join(runDir, STATE_MODEL));
  await syncFolder(runDir);
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
