/**
 * Register blocks measured on this adapter. `voxseg tune` (src/cli/tune.ts) times candidate
 * blocks of the 3×3×3 convolution and its weight gradient, checks every candidate's output
 * against the built-in block's, and caches the fastest in `tiles.json`, one entry per adapter
 * fingerprint. conv3d.ts reads the entry of the adapter in use at first use; without one it
 * uses its built-in tables (CONV_TILES, WGRAD_TILES).
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

/** Makes the kernels use these blocks until called again with null (for measuring them). */
export function forceTiles(tiles: Partial<Record<TunedKernel, ConvTiles>> | null): void {
  forced = tiles;
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
      if (!validTiles(t?.conv3) || !validTiles(t?.wgrad3)) {
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

/** A block the kernels implement: CG 1–2, VZ 1–4, VX 4 or 8, WG a power of two ≤ 256. */
export function validTiles(t: unknown): t is ConvTiles {
  if (!t || typeof t !== "object") return false;
  const { cg, vz, vx, wg } = t as ConvTiles;
  return (cg === 1 || cg === 2) && [1, 2, 3, 4].includes(vz) && (vx === 4 || vx === 8) &&
    [32, 64, 128, 256].includes(wg);
}
