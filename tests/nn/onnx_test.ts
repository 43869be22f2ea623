import assert from "node:assert/strict";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { softmaxChannels } from "../../src/autograd/functional.ts";
import { fromArray, initGpu, readTensors, scope } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import {
  encodeVarint,
  modelParameterShapes,
  modelToOnnx,
  ONNX_IR_VERSION,
  ONNX_OPSET,
  ProtoMessage,
  unet3dParameterShapes,
  unet3dToOnnx,
} from "../../src/nn/onnx.ts";
import { UNet3D, type UNet3DConfig } from "../../src/nn/unet3d.ts";
import { PlainConvUNet, type PlainConvUNetConfig } from "../../src/nn/plain_unet.ts";
import { type HostTensor } from "../../src/nn/safetensors.ts";
import { loadWeights, readWeights } from "../../src/nn/weights.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { opts, tempRoot, tinyCheckpoint } from "../infer/infer_fixture.ts";

const root = tempRoot("voxseg_onnx_test_");

// ---------------------------------------------------------------------------------------------
// A minimal protobuf reader, enough to check what the encoder wrote (fields by number).

type Field = { field: number; wire: number; value: bigint | Uint8Array };

function readVarint(b: Uint8Array, at: number): [bigint, number] {
  let v = 0n, shift = 0n, i = at;
  for (;;) {
    const byte = b[i++];
    v |= BigInt(byte & 127) << shift;
    shift += 7n;
    if (byte < 128) return [v, i];
  }
}

function readFields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  for (let i = 0; i < b.length;) {
    const [tag, j] = readVarint(b, i);
    const field = Number(tag >> 3n), wire = Number(tag & 7n);
    if (wire === 0) {
      const [v, k] = readVarint(b, j);
      out.push({ field, wire, value: v });
      i = k;
    } else if (wire === 2) {
      const [len, k] = readVarint(b, j);
      out.push({ field, wire, value: b.subarray(k, k + Number(len)) });
      i = k + Number(len);
    } else if (wire === 5) {
      out.push({ field, wire, value: b.subarray(j, j + 4) });
      i = j + 4;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}

const text = (v: bigint | Uint8Array) => new TextDecoder().decode(v as Uint8Array);

/** metadata_props (ModelProto field 14) of ONNX model bytes. */
function metadataProps(model: Uint8Array): Record<string, string> {
  const props: Record<string, string> = {};
  for (const f of readFields(model).filter((f) => f.field === 14)) {
    const kv = readFields(f.value as Uint8Array);
    props[text(kv.find((x) => x.field === 1)!.value)] = text(kv.find((x) => x.field === 2)!.value);
  }
  return props;
}

// ---------------------------------------------------------------------------------------------
// Protobuf encoder

Deno.test("encodeVarint: edge cases of base-128 varints, negative int64 as 10 bytes", () => {
  const hex = (v: number | bigint) => [...encodeVarint(v)].map((b) => b.toString(16)).join(" ");
  assert.equal(hex(0), "0");
  assert.equal(hex(1), "1");
  assert.equal(hex(127), "7f");
  assert.equal(hex(128), "80 1");
  assert.equal(hex(300), "ac 2");
  assert.equal(hex(2 ** 31 - 1), "ff ff ff ff 7");
  assert.equal(hex(2 ** 32), "80 80 80 80 10");
  assert.equal(hex(Number.MAX_SAFE_INTEGER), "ff ff ff ff ff ff ff f");
  assert.equal(hex(-1), "ff ff ff ff ff ff ff ff ff 1");
  assert.equal(hex(2n ** 64n - 1n), "ff ff ff ff ff ff ff ff ff 1");
  assert.equal(hex(-(2n ** 63n)), "80 80 80 80 80 80 80 80 80 1");
  assert.equal(hex(2n ** 53n + 1n), "81 80 80 80 80 80 80 10");
  for (const v of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
    assert.equal(readVarint(encodeVarint(v), 0)[0], BigInt(v));
  }
  assert.throws(() => encodeVarint(2 ** 53), /not a safe integer/);
  assert.throws(() => encodeVarint(1.5), /not a safe integer/);
  assert.throws(() => encodeVarint(2n ** 64n), /does not fit 64 bits/);
  assert.throws(() => encodeVarint(-(2n ** 63n) - 1n), /does not fit 64 bits/);
});

Deno.test("ProtoMessage: tags, fixed32 floats, strings, nested messages", () => {
  const inner = new ProtoMessage().string(1, "ab").varint(2, 150);
  const m = new ProtoMessage().float(2, 1).message(14, inner).varint(1000, 1);
  assert.deepEqual(
    [...m.finish()],
    [
      ...[0x15, 0x00, 0x00, 0x80, 0x3f], // field 2, wire 5; 1.0f little-endian
      ...[0x72, 7, 0x0a, 2, 0x61, 0x62, 0x10, 0x96, 0x01], // field 14, wire 2, length 7
      ...[0xc0, 0x3e, 1], // field 1000, wire 0
    ],
  );
  assert.equal(m.byteLength, m.finish().length);
  assert.throws(() => new ProtoMessage().varint(0, 1), /field number/);
});

// ---------------------------------------------------------------------------------------------
// The U-Net export against voxseg's GPU forward

/** A network of `config` with random biases and norm parameters (not the 0/1 defaults). */
async function randomNet(config: Partial<UNet3DConfig>, seed: number) {
  await initGpu();
  const net = new UNet3D(config, seed);
  const weights = await readWeights(net);
  const rng = new Random(seed + 100);
  for (const [name, t] of weights) {
    const fill = (f: () => number) => t.data.forEach((_, i) => t.data[i] = f());
    if (name.endsWith("running_var")) fill(() => rng.uniform(0.5, 2));
    else if (/norm\d\.weight$/.test(name)) fill(() => rng.uniform(0.5, 1.5));
    else if (!name.endsWith(".weight")) fill(() => rng.normal(0, 0.1)); // biases, running_mean
  }
  loadWeights(net, weights);
  return { net, weights };
}

async function gpuProbabilities(net: UNet3D | PlainConvUNet, shape: number[], x: Float32Array) {
  const p = scope(() => softmaxChannels(net.forward(fromArray(shape, x), { training: false })));
  const [host] = await readTensors([p]);
  p.dispose();
  return host;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const variants: { config: Partial<UNet3DConfig>; shape: number[] }[] = [
  {
    config: { baseChannels: 4, depth: 3, classes: 3, activation: "relu", norm: "none" },
    shape: [1, 1, 12, 20, 16],
  },
  {
    config: {
      inChannels: 2,
      baseChannels: 4,
      depth: 2,
      classes: 2,
      activation: "elu",
      norm: "instance",
    },
    shape: [2, 2, 6, 10, 14],
  },
  {
    config: {
      baseChannels: 4,
      depth: 3,
      classes: 4,
      convsPerLevel: 1,
      activation: "leaky_relu",
      norm: "batch",
    },
    shape: [1, 1, 12, 8, 20],
  },
];

for (const [k, { config, shape }] of variants.entries()) {
  const c = config;
  Deno.test({
    name: `ONNX export in onnxruntime = voxseg GPU forward: depth ${c.depth}, ${c.activation}, ` +
      `norm ${c.norm}, input ${shape.join("×")}`,
    ...opts,
    async fn() {
      const { net, weights } = await randomNet(config, k + 1);
      try {
        const rng = new Random(k + 7);
        const x = Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.normal());
        const want = await gpuProbabilities(net, shape, x);
        // Not saturated at 0/1, so agreement says something about the logits.
        const soft = want.reduce((s, p) => s + Math.min(p, 1 - p), 0) / want.length;
        assert.ok(soft > 0.02, `probabilities nearly one-hot (mean min(p, 1−p) = ${soft})`);

        const bytes = unet3dToOnnx(net.config, weights, { logits: true });
        const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
        try {
          assert.deepEqual(session.inputNames, ["image"]);
          assert.deepEqual(session.outputNames, ["probabilities", "logits"]);
          const input = session.inputMetadata[0];
          assert.ok(input.isTensor);
          assert.deepEqual(input.shape, ["N", net.config.inChannels, "D", "H", "W"]);
          const out = await session.run({ image: new ort.Tensor("float32", x, shape) });
          const probs = out.probabilities, logits = out.logits;
          assert.deepEqual(probs.dims, [shape[0], net.config.classes, ...shape.slice(2)]);
          assert.deepEqual(logits.dims, probs.dims);
          const diff = maxAbsDiff(probs.data as Float32Array, want);
          assert.ok(diff <= 1e-4, `max |Δp| ${diff}`);
        } finally {
          await session.release();
        }
      } finally {
        net.dispose();
      }
    },
  });
}

Deno.test("unet3dParameterShapes lists exactly UNet3D's tensors and shapes", opts, async () => {
  await initGpu();
  for (const norm of ["none", "instance", "batch"] as const) {
    const net = new UNet3D({ baseChannels: 2, depth: 3, inChannels: 2, norm });
    const want = new Map([...net.params].map(([n, p]) => [n, p.tensor.shape]));
    assert.deepEqual(
      new Map([...unet3dParameterShapes(net.config)].sort()),
      new Map([...want].sort()),
    );
    net.dispose();
  }
});

Deno.test("unet3dToOnnx names a missing or misshapen weight; model header and metadata", () => {
  const config: UNet3DConfig = {
    inChannels: 1,
    classes: 2,
    baseChannels: 2,
    depth: 2,
    convsPerLevel: 1,
    activation: "relu",
    norm: "none",
    init: "he",
  };
  const weights = new Map<string, HostTensor>();
  for (const [name, shape] of unet3dParameterShapes(config)) {
    weights.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
  }
  const bytes = unet3dToOnnx(config, weights, {
    metadata: { "voxseg.classes": '["background","lung"]', "ключ": "значение" },
    producerVersion: "9.9.9",
  });
  const top = readFields(bytes);
  assert.equal(top.find((f) => f.field === 1)?.value, BigInt(ONNX_IR_VERSION));
  assert.equal(text(top.find((f) => f.field === 3)!.value), "9.9.9");
  const opset = readFields(top.find((f) => f.field === 8)!.value as Uint8Array);
  assert.equal(opset.find((f) => f.field === 2)?.value, BigInt(ONNX_OPSET));
  assert.deepEqual(metadataProps(bytes), {
    "voxseg.classes": '["background","lung"]',
    "ключ": "значение",
  });

  const broken = new Map(weights);
  broken.delete("up.0.bias");
  assert.throws(() => unet3dToOnnx(config, broken), /no tensor "up.0.bias"/);
  broken.set("up.0.bias", { shape: [3], data: new Float32Array(3) });
  assert.throws(
    () => unet3dToOnnx(config, broken),
    /"up.0.bias" has shape \[3\] \(3 values\), the model config needs \[2\]/,
  );
});

// ---------------------------------------------------------------------------------------------
// The PlainConvUNet export: strided Conv down, per-axis ConvTranspose up

/** nnU-Net's setting on anisotropic voxels: 1×3×3 then 3×3×3; in-plane, then isotropic. */
const PLAIN: PlainConvUNetConfig = {
  arch: "plain",
  inChannels: 2,
  classes: 3,
  baseChannels: 4,
  depth: 3,
  convsPerLevel: 2,
  activation: "leaky_relu",
  norm: "instance",
  init: "he",
  deepSupervision: true,
  strides: [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
  kernels: [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
  maxChannels: 6,
};

Deno.test({
  name: "ONNX export of a PlainConvUNet (strides 1,1,1/1,2,2/2,2,2, kernels 1,3,3/3,3,3/3,3,3) " +
    "in onnxruntime = voxseg GPU forward, input 2×2×4×12×20",
  ...opts,
  async fn() {
    await initGpu();
    const net = new PlainConvUNet(PLAIN, 4);
    const weights = await readWeights(net);
    const rng = new Random(104);
    for (const [name, t] of weights) {
      const fill = (f: () => number) => t.data.forEach((_, i) => t.data[i] = f());
      if (/norm\d\.weight$/.test(name)) fill(() => rng.uniform(0.5, 1.5));
      else if (!name.endsWith(".weight")) fill(() => rng.normal(0, 0.1));
    }
    loadWeights(net, weights);
    try {
      const shape = [2, 2, 4, 12, 20];
      const x = Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.normal());
      const want = await gpuProbabilities(net, shape, x);
      const soft = want.reduce((s, p) => s + Math.min(p, 1 - p), 0) / want.length;
      assert.ok(soft > 0.02, `probabilities nearly one-hot (mean min(p, 1−p) = ${soft})`);
      assert.equal(unet3dToOnnx, modelToOnnx, "the old name exports any architecture");
      const bytes = modelToOnnx(net.config, weights, { logits: true });
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      try {
        assert.deepEqual(session.outputNames, ["probabilities", "logits"]);
        const out = await session.run({ image: new ort.Tensor("float32", x, shape) });
        assert.deepEqual(out.probabilities.dims, [2, 3, 4, 12, 20]);
        const diff = maxAbsDiff(out.probabilities.data as Float32Array, want);
        assert.ok(diff <= 1e-4, `max |Δp| ${diff}`);
      } finally {
        await session.release();
      }
    } finally {
      net.dispose();
    }
  },
});

Deno.test(
  "modelParameterShapes of a PlainConvUNet: its tensors but the aux heads; the graph's ops",
  opts,
  async () => {
    await initGpu();
    for (const norm of ["instance", "batch"] as const) {
      const net = new PlainConvUNet({ ...PLAIN, norm }, 0);
      const want = new Map(
        [...net.params].filter(([n]) => !n.startsWith("aux.")).map(([n, p]) => [n, p.tensor.shape]),
      );
      assert.deepEqual(
        new Map([...modelParameterShapes(net.config)].sort()),
        new Map([...want].sort()),
      );
      net.dispose();
    }
    const weights = new Map<string, HostTensor>();
    for (const [name, shape] of modelParameterShapes(PLAIN)) {
      weights.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
    }
    const graph = readFields(
      readFields(modelToOnnx(PLAIN, weights)).find((f) => f.field === 7)!
        .value as Uint8Array,
    );
    const nodes = graph.filter((f) => f.field === 1).map((f) => readFields(f.value as Uint8Array));
    const ops = nodes.map((n) => text(n.find((f) => f.field === 4)!.value));
    assert.ok(!ops.includes("MaxPool"), "down-sampling is by strided convolution");
    assert.equal(ops.filter((o) => o === "ConvTranspose").length, 2);
    assert.equal(ops.filter((o) => o === "InstanceNormalization").length, 10);
    const node = (output: string) =>
      nodes.find((n) => text(n.find((f) => f.field === 2)!.value) === output)!;
    const ints = (n: Field[], name: string) => {
      const a = n.filter((f) => f.field === 5).map((f) => readFields(f.value as Uint8Array))
        .find((f) => text(f.find((x) => x.field === 1)!.value) === name)!;
      return a.filter((f) => f.field === 8).map((f) => Number(f.value));
    };
    assert.deepEqual(ints(node("enc.1.conv1"), "strides"), [1, 2, 2]);
    assert.deepEqual(ints(node("enc.0.conv1"), "kernel_shape"), [1, 3, 3]);
    assert.deepEqual(ints(node("enc.0.conv1"), "pads"), [0, 1, 1, 0, 1, 1]);
    assert.deepEqual(ints(node("enc.1.conv2"), "strides"), [1, 1, 1]);
    assert.deepEqual(ints(node("up.0"), "kernel_shape"), [1, 2, 2]);
    assert.deepEqual(ints(node("up.0"), "strides"), [1, 2, 2]);
    assert.equal(text(graph.find((f) => f.field === 2)!.value), "voxseg_plain_unet");
  },
);

// ---------------------------------------------------------------------------------------------
// CLI

Deno.test({
  name: "export-onnx CLI writes a model onnxruntime loads, with the checkpoint's metadata",
  ...opts,
  async fn() {
    const model = await tinyCheckpoint(root, "cli.safetensors", { model: { norm: "batch" } });
    const out = join(root, "out", "tiny.onnx");
    const r = await runCliCaptured(["export-onnx", "--model", model, "--out", out, "--logits"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote .*tiny\.onnx: ONNX opset 17, .*outputs probabilities, logits/);
    assert.deepEqual([...Deno.readDirSync(join(root, "out"))].map((e) => e.name), ["tiny.onnx"]);
    const bytes = await Deno.readFile(out);
    const meta = metadataProps(bytes);
    assert.deepEqual(JSON.parse(meta["voxseg.classes"]), ["background", "lung", "infection"]);
    assert.deepEqual(JSON.parse(meta["voxseg.patch_size"]), [16, 16, 16]);
    assert.deepEqual(JSON.parse(meta["voxseg.spacing_mm"]), [1, 1, 1]);
    assert.equal(JSON.parse(meta["voxseg.normalisation"]).kind, "zscore");
    assert.equal(JSON.parse(meta["voxseg.model"]).norm, "batch");
    assert.match(meta["voxseg.version"], /^\d+\.\d+\.\d+/);
    const session = await ort.InferenceSession.create(out, { intraOpNumThreads: 1 });
    assert.deepEqual(session.outputNames, ["probabilities", "logits"]);
    await session.release();
  },
});

Deno.test({
  name: "export-onnx CLI: missing flags, missing file, not a checkpoint, folder as --out",
  ...opts,
  async fn() {
    let r = await runCliCaptured(["export-onnx", "--out", join(root, "x.onnx")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--model is required/);
    r = await runCliCaptured(["export-onnx", "--model", "m.safetensors"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--out is required/);
    r = await runCliCaptured([
      ...["export-onnx", "--model", join(root, "nope.safetensors"), "--out", join(root, "x.onnx")],
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /model not found: .*nope\.safetensors/);
    const junk = join(root, "junk.safetensors");
    await Deno.writeTextFile(junk, "not safetensors at all");
    r = await runCliCaptured(["export-onnx", "--model", junk, "--out", join(root, "x.onnx")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /junk\.safetensors is not a voxseg checkpoint/);
    r = await runCliCaptured(["export-onnx", "--model", junk, "--out", root]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is a folder/);
    assert.equal(await Deno.stat(join(root, "x.onnx")).then(() => true, () => false), false);
  },
});
