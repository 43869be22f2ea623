/**
 * Optimizer steps (Adam, AdamW, SGD with Nesterov momentum) as in-place kernels over flat
 * parameter tensors, and gradient-norm clipping without a host round-trip.
 *
 * Clipping works through a small "control" tensor [scale, finite, norm] that
 * {@link gradNormControl} computes on the GPU and the steps read: they multiply the gradient
 * by `scale`, and skip the update entirely (parameters and state bit-identical) when `finite`
 * is 0, so a NaN/Inf gradient never reaches the weights and nothing waits on a readback.
 * {@link adamStepMulti} and {@link sgdStepMulti} step many parameter tensors per dispatch
 * (src/ops/multi_tensor.ts) with the per-element operations of {@link adamStep} and
 * {@link sgdStep}, so they give the same bits; {@link gradNormControl} likewise sums squares
 * over many gradients per dispatch. These ops are not differentiable.
 */

import adamWgsl from "../../shaders/optim_adam.wgsl" with { type: "text" };
import sgdWgsl from "../../shaders/optim_sgd.wgsl" with { type: "text" };
import gradNormWgsl from "../../shaders/optim_grad_norm.wgsl" with { type: "text" };
import adamMultiWgsl from "../../shaders/optim_adam_multi.wgsl" with { type: "text" };
import sgdMultiWgsl from "../../shaders/optim_sgd_multi.wgsl" with { type: "text" };
import gradNormReduceWgsl from "../../shaders/optim_grad_norm_reduce.wgsl" with { type: "text" };
import {
  defineKernel,
  fromArray,
  keep,
  type Kernel,
  readTensors,
  recorder,
  Tensor,
  zeros,
} from "../gpu/mod.ts";
import { REDUCE_TILE, reduceRowsKernel, reduceToTile, sumSquaresPartials } from "./reduce.ts";
import {
  checkDisjoint,
  expandSets,
  type MultiCost,
  placeholderBuffers,
  planGroups,
  prefixEnds,
  setUniforms,
  usableVariants,
  variants,
} from "./multi_tensor.ts";

/** Adam's hyper-parameter uniforms, shared by the single- and multi-tensor kernels. */
const ADAM_UNIFORMS = {
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
} as const;

type AdamUniform = keyof typeof ADAM_UNIFORMS;

export const adamKernel = defineKernel({
  name: "adamStep",
  body: adamWgsl,
  uniforms: { n: "u32", ...ADAM_UNIFORMS },
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

/** SGD's hyper-parameter uniforms, shared by the single- and multi-tensor kernels. */
const SGD_UNIFORMS = {
  lr: "f32",
  momentum: "f32",
  oneMinusDampening: "f32",
  weightDecay: "f32",
  nesterov: "u32",
  first: "u32",
} as const;

type SgdUniform = keyof typeof SGD_UNIFORMS;

export const sgdKernel = defineKernel({
  name: "sgdStep",
  body: sgdWgsl,
  uniforms: { n: "u32", ...SGD_UNIFORMS },
  bindings: [
    { name: "param", access: "read_write" },
    { name: "grad", access: "read" },
    { name: "momentumBuf", access: "read_write" },
    { name: "control", access: "read" },
  ],
  workgroupSize: 256,
});

/** Set counts of the {@link adamMultiKernel} variants: four storage buffers per set + control. */
export const ADAM_MULTI_SETS = [1, 2, 4, 7] as const;

/** Set counts of the {@link sgdMultiKernel} variants: three storage buffers per set + control. */
export const SGD_MULTI_SETS = [1, 2, 4, 7, 10] as const;

/** Bindings `name0 … name{sets−1}` per set, each set's in `names` order, then `control`. */
function setBindings(sets: number, names: readonly [string, "read" | "read_write"][]) {
  return [
    ...Array.from(
      { length: sets },
      (_, k) => names.map(([name, access]) => ({ name: `${name}${k}`, access })),
    ).flat(),
    { name: "control", access: "read" as const },
  ];
}

/** {@link adamKernel} over `sets` parameter tensors per dispatch (see optim_adam_multi.wgsl). */
export const adamMultiKernel = variants((sets: number) =>
  defineKernel({
    name: `adamStepMulti${sets}`,
    body: expandSets(
      adamMultiWgsl,
      sets,
      "i",
      (k) =>
        `let r = adamElement(param${k}[j], grad${k}[j], m${k}[j], v${k}[j], scale);\n` +
        `param${k}[j] = r.x;\nm${k}[j] = r.y;\nv${k}[j] = r.z;`,
    ),
    uniforms: { ...ADAM_UNIFORMS, ...setUniforms("end", sets) },
    bindings: setBindings(sets, [
      ["param", "read_write"],
      ["grad", "read"],
      ["m", "read_write"],
      ["v", "read_write"],
    ]),
    workgroupSize: 256,
    constants: { DECOUPLED: 0 },
  })
);

/** {@link sgdKernel} over `sets` parameter tensors per dispatch (see optim_sgd_multi.wgsl). */
export const sgdMultiKernel = variants((sets: number) =>
  defineKernel({
    name: `sgdStepMulti${sets}`,
    body: expandSets(
      sgdMultiWgsl,
      sets,
      "i",
      (k) =>
        `let r = sgdElement(param${k}[j], grad${k}[j], momentumBuf${k}[j], scale);\n` +
        `param${k}[j] = r.x;\nif (params.momentum != 0.0) { momentumBuf${k}[j] = r.y; }`,
    ),
    uniforms: { ...SGD_UNIFORMS, ...setUniforms("end", sets) },
    bindings: setBindings(sets, [
      ["param", "read_write"],
      ["grad", "read"],
      ["momentumBuf", "read_write"],
    ]),
    workgroupSize: 256,
  })
);

/** The control from a sum of squares already reduced to one value, ss[0]. */
export const gradNormKernel = defineKernel({
  name: "gradNormControl",
  body: gradNormWgsl,
  uniforms: { maxNorm: "f32", clip: "u32" },
  bindings: [{ name: "ss", access: "read" }, { name: "control", access: "read_write" }],
});

/**
 * The control from `len` ≤ {@link REDUCE_TILE} partial sums of squares: the last pass of the
 * reduction and {@link gradNormKernel} in one single-workgroup dispatch.
 */
export const gradNormReduceKernel = defineKernel({
  name: "gradNormReduce",
  body: gradNormReduceWgsl,
  uniforms: { len: "u32", maxNorm: "f32", clip: "u32" },
  bindings: [{ name: "ss", access: "read" }, { name: "control", access: "read_write" }],
  workgroupSize: reduceRowsKernel.workgroupSize,
  constants: { ITEMS: REDUCE_TILE / reduceRowsKernel.workgroupSize },
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

/** Checks Adam's options; its uniforms, computed on the host in float64. */
function adamUniforms(op: string, opts: AdamOptions): Record<AdamUniform, number> {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = opts;
  checkNumber(op, "lr", lr, 0);
  checkNumber(op, "beta1", beta1, 0, 1 - 1e-12);
  checkNumber(op, "beta2", beta2, 0, 1 - 1e-12);
  checkNumber(op, "eps", eps, 0);
  checkNumber(op, "weightDecay", weightDecay, 0);
  checkStep(op, opts.step);
  return {
    beta1,
    beta2,
    oneMinusBeta1: 1 - beta1,
    oneMinusBeta2: 1 - beta2,
    eps,
    weightDecay,
    decay: 1 - lr * weightDecay,
    stepSize: lr / (1 - beta1 ** opts.step),
    invSqrtBc2: 1 / Math.sqrt(1 - beta2 ** opts.step),
  };
}

/** Checks SGD's options; its uniforms, 1 − dampening computed on the host in float64. */
function sgdUniforms(op: string, opts: SgdOptions): Record<SgdUniform, number> {
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
  return {
    lr,
    momentum,
    oneMinusDampening: 1 - dampening,
    weightDecay,
    nesterov: nesterov ? 1 : 0,
    first: opts.step === 1 ? 1 : 0,
  };
}

/**
 * One Adam (or, with `decoupled`, AdamW) step in place on `param`, `m` and `v`, PyTorch
 * semantics. `control` from {@link gradNormControl} scales the gradient and skips the step
 * when the gradients were not finite. For many parameters, {@link adamStepMulti}.
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
  const uniforms = adamUniforms(op, opts);
  const ctl = checkControl(op, control);
  recorder().dispatch(
    adamKernel,
    { n, ...uniforms },
    [param.buffer, grad.buffer, m.buffer, v.buffer, ctl.buffer],
    adamKernel.grid(n),
    { DECOUPLED: opts.decoupled ? 1 : 0 },
  );
}

/**
 * One SGD step with momentum in place on `param` and `momentumBuf`, PyTorch semantics
 * (Nesterov by default, nnU-Net style). `control` as for {@link adamStep}. For many
 * parameters, {@link sgdStepMulti}.
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
  const uniforms = sgdUniforms(op, opts);
  const ctl = checkControl(op, control);
  recorder().dispatch(
    sgdKernel,
    { n, ...uniforms },
    [param.buffer, grad.buffer, momentumBuf.buffer, ctl.buffer],
    sgdKernel.grid(n),
  );
}

/** One parameter tensor of a multi-tensor Adam step, with its gradient and state. */
export interface AdamSet {
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}

/** One parameter tensor of a multi-tensor SGD step, with its gradient and momentum buffer. */
export interface SgdSet {
  param: Tensor;
  grad: Tensor;
  momentumBuf: Tensor;
}

/** How a multi-tensor step groups its tensors. */
export interface MultiOptions {
  /**
   * Parameter tensors per dispatch: one of the kernel's variants (ADAM_MULTI_SETS,
   * SGD_MULTI_SETS) that fits the device, used for every dispatch. By default a GPU uses the
   * largest that fits and a software adapter plans among them (src/ops/multi_tensor.ts); a
   * fixed one is for tests and benchmarks.
   */
  perDispatch?: number;
}

/**
 * The multi-tensor steps' cost on a software adapter, per element: a dispatch costs about
 * 700 elements' work, each set bound adds 12 % to every element's (lavapipe, Mesa 22.3, AVX2:
 * Adam 58 ns per element at one set per dispatch, 104 at seven; SGD 44 at one, 101 at ten).
 */
const STEP_COST: MultiCost = { dispatch: 700, perSet: 0.12 };

/**
 * Records the dispatches of a multi-tensor step over `sets` (each set's tensors in binding
 * order, `access` per position), grouped by {@link planGroups} among `usable` variants of
 * `kernel`; a group smaller than its variant is padded with empty sets.
 */
function recordMulti(
  op: string,
  kernel: (sets: number) => Kernel<string>,
  usable: readonly number[],
  access: readonly ("read" | "read_write")[],
  sets: readonly Tensor[][],
  uniforms: Record<string, number>,
  control: Tensor,
  constants?: Record<string, number>,
): void {
  checkDisjoint(
    op,
    sets.map((t) => ({
      read: t.filter((_, i) => access[i] === "read").map((x) => x.buffer),
      write: t.filter((_, i) => access[i] === "read_write").map((x) => x.buffer),
    })),
  );
  const work = sets.filter((t) => t[0].size > 0);
  const size = (t: Tensor[]) => t[0].size;
  const writable = access.filter((a) => a === "read_write").length;
  for (const { sets: s, items } of planGroups(work, usable, size, size, STEP_COST)) {
    const pad = s - items.length;
    // One placeholder for every padded read binding, a distinct one per padded writable one.
    const spare = pad > 0 ? placeholderBuffers(1 + pad * writable) : [];
    let next = 1;
    const padding = Array.from(
      { length: pad },
      () => access.map((a) => a === "read" ? spare[0] : spare[next++]),
    );
    const ends = prefixEnds(items.map(size), s);
    const k = kernel(s);
    recorder().dispatch(
      k,
      { ...uniforms, ...ends },
      [...items.flat().map((x) => x.buffer), ...padding.flat(), control.buffer],
      k.grid(ends[`end${s - 1}`], constants),
      constants,
    );
  }
}

/**
 * One Adam (or AdamW) step over every set in `sets`, in place, as {@link adamStep} on each
 * (the same bits) but several parameter tensors per dispatch: on a GPU as many as the device's
 * maxStorageBuffersPerShaderStage allows (7 at 32 storage buffers, 1 at WebGPU's default 8),
 * on a software adapter as its cost model plans. Empty tensors are passed over; no buffer a
 * set writes may appear in another set.
 *
 * @example
 * const control = gradNormControl(grads, 12);
 * adamStepMulti(params.map((p, i) => ({ param: p, grad: grads[i], m: m[i], v: v[i] })),
 *   { lr: 1e-3, step }, control);
 */
export function adamStepMulti(
  sets: readonly AdamSet[],
  opts: AdamOptions,
  control?: Tensor,
  multi: MultiOptions = {},
): void {
  const op = "adamStepMulti";
  sets.forEach(({ param, grad, m, v }, i) => checkSizes(`${op} (set ${i})`, { param, grad, m, v }));
  const uniforms = adamUniforms(op, opts);
  const ctl = checkControl(op, control);
  recordMulti(
    op,
    adamMultiKernel,
    usableVariants(op, ADAM_MULTI_SETS, 4, 1, multi.perDispatch),
    ["read_write", "read", "read_write", "read_write"],
    sets.map(({ param, grad, m, v }) => [param, grad, m, v]),
    uniforms,
    ctl,
    { DECOUPLED: opts.decoupled ? 1 : 0 },
  );
}

/**
 * One SGD step over every set in `sets`, in place, as {@link sgdStep} on each (the same bits)
 * but several parameter tensors per dispatch (on a GPU 10 at 32 storage buffers per shader
 * stage, 2 at WebGPU's default 8; see {@link adamStepMulti}).
 *
 * @example
 * sgdStepMulti(params.map((p, i) => ({ param: p, grad: grads[i], momentumBuf: bufs[i] })),
 *   { lr: 0.01, step }, control);
 */
export function sgdStepMulti(
  sets: readonly SgdSet[],
  opts: SgdOptions,
  control?: Tensor,
  multi: MultiOptions = {},
): void {
  const op = "sgdStepMulti";
  sets.forEach(({ param, grad, momentumBuf }, i) =>
    checkSizes(`${op} (set ${i})`, { param, grad, momentumBuf })
  );
  const uniforms = sgdUniforms(op, opts);
  const ctl = checkControl(op, control);
  recordMulti(
    op,
    sgdMultiKernel,
    usableVariants(op, SGD_MULTI_SETS, 3, 1, multi.perDispatch),
    ["read_write", "read", "read_write"],
    sets.map(({ param, grad, momentumBuf }) => [param, grad, momentumBuf]),
    uniforms,
    ctl,
  );
}

/**
 * The global L2 norm of `grads` and the clipping decision, computed on the GPU into a new
 * control tensor [scale, finite, norm] (scale = min(1, maxNorm / (norm + 1e-6)), as PyTorch's
 * `clip_grad_norm_`). `maxNorm = Infinity` only checks finiteness. Pass the result to the
 * optimizer steps; read it with {@link readGradNorm} for logging, batched with other reads.
 *
 * Dispatches: the partial sums of squares, many gradients per dispatch (sumSquaresPartials),
 * then the last pass of their sum fused with the decision (plus, past about a million
 * gradient values, the passes between). The norm has the bits of sumSquaresAll followed by
 * {@link gradNormKernel}.
 */
export function gradNormControl(grads: readonly Tensor[], maxNorm: number): Tensor {
  if (!(maxNorm > 0)) {
    throw new Error(`gradNormControl: maxNorm must be > 0 (or Infinity), got ${maxNorm}`);
  }
  const bad = grads.find((g) => g.dtype !== "f32");
  if (bad) throw new Error(`gradNormControl: gradients must be f32, got ${bad}`);
  const partials = sumSquaresPartials(grads) ?? zeros([1]);
  const ss = reduceToTile(partials);
  const control = new Tensor([3]);
  const clip = Number.isFinite(maxNorm);
  recorder().dispatch(
    gradNormReduceKernel,
    { len: ss.size, maxNorm: clip ? maxNorm : 0, clip: clip ? 1 : 0 },
    [ss.buffer, control.buffer],
    [1, 1, 1],
  );
  if (ss !== partials) ss.dispose();
  partials.dispose();
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
