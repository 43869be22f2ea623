/**
 * `voxseg export-onnx`: a checkpoint's U-Net as an ONNX model (opset 17), for onnxruntime,
 * TensorRT or any other ONNX runtime. Needs no GPU: the weights go from the safetensors file
 * straight into the ONNX file.
 */

import denoJson from "../../deno.json" with { type: "json" };
import { parseNamedFlags } from "./args.ts";
import { UsageError } from "./usage_error.ts";
import { writeFileAtomic } from "../base/atomic.ts";
import { ONNX_OPSET, unet3dToOnnx } from "../nn/onnx.ts";
import {
  type Checkpoint,
  CheckpointError,
  metadataStrings,
  readCheckpointFile,
} from "../nn/checkpoint.ts";

const HELP = `voxseg export-onnx --model M.safetensors --out m.onnx [--logits]

Writes the checkpoint's 3D U-Net as an ONNX model (opset ${ONNX_OPSET}): input "image"
[N, C, D, H, W] float32 (N, D, H, W free; D, H, W multiples of 2^(depth−1)), output
"probabilities" [N, classes, D, H, W] (softmax over classes); --logits adds the output "logits".
The input must be normalised as in training; the model's metadata_props carry the checkpoint's
class names, normalisation, patch size, spacing, model config and training summary under the
checkpoint's safetensors metadata keys (voxseg.classes, …; JSON values), and voxseg.version.`;

/** ModelProto metadata_props key for the exporting voxseg's version. */
export const ONNX_VERSION_KEY = "voxseg.version";

/**
 * A checkpoint as ONNX model bytes, with its metadata in metadata_props.
 *
 * @example
 * const onnx = checkpointToOnnx(await loadCheckpoint("runs/a/best.safetensors"));
 */
export function checkpointToOnnx(
  { weights, meta }: Checkpoint,
  { logits = false } = {},
): Uint8Array {
  return unet3dToOnnx(meta.model, weights, {
    logits,
    producerVersion: denoJson.version,
    metadata: { ...metadataStrings(meta), [ONNX_VERSION_KEY]: denoJson.version },
  });
}

/** Reads a checkpoint; the error says what is wrong with the file. */
async function readCheckpoint(path: string): Promise<Checkpoint> {
  try {
    return await readCheckpointFile(path);
  } catch (e) {
    if (e instanceof CheckpointError) throw new Error(e.message);
    throw e;
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseNamedFlags(
    argv,
    {
      model: { type: "string" },
      out: { type: "string" },
      logits: { type: "boolean" },
    },
    HELP,
    ["model", "out"],
  );
  const model = String(values.model), out = String(values.out);
  const isFolder = await Deno.stat(out).then((s) => s.isDirectory, () => false);
  if (isFolder) {
    throw new UsageError(`--out ${out} is a folder; name the file (e.g. ${out}/m.onnx)`);
  }
  const checkpoint = await readCheckpoint(model);
  let bytes: Uint8Array;
  try {
    bytes = checkpointToOnnx(checkpoint, { logits: Boolean(values.logits) });
  } catch (e) {
    throw new Error(`${model}: ${(e as Error).message}`);
  }
  await writeFileAtomic(out, bytes);
  const c = checkpoint.meta.model;
  console.log(
    `wrote ${out}: ONNX opset ${ONNX_OPSET}, 3D U-Net base ${c.baseChannels} depth ${c.depth} ` +
      `(${c.activation}, norm ${c.norm}), ${c.inChannels} → ${c.classes} classes, ` +
      `${(bytes.length / 2 ** 20).toFixed(1)} MiB; outputs probabilities` +
      (values.logits ? ", logits" : ""),
  );
  return 0;
}
