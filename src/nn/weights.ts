/** Weights in and out of a model: host copies for checkpoints, and uploads from them. */

import { readTensors, upload } from "../gpu/mod.ts";
import type { HostTensor } from "./safetensors.ts";
import type { SegmentationNet } from "./model.ts";

/** Host copies of every model tensor (parameters and buffers), for checkpoints. */
export async function readWeights(
  model: Pick<SegmentationNet, "params">,
): Promise<Map<string, HostTensor>> {
  const params = [...model.params.values()];
  const host = await readTensors(params.map((p) => p.tensor));
  return new Map(params.map((p, i) => [p.name, { shape: [...p.tensor.shape], data: host[i] }]));
}

/** Uploads checkpoint weights into a model with the same configuration. */
export function loadWeights(
  model: Pick<SegmentationNet, "params">,
  weights: Map<string, HostTensor>,
): void {
  for (const p of model.params.values()) {
    const w = weights.get(p.name);
    if (!w) {
      throw new Error(
        `checkpoint has no tensor ${p.name}; was it written by a different model config?`,
      );
    }
    if (w.data.length !== p.tensor.size) {
      throw new Error(
        `checkpoint tensor ${p.name} has shape [${w.shape}], the model needs [${p.tensor.shape}]`,
      );
    }
    upload(p.tensor, w.data);
  }
}
