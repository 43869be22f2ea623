/**
 * The command line: `voxseg <command> [flags]`. Each command lives in its own module, loaded
 * only when used, and exports `main(argv)`; a command returns its exit code.
 */

import { UsageError } from "./usage_error.ts";

export interface Command {
  summary: string;
  load: () => Promise<{ main(argv: string[]): Promise<number> }>;
}

/** Every command, in the order `voxseg help` lists them. */
export const commandTable: Record<string, Command> = {
  info: {
    summary: "WebGPU adapter, backend, features and limits",
    load: () => import("./info.ts"),
  },
  synth: {
    summary: "synthetic chest-CT dataset (lung + infection phantoms) with dataset.json",
    load: () => import("./synth.ts"),
  },
  convert: {
    summary: "NIfTI → OME-Zarr: one case, or a whole nnU-Net raw folder with dataset.json",
    load: () => import("./convert.ts"),
  },
  export: {
    summary: "OME-Zarr case → NIfTI with the source geometry",
    load: () => import("./export.ts"),
  },
  "export-onnx": {
    summary: "checkpoint → ONNX model (opset 17) for onnxruntime and other runtimes",
    load: () => import("./export_onnx.ts"),
  },
  plan: {
    summary: "plan training for a dataset (spacing, normalisation, network, patch, time budget)",
    load: () => import("./plan.ts"),
  },
  train: {
    summary: "train a 3D U-Net (no flags: the embedded synthetic chest-CT dataset)",
    load: () => import("./train.ts"),
  },
  infer: {
    summary: "segment a NIfTI file or OME-Zarr case with a checkpoint (sliding window)",
    load: () => import("./infer.ts"),
  },
  eval: {
    summary: "score a checkpoint on a dataset split: Dice, HD95, precision, recall, volumes",
    load: () => import("./eval.ts"),
  },
  serve: {
    summary: "HTTP API: predict, training and prediction jobs with live events, metrics",
    load: () => import("./serve.ts"),
  },
  tune: {
    summary: "measure convolution register blocks on this adapter and cache the fastest",
    load: () => import("./tune.ts"),
  },
  bench: {
    summary: "benchmarks: ops, loader, train, infer, profile, peers (--json: a line each)",
    load: () => import("./bench.ts"),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(commandTable).map((k) => k.length));
  const lines = Object.entries(commandTable).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  return [
    "voxseg: 3D U-Net segmentation on WebGPU",
    "",
    "usage: voxseg <command> [flags]     (voxseg <command> --help for its flags)",
    "",
    "commands:",
    ...lines,
  ].join("\n");
}

/** Runs the CLI and returns the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = commandTable[name];
  if (!command) {
    console.error(`voxseg: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await command.load();
    return await mod.main(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`voxseg ${name}: ${e.message}`);
      return 2;
    }
    const err = e as Error;
    console.error(`voxseg ${name}: ${err.name === "Error" ? "" : err.name + ": "}${err.message}`);
    if (Deno.env.get("VOXSEG_DEBUG")) console.error(err.stack);
    return 1;
  }
}
