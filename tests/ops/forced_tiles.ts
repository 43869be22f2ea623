/**
 * Register blocks forced for one test (src/ops/tuning.ts `forceTiles`): a block that
 * `voxseg tune` measured and cached on this machine would otherwise replace the one a test
 * describes, and the test would cover another path than its name says.
 */

import {
  type ConvTiles,
  forceInputBinding,
  forceTiles,
  forceWeightBinding,
  type InputBinding,
  type TunedKernel,
  type WeightBinding,
} from "../../src/ops/tuning.ts";

/** The K = 3 blocks to force; a kernel left out reads the cache. */
export type ForcedTiles = Partial<Record<TunedKernel, ConvTiles>>;

/** Runs `fn` with `tiles` forced, then restores whatever was forced before (even on a throw). */
export async function withForcedTiles<T>(tiles: ForcedTiles, fn: () => T | Promise<T>): Promise<T> {
  const before = forceTiles(tiles);
  try {
    return await fn();
  } finally {
    forceTiles(before);
  }
}

/**
 * Runs `fn` with conv3d's packed weights read through `binding` wherever they fit (tuning.ts
 * `weightBinding`), then restores what was forced before.
 */
export async function withWeightBinding<T>(
  binding: WeightBinding,
  fn: () => T | Promise<T>,
): Promise<T> {
  const before = forceWeightBinding(binding);
  try {
    return await fn();
  } finally {
    forceWeightBinding(before);
  }
}

/**
 * Runs `fn` with the K = 3 convolution and weight gradient reading their inputs through
 * `binding` wherever they can (tuning.ts `inputBinding`), then restores what was forced before.
 */
export async function withInputBinding<T>(
  binding: InputBinding,
  fn: () => T | Promise<T>,
): Promise<T> {
  const before = forceInputBinding(binding);
  try {
    return await fn();
  } finally {
    forceInputBinding(before);
  }
}
