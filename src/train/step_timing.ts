/**
 * A training step on a fixed synthetic batch, prepared once and timed step by step: what the
 * training benchmarks compare against their peers, and what a time budget measures to size a
 * run on this adapter (src/train/plan).
 */

import { fromArray, readTensors, recorder, type Tensor } from "../gpu/mod.ts";
import { Random } from "../base/random.ts";
import { createModel, type SegmentationNet } from "../nn/model.ts";
import type { TrainConfig } from "./config.ts";
import { Optimizer } from "./optimizer.ts";
import { encodeSafetensors } from "../nn/safetensors.ts";
import { trainStep } from "./trainer.ts";
import { readWeights } from "../nn/weights.ts";

/**
 * A fixed batch: per patch, a noisy bright ellipsoid ("lung", class 1) holding a darker blob
 * ("infection", class 2; class 1 when the network has two classes) on a dark background, so
 * every class is present. Image [B, C, D, H, W] (the same intensities in every input channel)
 * and labels [B, D, H, W].
 */
export function referenceBatch(config: TrainConfig): { image: Float32Array; labels: Uint32Array } {
  const [D, H, W] = config.data.patchSize;
  const B = config.data.batchSize;
  const rng = new Random(42);
  const image = new Float32Array(B * D * H * W);
  const labels = new Uint32Array(B * D * H * W);
  for (let b = 0, i = 0; b < B; b++) {
    for (let z = 0; z < D; z++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++, i++) {
          const [u, v, w] = [(z + 0.5) / D - 0.5, (y + 0.5) / H - 0.5, (x + 0.5) / W - 0.55];
          const lung = (u / 0.4) ** 2 + (v / 0.35) ** 2 + (w / 0.3) ** 2 < 1;
          const infection = lung && (u - 0.1) ** 2 + (v + 0.05) ** 2 + (w - 0.05) ** 2 < 0.012;
          labels[i] = Math.min(infection ? 2 : lung ? 1 : 0, config.model.classes - 1);
          image[i] = (infection ? 0.55 : lung ? 0.15 : 0.8) + 0.05 * rng.normal();
        }
      }
    }
  }
  return { image: perChannel(image, B, config.model.inChannels), labels };
}

/** [B, D, H, W] intensities repeated into [B, C, D, H, W] (the same image in every channel). */
function perChannel(image: Float32Array, batch: number, channels: number): Float32Array {
  if (channels === 1) return image;
  const n = image.length / batch;
  const out = new Float32Array(image.length * channels);
  for (let b = 0; b < batch; b++) {
    const src = image.subarray(b * n, (b + 1) * n);
    for (let c = 0; c < channels; c++) out.set(src, (b * channels + c) * n);
  }
  return out;
}

/** A prepared voxseg training step on the reference batch; `step()` runs and times one. */
export class TrainStepBench {
  readonly config: TrainConfig;
  readonly model: SegmentationNet;
  readonly optimizer: Optimizer;
  readonly #x: Tensor;
  readonly #labels: Tensor;
  /** Loss tensors of the steps taken, read back together by {@link losses}. */
  readonly #losses: Tensor[] = [];

  constructor(config: TrainConfig, seed = 0) {
    this.config = config;
    this.model = createModel(config.model, seed);
    this.optimizer = new Optimizer(this.model.trainable(), config.optimizer);
    const [D, H, W] = config.data.patchSize;
    const B = config.data.batchSize;
    const { image, labels } = referenceBatch(config);
    this.#x = fromArray([B, config.model.inChannels, D, H, W], image);
    this.#labels = fromArray([B, D, H, W], labels, "u32");
  }

  /** One training step, waited for on the GPU; returns its milliseconds. */
  async step(): Promise<number> {
    const t0 = performance.now();
    const { loss, control } = trainStep(
      this.model,
      this.optimizer,
      this.#x,
      this.#labels,
      this.config,
      this.config.optimizer.lr,
    );
    await recorder().sync();
    const ms = performance.now() - t0;
    control.dispose();
    this.#losses.push(loss);
    return ms;
  }

  /** `warmup` untimed steps, then the milliseconds of each of `steps` timed ones. */
  async timedSteps(warmup: number, steps: number): Promise<number[]> {
    for (let i = 0; i < warmup; i++) await this.step();
    const times: number[] = [];
    for (let i = 0; i < steps; i++) times.push(await this.step());
    return times;
  }

  /** The loss of every step taken so far (each computed before that step's update). */
  async losses(): Promise<number[]> {
    return (await readTensors(this.#losses)).map((l) => l[0]);
  }

  /** The model weights and the batch, as the safetensors files the PyTorch peer reads. */
  async peerFiles(): Promise<{ weights: Uint8Array; batch: Uint8Array }> {
    const { image, labels } = referenceBatch(this.config);
    return {
      weights: encodeSafetensors(await readWeights(this.model)),
      batch: encodeSafetensors({
        image: { shape: [...this.#x.shape], data: image },
        // safetensors from voxseg is F32 only; the peer casts labels back to int64.
        labels: { shape: [...this.#labels.shape], data: Float32Array.from(labels) },
      }),
    };
  }

  dispose(): void {
    for (const t of [...this.#losses, this.#x, this.#labels]) t.dispose();
    this.optimizer.dispose();
    this.model.dispose();
  }
}
