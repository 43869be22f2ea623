/** Reversal of tensor axes: flip augmentation and test-time flips. Its own backward. */

import flipWgsl from "../../shaders/flip.wgsl" with { type: "text" };
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";

const MAX_AXES = 6;

export const flipKernel = defineKernel({
  name: "flip",
  body: flipWgsl,
  uniforms: {
    total: "u32",
    d0: "u32",
    d1: "u32",
    d2: "u32",
    d3: "u32",
    d4: "u32",
    d5: "u32",
    mask: "u32",
  },
  bindings: [
    { name: "x", access: "read" },
    { name: "y", access: "read_write" },
  ],
  workgroupSize: 256,
});

/**
 * Merges runs of adjacent axes that are all flipped or all kept: reversing two adjacent
 * axes of a contiguous tensor reverses their merged axis. Size-1 axes are dropped.
 */
export function flipSegments(
  shape: readonly number[],
  axes: readonly number[],
): { dims: number[]; flipped: boolean[] } {
  const dims: number[] = [];
  const flipped: boolean[] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const f = axes.includes(i);
    if (flipped.length > 0 && flipped.at(-1) === f) dims[dims.length - 1] *= d;
    else {
      dims.push(d);
      flipped.push(f);
    }
  });
  return { dims, flipped };
}

/**
 * Reverses the given axes of x (indices into its shape).
 *
 * @example
 * const mirrored = flip(volume, [2, 3, 4]); // reverse D, H and W of [N, C, D, H, W]
 */
export function flip(x: Tensor, axes: readonly number[]): Tensor {
  const bad = axes.filter((a, i) =>
    !Number.isInteger(a) || a < 0 || a >= x.shape.length || axes.indexOf(a) !== i
  );
  if (bad.length > 0) {
    throw new Error(
      `flip: axes [${axes.join(", ")}] must be distinct integers in [0, ${x.shape.length}) ` +
        `for x [${x.shape.join(", ")}]`,
    );
  }
  const { dims, flipped } = flipSegments(x.shape, axes);
  if (dims.length > MAX_AXES) {
    throw new Error(
      `flip: axes [${axes.join(", ")}] of x [${x.shape.join(", ")}] alternate into ` +
        `${dims.length} runs of flipped and kept axes; at most ${MAX_AXES} are supported`,
    );
  }
  const pad = MAX_AXES - dims.length;
  const d = [...Array(pad).fill(1), ...dims];
  let mask = 0;
  flipped.forEach((f, i) => f && (mask |= 1 << (pad + i)));
  const y = new Tensor(x.shape);
  recorder().dispatch(
    flipKernel,
    { total: x.size, d0: d[0], d1: d[1], d2: d[2], d3: d[3], d4: d[4], d5: d[5], mask },
    [x.buffer, y.buffer],
    flipKernel.grid(x.size),
  );
  return y;
}
