/**
 * `voxseg train`: trains a 3D U-Net on a dataset. With no `--data` it trains on the embedded
 * default — synthetic chest-CT phantoms, generated under data/synth on first use — with a
 * preset sized to finish in minutes even on a software adapter.
 */

import { join } from "node:path";
import { ConfigError, parseDottedFlags, resolveConfig, type TrainConfig } from "../train/config.ts";
import { train, type TrainEvent } from "../train/trainer.ts";
import { datasetValidator } from "../infer/validate.ts";
import { initGpu } from "../gpu/mod.ts";
import { Progress } from "./progress.ts";
import { ensureSynthDataset } from "./synth.ts";
import { UsageError } from "./main.ts";

const HELP = `voxseg train [--data DIR|URL] [--out DIR] [--config FILE] [--resume] [--json] [flags]

Trains a 3D U-Net on patches streamed from an OME-Zarr dataset (a folder or URL with
dataset.json) and writes checkpoints, metrics.jsonl and summary.json into --out.

With no --data: trains on the embedded synthetic chest-CT dataset (created under data/synth if
missing) with a small preset that finishes in minutes on a CPU-only machine.

  --data DIR|URL     dataset (alias of --data.dataset)
  --out DIR          run folder (default runs/<timestamp>)
  --config FILE      JSON config; flags override it
  --resume           continue from --out/last.safetensors
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
  epochs: "12",
  itersPerEpoch: "40",
  "optimizer.lr": "0.003",
  "schedule.kind": "plateau",
  "schedule.patience": "2",
  "schedule.factor": "0.5",
} as const;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseDottedFlags(argv, { booleans: ["resume", "json", "help"] });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${HELP}`);
  }
  const { flags, positionals } = parsed;
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP}`);
  }
  const { config: configPath, resume, json, data, out, ...rest } = flags;
  const useSynth = data === undefined && rest["data.dataset"] === undefined && !configPath;

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
    config = resolveConfig(fileJson, overrides);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }

  const progress = new Progress({ json: Boolean(json), batchSize: config.data.batchSize });
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
      resume: Boolean(resume),
      validate: datasetValidator({ patchSize: config.data.patchSize, batchSize: 2 }),
      signal: controller.signal,
      onEvent: (e: TrainEvent) => report(e, config, progress),
    });
    const dice = Object.entries(result.lastMetrics)
      .map(([k, v]) => `${k} ${Number.isFinite(v) ? v.toFixed(3) : "n/a"}`).join(", ");
    progress.done({ ...result, lastMetrics: result.lastMetrics });
    if (!json) {
      console.log(`validation Dice: ${dice}`);
      console.log(
        `best checkpoint: ${join(result.out, "best.safetensors")} (epoch ${result.bestEpoch})`,
      );
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
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
    case "validation": {
      const parts = Object.entries(e.metrics).map(([k, v]) =>
        `${k} ${Number.isFinite(v) ? v.toFixed(3) : "n/a"}`
      );
      progress.log(`epoch ${e.epoch} validation: ${parts.join(", ")}${e.best ? " (best)" : ""}`);
      break;
    }
    case "checkpoint":
      break;
    case "stop":
      progress.log(`stopped: ${e.reason}`);
      break;
  }
}
