/**
 * Reverse-mode autograd: a tape, one table of backward rules, and differentiable functions.
 * @module
 */
export * from "./functional.ts";
export { apply, Tape } from "./tape.ts";
export { rules } from "./rules.ts";
export type { RuleName } from "./rules.ts";
export type { AttrsOf, Grads, Inputs, InputsOf, Rule, SavedOf } from "./rule.ts";
