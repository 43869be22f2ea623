/**
 * Elementwise ops: add, sub, mul, axpby, affine, and the activations (ReLU, leaky ReLU, ELU)
 * with their derivatives. One WGSL module; the op is an override constant. Each thread maps 4
 * elements (one vec4).
 */

import elementwiseWgsl from "../../shaders/elementwise.wgsl" with { type: "text" };
import activationBiasGradWgsl from "../../shaders/activation_bias_grad.wgsl" with {
  type: "text",
};
import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";
import { reduceRows } from "./reduce.ts";
import { assertSameShape, channelRuns } from "./shape.ts";

export const elementwiseKernel = defineKernel({
  name: "elementwise",
  body: elementwiseWgsl,
  uniforms: { n: "u32", p0: "f32", p1: "f32" },
  // vec4 views of the tensors' buffers (see the WGSL on the padding of the last vec4).
  bindings: [
    { name: "a", access: "read", type: "vec4<f32>" },
    { name: "b", access: "read", type: "vec4<f32>" },
    { name: "y", access: "read_write", type: "vec4<f32>" },
  ],
  workgroupSize: 256,
  constants: { OP: 0 },
});

export const activationBiasGradKernel = defineKernel({
  name: "activationBiasGrad",
  body: activationBiasGradWgsl,
  uniforms: { n: "u32", c: "u32", v: "u32", slices: "u32", len: "u32", act: "u32", p: "f32" },
  bindings: [
    { name: "gy", access: "read" },
    { name: "gyv", access: "read", type: "vec4<f32>" },
    { name: "y", access: "read" },
    { name: "yv", access: "read", type: "vec4<f32>" },
    { name: "gv", access: "read_write", type: "vec4<f32>" },
    { name: "part", access: "read_write" },
  ],
  workgroupSize: 64,
  constants: { VEC: 0 },
});

const OP = {
  add: 0,
  sub: 1,
  mul: 2,
  axpby: 3,
  affine: 4,
  relu: 5,
  leakyRelu: 6,
  elu: 7,
  reluBackward: 8,
  leakyReluBackward: 9,
  eluBackward: 10,
  reluBackwardFromOutput: 11,
  leakyReluBackwardFromOutput: 12,
  eluBackwardFromOutput: 13,
} as const;

function run(op: keyof typeof OP, a: Tensor, b: Tensor, p0 = 0, p1 = 0): Tensor {
  assertSameShape(op, a.shape, b.shape);
  const y = new Tensor(a.shape);
  recorder().dispatch(
    elementwiseKernel,
    { n: a.size, p0, p1 },
    [a.buffer, b.buffer, y.buffer],
    elementwiseKernel.grid(a.size / 4),
    { OP: OP[op] },
  );
  return y;
}

/** a + b (same shapes). */
export const add = (a: Tensor, b: Tensor): Tensor => run("add", a, b);
/** a − b (same shapes). */
export const sub = (a: Tensor, b: Tensor): Tensor => run("sub", a, b);
/** a ⊙ b (same shapes). */
export const mul = (a: Tensor, b: Tensor): Tensor => run("mul", a, b);
/** αa + βb (same shapes). */
export const axpby = (alpha: number, a: Tensor, beta: number, b: Tensor): Tensor =>
  run("axpby", a, b, alpha, beta);
/** s·x + t. */
export const affine = (x: Tensor, s: number, t = 0): Tensor => run("affine", x, x, s, t);
/** s·x. */
export const scale = (x: Tensor, s: number): Tensor => run("affine", x, x, s, 0);

/** max(x, 0). */
export const relu = (x: Tensor): Tensor => run("relu", x, x);
/** x for x > 0, slope·x otherwise. */
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => run("leakyRelu", x, x, slope);
/** x for x > 0, α(eˣ − 1) otherwise. */
export const elu = (x: Tensor, alpha = 1): Tensor => run("elu", x, x, alpha);

/** Gradient of ReLU given upstream `gy` and forward input `x`. */
export const reluBackward = (gy: Tensor, x: Tensor): Tensor => run("reluBackward", gy, x);
/** Gradient of leaky ReLU given upstream `gy` and forward input `x`. */
export const leakyReluBackward = (gy: Tensor, x: Tensor, slope = 0.01): Tensor =>
  run("leakyReluBackward", gy, x, slope);
/** Gradient of ELU given upstream `gy` and forward input `x`. */
export const eluBackward = (gy: Tensor, x: Tensor, alpha = 1): Tensor =>
  run("eluBackward", gy, x, alpha);

/**
 * An activation applied to another op's output inside that op's kernel (see conv3d): ReLU,
 * leaky ReLU with `param` the slope (default 0.01), or ELU with `param` alpha (default 1).
 */
export interface FusedActivation {
  kind: "relu" | "leaky_relu" | "elu";
  param?: number;
}

/** The kernels' code for a fused activation (0 = none) and its parameter. */
export function activationCode(act: FusedActivation | null | undefined): [number, number] {
  if (!act) return [0, 0];
  switch (act.kind) {
    case "relu":
      return [1, 0];
    case "leaky_relu":
      return [2, act.param ?? 0.01];
    case "elu":
      return [3, act.param ?? 1];
  }
}

/**
 * Gradient of a fused activation given upstream `gy` and the activation's output `y` (the
 * input is not kept): y > 0 exactly where x > 0 (slope and alpha are positive), and for ELU
 * α·eˣ = y + α.
 */
export function activationBackwardFromOutput(
  gy: Tensor,
  y: Tensor,
  act: FusedActivation,
): Tensor {
  const [code, p] = activationCode(act);
  if (code === 1) return run("reluBackwardFromOutput", gy, y);
  if (code === 2) return run("leakyReluBackwardFromOutput", gy, y, p);
  return run("eluBackwardFromOutput", gy, y, p);
}

/**
 * {@link activationBackwardFromOutput} and the gradient of the bias added before the activation
 * (the pre-activation gradient summed over N and space, shape [C]) in one pass over gy and y,
 * for a convolution with a fused activation and a bias: the bias gradient's own pass over the
 * result and its dispatch are saved.
 *
 * @example
 * const { g, bias } = activationBackwardWithBias(gy, y, { kind: "relu" }); // g [N,C,…], bias [C]
 */
export function activationBackwardWithBias(
  gy: Tensor,
  y: Tensor,
  act: FusedActivation,
): { g: Tensor; bias: Tensor } {
  assertSameShape("activationBackwardWithBias", gy.shape, y.shape);
  if (gy.shape.length < 2) {
    throw new Error(`activationBackwardWithBias: gy must be [N, C, …], got [${gy.shape}]`);
  }
  const [code, p] = activationCode(act);
  const [n, c] = gy.shape;
  const v = gy.shape.slice(2).reduce((a, b) => a * b, 1);
  const { slices, len, vec } = channelRuns(n, c, v);
  const g = new Tensor(gy.shape);
  const part = new Tensor([c, slices]);
  recorder().dispatch(
    activationBiasGradKernel,
    { n, c, v, slices, len, act: code, p },
    [gy.buffer, gy.buffer, y.buffer, y.buffer, g.buffer, part.buffer],
    activationBiasGradKernel.grid(c * slices),
    { VEC: vec },
  );
  const bias = reduceRows(part, c);
  part.dispose();
  return { g, bias };
}
