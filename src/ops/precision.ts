/**
 * Operand precision of the 3×3×3 convolutions, set for a block of code like PyTorch's
 * `torch.autocast`: under `withPrecision("f16", …)` every {@link conv3d} forward reads its
 * input and weights rounded to IEEE binary16 and accumulates in f32; tensors, outputs,
 * gradients and every other op stay f32. Numerically this is mixed-precision inference as on
 * tensor cores (binary16 operands, f32 sums); accuracy against f32 is in tests/ops/half_test.ts.
 *
 * binary16 has an 11-bit significand (relative rounding 2⁻¹¹ ≈ 4.9·10⁻⁴) and a largest finite
 * value of 65504 (larger operands are clamped to it).
 */

import { defineKernel, recorder, Tensor } from "../gpu/mod.ts";
import halfPackWgsl from "../../shaders/half_pack.wgsl" with { type: "text" };

/** Operand precision: f32 everywhere, or binary16 convolution operands with f32 sums. */
export type Precision = "f32" | "f16";

export const PRECISIONS: readonly Precision[] = ["f32", "f16"];

/** Whether `value` names a {@link Precision}. */
export function isPrecision(value: unknown): value is Precision {
  return PRECISIONS.includes(value as Precision);
}

let current: Precision = "f32";

/** The precision set by the innermost {@link withPrecision}; "f32" outside any. */
export function precision(): Precision {
  return current;
}

/**
 * Runs `fn` with convolution operands in `p`, restoring the previous setting afterwards.
 *
 * @example
 * const logits = withPrecision("f16", () => model.forward(x, { training: false }));
 */
export function withPrecision<T>(p: Precision, fn: () => T): T {
  if (!isPrecision(p)) {
    throw new RangeError(`precision must be one of ${PRECISIONS.join(", ")}, got "${p}"`);
  }
  const before = current;
  current = p;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new Error("withPrecision takes a synchronous function (the ops only record work)");
    }
    return result;
  } finally {
    current = before;
  }
}

export const halfPackKernel = defineKernel({
  name: "half_pack",
  body: halfPackWgsl,
  uniforms: { n4: "u32" },
  bindings: [
    { name: "src", access: "read", type: "vec4<f32>" },
    { name: "dst", access: "read_write", type: "vec2<u32>" },
  ],
  workgroupSize: 256,
});

/**
 * `t` (f32, size a multiple of 4) as binary16 pairs in a u32 tensor of half the size: word k
 * holds values 2k (low half) and 2k + 1.
 */
export function packHalf(t: Tensor): Tensor {
  if (t.dtype !== "f32" || t.size % 4 !== 0) {
    throw new Error(`packHalf: needs an f32 tensor with a multiple of 4 values, got ${t}`);
  }
  const out = new Tensor([t.size / 2], "u32");
  const n4 = t.size / 4;
  recorder().dispatch(halfPackKernel, { n4 }, [t.buffer, out.buffer], halfPackKernel.grid(n4));
  return out;
}
