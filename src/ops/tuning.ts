/**
 * Register blocks measured on this adapter. `voxseg tune` (src/cli/tune.ts) times candidate
 * blocks of the 3×3×3 convolution and its weight gradient, checks every candidate's output
 * against the built-in block's, and caches the fastest in `tiles.json`, one entry per adapter
 * fingerprint. The kernels read the entry of the adapter in use at first use; without one they
 * use the built-in tables here ({@link CONV_TILES}, {@link WGRAD_TILES}), which also hold what
 * was measured about the software adapter's cost model.
 *
 * The cache lives in `$VOXSEG_CACHE_DIR`, else `$XDG_CACHE_HOME/voxseg`, else
 * `~/.cache/voxseg`. A cache that cannot be read or parsed is reported once on stderr and
 * ignored: tuning only ever changes speed, never whether voxseg runs.
 */

import { join } from "node:path";
import { gpu, type GpuInfo } from "../gpu/mod.ts";
import { writeFileAtomic } from "../base/atomic.ts";

/** A thread's register block in conv3d.wgsl or conv3d_wgrad.wgsl, and the workgroup size. */
export interface ConvTiles {
  /** Groups of 4 output channels (1 or 2). */
  cg: number;
  /** Output planes (1–4); for K = 1 in conv3d.wgsl, channel-group slots of one plane. */
  vz: number;
  /** Voxels along x (4 or 8); rows are always 4. */
  vx: number;
  wg: number;
}

/** The measured blocks of one adapter, with what was measured. */
export interface TunedTiles {
  /** conv3d.wgsl, K = 3 (forward, input gradient). */
  conv3: ConvTiles;
  /** conv3d_wgrad.wgsl, K = 3. */
  wgrad3: ConvTiles;
  /** GFLOP/s of the chosen and of the built-in blocks, per kernel, and the shape timed. */
  measured: {
    shape: string;
    conv3: { tuned: number; builtin: number };
    wgrad3: { tuned: number; builtin: number };
  };
  /** ISO date of the measurement. */
  date: string;
}

/** tiles.json: entries by adapter fingerprint. */
interface TileCache {
  version: 1;
  adapters: Record<string, TunedTiles>;
}

const FILE = "tiles.json";

/** The folder of voxseg's caches (see the module comment). */
export function cacheDir(): string {
  const explicit = Deno.env.get("VOXSEG_CACHE_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "voxseg");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  return home ? join(home, ".cache", "voxseg") : join(Deno.cwd(), ".voxseg-cache");
}

export function tileCachePath(): string {
  return join(cacheDir(), FILE);
}

/**
 * What identifies an adapter for tuning: its description, vendor, architecture, device and
 * backend; for a software adapter also the CPU model and the number of logical CPUs, which
 * its description does not name and which decide its speed.
 */
export function adapterFingerprint(info: GpuInfo): string {
  let key = fingerprints.get(info);
  if (key === undefined) fingerprints.set(info, key = fingerprint(info));
  return key;
}

const fingerprints = new WeakMap<GpuInfo, string>();

function fingerprint(info: GpuInfo): string {
  const parts = [info.description, info.vendor, info.architecture, info.device, info.backend];
  if (info.isFallbackAdapter) parts.push(cpuModel(), `${navigator.hardwareConcurrency} cpus`);
  return parts.filter((p) => p).join(" | ");
}

function cpuModel(): string {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    return text.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? "unknown cpu";
  } catch {
    return `${Deno.build.os} ${Deno.build.arch}`;
  }
}

let loaded: { key: string; tiles: TunedTiles | null } | undefined;
let forced: Partial<Record<TunedKernel, ConvTiles>> | null = null;

/** The kernels `voxseg tune` measures. */
export type TunedKernel = "conv3" | "wgrad3";

/**
 * The block the kernel uses on this adapter unless the built-in table applies: one forced by
 * {@link forceTiles} (while tuning), else the cached one.
 */
export function tileOverride(kernel: TunedKernel): ConvTiles | undefined {
  return forced?.[kernel] ?? tunedTiles()?.[kernel];
}

/**
 * Makes the kernels use these blocks (for measuring them, and in tests so that a cached block
 * cannot change the path a test covers) until called again; null forces none. Returns what was
 * forced before, for the caller to restore.
 */
export function forceTiles(
  tiles: Partial<Record<TunedKernel, ConvTiles>> | null,
): Partial<Record<TunedKernel, ConvTiles>> | null {
  const before = forced;
  forced = tiles;
  return before;
}
let warned = false;

/** The cached blocks of the adapter in use, or null; read once per process. */
export function tunedTiles(): TunedTiles | null {
  const key = adapterFingerprint(gpu().info);
  if (loaded?.key !== key) loaded = { key, tiles: readCache()?.adapters[key] ?? null };
  return loaded.tiles;
}

/** Forgets what {@link tunedTiles} read, so the next call reads the cache again. */
export function reloadTunedTiles(): void {
  loaded = undefined;
}

/** Stores the blocks measured for the adapter in use (atomically, keeping other adapters'). */
export async function saveTunedTiles(tiles: TunedTiles): Promise<string> {
  const path = tileCachePath();
  const cache = readCache() ?? { version: 1, adapters: {} };
  cache.adapters[adapterFingerprint(gpu().info)] = tiles;
  await writeFileAtomic(path, JSON.stringify(cache, null, 2) + "\n");
  reloadTunedTiles();
  return path;
}

/** Removes the entry of the adapter in use; true if there was one. */
export async function forgetTunedTiles(): Promise<boolean> {
  const cache = readCache();
  const key = adapterFingerprint(gpu().info);
  if (!cache?.adapters[key]) return false;
  delete cache.adapters[key];
  await writeFileAtomic(tileCachePath(), JSON.stringify(cache, null, 2) + "\n");
  reloadTunedTiles();
  return true;
}

function readCache(): TileCache | null {
  const path = tileCachePath();
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    return ignore(path, (e as Error).message);
  }
  try {
    const cache = JSON.parse(text) as TileCache;
    if (cache?.version !== 1 || typeof cache.adapters !== "object" || !cache.adapters) {
      return ignore(path, "not a version-1 tile cache");
    }
    for (const [key, t] of Object.entries(cache.adapters)) {
      if (!validTiles(t?.conv3, "conv3") || !validTiles(t?.wgrad3, "wgrad3")) {
        return ignore(path, `the entry for "${key}" has an invalid block`);
      }
    }
    return cache;
  } catch (e) {
    return ignore(path, (e as Error).message);
  }
}

function ignore(path: string, why: string): null {
  if (!warned) {
    console.error(
      `voxseg: ignoring the tile cache ${path} (${why}); built-in blocks are used. ` +
        "Run `voxseg tune` to measure new ones, or delete the file.",
    );
    warned = true;
  }
  return null;
}

/**
 * A block the kernel implements: CG 1, 2 (or 4 in conv3d.wgsl), VZ 1–4, VX 4 or 8, WG a power
 * of two ≤ 256.
 */
export function validTiles(t: unknown, kernel: TunedKernel = "wgrad3"): t is ConvTiles {
  if (!t || typeof t !== "object") return false;
  const { cg, vz, vx, wg } = t as ConvTiles;
  return (cg === 1 || cg === 2 || (cg === 4 && kernel === "conv3")) &&
    [1, 2, 3, 4].includes(vz) && (vx === 4 || vx === 8) && [32, 64, 128, 256].includes(wg);
}

/**
 * conv3d.wgsl register blocks by adapter kind and kernel size. Software (llvmpipe/lavapipe):
 * every load is a per-lane loop costing ten or more multiply-adds, so the block is as large
 * as spilling allows. Measured at C=K=32 on 32³ (GFLOP/s, CG×VZ×VX): K = 3, 2×4×8: 54;
 * 2×4×4 and 2×2×8: 48; 1×4×8: 46. K = 1 (the transposed convolution and 1×1×1 heads):
 * 8 channels × 2 plane slots (16 channels) × 32 voxels per thread; 4 slots ran no faster
 * (conv_transpose3d at C=K=32, 32³: 8.5–9.3 GFLOP/s forward against 10.6–11.5 with 2) and
 * cost 24 s of LLVM compilation per variant against 9 s. GPUs: 4 channels × 1×4×4 voxels
 * (64 accumulators) leave registers for occupancy, 128 threads per workgroup, and reuse
 * comes from the caches. No GPU was available to tune them; they are a conventional starting
 * point, and `voxseg tune` measures better ones per adapter (above; on a 2-vCPU Intel
 * Xeon with AVX-512 the software entry was still the fastest of its candidates, 43 GFLOP/s,
 * and lavapipe at 512-bit lanes slower, 39).
 *
 * The software adapter's cost model, and why AVX2 CPUs run these kernels 4–6× slower than
 * AVX-512 ones (Mesa 22.3 lavapipe, LLVM 15; measured with `perf record` on an AMD EPYC Zen 3,
 * AVX2 + FMA, 2 vCPUs). Lavapipe runs 8 invocations per 256-bit SIMD lane group and builds
 * every storage-buffer load as a loop over the 8 lanes that puts each lane's 32-bit words into
 * the result vectors at the loop counter's position — an `insertelement` at a variable index.
 * With AVX-512 (even at 256-bit lanes) LLVM does that in registers (a mask compare and a masked
 * move); without it, LLVM stores the vector to the stack, stores the word over it and loads the
 * vector back: a failed store-to-load forward for every lane of every load. In the 2×4×8
 * forward kernel 45 % of all CPU samples fall on the instruction right after such a reload, and
 * the time follows the loads per multiply-add, not register pressure (`deno run -A
 * bench/conv_blocks.ts`, CPU time, two runs): binary16 operands (F16 = 1: 135 loads of 324
 * words per input channel instead of 198 of 576) ran 1.38–1.52× faster (1.14× on an AVX-512
 * Xeon); 2×2×8 (half the accumulators, far less spilling with AVX2's 16 vector registers)
 * 0.80–1.03× as fast as 2×4×8, and 1×4×8 (fewer multiply-adds per loaded row) 0.87–0.90×;
 * 128-bit lanes (`LP_NATIVE_VECTOR_WIDTH=128`) no faster. So blocks with fewer accumulators do
 * not help on AVX2, and the built-in block stays the same on both CPU kinds. Weights read
 * through a uniform binding (lavapipe gathers uniform words with fixed lane indices, free of the
 * stall) ran 1.22–1.40× faster at C=K=16 (see {@link weightBinding}); with them, 16 channels per
 * thread (4×2×8: a third fewer input words per multiply-add, as many accumulators) another
 * 1.12×, but 0.83× with the weights in storage (twice the weight words), so it is a tuning
 * candidate, not the default. What else would help: fewer input loads per multiply-add, or a
 * Mesa that builds storage loads as masked gathers. Lavapipe also lowers WGSL `fma` to a
 * multiply and an add.
 */
export const CONV_TILES: Record<"software" | "gpu", Record<1 | 3, ConvTiles>> = {
  software: { 3: { cg: 2, vz: 4, vx: 8, wg: 64 }, 1: { cg: 2, vz: 2, vx: 8, wg: 64 } },
  gpu: { 3: { cg: 1, vz: 1, vx: 4, wg: 128 }, 1: { cg: 1, vz: 2, vx: 4, wg: 128 } },
};

/**
 * The block for one convolution: the adapter's (tuned, else the table's), with fewer channels
 * for small Co and 4 voxels along x for W ≤ 4. Planes are not shrunk to D, so shapes share
 * pipelines (a pipeline variant costs seconds of LLVM time on a CPU adapter).
 */
export function convTiles(
  k: 1 | 3,
  co: number,
  w: number,
  o: { half?: boolean } = {},
): ConvTiles {
  const base = (k === 3 ? tileOverride("conv3") : undefined) ?? CONV_TILES[adapterKind()][k];
  // CG is 1, 2 or 4 (binary16 operands: at most 2).
  const fit = Math.min(base.cg, o.half ? 2 : 4, Math.ceil(co / 4));
  const cg = fit === 3 ? 4 : fit;
  // K = 1: plane slots carry channels, so drop the slots Co cannot fill.
  const vz = k === 1 ? Math.min(base.vz, Math.ceil(co / (4 * cg))) : base.vz;
  return { ...base, cg, vz, vx: w <= 4 ? 4 : base.vx };
}

/** Whether the adapter is a CPU (software) one: it picks the built-in tables' rows. */
export function adapterKind(): "software" | "gpu" {
  return gpu().info.isFallbackAdapter ? "software" : "gpu";
}

/** How conv3d.wgsl reads its packed weights: a storage binding, or a uniform one. */
export type WeightBinding = "storage" | "uniform";

/** vec4s of packed weights a uniform binding holds: 64 KiB, WebGPU's guaranteed binding size. */
export const UNIFORM_WEIGHT_VEC4S = 4096;

let forcedBinding: WeightBinding | null = null;

/**
 * Where conv3d.wgsl reads packed weights of `vec4s` vec4s from. On a CPU adapter, a uniform
 * binding when they fit in one: lavapipe builds a uniform load as a gather with fixed lane
 * positions, free of the per-lane store-to-load-forward stall of a storage load on CPUs without
 * AVX-512 (see CONV_TILES). Measured at C=K=16, 32³, forward, block 2×4×8 on an AMD EPYC Zen 3
 * (AVX2): 20–22.6 GFLOP/s against 16–17 with the weights in a storage binding
 * (`C=16 deno run -A bench/conv_blocks.ts`, run by run). Weights that do not fit (C=K=32 is
 * 108 KiB) stay in storage rather than split across dispatches: the layers that have them run on
 * coarse grids, where a dispatch per 64 KiB window would leave too few threads per dispatch.
 * GPUs keep storage: their lanes read different weights (the channel tile varies within a
 * workgroup), which a uniform read serialises.
 */
export function weightBinding(vec4s: number): WeightBinding {
  if (forcedBinding) return vec4s <= UNIFORM_WEIGHT_VEC4S ? forcedBinding : "storage";
  return adapterKind() === "software" && vec4s <= UNIFORM_WEIGHT_VEC4S ? "uniform" : "storage";
}

/**
 * Makes {@link weightBinding} choose `binding` wherever the weights fit (tests cover both
 * paths this way); null restores the adapter's choice. Returns what was forced before.
 */
export function forceWeightBinding(binding: WeightBinding | null): WeightBinding | null {
  const before = forcedBinding;
  forcedBinding = binding;
  return before;
}

/** The built-in K = 3 block of a tuned kernel on this adapter (what tuning starts from). */
export function builtinTiles(kernel: TunedKernel): ConvTiles {
  return (kernel === "conv3" ? CONV_TILES : WGRAD_TILES)[adapterKind()][3];
}

/**
 * conv3d_wgrad.wgsl register blocks by adapter kind and kernel size. Software, measured at
 * C=K=32 on 32³ and C=K=16 on 64³ (GFLOP/s, CG×VZ×VX): 2×2×8: 44, 46; 2×1×8: 41, 42;
 * 2×4×8: 39, 41; 1×2×8: 39, 40. GPUs: a small block, as for conv3d.
 */
export const WGRAD_TILES: Record<"software" | "gpu", Record<1 | 3, ConvTiles>> = {
  software: { 3: { cg: 2, vz: 2, vx: 8, wg: 64 }, 1: { cg: 2, vz: 2, vx: 8, wg: 64 } },
  gpu: { 3: { cg: 1, vz: 1, vx: 4, wg: 128 }, 1: { cg: 1, vz: 1, vx: 4, wg: 128 } },
};

/** The weight-gradient block for one run, as {@link convTiles} shrinks it. */
export function weightGradTiles(k: 1 | 3, co: number, w: number): ConvTiles {
  const base = (k === 3 ? tileOverride("wgrad3") : undefined) ??
    WGRAD_TILES[adapterKind()][k];
  return { ...base, cg: Math.min(base.cg, Math.ceil(co / 4)), vx: w <= 4 ? 4 : base.vx };
}
