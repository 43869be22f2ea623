/**
 * A small reverse-mode tape.
 *
 * Differentiable functions call {@link apply} with a rule name from the table in `rules.ts`.
 * While a tape records, each application whose inputs include a watched tensor (a parameter,
 * or the output of an earlier recorded op) is appended with what its rule saved for backward.
 * `backward` walks the records in reverse, asking each rule for its input gradients.
 */

import * as ops from "../ops/mod.ts";
import { fromArray, Tensor } from "../gpu/mod.ts";
import { type RuleName, rules } from "./rules.ts";
import type { AttrsOf, Inputs, InputsOf, Rule, SavedOf } from "./rule.ts";

/**
 * One recorded application: its inputs, its output, and its rule's backward bound to what
 * forward saved and the attributes it ran with.
 */
interface Entry {
  inputs: Inputs;
  out: Tensor;
  backward(gy: Tensor, needs: readonly boolean[]): readonly (Tensor | null)[];
}

type Rules = typeof rules;
/**
 * The table seen through each rule's own types, so {@link apply} can index it by a generic
 * name without losing the link between a rule's inputs, attributes and saved state.
 */
type RuleTable = {
  [N in RuleName]: Rule<InputsOf<Rules[N]>, AttrsOf<Rules[N]>, SavedOf<Rules[N]>>;
};
const table: RuleTable = rules;

let active: Tape | undefined;

export class Tape {
  #entries: Entry[] = [];
  #tracked = new WeakSet<Tensor>();
  #owned: Tensor[] = [];

  /** Marks tensors (parameters, inputs) whose gradients `backward` should return. */
  watch(...tensors: Tensor[]): this {
    for (const t of tensors) this.#tracked.add(t);
    return this;
  }

  /** Runs `fn` with this tape recording; nested recording is not allowed. */
  record<T>(fn: () => T): T {
    if (active) throw new Error("a tape is already recording");
    active = this;
    try {
      return fn();
    } finally {
      active = undefined;
    }
  }

  /** True when `t` depends on a watched tensor through recorded ops. */
  isTracked(t: Tensor): boolean {
    return this.#tracked.has(t);
  }

  /** @internal Called by {@link apply}. */
  push(entry: Entry, owned: Tensor[]): void {
    this.#entries.push(entry);
    this.#tracked.add(entry.out);
    this.#owned.push(...owned);
  }

  /**
   * Gradients of `output` with respect to the watched tensors it depends on.
   * `seed` is the upstream gradient (defaults to ones, i.e. d output / d output = 1).
   * The returned gradients belong to the caller; intermediate ones are freed on the way.
   */
  backward(output: Tensor, seed?: Tensor): Map<Tensor, Tensor> {
    const grads = new Map<Tensor, Tensor>();
    grads.set(output, seed ?? fromArray(output.shape, new Float32Array(output.size).fill(1)));
    const leaves = new Set<Tensor>();
    const produced = new Set(this.#entries.map((e) => e.out));
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const e = this.#entries[i];
      const gy = grads.get(e.out);
      if (!gy) continue;
      grads.delete(e.out);
      const needs = e.inputs.map((x) => x !== null && this.#tracked.has(x));
      const gx = e.backward(gy, needs);
      if (gy !== seed) gy.dispose();
      e.inputs.forEach((x, j) => {
        const g = gx[j];
        if (!x || !needs[j] || !g) {
          if (g) g.dispose();
          return;
        }
        if (!produced.has(x)) leaves.add(x);
        const prev = grads.get(x);
        if (prev) {
          grads.set(x, ops.add(prev, g));
          prev.dispose();
          g.dispose();
        } else {
          grads.set(x, g);
        }
      });
    }
    // Whatever is left is a leaf gradient (or the seed of an unused output).
    for (const [t, g] of grads) if (!leaves.has(t) && g !== seed) g.dispose();
    return new Map([...grads].filter(([t]) => leaves.has(t)));
  }

  /** Frees tensors the rules created for backward (argmax indices, norm statistics…). */
  dispose(): void {
    for (const t of this.#owned) t.dispose();
    this.#owned = [];
    this.#entries = [];
  }
}

/**
 * Runs rule `name` forward and, when the active tape tracks an input, records it.
 *
 * @example
 * const y = apply("relu", [x], {});
 */
export function apply<N extends RuleName>(
  name: N,
  inputs: InputsOf<Rules[N]>,
  attrs: AttrsOf<Rules[N]>,
): Tensor {
  return run(table[name], inputs, attrs);
}

/** {@link apply} for one rule, with its types bound. */
function run<I extends Inputs, A, S extends object>(
  rule: Rule<I, A, S>,
  inputs: I,
  attrs: A,
): Tensor {
  const { out, saved } = rule.forward(inputs, attrs);
  const owned = Object.values(saved).filter((v): v is Tensor =>
    v instanceof Tensor && v !== out && !inputs.includes(v)
  );
  const tape = active;
  if (tape && inputs.some((x) => x !== null && tape.isTracked(x))) {
    const backward = (gy: Tensor, needs: readonly boolean[]) =>
      rule.backward(gy, saved, attrs, needs);
    tape.push({ inputs, out, backward }, owned);
  } else {
    for (const t of owned) t.dispose();
  }
  return out;
}
