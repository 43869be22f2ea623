/**
 * `voxseg bench <suite> [--json]`: benchmarks that run from the CLI and the compiled binary.
 * Each suite lives in src/cli/bench/<suite>.ts and yields one result per measurement; `deno
 * bench` files in bench/ reuse the same cases.
 */

import { parseFlags } from "./args.ts";
import type { BenchSuite } from "./bench/suite.ts";
import { UsageError } from "./usage_error.ts";

const suites: Record<string, { summary: string; load: () => Promise<{ suite: BenchSuite }> }> = {
  ops: {
    summary: "conv3d / conv_transpose3d kernels: ms and GFLOP/s",
    load: () => import("./bench/ops.ts"),
  },
  loader: {
    summary: "patches/s from compressed local Zarr (64³, 96³; 1, 2 workers) and RSS vs cache",
    load: () => import("./bench/loader.ts"),
  },
  train: {
    summary: "one U-Net training step (base 16, depth 4, 64³, Adam): ms vs PyTorch",
    load: () => import("./bench/train.ts"),
  },
  infer: {
    summary: "sliding-window inference (base 16, depth 4, 64³): voxels/s, RSS vs PyTorch; memory",
    load: () => import("./bench/infer.ts"),
  },
  profile: {
    summary: "GPU time per kernel of one training step (train preset, reference)",
    load: () => import("./bench/profile.ts"),
  },
  dicom: {
    summary: "read a 512×512×300 CT series to a volume: slices/s vs dcm2niix",
    load: () => import("./bench/dicom.ts"),
  },
  peers: {
    summary: "side-by-side peers: PyTorch, onnxruntime-node, TF.js WebGPU",
    load: () => import("./bench/peers.ts"),
  },
};

const HELP = `voxseg bench <suite> [--json] [--quick]

Suites:
${Object.entries(suites).map(([k, s]) => `  ${k.padEnd(8)} ${s.summary}`).join("\n")}

--json prints one JSON object per line; --quick runs fewer repetitions.`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    json: { type: "boolean" },
    quick: { type: "boolean" },
  }, HELP);
  const name = positionals[0];
  if (!name) throw new UsageError(`name a suite\n\n${HELP}`);
  const entry = suites[name];
  if (!entry) throw new UsageError(`unknown suite "${name}"\n\n${HELP}`);
  const { suite } = await entry.load();
  for await (const r of suite.run({ quick: Boolean(values.quick) })) {
    if (values.json) console.log(JSON.stringify(r));
    else {
      const rest = Object.entries(r).filter(([k]) => k !== "name")
        .map(([k, v]) => `${k} ${typeof v === "number" ? +v.toPrecision(4) : v}`).join("  ");
      console.log(`${r.name.padEnd(48)} ${rest}`);
    }
  }
  return 0;
}
