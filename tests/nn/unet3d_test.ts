import assert from "node:assert/strict";
import * as F from "../../src/autograd/functional.ts";
import { Tape } from "../../src/autograd/mod.ts";
import {
  fromArray,
  initGpu,
  keep,
  readTensors,
  scope,
  type Tensor,
  zeros,
} from "../../src/gpu/mod.ts";
import { adamStep, gradNormControl } from "../../src/ops/optim.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import {
  type CheckpointMeta,
  decodeCheckpoint,
  encodeCheckpoint,
} from "../../src/nn/checkpoint.ts";
import { unet3dToOnnx } from "../../src/nn/onnx.ts";
import { loadWeights, readWeights } from "../../src/nn/weights.ts";
import { Random } from "../../src/base/random.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test("UNet3D names parameters like a PyTorch state_dict", opts, async () => {
  await initGpu();
  const net = new UNet3D({ baseChannels: 4, depth: 3, norm: "batch" });
  const names = [...net.params.keys()];
  for (
    const n of [
      "enc.0.conv1.weight",
      "enc.0.conv2.bias",
      "enc.2.norm1.running_var",
      "up.1.weight",
      "up.0.bias",
      "dec.0.conv1.weight",
      "head.weight",
    ]
  ) assert.ok(names.includes(n), `missing ${n}`);
  assert.deepEqual(net.params.get("enc.0.conv1.weight")!.tensor.shape, [4, 1, 3, 3, 3]);
  assert.deepEqual(net.params.get("up.1.weight")!.tensor.shape, [16, 8, 2, 2, 2]);
  assert.deepEqual(net.params.get("dec.0.conv1.weight")!.tensor.shape, [4, 8, 3, 3, 3]);
  assert.deepEqual(net.params.get("head.weight")!.tensor.shape, [3, 4, 1, 1, 1]);
  assert.equal(net.params.get("enc.0.norm1.running_mean")!.trainable, false);
  net.dispose();
});

Deno.test("UNet3D He initialisation has std sqrt(2 / fan-in)", opts, async () => {
  await initGpu();
  const net = new UNet3D({ baseChannels: 16, depth: 2 }, 7);
  const w = await net.params.get("enc.1.conv2.weight")!.tensor.read(); // fan-in 32·27
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  const want = Math.sqrt(2 / (32 * 27));
  assert.ok(Math.abs(std - want) / want < 0.03, `std ${std} vs ${want}`);
  assert.ok(Math.abs(mean) < 0.1 * want);
  net.dispose();
});

Deno.test("UNet3D rejects inputs it cannot pool evenly, naming the fix", opts, async () => {
  await initGpu();
  const net = new UNet3D({ baseChannels: 2, depth: 3 });
  const x = zeros([1, 1, 8, 8, 6]);
  assert.throws(() => net.forward(x), /8×8×6 must be divisible by 4/);
  x.dispose();
  net.dispose();
});

Deno.test("a tiny U-Net fits one fixed patch: loss falls by at least 90%", opts, async () => {
  await initGpu();
  const net = new UNet3D({ baseChannels: 4, depth: 2, convsPerLevel: 1, classes: 3 }, 3);
  // A patch with a bright sphere (class 1) and a dark box (class 2) on a noisy background.
  const [D, H, W] = [8, 8, 8];
  const rng = new Random(11);
  const img = new Float32Array(D * H * W);
  const lab = new Uint32Array(D * H * W);
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = x + W * (y + H * z);
        const inSphere = (z - 3) ** 2 + (y - 3) ** 2 + (x - 4) ** 2 < 6;
        const inBox = z >= 5 && y >= 5 && x < 3;
        lab[i] = inSphere ? 1 : inBox ? 2 : 0;
        img[i] = (inSphere ? 1 : inBox ? -1 : 0) + 0.1 * rng.normal();
      }
    }
  }
  const x = fromArray([1, 1, D, H, W], img);
  const labels = fromArray([1, D, H, W], lab, "u32");
  const params = net.trainable();
  const m = params.map((p) => zeros(p.tensor.shape));
  const v = params.map((p) => zeros(p.tensor.shape));
  const losses: Tensor[] = [];
  for (let step = 1; step <= 150; step++) {
    const loss = scope(() => {
      const tape = new Tape().watch(...params.map((p) => p.tensor));
      const loss = tape.record(() => {
        const logits = net.forward(x);
        const probs = F.softmaxChannels(logits);
        return F.axpby(1, F.tversky(probs, labels), 1, F.crossEntropy(logits, labels));
      });
      const grads = tape.backward(loss);
      const gs = params.map((p) => grads.get(p.tensor)!);
      const control = gradNormControl(gs, Infinity);
      params.forEach((p, i) => adamStep(p.tensor, gs[i], m[i], v[i], { lr: 0.01, step }, control));
      tape.dispose();
      return keep(loss);
    });
    losses.push(loss);
  }
  const values = (await readTensors(losses)).map((l) => l[0]);
  for (const l of losses) l.dispose();
  assert.ok(values.every(Number.isFinite), `non-finite loss in ${values}`);
  const first = values[0], last = values.at(-1)!;
  assert.ok(last <= 0.1 * first, `loss fell from ${first} to ${last} only`);
  for (const t of [x, labels, ...m, ...v]) t.dispose();
  net.dispose();
});

// ---------------------------------------------------------------------------------------------
// Deep supervision: auxiliary heads on the decoder levels below full resolution

/** A depth-4 net (base 2, one conv per level) with or without aux heads, from one seed. */
const deepNet = (deepSupervision: boolean, seed = 2) =>
  new UNet3D({ baseChannels: 2, depth: 4, convsPerLevel: 1, deepSupervision }, seed);

const bits = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

Deno.test(
  "UNet3D deepSupervision adds aux.{l} heads for decoder levels 1…depth−2 only, leaving every other weight as it was",
  opts,
  async () => {
    await initGpu();
    const plain = deepNet(false), deep = deepNet(true);
    const aux = [...deep.params.keys()].filter((n) => n.startsWith("aux."));
    assert.deepEqual(aux, ["aux.1.weight", "aux.1.bias", "aux.2.weight", "aux.2.bias"]);
    assert.deepEqual(deep.params.get("aux.1.weight")!.tensor.shape, [3, 4, 1, 1, 1]);
    assert.deepEqual(deep.params.get("aux.2.weight")!.tensor.shape, [3, 8, 1, 1, 1]);
    assert.deepEqual(deep.params.get("aux.2.bias")!.tensor.shape, [3]);
    assert.ok(deep.params.get("aux.1.weight")!.trainable);
    assert.deepEqual(
      [...plain.params.keys()],
      [...deep.params.keys()].filter((n) => !n.startsWith("aux.")),
    );
    const [a, b] = [await readWeights(plain), await readWeights(deep)];
    for (const [name, t] of a) assert.deepEqual(bits(t.data), bits(b.get(name)!.data), name);
    const shallow = new UNet3D({ baseChannels: 2, depth: 2, deepSupervision: true });
    assert.ok(![...shallow.params.keys()].some((n) => n.startsWith("aux.")));
    assert.throws(
      () => new UNet3D({ deepSupervision: "yes" as unknown as boolean }),
      /deepSupervision must be true or false, got yes/,
    );
    for (const n of [plain, deep, shallow]) n.dispose();
  },
);

Deno.test(
  "UNet3D.forwardDeep: one output per decoder level halving D, H, W; output 0 is forward's, bit for bit",
  opts,
  async () => {
    await initGpu();
    const plain = deepNet(false), deep = deepNet(true);
    const rng = new Random(4);
    const x = fromArray([1, 1, 8, 8, 8], Float32Array.from({ length: 512 }, () => rng.normal()));
    const outs = scope(() => deep.forwardDeep(x, { training: false }));
    assert.deepEqual(outs.map((o) => o.shape), [[1, 3, 8, 8, 8], [1, 3, 4, 4, 4], [1, 3, 2, 2, 2]]);
    const main = scope(() => deep.forward(x, { training: false }));
    const old = scope(() => plain.forward(x, { training: false }));
    const [o0, o1, o2, m, p] = await readTensors([...outs, main, old]);
    assert.deepEqual(bits(o0), bits(m));
    assert.deepEqual(bits(m), bits(p)); // the heads change nothing of the full-resolution output
    assert.ok(o1.some((v) => v !== 0) && o2.some((v) => v !== 0));
    assert.throws(() => plain.forwardDeep(x), /no auxiliary heads; build it with deepSupervision/);
    const shallow = new UNet3D({
      baseChannels: 2,
      depth: 2,
      convsPerLevel: 1,
      deepSupervision: true,
    });
    const only = scope(() => shallow.forwardDeep(x));
    assert.deepEqual(only.map((o) => o.shape), [[1, 3, 8, 8, 8]]);
    for (const t of [...outs, ...only, main, old, x]) t.dispose();
    for (const n of [plain, deep, shallow]) n.dispose();
  },
);

/** The metadata of a tiny checkpoint of `net`. */
const metaOf = (net: UNet3D): CheckpointMeta => ({
  model: net.config,
  classNames: ["background", "lung", "infection"],
  normalisation: { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 },
  patchSize: [8, 8, 8],
  spacingMm: [1, 1, 1],
  training: { epoch: 1, step: 3, monitor: "dice", bestMetric: null, metrics: {} },
});

Deno.test(
  "a deep-supervision checkpoint reloads for inference and predicts the same full-resolution output",
  opts,
  async () => {
    await initGpu();
    const deep = deepNet(true, 9);
    const bytes = encodeCheckpoint({ weights: await readWeights(deep), meta: metaOf(deep) });
    const { weights, meta } = decodeCheckpoint(bytes);
    assert.equal(meta.model.deepSupervision, true);
    assert.ok(weights.has("aux.2.weight"));
    // Loaded as inference does (src/infer/model.ts): a net of the stored config, other seed.
    const loaded = new UNet3D(meta.model, 1234);
    loadWeights(loaded, weights);
    // A net without the heads takes the same file too (loadWeights reads the tensors it has).
    const headless = new UNet3D({ ...meta.model, deepSupervision: false }, 1234);
    loadWeights(headless, weights);
    const rng = new Random(5);
    const x = fromArray([1, 1, 8, 8, 8], Float32Array.from({ length: 512 }, () => rng.normal()));
    const ys = [deep, loaded, headless].map((n) => scope(() => n.forward(x, { training: false })));
    const [want, got, got2] = await readTensors(ys);
    assert.deepEqual(bits(got), bits(want));
    assert.deepEqual(bits(got2), bits(want));
    for (const t of [...ys, x]) t.dispose();
    for (const n of [deep, loaded, headless]) n.dispose();
  },
);

/** The names of an ONNX model's graph outputs (ModelProto 7 → GraphProto 12 → name 1). */
function onnxOutputs(model: Uint8Array): string[] {
  const fields = (b: Uint8Array) => {
    const out: { field: number; bytes?: Uint8Array }[] = [];
    const varint = (at: number): [number, number] => {
      let v = 0, shift = 1;
      for (;;) {
        const byte = b[at++];
        v += (byte & 127) * shift;
        shift *= 128;
        if (byte < 128) return [v, at];
      }
    };
    for (let i = 0; i < b.length;) {
      const [tag, j] = varint(i);
      const wire = tag % 8;
      if (wire === 0) i = varint(j)[1];
      else if (wire === 5) i = j + 4;
      else {
        const [len, k] = varint(j);
        out.push({ field: Math.floor(tag / 8), bytes: b.subarray(k, k + len) });
        i = k + len;
      }
    }
    return out;
  };
  const graph = fields(model).find((f) => f.field === 7)!.bytes!;
  return fields(graph).filter((f) => f.field === 12).map((f) =>
    new TextDecoder().decode(fields(f.bytes!).find((g) => g.field === 1)!.bytes)
  );
}

Deno.test(
  "ONNX export of a deep-supervision model has the one output, the same bytes as without the heads",
  opts,
  async () => {
    await initGpu();
    const deep = deepNet(true, 3);
    const weights = await readWeights(deep);
    const onnx = unet3dToOnnx(deep.config, weights);
    assert.deepEqual(onnxOutputs(onnx), ["probabilities"]);
    const noAux = new Map([...weights].filter(([n]) => !n.startsWith("aux.")));
    const plain = unet3dToOnnx({ ...deep.config, deepSupervision: false }, noAux);
    assert.deepEqual(onnx, plain);
    assert.deepEqual(onnxOutputs(unet3dToOnnx(deep.config, weights, { logits: true })), [
      "probabilities",
      "logits",
    ]);
    deep.dispose();
  },
);
