/**
 * One optimizer apply (the gradient norm and the Adam or SGD step over every parameter) on a
 * model's parameters, three ways side by side in one process, interleaved: the per-tensor path
 * (one dispatch per tensor and pass), the multi-tensor plan this adapter gets, and the largest
 * multi-tensor variants (what a GPU gets). Prints dispatches and the best time of each.
 *
 *   deno run -A bench/optimizer_apply.ts [preset | '{"model.baseChannels": "16", …}'] [adam | sgd]
 */
import { fromArray, initGpu, keep, recorder, Tensor, zeros } from "../src/gpu/mod.ts";
import { createModel } from "../src/nn/model.ts";
import { presetConfig } from "../src/cli/bench/profile.ts";
import {
  adamStep,
  adamStepMulti,
  gradNormKernel,
  gradNormReduceKernel,
  sgdStep,
  sgdStepMulti,
} from "../src/ops/optim.ts";
import {
  partialCount,
  reduceRows,
  reduceRowsKernel,
  reduceToTile,
  sumSquaresPartials,
} from "../src/ops/reduce.ts";
import { resolveConfig } from "../src/train/config.ts";

const gpu = await initGpu();
const which = Deno.args[0] ?? "preset";
const kind = (Deno.args[1] ?? "adam") as "adam" | "sgd";
const config = which === "preset" ? presetConfig() : resolveConfig(undefined, JSON.parse(which));
const model = createModel(config.model, 0);
const params = model.trainable().map((p) => p.tensor);
const grads = params.map((p) =>
  keep(fromArray(p.shape, Float32Array.from({ length: p.size }, (_, i) => Math.sin(i) * 0.01)))
);
const m = params.map((p) => keep(zeros(p.shape)));
const v = params.map((p) => keep(zeros(p.shape)));
const o = { lr: 1e-3, step: 2 };

function oldControl(): Tensor {
  const total = grads.reduce((a, x) => a + partialCount(x.size), 0);
  const partials = new Tensor([total]);
  let off = 0;
  for (const x of grads) {
    const groups = partialCount(x.size);
    recorder().dispatch(
      reduceRowsKernel,
      { rows: 1, len: x.size, groups, inOffset: 0, outOffset: off, scale: 1 },
      [x.buffer, partials.buffer],
      [groups, 1, 1],
      { SQUARE: 1 },
    );
    off += groups;
  }
  const ss = reduceRows(partials, 1);
  partials.dispose();
  const control = new Tensor([3]);
  recorder().dispatch(gradNormKernel, { maxNorm: 12, clip: 1 }, [ss.buffer, control.buffer], [
    1,
    1,
    1,
  ]);
  ss.dispose();
  return control;
}
function newControl(sets?: number): Tensor {
  const partials = sumSquaresPartials(grads, sets)!;
  const ss = reduceToTile(partials);
  const control = new Tensor([3]);
  recorder().dispatch(gradNormReduceKernel, { len: ss.size, maxNorm: 12, clip: 1 }, [
    ss.buffer,
    control.buffer,
  ], [1, 1, 1]);
  if (ss !== partials) ss.dispose();
  partials.dispose();
  return control;
}
const adamSets = params.map((p, i) => ({ param: p, grad: grads[i], m: m[i], v: v[i] }));
const sgdSets = params.map((p, i) => ({ param: p, grad: grads[i], momentumBuf: m[i] }));
const maxAdam = 7, maxSgd = 10, maxSs = 31;
const variants: [string, () => void][] = [
  ["per-tensor (before)", () => {
    const c = oldControl();
    if (kind === "adam") params.forEach((p, i) => adamStep(p, grads[i], m[i], v[i], o, c));
    else params.forEach((p, i) => sgdStep(p, grads[i], m[i], o, c));
    c.dispose();
  }],
  ["multi, planned (after)", () => {
    const c = newControl();
    if (kind === "adam") adamStepMulti(adamSets, o, c);
    else sgdStepMulti(sgdSets, o, c);
    c.dispose();
  }],
  ["multi, largest variants", () => {
    const c = newControl(maxSs);
    if (kind === "adam") adamStepMulti(adamSets, o, c, { perDispatch: maxAdam });
    else sgdStepMulti(sgdSets, o, c, { perDispatch: maxSgd });
    c.dispose();
  }],
];
const R = 20, ROUNDS = 10;
const best = variants.map(() => Infinity);
const counts = variants.map(() => 0);
for (const [i, [, f]] of variants.entries()) {
  f();
  await recorder().sync();
  const d0 = recorder().dispatchCount;
  f();
  counts[i] = recorder().dispatchCount - d0;
  await recorder().sync();
}
for (let r = 0; r < ROUNDS; r++) {
  for (const [i, [, f]] of variants.entries()) {
    const t0 = performance.now();
    for (let k = 0; k < R; k++) f();
    await recorder().sync();
    best[i] = Math.min(best[i], (performance.now() - t0) / R);
  }
}
console.log(
  `${gpu.info.description}; ${which} ${kind}: ${params.length} tensors, ${
    params.reduce((a, p) => a + p.size, 0)
  } values`,
);
variants.forEach(([name], i) =>
  console.log(
    `  ${name.padEnd(26)} ${String(counts[i]).padStart(3)} dispatches  ${
      best[i].toFixed(3)
    } ms per apply (best of ${ROUNDS} rounds of ${R})`,
  )
);
