/**
 * Cross-validation folds, as nnU-Net runs them: the dataset's training and validation cases
 * (test cases stay held out) split into k folds; fold i validates on its part and trains on the
 * rest. The split is a pure function of the case ids and a seed, so fold runs on different
 * machines agree without sharing anything but the dataset; `splits.json` records it beside the
 * plan, where a user may also edit it.
 *
 * ```json
 * { "format": "voxseg-splits", "version": 1, "seed": 0,
 *   "folds": [{ "train": ["a", "b", …], "val": ["c", …] }, …] }
 * ```
 */

import { join } from "node:path";
import { writeFileAtomic } from "../base/atomic.ts";
import { Random } from "../base/random.ts";
import type { Dataset, Split } from "./dataset.ts";

export const SPLITS_FILE = "splits.json";
/** Folds by default, as nnU-Net. */
export const DEFAULT_FOLDS = 5;

/** One fold: the case ids it trains and validates on. */
export interface Fold {
  train: string[];
  val: string[];
}

export interface Splits {
  format: "voxseg-splits";
  version: 1;
  seed: number;
  folds: Fold[];
}

/**
 * k folds over the dataset's train and val cases: ids sorted, shuffled with `seed`, dealt into
 * k parts of sizes differing by at most one; fold i validates on part i. Throws when there are
 * fewer cases than folds.
 */
export function kFoldSplits(
  dataset: Pick<Dataset, "name" | "cases">,
  k = DEFAULT_FOLDS,
  seed = 0,
): Splits {
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`folds must be an integer ≥ 2, got ${k}`);
  const ids = dataset.cases.filter((c) => c.split !== "test").map((c) => c.id).sort();
  if (ids.length < k) {
    throw new RangeError(
      `dataset "${dataset.name}" has ${ids.length} train/val case(s), fewer than ${k} folds; ` +
        "use fewer folds or train without --fold",
    );
  }
  const rng = new Random(seed);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  const parts: string[][] = Array.from({ length: k }, () => []);
  ids.forEach((id, i) => parts[i % k].push(id));
  const folds = parts.map((val, i) => ({
    train: parts.filter((_, j) => j !== i).flat().sort(),
    val: [...val].sort(),
  }));
  return { format: "voxseg-splits", version: 1, seed, folds };
}

/**
 * The split of each case in fold `fold`: its train and val ids as given, every other case
 * "test" (held out from this fold's training and model choice). Throws when the fold does not
 * exist or names a case the dataset lacks.
 */
export function foldSplits(
  dataset: Pick<Dataset, "name" | "cases">,
  splits: Splits,
  fold: number,
): Record<string, Split> {
  const f = splits.folds[fold];
  if (!Number.isInteger(fold) || !f) {
    throw new RangeError(
      `fold ${fold} does not exist: the splits have folds 0…${splits.folds.length - 1}`,
    );
  }
  const known = new Set(dataset.cases.map((c) => c.id));
  const out: Record<string, Split> = {};
  for (const c of dataset.cases) out[c.id] = "test";
  for (const [split, ids] of [["train", f.train], ["val", f.val]] as const) {
    for (const id of ids) {
      if (!known.has(id)) {
        throw new Error(`fold ${fold} names case "${id}", which dataset "${dataset.name}" lacks`);
      }
      out[id] = split;
    }
  }
  return out;
}

/** The dataset with each case's split replaced by `splits` (ids not named keep theirs). */
export function withSplits<D extends Pick<Dataset, "cases">>(
  dataset: D,
  splits: Record<string, Split>,
): D {
  return {
    ...dataset,
    cases: dataset.cases.map((c) => ({ ...c, split: splits[c.id] ?? c.split })),
  };
}

/** Writes `dir/splits.json` atomically; returns its path. */
export async function writeSplits(dir: string, splits: Splits): Promise<string> {
  const path = join(dir, SPLITS_FILE);
  await writeFileAtomic(path, JSON.stringify(splits, null, 2) + "\n");
  return path;
}

/** Reads and checks a splits file; errors name the bad field. */
export async function readSplits(path: string): Promise<Splits> {
  const bad = (why: string): never => {
    throw new Error(`${SPLITS_FILE} is invalid: ${why}`);
  };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw e;
    return bad("not JSON");
  }
  if (json?.format !== "voxseg-splits" || json.version !== 1) bad("not a voxseg splits file");
  if (!Array.isArray(json.folds) || json.folds.length < 1) bad("folds must be a non-empty list");
  const ids = (v: unknown, where: string) => {
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
      bad(`${where} must be a list of case ids`);
    }
    return v as string[];
  };
  const folds = (json.folds as unknown[]).map((f, i) => {
    const o = f as Record<string, unknown>;
    const train = ids(o?.train, `folds[${i}].train`), val = ids(o?.val, `folds[${i}].val`);
    const overlap = train.find((id) => val.includes(id));
    if (overlap) bad(`folds[${i}] has case "${overlap}" in both train and val`);
    return { train, val };
  });
  return {
    format: "voxseg-splits",
    version: 1,
    seed: typeof json.seed === "number" ? json.seed : 0,
    folds,
  };
}
