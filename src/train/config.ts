/**
 * The training configuration: one typed object with defaults, overridden by a JSON file, then by
 * command-line flags. Every field has a dotted flag (`--optimizer.lr 3e-4`, `--model.norm
 * instance`, `--data.patchSize 32,64,64`); the common ones also have short aliases (`--lr`,
 * `--epochs`, `--batch-size`, `--patch`, …). Fields are described once, in {@link configFields},
 * which drives parsing, validation, "did you mean" suggestions and the help text alike.
 */

import type { Precision } from "../ops/precision.ts";
import type { NormalizationKind } from "../data/normalize.ts";
import { defaultUNetConfig, type UNet3DConfig } from "../nn/unet3d.ts";

/** A bad config file or flag; the message names the field, the value and what is allowed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The network's shape (the UNet3D constructor's config). */
export type ModelConfig = UNet3DConfig;

/**
 * Intensity normalisation applied to each image before it reaches the network: one of
 * src/data/normalize.ts's kinds, or `auto` (the loader's choice: ct-window for CT, zscore
 * otherwise).
 */
export type NormalisationKind = "auto" | NormalizationKind;

/** Where patches come from and how they are prepared. */
export interface DataConfig {
  /** Dataset folder or URL holding `dataset.json`. */
  dataset: string;
  /** Training patch D, H, W (z, y, x) in voxels; each divisible by 2^(model.depth − 1). */
  patchSize: [number, number, number];
  batchSize: number;
  /** Share of patches centred on a foreground voxel (nnU-Net oversampling); the rest random. */
  foregroundFraction: number;
  /**
   * `ct-window`: clip to {@link window} and scale to [0, 1]; `zscore`: clip to the dataset's
   * foreground 0.5/99.5 percentiles, then its mean/std (nnU-Net CT); `none`; `auto`.
   */
  normalisation: NormalisationKind;
  /** Intensity window [low, high] for `ct-window` (HU; the lung window by default). */
  window: [number, number];
  augment: {
    /** Random flips along each axis. */
    flip: boolean;
    /** Random 90° rotations in the axial (y, x) plane. */
    rotate90: boolean;
    /** Random intensity scale and shift. */
    intensity: boolean;
    /** Additive Gaussian noise. */
    noise: boolean;
  };
  /** Patch-loading workers; 0 loads on the main thread. */
  workers: number;
}

/** The weighted sum of loss terms the network is trained on. */
export interface LossConfig {
  /** Weights of the summed loss terms. */
  tverskyWeight: number;
  ceWeight: number;
  diceWeight: number;
  /** Tversky index TP / (TP + α·FP + β·FN): α weighs false positives, β false negatives. */
  alpha: number;
  beta: number;
  /** Added to the Tversky/Dice numerator and denominator. */
  smooth: number;
  /** Per-class weights (length model.classes) for cross-entropy and the region losses. */
  classWeights?: number[];
  /** Count class 0 (background) in the Tversky/Dice mean. */
  includeBackground: boolean;
  /** Sum TP/FP/FN over the batch before the ratio (nnU-Net "batch dice"). */
  batchDice: boolean;
}

/** The optimizer and its hyper-parameters. */
export interface OptimizerConfig {
  kind: "adam" | "adamw" | "sgd";
  lr: number;
  /** L2 for adam and sgd, decoupled for adamw. */
  weightDecay: number;
  /** SGD momentum (nnU-Net: 0.99). */
  momentum: number;
  nesterov: boolean;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this; 0 turns clipping off (nnU-Net: 12). */
  gradClip: number;
}

/** The learning-rate schedule; each kind reads only its own fields. */
export interface ScheduleConfig {
  /**
   * `poly` and `cosine` advance once per optimizer step over epochs × itersPerEpoch steps;
   * `plateau` once per validation, on the {@link TrainConfig.monitor} metric.
   */
  kind: "plateau" | "poly" | "cosine" | "constant";
  /** plateau: multiply the learning rate by this on a plateau. */
  factor: number;
  /** plateau: validations without improvement before reducing. */
  patience: number;
  /** plateau: how much better counts as better. */
  threshold: number;
  thresholdMode: "rel" | "abs";
  /** plateau: validations to wait after a reduction before counting again. */
  cooldown: number;
  /** plateau and cosine: lower bound of the learning rate. */
  minLr: number;
  /** plateau: reductions smaller than this are skipped. */
  eps: number;
  /** poly: lr0 · (1 − step/total)^exponent. */
  exponent: number;
  /** cosine: steps of linear warm-up before the cosine decay. */
  warmupSteps: number;
}

/** Everything a training run is configured by. */
export interface TrainConfig {
  model: ModelConfig;
  data: DataConfig;
  loss: LossConfig;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  epochs: number;
  itersPerEpoch: number;
  /** Validate every this many epochs. */
  valEvery: number;
  /**
   * The validation number that picks the best checkpoint and drives plateau and early
   * stopping: mean foreground Dice (higher is better) or validation loss (lower is better).
   */
  monitor: "dice" | "loss";
  earlyStopping: {
    /** Validations without improvement before stopping; 0 never stops early. */
    patience: number;
  };
  seed: number;
  /** Output folder: checkpoints, metrics.jsonl, summary.json. */
  out: string;
  /** Read the loss back to the host every this many steps (each readback costs ~10 ms). */
  lossReadbackEvery: number;
  /**
   * Also write the resumable training state every this many optimizer steps within an epoch
   * (0: only at the end of each epoch). A crash loses at most this many steps.
   */
  checkpointEvery: number;
  /**
   * Operand precision of the 3×3×3 convolutions in the training forward pass: "f32", or "f16"
   * (binary16 inputs and weights, f32 sums — mixed precision as under `torch.autocast`).
   * Gradients, master weights, optimizer state and validation stay f32.
   */
  precision: Precision;
}

/** The defaults every config starts from (frozen: resolveConfig returns fresh copies). */
export const defaultTrainConfig: TrainConfig = deepFreeze({
  model: { ...defaultUNetConfig },
  data: {
    dataset: "data/synth",
    patchSize: [64, 64, 64],
    batchSize: 2,
    foregroundFraction: 0.33,
    normalisation: "auto",
    window: [-1000, 400],
    augment: { flip: true, rotate90: false, intensity: true, noise: false },
    workers: 1,
  },
  loss: {
    tverskyWeight: 1,
    ceWeight: 1,
    diceWeight: 0,
    alpha: 0.3,
    beta: 0.7,
    smooth: 1e-5,
    includeBackground: false,
    batchDice: false,
  },
  optimizer: {
    kind: "adam",
    lr: 1e-3,
    weightDecay: 0,
    momentum: 0.99,
    nesterov: true,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    gradClip: 12,
  },
  schedule: {
    kind: "poly",
    factor: 0.1,
    patience: 10,
    threshold: 1e-4,
    thresholdMode: "rel",
    cooldown: 0,
    minLr: 0,
    eps: 1e-8,
    exponent: 0.9,
    warmupSteps: 0,
  },
  epochs: 50,
  itersPerEpoch: 100,
  valEvery: 1,
  monitor: "dice",
  earlyStopping: { patience: 0 },
  seed: 0,
  out: "runs/train",
  lossReadbackEvery: 10,
  checkpointEvery: 0,
  precision: "f32",
});

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** How one field's value is written and what it may be. */
export type FieldType =
  | { kind: "int"; min: number; max?: number }
  | { kind: "number"; min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "bool" }
  | { kind: "string" }
  /** D,H,W positive integers; one number means all three. */
  | { kind: "shape3" }
  /** [low, high] with low < high. */
  | { kind: "range" }
  /** A list of numbers ≥ 0; may be left unset. */
  | { kind: "weights" };

/** One configurable field: its dotted path, type and a line of help. */
export interface ConfigField {
  path: string;
  type: FieldType;
  help: string;
}

const int = (min: number, max?: number): FieldType => ({ kind: "int", min, max });
const num = (
  min?: number,
  max?: number,
  exclusiveMin = false,
  exclusiveMax = false,
): FieldType => ({
  kind: "number",
  min,
  max,
  exclusiveMin,
  exclusiveMax,
});
const oneOf = (...values: string[]): FieldType => ({ kind: "enum", values });
const bool: FieldType = { kind: "bool" };
const field = (path: string, type: FieldType, help: string): ConfigField => ({ path, type, help });

/** Every field of {@link TrainConfig}, in help order. */
export const configFields: readonly ConfigField[] = [
  field("model.inChannels", int(1, 64), "input channels (1 for CT)"),
  field("model.classes", int(2, 256), "output classes, background included"),
  field("model.baseChannels", int(1, 1024), "channels at the first level"),
  field("model.depth", int(1, 8), "resolution levels, bottleneck included"),
  field("model.convsPerLevel", int(1, 8), "3×3×3 convolutions per block"),
  field("model.activation", oneOf("relu", "elu", "leaky_relu"), "activation"),
  field("model.norm", oneOf("none", "instance", "batch"), "normalisation layer"),
  field("model.init", oneOf("he", "glorot"), "weight initialisation"),
  field("data.dataset", { kind: "string" }, "dataset folder or URL"),
  field("data.patchSize", { kind: "shape3" }, "patch D,H,W in voxels"),
  field("data.batchSize", int(1, 4096), "patches per step"),
  field("data.foregroundFraction", num(0, 1), "share of foreground patches"),
  field(
    "data.normalisation",
    oneOf("auto", "ct-window", "zscore", "none"),
    "intensity normalisation",
  ),
  field("data.window", { kind: "range" }, "LOW,HIGH HU for ct-window"),
  field("data.augment.flip", bool, "random flips"),
  field("data.augment.rotate90", bool, "random axial 90° rotations"),
  field("data.augment.intensity", bool, "random intensity scale/shift"),
  field("data.augment.noise", bool, "Gaussian noise"),
  field("data.workers", int(0, 64), "loader workers (0: main thread)"),
  field("loss.tverskyWeight", num(0), "weight of the Tversky loss"),
  field("loss.ceWeight", num(0), "weight of cross-entropy"),
  field("loss.diceWeight", num(0), "weight of the soft Dice loss"),
  field("loss.alpha", num(0), "Tversky false-positive weight"),
  field("loss.beta", num(0), "Tversky false-negative weight"),
  field("loss.smooth", num(0), "Tversky/Dice smoothing term"),
  field("loss.classWeights", { kind: "weights" }, "per-class weights W0,W1,…"),
  field("loss.includeBackground", bool, "count background in Tversky/Dice"),
  field("loss.batchDice", bool, "pool TP/FP/FN over the batch"),
  field("optimizer.kind", oneOf("adam", "adamw", "sgd"), "optimizer"),
  field("optimizer.lr", num(0, undefined, true), "initial learning rate"),
  field("optimizer.weightDecay", num(0), "weight decay"),
  field("optimizer.momentum", num(0, 1, false, true), "SGD momentum"),
  field("optimizer.nesterov", bool, "SGD Nesterov momentum"),
  field("optimizer.beta1", num(0, 1, false, true), "Adam β1"),
  field("optimizer.beta2", num(0, 1, false, true), "Adam β2"),
  field("optimizer.eps", num(0, undefined, true), "Adam ε"),
  field("optimizer.gradClip", num(0), "max gradient norm (0: no clipping)"),
  field("schedule.kind", oneOf("plateau", "poly", "cosine", "constant"), "learning-rate schedule"),
  field("schedule.factor", num(0, 1, true, true), "plateau: reduction factor"),
  field("schedule.patience", int(0), "plateau: validations to wait"),
  field("schedule.threshold", num(0), "plateau: improvement threshold"),
  field("schedule.thresholdMode", oneOf("rel", "abs"), "plateau: threshold kind"),
  field("schedule.cooldown", int(0), "plateau: validations after a reduction"),
  field("schedule.minLr", num(0), "plateau/cosine: learning-rate floor"),
  field("schedule.eps", num(0), "plateau: smallest reduction applied"),
  field("schedule.exponent", num(0, undefined, true), "poly: exponent"),
  field("schedule.warmupSteps", int(0), "cosine: linear warm-up steps"),
  field("epochs", int(1), "epochs"),
  field("itersPerEpoch", int(1), "optimizer steps per epoch"),
  field("valEvery", int(1), "validate every N epochs"),
  field("monitor", oneOf("dice", "loss"), "metric for best/plateau/stopping"),
  field("earlyStopping.patience", int(0), "validations to wait (0: never stop)"),
  field("seed", int(0, 2 ** 31 - 1), "random seed"),
  field("out", { kind: "string" }, "output folder"),
  field("lossReadbackEvery", int(1), "steps between loss readbacks"),
  field("checkpointEvery", int(0), "steps between mid-epoch checkpoints (0: epoch ends)"),
  field("precision", oneOf("f32", "f16"), "forward conv operands: f32, or f16 with f32 sums"),
];

/**
 * Short flags and the field each stands for (top-level fields such as `--epochs`, `--seed` and
 * `--out` need none: their dotted path is already short).
 */
export const configAliases: Readonly<Record<string, string>> = {
  lr: "optimizer.lr",
  optimizer: "optimizer.kind",
  schedule: "schedule.kind",
  "batch-size": "data.batchSize",
  patch: "data.patchSize",
  dataset: "data.dataset",
  norm: "model.norm",
};

const fieldByPath = new Map(configFields.map((f) => [f.path, f]));
const groups = new Set(
  configFields.flatMap((f) => {
    const parts = f.path.split(".");
    return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join("."));
  }),
);

/** Optimal-string-alignment distance: edits, with a swap of neighbours counting as one. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known names closest to `name` (case-insensitive), compared whole and, for a name without
 * dots, also with the last part of each dotted path (`patience` → `schedule.patience`).
 */
function suggest(name: string, candidates: readonly string[]): string[] {
  const lower = name.toLowerCase();
  let best = Infinity;
  let found: string[] = [];
  for (const c of candidates) {
    const tail = c.slice(c.lastIndexOf(".") + 1).toLowerCase();
    const d = Math.min(
      editDistance(lower, c.toLowerCase()),
      lower.includes(".") ? Infinity : editDistance(lower, tail),
    );
    if (d < best) [best, found] = [d, [c]];
    else if (d === best && !found.includes(c)) found.push(c);
  }
  if (best > Math.max(2, Math.floor(name.length / 3))) return [];
  // An alias and the field it stands for are one suggestion: keep the alias.
  const targets = new Set(found.map((c) => configAliases[c]).filter(Boolean));
  return found.filter((c) => !targets.has(c)).slice(0, 3);
}

function didYouMean(names: string[], show: (name: string) => string): string {
  if (names.length === 0) return "";
  return ` (did you mean ${names.map(show).join(" or ")}?)`;
}

function describeType(t: FieldType): string {
  switch (t.kind) {
    case "int":
      return `an integer in [${t.min}, ${t.max ?? "∞"}]`;
    case "number": {
      const lo = t.min === undefined ? "(-∞" : `${t.exclusiveMin ? "(" : "["}${t.min}`;
      const hi = t.max === undefined ? "∞)" : `${t.max}${t.exclusiveMax ? ")" : "]"}`;
      return `a number in ${lo}, ${hi}`;
    }
    case "enum":
      return `one of ${t.values.join(", ")}`;
    case "bool":
      return "true or false";
    case "string":
      return "a non-empty string";
    case "shape3":
      return "D,H,W positive integers (or one for all three)";
    case "range":
      return "LOW,HIGH numbers with LOW < HIGH";
    case "weights":
      return "a list of numbers ≥ 0";
  }
}

/** Checks a value already of the right JS type against its field's range; returns it. */
function checkRange(field: ConfigField, value: unknown, raw: unknown, source: string): unknown {
  const t = field.type;
  let ok: boolean;
  switch (t.kind) {
    case "int":
      ok = typeof value === "number" && Number.isSafeInteger(value) && value >= t.min &&
        (t.max === undefined || value <= t.max);
      break;
    case "number":
      ok = typeof value === "number" && Number.isFinite(value) &&
        (t.min === undefined || (t.exclusiveMin ? value > t.min : value >= t.min)) &&
        (t.max === undefined || (t.exclusiveMax ? value < t.max : value <= t.max));
      break;
    case "enum":
      ok = typeof value === "string" && t.values.includes(value);
      break;
    case "bool":
      ok = typeof value === "boolean";
      break;
    case "string":
      ok = typeof value === "string" && value.length > 0;
      break;
    case "shape3":
      ok = Array.isArray(value) && value.length === 3 &&
        value.every((d) => Number.isSafeInteger(d) && d > 0);
      break;
    case "range":
      ok = Array.isArray(value) && value.length === 2 &&
        value.every((d) => typeof d === "number" && Number.isFinite(d)) && value[0] < value[1];
      break;
    case "weights":
      ok = value === undefined || (Array.isArray(value) && value.length > 0 &&
        value.every((d) => typeof d === "number" && Number.isFinite(d) && d >= 0));
      break;
  }
  if (!ok) {
    throw new ConfigError(
      `${field.path} must be ${describeType(t)}, got ${JSON.stringify(raw)} (${source})`,
    );
  }
  return value;
}

/** Turns a flag's text into the field's JS value (range-checked). */
function parseFlagValue(field: ConfigField, text: string | boolean, source: string): unknown {
  const t = field.type;
  if (typeof text === "boolean") {
    if (t.kind === "bool") return text;
    throw new ConfigError(`${source} needs a value: ${field.path} must be ${describeType(t)}`);
  }
  const numbers = (s: string) => s.split(",").map((p) => (p.trim() === "" ? NaN : Number(p)));
  let value: unknown;
  switch (t.kind) {
    case "int":
    case "number":
      value = text.trim() === "" ? NaN : Number(text);
      break;
    case "bool": {
      const v = text.toLowerCase();
      value = ["true", "1", "yes", "on"].includes(v)
        ? true
        : ["false", "0", "no", "off"].includes(v)
        ? false
        : text;
      break;
    }
    case "shape3": {
      const dims = numbers(text);
      value = dims.length === 1 ? [dims[0], dims[0], dims[0]] : dims;
      break;
    }
    case "range":
    case "weights":
      value = numbers(text);
      break;
    default:
      value = text;
  }
  return checkRange(field, value, text, source);
}

type Tree = Record<string, unknown>;

function setPath(tree: Tree, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = tree;
  for (const p of parts.slice(0, -1)) node = node[p] as Tree;
  const last = parts[parts.length - 1];
  if (value === undefined) delete node[last];
  else node[last] = value;
}

function getPath(tree: Tree, path: string): unknown {
  return path.split(".").reduce<unknown>((node, p) => (node as Tree)?.[p], tree);
}

/** Merges a parsed JSON config file into `tree`, rejecting unknown keys. */
function mergeFile(tree: Tree, json: unknown, prefix: string): void {
  const where = prefix ? `"${prefix}"` : "the config file";
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(`${where} must be a JSON object, got ${JSON.stringify(json)}`);
  }
  for (const [key, value] of Object.entries(json)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const field = fieldByPath.get(path);
    if (field) {
      const v = field.type.kind === "weights" && value === null ? undefined : value;
      setPath(tree, path, checkRange(field, v, value, "in the config file"));
    } else if (groups.has(path)) {
      mergeFile(tree, value, path);
    } else {
      const siblings = [...fieldByPath.keys(), ...groups]
        .filter((p) => p.startsWith(prefix ? `${prefix}.` : ""))
        .map((p) => (prefix ? p.slice(prefix.length + 1) : p))
        .filter((p) => !p.includes("."));
      const hint = didYouMean(
        suggest(key, siblings),
        (n) => JSON.stringify(prefix ? `${prefix}.${n}` : n),
      );
      throw new ConfigError(`unknown key "${path}" in the config file${hint}`);
    }
  }
}

/** Cross-field rules that no single field's type can express. */
function validateTogether(c: TrainConfig): void {
  const levels = 2 ** (c.model.depth - 1);
  if (c.data.patchSize.some((d) => d % levels !== 0)) {
    throw new ConfigError(
      `data.patchSize [${c.data.patchSize}] must be divisible by 2^(model.depth − 1) = ${levels} ` +
        `in every dimension (model.depth is ${c.model.depth})`,
    );
  }
  const weights = c.loss.classWeights;
  if (weights && weights.length !== c.model.classes) {
    throw new ConfigError(
      `loss.classWeights has ${weights.length} values but model.classes is ${c.model.classes}`,
    );
  }
  if (c.loss.tverskyWeight + c.loss.ceWeight + c.loss.diceWeight <= 0) {
    throw new ConfigError(
      "loss.tverskyWeight, loss.ceWeight and loss.diceWeight are all 0: nothing to train on",
    );
  }
  if (c.loss.tverskyWeight > 0 && c.loss.alpha + c.loss.beta <= 0) {
    throw new ConfigError("loss.alpha + loss.beta must be > 0 for the Tversky loss");
  }
  if (c.optimizer.kind === "sgd" && c.optimizer.nesterov && c.optimizer.momentum <= 0) {
    throw new ConfigError("optimizer.nesterov needs optimizer.momentum > 0 (it is 0)");
  }
  const total = c.epochs * c.itersPerEpoch;
  if (c.schedule.kind === "cosine" && c.schedule.warmupSteps >= total) {
    throw new ConfigError(
      `schedule.warmupSteps (${c.schedule.warmupSteps}) must be less than the ${total} ` +
        `training steps (epochs × itersPerEpoch)`,
    );
  }
  if (c.schedule.minLr > c.optimizer.lr) {
    throw new ConfigError(
      `schedule.minLr (${c.schedule.minLr}) must not exceed optimizer.lr (${c.optimizer.lr})`,
    );
  }
}

/**
 * Builds the training config: `base` ({@link defaultTrainConfig}, or a resumed run's stored
 * config) ← `fileJson` (a parsed JSON config file,
 * nested like {@link TrainConfig}, any subset of fields) ← `flags` (dotted paths or
 * {@link configAliases}, values as typed on the command line; `undefined` entries are ignored).
 * Throws {@link ConfigError} for unknown keys (with a suggestion), bad values (naming the
 * field, the value and what is allowed) and inconsistent combinations.
 *
 * The caller takes its own flags (`--config`, `--json`, …) out of `flags` first.
 *
 * @example
 * const { flags } = parseDottedFlags(["--lr", "3e-4", "--model.norm", "instance"]);
 * const config = resolveConfig(JSON.parse(await Deno.readTextFile("train.json")), flags);
 */
export function resolveConfig(
  fileJson: unknown,
  flags: Record<string, string | boolean | undefined> = {},
  base: TrainConfig = defaultTrainConfig,
): TrainConfig {
  const tree = structuredClone(base) as unknown as Tree;
  if (fileJson !== undefined) mergeFile(tree, fileJson, "");
  const setBy = new Map<string, string>();
  for (const [name, text] of Object.entries(flags)) {
    if (text === undefined) continue;
    const path = configAliases[name] ?? name;
    const field = fieldByPath.get(path);
    if (!field) {
      const hint = didYouMean(
        suggest(name, [...fieldByPath.keys(), ...Object.keys(configAliases)]),
        (n) => `--${n}`,
      );
      throw new ConfigError(`unknown flag --${name}${hint}`);
    }
    const earlier = setBy.get(path);
    if (earlier !== undefined) {
      throw new ConfigError(`--${earlier} and --${name} both set ${path}`);
    }
    setBy.set(path, name);
    setPath(tree, path, parseFlagValue(field, text, `from --${name}`));
  }
  const config = tree as unknown as TrainConfig;
  validateTogether(config);
  return config;
}

/**
 * Splits a command line into flags and positionals, strictly: `--a.b value`, `--a.b=value`,
 * `--flag` (true when no value follows, or when named in `booleans`), `--no-flag` (false),
 * `-h` (help); `--` ends the flags. A flag given twice, a malformed name or an unknown
 * single-dash option throws {@link ConfigError}. Values may start with a single dash (`-1`).
 *
 * @example
 * parseDottedFlags(["--optimizer.lr", "3e-4", "--json", "run1"], { booleans: ["json"] })
 * // → { flags: { "optimizer.lr": "3e-4", json: true }, positionals: ["run1"] }
 */
export function parseDottedFlags(
  argv: readonly string[],
  { booleans = [] }: { booleans?: readonly string[] } = {},
): { flags: Record<string, string | boolean>; positionals: string[] } {
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  const put = (name: string, value: string | boolean) => {
    if (!/^[A-Za-z][\w-]*(\.[A-Za-z][\w-]*)*$/.test(name)) {
      throw new ConfigError(`malformed flag --${name}`);
    }
    if (Object.hasOwn(flags, name)) throw new ConfigError(`--${name} given twice`);
    flags[name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      put("help", true);
    } else if (arg.startsWith("--")) {
      const body = arg.slice(2);
      const eq = body.indexOf("=");
      if (eq >= 0) {
        put(body.slice(0, eq), body.slice(eq + 1));
      } else if (body.startsWith("no-") && body.length > 3) {
        put(body.slice(3), false);
      } else {
        const next = argv[i + 1];
        const takesValue = !booleans.includes(body) && next !== undefined &&
          !next.startsWith("--") && next !== "-h";
        put(body, takesValue ? next : true);
        if (takesValue) i++;
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      throw new ConfigError(`unknown option ${arg} (flags are spelled --name)`);
    } else {
      positionals.push(arg);
    }
  }
  return { flags, positionals };
}

/**
 * Checks a model config read from elsewhere (a checkpoint's metadata): every field of
 * {@link ModelConfig} present and valid, nothing else. `source` ends each message.
 */
export function validateModelConfig(value: unknown, source = "model config"): ModelConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(
      `model config must be an object, got ${JSON.stringify(value)} (${source})`,
    );
  }
  const fields = configFields.filter((f) => f.path.startsWith("model."));
  const record = value as Record<string, unknown>;
  const model: Record<string, unknown> = {};
  for (const f of fields) {
    const key = f.path.slice("model.".length);
    if (!(key in record)) throw new ConfigError(`${f.path} is missing (${source})`);
    model[key] = checkRange(f, record[key], record[key], source);
  }
  const unknown = Object.keys(record).filter((k) => !(k in model));
  if (unknown.length > 0) {
    throw new ConfigError(
      `unknown model field ${unknown.map((k) => `"${k}"`).join(", ")} (${source})`,
    );
  }
  return model as unknown as ModelConfig;
}

/** The value of one field, by dotted path (for logs and help). */
export function configValue(config: TrainConfig, path: string): unknown {
  return getPath(config as unknown as Tree, path);
}

/** Help lines for every field: flag, alias, default, allowed values. */
export function describeConfigFields(config: TrainConfig = defaultTrainConfig): string {
  const aliasOf = new Map(Object.entries(configAliases).map(([a, p]) => [p, a]));
  const rows = configFields.map((f) => {
    const alias = aliasOf.get(f.path);
    const flag = `--${f.path}${alias && alias !== f.path ? `, --${alias}` : ""}`;
    const value = configValue(config, f.path);
    const shown = value === undefined ? "unset" : Array.isArray(value) ? value.join(",") : value;
    return [flag, `${f.help} (${shown}; ${describeType(f.type)})`];
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`).join("\n");
}

/**
 * Fields a resumed run may change: how it runs, not what it computes. `epochs` extends (or
 * shortens) a run; poly and cosine schedules then span the new length. Every other field is
 * the run's identity, fixed at its first start.
 */
export const RESUME_MAY_CHANGE: readonly string[] = [
  "out",
  "data.workers",
  "lossReadbackEvery",
  "checkpointEvery",
  "epochs",
];

/**
 * The config a resumed run continues with: `stored` (what its first start resolved) with the
 * {@link RESUME_MAY_CHANGE} fields taken from `requested`. Throws {@link ConfigError} naming
 * the first other field where the two differ.
 *
 * @example
 * const config = resumedConfig(record.config, resolveConfig(file, flags, record.config));
 */
export function resumedConfig(stored: TrainConfig, requested: TrainConfig): TrainConfig {
  const result = structuredClone(stored) as unknown as Tree;
  for (const f of configFields) {
    const want = getPath(requested as unknown as Tree, f.path);
    if (RESUME_MAY_CHANGE.includes(f.path)) {
      setPath(result, f.path, want);
      continue;
    }
    const had = getPath(stored as unknown as Tree, f.path);
    if (JSON.stringify(want) !== JSON.stringify(had)) {
      // String values (the dataset) may be paths: named, never shown.
      const shown = (v: unknown) => (f.type.kind === "string" ? "" : ` ${JSON.stringify(v)}`);
      throw new ConfigError(
        `--${f.path}${shown(want)} conflicts with the run being resumed, which was started ` +
          `with ${f.path}${shown(had) || " set otherwise"} (stored in its run.json): a resumed ` +
          `run keeps its configuration; drop --${f.path}, or start a new run in another folder ` +
          `(only ${RESUME_MAY_CHANGE.filter((p) => p !== "out").join(", ")} may change)`,
      );
    }
  }
  return result as unknown as TrainConfig;
}
