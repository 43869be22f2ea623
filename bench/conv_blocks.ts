/**
 * conv3d forward (or, with `--op wgrad`, its weight gradient) at C=K=32 (or `--channels`), 32³
 * with several register blocks, operand precisions, weight bindings and input bindings, side
 * by side in one process: each variant is compiled first, then the variants are timed in turns
 * (`--rounds`, default 3) so that load from other processes falls on all of them alike. Prints
 * one JSON line per variant: wall-clock GFLOP/s and `gflops_cpu_time` (GFLOP per CPU-second of
 * this process × cores: what the cores would do unshared), the best of the rounds, and every
 * round's figures.
 *
 *   deno run -A bench/conv_blocks.ts [--rounds 3] [--channels 32] [--op forward|wgrad]
 *     [--variants "1,4,8,64,f32;2,4,8,64,f16;2,4,8,64,f32,storage,storage"]
 *
 * A variant is `CG,VZ,VX,WG[,precision[,binding[,input]]]`: precision `f32` or `f16`; binding
 * (the packed weights, forward only) `storage`, `uniform` (where they fit in 64 KiB: C ≤ 16 for
 * K = 3; see weightBinding in src/ops/tuning.ts) or `texture`; input (the input rows, and in
 * the weight gradient x and gy) `storage` or `texture` (see inputBinding there). A binding or
 * input left out or empty is the adapter's choice. `--op wgrad` forces the block for the weight
 * gradient; precision and binding do not apply there. On a software adapter, for comparing
 * CPUs (see the cost model at CONV_TILES in src/ops/tuning.ts); `LP_NATIVE_VECTOR_WIDTH=128`
 * compares lavapipe's lane widths.
 */

import { parseArgs } from "node:util";
import { initGpu, type Tensor } from "../src/gpu/mod.ts";
import { conv3d, conv3dBackwardWeight } from "../src/ops/conv3d.ts";
import { type Precision, withPrecision } from "../src/ops/precision.ts";
import {
  type ConvTiles,
  forceInputBinding,
  forceTiles,
  forceWeightBinding,
  type InputBinding,
  type WeightBinding,
} from "../src/ops/tuning.ts";
import { type OpCase, timeCase } from "../src/cli/bench/ops.ts";

/** By default: the built-in software block as the adapter reads it, and against storage. */
const DEFAULT_VARIANTS = {
  forward: "1,4,8,64,f32;1,4,8,64,f32,storage,storage;2,4,8,64,f32;2,4,8,64,f32,storage,storage",
  wgrad: "2,2,8,64,f32;2,2,8,64,f32,,storage",
};

interface Variant {
  label: string;
  tiles: ConvTiles;
  precision: Precision;
  binding: WeightBinding | null;
  input: InputBinding | null;
}

function parseVariant(text: string): Variant {
  const [cg, vz, vx, wg, precision = "f32", binding = "", input = ""] = text.split(",");
  if (precision !== "f32" && precision !== "f16") {
    throw new Error(`variant "${text}": precision must be f32 or f16`);
  }
  if (binding !== "" && binding !== "storage" && binding !== "uniform" && binding !== "texture") {
    throw new Error(`variant "${text}": binding must be storage, uniform or texture`);
  }
  if (input !== "" && input !== "storage" && input !== "texture") {
    throw new Error(`variant "${text}": input must be storage or texture`);
  }
  return {
    label: text,
    tiles: { cg: +cg, vz: +vz, vx: +vx, wg: +wg },
    precision,
    binding: binding || null,
    input: input || null,
  };
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    channels: { type: "string", default: "32" },
    variants: { type: "string" },
    op: { type: "string", default: "forward" },
  },
});
const op = values.op;
if (op !== "forward" && op !== "wgrad") throw new Error(`--op must be forward or wgrad`);
const variants = (values.variants ?? DEFAULT_VARIANTS[op]).split(";").map(parseVariant);
const rounds = Number(values.rounds);
const gpu = await initGpu();
const c = Number(values.channels), s = 32;
const flop = 2 * c * c * 27 * s ** 3;
const cores = navigator.hardwareConcurrency;

function opCase(v: Variant): OpCase {
  return {
    name: v.label,
    flop,
    inputs: op === "forward"
      ? [[1, c, s, s, s], [c, c, 3, 3, 3]]
      : [[1, c, s, s, s], [1, c, s, s, s]],
    call: ([x, w]: Tensor[]) =>
      op === "forward"
        ? withPrecision(v.precision, () => conv3d(x, w, null))
        : conv3dBackwardWeight(x, w, 3),
  };
}

async function timed(v: Variant, opts: { samples: number; sampleMs: number }) {
  forceTiles(op === "forward" ? { conv3: v.tiles } : { wgrad3: v.tiles });
  forceWeightBinding(v.binding);
  forceInputBinding(v.input);
  try {
    const cpu = { msPerCall: NaN };
    const ms = await timeCase(opCase(v), { ...opts, cpu });
    return { gflops: flop / ms / 1e6, gflopsCpu: (flop / cpu.msPerCall / 1e6) * cores };
  } finally {
    forceTiles(null);
    forceWeightBinding(null);
    forceInputBinding(null);
  }
}

const results = new Map<Variant, { compileS: number; wall: number[]; cpu: number[] }>();
for (const v of variants) {
  // The first call compiles the variant's pipeline (seconds of LLVM on a software adapter).
  const t0 = performance.now();
  await timed(v, { samples: 1, sampleMs: 10 });
  results.set(v, { compileS: (performance.now() - t0) / 1000, wall: [], cpu: [] });
}
for (let r = 0; r < rounds; r++) {
  for (const v of variants) {
    const { gflops, gflopsCpu } = await timed(v, { samples: 3, sampleMs: 300 });
    results.get(v)!.wall.push(gflops);
    results.get(v)!.cpu.push(gflopsCpu);
  }
}
for (const [v, r] of results) {
  console.log(JSON.stringify({
    name: `conv3d ${
      op === "forward" ? "forward" : "weight gradient"
    } C=K=${c} 32³ block ${v.label}`,
    gflops: Math.max(...r.wall),
    gflops_cpu_time: Math.max(...r.cpu),
    rounds_gflops: r.wall.map((g) => +g.toFixed(2)),
    rounds_gflops_cpu_time: r.cpu.map((g) => +g.toFixed(2)),
    first_call_s: +r.compileS.toFixed(1),
    adapter: gpu.info.description,
    lane_width_env: Deno.env.get("LP_NATIVE_VECTOR_WIDTH") ?? null,
  }));
}
