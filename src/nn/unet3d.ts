/**
 * The 3D U-Net: an encoder of convolution blocks joined by 2× max-pooling, a decoder of 2×
 * transposed convolutions whose outputs are concatenated with the encoder's skip features,
 * and a 1×1×1 head producing class logits (softmax gives probabilities).
 *
 * Level l has `baseChannels · 2^l` channels; `depth` levels in all, the deepest being the
 * bottleneck. Parameter names follow PyTorch's `state_dict` for the equivalent module:
 *
 *   enc.{l}.conv{i}.weight/bias   3×3×3 convolutions, i = 1..convsPerLevel
 *   enc.{l}.norm{i}.weight/bias   (+ running_mean/running_var for batch norm)
 *   up.{l}.weight/bias            ConvTranspose3d(ch(l+1) → ch(l), 2, stride 2), l < depth−1
 *   dec.{l}.conv{i}…, dec.{l}.norm{i}…   decoder blocks at level l
 *   head.weight/bias              Conv3d(ch(0) → classes, 1)
 */

import * as F from "../autograd/functional.ts";
import { fromArray, type Tensor } from "../gpu/mod.ts";
import { Random } from "../base/random.ts";
import { type InitKind, initWeights } from "./init.ts";

/** The activations, in help order. */
export const ACTIVATIONS = ["relu", "elu", "leaky_relu"] as const;
export type Activation = (typeof ACTIVATIONS)[number];
/** The normalisation layers, in help order. */
export const NORM_KINDS = ["none", "instance", "batch"] as const;
export type NormKind = (typeof NORM_KINDS)[number];

export interface UNet3DConfig {
  inChannels: number;
  classes: number;
  baseChannels: number;
  /** Levels including the bottleneck; the input size must be divisible by 2^(depth−1). */
  depth: number;
  convsPerLevel: number;
  activation: Activation;
  norm: NormKind;
  init: InitKind;
}

export const defaultUNetConfig: UNet3DConfig = {
  inChannels: 1,
  classes: 3,
  baseChannels: 16,
  depth: 4,
  convsPerLevel: 2,
  activation: "relu",
  norm: "none",
  init: "he",
};

/** A named tensor of the model; buffers (running statistics) are not trained. */
export interface Parameter {
  name: string;
  tensor: Tensor;
  trainable: boolean;
}

export class UNet3D {
  readonly config: UNet3DConfig;
  readonly params = new Map<string, Parameter>();

  /** Builds the network with freshly initialised weights from `seed`. */
  constructor(config: Partial<UNet3DConfig> = {}, seed = 0) {
    this.config = { ...defaultUNetConfig, ...config };
    validateConfig(this.config);
    const rng = new Random(seed);
    const c = this.config;
    const ch = (l: number) => c.baseChannels * 2 ** l;
    for (let l = 0; l < c.depth; l++) {
      this.#block(`enc.${l}`, l === 0 ? c.inChannels : ch(l - 1), ch(l), rng);
    }
    for (let l = c.depth - 2; l >= 0; l--) {
      const ci = ch(l + 1), co = ch(l);
      this.#add(`up.${l}.weight`, [ci, co, 2, 2, 2], initWeights(ci * co * 8, ci, co, c.init, rng));
      this.#add(`up.${l}.bias`, [co], new Float32Array(co));
      this.#block(`dec.${l}`, 2 * co, co, rng);
    }
    const c0 = ch(0);
    this.#add(
      "head.weight",
      [c.classes, c0, 1, 1, 1],
      initWeights(c.classes * c0, c0, c.classes, c.init, rng, 1),
    );
    this.#add("head.bias", [c.classes], new Float32Array(c.classes));
  }

  /** Smallest input edge step: spatial sizes must be multiples of this. */
  get sizeMultiple(): number {
    return 2 ** (this.config.depth - 1);
  }

  /** Trainable parameters in a stable order. */
  trainable(): Parameter[] {
    return [...this.params.values()].filter((p) => p.trainable);
  }

  /** Class logits [N, classes, D, H, W] for input x [N, inChannels, D, H, W]. */
  forward(x: Tensor, { training = true } = {}): Tensor {
    const c = this.config;
    const [, ci, ...spatial] = x.shape;
    if (x.shape.length !== 5 || ci !== c.inChannels) {
      throw new Error(`UNet3D: input must be [N, ${c.inChannels}, D, H, W], got [${x.shape}]`);
    }
    const m = this.sizeMultiple;
    if (spatial.some((s) => s % m !== 0)) {
      throw new Error(
        `UNet3D: spatial size ${spatial.join("×")} must be divisible by ${m} (depth ${c.depth}); ` +
          `pad the input or choose a patch size that is a multiple of ${m}`,
      );
    }
    const skips: Tensor[] = [];
    let h = x;
    for (let l = 0; l < c.depth; l++) {
      if (l > 0) h = F.maxPool3d(h);
      h = this.#runBlock(`enc.${l}`, h, training);
      skips.push(h);
    }
    for (let l = c.depth - 2; l >= 0; l--) {
      h = F.convTranspose3d(h, this.#t(`up.${l}.weight`), this.#t(`up.${l}.bias`));
      h = F.concatChannels(skips[l], h);
      h = this.#runBlock(`dec.${l}`, h, training);
    }
    return F.conv3d(h, this.#t("head.weight"), this.#t("head.bias"));
  }

  /** Frees every parameter's GPU buffer. */
  dispose(): void {
    for (const p of this.params.values()) p.tensor.dispose();
    this.params.clear();
  }

  #block(prefix: string, cin: number, cout: number, rng: Random): void {
    const c = this.config;
    for (let i = 1; i <= c.convsPerLevel; i++) {
      const ci = i === 1 ? cin : cout;
      const w = initWeights(cout * ci * 27, ci * 27, cout * 27, c.init, rng);
      this.#add(`${prefix}.conv${i}.weight`, [cout, ci, 3, 3, 3], w);
      this.#add(`${prefix}.conv${i}.bias`, [cout], new Float32Array(cout));
      if (c.norm !== "none") {
        this.#add(`${prefix}.norm${i}.weight`, [cout], new Float32Array(cout).fill(1));
        this.#add(`${prefix}.norm${i}.bias`, [cout], new Float32Array(cout));
      }
      if (c.norm === "batch") {
        this.#add(`${prefix}.norm${i}.running_mean`, [cout], new Float32Array(cout), false);
        this.#add(`${prefix}.norm${i}.running_var`, [cout], new Float32Array(cout).fill(1), false);
      }
    }
  }

  #runBlock(prefix: string, x: Tensor, training: boolean): Tensor {
    const c = this.config;
    let h = x;
    for (let i = 1; i <= c.convsPerLevel; i++) {
      const p = `${prefix}.conv${i}`, n = `${prefix}.norm${i}`;
      if (c.norm === "none") {
        // Without a norm between them, the activation runs inside the convolution kernel.
        h = F.conv3dAct(h, this.#t(`${p}.weight`), this.#t(`${p}.bias`), { kind: c.activation });
        continue;
      }
      h = F.conv3d(h, this.#t(`${p}.weight`), this.#t(`${p}.bias`));
      if (c.norm === "instance") {
        h = F.instanceNorm(h, this.#t(`${n}.weight`), this.#t(`${n}.bias`));
      } else if (c.norm === "batch") {
        h = F.batchNorm(h, this.#t(`${n}.weight`), this.#t(`${n}.bias`), {
          training,
          runningMean: this.#t(`${n}.running_mean`),
          runningVar: this.#t(`${n}.running_var`),
        });
      }
      h = c.activation === "relu" ? F.relu(h) : c.activation === "elu" ? F.elu(h) : F.leakyRelu(h);
    }
    return h;
  }

  #add(name: string, shape: number[], data: Float32Array, trainable = true): void {
    this.params.set(name, { name, tensor: fromArray(shape, data), trainable });
  }

  #t(name: string): Tensor {
    const p = this.params.get(name);
    if (!p) throw new Error(`UNet3D: no parameter ${name}`);
    return p.tensor;
  }
}

function validateConfig(c: UNet3DConfig): void {
  const positive = ["inChannels", "classes", "baseChannels", "depth", "convsPerLevel"] as const;
  for (const k of positive) {
    if (!Number.isInteger(c[k]) || c[k] < 1) {
      throw new Error(`UNet3D: ${k} must be a positive integer, got ${c[k]}`);
    }
  }
  if (c.classes < 2) {
    throw new Error(`UNet3D: classes must be ≥ 2 (background + one), got ${c.classes}`);
  }
  if (!["relu", "elu", "leaky_relu"].includes(c.activation)) {
    throw new Error(`UNet3D: activation must be relu, elu or leaky_relu, got ${c.activation}`);
  }
  if (!["none", "instance", "batch"].includes(c.norm)) {
    throw new Error(`UNet3D: norm must be none, instance or batch, got ${c.norm}`);
  }
  if (!["he", "glorot"].includes(c.init)) {
    throw new Error(`UNet3D: init must be he or glorot, got ${c.init}`);
  }
}
