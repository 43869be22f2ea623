/** The one checkpoint-file reader that `voxseg export-onnx` and loadModel share. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError, readCheckpointFile } from "../../src/nn/checkpoint.ts";
import { encodeSafetensors } from "../../src/nn/safetensors.ts";

Deno.test("readCheckpointFile: a missing file, a folder, junk and plain safetensors say what is wrong", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxseg_checkpoint_file_test_" });
  try {
    const missing = join(dir, "nope.safetensors");
    await assert.rejects(readCheckpointFile(missing), (e) => {
      assert.ok(e instanceof CheckpointError);
      assert.equal(e.message, `model not found: ${missing}`);
      return true;
    });
    await assert.rejects(
      readCheckpointFile(dir),
      new CheckpointError(
        `${dir} is a folder; name the checkpoint file in it (e.g. ${dir}/best.safetensors)`,
      ),
    );
    const junk = join(dir, "junk.safetensors");
    await Deno.writeTextFile(junk, "not safetensors");
    await assert.rejects(
      readCheckpointFile(junk),
      /junk\.safetensors is not a voxseg checkpoint \(a \.safetensors file written by `voxseg train`\): /,
    );
    const plain = join(dir, "plain.safetensors");
    await Deno.writeFile(
      plain,
      encodeSafetensors(new Map([["w", { shape: [1], data: Float32Array.of(1) }]])),
    );
    await assert.rejects(
      readCheckpointFile(plain),
      /plain\.safetensors is not a voxseg checkpoint .*__metadata__ has no "voxseg\.format"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
