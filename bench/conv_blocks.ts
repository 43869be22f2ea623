/**
 * conv3d forward at C=K=32 (or `--channels`), 32³ with several register blocks, operand
 * precisions and weight bindings, side by side in one process: each variant is compiled first, then the variants are timed in turns
 * (`--rounds`, default 3) so that load from other processes falls on all of them alike. Prints
 * one JSON line per variant: wall-clock GFLOP/s and `gflops_cpu_time` (GFLOP per CPU-second of
 * this process × cores: what the cores would do unshared), the best of the rounds.
 *
 *   deno run -A bench/conv_blocks.ts [--rounds 3] [--channels 32]
 *     [--variants "2,4,8,64,f32;2,4,8,64,f16"]
 *
 * A variant is `CG,VZ,VX,WG,precision[,binding]`, binding `storage` or `uniform` (where the
 * packed weights fit in 64 KiB: C ≤ 16 for K = 3; see weightBinding in src/ops/tuning.ts), by
 * default the adapter's choice. On a software adapter, for comparing CPUs (see the
 * cost model at CONV_TILES in src/ops/tuning.ts); `LP_NATIVE_VECTOR_WIDTH=128` compares
 * lavapipe's lane widths.
 */

import { parseArgs } from "node:util";
import { initGpu, type Tensor } from "../src/gpu/mod.ts";
import { conv3d } from "../src/ops/conv3d.ts";
import { type Precision, withPrecision } from "../src/ops/precision.ts";
import {
  type ConvTiles,
  forceTiles,
  forceWeightBinding,
  type WeightBinding,
} from "../src/ops/tuning.ts";
import { type OpCase, timeCase } from "../src/cli/bench/ops.ts";

const DEFAULT_VARIANTS = "2,4,8,64,f32;2,4,8,64,f16;2,2,8,64,f32;1,4,8,64,f32";

interface Variant {
  label: string;
  tiles: ConvTiles;
  precision: Precision;
  binding: WeightBinding | null;
}

function parseVariant(text: string): Variant {
  const [cg, vz, vx, wg, precision = "f32", binding] = text.split(",");
  if (precision !== "f32" && precision !== "f16") {
    throw new Error(`variant "${text}": precision must be f32 or f16`);
  }
  if (binding !== undefined && binding !== "storage" && binding !== "uniform") {
    throw new Error(`variant "${text}": binding must be storage or uniform`);
  }
  return {
    label: text,
    tiles: { cg: +cg, vz: +vz, vx: +vx, wg: +wg },
    precision,
    binding: binding ?? null,
  };
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    channels: { type: "string", default: "32" },
    variants: { type: "string" },
  },
});
const variants = (values.variants ?? DEFAULT_VARIANTS).split(";").map(parseVariant);
const rounds = Number(values.rounds);
const gpu = await initGpu();
const c = Number(values.channels), s = 32;
const flop = 2 * c * c * 27 * s ** 3;
const cores = navigator.hardwareConcurrency;

function opCase(v: Variant): OpCase {
  return {
    name: v.label,
    flop,
    inputs: [[1, c, s, s, s], [c, c, 3, 3, 3]],
    call: ([x, w]: Tensor[]) => withPrecision(v.precision, () => conv3d(x, w, null)),
  };
}

async function timed(v: Variant, opts: { samples: number; sampleMs: number }) {
  forceTiles({ conv3: v.tiles });
  forceWeightBinding(v.binding);
  try {
    const cpu = { msPerCall: NaN };
    const ms = await timeCase(opCase(v), { ...opts, cpu });
    return { gflops: flop / ms / 1e6, gflopsCpu: (flop / cpu.msPerCall / 1e6) * cores };
  } finally {
    forceTiles(null);
    forceWeightBinding(null);
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
    name: `conv3d forward C=K=${c} 32³ block ${v.label}`,
    gflops: Math.max(...r.wall),
    gflops_cpu_time: Math.max(...r.cpu),
    rounds_gflops: r.wall.map((g) => +g.toFixed(2)),
    rounds_gflops_cpu_time: r.cpu.map((g) => +g.toFixed(2)),
    first_call_s: +r.compileS.toFixed(1),
    adapter: gpu.info.description,
    lane_width_env: Deno.env.get("LP_NATIVE_VECTOR_WIDTH") ?? null,
  }));
}
