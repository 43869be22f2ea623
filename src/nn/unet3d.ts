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
 *   aux.{l}.weight/bias           Conv3d(ch(l) → classes, 1), 1 ≤ l ≤ depth−2, only with
 *                                 `deepSupervision`: logits at 1/2^l resolution for training
 *
 * With `deepSupervision` (nnU-Net's deep supervision), every decoder level below full
 * resolution gets its own 1×1×1 head; {@link UNet3D.forwardDeep} returns those outputs beside
 * the main one for the training loss (src/train/deep_supervision.ts). Inference, export and
 * `forward` use only `head`. The auxiliary heads are initialised after every other tensor, so
 * the rest of the weights are the same for a seed whether or not they exist.
 */

import * as F from "../autograd/functional.ts";
import type { Tensor } from "../gpu/mod.ts";
import type { Zyx } from "../autograd/functional.ts";
import { NetBase, type Parameter } from "./net_base.ts";
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
  /**
   * Auxiliary 1×1×1 heads on decoder levels 1…depth−2 for deep supervision; absent means
   * false (configs and checkpoints from before the field).
   */
  deepSupervision?: boolean;
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
  deepSupervision: false,
};

export type { Parameter };

export class UNet3D extends NetBase<UNet3DConfig> {
  /** Builds the network with freshly initialised weights from `seed`. */
  constructor(config: Partial<UNet3DConfig> = {}, seed = 0) {
    const full = { ...defaultUNetConfig, ...config };
    validateConfig(full);
    super(full, "UNet3D");
    const rng = new Random(seed);
    const c = this.config;
    const ch = (l: number) => c.baseChannels * 2 ** l;
    const k3: Zyx = [3, 3, 3];
    for (let l = 0; l < c.depth; l++) {
      this.addBlock(`enc.${l}`, l === 0 ? c.inChannels : ch(l - 1), ch(l), k3, rng);
    }
    for (let l = c.depth - 2; l >= 0; l--) {
      const ci = ch(l + 1), co = ch(l);
      this.add(`up.${l}.weight`, [ci, co, 2, 2, 2], initWeights(ci * co * 8, ci, co, c.init, rng));
      this.add(`up.${l}.bias`, [co], new Float32Array(co));
      this.addBlock(`dec.${l}`, 2 * co, co, k3, rng);
    }
    this.addHead("head", ch(0), rng);
    if (c.deepSupervision !== true) return;
    for (let l = 1; l <= c.depth - 2; l++) this.addHead(`aux.${l}`, ch(l), rng);
  }

  /** Smallest input edge step: spatial sizes must be multiples of this. */
  get sizeMultiple(): number {
    return 2 ** (this.config.depth - 1);
  }

  protected run(x: Tensor, training: boolean, deep: boolean): Tensor[] {
    const c = this.config, m = this.sizeMultiple;
    this.checkInput(x, [m, m, m], `${m} (depth ${c.depth})`);
    const skips: Tensor[] = [];
    let h = x;
    for (let l = 0; l < c.depth; l++) {
      if (l > 0) h = F.maxPool3d(h);
      h = this.#block(`enc.${l}`, h, training);
      skips.push(h);
    }
    return this.decode(
      h,
      skips,
      deep,
      (h, l) => F.convTranspose3d(h, this.t(`up.${l}.weight`), this.t(`up.${l}.bias`)),
      (prefix, h) => this.#block(prefix, h, training),
    );
  }

  #block(prefix: string, x: Tensor, training: boolean): Tensor {
    const c = this.config;
    if (c.norm !== "none") {
      return this.runBlock(prefix, x, training, (h, w, b) => F.conv3d(h, w, b));
    }
    // Without a norm between them, the activation runs inside the convolution kernel.
    let h = x;
    for (let i = 1; i <= c.convsPerLevel; i++) {
      const p = `${prefix}.conv${i}`;
      h = F.conv3dAct(h, this.t(`${p}.weight`), this.t(`${p}.bias`), { kind: c.activation });
    }
    return h;
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
  if (c.deepSupervision !== undefined && typeof c.deepSupervision !== "boolean") {
    throw new Error(`UNet3D: deepSupervision must be true or false, got ${c.deepSupervision}`);
  }
}
