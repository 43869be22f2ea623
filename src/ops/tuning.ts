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
  /** Output planes (1–4); for K = 1 (conv3d_point.wgsl), more channel slots. */
  vz: number;
  /** Voxels along x (4 or 8); rows are always 4 (K = 1: one). */
  vx: number;
  wg: number;
  /**
   * Where the K = 3 kernel reads its input rows (see {@link inputBinding}); only in a tuned
   * entry, which measured it. Absent: the adapter kind's default.
   */
  input?: InputBinding;
}

/** A block as `voxseg tune` and `voxseg info` print it. */
export function describeTiles(t: ConvTiles): string {
  return `CG ${t.cg} VZ ${t.vz} VX ${t.vx} WG ${t.wg}${t.input ? `, input ${t.input}` : ""}`;
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
  const { cg, vz, vx, wg, input } = t as ConvTiles;
  return (cg === 1 || cg === 2 || (cg === 4 && kernel === "conv3")) &&
    [1, 2, 3, 4].includes(vz) && (vx === 4 || vx === 8) && [32, 64, 128, 256].includes(wg) &&
    (input === undefined || input === "storage" || input === "texture");
}

/**
 * conv3d.wgsl register blocks by adapter kind and kernel size. Software (llvmpipe/lavapipe):
 * a storage load is a per-lane loop costing ten or more multiply-adds, a texel fetch far less
 * (see {@link inputBinding}), and each of a thread's sums is a whole SIMD register of 8
 * threads' values, so past 16 of them every multiply-add also loads and stores a spilled sum.
 * With the input and the weights read as texels (the software default), measured at C=K=32 on
 * 32³ on an AMD EPYC Zen 3 (AVX2), GFLOP/s by CPU time, median (best) of 8 rounds side by side
 * (`deno run -A bench/conv_blocks.ts --rounds 8 --variants
 * "1,4,8,64,f32,texture,texture;…"`), CG×VZ×VX: 1×4×8: 32.0 (41.1); 1×2×8: 31.1 (39.3);
 * 2×4×8: 30.6 (35.1); 2×4×4: 30.4 (41.8); 2×2×8: 27.0 (42.3); 4×2×8: 25.1 (34.6); at C=K=16
 * with uniform weights 1×4×8: 28.6 (32.1), 2×2×8: 24.7 (33.2), 2×4×8: 20.9 (29.9), 4×2×8:
 * 15.0 (21.9). Once loads are cheap the spills decide, so the built-in block is 1×4×8 (half the
 * sums of 2×4×8). Before the texel path, with everything in storage, 2×4×8 was the fastest
 * (54 GFLOP/s on an AVX-512 Xeon; on AVX2 17.4 median in the run above, and 1×4×8 0.87–0.90×
 * of it): an adapter whose cache (`voxseg tune`) predates the texel path keeps its block. K = 1
 * (conv3d_point.wgsl: the transposed convolution and 1×1×1 heads; input as texels where
 * {@link inputBinding} says so): CG·VZ = 4 slots of 4 channels × 8 voxels of one row per
 * thread. GPUs: 4 channels × 1×4×4 voxels
 * (64 accumulators) leave registers for occupancy, 128 threads per workgroup, and reuse
 * comes from the caches. No GPU was available to tune them; they are a conventional starting
 * point, and `voxseg tune` measures better ones per adapter (on a 2-vCPU Intel Xeon with
 * AVX-512 the storage-era software entry 2×4×8 was the fastest of its candidates, 43 GFLOP/s,
 * and lavapipe at 512-bit lanes slower, 39; the texel path is not measured there yet).
 *
 * The software adapter's cost model for storage loads, and why AVX2 CPUs run them 4–6× slower
 * than AVX-512 ones (Mesa 22.3 lavapipe, LLVM 15; measured with `perf record` on an AMD EPYC
 * Zen 3, AVX2 + FMA, 2 vCPUs). Lavapipe runs 8 invocations per 256-bit SIMD lane group and
 * builds every storage-buffer load as a loop over the 8 lanes that puts each lane's 32-bit
 * words into the result vectors at the loop counter's position — an `insertelement` at a
 * variable index. With AVX-512 (even at 256-bit lanes) LLVM does that in registers (a mask
 * compare and a masked move); without it, LLVM stores the vector to the stack, stores the word
 * over it and loads the vector back: a failed store-to-load forward for every lane of every
 * load. In the 2×4×8 forward kernel reading storage, 45 % of all CPU samples fall on the
 * instruction right after such a reload, and the time follows the loads per multiply-add, not
 * register pressure: binary16 operands (F16 = 1: 135 loads of 324 words per input channel
 * instead of 198 of 576) ran 1.38–1.52× faster (1.14× on an AVX-512 Xeon); 2×2×8 0.80–1.03×
 * as fast as 2×4×8, 1×4×8 0.87–0.90×; 128-bit lanes (`LP_NATIVE_VECTOR_WIDTH=128`) no faster.
 * Weights read through a uniform binding (lavapipe gathers uniform words with fixed lane
 * indices, free of the stall) ran 1.22–1.40× faster at C=K=16 (see {@link weightBinding}).
 * Texel fetches avoid the stall for the input rows and the weights alike: llvmpipe builds an
 * rgba32float fetch as one 16-byte load per lane and a transpose. With them (perf, 1×4×8) about
 * 15 % of the samples are the fetches and the rest the multiply-adds and their spills, which
 * the order of conv3d.wgsl's convOut keeps down. Lavapipe also lowers WGSL `fma` to a multiply
 * and an add.
 */
export const CONV_TILES: Record<"software" | "gpu", Record<1 | 3, ConvTiles>> = {
  software: { 3: { cg: 1, vz: 4, vx: 8, wg: 64 }, 1: { cg: 2, vz: 2, vx: 8, wg: 64 } },
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

/**
 * How conv3d.wgsl reads its packed weights: a storage binding, a uniform one, or a texel
 * texture (src/gpu/texture.ts).
 */
export type WeightBinding = "storage" | "uniform" | "texture";

/** vec4s of packed weights a uniform binding holds: 64 KiB, WebGPU's guaranteed binding size. */
export const UNIFORM_WEIGHT_VEC4S = 4096;

let forcedBinding: WeightBinding | null = null;

/**
 * Where conv3d.wgsl reads packed weights of `vec4s` vec4s from; `o.texture` says whether this
 * run can read them as texels (K = 3, f32, and they fit a texel texture). On a CPU adapter, a
 * uniform binding when they fit in one, else texels: lavapipe builds a uniform load as a gather
 * with fixed lane positions and a texel fetch as a load per lane, both free of the per-lane
 * store-to-load-forward stall of a storage load on CPUs without AVX-512 (see CONV_TILES).
 * Measured on an AMD EPYC Zen 3 (AVX2), forward, 32³, input as texels, GFLOP/s by CPU time,
 * median (best) of 8 rounds side by side (bench/conv_blocks.ts): C=K=32 (108 KiB of weights),
 * block 1×4×8: texels 32.0 (41.1), storage 19.8 (24.8); C=K=16, 1×4×8: uniform 28.6 (32.1),
 * texels 24.9 (30.5). (Storage input, 2×4×8, C=K=16: uniform 20–22.6 against 16–17 storage.)
 * So weights past 64 KiB are read as texels rather than split into a dispatch per 64 KiB window
 * of uniforms: that would gain at most the difference above, on layers whose coarse grids leave
 * few threads per dispatch. GPUs keep storage: their lanes read different weights (the channel
 * tile varies within a workgroup), which a uniform read serialises.
 */
export function weightBinding(vec4s: number, o: { texture?: boolean } = {}): WeightBinding {
  const fits = (b: WeightBinding) =>
    b === "storage" || (b === "uniform" ? vec4s <= UNIFORM_WEIGHT_VEC4S : !!o.texture);
  if (forcedBinding) return fits(forcedBinding) ? forcedBinding : "storage";
  if (adapterKind() !== "software") return "storage";
  return fits("uniform") ? "uniform" : fits("texture") ? "texture" : "storage";
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

/** How conv3d.wgsl and conv3d_wgrad.wgsl read their input rows: storage, or a texel texture. */
export type InputBinding = "storage" | "texture";

let forcedInput: InputBinding | null = null;

/**
 * Where the K = 3 convolution (conv3d.wgsl: forward and input gradient, MODE 0, rows of whole
 * vec4s (W % 4 == 0), f32) and its weight gradient (conv3d_wgrad.wgsl: x and gy) read their
 * input rows from; `fits` says whether the inputs fit texel textures (src/gpu/texture.ts). On a
 * CPU adapter, texels: the input is copied unchanged into an rgba32float texture (a memcpy,
 * 4 MiB at C=32, 32³) and read with `textureLoad`, which llvmpipe builds as a 16-byte load per
 * lane and a transpose, where a storage load is a per-lane loop with a failed store-to-load
 * forward per lane on AVX2 (see CONV_TILES). A probe with lane-varying reads ran storage f32
 * at 0.19–0.20 G words/s, storage vec4 0.25–0.28, r32float texels 0.29–0.49, rgba32float texels
 * 1.14–1.71. Measured on an AMD EPYC Zen 3 (AVX2), C=K=32, 32³, GFLOP/s by CPU time, median
 * (best) of 8 rounds side by side (`deno run -A bench/conv_blocks.ts [--op wgrad] --variants
 * …`): forward, 2×4×8, input and weights in storage 17.4 (18.4) against both as texels 30.6
 * (35.1), and 32.0 (41.1) with the 1×4×8 block; the weight gradient, 2×2×8, 7.6 (8.2) against
 * 25.4 (27.7). GPUs keep storage (no measurement; their loads are not per-lane loops).
 * By wall clock on a quiet machine of that kind the forward runs 20–25 GFLOP/s as texels
 * against 10–11.5 from storage. On AVX-512 CPUs, whose storage loads do not stall, the texel
 * path is not measured yet: `voxseg tune` times both there and caches the faster for `kernel`
 * (a tuned block's `input`), which then applies unless a binding is forced. The 1×1×1 kernel
 * (conv3d_point.wgsl), never tuned itself, follows the choice measured for conv3.
 */
export function inputBinding(fits: boolean, kernel: TunedKernel = "conv3"): InputBinding {
  if (!fits) return "storage";
  return forcedInput ?? tileOverride(kernel)?.input ??
    (adapterKind() === "software" ? "texture" : "storage");
}

/**
 * Makes {@link inputBinding} choose `binding` wherever the input fits (tests cover both paths
 * this way); null restores the adapter's choice. Returns what was forced before.
 */
export function forceInputBinding(binding: InputBinding | null): InputBinding | null {
  const before = forcedInput;
  forcedInput = binding;
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
