/**
 * The network's config as it is configured and stored: the fields of {@link ModelConfig} with
 * their ranges (the trainer's `model.*` flags), and the check of a model config read from a
 * checkpoint.
 */

import { INIT_KINDS } from "./init.ts";
import { ACTIVATIONS, NORM_KINDS, type UNet3DConfig } from "./unet3d.ts";
import { checkRange, ConfigError, field, int, oneOf } from "./config_fields.ts";

/** The network's shape (the UNet3D constructor's config). */
export type ModelConfig = UNet3DConfig;

/** Every field of {@link ModelConfig}, as `model.<key>`, in help order. */
export const MODEL_FIELDS = [
  field("model.inChannels", int(1, 64), "input channels (1 for CT)"),
  field("model.classes", int(2, 256), "output classes, background included"),
  field("model.baseChannels", int(1, 1024), "channels at the first level"),
  field("model.depth", int(1, 8), "resolution levels, bottleneck included"),
  field("model.convsPerLevel", int(1, 8), "3×3×3 convolutions per block"),
  field("model.activation", oneOf(ACTIVATIONS), "activation"),
  field("model.norm", oneOf(NORM_KINDS), "normalisation layer"),
  field("model.init", oneOf(INIT_KINDS), "weight initialisation"),
];

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
  const record = value as Record<string, unknown>;
  const model: Record<string, unknown> = {};
  for (const f of MODEL_FIELDS) {
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
