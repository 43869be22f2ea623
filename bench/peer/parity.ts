/**
 * Accuracy parity with PyTorch: the same short training in voxseg and in PyTorch
 * (bench/peer/unet3d_torch.py `--mode train-short`) from the same initial weights on the same
 * fixed batches must reach the same held-out Dice within noise.
 *
 * Data: synthetic chest-CT phantoms (src/data/synth.ts, 48×96×96, 12 lesions each, so that
 * infection is ~4% of the patches' voxels and is learnt within 100 steps), windowed to
 * −1000…400 HU and scaled to 0…1 as voxseg trains on CT. Training batches are 32³ crops from
 * 4 cases (a third centred on infection, a third on lung, a third anywhere), held-out patches
 * the same kind of crops from 2 other cases. All patches are drawn once, here, and written to
 * one safetensors file the PyTorch side reads.
 *
 * Network and step: U-Net base 8, depth 3, no norm, relu; Adam lr 3e-3, no clipping; voxseg's
 * default loss (Tversky α 0.3 β 0.7 without background + cross-entropy); batch 2; 100 steps
 * (`quick`: 20). Dice is computed here, on the arg-max labels of both sides, per foreground
 * class over all held-out voxels pooled, 2|P∩G| / (|P| + |G|). The time ratio is printed only
 * when the first losses agree (agreement.ts); timed are steps 2…n on both sides, voxseg's
 * including each batch's upload (PyTorch's CPU tensors need none), the CT window applied to
 * every patch beforehand, outside both timers.
 *
 * Noise: float32 training is chaotic — reduction order alone moves the loss curve after a few
 * dozen Adam steps. The yardstick is voxseg against itself from weights one rounding step away
 * (each weight times 1 ± 2⁻²³, random signs): PyTorch is "within noise" when it differs from
 * voxseg about as much as that run does.
 *
 *   deno run -A bench/peer/parity.ts [--quick]     # per-step losses, then the result as JSON
 */

import { join } from "node:path";
import {
  fromArray,
  initGpu,
  readTensors,
  recorder,
  scope,
  type Tensor,
} from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { synthCase } from "../../src/data/synth.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { DEFAULT_CT_WINDOW, normalizeInPlace } from "../../src/data/normalize.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import type { TrainConfig } from "../../src/train/config.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import { encodeSafetensors, type HostTensor } from "../../src/nn/safetensors.ts";
import { trainStep } from "../../src/train/trainer.ts";
import { loadWeights, readWeights } from "../../src/nn/weights.ts";
import type { BenchResult } from "../../src/cli/bench/suite.ts";
import { referenceConfig, runUnetTorch, torchLabel } from "../../src/cli/bench/train.ts";
import { agreedRatio, lossAgreement } from "../../src/cli/bench/agreement.ts";

/** Fixed patches: `steps` training batches and `val` held-out patches, channels-first. */
export interface ParityData {
  patch: Shape3;
  batchSize: number;
  /** [steps, B, 1, D, H, W] */
  trainImage: Float32Array;
  /** [steps, B, D, H, W] */
  trainLabels: Uint8Array;
  /** [V, 1, D, H, W] */
  valImage: Float32Array;
  /** [V, D, H, W] */
  valLabels: Uint8Array;
  steps: number;
  val: number;
}

/** The parity network and optimizer: base 8, depth 3, 32³, batch 2, plain Adam lr 3e-3. */
export function parityConfig(): TrainConfig {
  return referenceConfig({
    "model.baseChannels": "8",
    "model.depth": "3",
    "data.patchSize": "32,32,32",
    "data.batchSize": "2",
    "optimizer.lr": "3e-3",
  });
}

/** Lesions per phantom: enough infection to learn in a short run. */
const LESIONS = 12;

/**
 * Draws `count` crops of `patch` from `cases`, cycling through the cases: crop i is centred on
 * an infection voxel (i % 3 = 0, when the case has one), a lung voxel (i % 3 = 1) or anywhere.
 */
function crops(
  cases: { image: Float32Array; label: Uint8Array; shape: Shape3 }[],
  patch: Shape3,
  count: number,
  rng: Random,
): { image: Float32Array; labels: Uint8Array } {
  const [pd, ph, pw] = patch;
  const pv = pd * ph * pw;
  const image = new Float32Array(count * pv);
  const labels = new Uint8Array(count * pv);
  const byClass = cases.map(({ label }) =>
    [1, 2].map((c) => label.reduce<number[]>((a, v, i) => (v === c && a.push(i), a), []))
  );
  for (let i = 0; i < count; i++) {
    const k = i % cases.length;
    const { image: src, label, shape: [D, H, W] } = cases[k];
    const want = i % 3 === 0 ? byClass[k][1] : i % 3 === 1 ? byClass[k][0] : [];
    let z: number, y: number, x: number;
    if (want.length > 0) {
      const at = want[rng.int(0, want.length)];
      [z, y, x] = [Math.floor(at / (H * W)), Math.floor(at / W) % H, at % W];
      [z, y, x] = [z - (pd >> 1), y - (ph >> 1), x - (pw >> 1)];
    } else {
      [z, y, x] = [rng.int(0, D - pd + 1), rng.int(0, H - ph + 1), rng.int(0, W - pw + 1)];
    }
    z = Math.min(Math.max(z, 0), D - pd);
    y = Math.min(Math.max(y, 0), H - ph);
    x = Math.min(Math.max(x, 0), W - pw);
    for (let dz = 0, o = i * pv; dz < pd; dz++) {
      for (let dy = 0; dy < ph; dy++, o += pw) {
        const s = x + W * (y + dy + H * (z + dz));
        image.set(src.subarray(s, s + pw), o);
        labels.set(label.subarray(s, s + pw), o);
      }
    }
  }
  return { image, labels };
}

/** The fixed training batches and held-out patches (deterministic). */
export function parityData(steps: number, val: number, config = parityConfig()): ParityData {
  const patch = config.data.patchSize as Shape3;
  const batchSize = config.data.batchSize;
  const cases = [0, 1, 2, 3, 4, 5].map((seed) => {
    const c = synthCase(100 + seed, { lesionCount: LESIONS });
    const image = normalizeInPlace(Float32Array.from(c.image.data), DEFAULT_CT_WINDOW);
    return { image, label: c.label.data as Uint8Array, shape: c.image.shape };
  });
  const train = crops(cases.slice(0, 4), patch, steps * batchSize, new Random(1));
  const held = crops(cases.slice(4), patch, val, new Random(2));
  return {
    patch,
    batchSize,
    trainImage: train.image,
    trainLabels: train.labels,
    valImage: held.image,
    valLabels: held.labels,
    steps,
    val,
  };
}

/** Per foreground class c = 1 … classes−1: 2|P∩G| / (|P| + |G|) over all voxels (NaN if both empty). */
export function pooledDice(pred: Uint8Array, truth: Uint8Array, classes: number): number[] {
  const inter = new Float64Array(classes), p = new Float64Array(classes);
  const g = new Float64Array(classes);
  for (let i = 0; i < pred.length; i++) {
    p[pred[i]]++;
    g[truth[i]]++;
    if (pred[i] === truth[i]) inter[pred[i]]++;
  }
  return Array.from({ length: classes - 1 }, (_, k) => 2 * inter[k + 1] / (p[k + 1] + g[k + 1]));
}

/** Arg-max over channels of logits [N, C, V] → labels [N·V]. */
function argmaxChannels(logits: Float32Array, n: number, c: number, v: number): Uint8Array {
  const out = new Uint8Array(n * v);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < v; i++) {
      let best = 0, bestVal = logits[b * c * v + i];
      for (let k = 1; k < c; k++) {
        const val = logits[(b * c + k) * v + i];
        if (val > bestVal) [best, bestVal] = [k, val];
      }
      out[b * v + i] = best;
    }
  }
  return out;
}

/** voxseg's side: one step per batch, then held-out arg-max labels. */
export async function trainVoxseg(
  model: UNet3D,
  config: TrainConfig,
  data: ParityData,
): Promise<{ losses: number[]; pred: Uint8Array; seconds: number }> {
  const [D, H, W] = data.patch;
  const pv = D * H * W, B = data.batchSize, C = config.model.classes;
  const optimizer = new Optimizer(model.trainable(), config.optimizer);
  const losses: Tensor[] = [];
  let t0 = performance.now();
  try {
    for (let s = 0; s < data.steps; s++) {
      // The first step compiles pipelines and fills the pool: time the others (so does the peer).
      if (s === 1) {
        await recorder().sync();
        t0 = performance.now();
      }
      const x = fromArray([B, 1, D, H, W], data.trainImage.subarray(s * B * pv, (s + 1) * B * pv));
      const labels = fromArray(
        [B, D, H, W],
        Uint32Array.from(data.trainLabels.subarray(s * B * pv, (s + 1) * B * pv)),
        "u32",
      );
      const { loss, control } = trainStep(model, optimizer, x, labels, config, config.optimizer.lr);
      losses.push(loss);
      control.dispose();
      x.dispose();
      labels.dispose();
    }
    await recorder().sync();
    const seconds = (performance.now() - t0) / 1000;
    const pred = new Uint8Array(data.val * pv);
    for (let i = 0; i < data.val; i++) {
      const x = fromArray([1, 1, D, H, W], data.valImage.subarray(i * pv, (i + 1) * pv));
      const y = scope(() => model.forward(x, { training: false }));
      const [logits] = await readTensors([y]);
      pred.set(argmaxChannels(logits, 1, C, pv), i * pv);
      x.dispose();
      y.dispose();
    }
    return { losses: (await readTensors(losses)).map((l) => l[0]), pred, seconds };
  } finally {
    for (const l of losses) l.dispose();
    optimizer.dispose();
  }
}

/** Per-step losses of both sides and of the perturbed voxseg run, printed by the script. */
export interface ParityCurves {
  voxseg: number[];
  torch: number[];
  perturbed: number[];
}

/** `weights` with each value times 1 ± 2⁻²³ (one float32 rounding step), random signs. */
export function perturbWeights(
  weights: Map<string, HostTensor>,
  seed = 7,
): Map<string, HostTensor> {
  const rng = new Random(seed);
  const out = new Map<string, HostTensor>();
  for (const [name, t] of weights) {
    const data = t.data.map((v) => v * (1 + (rng.next() < 0.5 ? -1 : 1) * 2 ** -23));
    out.set(name, { shape: [...t.shape], data });
  }
  return out;
}

/** |a − b| per step: max, mean and at the last step. */
function curveDiff(a: number[], b: number[]): { max: number; mean: number; last: number } {
  const d = a.map((v, i) => Math.abs(v - b[i]));
  return { max: Math.max(...d), mean: d.reduce((x, y) => x + y, 0) / d.length, last: d.at(-1)! };
}

function agreement(a: Uint8Array, b: Uint8Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) same += a[i] === b[i] ? 1 : 0;
  return same / a.length;
}

/**
 * Trains both sides (and voxseg from perturbed weights, the noise yardstick) and yields one
 * result: loss differences per step (max, mean, last), the held-out Dice of each run per
 * class, the share of held-out voxels whose labels agree with voxseg's, and the training time
 * ratio. 100 steps (`quick`: 20), 8 held-out patches.
 */
export async function* parityPeer(
  options: { quick: boolean },
  curves?: ParityCurves,
): AsyncIterable<BenchResult> {
  const gpu = await initGpu();
  const config = parityConfig();
  const steps = options.quick ? 20 : 100, val = 8;
  const m = config.model;
  const [D, H, W] = config.data.patchSize;
  const name = `pytorch parity ${steps} steps unet3d base${m.baseChannels} depth${m.depth} ` +
    `${D}×${H}×${W} batch${config.data.batchSize}`;
  const data = parityData(steps, val, config);
  const model = new UNet3D(m, 0);
  const dir = await Deno.makeTempDir({ prefix: "voxseg_parity_" });
  try {
    const weightsPath = join(dir, "weights.safetensors");
    const batchesPath = join(dir, "batches.safetensors");
    const predPath = join(dir, "torch_pred.u8");
    const initial = await readWeights(model);
    await Deno.writeFile(weightsPath, encodeSafetensors(initial));
    const B = data.batchSize;
    await Deno.writeFile(
      batchesPath,
      encodeSafetensors({
        train_image: { shape: [steps, B, 1, D, H, W], data: data.trainImage },
        // voxseg's safetensors are F32 only; the peer casts labels to int64.
        train_labels: { shape: [steps, B, D, H, W], data: Float32Array.from(data.trainLabels) },
        val_image: { shape: [val, 1, D, H, W], data: data.valImage },
        val_labels: { shape: [val, D, H, W], data: Float32Array.from(data.valLabels) },
      }),
    );
    const ours = await trainVoxseg(model, config, data);
    loadWeights(model, perturbWeights(initial));
    const noise = await trainVoxseg(model, config, data);
    const peer = await runUnetTorch(config, [
      ...["--mode", "train-short", "--weights", weightsPath, "--batches", batchesPath],
      ...["--pred-out", predPath],
    ]);
    const dice = pooledDice(ours.pred, data.valLabels, m.classes);
    const noiseDice = pooledDice(noise.pred, data.valLabels, m.classes);
    const noiseDiff = curveDiff(noise.losses, ours.losses);
    const common = {
      steps,
      val_patches: val,
      dice_lung: dice[0],
      dice_infection: dice[1],
      first_loss: ours.losses[0],
      last_loss: ours.losses.at(-1)!,
      // The noise yardstick: voxseg from weights one rounding step away.
      perturbed_dice_lung: noiseDice[0],
      perturbed_dice_infection: noiseDice[1],
      perturbed_label_agreement: agreement(noise.pred, ours.pred),
      perturbed_loss_diff_max: noiseDiff.max,
      perturbed_loss_diff_mean: noiseDiff.mean,
      perturbed_loss_diff_last: noiseDiff.last,
      // Steps 2…n (the first one warms up), both sides.
      seconds: ours.seconds,
      adapter: gpu.info.description,
    };
    if (!peer.ok) {
      yield { name, ...common, skipped: peer.reason };
      return;
    }
    const theirLosses = peer.out.losses as number[];
    const theirPred = await Deno.readFile(predPath);
    const theirDice = pooledDice(theirPred, data.valLabels, m.classes);
    const diff = curveDiff(theirLosses, ours.losses);
    if (curves) {
      Object.assign(curves, { voxseg: ours.losses, torch: theirLosses, perturbed: noise.losses });
    }
    const peerSeconds = peer.out.seconds as number;
    // Only the first loss is held to a tolerance (1e-3 relative, agreement.ts): later ones
    // drift apart chaotically in f32 (see the module comment), which the Dice figures judge.
    const firstLoss = lossAgreement(ours.losses[0], theirLosses[0]);
    yield {
      name,
      ...common,
      peer_dice_lung: theirDice[0],
      peer_dice_infection: theirDice[1],
      label_agreement: agreement(theirPred, ours.pred),
      peer_first_loss: theirLosses[0],
      peer_last_loss: theirLosses.at(-1)!,
      loss_diff_max: diff.max,
      loss_diff_mean: diff.mean,
      loss_diff_last: diff.last,
      peer_seconds: peerSeconds,
      // Training time of the whole short run, > 1: voxseg is faster; null when the first
      // losses disagree (then the two sides did not train the same network on the same data).
      ratio: agreedRatio(peerSeconds, ours.seconds, firstLoss),
      agree: firstLoss.agree,
      agreement: firstLoss.agreement,
      peer: torchLabel(peer.out),
    };
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const curves: ParityCurves = { voxseg: [], torch: [], perturbed: [] };
  for await (const r of parityPeer({ quick: Deno.args.includes("--quick") }, curves)) {
    if (curves.torch.length > 0) {
      console.log("step  voxseg     pytorch    |diff|    voxseg perturbed  |diff|");
      curves.voxseg.forEach((l, i) => {
        const [t, n] = [curves.torch[i], curves.perturbed[i]];
        const e = (v: number) => v.toExponential(2).padEnd(9);
        console.log(
          `${String(i + 1).padStart(4)}  ${l.toFixed(6)}  ${t.toFixed(6)}  ${e(Math.abs(l - t))} ` +
            `${n.toFixed(6)}          ${e(Math.abs(l - n))}`,
        );
      });
    }
    console.log(JSON.stringify(r));
  }
}
