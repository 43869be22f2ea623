/**
 * The GPU kernels as one namespace: `import * as ops from "../ops/mod.ts"`, then
 * `ops.conv3d(x, w, b)`. Twenty kernels share a name with their differentiable twin in
 * `autograd/functional.ts` (`add`, `conv3d`, `maxPool3d`, `sum`…): a bare `conv3d` always
 * means the differentiable one, and those kernels are always written `ops.conv3d`, never
 * imported by name. Kernels without a twin (`conv3dBackwardWeight`, `sliceChannels`…) may
 * also be imported from their own file.
 * @module
 */

export * from "./elementwise.ts";
export * from "./conv3d.ts";
export * from "./conv_transpose3d.ts";
export * from "./conv3d_general.ts";
export * from "./conv_transpose3d_general.ts";
export * from "./maxpool.ts";
export * from "./concat.ts";
export * from "./softmax.ts";
export * from "./norm.ts";
export * from "./flip.ts";
export * from "./reduce.ts";
export * from "./losses.ts";
export * from "./optim.ts";
