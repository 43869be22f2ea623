/**
 * `voxseg train`: trains a 3D U-Net on a dataset. With no `--data` it trains on the embedded
 * default — synthetic chest-CT phantoms, generated under data/synth on first use — with a
 * preset sized to finish in minutes even on a software adapter.
 */

import { join } from "node:path";
import {
  ConfigError,
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
import { evaluateDataset, type MeanMetrics, meanMetrics } from "../infer/evaluate.ts";
import { type LoadedModel, loadModel } from "../infer/model.ts";
import { datasetValidator } from "../infer/dataset_validator.ts";
import { initGpu } from "../gpu/mod.ts";
import { Progress } from "./progress.ts";
import { ensureSynthDataset } from "./synth.ts";
import { UsageError } from "./usage_error.ts";

const HELP = `voxseg train [--data DIR|URL] [--out DIR] [--config FILE] [--resume] [--json] [flags]

Trains a 3D U-Net on patches streamed from an OME-Zarr dataset (a folder or URL with
dataset.json) and writes checkpoints, metrics.jsonl and summary.json into --out.

With no --data: trains on the embedded synthetic chest-CT dataset (created under data/synth if
missing) with a small preset that finishes in minutes on a CPU-only machine.

  --data DIR|URL     dataset (alias of --data.dataset)
  --out DIR          run folder (default runs/<timestamp>)
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
  const command = await parseCommand(argv);
  if (command === "help") {
    console.log(HELP);
    return 0;
  }
  const { config, useSynth, resume, json } = command;
  const progress = new Progress({ json, batchSize: config.data.batchSize });
  if (useSynth) {
    const created = await ensureSynthDataset(config.data.dataset);
    if (created) progress.log(`created the synthetic dataset in ${config.data.dataset}`);
  }
  const gpu = await initGpu();
  progress.log(`adapter: ${gpu.info.description} (${gpu.info.backend})`);

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
      resume,
      validate: datasetValidator({ patchSize: config.data.patchSize, batchSize: 2 }),
      signal: controller.signal,
      onEvent: (e: TrainEvent) => report(e, config, progress),
    });
    progress.done({ ...result, lastMetrics: result.lastMetrics });
    if (result.stoppedBy === "aborted" || result.bestEpoch === null) {
      if (!json) console.log(`last validation Dice: ${formatMetrics(result.lastMetrics)}`);
      return 0;
    }
    await reportBest(result, config, progress, json);
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

/** What the command line asks for: help, or a resolved config and how to run it. */
type Command = "help" | { config: TrainConfig; useSynth: boolean; resume: boolean; json: boolean };

/**
 * Parses the flags and resolves the config: defaults (with {@link SYNTH_PRESET} when no dataset
 * is named), --config's file, then the flags; on --resume, checked against the run's stored
 * config. Bad flags, files or values are {@link UsageError}s.
 */
async function parseCommand(argv: string[]): Promise<Command> {
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
  const { config: configPath, resume, json, data, out, ...rest } = flags;
  // A resumed run continues with what its first start resolved (run.json); the flags given
  // now are checked against it, not layered on the defaults again.
  const stored = resume && typeof out === "string"
    ? (await readRunRecord(out).catch((e) => {
      throw new UsageError((e as Error).message);
    }))?.config
    : undefined;
  const useSynth = data === undefined && rest["data.dataset"] === undefined && !configPath &&
    !stored;

  let fileJson: unknown;
  if (typeof configPath === "string") {
    try {
      fileJson = JSON.parse(await Deno.readTextFile(configPath));
    } catch (e) {
      throw new UsageError(`cannot read --config ${configPath}: ${(e as Error).message}`);
    }
  }
  const overrides: Record<string, string | boolean | undefined> = {
    ...(useSynth ? SYNTH_PRESET : {}),
    ...rest,
    ...(typeof data === "string" ? { "data.dataset": data } : {}),
    out: typeof out === "string"
      ? out
      : join("runs", new Date().toISOString().replace(/[:.]/g, "-")),
  };
  let config: TrainConfig;
  try {
    config = resolveConfig(fileJson, overrides, stored);
    if (stored) config = resumedConfig(stored, config);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
  return { config, useSynth, resume: Boolean(resume), json: Boolean(json) };
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
