/**
 * Weight initialisers. He (Kaiming normal, fan-in) suits ReLU/ELU networks and is the default;
 * Glorot (Xavier uniform) is Keras' default and offered for comparison. Biases start at zero.
 */

import { Random } from "../base/random.ts";

/** The initialisers, in help order. */
export const INIT_KINDS = ["he", "glorot"] as const;
export type InitKind = (typeof INIT_KINDS)[number];

/**
 * Fills a weight array for a layer with the given fan-in and fan-out.
 *
 * @example
 * const w = initWeights(16 * 1 * 27, 16 * 27, 16 * 1 * 27, "he", rng); // conv 1→16, 3³
 */
export function initWeights(
  count: number,
  fanIn: number,
  fanOut: number,
  kind: InitKind,
  rng: Random,
  gain = Math.SQRT2,
): Float32Array {
  const out = new Float32Array(count);
  if (kind === "he") {
    const std = gain / Math.sqrt(fanIn);
    for (let i = 0; i < count; i++) out[i] = rng.normal(0, std);
  } else {
    const bound = Math.sqrt(6 / (fanIn + fanOut));
    for (let i = 0; i < count; i++) out[i] = rng.uniform(-bound, bound);
  }
  return out;
}
