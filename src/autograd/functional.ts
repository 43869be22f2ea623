/**
 * Differentiable functions: thin names over `apply(rule, …)`, the API models are built from.
 * Outside a recording tape they run the forward op only.
 */

import type { Tensor } from "../gpu/mod.ts";
import { apply } from "./tape.ts";

export const add = (a: Tensor, b: Tensor): Tensor => apply("add", [a, b], {});
export const sub = (a: Tensor, b: Tensor): Tensor => apply("sub", [a, b], {});
export const mul = (a: Tensor, b: Tensor): Tensor => apply("mul", [a, b], {});
export const axpby = (alpha: number, a: Tensor, beta: number, b: Tensor): Tensor =>
  apply("axpby", [a, b], { alpha, beta });
export const scale = (x: Tensor, s: number): Tensor => apply("scale", [x], { s });
export const relu = (x: Tensor): Tensor => apply("relu", [x], {});
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => apply("leakyRelu", [x], { slope });
export const elu = (x: Tensor, alpha = 1): Tensor => apply("elu", [x], { alpha });
// <functional:conv>
// </functional:conv>
// <functional:layers>
// </functional:layers>
// <functional:losses>
// </functional:losses>
