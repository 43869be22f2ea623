/**
 * Channel concat (U-Net skip connections) and channel slices, its backward. Both are channel
 * block copies over tensors [N, C, …spatial].
 */

import { recorder, Tensor } from "../gpu/mod.ts";
import { numel } from "./shape.ts";

/**
 * Records dst[:, dstStart + c] = src[:, srcStart + c] for c < count. One batch item's block of
 * channels is contiguous in both, so each is one buffer copy: a memcpy on a CPU adapter, where
 * a copy shader pays a per-lane loop for every load and store (about 7× slower at 64³).
 */
function copyChannels(
  src: Tensor,
  srcStart: number,
  dst: Tensor,
  dstStart: number,
  count: number,
): void {
  const spatial = numel(src.shape.slice(2));
  const bytes = count * spatial * 4;
  if (bytes === 0) return;
  for (let n = 0; n < src.shape[0]; n++) {
    recorder().copy(
      src.buffer,
      (n * src.shape[1] + srcStart) * spatial * 4,
      dst.buffer,
      (n * dst.shape[1] + dstStart) * spatial * 4,
      bytes,
    );
  }
}

const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * Concatenates a [N, Ca, …] and b [N, Cb, …] along channels into [N, Ca + Cb, …].
 *
 * @example
 * const skip = concatChannels(upsampled, encoderFeatures); // [1,32,…] + [1,32,…] → [1,64,…]
 */
export function concatChannels(a: Tensor, b: Tensor): Tensor {
  const ok = a.shape.length >= 2 && a.shape.length === b.shape.length &&
    a.shape.every((d, i) => i === 1 || d === b.shape[i]);
  if (!ok) {
    throw new Error(
      `concatChannels: shapes must match except in channels (dim 1), got ${fmt(a.shape)} and ` +
        `${fmt(b.shape)}`,
    );
  }
  const shape = [...a.shape];
  shape[1] = a.shape[1] + b.shape[1];
  const y = new Tensor(shape);
  copyChannels(a, 0, y, 0, a.shape[1]);
  copyChannels(b, 0, y, a.shape[1], b.shape[1]);
  return y;
}

/** Channels [start, start + count) of x [N, C, …] as a new tensor [N, count, …]. */
export function sliceChannels(x: Tensor, start: number, count: number): Tensor {
  const c = x.shape[1];
  const valid = x.shape.length >= 2 && Number.isInteger(start) && Number.isInteger(count) &&
    start >= 0 && count >= 0 && start + count <= c;
  if (!valid) {
    throw new Error(
      `sliceChannels: channels [${start}, ${start + count}) are not within x ${fmt(x.shape)}`,
    );
  }
  const shape = [...x.shape];
  shape[1] = count;
  const y = new Tensor(shape);
  copyChannels(x, start, y, 0, count);
  return y;
}
