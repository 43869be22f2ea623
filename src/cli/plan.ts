/**
 * `voxseg plan`: fingerprints a dataset and writes the training plan (`plans.json`) and the
 * cross-validation folds (`splits.json`), printing each choice and why; with `--preprocess`,
 * also the preprocessed cases.
 */

import { join } from "node:path";
import { readDataset } from "../data/dataset.ts";
import { parseBytes } from "../server/middleware/body_limit/body_limit.ts";
import { formatPlanTable, type PlanOptions } from "../train/plan/planner.ts";
import { writePlan } from "../train/plan/plan_file.ts";
import { planDataset, preprocessingReason } from "../train/plan/run_plan.ts";
import { NORMALISATION_SCHEMES, PLAN_NETWORKS } from "../train/plan/types.ts";
import { choiceFlag, durationFlag, numberFlag, parseNamedFlags, shapeFlag } from "./args.ts";
import { adapterLimits, PREPROCESSED_DIR, preprocessFor, writeFolds } from "./planning.ts";
import { UsageError } from "./usage_error.ts";

const HELP = `voxseg plan --data DIR|URL [--out DIR] [--preprocess] [--time-budget 15m] [flags]

Reads a dataset's cases (shapes, spacings, intensities, classes) and plans its training as
nnU-Net does: target spacing, intensity normalisation (CT in Hounsfield units, CT stored as
0..255, or another modality, decided from the intensities; on a dataset of several channels,
each channel by its own scheme: named in channel_names, CT is windowed and any other name
z-scored per case, unnamed ones decided from their intensities), network depth and width,
patch and batch sized to the GPU memory, and, with a time budget, the network and the run's
length from a measured timing of this adapter. Writes OUT/plans.json and OUT/splits.json (5 cross-validation folds
of the train and val cases). voxseg train finds plans.json beside its dataset.

  --data DIR|URL        the dataset (a folder or URL with dataset.json)
  --out DIR             where the plan goes (default: the dataset's folder)
  --preprocess          also write the preprocessed cases to OUT/${PREPROCESSED_DIR}
  --time-budget D       size the run so that training ends within D (e.g. 15m, 1h)
  --gpu-memory BYTES    GPU memory for training (default 4GiB; WebGPU does not report it)
  --target-spacing Z,Y,X   target spacing in mm
  --patch D,H,W  --batch N  --base N  --depth N  --max-channels N
  --normalisation ${NORMALISATION_SCHEMES.join("|")}
                        (several channels: a CT scheme applies to the CT channels,
                        zscore-per-case to all)
  --folds K             cross-validation folds in splits.json (default 5)
  --network unet3d|plain   train the isotropic U-Net (default) or nnU-Net's PlainConvUNet with
                        the planned per-axis strides and kernels (a time budget sizes either)
  --json                print the plan as JSON`;

const FLAGS = {
  data: { type: "string" },
  out: { type: "string" },
  preprocess: { type: "boolean" },
  "time-budget": { type: "string" },
  "gpu-memory": { type: "string" },
  "target-spacing": { type: "string" },
  patch: { type: "string" },
  batch: { type: "string" },
  base: { type: "string" },
  depth: { type: "string" },
  "max-channels": { type: "string" },
  normalisation: { type: "string" },
  folds: { type: "string" },
  network: { type: "string" },
  json: { type: "boolean" },
} as const;

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["data"]);
  const dataPath = String(v.data);
  const dataset = await readDataset(dataPath).catch((e) => {
    throw new UsageError(`cannot read the dataset ${dataPath}: ${(e as Error).message}`);
  });
  const out = typeof v.out === "string" ? v.out : localFolder(dataset.root);
  const log = (line: string) => (v.json ? console.error(line) : console.log(line));
  const plan = await planDataset(dataset, {
    ...(await adapterLimits()),
    ...planOptions(v),
    timeBudgetSeconds: durationFlag(v["time-budget"], "time-budget"),
    log,
  });
  await writePlan(out, plan);
  const folds = numberFlag(v.folds, "folds", 5, { integer: true, min: 2 });
  const wroteFolds = await writeFolds(dataset, out, folds);
  if (v.json) console.log(JSON.stringify(plan));
  else console.log(formatPlanTable(plan));
  log(`wrote ${join(out, "plans.json")}${wroteFolds ? ` and splits.json (${folds} folds)` : ""}`);
  if (v.preprocess) {
    const reason = preprocessingReason(plan, dataset);
    if (!reason) log("preprocessing: not needed (every case is at the plan's spacing, in HU)");
    else {
      log(`preprocessing: ${reason}`);
      await preprocessFor(plan, dataset, join(out, PREPROCESSED_DIR), log);
    }
  }
  return 0;
}

/** The planner choices fixed by flags. */
function planOptions(v: Record<string, unknown>): PlanOptions {
  const o: PlanOptions = {};
  if (v["gpu-memory"] !== undefined) {
    const bytes = parseBytes(String(v["gpu-memory"]));
    if (bytes === null) {
      throw new UsageError(`--gpu-memory must be a size such as 4GiB, got "${v["gpu-memory"]}"`);
    }
    o.gpuMemoryBytes = bytes;
  }
  if (v["target-spacing"] !== undefined) {
    const s = String(v["target-spacing"]).split(",").map(Number);
    if (s.length !== 3 || s.some((x) => !(x > 0))) {
      throw new UsageError(`--target-spacing must be Z,Y,X in mm, got "${v["target-spacing"]}"`);
    }
    o.targetSpacingMm = s as [number, number, number];
  }
  if (v.patch !== undefined) o.patchSize = shapeFlag(v.patch, "patch", [64, 64, 64]);
  const int = (name: string, min: number) =>
    v[name] === undefined ? undefined : numberFlag(v[name], name, min, { integer: true, min });
  o.batchSize = int("batch", 1);
  o.baseChannels = int("base", 1);
  o.depth = int("depth", 1);
  o.maxChannels = int("max-channels", 1);
  if (v.network !== undefined) {
    o.network = choiceFlag(v.network, "network", PLAN_NETWORKS, "unet3d");
  }
  if (v.normalisation !== undefined) {
    o.normalisation = choiceFlag(
      v.normalisation,
      "normalisation",
      NORMALISATION_SCHEMES,
      "ct-window",
    );
  }
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as PlanOptions;
}

/** The dataset's folder when it is local; a URL dataset needs --out. */
function localFolder(root: string): string {
  if (/^https?:\/\//.test(root)) {
    throw new UsageError("the dataset is a URL: give --out DIR for the plan");
  }
  return root;
}
