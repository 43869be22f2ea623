/**
 * `voxseg train`: trains a 3D U-Net on a dataset. With no `--data` it trains on the embedded
 * default — synthetic chest-CT phantoms, generated under data/synth on first use — with a
 * preset sized to finish in minutes even on a software adapter.
 */

import { join } from "node:path";
import {
  ConfigError,
  defaultTrainConfig,
  parseDottedFlags,
  resolveConfig,
  resumedConfig,
  type TrainConfig,
} from "../train/config.ts";
import {
  readRunRecord,
  RUN_FILES,
  train,
  type TrainEvent,
  type TrainResult,
} from "../train/trainer.ts";
import { SUMMARY_FILE, writeSummary } from "../train/metrics_log.ts";
import { readDataset } from "../data/dataset.ts";
import { datasetOverrides } from "../train/dataset_fit.ts";
import type { Normalization } from "../data/normalize.ts";
import type { RunFold } from "../train/trainer.ts";
import { formatPlanTable, planOverrides } from "../train/plan/planner.ts";
import { parseBytes } from "../server/middleware/body_limit/body_limit.ts";
import { choiceFlag, durationFlag, numberFlag } from "./args.ts";
import { PLAN_NETWORKS } from "../train/plan/types.ts";
import { allFolds, foldFor, planForTraining } from "./planning.ts";
import { DEFAULT_FOLDS } from "../data/folds.ts";
import { choosePostprocessingForFolds, type TrainedFold } from "../infer/cross_validation.ts";
import { evaluateDataset, type MeanMetrics, meanMetrics } from "../infer/evaluate.ts";
import { type LoadedModel, loadModel } from "../infer/model.ts";
import { datasetValidator } from "../infer/dataset_validator.ts";
import { patchValidator } from "../infer/patch_validator.ts";
import { VALIDATION_PATCHES } from "../train/plan/run_plan.ts";
import { initGpu } from "../gpu/mod.ts";
import { Progress } from "./progress.ts";
import { ensureSynthDataset } from "./synth.ts";
import { fitDefaultRun } from "./default_run.ts";
import { UsageError } from "./usage_error.ts";

const HELP = `voxseg train [--data DIR|URL] [--out DIR] [--time-budget 15m] [--config FILE] [flags]

Trains a 3D U-Net on patches streamed from an OME-Zarr dataset (a folder or URL with
dataset.json) and writes checkpoints, metrics.jsonl and summary.json into --out.

With no --data: trains on the embedded synthetic chest-CT dataset (created under data/synth if
missing) with a small preset that finishes in minutes on a CPU-only machine.

On a dataset of your own, what can be read from it is: the classes, and a plan (voxseg plan)
of spacing, normalisation, network, patch and batch — the plan given with --plan, else
plans.json beside the dataset, else one made now into --out. Cases are resampled to the
plan's spacing first when they need it. A dataset of several channels (CASE_0000 …
CASE_000N) is planned channel by channel, each normalised by its own scheme. Layers, each overriding the one before: defaults,
the dataset, the plan, --config, flags. A dataset without a labelled val case validates on
its training cases (with a warning).

  --data DIR|URL     dataset (alias of --data.dataset)
  --out DIR          run folder (default runs/<timestamp>)
  --plan FILE|none   the plan to use; none: the defaults and the flags only
  --time-budget D    size the network and the steps from a measured timing of this adapter
                     so that planning, preprocessing and training end within D (15m, 1h…);
                     the final test evaluation comes after it
  --gpu-memory B     GPU memory the plan may use (default 4GiB)
  --network unet3d|plain   the network of the plan: the isotropic U-Net (default: the tuned
                     3×3×3 kernels, fast on every adapter) or nnU-Net's PlainConvUNet with the
                     planned per-axis strides and kernels, instance norm, leaky ReLU; a time
                     budget sizes either
  --fold K|all       train cross-validation fold K (splits.json beside the plan, else the
                     dataset's 5 folds; test cases stay held out); each fold is an independent
                     run. all: every fold into --out/fold_K, then the post-processing (largest
                     connected component) chosen on their validation predictions is stored in
                     each fold's checkpoint; voxseg infer --model a,b,… ensembles them
  --config FILE      JSON config; flags override it
  --resume           continue the run in --out from its newest complete checkpoint, with
                     the config stored in its run.json (flags may change only --epochs,
                     --data.workers, --lossReadbackEvery, --checkpointEvery)
  --json             machine-readable progress lines
  --<field> VALUE    any config field in dotted form, e.g. --optimizer.lr 3e-4,
                     --model.norm instance, --data.patchSize 32,64,64, --lr, --epochs, --patch`;

/** The embedded-default run: a small U-Net on the synthetic phantoms. */
export const SYNTH_PRESET = {
  "data.dataset": "data/synth",
  "model.baseChannels": "8",
  "model.depth": "3",
  "data.patchSize": "32,64,64",
  "data.batchSize": "2",
  // Half the patches centred on a foreground class (lung or infection, chosen uniformly):
  // infection is ~2 % of a case, so uniform patches would rarely teach it.
  "data.foregroundFraction": "0.5",
  epochs: "18",
  itersPerEpoch: "40",
  "optimizer.lr": "0.003",
  // nnU-Net's polynomial decay: a fixed budget that ends at a small learning rate, so the last
  // epochs settle instead of jumping between validations.
  "schedule.kind": "poly",
  "schedule.exponent": "0.9",
} as const;

export async function main(argv: string[]): Promise<number> {
  // A time budget counts from here: planning, preprocessing and compilation are in it.
  const startedAt = performance.now(), startedWall = Date.now();
  const command = await parseCommand(argv, startedAt);
  if (command === "help") {
    console.log(HELP);
    return 0;
  }
  const { useSynth, json } = command;
  let config = command.config;
  const progress = new Progress({ json, batchSize: config.data.batchSize });
  if (useSynth) {
    const created = await ensureSynthDataset(config.data.dataset);
    if (created) progress.log(`created the synthetic dataset in ${config.data.dataset}`);
  }
  const gpu = await initGpu();
  progress.log(`adapter: ${gpu.info.description} (${gpu.info.backend})`);
  if (command.fitDefault) {
    const dataset = await readDataset(config.data.dataset);
    config = (await fitDefaultRun(config, dataset, { startedAt, log: (l) => progress.log(l) }))
      .config;
  }
  const deadline = command.budgetSeconds ? startedWall + command.budgetSeconds * 1000 : undefined;
  if (!command.folds) return await runTraining(command, config, progress, deadline);
  const share = (k: number) =>
    command.budgetSeconds
      ? startedWall + (command.budgetSeconds * 1000 * (k + 1)) / command.folds!.length
      : undefined;
  // --fold all: the folds one after another, each in its own folder, then the post-processing
  // chosen on their validation predictions.
  const trained: TrainedFold[] = [];
  for (const fold of command.folds) {
    const out = join(config.out, `fold_${fold.index}`);
    progress.log(`fold ${fold.index} of ${command.folds.length} → ${out}`);
    const code = await runTraining(
      { ...command, fold },
      { ...config, out },
      progress,
      share(fold.index),
    );
    if (code !== 0) return code;
    trained.push({ checkpoint: join(out, RUN_FILES.best), splits: fold.splits });
  }
  const choice = await choosePostprocessingForFolds(
    await readDataset(config.data.dataset),
    trained,
    (k, id) => progress.log(`cross-validation: fold ${k} predicts ${id}`),
  );
  progress.log(
    `post-processing (largest component): foreground ${choice.foregroundLcc ? "yes" : "no"}, ` +
      `classes [${choice.perClassLcc.join(", ")}]; mean foreground Dice ` +
      `${choice.meanDiceBefore.toFixed(3)} → ${choice.meanDiceAfter.toFixed(3)}; written to ` +
      `every fold's ${RUN_FILES.best} (voxseg infer --model ${
        command.folds.map((f) => `fold_${f.index}/${RUN_FILES.best}`).join(",")
      } ensembles them)`,
  );
  return 0;
}

/** One training run (a whole run, or one fold), with its report. */
async function runTraining(
  command: Exclude<Command, "help">,
  config: TrainConfig,
  progress: Progress,
  deadline: number | undefined,
): Promise<number> {
  const controller = new AbortController();
  const onSignal = () => {
    progress.log("stopping after the current step (Ctrl-C again to force)…");
    controller.abort();
    Deno.removeSignalListener("SIGINT", onSignal);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const result = await train({
      config,
      resume: command.resume,
      // A planned run validates as nnU-Net does, on a fixed set of patches (whole volumes come
      // in the final evaluation); the embedded default on whole validation volumes.
      validate: command.normalisation
        ? patchValidator({ patchSize: config.data.patchSize, patches: VALIDATION_PATCHES })
        : datasetValidator({ patchSize: config.data.patchSize, batchSize: 2 }),
      signal: controller.signal,
      onEvent: (e: TrainEvent) => report(e, config, progress),
      ...(command.fold ? { fold: command.fold } : {}),
      ...(command.normalisation ? { normalisation: command.normalisation } : {}),
      ...(command.channelNormalisations
        ? { channelNormalisations: command.channelNormalisations }
        : {}),
      ...(deadline ? { deadline } : {}),
    });
    progress.done({ ...result, lastMetrics: result.lastMetrics });
    if (result.stoppedBy === "aborted" || result.bestEpoch === null) {
      if (!command.json) console.log(`last validation Dice: ${formatMetrics(result.lastMetrics)}`);
      return 0;
    }
    await reportBest(result, config, progress, command.json);
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

/** What the command line asks for: help, or a resolved config and how to run it. */
type Command = "help" | {
  config: TrainConfig;
  useSynth: boolean;
  resume: boolean;
  json: boolean;
  /** The plan's exact normalisation (run.json keeps it on resume). */
  normalisation?: Normalization;
  /** A multi-channel plan's exact normalisation of each channel. */
  channelNormalisations?: Normalization[];
  fold?: RunFold;
  /** `--fold all`: every fold, one after another. */
  folds?: RunFold[];
  budgetSeconds?: number;
  /** The embedded default run, sized to end within 15 minutes (src/cli/default_run.ts). */
  fitDefault?: boolean;
};

/** The train command's own flags, taken out before the rest reach the config. */
const OWN_FLAGS = [
  "config",
  "resume",
  "json",
  "data",
  "out",
  "plan",
  "time-budget",
  "gpu-memory",
  "fold",
  "network",
];

/**
 * A planned run trains on the cases it preprocessed (its run.json names that dataset), while
 * the user resumes it with the `--data` they started it with: when the stored dataset was
 * preprocessed from the one named now, the resumed run keeps the stored one.
 */
async function keepPreprocessedDataset(
  stored: TrainConfig,
  overrides: Record<string, string | boolean | undefined>,
): Promise<void> {
  const given = overrides["data.dataset"];
  if (typeof given !== "string" || given === stored.data.dataset) return;
  const [trained, named] = await Promise.all([
    readDataset(stored.data.dataset).catch(() => undefined),
    readDataset(given).catch(() => undefined),
  ]);
  const from = (trained?.source as { preprocessedFrom?: unknown } | undefined)?.preprocessedFrom;
  if (named && from === named.name) overrides["data.dataset"] = stored.data.dataset;
}

/**
 * Parses the flags and resolves the config: defaults (with {@link SYNTH_PRESET} when no dataset
 * is named), what the dataset says, the plan, --config's file, then the flags; on --resume,
 * checked against the run's stored config. Bad flags, files or values are {@link UsageError}s.
 */
async function parseCommand(argv: string[], startedAt: number): Promise<Command> {
  let parsed;
  try {
    parsed = parseDottedFlags(argv, { booleans: ["resume", "json", "help"] });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${HELP}`);
  }
  const { flags, positionals } = parsed;
  if (flags.help) return "help";
  if (positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP}`);
  }
  const own = Object.fromEntries(OWN_FLAGS.map((k) => [k, flags[k]]));
  const rest = Object.fromEntries(Object.entries(flags).filter(([k]) => !OWN_FLAGS.includes(k)));
  const { resume, json, out } = own;
  // A resumed run continues with what its first start resolved (run.json); the flags given
  // now are checked against it, not layered on the defaults again.
  const stored = resume && typeof out === "string"
    ? (await readRunRecord(out).catch((e) => {
      throw new UsageError((e as Error).message);
    }))?.config
    : undefined;
  const budgetSeconds = durationFlag(own["time-budget"], "time-budget");
  const useSynth = own.data === undefined && rest["data.dataset"] === undefined &&
    rest.dataset === undefined && !own.config && !stored;
  const fileJson = await readConfigFile(own.config);
  const overrides: Record<string, string | boolean | undefined> = {
    ...(useSynth ? SYNTH_PRESET : {}),
    ...rest,
    ...(typeof own.data === "string" ? { "data.dataset": own.data } : {}),
    out: typeof out === "string"
      ? out
      : join("runs", new Date().toISOString().replace(/[:.]/g, "-")),
  };
  if (stored) {
    await keepPreprocessedDataset(stored, overrides);
    return {
      config: configError(() => resumedConfig(stored, resolveConfig(fileJson, overrides, stored))),
      useSynth,
      resume: true,
      json: Boolean(json),
    };
  }
  // The embedded default keeps its preset unless a plan or a budget is asked for.
  const planned = useSynth && own.plan === undefined && budgetSeconds === undefined
    ? undefined
    : await plannedLayers(own, fileJson, overrides, {
      startedAt,
      // --fold all shares the budget between the folds: each is planned for its part.
      budgetSeconds: budgetSeconds && own.fold === "all"
        ? budgetSeconds / DEFAULT_FOLDS
        : budgetSeconds,
      json: Boolean(json),
    });
  const config = configError(() => resolveConfig(fileJson, overrides, planned?.base));
  if (planned?.dataset) config.data.dataset = planned.dataset;
  const folded = own.fold === undefined ? undefined : await readDataset(config.data.dataset);
  const folds = folded && own.fold === "all" ? await allFolds(folded, planned?.planDir) : undefined;
  const fold = folded && !folds
    ? await foldFor(
      folded,
      planned?.planDir,
      numberFlag(own.fold, "fold", 0, { integer: true, min: 0 }),
    )
    : undefined;
  return {
    config,
    useSynth,
    resume: Boolean(resume),
    json: Boolean(json),
    ...(planned?.normalisation ? { normalisation: planned.normalisation } : {}),
    ...(planned?.channelNormalisations
      ? { channelNormalisations: planned.channelNormalisations }
      : {}),
    ...(fold ? { fold } : {}),
    ...(folds ? { folds } : {}),
    ...(budgetSeconds ? { budgetSeconds } : {}),
    // The embedded default unless the user set its length: --epochs, or a whole --config.
    ...(useSynth && !planned && rest.epochs === undefined ? { fitDefault: true } : {}),
  };
}

/**
 * The layers below --config and the flags for a user's dataset: the defaults, what the dataset
 * says (its classes) and, unless `--plan none`, the plan (see planForTraining), with the
 * dataset to train on and the plan's exact normalisation.
 */
async function plannedLayers(
  own: Record<string, unknown>,
  fileJson: unknown,
  overrides: Record<string, unknown>,
  o: { startedAt: number; budgetSeconds?: number; json: boolean },
): Promise<{
  base: TrainConfig;
  dataset?: string;
  normalisation?: Normalization;
  channelNormalisations?: Normalization[];
  planDir?: string;
}> {
  const path = datasetPathOf(fileJson, overrides);
  if (path === defaultTrainConfig.data.dataset) await ensureSynthDataset(path);
  const dataset = await readDataset(path).catch((e) => {
    throw new UsageError(`cannot read the dataset ${path}: ${(e as Error).message}`);
  });
  const fromDataset = datasetOverrides(dataset);
  if (own.plan === "none") {
    if (o.budgetSeconds) throw new UsageError("--time-budget needs a plan: drop --plan none");
    return { base: configError(() => resolveConfig(undefined, fromDataset)) };
  }
  const gpuMemory = own["gpu-memory"] === undefined
    ? undefined
    : parseBytes(String(own["gpu-memory"]));
  if (gpuMemory === null) {
    throw new UsageError(`--gpu-memory must be a size such as 4GiB, got "${own["gpu-memory"]}"`);
  }
  const log = (line: string) => (o.json ? console.error(line) : console.log(line));
  const planned = await planForTraining(dataset, {
    planPath: typeof own.plan === "string" ? own.plan : undefined,
    out: String(overrides.out),
    timeBudgetSeconds: o.budgetSeconds,
    startedAt: o.startedAt,
    gpuMemoryBytes: gpuMemory,
    ...(own.network === undefined
      ? {}
      : { network: choiceFlag(own.network, "network", PLAN_NETWORKS, "unet3d") }),
    log,
  });
  if (!o.json) console.log(formatPlanTable(planned.plan));
  const base = configError(() =>
    resolveConfig(undefined, { ...fromDataset, ...planOverrides(planned.plan) })
  );
  return {
    base,
    dataset: planned.dataset,
    normalisation: planned.normalisation,
    ...(planned.channelNormalisations
      ? { channelNormalisations: planned.channelNormalisations }
      : {}),
    planDir: planned.planDir,
  };
}

/** Runs `fn`, turning a config error into a usage error. */
function configError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
}

async function readConfigFile(path: unknown): Promise<unknown> {
  if (typeof path !== "string") return undefined;
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`cannot read --config ${path}: ${(e as Error).message}`);
  }
}

/** Where the dataset is, by the layers' order: a flag, else --config's file, else the default. */
function datasetPathOf(fileJson: unknown, flags: Record<string, unknown>): string {
  const fromFlag = flags["data.dataset"] ?? flags.dataset;
  if (typeof fromFlag === "string") return fromFlag;
  const fromFile = (fileJson as { data?: { dataset?: unknown } } | undefined)?.data?.dataset;
  return typeof fromFile === "string" ? fromFile : defaultTrainConfig.data.dataset;
}

/**
 * Reports the best checkpoint: its validation Dice and, when the dataset has labelled test
 * cases, its held-out test figures (also added to summary.json).
 */
async function reportBest(
  result: TrainResult,
  config: TrainConfig,
  progress: Progress,
  json: boolean,
): Promise<void> {
  const bestPath = join(result.out, RUN_FILES.best);
  const loaded = await loadModel(bestPath);
  try {
    const bestDice = loaded.meta.training.metrics;
    const test = await testSplitDice(loaded, config, progress);
    if (test) {
      // The held-out figures go into summary.json beside the training summary.
      const summaryPath = join(result.out, SUMMARY_FILE);
      const summary = JSON.parse(await Deno.readTextFile(summaryPath));
      await writeSummary(summaryPath, { ...summary, bestMetrics: bestDice, test });
    }
    if (json) {
      console.log(
        JSON.stringify({ type: "result", best: bestPath, bestMetrics: bestDice, test }),
      );
    } else {
      console.log(`best checkpoint: ${bestPath} (epoch ${result.bestEpoch})`);
      console.log(`validation Dice (best epoch): ${formatMetrics(bestDice)}`);
      if (test) {
        const parts = Object.entries(test.mean).map(([k, m]) => `${k} ${m.dice.toFixed(3)}`);
        console.log(`test Dice (${test.cases} held-out cases): ${parts.join(", ")}`);
      }
    }
  } finally {
    loaded.dispose();
  }
}

function formatMetrics(metrics: Record<string, number | null>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k} ${v !== null && Number.isFinite(v) ? v.toFixed(3) : "n/a"}`)
    .join(", ");
}

/**
 * Dice, HD95 and the rest for the best checkpoint on the dataset's labelled test cases, which
 * neither training nor model selection saw; undefined when the dataset has none.
 */
async function testSplitDice(
  loaded: LoadedModel,
  config: TrainConfig,
  progress: Progress,
): Promise<{ cases: number; mean: MeanMetrics } | undefined> {
  const dataset = await readDataset(config.data.dataset);
  if (!dataset.cases.some((c) => c.split === "test" && c.hasLabel)) return undefined;
  const results = [];
  for await (const r of evaluateDataset(loaded, dataset, { split: "test" })) results.push(r);
  progress.log(`evaluated the best checkpoint on ${results.length} held-out test cases`);
  return { cases: results.length, mean: meanMetrics(results) };
}

function report(e: TrainEvent, config: TrainConfig, progress: Progress): void {
  switch (e.type) {
    case "start":
      progress.log(
        `training ${e.params.toLocaleString("en")} parameters, ${config.epochs} epochs × ` +
          `${config.itersPerEpoch} steps, patch ${config.data.patchSize.join("×")}, batch ` +
          `${config.data.batchSize}` +
          (e.resumedFrom ? `, resumed after epoch ${e.resumedFrom}` : ""),
      );
      break;
    case "step":
      progress.update({
        phase: "train",
        epoch: e.epoch,
        epochs: config.epochs,
        step: e.stepInEpoch,
        total: config.itersPerEpoch,
        loss: e.loss,
        lr: e.lr,
        patchesPerSec: e.patchesPerSec,
      });
      break;
    case "skipped":
      progress.log(
        `step ${e.step} skipped: ${e.reason}; learning rate now ${e.lr.toExponential(2)}`,
      );
      break;
    case "validation":
      progress.log(
        `epoch ${e.epoch} validation: ${formatMetrics(e.metrics)}${e.best ? " (best)" : ""}`,
      );
      break;
    case "checkpoint":
      break;
    case "notice":
      progress.log(e.message);
      break;
    case "stop":
      progress.log(`stopped: ${e.reason}`);
      break;
  }
}
