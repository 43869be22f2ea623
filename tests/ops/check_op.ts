/**
 * One helper for every op test: runs the differentiable op on the GPU, compares its forward
 * with a float64 plain-TypeScript reference, then compares the gradients the tape produces
 * with central finite differences of that reference, also in float64.
 *
 * Inputs are drawn from a fixed seed and rounded to f32 before the reference sees them, so
 * both sides compute on identical values.
 */

import { fromArray, initGpu, readTensors, scope, type Tensor } from "../../src/gpu/mod.ts";
import { Tape } from "../../src/autograd/mod.ts";
import { Random } from "../../src/base/random.ts";

export type Init =
  | "normal"
  | "uniform"
  | "positive"
  | "labels"
  | ((rng: Random, i: number) => number);

export interface InputSpec {
  shape: number[];
  /** How to draw values; "labels" draws integers in [0, classes). Default "normal". */
  init?: Init;
  /** Number of classes for "labels" inputs. */
  classes?: number;
  /** Upload as this dtype (labels are u32). Default f32. */
  dtype?: "f32" | "u32";
  /** Check this input's gradient. Default: true for f32 inputs. */
  grad?: boolean;
}

export interface OpCase {
  /** Test name; state the shapes and code path. */
  name: string;
  inputs: InputSpec[];
  /** The differentiable op under test (through `src/autograd`). */
  run: (xs: Tensor[]) => Tensor;
  /** The same function in float64 on the CPU. */
  reference: (xs: Float64Array[]) => Float64Array;
  /** Max forward error relative to max |reference|. Default 1e-4. */
  fwdTol?: number;
  /** Max gradient error relative to max |finite difference|. Default 1e-3. */
  bwdTol?: number;
  /** Finite-difference step. Default 1e-3. */
  fdStep?: number;
  /** At most this many coordinates per input are checked by finite differences. Default 48. */
  fdSamples?: number;
  seed?: number;
}

/** Relative ∞-norm error of `actual` against `expected`. */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`length mismatch: ${actual.length} vs ${expected.length}`);
  }
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / Math.max(maxRef, 1e-12);
}

/** Draws the inputs of a case, already rounded to f32. */
export function drawInputs(inputs: InputSpec[], seed: number): Float64Array[] {
  const rng = new Random(seed);
  return inputs.map((spec) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const init = spec.init ?? "normal";
      const v = typeof init === "function"
        ? init(rng, i)
        : init === "uniform"
        ? rng.uniform(-1, 1)
        : init === "positive"
        ? rng.uniform(0.1, 1)
        : init === "labels"
        ? rng.int(0, spec.classes ?? 2)
        : rng.normal();
      out[i] = Math.fround(v);
    }
    return out;
  });
}

/** Runs one case: forward vs reference, then tape gradients vs finite differences. */
export async function checkOp(c: OpCase): Promise<void> {
  await initGpu();
  const seed = c.seed ?? 1234;
  const xs = drawInputs(c.inputs, seed);
  const wantsGrad = c.inputs.map((s) => s.grad ?? (s.dtype ?? "f32") === "f32");
  const expected = c.reference(xs);

  const rng = new Random(seed + 1);
  const gy = new Float64Array(expected.length).map(() => Math.fround(rng.normal()));

  const { out, grads } = await (async () => {
    const tensors: Tensor[] = [];
    const result = scope(() => {
      const ts = xs.map((x, i) => fromArray(c.inputs[i].shape, x, c.inputs[i].dtype ?? "f32"));
      tensors.push(...ts);
      const tape = new Tape();
      ts.forEach((t, i) => wantsGrad[i] && tape.watch(t));
      const y = tape.record(() => c.run(ts));
      const seedT = fromArray(y.shape, gy);
      const g = tape.backward(y, seedT);
      tape.dispose();
      return { y, g: ts.map((t) => g.get(t) ?? null) };
    });
    const toRead = [result.y, ...result.g.filter((g): g is Tensor => g !== null)];
    const host = await readTensors(toRead);
    for (const t of toRead) t.dispose();
    let k = 1;
    return { out: host[0], grads: result.g.map((g) => (g ? host[k++] : null)) };
  })();

  const fwdTol = c.fwdTol ?? 1e-4;
  const fErr = relError(out, expected);
  if (!(fErr <= fwdTol)) {
    throw new Error(`${c.name}: forward relative error ${fErr.toExponential(2)} > ${fwdTol}`);
  }

  const h = c.fdStep ?? 1e-3;
  const bwdTol = c.bwdTol ?? 1e-3;
  const samples = c.fdSamples ?? 48;
  const loss = (inputs: Float64Array[]) => {
    const y = c.reference(inputs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * gy[i];
    return s;
  };
  for (let j = 0; j < xs.length; j++) {
    if (!wantsGrad[j]) continue;
    const g = grads[j];
    if (!g) throw new Error(`${c.name}: no gradient for input ${j}`);
    if (g.length !== xs[j].length) {
      throw new Error(`${c.name}: gradient ${j} has ${g.length} values, input has ${xs[j].length}`);
    }
    const coords = pickCoords(xs[j].length, samples, new Random(seed + 7 + j));
    const fd = new Float64Array(coords.length);
    const got = new Float64Array(coords.length);
    coords.forEach((idx, k) => {
      const plus = xs.map((x) => x.slice());
      const minus = xs.map((x) => x.slice());
      plus[j][idx] += h;
      minus[j][idx] -= h;
      fd[k] = (loss(plus) - loss(minus)) / (2 * h);
      got[k] = g[idx];
    });
    const bErr = relError(got, fd);
    if (!(bErr <= bwdTol)) {
      const worst = coords.map((idx, k) => `${idx}: gpu ${got[k]} fd ${fd[k]}`).slice(0, 6);
      throw new Error(
        `${c.name}: gradient of input ${j} relative error ${bErr.toExponential(2)} > ${bwdTol}\n` +
          worst.join("\n"),
      );
    }
  }
}

function pickCoords(n: number, max: number, rng: Random): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const set = new Set<number>([0, n - 1]);
  while (set.size < max) set.add(rng.int(0, n));
  return [...set];
}

/** Registers a Deno test for a case. */
export function opTest(c: OpCase): void {
  Deno.test({ name: c.name, fn: () => checkOp(c), sanitizeResources: false, sanitizeOps: false });
}
