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
 * A model of C > 1 input channels takes a list of C volumes on one grid (channel order); a
 * count that differs from the model's is a 422 `channel_count_mismatch` naming `how.model` and
 * saying how to send them (`how.send`).
 */
export async function predictRequest(
  loaded: LoadedModel,
  input: Volume | readonly Volume[],
  opts: PredictOptions,
  how: { model: string; send: string },
): Promise<Prediction> {
  const given = "data" in input ? 1 : input.length;
  const wanted = loaded.meta.model.inChannels;
  if (given !== wanted) {
    const what = given === 1 ? "one volume" : `${given} channels`;
    throw channelCountError(how.model, wanted, given, what, how.send);
  }
  try {
    return await predictVolume(loaded, input, opts);
  } catch (e) {
    if (e instanceof RangeError) throw new ApiError(400, "invalid_volume", e.message);
    throw e;
  }
}

/** How a prediction job names the channels of a model of several, for error messages. */
export const CHANNELS_IN_JOBS = 'name them as "input": ["a_0000.nii.gz", "a_0001.nii.gz", …] ' +
  "(3D NIfTI files under the data root, one per channel in channel order), or one 4D NIfTI " +
  "whose 4th dimension is the channels";

/**
 * 422 `channel_count_mismatch`: `model` takes `wanted` input channels but was given `given`
 * (`what`: "one volume", "3 part(s)", …); `send` says how to give them.
 */
export function channelCountError(
  model: string,
  wanted: number,
  given: number,
  what: string,
  send: string,
): ApiError {
  const takes = wanted === 1 ? "one input channel (one volume)" : `${wanted} input channels`;
  return new ApiError(
    422,
    "channel_count_mismatch",
    `model ${JSON.stringify(model)} takes ${takes}, but ` +
      `the input is ${what} (${given} channel${given === 1 ? "" : "s"}); ` +
      (wanted === 1 ? "send one volume: one NIfTI file or DICOM series" : send),
  );
}

/** The input channels of a model's checkpoint metadata (as GET /v1/models/{name} shows it). */
export function metaChannels(meta: Record<string, unknown> | undefined): number {
  const n = (meta?.model as { inChannels?: unknown } | undefined)?.inChannels;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 ? n : 1;
}
