/** What a resumed run may change of the config it was started with. */

import { ConfigError } from "../../nn/config_fields.ts";
import { configFields, getPath, setPath, type Tree } from "./fields.ts";
import type { TrainConfig } from "./types.ts";

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
