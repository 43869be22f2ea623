/**
 * Optimizer steps (Adam, AdamW, SGD with Nesterov momentum) as in-place kernels over flat
 * parameter tensors, and gradient-norm clipping without a host round-trip.
 *
 * Clipping works through a small "control" tensor [scale, finite, norm] that
 * {@link gradNormControl} computes on the GPU and the steps read: they multiply the gradient
 * by `scale`, and skip the update entirely (parameters and state bit-identical) when `finite`
 * is 0, so a NaN/Inf gradient never reaches the weights and nothing waits on a readback.
 * These ops are not differentiable.
 */

import adamWgsl from "../../shaders/optim_adam.wgsl" with { type: "text" };
import sgdWgsl from "../../shaders/optim_sgd.wgsl" with { type: "text" };
import gradNormWgsl from "../../shaders/optim_grad_norm.wgsl" with { type: "text" };
import { defineKernel, fromArray, keep, readTensors, recorder, Tensor } from "../gpu/mod.ts";
import { sumSquaresAll } from "./reduce.ts";

export const adamKernel = defineKernel({
  name: "adamStep",
  body: adamWgsl,
  uniforms: {
    n: "u32",
    beta1: "f32",
    beta2: "f32",
    oneMinusBeta1: "f32",
    oneMinusBeta2: "f32",
    eps: "f32",
    weightDecay: "f32",
    /** AdamW's factor 1 − lr·weightDecay. */
    decay: "f32",
    stepSize: "f32",
    invSqrtBc2: "f32",
  },
  bindings: [
    { name: "param", access: "read_write" },
    { name: "grad", access: "read" },
    { name: "m", access: "read_write" },
    { name: "v", access: "read_write" },
    { name: "control", access: "read" },
  ],
  workgroupSize: 256,
  constants: { DECOUPLED: 0 },
});

export const sgdKernel = defineKernel({
  name: "sgdStep",
  body: sgdWgsl,
  uniforms: {
    n: "u32",
    lr: "f32",
    momentum: "f32",
    oneMinusDampening: "f32",
    weightDecay: "f32",
    nesterov: "u32",
    first: "u32",
  },
  bindings: [
    { name: "param", access: "read_write" },
    { name: "grad", access: "read" },
    { name: "momentumBuf", access: "read_write" },
    { name: "control", access: "read" },
  ],
  workgroupSize: 256,
});

export const gradNormKernel = defineKernel({
  name: "gradNormControl",
  body: gradNormWgsl,
  uniforms: { maxNorm: "f32", clip: "u32" },
  bindings: [{ name: "ss", access: "read" }, { name: "control", access: "read_write" }],
});

/** Adam / AdamW hyper-parameters for one step. */
export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** false: Adam with L2 (PyTorch `Adam(weight_decay)`); true: AdamW. Default false. */
  decoupled?: boolean;
  /** 1-based step number, for bias correction. A step skipped by `control` still uses one. */
  step: number;
}

/** SGD hyper-parameters for one step. */
export interface SgdOptions {
  lr: number;
  /** Default 0.99 (nnU-Net). */
  momentum?: number;
  /** Default true; needs momentum > 0 and dampening 0, as in PyTorch. */
  nesterov?: boolean;
  weightDecay?: number;
  dampening?: number;
  /** 1-based step number; step 1 initialises the momentum buffer to the gradient. */
  step: number;
}

/** What a control tensor holds, read back for logging. */
export interface GradNormInfo {
  /** Factor the steps multiply gradients by (1 when not clipped). */
  scale: number;
  /** False when the global norm was NaN or infinite: the steps do nothing. */
  finite: boolean;
  /** Global L2 norm of the gradients before clipping. */
  norm: number;
}

function checkSizes(op: string, named: Record<string, Tensor>): number {
  const entries = Object.entries(named);
  const n = entries[0][1].size;
  if (entries.some(([, t]) => t.size !== n || t.dtype !== "f32")) {
    throw new Error(
      `${op}: tensors must be f32 of equal size, got ` +
        entries.map(([k, t]) => `${k} ${t.dtype}[${t.shape.join(", ")}]`).join(", "),
    );
  }
  return n;
}

function checkControl(op: string, control: Tensor | undefined): Tensor {
  if (control === undefined) return noClipControl();
  if (control.size !== 3 || control.dtype !== "f32") {
    throw new Error(`${op}: control must be f32 [3] from gradNormControl, got [${control.shape}]`);
  }
  return control;
}

function checkNumber(op: string, name: string, v: number, lo: number, hi = Infinity): void {
  if (!(Number.isFinite(v) && v >= lo && v <= hi)) {
    throw new Error(`${op}: ${name} must be a finite number in [${lo}, ${hi}], got ${v}`);
  }
}

function checkStep(op: string, step: number): void {
  if (!Number.isInteger(step) || step < 1) {
    throw new Error(`${op}: step must be a 1-based integer, got ${step}`);
  }
}

let identity: Tensor | undefined;

/** The control [1, 1, 0]: no clipping, always finite. Uploaded once and kept. */
export function noClipControl(): Tensor {
  if (!identity || identity.disposed) identity = keep(fromArray([3], [1, 1, 0]));
  return identity;
}

/**
 * One Adam (or, with `decoupled`, AdamW) step in place on `param`, `m` and `v`, PyTorch
 * semantics. `control` from {@link gradNormControl} scales the gradient and skips the step
 * when the gradients were not finite.
 *
 * @example
 * const control = gradNormControl(grads, 12);
 * params.forEach((p, i) => adamStep(p, grads[i], m[i], v[i], { lr: 1e-3, step }, control));
 */
export function adamStep(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  opts: AdamOptions,
  control?: Tensor,
): void {
  const op = "adamStep";
  const n = checkSizes(op, { param, grad, m, v });
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, decoupled = false } = opts;
  checkNumber(op, "lr", lr, 0);
  checkNumber(op, "beta1", beta1, 0, 1 - 1e-12);
  checkNumber(op, "beta2", beta2, 0, 1 - 1e-12);
  checkNumber(op, "eps", eps, 0);
  checkNumber(op, "weightDecay", weightDecay, 0);
  checkStep(op, opts.step);
  const ctl = checkControl(op, control);
  const stepSize = lr / (1 - beta1 ** opts.step);
  const invSqrtBc2 = 1 / Math.sqrt(1 - beta2 ** opts.step);
  recorder().dispatch(
    adamKernel,
    {
      n,
      beta1,
      beta2,
      oneMinusBeta1: 1 - beta1,
      oneMinusBeta2: 1 - beta2,
      eps,
      weightDecay,
      decay: 1 - lr * weightDecay,
      stepSize,
      invSqrtBc2,
    },
    [param.buffer, grad.buffer, m.buffer, v.buffer, ctl.buffer],
    adamKernel.grid(n),
    { DECOUPLED: decoupled ? 1 : 0 },
  );
}

/**
 * One SGD step with momentum in place on `param` and `momentumBuf`, PyTorch semantics
 * (Nesterov by default, nnU-Net style). `control` as for {@link adamStep}.
 *
 * @example
 * sgdStep(p, g, buf, { lr: 0.01, momentum: 0.99, weightDecay: 3e-5, step }, control);
 */
export function sgdStep(
  param: Tensor,
  grad: Tensor,
  momentumBuf: Tensor,
  opts: SgdOptions,
  control?: Tensor,
): void {
  const op = "sgdStep";
  const n = checkSizes(op, { param, grad, momentumBuf });
  const { lr, momentum = 0.99, nesterov = true, weightDecay = 0, dampening = 0 } = opts;
  checkNumber(op, "lr", lr, 0);
  checkNumber(op, "momentum", momentum, 0);
  checkNumber(op, "weightDecay", weightDecay, 0);
  checkNumber(op, "dampening", dampening, 0, 1);
  checkStep(op, opts.step);
  if (nesterov && (momentum <= 0 || dampening !== 0)) {
    throw new Error(
      `${op}: Nesterov momentum needs momentum > 0 and dampening 0, got momentum ${momentum}, ` +
        `dampening ${dampening}`,
    );
  }
  const ctl = checkControl(op, control);
  recorder().dispatch(
    sgdKernel,
    {
      n,
      lr,
      momentum,
      oneMinusDampening: 1 - dampening,
      weightDecay,
      nesterov: nesterov ? 1 : 0,
      first: opts.step === 1 ? 1 : 0,
    },
    [param.buffer, grad.buffer, momentumBuf.buffer, ctl.buffer],
    sgdKernel.grid(n),
  );
}

/**
 * The global L2 norm of `grads` and the clipping decision, computed on the GPU into a new
 * control tensor [scale, finite, norm] (scale = min(1, maxNorm / (norm + 1e-6)), as PyTorch's
 * `clip_grad_norm_`). `maxNorm = Infinity` only checks finiteness. Pass the result to the
 * optimizer steps; read it with {@link readGradNorm} for logging, batched with other reads.
 */
export function gradNormControl(grads: readonly Tensor[], maxNorm: number): Tensor {
  if (!(maxNorm > 0)) {
    throw new Error(`gradNormControl: maxNorm must be > 0 (or Infinity), got ${maxNorm}`);
  }
  const bad = grads.find((g) => g.dtype !== "f32");
  if (bad) throw new Error(`gradNormControl: gradients must be f32, got ${bad}`);
  const ss = sumSquaresAll(grads);
  const control = new Tensor([3]);
  const clip = Number.isFinite(maxNorm);
  recorder().dispatch(
    gradNormKernel,
    { maxNorm: clip ? maxNorm : 0, clip: clip ? 1 : 0 },
    [ss.buffer, control.buffer],
    [1, 1, 1],
  );
  ss.dispose();
  return control;
}

/** Decodes the values of a control tensor read back with other tensors (`readTensors`). */
export function decodeGradNorm(values: Float32Array): GradNormInfo {
  return { scale: values[0], finite: values[1] !== 0, norm: values[2] };
}

/** Reads a control tensor back (one readback; prefer batching it with other reads). */
export async function readGradNorm(control: Tensor): Promise<GradNormInfo> {
  const [values] = await readTensors([control]);
  return decodeGradNorm(values);
}
