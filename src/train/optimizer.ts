/**
 * Optimizers over a model's parameters: per-parameter state tensors on the GPU and one call
 * that clips and steps every parameter, with no host round-trip (the clip decision and the
 * NaN/Inf skip happen on the GPU through the control tensor of `gradNormControl`).
 */

import { keep, readTensors, type Tensor, upload, zeros } from "../gpu/mod.ts";
import { adamStepMulti, gradNormControl, sgdStepMulti } from "../ops/optim.ts";
import { OPTIMIZER_SLOTS, type OptimizerState } from "./checkpoint.ts";
import type { HostTensor } from "../nn/safetensors.ts";
import type { OptimizerConfig } from "./config.ts";

/** A named trainable tensor. */
export interface NamedParam {
  name: string;
  tensor: Tensor;
}

export class Optimizer {
  readonly config: OptimizerConfig;
  readonly params: NamedParam[];
  /** slot name → one state tensor per parameter (same order as `params`). */
  readonly slots = new Map<string, Tensor[]>();
  /** Optimizer steps taken so far (skipped non-finite steps included). */
  step = 0;

  constructor(params: NamedParam[], config: OptimizerConfig) {
    this.params = params;
    this.config = config;
    for (const slot of OPTIMIZER_SLOTS[config.kind]) {
      this.slots.set(slot, params.map((p) => keep(zeros(p.tensor.shape))));
    }
  }

  /**
   * Clips the global gradient norm (config.gradClip; 0 = off) and updates every parameter at
   * learning rate `lr`. Returns the control tensor [scale, finite, norm] for logging; the
   * caller owns it. Parameters without a gradient are left unchanged.
   *
   * The gradient norm and the step each cover many parameter tensors per dispatch
   * (gradNormControl, adamStepMulti, sgdStepMulti: on a GPU as many as the device binds, on a
   * software adapter as a cost model plans), with the bits of a per-tensor adamStep / sgdStep.
   */
  apply(grads: Map<Tensor, Tensor>, lr: number): Tensor {
    const c = this.config;
    const present = this.params.map((p) => grads.get(p.tensor));
    const control = gradNormControl(
      present.filter((g): g is Tensor => g !== undefined),
      c.gradClip > 0 ? c.gradClip : Infinity,
    );
    this.step++;
    const step = this.step;
    const stepped = this.params.flatMap((p, i) => present[i] ? [{ i, param: p.tensor }] : []);
    if (c.kind === "sgd") {
      const bufs = this.slots.get("momentum_buffer")!;
      sgdStepMulti(
        stepped.map(({ i, param }) => ({ param, grad: present[i]!, momentumBuf: bufs[i] })),
        { lr, momentum: c.momentum, nesterov: c.nesterov, weightDecay: c.weightDecay, step },
        control,
      );
    } else {
      const m = this.slots.get("exp_avg")!;
      const v = this.slots.get("exp_avg_sq")!;
      adamStepMulti(
        stepped.map(({ i, param }) => ({ param, grad: present[i]!, m: m[i], v: v[i] })),
        {
          lr,
          beta1: c.beta1,
          beta2: c.beta2,
          eps: c.eps,
          weightDecay: c.weightDecay,
          decoupled: c.kind === "adamw",
          step,
        },
        control,
      );
    }
    return control;
  }

  /** Reads the state to the host, for `saveOptimizerState`. */
  async state(): Promise<Pick<OptimizerState, "kind" | "step" | "slots">> {
    const names: string[] = [];
    const tensors: Tensor[] = [];
    for (const [slot, ts] of this.slots) {
      ts.forEach((t, i) => {
        names.push(`${this.params[i].name}.${slot}`);
        tensors.push(t);
      });
    }
    const host = await readTensors(tensors);
    const slots = new Map<string, HostTensor>();
    names.forEach((n, i) => slots.set(n, { shape: [...tensors[i].shape], data: host[i] }));
    return { kind: this.config.kind, step: this.step, slots };
  }

  /** Restores state saved by {@link state}; every slot must be present with its shape. */
  restore(state: Pick<OptimizerState, "kind" | "step" | "slots">): void {
    if (state.kind !== this.config.kind) {
      throw new Error(
        `optimizer state is for ${state.kind} but the run uses ${this.config.kind}; ` +
          `resume with --optimizer.kind ${state.kind}`,
      );
    }
    for (const [slot, ts] of this.slots) {
      ts.forEach((t, i) => {
        const name = `${this.params[i].name}.${slot}`;
        const saved = state.slots.get(name);
        if (!saved || saved.data.length !== t.size) {
          throw new Error(`optimizer state has no ${name} of shape [${t.shape}]`);
        }
        upload(t, saved.data);
      });
    }
    this.step = state.step;
  }

  dispose(): void {
    for (const ts of this.slots.values()) for (const t of ts) t.dispose();
    this.slots.clear();
  }
}
