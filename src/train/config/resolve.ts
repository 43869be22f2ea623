/**
 * Resolving the training config: defaults ← a JSON config file ← command-line flags, each value
 * checked against its field, then the rules that tie fields together; and the help text.
 */

import { checkRange, ConfigError, type ConfigField, describeType } from "../../nn/config_fields.ts";
import { checkPatchSize, completeModelConfig } from "../../nn/model_config.ts";
import {
  configAliases,
  configFields,
  fieldByPath,
  getPath,
  groups,
  setPath,
  type Tree,
} from "./fields.ts";
import { didYouMean, suggest } from "./suggest.ts";
import { defaultTrainConfig, type TrainConfig } from "./types.ts";

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
  c.model = completeModelConfig(c.model);
  checkPatchSize(c.model, c.data.patchSize);
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
