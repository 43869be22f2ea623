/**
 * `voxseg tune`: measures register blocks of the 3×3×3 convolution and of its weight gradient
 * on this adapter and caches the fastest (src/ops/tuning.ts). Every candidate's output is
 * checked against the built-in block's on an odd shape first; a candidate that disagrees is
 * reported and never chosen.
 */

import { initGpu, readTensors, scope } from "../gpu/mod.ts";
import { conv3dBackwardWeight } from "../ops/conv3d.ts";
import * as ops from "../ops/mod.ts";
import {
  adapterKind,
  builtinTiles,
  type ConvTiles,
  describeTiles,
  forceTiles,
  forgetTunedTiles,
  saveTunedTiles,
  tileCachePath,
  type TunedKernel,
  type TunedTiles,
} from "../ops/tuning.ts";
import { parseFlags } from "./args.ts";
import { type OpCase, randomTensors, timeCase } from "./bench/ops.ts";

const HELP = `voxseg tune [--quick] [--json] [--forget]

Measures register blocks of the 3×3×3 convolution (forward and input gradient) and of its
weight gradient on this adapter, checks each candidate's output against the built-in block's,
and caches the fastest for this adapter in the tile cache (${tileCachePath()};
VOXSEG_CACHE_DIR moves it). Every later voxseg process on this adapter uses them.

On a software adapter each candidate costs seconds to a minute of shader compilation, so a
full run takes several minutes (--quick: fewer candidates); on a GPU it takes seconds.

  --quick   fewer candidates, shorter timings
  --forget  remove this adapter's entry: back to the built-in blocks
  --json    one JSON object per measurement, the last one the result`;

const block = (cg: number, vz: number, vx: number, wg: number): ConvTiles => ({ cg, vz, vx, wg });

/** Candidate blocks per adapter kind and kernel; the built-in block is always added. */
export function candidates(kind: "software" | "gpu", kernel: TunedKernel, quick: boolean) {
  if (kind === "software") {
    // Blocks around the built-in 1×4×8 (see CONV_TILES in ops/tuning.ts): with the input and
    // the weights read as texels (gathers) rather than storage loads (per-lane loops, dearer
    // still without AVX-512), the cost follows the accumulators spilled to the stack as much as
    // the words loaded, so smaller blocks than the storage path's 2×4×8 won on AVX2; which one
    // wins on another CPU is what this measures. Workgroup size moves little.
    // The input from storage buffers rather than texels too: the storage path's best blocks,
    // for CPUs whose storage loads do not stall (AVX-512; see inputBinding in ops/tuning.ts).
    const all = kernel === "conv3"
      ? [
        { ...block(2, 4, 8, 64), input: "storage" as const },
        block(2, 4, 8, 64),
        block(4, 2, 8, 64),
        block(2, 2, 8, 64),
        block(2, 3, 8, 64),
        block(1, 4, 8, 64),
        block(2, 4, 4, 64),
        block(2, 4, 8, 128),
      ]
      : [
        { ...block(2, 2, 8, 64), input: "storage" as const },
        block(2, 1, 8, 64),
        block(2, 4, 8, 64),
        block(1, 2, 8, 64),
      ];
    return quick ? all.slice(0, 2) : all;
  }
  const out: ConvTiles[] = [];
  for (const cg of kernel === "conv3" ? [1, 2, 4] : [1, 2]) {
    for (const vz of kernel === "conv3" ? [1, 2, 4] : [1, 2]) {
      for (const vx of [4, 8]) {
        for (const wg of quick ? [128] : [64, 128, 256]) out.push(block(cg, vz, vx, wg));
      }
    }
  }
  return out;
}

/** One timed candidate. */
export interface TuneMeasurement {
  kernel: TunedKernel;
  tiles: ConvTiles;
  builtin: boolean;
  /** GFLOP/s, or null when the output disagreed with the built-in block's. */
  gflops: number | null;
  /** Largest |difference| from the built-in block's output, relative to its largest value. */
  error: number;
}

export interface TuneOptions {
  quick?: boolean;
  /** Replaces the candidate lists (tests). */
  candidates?: Partial<Record<TunedKernel, ConvTiles[]>>;
  /** Timed input [N, C, D, H, W], C output channels (default C=32, 32³; 2×32×64³ on GPUs). */
  shape?: number[];
  onMeasurement?(m: TuneMeasurement): void;
}

/** Measures the candidates and caches the winners; returns what was stored. */
export async function tune(opts: TuneOptions = {}): Promise<TunedTiles & { path: string }> {
  const kind = adapterKind();
  const shape = opts.shape ?? (kind === "software" ? [1, 32, 32, 32, 32] : [2, 32, 64, 64, 64]);
  const [n, c, d, h, w] = shape;
  const flop = 2 * c * c * 27 * n * d * h * w;
  const chosen = {} as Record<TunedKernel, { tiles: ConvTiles; gflops: number; builtin: number }>;
  for (const kernel of ["conv3", "wgrad3"] as const) {
    const builtin = builtinTiles(kernel);
    const list = [builtin, ...(opts.candidates?.[kernel] ?? candidates(kind, kernel, !!opts.quick))]
      .filter((t, i, all) => all.findIndex((u) => sameTiles(t, u)) === i);
    const timed = kernelCase(kernel, shape, c);
    const reference = await checkOutput(kernel, builtin);
    let best: { tiles: ConvTiles; gflops: number } | undefined;
    let builtinGflops = 0;
    for (const tiles of list) {
      const isBuiltin = sameTiles(tiles, builtin);
      const error = isBuiltin ? 0 : relativeDifference(await checkOutput(kernel, tiles), reference);
      let gflops: number | null = null;
      if (error <= 1e-5) {
        forceTiles({ [kernel]: tiles });
        try {
          const ms = await timeCase(timed, opts.quick ? { samples: 3, sampleMs: 100 } : {});
          gflops = flop / ms / 1e6;
        } finally {
          forceTiles(null);
        }
        if (isBuiltin) builtinGflops = gflops;
        // A candidate must beat the built-in block by 2 % to replace it: timing noise.
        const margin = isBuiltin ? 1 : 1.02;
        if (!best || gflops > best.gflops * margin) best = { tiles, gflops };
      }
      opts.onMeasurement?.({ kernel, tiles, builtin: isBuiltin, gflops, error });
    }
    chosen[kernel] = { ...best!, builtin: builtinGflops };
  }
  const tuned: TunedTiles = {
    conv3: chosen.conv3.tiles,
    wgrad3: chosen.wgrad3.tiles,
    measured: {
      shape: `N=${n} C=K=${c} ${d}×${h}×${w}`,
      conv3: { tuned: chosen.conv3.gflops, builtin: chosen.conv3.builtin },
      wgrad3: { tuned: chosen.wgrad3.gflops, builtin: chosen.wgrad3.builtin },
    },
    date: new Date().toISOString(),
  };
  return { ...tuned, path: await saveTunedTiles(tuned) };
}

function sameTiles(a: ConvTiles, b: ConvTiles): boolean {
  return a.cg === b.cg && a.vz === b.vz && a.vx === b.vx && a.wg === b.wg &&
    a.input === b.input;
}

/** One call of a tuned kernel on input x [N, C, D, H, W] with `co` output channels. */
function kernelCase(kernel: TunedKernel, x: number[], co: number): OpCase {
  const [n, ci, d, h, w] = x;
  const flop = 2 * co * ci * 27 * n * d * h * w;
  return kernel === "conv3"
    ? {
      name: kernel,
      flop,
      inputs: [x, [co, ci, 3, 3, 3]],
      call: ([a, b]) => ops.conv3d(a, b, null),
    }
    : {
      name: kernel,
      flop,
      inputs: [x, [n, co, d, h, w]],
      call: ([a, gy]) => conv3dBackwardWeight(a, gy, 3),
    };
}

/**
 * The kernel's output with `tiles` on an odd shape (partial tiles in every dimension, channel
 * counts not multiples of 4·CG, batch 2).
 */
async function checkOutput(kernel: TunedKernel, tiles: ConvTiles): Promise<Float32Array> {
  const check = kernelCase(kernel, [2, 6, 7, 9, 20], 10);
  const inputs = randomTensors(check.inputs, 17);
  forceTiles({ [kernel]: tiles });
  try {
    const y = scope(() => check.call(inputs));
    const [out] = await readTensors([y]);
    y.dispose();
    return out;
  } finally {
    forceTiles(null);
    for (const t of inputs) t.dispose();
  }
}

function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    quick: { type: "boolean" },
    json: { type: "boolean" },
    forget: { type: "boolean" },
  }, HELP);
  const gpu = await initGpu();
  if (values.forget) {
    const had = await forgetTunedTiles();
    console.log(
      had
        ? `removed the tuned blocks of ${gpu.info.description} from ${tileCachePath()}`
        : `${tileCachePath()} has no tuned blocks for ${gpu.info.description}`,
    );
    return 0;
  }
  if (!values.json) console.log(`tuning on ${gpu.info.description} (${gpu.info.backend})`);
  const result = await tune({
    quick: Boolean(values.quick),
    onMeasurement: (m) => {
      if (values.json) {
        console.log(JSON.stringify({ name: `${m.kernel} ${describeTiles(m.tiles)}`, ...m }));
        return;
      }
      const what = m.gflops === null
        ? `REJECTED: output differs by ${m.error.toExponential(1)} from the built-in block's`
        : `${m.gflops.toFixed(1)} GFLOP/s`;
      console.log(
        `  ${m.kernel.padEnd(7)} ${describeTiles(m.tiles).padEnd(24)} ${what}${
          m.builtin ? "  (built-in)" : ""
        }`,
      );
    },
  });
  if (values.json) {
    console.log(JSON.stringify({ name: "result", ...result }));
  } else {
    for (const k of ["conv3", "wgrad3"] as const) {
      const m = result.measured[k];
      console.log(
        `${k}: ${describeTiles(result[k])}, ${m.tuned.toFixed(1)} GFLOP/s ` +
          `(built-in ${m.builtin.toFixed(1)}, ×${(m.tuned / m.builtin).toFixed(2)})`,
      );
    }
    console.log(`cached in ${result.path}`);
  }
  return 0;
}
