/** Softmax over the channel axis of [N, C, …spatial], per voxel, and its backward. */

import softmaxWgsl from "../../shaders/softmax.wgsl" with { type: "text" };
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";
import { assertSameShape, numel } from "./shape.ts";

export const softmaxKernel = defineKernel({
  name: "softmax_channels",
  body: softmaxWgsl,
  uniforms: { voxels: "u32", channels: "u32", spatial: "u32" },
  bindings: [
    { name: "a", access: "read" },
    { name: "b", access: "read" },
    { name: "out", access: "read_write" },
  ],
  workgroupSize: 256,
  constants: { STAGE: 0 },
});

function run(stage: 0 | 1, a: Tensor, b: Tensor): Tensor {
  const spatial = numel(a.shape.slice(2));
  const voxels = a.shape[0] * spatial;
  const out = new Tensor(a.shape);
  recorder().dispatch(
    softmaxKernel,
    { voxels, channels: a.shape[1], spatial },
    [a.buffer, b.buffer, out.buffer],
    softmaxKernel.grid(voxels),
    { STAGE: stage },
  );
  return out;
}

/** Softmax over channels (dim 1) of x [N, C, …], numerically stable (max subtracted). */
export function softmaxChannels(x: Tensor): Tensor {
  if (x.shape.length < 2 || x.shape[1] < 1) {
    throw new Error(
      `softmaxChannels: x must be [N, C, …] with C ≥ 1, got [${x.shape.join(", ")}]`,
    );
  }
  return run(0, x, x);
}

/** Gradient of {@link softmaxChannels} from its output y: gx = y ⊙ (gy − Σ_c gy·y). */
export function softmaxChannelsBackward(gy: Tensor, y: Tensor): Tensor {
  assertSameShape("softmaxChannelsBackward", gy.shape, y.shape);
  return run(1, gy, y);
}
