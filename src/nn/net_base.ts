/**
 * What voxseg's U-Nets share: the named parameters (PyTorch `state_dict` names), how a block of
 * convolutions with their norms is created and run, the 1×1×1 heads, the decoder (up, concat
 * the skip, block; an auxiliary head per level for deep supervision), and `forward` /
 * `forwardDeep` / `dispose`. A network says how it goes down and up and what a convolution is.
 */

import * as F from "../autograd/functional.ts";
import type { Zyx } from "../autograd/functional.ts";
import { fromArray, type Tensor } from "../gpu/mod.ts";
import type { Random } from "../base/random.ts";
import { type InitKind, initWeights } from "./init.ts";

/** A named tensor of the model; buffers (running statistics) are not trained. */
export interface Parameter {
  name: string;
  tensor: Tensor;
  trainable: boolean;
}

/** The config fields the shared parts read. */
export interface NetConfigBase {
  inChannels: number;
  classes: number;
  depth: number;
  convsPerLevel: number;
  activation: "relu" | "elu" | "leaky_relu";
  norm: "none" | "instance" | "batch";
  init: InitKind;
  deepSupervision?: boolean;
}

export abstract class NetBase<C extends NetConfigBase> {
  readonly params = new Map<string, Parameter>();

  /** `kind` names the network in errors. */
  protected constructor(readonly config: C, private readonly kind: string) {}

  /** Trainable parameters in a stable order. */
  trainable(): Parameter[] {
    return [...this.params.values()].filter((p) => p.trainable);
  }

  /** Class logits [N, classes, D, H, W] for input x [N, inChannels, D, H, W]. */
  forward(x: Tensor, { training = true } = {}): Tensor {
    return this.run(x, training, false)[0];
  }

  /**
   * Class logits at every supervised scale, full resolution first: element k comes from the
   * decoder level k (k = 0 from `head`, k ≥ 1 from `aux.{k}`), at the input size divided per
   * axis by that level's cumulative stride; depth − 1 in all (one for depth 1). Element 0 is
   * exactly what {@link forward} returns. Needs a model built with `deepSupervision: true`.
   *
   * @example
   * const [full, half, quarter] = net.forwardDeep(x); // depth 4
   */
  forwardDeep(x: Tensor, { training = true } = {}): Tensor[] {
    if (this.config.deepSupervision !== true) {
      throw new Error(
        `${this.kind}.forwardDeep: the model has no auxiliary heads; build it with ` +
          "deepSupervision: true (--model.deepSupervision true), or call forward",
      );
    }
    return this.run(x, training, true);
  }

  /** Frees every parameter's GPU buffer. */
  dispose(): void {
    for (const p of this.params.values()) p.tensor.dispose();
    this.params.clear();
  }

  /** The main logits, then (when `deep`) the auxiliary logits of levels 1…depth−2. */
  protected abstract run(x: Tensor, training: boolean, deep: boolean): Tensor[];

  /**
   * The decoder from the bottleneck `h`: per level from depth − 2 up, `up` then the skip
   * concatenated then `block`, with an auxiliary head on levels ≥ 1 when `deep`; then the head.
   */
  protected decode(
    h: Tensor,
    skips: readonly Tensor[],
    deep: boolean,
    up: (h: Tensor, level: number) => Tensor,
    block: (prefix: string, h: Tensor) => Tensor,
  ): Tensor[] {
    const aux: Tensor[] = [];
    for (let l = this.config.depth - 2; l >= 0; l--) {
      h = block(`dec.${l}`, F.concatChannels(skips[l], up(h, l)));
      if (deep && l > 0) aux.unshift(this.conv1(`aux.${l}`, h));
    }
    return [this.conv1("head", h), ...aux];
  }

  /**
   * `convsPerLevel` convolutions of kernel `k` (`conv{i}` weight [cout, cin, ...k] and bias),
   * each with its norm's parameters (`norm{i}`), initialised from `rng` in that order.
   */
  protected addBlock(prefix: string, cin: number, cout: number, k: Zyx, rng: Random): void {
    const c = this.config;
    const taps = k[0] * k[1] * k[2];
    for (let i = 1; i <= c.convsPerLevel; i++) {
      const ci = i === 1 ? cin : cout;
      const w = initWeights(cout * ci * taps, ci * taps, cout * taps, c.init, rng);
      this.add(`${prefix}.conv${i}.weight`, [cout, ci, ...k], w);
      this.add(`${prefix}.conv${i}.bias`, [cout], new Float32Array(cout));
      if (c.norm !== "none") {
        this.add(`${prefix}.norm${i}.weight`, [cout], new Float32Array(cout).fill(1));
        this.add(`${prefix}.norm${i}.bias`, [cout], new Float32Array(cout));
      }
      if (c.norm === "batch") {
        this.add(`${prefix}.norm${i}.running_mean`, [cout], new Float32Array(cout), false);
        this.add(`${prefix}.norm${i}.running_var`, [cout], new Float32Array(cout).fill(1), false);
      }
    }
  }

  /** A 1×1×1 convolution from `cin` channels to class logits (gain 1). */
  protected addHead(prefix: string, cin: number, rng: Random): void {
    const k = this.config.classes;
    this.add(
      `${prefix}.weight`,
      [k, cin, 1, 1, 1],
      initWeights(k * cin, cin, k, this.config.init, rng, 1),
    );
    this.add(`${prefix}.bias`, [k], new Float32Array(k));
  }

  /**
   * The block `prefix` on `x`: per convolution, `conv(h, weight, bias, i)`, then the norm and
   * the activation.
   */
  protected runBlock(
    prefix: string,
    x: Tensor,
    training: boolean,
    conv: (h: Tensor, w: Tensor, b: Tensor, i: number) => Tensor,
  ): Tensor {
    const c = this.config;
    let h = x;
    for (let i = 1; i <= c.convsPerLevel; i++) {
      const p = `${prefix}.conv${i}`, n = `${prefix}.norm${i}`;
      h = conv(h, this.t(`${p}.weight`), this.t(`${p}.bias`), i);
      if (c.norm === "instance") {
        h = F.instanceNorm(h, this.t(`${n}.weight`), this.t(`${n}.bias`));
      } else if (c.norm === "batch") {
        h = F.batchNorm(h, this.t(`${n}.weight`), this.t(`${n}.bias`), {
          training,
          runningMean: this.t(`${n}.running_mean`),
          runningVar: this.t(`${n}.running_var`),
        });
      }
      h = this.activate(h);
    }
    return h;
  }

  protected activate(h: Tensor): Tensor {
    const a = this.config.activation;
    return a === "relu" ? F.relu(h) : a === "elu" ? F.elu(h) : F.leakyRelu(h);
  }

  /** Checks x is [N, inChannels, D, H, W] with each edge a multiple of `multiple` (z, y, x). */
  protected checkInput(x: Tensor, multiple: Zyx, why: string): void {
    const c = this.config;
    const [, ci, ...spatial] = x.shape;
    if (x.shape.length !== 5 || ci !== c.inChannels) {
      throw new Error(
        `${this.kind}: input must be [N, ${c.inChannels}, D, H, W], got [${x.shape}]`,
      );
    }
    if (spatial.some((e, i) => e % multiple[i] !== 0)) {
      throw new Error(
        `${this.kind}: spatial size ${spatial.join("×")} must be divisible by ${why}; pad the ` +
          "input or choose a patch size that is a multiple of it",
      );
    }
  }

  protected add(name: string, shape: number[], data: Float32Array, trainable = true): void {
    this.params.set(name, { name, tensor: fromArray(shape, data), trainable });
  }

  protected t(name: string): Tensor {
    const p = this.params.get(name);
    if (!p) throw new Error(`${this.kind}: no parameter ${name}`);
    return p.tensor;
  }

  /** The 1×1×1 head `prefix` on h. */
  private conv1(prefix: string, h: Tensor): Tensor {
    return F.conv3d(h, this.t(`${prefix}.weight`), this.t(`${prefix}.bias`));
  }
}
