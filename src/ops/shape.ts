/** Shape checks shared by the op host wrappers. Messages print the offending shapes. */

/** Throws unless `shape` has `rank` dimensions. */
export function assertRank(op: string, what: string, shape: readonly number[], rank: number): void {
  if (shape.length !== rank) {
    throw new Error(`${op}: ${what} must have ${rank} dimensions, got [${shape.join(", ")}]`);
  }
}

/** Throws unless the two shapes are identical. */
export function assertSameShape(
  op: string,
  a: readonly number[],
  b: readonly number[],
): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
    throw new Error(`${op}: shapes differ, [${a.join(", ")}] vs [${b.join(", ")}]`);
  }
}

/** Product of dimensions. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Values of one channel one thread of a per-channel sum adds, about (short f32 sums). */
const CHANNEL_RUN = 8192;

/**
 * How the per-channel sums of a [N, C, V] tensor (conv3d_bias.wgsl, activation_bias_grad.wgsl)
 * cut each channel's V voxels: `slices` runs of `len` voxels (about CHANNEL_RUN values a thread
 * over the batch, and enough threads), whole vec4s per run when `vec` (V % 4 == 0).
 */
export function channelRuns(
  n: number,
  c: number,
  v: number,
): { slices: number; len: number; vec: 0 | 1 } {
  const slices = Math.max(
    1,
    Math.min(Math.ceil(v / 4), Math.max(Math.ceil((n * v) / CHANNEL_RUN), Math.ceil(64 / c))),
  );
  const vec = v % 4 === 0 ? 1 : 0;
  const len = vec ? Math.ceil(v / slices / 4) * 4 : Math.ceil(v / slices);
  return { slices, len, vec };
}
