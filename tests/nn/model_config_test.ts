import assert from "node:assert/strict";
import { ConfigError } from "../../src/nn/config_fields.ts";
import {
  CheckpointError,
  type CheckpointMeta,
  decodeCheckpoint,
  metadataStrings,
  voxsegHeader,
} from "../../src/nn/checkpoint.ts";
import { MODEL_FIELDS, validateModelConfig } from "../../src/nn/model_config.ts";
import { encodeSafetensors, type HostTensor } from "../../src/nn/safetensors.ts";

/** A model config as checkpoints stored it before `deepSupervision` existed. */
const OLD = {
  inChannels: 1,
  classes: 2,
  baseChannels: 2,
  depth: 1,
  convsPerLevel: 1,
  activation: "relu",
  norm: "none",
  init: "he",
};

Deno.test("validateModelConfig: a config without deepSupervision (older checkpoints) is the net without aux heads", () => {
  assert.deepEqual(validateModelConfig(OLD), { ...OLD, deepSupervision: false });
  assert.deepEqual(validateModelConfig({ ...OLD, deepSupervision: true }), {
    ...OLD,
    deepSupervision: true,
  });
  assert.ok(MODEL_FIELDS.some((f) => f.path === "model.deepSupervision"));
  assert.throws(
    () => validateModelConfig({ ...OLD, deepSupervision: "yes" }, "x.safetensors"),
    new ConfigError('model.deepSupervision must be true or false, got "yes" (x.safetensors)'),
  );
  // The other fields stay required.
  const { norm: _, ...noNorm } = OLD;
  assert.throws(() => validateModelConfig(noNorm), /model\.norm is missing/);
});

Deno.test("an old checkpoint file, its model config without deepSupervision, still decodes", () => {
  // decodeCheckpoint checks the metadata, not which tensors there are: one suffices here.
  const weights = new Map<string, HostTensor>([
    ["head.weight", { shape: [2, 2, 1, 1, 1], data: new Float32Array([1, 2, 3, 4]) }],
  ]);
  const meta = {
    model: OLD,
    classNames: ["background", "lung"],
    normalisation: { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 },
    patchSize: [8, 8, 8],
    spacingMm: [1, 1, 1],
    training: { epoch: 0, step: 0, monitor: "dice", bestMetric: null, metrics: {} },
  } as unknown as CheckpointMeta;
  const strings = metadataStrings(meta);
  assert.ok(!Object.values(strings).some((s) => s.includes("deepSupervision")));
  const bytes = encodeSafetensors(weights, { ...voxsegHeader("model"), ...strings });
  const { meta: read } = decodeCheckpoint(bytes, "old.safetensors");
  assert.deepEqual(read.model, { ...OLD, deepSupervision: false });
  const bad = encodeSafetensors(weights, {
    ...voxsegHeader("model"),
    ...metadataStrings({ ...meta, model: { ...OLD, deepSupervision: 1 } } as never),
  });
  assert.throws(
    () => decodeCheckpoint(bad, "bad.safetensors"),
    (e) =>
      e instanceof CheckpointError &&
      /model\.deepSupervision must be true or false/.test(e.message),
  );
});
