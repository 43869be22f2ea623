/**
 * Multi-tensor kernels: one dispatch over several tensors ("sets") at once, for element-wise
 * work over many small tensors such as the optimizer step and the gradient norm, where a
 * dispatch per tensor costs more than the work.
 *
 * A variant of such a kernel binds a fixed number of sets; WGSL cannot index bindings, so its
 * body holds one generated branch per set, chosen by the thread's (or workgroup's) position
 * against the prefix ends of the sets' sizes, passed as uniforms `end0 … end{SETS−1}`. The grid
 * covers the sum of the sizes, and a group smaller than its variant is padded with empty sets
 * (size 0) bound to small placeholder buffers no thread touches.
 *
 * How many sets a variant may bind follows from the device's maxStorageBuffersPerShaderStage.
 * On a GPU the largest variant that fits is the only one used: a thread runs its own branch,
 * so the fewest dispatches win. A software adapter (llvmpipe/lavapipe) runs every branch for
 * every thread under a mask, so each bound set adds to every thread's work; there
 * {@link planGroups} picks among the variants by a measured cost model ({@link MultiCost}).
 */

import { gpu, keep, Tensor } from "../gpu/mod.ts";

/** Elements one dispatch may cover, so prefix ends and thread indices stay within u32. */
const MAX_DISPATCH_ELEMENTS = 2 ** 31;

/**
 * What a multi-tensor dispatch costs on a software adapter, in units of the work of one element
 * (or thread) at one set per dispatch.
 */
export interface MultiCost {
  /** The fixed cost of a dispatch. */
  dispatch: number;
  /** Extra work per element for each set the variant binds beyond the first. */
  perSet: number;
}

/**
 * The variants of `all` (ascending) a multi-tensor op may use on this device: those whose
 * `perSet` storage bindings per set plus `shared` ones fit maxStorageBuffersPerShaderStage; on
 * a GPU only the largest of them, on a software adapter all of them. `requested` (tests,
 * benchmarks) must be one that fits, and is then the only one used.
 */
export function usableVariants(
  op: string,
  all: readonly number[],
  perSet: number,
  shared: number,
  requested?: number,
): number[] {
  const limit = gpu().device.limits.maxStorageBuffersPerShaderStage;
  const fitting = all.filter((s) => s * perSet + shared <= limit);
  if (fitting.length === 0) {
    throw new Error(
      `${op}: the device allows ${limit} storage buffers per shader stage; one set needs ` +
        `${perSet + shared}`,
    );
  }
  if (requested !== undefined) {
    if (!fitting.includes(requested)) {
      throw new Error(
        `${op}: sets per dispatch must be one of ${fitting.join(", ")} on this device, got ` +
          requested,
      );
    }
    return [requested];
  }
  return gpu().info.isFallbackAdapter ? fitting : [fitting[fitting.length - 1]];
}

/** One dispatch of a multi-tensor op: its variant and the items it covers (at most `sets`). */
export interface MultiGroup<T> {
  sets: number;
  items: T[];
}

/**
 * Splits `items` into dispatches, each of one of `variants` (ascending), at least cost under
 * `cost`: the items are ordered by `work` (the order of independent per-tensor work does not
 * change its bits), then cut by dynamic programming over that order; a group of g items takes
 * the smallest variant ≥ g. Every group stays within 2³¹ `elements`. With one variant this
 * gives the fewest dispatches.
 *
 * @example
 * // on a GPU: [7] → ceil(n / 7) dispatches; on lavapipe small tensors share a dispatch
 * const groups = planGroups(tensors, [1, 2, 4, 7], (t) => t.size, (t) => t.size, STEP_COST);
 */
export function planGroups<T>(
  items: readonly T[],
  variants: readonly number[],
  work: (item: T) => number,
  elements: (item: T) => number,
  cost: MultiCost,
): MultiGroup<T>[] {
  const order = items.map((item, i) => ({ item, i, w: work(item), n: elements(item) }))
    .sort((a, b) => a.w - b.w || a.i - b.i);
  const largest = variants[variants.length - 1];
  const best = new Float64Array(order.length + 1).fill(Infinity);
  const take = new Int32Array(order.length + 1);
  best[0] = 0;
  for (let i = 1; i <= order.length; i++) {
    let w = 0;
    let n = 0;
    for (let g = 1; g <= Math.min(largest, i); g++) {
      w += order[i - g].w;
      n += order[i - g].n;
      if (g > 1 && n > MAX_DISPATCH_ELEMENTS) break;
      const sets = variants.find((v) => v >= g)!;
      const c = best[i - g] + cost.dispatch + (1 + cost.perSet * (sets - 1)) * w;
      if (c < best[i]) {
        best[i] = c;
        take[i] = g;
      }
    }
  }
  const groups: MultiGroup<T>[] = [];
  for (let i = order.length; i > 0; i -= take[i]) {
    groups.push({
      sets: variants.find((v) => v >= take[i])!,
      items: order.slice(i - take[i], i).map((o) => o.item),
    });
  }
  return groups.reverse();
}

/** A set's buffers by access. */
export interface SetBuffers {
  read: readonly GPUBuffer[];
  write: readonly GPUBuffer[];
}

/**
 * Throws unless no buffer that a set writes appears in another set: sets are updated in
 * parallel within a dispatch and in no fixed order across dispatches.
 */
export function checkDisjoint(op: string, sets: readonly SetBuffers[]): void {
  const seen = new Map<GPUBuffer, { set: number; write: boolean }>();
  sets.forEach((s, k) => {
    for (const [buffers, write] of [[s.write, true], [s.read, false]] as const) {
      for (const b of buffers) {
        const prev = seen.get(b);
        if (prev && prev.set !== k && (prev.write || write)) {
          throw new Error(
            `${op}: sets ${prev.set} and ${k} share a buffer that one of them writes; list ` +
              `each parameter and its state once`,
          );
        }
        if (!prev || write) seen.set(b, { set: k, write });
      }
    }
  });
}

/** Prefix ends of `sizes`, padded with the total to `sets` entries: uniforms `end0 …`. */
export function prefixEnds(sizes: readonly number[], sets: number): Record<string, number> {
  const ends: Record<string, number> = {};
  let end = 0;
  for (let k = 0; k < sets; k++) {
    end += sizes[k] ?? 0;
    ends[`end${k}`] = end;
  }
  return ends;
}

/** Uniform declarations `${name}0 … ${name}{sets−1}: u32`, for a kernel spec. */
export function setUniforms(name: string, sets: number): Record<string, "u32"> {
  return Object.fromEntries(
    Array.from({ length: sets }, (_, k) => [`${name}${k}`, "u32" as const]),
  );
}

/**
 * The body of `template` with its line `//@sets` replaced by one branch per set:
 * `if (at < params.end0) { let j = at; <stmt(0)> } else if (at < params.end1) { let j = at −
 * params.end0; <stmt(1)> } …`, where `at` is the thread's (or workgroup's) flat index and `j`
 * its index within the set.
 */
export function expandSets(
  template: string,
  sets: number,
  at: string,
  stmt: (k: number) => string,
): string {
  const marker = /^([ \t]*)\/\/@sets[ \t]*$/m;
  const indent = template.match(marker)?.[1];
  if (indent === undefined) throw new Error("multi-tensor shader template has no //@sets line");
  const branches = Array.from({ length: sets }, (_, k) => {
    const j = k === 0 ? at : `${at} - params.end${k - 1}`;
    const head = k === 0 ? "if" : "} else if";
    return `${indent}${head} (${at} < params.end${k}) {\n${indent}  let j = ${j};\n` +
      stmt(k).split("\n").map((l) => `${indent}  ${l}`).join("\n");
  });
  return template.replace(marker, `${branches.join("\n")}\n${indent}}`);
}

/** Memoises a kernel variant per set count (defining a kernel is cheap; pipelines are lazy). */
export function variants<K>(make: (sets: number) => K): (sets: number) => K {
  const made = new Map<number, K>();
  return (sets) => {
    let k = made.get(sets);
    if (!k) made.set(sets, k = make(sets));
    return k;
  };
}

const placeholders: Tensor[] = [];

/**
 * `count` distinct one-element buffers for the empty sets that pad a dispatch: never read or
 * written (their sets have size 0), distinct so that no writable binding aliases another.
 * Kept across calls.
 */
export function placeholderBuffers(count: number): GPUBuffer[] {
  for (let i = 0; i < placeholders.length; i++) {
    if (placeholders[i].disposed) placeholders[i] = keep(new Tensor([1]));
  }
  while (placeholders.length < count) placeholders.push(keep(new Tensor([1])));
  return placeholders.slice(0, count).map((t) => t.buffer);
}
