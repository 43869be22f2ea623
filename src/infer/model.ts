/** A checkpoint's network on the GPU, ready for prediction. */

import { basename } from "node:path";
import { initGpu } from "../gpu/mod.ts";
import { createModel, type SegmentationNet } from "../nn/model.ts";
import {
  type Checkpoint,
  CheckpointError,
  type CheckpointMeta,
  readCheckpointFile,
} from "../nn/checkpoint.ts";
import { loadWeights } from "../nn/weights.ts";

/** A checkpoint's network with its weights uploaded, and the checkpoint's metadata. */
export interface LoadedModel {
  model: SegmentationNet;
  meta: CheckpointMeta;
  /** A display name; {@link loadModel} uses the file name without `.safetensors`. */
  name?: string;
  /** Frees the network's GPU buffers. */
  dispose(): void;
}

/** A file that is not a usable voxseg checkpoint. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

/**
 * Reads a voxseg checkpoint (`….safetensors` written by `voxseg train`) and puts its network
 * on the GPU. Throws {@link ModelLoadError} saying why when the file is missing, is not
 * safetensors, or is safetensors without voxseg's metadata or with tensors that do not fit it.
 *
 * @example
 * const loaded = await loadModel("runs/a/best.safetensors");
 * const { labels, summary } = await predictVolume(loaded, await readNifti("ct.nii.gz"));
 * loaded.dispose();
 */
export async function loadModel(path: string): Promise<LoadedModel> {
  let checkpoint: Checkpoint;
  try {
    checkpoint = await readCheckpointFile(path);
  } catch (e) {
    if (e instanceof CheckpointError) throw new ModelLoadError(e.message);
    throw e;
  }
  await initGpu();
  const { weights, meta } = checkpoint;
  const model = createModel(meta.model);
  try {
    loadWeights(model, weights);
  } catch (e) {
    model.dispose();
    throw new ModelLoadError(`${path}: ${(e as Error).message}`);
  }
  return {
    model,
    meta,
    name: basename(path).replace(/\.safetensors$/, ""),
    dispose: () => model.dispose(),
  };
}
