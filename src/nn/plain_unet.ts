/**
 * nnU-Net's PlainConvUNet: a U-Net whose stages each have their own convolution kernel and
 * down-sampling stride per axis (z, y, x), so a plan for anisotropic voxels can convolve 1×3×3
 * and halve only y and x where z is coarse.
 *
 * Stage s (0 … depth−1) has `min(baseChannels · 2^s, maxChannels)` channels. Encoder stage s is
 * `convsPerLevel` convolutions of kernel `kernels[s]` (padding k // 2), the first of them with
 * stride `strides[s]` (down-sampling by strided convolution, no pooling; stage 0's stride is
 * 1,1,1), each followed by the configured norm and activation (nnU-Net: instance norm, affine,
 * and leaky ReLU, slope 0.01). Decoder stage s (depth−2 … 0): a transposed convolution from
 * stage s+1 with kernel = stride = `strides[s+1]`, the skip of encoder stage s concatenated in
 * front, then `convsPerLevel` convolutions of kernel `kernels[s]` at stride 1. A 1×1×1
 * convolution gives class logits. An input's D, H, W must be multiples of the product of the
 * strides along each axis ({@link cumulativeStrides}).
 *
 * Parameter names follow PyTorch's `state_dict`, in the same scheme as src/nn/unet3d.ts:
 *
 *   enc.{s}.conv{i}.weight/bias   Conv3d(…, kernels[s], stride strides[s] for i = 1, else 1):
 *                                 weight [out, in, kd, kh, kw]
 *   enc.{s}.norm{i}.weight/bias   (+ running_mean/running_var for batch norm)
 *   up.{s}.weight/bias            ConvTranspose3d(ch(s+1) → ch(s), strides[s+1], stride
 *                                 strides[s+1]): weight [in, out, sd, sh, sw], s < depth−1
 *   dec.{s}.conv{i}…, dec.{s}.norm{i}…   decoder stage s (conv1 takes 2·ch(s) channels)
 *   head.weight/bias              Conv3d(ch(0) → classes, 1)
 *   aux.{s}.weight/bias           Conv3d(ch(s) → classes, 1), 1 ≤ s ≤ depth−2, only with
 *                                 `deepSupervision`
 *
 * {@link PlainConvUNet.forwardDeep} keeps UNet3D's contract: the main logits, then those of
 * decoder stages 1 … depth−2, output k at the input's size divided per axis by
 * `cumulativeStrides(config)[k]`. Weights are initialised in the order above (He by default,
 * fan-in = in · kd · kh · kw; a transposed conv's fan-in is out · sd · sh · sw as PyTorch counts
 * it), the auxiliary heads last.
 */

import * as F from "../autograd/functional.ts";
import type { Zyx } from "../autograd/functional.ts";
import type { Tensor } from "../gpu/mod.ts";
import { NetBase } from "./net_base.ts";
import { Random } from "../base/random.ts";
import { INIT_KINDS, initWeights } from "./init.ts";
import { ConfigError } from "./config_fields.ts";
import { ACTIVATIONS, NORM_KINDS, type UNet3DConfig } from "./unet3d.ts";

export type { Zyx };

/** nnU-Net's feature cap: no stage has more channels than this unless configured otherwise. */
export const DEFAULT_MAX_CHANNELS = 320;

/**
 * A PlainConvUNet's config: UNet3D's fields (`depth` = the number of stages, `convsPerLevel` =
 * convolutions per stage) plus one stride and one kernel per stage, each (z, y, x). Absent
 * `strides` mean isotropic 2× down-sampling ([1,1,1], then [2,2,2] per stage), absent `kernels`
 * 3×3×3 everywhere, absent `maxChannels` {@link DEFAULT_MAX_CHANNELS}; `norm` and `activation`
 * apply as configured (a plan sets nnU-Net's instance and leaky_relu).
 */
export interface PlainConvUNetConfig extends UNet3DConfig {
  arch: "plain";
  /** Per stage (length depth), the first convolution's stride, each 1 or 2; stage 0's 1,1,1. */
  strides?: readonly Zyx[];
  /** Per stage (length depth), the convolution kernel, each 1 or 3. */
  kernels?: readonly Zyx[];
  /** Channel cap; ≥ baseChannels. */
  maxChannels?: number;
}

/** A {@link PlainConvUNetConfig} with its per-stage fields filled in. */
export type CompletePlainConfig = PlainConvUNetConfig & {
  strides: readonly Zyx[];
  kernels: readonly Zyx[];
  maxChannels: number;
};

/**
 * Checks a PlainConvUNet config and fills its absent per-stage fields with their defaults
 * (see {@link PlainConvUNetConfig}). Throws {@link ConfigError} naming the field, the value and
 * the fix; `source` ends each message.
 *
 * @example
 * completePlainConfig({ ...cfg, arch: "plain", depth: 3 }).strides; // [[1,1,1],[2,2,2],[2,2,2]]
 */
export function completePlainConfig(
  config: PlainConvUNetConfig,
  source = "model config",
): CompletePlainConfig {
  const c = config;
  const fail = (message: string): never => {
    throw new ConfigError(`${message} (${source})`);
  };
  const positive = ["inChannels", "classes", "baseChannels", "depth", "convsPerLevel"] as const;
  for (const k of positive) {
    if (!Number.isSafeInteger(c[k]) || c[k] < 1) {
      fail(`model.${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
    }
  }
  if (c.classes < 2) fail(`model.classes must be ≥ 2 (background + one), got ${c.classes}`);
  const lists = [["activation", ACTIVATIONS], ["norm", NORM_KINDS], ["init", INIT_KINDS]] as const;
  for (const [k, values] of lists) {
    if (!(values as readonly string[]).includes(c[k])) {
      fail(`model.${k} must be one of ${values.join(", ")}, got ${JSON.stringify(c[k])}`);
    }
  }
  const depth = c.depth;
  const strides = c.strides ??
    Array.from({ length: depth }, (_, s): Zyx => (s === 0 ? [1, 1, 1] : [2, 2, 2]));
  const kernels = c.kernels ?? Array.from({ length: depth }, (): Zyx => [3, 3, 3]);
  const maxChannels = c.maxChannels ?? DEFAULT_MAX_CHANNELS;
  checkStages("strides", strides, [1, 2], depth, fail);
  checkStages("kernels", kernels, [1, 3], depth, fail);
  if (strides[0].some((v) => v !== 1)) {
    fail(
      `model.strides: stage 0 runs at full resolution, so its stride must be 1,1,1, got ` +
        `${strides[0].join(",")}; start the list with 1,1,1`,
    );
  }
  if (!Number.isSafeInteger(maxChannels) || maxChannels < c.baseChannels) {
    fail(
      `model.maxChannels must be an integer ≥ model.baseChannels (${c.baseChannels}), got ` +
        `${JSON.stringify(maxChannels)}`,
    );
  }
  const copy = (l: readonly Zyx[]) => l.map((t): Zyx => [t[0], t[1], t[2]]);
  return { ...c, strides: copy(strides), kernels: copy(kernels), maxChannels };
}

/** Throws unless `stages` holds `depth` triples of `allowed` values. */
function checkStages(
  key: "strides" | "kernels",
  stages: readonly Zyx[],
  allowed: readonly number[],
  depth: number,
  fail: (message: string) => never,
): void {
  const ok = Array.isArray(stages) &&
    stages.every((t) => Array.isArray(t) && t.length === 3 && t.every((v) => allowed.includes(v)));
  if (!ok) {
    fail(
      `model.${key} must be z,y,x triples of ${allowed.join(" or ")}, one per stage, got ` +
        JSON.stringify(stages),
    );
  }
  if (stages.length !== depth) {
    fail(
      `model.${key} has ${stages.length} stage(s) but model.depth is ${depth}: give one z,y,x ` +
        `triple per stage, or set --model.depth ${stages.length}`,
    );
  }
}

/** Channels of stage s: min(baseChannels · 2^s, maxChannels). */
export function stageChannels(config: CompletePlainConfig, s: number): number {
  return Math.min(config.baseChannels * 2 ** s, config.maxChannels);
}

/**
 * The product of the strides of stages 0 … s along z, y, x, for every stage s: how much
 * smaller than the input stage s (and deep-supervision output s) is along each axis. The last
 * entry is the multiple every input edge must be.
 *
 * @example
 * cumulativeStrides({ ...c, strides: [[1,1,1], [1,2,2], [2,2,2]] }); // [[1,1,1],[1,2,2],[2,4,4]]
 */
export function cumulativeStrides(config: CompletePlainConfig): Zyx[] {
  const out: Zyx[] = [];
  let acc: Zyx = [1, 1, 1];
  for (const s of config.strides) {
    acc = [acc[0] * s[0], acc[1] * s[1], acc[2] * s[2]];
    out.push(acc);
  }
  return out;
}

/** nnU-Net's PlainConvUNet on the GPU; see the module comment for layout and names. */
export class PlainConvUNet extends NetBase<CompletePlainConfig> {
  /** Builds the network with freshly initialised weights from `seed`. */
  constructor(config: PlainConvUNetConfig, seed = 0) {
    super(completePlainConfig(config), "PlainConvUNet");
    const c = this.config;
    const rng = new Random(seed);
    const ch = (s: number) => stageChannels(c, s);
    for (let s = 0; s < c.depth; s++) {
      this.addBlock(`enc.${s}`, s === 0 ? c.inChannels : ch(s - 1), ch(s), c.kernels[s], rng);
    }
    for (let s = c.depth - 2; s >= 0; s--) {
      const ci = ch(s + 1), co = ch(s), k = c.strides[s + 1];
      const taps = k[0] * k[1] * k[2];
      const w = initWeights(ci * co * taps, co * taps, ci * taps, c.init, rng);
      this.add(`up.${s}.weight`, [ci, co, ...k], w);
      this.add(`up.${s}.bias`, [co], new Float32Array(co));
      this.addBlock(`dec.${s}`, 2 * co, co, c.kernels[s], rng);
    }
    this.addHead("head", ch(0), rng);
    if (c.deepSupervision !== true) return;
    for (let s = 1; s <= c.depth - 2; s++) this.addHead(`aux.${s}`, ch(s), rng);
  }

  protected run(x: Tensor, training: boolean, deep: boolean): Tensor[] {
    const c = this.config, m = cumulativeStrides(c).at(-1)!;
    this.checkInput(
      x,
      m,
      `${m.join("×")} along z×y×x (the product of model.strides per axis)`,
    );
    const skips: Tensor[] = [];
    let h = x;
    for (let s = 0; s < c.depth; s++) {
      h = this.#stage(`enc.${s}`, h, c.strides[s], training);
      skips.push(h);
    }
    return this.decode(
      h,
      skips,
      deep,
      (h, s) => F.convTranspose3dGeneral(h, this.t(`up.${s}.weight`), this.t(`up.${s}.bias`)),
      (prefix, h) => this.#stage(prefix, h, [1, 1, 1], training),
    );
  }

  /** conv (the first at `stride`) → norm → activation, convsPerLevel times. */
  #stage(prefix: string, x: Tensor, stride: Zyx, training: boolean): Tensor {
    return this.runBlock(
      prefix,
      x,
      training,
      (h, w, b, i) => F.conv3dGeneral(h, w, b, { stride: i === 1 ? stride : 1 }),
    );
  }
}
