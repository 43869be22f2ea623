/**
 * The training configuration: one typed object with defaults, overridden by a JSON file, then by
 * command-line flags. Every field has a dotted flag (`--optimizer.lr 3e-4`, `--model.norm
 * instance`, `--data.patchSize 32,64,64`); the common ones also have short aliases (`--lr`,
 * `--epochs`, `--batch-size`, `--patch`, …). Fields are described once, in {@link configFields},
 * which drives parsing, validation, "did you mean" suggestions and the help text alike.
 */

export { ConfigError } from "../nn/config_fields.ts";
export type { ConfigField, FieldType } from "../nn/config_fields.ts";
export type { ModelConfig } from "../nn/model_config.ts";
export * from "./config/types.ts";
export { configAliases, configFields } from "./config/fields.ts";
export { configValue, describeConfigFields, resolveConfig } from "./config/resolve.ts";
export { parseDottedFlags } from "./config/flags.ts";
export { RESUME_MAY_CHANGE, resumedConfig } from "./config/resume.ts";
