/**
 * TensorFlow.js (WebGPU backend) peer of voxseg's training step (src/cli/bench/train.ts): the
 * same 3D U-Net, the same initial weights (voxseg's, converted to TF.js layouts), the same
 * batch, the same loss (`lossFor` in src/train/trainer.ts: Tversky on the softmax, background
 * excluded by default, plus categorical cross-entropy on the logits) and plain Adam.
 *
 * Layouts. TF.js is channels-last (NDHWC). voxseg/PyTorch conv weights `[out, in, kD, kH, kW]`
 * become TF.js conv3d filters `[kD, kH, kW, in, out]`; transposed-conv weights, stored
 * PyTorch-style `[in, out, kD, kH, kW]`, become conv3dTranspose filters `[kD, kH, kW, out, in]`.
 *
 * TF.js registers no gradient for conv3dTranspose (Conv3DBackpropInputV2), so the up-sampling
 * is wrapped in `tf.customGrad`: it is the adjoint of a stride-2 conv3d with the same filter,
 * so its input gradient is that conv3d of dy and its filter gradient is Conv3DBackpropFilterV2
 * with dy as the convolution's input and the layer's input as the convolution's output grad.
 * The convolutions' filter gradients run over depth slabs (TF.js's own kernel): on Mesa's
 * software adapter one invocation's loops stop after 65535 iterations, which TF.js's
 * one-invocation-per-tap kernel exceeds from 40³ on (see `LOOP_BUDGET`).
 *
 * TF.js's WebGPU 3D kernels compute one output per thread (no tiling), so on a software
 * adapter the reference step takes minutes; with `quick` both sides use a small network.
 *
 *   deno run -A bench/peer/tfjs.ts [--quick]     # prints the result as JSON
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { initGpu } from "../../src/gpu/mod.ts";
import type { UNet3DConfig } from "../../src/nn/unet3d.ts";
import type { TrainConfig } from "../../src/train/config.ts";
import type { HostTensor } from "../../src/nn/safetensors.ts";
import { readWeights } from "../../src/nn/weights.ts";
import { type BenchResult, median } from "../../src/cli/bench/suite.ts";
import { referenceBatch, referenceConfig, TrainStepBench } from "../../src/cli/bench/train.ts";
import { agreedRatio, lossAgreement } from "../../src/cli/bench/agreement.ts";

/** The network both sides train with `quick`: base 8, depth 3, 32³. */
export const SMALL_OVERRIDES: Record<string, string> = {
  "model.baseChannels": "8",
  "model.depth": "3",
  "data.patchSize": "32,32,32",
};

/**
 * Moves axis 1 (channels) of a C-order 5-D array to the end: `[N, C, D, H, W]` →
 * `[N, D, H, W, C]`. The inverse is {@link ndhwcToNcdhw}.
 */
export function ncdhwToNdhwc(data: Float32Array, shape: readonly number[]): Float32Array {
  const [n, c, d, h, w] = shape;
  const v = d * h * w;
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const src = (b * c + ch) * v;
      for (let i = 0; i < v; i++) out[(b * v + i) * c + ch] = data[src + i];
    }
  }
  return out;
}

/** `[N, D, H, W, C]` → `[N, C, D, H, W]`; `shape` is the channels-first shape of the result. */
export function ndhwcToNcdhw(data: Float32Array, shape: readonly number[]): Float32Array {
  const [n, c, d, h, w] = shape;
  const v = d * h * w;
  const out = new Float32Array(data.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const dst = (b * c + ch) * v;
      for (let i = 0; i < v; i++) out[dst + i] = data[(b * v + i) * c + ch];
    }
  }
  return out;
}

/**
 * Moves the first two axes of a 5-D weight behind the three kernel axes:
 * `[a, b, kD, kH, kW]` → `[kD, kH, kW, b, a]`. That maps a conv3d weight `[out, in, …]` to
 * TF.js's filter `[…, in, out]`, and a ConvTranspose3d weight `[in, out, …]` to TF.js's
 * conv3dTranspose filter `[…, out, in]`: the same permutation serves both.
 */
export function weightToTfjs(t: HostTensor): { shape: number[]; data: Float32Array } {
  if (t.shape.length !== 5) {
    throw new Error(`weightToTfjs: expected a 5-D weight, got [${t.shape.join(", ")}]`);
  }
  const [a, b, kd, kh, kw] = t.shape;
  const k = kd * kh * kw;
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) {
      const src = (i * b + j) * k;
      for (let s = 0; s < k; s++) out[(s * b + j) * a + i] = t.data[src + s];
    }
  }
  return { shape: [kd, kh, kw, b, a], data: out };
}

/** TF.js variables of a U-Net, by voxseg's parameter names, in TF.js layouts. */
export type TfjsParams = Map<string, tf.Variable>;

/** Uploads voxseg weights (as from `readWeights`) into TF.js variables. */
export function tfjsParams(weights: Map<string, HostTensor>): TfjsParams {
  const params: TfjsParams = new Map();
  for (const [name, t] of weights) {
    const { shape, data } = t.shape.length === 5 ? weightToTfjs(t) : t;
    params.set(name, tf.variable(tf.tensor(data, shape), true, `voxseg/${name}`));
  }
  return params;
}

/**
 * Loop iterations one invocation of TF.js's Conv3DBackpropFilterV2 may take. Its WebGPU kernel
 * computes each filter tap in one invocation that loops over every output voxel, and Mesa's
 * llvmpipe/lavapipe stops any invocation's loops after 65535 iterations in all (its loop
 * limiter), silently: at 40³ and beyond the filter gradient comes out wrong. Splitting the
 * sum into depth slabs keeps each call under the limit and changes nothing on other GPUs.
 */
const LOOP_BUDGET = 60_000;

/** Depth slabs [d0, d1) of a D×H×W output grid whose per-invocation loops fit the budget. */
function depthSlabs(batch: number, [d, h, w]: number[]): [number, number][] {
  const perSlice = 1 + h * (1 + w);
  const s = Math.max(1, Math.floor((LOOP_BUDGET / batch - 1) / perSlice));
  const slabs: [number, number][] = [];
  for (let d0 = 0; d0 < d; d0 += s) slabs.push([d0, Math.min(d, d0 + s)]);
  return slabs;
}

/** Sum over slabs of Conv3DBackpropFilterV2 with padding "valid". */
function filterGradSlabbed(
  slabs: [number, number][],
  x: (d0: number, d1: number) => tf.Tensor,
  dy: (d0: number, d1: number) => tf.Tensor,
  strides: number,
  filterShape: number[],
): tf.Tensor {
  return tf.addN(
    slabs.map(([d0, d1]) =>
      tf.engine().runKernel("Conv3DBackpropFilterV2", { x: x(d0, d1), dy: dy(d0, d1) }, {
        strides,
        pad: "valid",
        filterShape,
      }) as tf.Tensor
    ),
  );
}

/**
 * Zero-pads the three spatial axes of `x` [N, D, H, W, C] by `p` on each side. By concatenation:
 * TF.js's WebGPU `pad` returns zeros for 5-D tensors (4.22 on lavapipe).
 */
function padSpatial(x: tf.Tensor5D, p: number): tf.Tensor5D {
  let out: tf.Tensor = x;
  for (const axis of [1, 2, 3]) {
    const shape = [...out.shape];
    shape[axis] = p;
    const z = tf.zeros(shape);
    out = tf.concat([z, out, z], axis);
  }
  return out as tf.Tensor5D;
}

/**
 * conv3d, stride 1, "same" padding, odd kernel — TF.js's own kernels forward and for the input
 * gradient, its filter-gradient kernel over depth slabs (see {@link LOOP_BUDGET}).
 * `x` [N, D, H, W, in], `f` [k, k, k, in, out].
 */
export const convSame = tf.customGrad((x, f, save) => {
  const xs = x as tf.Tensor5D, fs = f as tf.Tensor5D;
  (save as tf.GradSaveFunc)([xs, fs]);
  return {
    value: tf.conv3d(xs, fs, 1, "same"),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sf] = saved as tf.Tensor5D[];
      const dy5 = dy as tf.Tensor5D;
      const dx = tf.conv3dTranspose(dy5, sf, sx.shape, 1, "same");
      const [n, d, h, w, c] = sx.shape;
      const p = (sf.shape[0] - 1) / 2;
      const xp = padSpatial(sx, p);
      const df = filterGradSlabbed(
        depthSlabs(n, [d, h, w]),
        (d0, d1) => xp.slice([0, d0, 0, 0, 0], [n, d1 - d0 + 2 * p, h + 2 * p, w + 2 * p, c]),
        (d0, d1) => dy5.slice([0, d0, 0, 0, 0], [n, d1 - d0, h, w, dy5.shape[4]]),
        1,
        sf.shape,
      );
      return [dx, df];
    },
  };
});

/**
 * ConvTranspose3d(kernel 2, stride 2) with a gradient: TF.js has none registered for
 * Conv3DBackpropInputV2. It is the adjoint of a stride-2 conv3d with the same filter, so the
 * input gradient is that conv3d of dy, and the filter gradient Conv3DBackpropFilterV2 with dy
 * as the convolution's input and x as its output gradient. `x` [N, D, H, W, in], `f`
 * [2, 2, 2, out, in].
 */
export const upConv = tf.customGrad((x, f, save) => {
  const xs = x as tf.Tensor5D, fs = f as tf.Tensor5D;
  (save as tf.GradSaveFunc)([xs, fs]);
  const [n, d, h, w] = xs.shape;
  const value = tf.conv3dTranspose(xs, fs, [n, 2 * d, 2 * h, 2 * w, fs.shape[3]], 2, "valid");
  return {
    value,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sf] = saved as tf.Tensor5D[];
      const dy5 = dy as tf.Tensor5D;
      const dx = tf.conv3d(dy5, sf, 2, "valid");
      const [n, d, h, w, c] = sx.shape;
      const df = filterGradSlabbed(
        depthSlabs(n, [d, h, w]),
        (d0, d1) => dy5.slice([0, 2 * d0, 0, 0, 0], [n, 2 * (d1 - d0), 2 * h, 2 * w, -1]),
        (d0, d1) => sx.slice([0, d0, 0, 0, 0], [n, d1 - d0, h, w, c]),
        2,
        sf.shape,
      );
      return [dx, df];
    },
  };
});

function activation(x: tf.Tensor, kind: UNet3DConfig["activation"]): tf.Tensor {
  return kind === "relu" ? tf.relu(x) : kind === "elu" ? tf.elu(x) : tf.leakyRelu(x, 0.01);
}

/** Class logits [N, D, H, W, classes] of the U-Net for input x [N, D, H, W, inChannels]. */
export function tfjsForward(params: TfjsParams, x: tf.Tensor5D, config: UNet3DConfig): tf.Tensor5D {
  if (config.norm !== "none") {
    throw new Error(`the TF.js peer implements norm "none" only, got "${config.norm}"`);
  }
  const p = (name: string) => {
    const v = params.get(name);
    if (!v) throw new Error(`TF.js peer: no parameter ${name}`);
    return v;
  };
  // 3×3×3 convolutions and the 1×1×1 head, "same" padding.
  const conv = (h: tf.Tensor, name: string) =>
    tf.add(convSame(h, p(`${name}.weight`)), p(`${name}.bias`));
  const block = (prefix: string, h: tf.Tensor) => {
    for (let i = 1; i <= config.convsPerLevel; i++) {
      h = activation(conv(h, `${prefix}.conv${i}`), config.activation);
    }
    return h;
  };
  const skips: tf.Tensor[] = [];
  let h: tf.Tensor = x;
  for (let l = 0; l < config.depth; l++) {
    if (l > 0) h = tf.maxPool3d(h as tf.Tensor5D, 2, 2, "valid");
    h = block(`enc.${l}`, h);
    skips.push(h);
  }
  for (let l = config.depth - 2; l >= 0; l--) {
    h = tf.add(upConv(h, p(`up.${l}.weight`)), p(`up.${l}.bias`));
    h = block(`dec.${l}`, tf.concat([skips[l], h], 4));
  }
  return conv(h, "head") as tf.Tensor5D;
}

/**
 * voxseg's training loss (`lossFor`) in TF.js: `logits` [N, D, H, W, C], `onehot` [N, V, C].
 * Tversky per sample (or pooled with `batchDice`) and class: TI = (TP + s) / (TP + α·FP + β·FN
 * + s), loss = mean over groups of Σ_c w_c (1 − TI_c) / Σ_c w_c, w_0 = 0 unless background is
 * included; soft Dice is the α = β = ½ case; cross-entropy Σ w_y·nll / Σ w_y over voxels.
 */
export function tfjsLoss(
  logits: tf.Tensor5D,
  onehot: tf.Tensor3D,
  loss: TrainConfig["loss"],
): tf.Scalar {
  const [n, , , , c] = logits.shape;
  const flat = logits.reshape([n, -1, c]);
  const weights = tf.tensor1d(loss.classWeights ? [...loss.classWeights] : new Array(c).fill(1));
  const terms: tf.Scalar[] = [];
  const region = (alpha: number, beta: number): tf.Scalar => {
    const p = tf.softmax(flat);
    const tp = tf.sum(tf.mul(p, onehot), 1);
    const fp = tf.sum(tf.mul(p, tf.sub(1, onehot)), 1);
    const fn = tf.sum(tf.mul(tf.sub(1, p), onehot), 1);
    const [tps, fps, fns] = loss.batchDice
      ? [tp, fp, fn].map((t) => tf.sum(t, 0, true))
      : [tp, fp, fn];
    const ti = tf.div(
      tf.add(tps, loss.smooth),
      tf.add(tf.add(tf.add(tps, tf.mul(alpha, fps)), tf.mul(beta, fns)), loss.smooth),
    );
    const w = loss.includeBackground ? weights : tf.concat([tf.zeros([1]), weights.slice(1)]);
    return tf.mean(tf.div(tf.sum(tf.mul(tf.sub(1, ti), w), 1), tf.sum(w)));
  };
  if (loss.tverskyWeight > 0) terms.push(tf.mul(loss.tverskyWeight, region(loss.alpha, loss.beta)));
  if (loss.diceWeight > 0) terms.push(tf.mul(loss.diceWeight, region(0.5, 0.5)));
  if (loss.ceWeight > 0) {
    const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(flat), onehot), 2)); // [N, V]
    const wy = tf.sum(tf.mul(onehot, weights), 2);
    terms.push(tf.mul(loss.ceWeight, tf.div(tf.sum(tf.mul(nll, wy)), tf.sum(wy))));
  }
  return terms.reduce((a, b) => tf.add(a, b)) as tf.Scalar;
}

/** Switches TF.js to its WebGPU backend; the reason when it cannot. */
export async function useTfjsWebgpu(): Promise<string | undefined> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    return "navigator.gpu is missing (--unstable-webgpu)";
  }
  try {
    if (!(await tf.setBackend("webgpu"))) return "TF.js could not initialise its webgpu backend";
    await tf.ready();
  } catch (e) {
    return `TF.js webgpu backend failed: ${(e as Error).message}`;
  }
  return undefined;
}

/** A TF.js training step on voxseg's weights and batch, ready to run. */
export class TfjsTrainStep {
  readonly params: TfjsParams;
  readonly #config: TrainConfig;
  readonly #x: tf.Tensor5D;
  readonly #onehot: tf.Tensor3D;
  readonly #optimizer: tf.AdamOptimizer;

  constructor(
    config: TrainConfig,
    weights: Map<string, HostTensor>,
    batch: { image: Float32Array; labels: Uint32Array },
  ) {
    const o = config.optimizer;
    if (o.kind !== "adam" || o.weightDecay !== 0 || o.gradClip !== 0) {
      throw new Error("the TF.js peer implements plain Adam (no weight decay, no clipping)");
    }
    this.#config = config;
    const m = config.model;
    const [D, H, W] = config.data.patchSize;
    const B = config.data.batchSize;
    this.params = tfjsParams(weights);
    const shape = [B, m.inChannels, D, H, W];
    this.#x = tf.tensor5d(ncdhwToNdhwc(batch.image, shape), [B, D, H, W, m.inChannels]);
    this.#onehot = tf.tidy(() =>
      tf.oneHot(tf.tensor1d(Int32Array.from(batch.labels), "int32"), m.classes)
        .toFloat().reshape([B, D * H * W, m.classes])
    );
    this.#optimizer = tf.train.adam(o.lr, o.beta1, o.beta2, o.eps);
  }

  /** One Adam step, waited for; its loss (before the update) and milliseconds. */
  async step(): Promise<{ loss: number; ms: number }> {
    const t0 = performance.now();
    const cost = this.#optimizer.minimize(
      () =>
        tfjsLoss(
          tfjsForward(this.params, this.#x, this.#config.model),
          this.#onehot,
          this.#config.loss,
        ),
      true,
      [...this.params.values()],
    )!;
    // The read is submitted after the update's commands, and the queue runs in order.
    const [loss] = await cost.data();
    const ms = performance.now() - t0;
    cost.dispose();
    return { loss, ms };
  }

  dispose(): void {
    this.#optimizer.dispose();
    for (const v of this.params.values()) v.dispose();
    this.#x.dispose();
    this.#onehot.dispose();
  }
}

/**
 * voxseg vs TF.js WebGPU, one training step each, same network, weights and batch, in this
 * process. Full run: the reference U-Net (base 16, depth 4, 64³); `quick`: base 8, depth 3,
 * 32³. Both sides take 1 untimed warm-up step (pipeline compilation, buffer pools) and 2 timed
 * ones. `ratio` = TF.js ms / voxseg ms (median steps), given only when the first losses agree
 * (agreement.ts); otherwise null and `agreement` says why.
 */
export async function* tfjsPeer(options: { quick: boolean }): AsyncIterable<BenchResult> {
  const config = referenceConfig(options.quick ? SMALL_OVERRIDES : {});
  const m = config.model;
  const [D, H, W] = config.data.patchSize;
  const name = `tfjs-webgpu train step unet3d base${m.baseChannels} depth${m.depth} ${D}×${H}×${W}`;
  const warmup = 1, steps = 2;
  const peerWarmup = warmup;
  const gpu = await initGpu();
  const bench = new TrainStepBench(config);
  let weights: Map<string, HostTensor>;
  const times: number[] = [];
  let losses: number[];
  try {
    weights = await readWeights(bench.model);
    for (let i = 0; i < warmup; i++) await bench.step();
    for (let i = 0; i < steps; i++) times.push(await bench.step());
    losses = await bench.losses();
  } finally {
    bench.dispose();
  }
  const ms = median(times);
  const common = { ms, first_loss: losses[0], adapter: gpu.info.description };
  const reason = await useTfjsWebgpu();
  if (reason) {
    yield { name, ...common, skipped: reason };
    return;
  }
  const peer = new TfjsTrainStep(config, weights, referenceBatch(config));
  try {
    const tfjsTimes: number[] = [], tfjsLosses: number[] = [];
    for (let i = 0; i < peerWarmup + steps; i++) {
      const { loss, ms } = await peer.step();
      tfjsLosses.push(loss);
      if (i >= peerWarmup) tfjsTimes.push(ms);
    }
    const peerMs = median(tfjsTimes);
    // First losses, before any update: 1e-3 relative (agreement.ts FIRST_LOSS_TOLERANCE).
    const agreement = lossAgreement(losses[0], tfjsLosses[0]);
    yield {
      name,
      ms,
      peer_ms: peerMs,
      // > 1: voxseg is faster; null when the first losses disagree.
      ratio: agreedRatio(peerMs, ms, agreement),
      agree: agreement.agree,
      agreement: agreement.agreement,
      first_loss: losses[0],
      peer_first_loss: tfjsLosses[0],
      first_loss_rel_diff: Math.abs(tfjsLosses[0] - losses[0]) / Math.abs(losses[0]),
      // After one Adam update: checks every gradient.
      second_loss: losses[1],
      peer_second_loss: tfjsLosses[1],
      second_loss_rel_diff: Math.abs(tfjsLosses[1] - losses[1]) / Math.abs(losses[1]),
      steps: warmup + steps,
      peer_steps: peerWarmup + steps,
      peer: `tfjs ${tf.version.tfjs} webgpu`,
      adapter: gpu.info.description,
    };
  } finally {
    peer.dispose();
  }
}

if (import.meta.main) {
  for await (const r of tfjsPeer({ quick: Deno.args.includes("--quick") })) {
    console.log(JSON.stringify(r));
  }
}
