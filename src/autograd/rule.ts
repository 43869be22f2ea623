/** The shape of a backward rule; the table of rules is in `rules.ts`. */

import type { Tensor } from "../gpu/mod.ts";

/** What a forward pass keeps for backward: tensors, numbers, shapes, flags. */
export type Saved = Record<string, Tensor | number | boolean | readonly number[] | undefined>;

/**
 * One differentiable op: its forward (on GPU tensors) and the gradients of its inputs given
 * the gradient of its output. `needs[i]` says whether input i wants a gradient; a rule may
 * return null for inputs that do not.
 */
export interface Rule<A> {
  forward(inputs: (Tensor | null)[], attrs: A): { out: Tensor; saved: Saved };
  backward(gy: Tensor, saved: Saved, attrs: A, needs: boolean[]): (Tensor | null)[];
}

/** The attribute type of a rule. */
export type AttrsOf<R> = R extends Rule<infer A> ? A : never;

/** Declares a rule with its attribute type inferred. */
export function rule<A>(r: Rule<A>): Rule<A> {
  return r;
}
