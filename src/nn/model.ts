/**
 * The segmentation networks behind one interface: {@link createModel} builds the one a
 * {@link ModelConfig} names (`arch` absent or "unet3d": {@link UNet3D}; "plain":
 * {@link PlainConvUNet}), and everything that trains, validates, predicts with or saves a
 * network holds it as a {@link SegmentationNet}.
 */

import type { Tensor } from "../gpu/mod.ts";
import { type Parameter, UNet3D } from "./unet3d.ts";
import { PlainConvUNet } from "./plain_unet.ts";
import { completeModelConfig, type ModelConfig } from "./model_config.ts";

export type { Parameter };

/**
 * What every voxseg network offers: tensors are channels-first [N, C, D, H, W] (z, y, x).
 * `forward` gives class logits [N, classes, D, H, W]; `forwardDeep` (built with
 * `deepSupervision: true`) the logits at every decoder scale, full resolution first, each at
 * the input size divided per axis by that scale's cumulative stride (src/train/
 * deep_supervision.ts). `params` holds every tensor by its PyTorch `state_dict` name
 * (buffers such as batch-norm running statistics have `trainable: false`).
 */
export interface SegmentationNet {
  readonly config: ModelConfig;
  readonly params: Map<string, Parameter>;
  /** Trainable parameters in a stable order. */
  trainable(): Parameter[];
  forward(x: Tensor, opts?: { training?: boolean }): Tensor;
  forwardDeep(x: Tensor, opts?: { training?: boolean }): Tensor[];
  /** Frees every parameter's GPU buffer. */
  dispose(): void;
}

/**
 * The network `config` describes, with fresh weights from `seed` (the same weights, for a
 * unet3d config, as `new UNet3D(config, seed)`). Throws a ConfigError for a config whose fields
 * do not fit together (src/nn/model_config.ts completeModelConfig).
 *
 * @example
 * const net = createModel({ ...defaultUNetConfig, arch: "plain", depth: 3,
 *   strides: [[1, 1, 1], [1, 2, 2], [2, 2, 2]], kernels: [[1, 3, 3], [3, 3, 3], [3, 3, 3]] }, 0);
 */
export function createModel(config: ModelConfig, seed = 0): SegmentationNet {
  const c = completeModelConfig(config);
  return c.arch === "plain" ? new PlainConvUNet(c, seed) : new UNet3D(config, seed);
}
