/**
 * The network's config as it is configured and stored: the fields of {@link ModelConfig} with
 * their ranges (the trainer's `model.*` flags), the check of a model config read from a
 * checkpoint, and the patch sizes a config accepts.
 *
 * Two architectures: `unet3d` (src/nn/unet3d.ts; what a config without `arch` means, so every
 * older config and checkpoint is one) and `plain` (nnU-Net's PlainConvUNet, src/nn/plain_unet.ts,
 * with per-stage `strides` and `kernels` and a channel cap `maxChannels`). A unet3d config
 * never carries the plain-only fields, so its stored form is unchanged.
 */

import { INIT_KINDS } from "./init.ts";
import { ACTIVATIONS, NORM_KINDS, type UNet3DConfig } from "./unet3d.ts";
import { bool, checkRange, ConfigError, field, int, oneOf, zyxStages } from "./config_fields.ts";
import {
  type CompletePlainConfig,
  completePlainConfig,
  cumulativeStrides,
  type PlainConvUNetConfig,
  type Zyx,
} from "./plain_unet.ts";

/** The architectures, in help order; absent `arch` means the first. */
export const MODEL_ARCHS = ["unet3d", "plain"] as const;
export type ModelArch = (typeof MODEL_ARCHS)[number];

/** A UNet3D's config; `arch` is absent (or "unet3d"). */
export type UNet3DModelConfig = UNet3DConfig & { arch?: "unet3d" };

/** The network's shape: a UNet3D's or a PlainConvUNet's constructor config. */
export type ModelConfig = UNet3DModelConfig | PlainConvUNetConfig;

/** Every field of {@link ModelConfig}, as `model.<key>`, in help order. */
export const MODEL_FIELDS = [
  field("model.inChannels", int(1, 64), "input channels (1 for CT)"),
  field("model.classes", int(2, 256), "output classes, background included"),
  field("model.baseChannels", int(1, 1024), "channels at the first level"),
  field("model.depth", int(1, 8), "resolution levels (plain: stages), bottleneck included"),
  field("model.convsPerLevel", int(1, 8), "convolutions per block"),
  field("model.activation", oneOf(ACTIVATIONS), "activation"),
  field("model.norm", oneOf(NORM_KINDS), "normalisation layer"),
  field("model.init", oneOf(INIT_KINDS), "weight initialisation"),
  field("model.deepSupervision", bool, "auxiliary losses at lower decoder resolutions"),
  field("model.arch", oneOf(MODEL_ARCHS), "unet3d, or plain (nnU-Net's PlainConvUNet)"),
  field("model.strides", zyxStages([1, 2]), "plain: per-stage stride z,y,x (default 2,2,2)"),
  field("model.kernels", zyxStages([1, 3]), "plain: per-stage kernel z,y,x (default 3,3,3)"),
  field("model.maxChannels", int(1, 4096), "plain: channel cap (default 320)"),
];

/**
 * Fields added after checkpoints were first written, with the value their absence means: a
 * model config stored before a field existed still loads, as the network it described.
 */
const MODEL_FIELDS_ADDED: Readonly<Record<string, unknown>> = { deepSupervision: false };

/**
 * Fields that may stay absent: `arch` (absent: unet3d) and the plain-only fields (absent in a
 * unet3d config; in a plain one, filled by {@link completeModelConfig}).
 */
const MODEL_FIELDS_OPTIONAL: readonly string[] = ["arch", "strides", "kernels", "maxChannels"];

/** The fields only `arch: "plain"` reads. */
const PLAIN_ONLY = ["strides", "kernels", "maxChannels"] as const;

/**
 * Checks a model config read from elsewhere (a checkpoint's metadata): every field of
 * {@link ModelConfig} present and valid, nothing else; a field added later (deepSupervision)
 * may be absent and is then filled with its old meaning (false); `arch` may be absent (a
 * unet3d, as every config before it). Then {@link completeModelConfig}. `source` ends each
 * message.
 */
export function validateModelConfig(value: unknown, source = "model config"): ModelConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(
      `model config must be an object, got ${JSON.stringify(value)} (${source})`,
    );
  }
  const record = value as Record<string, unknown>;
  const model: Record<string, unknown> = {};
  for (const f of MODEL_FIELDS) {
    const key = f.path.slice("model.".length);
    if (!(key in record) && key in MODEL_FIELDS_ADDED) {
      model[key] = MODEL_FIELDS_ADDED[key];
      continue;
    }
    if (!(key in record) && MODEL_FIELDS_OPTIONAL.includes(key)) continue;
    if (!(key in record)) throw new ConfigError(`${f.path} is missing (${source})`);
    model[key] = checkRange(f, record[key], record[key], source);
  }
  const unknown = Object.keys(record).filter((k) => !(k in model));
  if (unknown.length > 0) {
    throw new ConfigError(
      `unknown model field ${unknown.map((k) => `"${k}"`).join(", ")} (${source})`,
    );
  }
  return completeModelConfig(model as unknown as ModelConfig, source);
}

/**
 * The checks across a model config's fields: a unet3d config must not carry the plain-only
 * fields (strides, kernels, maxChannels); a plain config gets its absent ones filled (strides
 * [1,1,1] then [2,2,2], kernels [3,3,3], maxChannels 320) and one stride and kernel per stage
 * (`depth` of them, stage 0's stride 1,1,1). Returns the config (a unet3d one as given).
 * Throws {@link ConfigError} naming the field and the fix.
 */
export function completeModelConfig(
  config: ModelConfig,
  source = "model config",
): UNet3DModelConfig | CompletePlainConfig {
  const arch = (config as { arch?: unknown }).arch;
  if (arch !== undefined && !(MODEL_ARCHS as readonly unknown[]).includes(arch)) {
    throw new ConfigError(
      `model.arch must be one of ${MODEL_ARCHS.join(", ")}, got ${JSON.stringify(arch)} ` +
        `(${source})`,
    );
  }
  if (config.arch === "plain") return completePlainConfig(config, source);
  const stray = PLAIN_ONLY.filter((k) =>
    (config as unknown as Record<string, unknown>)[k] !== undefined
  );
  if (stray.length > 0) {
    throw new ConfigError(
      `${stray.map((k) => `model.${k}`).join(", ")} only apply to model.arch plain, but ` +
        `model.arch is unet3d; set --model.arch plain, or drop them (${source})`,
    );
  }
  return config;
}

/**
 * The multiple each patch edge must be, along z, y, x: 2^(depth−1) on every axis for a unet3d,
 * the product of the stages' strides per axis for a plain net.
 *
 * @example
 * patchMultiple({ ...c, arch: "plain", depth: 3, strides: [[1,1,1],[1,2,2],[2,2,2]] }); // [2,4,4]
 */
export function patchMultiple(config: ModelConfig): Zyx {
  const c = completeModelConfig(config);
  if (c.arch === "plain") return cumulativeStrides(c as CompletePlainConfig).at(-1)!;
  const m = 2 ** (c.depth - 1);
  return [m, m, m];
}

/**
 * Throws {@link ConfigError} unless every edge of `patchSize` (D, H, W) is a multiple of
 * {@link patchMultiple} along its axis; the message names both and a patch that fits.
 */
export function checkPatchSize(config: ModelConfig, patchSize: readonly number[]): void {
  const m = patchMultiple(config);
  if (patchSize.every((e, i) => e % m[i] === 0)) return;
  const fit = patchSize.map((e, i) => Math.max(m[i], Math.round(e / m[i]) * m[i]));
  const by = config.arch === "plain"
    ? `${m.join(",")} (z,y,x: the product of model.strides per axis)`
    : `2^(model.depth − 1) = ${m[0]} in every dimension (model.depth is ${config.depth})`;
  throw new ConfigError(
    `data.patchSize [${patchSize}] must be divisible by ${by}; e.g. --patch ${fit.join(",")}`,
  );
}
