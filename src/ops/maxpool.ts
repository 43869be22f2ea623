/**
 * 3D max pooling, kernel 2 stride 2, with the argmax the backward pass needs.
 * Sizes floor like PyTorch: an odd axis drops its last plane, row or column.
 */

import maxpoolWgsl from "../../shaders/maxpool3d.wgsl" with { type: "text" };
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";
import { assertRank } from "./shape.ts";

export const maxPool3dKernel = defineKernel({
  name: "maxpool3d",
  body: maxpoolWgsl,
  uniforms: {
    total: "u32",
    inD: "u32",
    inH: "u32",
    inW: "u32",
    outD: "u32",
    outH: "u32",
    outW: "u32",
  },
  bindings: [
    { name: "src", access: "read" },
    { name: "dst", access: "read_write" },
    // Per output: which of the 8 window inputs won (bit 2 z, bit 1 y, bit 0 x offset).
    { name: "argmax", access: "read_write", type: "u32" },
  ],
  workgroupSize: 256,
  constants: { STAGE: 0 },
});

/** Output shape of {@link maxPool3d} for an input [N, C, D, H, W]. */
export function maxPool3dShape(shape: readonly number[]): number[] {
  assertRank("maxPool3d", "input", shape, 5);
  const [n, c, d, h, w] = shape;
  if (d < 2 || h < 2 || w < 2) {
    throw new Error(
      `maxPool3d: input [${shape.join(", ")}] is too small; D, H and W must be at least 2`,
    );
  }
  return [n, c, Math.floor(d / 2), Math.floor(h / 2), Math.floor(w / 2)];
}

function uniforms(inShape: readonly number[], outShape: readonly number[], total: number) {
  return {
    total,
    inD: inShape[2],
    inH: inShape[3],
    inW: inShape[4],
    outD: outShape[2],
    outH: outShape[3],
    outW: outShape[4],
  };
}

/**
 * Max pooling of x [N, C, D, H, W] to y [N, C, ⌊D/2⌋, ⌊H/2⌋, ⌊W/2⌋]. `argmax` (u32, shape of
 * y) holds which window input won each output, for {@link maxPool3dBackward}.
 */
export function maxPool3d(x: Tensor): { y: Tensor; argmax: Tensor } {
  const outShape = maxPool3dShape(x.shape);
  const y = new Tensor(outShape);
  const argmax = new Tensor(outShape, "u32");
  recorder().dispatch(
    maxPool3dKernel,
    uniforms(x.shape, outShape, y.size),
    [x.buffer, y.buffer, argmax.buffer],
    maxPool3dKernel.grid(y.size),
    { STAGE: 0 },
  );
  return { y, argmax };
}

/**
 * Gradient of {@link maxPool3d}: gy lands on the input that won each window, zero elsewhere
 * (including the dropped odd border). `inputShape` is the forward input's shape.
 */
export function maxPool3dBackward(
  gy: Tensor,
  argmax: Tensor,
  inputShape: readonly number[],
): Tensor {
  const outShape = maxPool3dShape(inputShape);
  const same = (s: readonly number[]) => s.length === 5 && s.every((d, i) => d === outShape[i]);
  if (!same(gy.shape) || !same(argmax.shape) || argmax.dtype !== "u32") {
    throw new Error(
      `maxPool3dBackward: for input [${inputShape.join(", ")}] gy and argmax (u32) must be ` +
        `[${outShape.join(", ")}], got gy [${gy.shape.join(", ")}] and argmax ` +
        `${argmax.dtype}[${argmax.shape.join(", ")}]`,
    );
  }
  const gx = new Tensor(inputShape);
  recorder().dispatch(
    maxPool3dKernel,
    uniforms(inputShape, outShape, gx.size),
    [gy.buffer, gx.buffer, argmax.buffer],
    maxPool3dKernel.grid(gx.size),
    { STAGE: 1 },
  );
  return gx;
}
