/**
 * The inference calls the server makes, in one module: the same functions `voxseg infer`
 * uses (src/infer/predict.ts), so the server predicts exactly as the CLI does.
 */

import type { Volume } from "../data/volume.ts";
import {
  type LoadedModel,
  type Prediction,
  type PredictOptions,
  predictVolume,
} from "../infer/predict.ts";
import { ApiError } from "./errors.ts";

export { type LoadedModel, loadModel, type Prediction } from "../infer/predict.ts";

/**
 * {@link predictVolume}, with the input problems it reports as RangeError (non-finite voxels,
 * an inconsistent grid, a volume over the memory budget) turned into a 400 `invalid_volume`.
 */
export async function predictRequest(
  loaded: LoadedModel,
  volume: Volume,
  opts: PredictOptions = {},
): Promise<Prediction> {
  try {
    return await predictVolume(loaded, volume, opts);
  } catch (e) {
    if (e instanceof RangeError) throw new ApiError(400, "invalid_volume", e.message);
    throw e;
  }
}
