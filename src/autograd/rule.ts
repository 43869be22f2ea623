/** The shape of a backward rule; the table of rules is in `rules.ts`. */

import type { Tensor } from "../gpu/mod.ts";

/** The inputs of a rule, in order; a null is an absent optional input (e.g. no bias). */
export type Inputs = readonly (Tensor | null)[];

/** One gradient per input, in input order; null where the input needs none. */
export type Grads<I extends Inputs> = { -readonly [K in keyof I]: Tensor | null };

/**
 * One differentiable op: its forward (on GPU tensors) and the gradients of its inputs given
 * the gradient of its output. `I` types the inputs (a tuple, e.g. `[x: Tensor, w: Tensor,
 * b: Tensor | null]`), `A` the attributes and `S` what forward saves for backward. Tensors in
 * `S` that are neither an input nor the output belong to the rule: the tape frees them.
 * `needs[i]` says whether input i wants a gradient; a rule may return null for those that do
 * not.
 */
export interface Rule<I extends Inputs, A, S extends object> {
  forward(inputs: I, attrs: A): { out: Tensor; saved: S };
  backward(gy: Tensor, saved: S, attrs: A, needs: readonly boolean[]): Grads<I>;
}

/** The input tuple of a rule. */
export type InputsOf<R> = R extends Rule<infer I, infer _A, infer _S> ? I : never;
/** The attribute type of a rule. */
export type AttrsOf<R> = R extends Rule<infer _I, infer A, infer _S> ? A : never;
/** What a rule saves for backward. */
export type SavedOf<R> = R extends Rule<infer _I, infer _A, infer S> ? S : never;

/** No attributes, or nothing saved. */
export type None = Record<never, never>;

/**
 * Declares a rule: its inputs, attributes and saved state are named by the type arguments.
 *
 * @example
 * const relu = rule<[x: Tensor], None, { x: Tensor }>({
 *   forward: ([x]) => ({ out: ops.relu(x), saved: { x } }),
 *   backward: (gy, { x }) => [ops.reluBackward(gy, x)],
 * });
 */
export function rule<I extends Inputs, A, S extends object>(r: Rule<I, A, S>): Rule<I, A, S> {
  return r;
}
