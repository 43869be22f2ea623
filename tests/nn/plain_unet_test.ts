import assert from "node:assert/strict";
import { join } from "node:path";
import * as F from "../../src/autograd/functional.ts";
import { Tape } from "../../src/autograd/mod.ts";
import { fromArray, initGpu, readTensors, scope, type Tensor } from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { ConfigError } from "../../src/nn/config_fields.ts";
import { saveCheckpoint } from "../../src/nn/checkpoint.ts";
import { createModel, type SegmentationNet } from "../../src/nn/model.ts";
import {
  checkPatchSize,
  type ModelConfig,
  patchMultiple,
  validateModelConfig,
} from "../../src/nn/model_config.ts";
import {
  type CompletePlainConfig,
  cumulativeStrides,
  PlainConvUNet,
  type PlainConvUNetConfig,
  type Zyx,
} from "../../src/nn/plain_unet.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { loadWeights, readWeights } from "../../src/nn/weights.ts";
import { loadModel } from "../../src/infer/model.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import { trainStep } from "../../src/train/trainer.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

/** The anisotropic plan of the brief: in-plane first, then isotropic. */
const STRIDES: Zyx[] = [[1, 1, 1], [1, 2, 2], [2, 2, 2]];
const KERNELS: Zyx[] = [[1, 3, 3], [3, 3, 3], [3, 3, 3]];

/** A tiny nnU-Net-style config (instance norm, leaky ReLU); channels 2, 4, min(8, 4) = 4. */
const tiny = (o: Partial<PlainConvUNetConfig> = {}): PlainConvUNetConfig => ({
  arch: "plain",
  inChannels: 2,
  classes: 3,
  baseChannels: 2,
  depth: 3,
  convsPerLevel: 2,
  activation: "leaky_relu",
  norm: "instance",
  init: "he",
  deepSupervision: true,
  strides: STRIDES,
  kernels: KERNELS,
  maxChannels: 4,
  ...o,
});

const bits = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

function randomArray(n: number, rng: Random, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal(0, std));
}

// ---------------------------------------------------------------------------------------------
// A float64 CPU reference of the same network (PyTorch formulas), one sample at a time.

/** A weight of the reference: f32 from the GPU, or f64 when a test perturbs it. */
interface RefTensor {
  shape: readonly number[];
  data: ArrayLike<number>;
}
type RefWeights = ReadonlyMap<string, RefTensor>;

/** A [C, D, H, W] float64 feature map. */
interface Map64 {
  c: number;
  dims: number[];
  data: Float64Array;
}

/** Conv3d, padding k // 2 per axis: y[o, z, y, x] = b[o] + Σ x[i, sz·z + a − p, …]·w[o, i, a, …]. */
function conv(x: Map64, w: RefTensor, b: RefTensor, s: readonly number[]): Map64 {
  const [co, ci, ...k] = w.shape;
  const p = k.map((v) => Math.floor(v / 2));
  const [D, H, W] = x.dims;
  const od = x.dims.map((n, i) => Math.floor((n + 2 * p[i] - k[i]) / s[i]) + 1);
  const out = new Float64Array(co * od[0] * od[1] * od[2]);
  let at = 0;
  for (let o = 0; o < co; o++) {
    for (let z = 0; z < od[0]; z++) {
      for (let y = 0; y < od[1]; y++) {
        for (let xx = 0; xx < od[2]; xx++, at++) {
          let sum = b.data[o];
          for (let i = 0; i < ci; i++) {
            for (let a = 0; a < k[0]; a++) {
              const zi = z * s[0] + a - p[0];
              if (zi < 0 || zi >= D) continue;
              for (let bb = 0; bb < k[1]; bb++) {
                const yi = y * s[1] + bb - p[1];
                if (yi < 0 || yi >= H) continue;
                for (let c = 0; c < k[2]; c++) {
                  const xi = xx * s[2] + c - p[2];
                  if (xi < 0 || xi >= W) continue;
                  const wi = (((o * ci + i) * k[0] + a) * k[1] + bb) * k[2] + c;
                  sum += w.data[wi] * x.data[((i * D + zi) * H + yi) * W + xi];
                }
              }
            }
          }
          out[at] = sum;
        }
      }
    }
  }
  return { c: co, dims: od, data: out };
}

/** ConvTranspose3d with kernel = stride: y[o, k·z + a, …] = b[o] + Σ_i x[i, z, …]·w[i, o, a, …]. */
function convTranspose(x: Map64, w: RefTensor, b: RefTensor): Map64 {
  const [ci, co, ...k] = w.shape;
  const [D, H, W] = x.dims;
  const od = [D * k[0], H * k[1], W * k[2]];
  const out = new Float64Array(co * od[0] * od[1] * od[2]);
  for (let o = 0; o < co; o++) {
    for (let z = 0; z < od[0]; z++) {
      for (let y = 0; y < od[1]; y++) {
        for (let xx = 0; xx < od[2]; xx++) {
          const [zi, yi, xi] = [Math.floor(z / k[0]), Math.floor(y / k[1]), Math.floor(xx / k[2])];
          const [a, bb, c] = [z % k[0], y % k[1], xx % k[2]];
          let sum = b.data[o];
          for (let i = 0; i < ci; i++) {
            sum += x.data[((i * D + zi) * H + yi) * W + xi] *
              w.data[(((i * co + o) * k[0] + a) * k[1] + bb) * k[2] + c];
          }
          out[((o * od[0] + z) * od[1] + y) * od[2] + xx] = sum;
        }
      }
    }
  }
  return { c: co, dims: od, data: out };
}

/** Instance norm (biased variance, ε 1e-5, affine), then leaky ReLU (slope 0.01). */
function normAct(x: Map64, g: RefTensor, b: RefTensor): Map64 {
  const v = x.data.length / x.c;
  const out = new Float64Array(x.data.length);
  for (let c = 0; c < x.c; c++) {
    const part = x.data.subarray(c * v, (c + 1) * v);
    const mean = part.reduce((s, a) => s + a, 0) / v;
    const variance = part.reduce((s, a) => s + (a - mean) ** 2, 0) / v;
    part.forEach((a, i) => {
      const y = ((a - mean) / Math.sqrt(variance + 1e-5)) * g.data[c] + b.data[c];
      out[c * v + i] = y > 0 ? y : 0.01 * y;
    });
  }
  return { ...x, data: out };
}

function stageRef(W: RefWeights, prefix: string, x: Map64, stride: Zyx, n: number) {
  let h = x;
  for (let i = 1; i <= n; i++) {
    const t = (k: string) => W.get(`${prefix}.${k}`)!;
    h = conv(h, t(`conv${i}.weight`), t(`conv${i}.bias`), i === 1 ? stride : [1, 1, 1]);
    h = normAct(h, t(`norm${i}.weight`), t(`norm${i}.bias`));
  }
  return h;
}

/** The network's logits for one sample [C, D, H, W], in float64. */
function forwardRef(c: CompletePlainConfig, W: RefWeights, x: Map64): Map64 {
  const skips: Map64[] = [];
  let h = x;
  for (let s = 0; s < c.depth; s++) {
    h = stageRef(W, `enc.${s}`, h, c.strides[s], c.convsPerLevel);
    skips.push(h);
  }
  for (let s = c.depth - 2; s >= 0; s--) {
    h = convTranspose(h, W.get(`up.${s}.weight`)!, W.get(`up.${s}.bias`)!);
    const cat = new Float64Array(skips[s].data.length + h.data.length);
    cat.set(skips[s].data);
    cat.set(h.data, skips[s].data.length);
    const joined = { c: skips[s].c + h.c, dims: h.dims, data: cat };
    h = stageRef(W, `dec.${s}`, joined, [1, 1, 1], c.convsPerLevel);
  }
  return conv(h, W.get("head.weight")!, W.get("head.bias")!, [1, 1, 1]);
}

/** Logits [N, classes, D, H, W] of the reference, flattened like the GPU's. */
function forwardRefBatch(
  c: CompletePlainConfig,
  W: RefWeights,
  shape: number[],
  x: Float32Array,
): Float64Array {
  const [n, ci, ...dims] = shape;
  const per = ci * dims[0] * dims[1] * dims[2];
  const outs = Array.from(
    { length: n },
    (_, i) =>
      forwardRef(c, W, { c: ci, dims, data: Float64Array.from(x.subarray(i * per, (i + 1) * per)) })
        .data,
  );
  const all = new Float64Array(outs.reduce((s, o) => s + o.length, 0));
  outs.forEach((o, i) => all.set(o, i * o.length));
  return all;
}

/** A tiny plain net whose biases and norm parameters are random too (not 0 and 1). */
async function randomPlainNet(config: PlainConvUNetConfig, seed: number) {
  await initGpu();
  const net = new PlainConvUNet(config, seed);
  const weights = await readWeights(net);
  const rng = new Random(seed + 50);
  for (const [name, t] of weights) {
    if (/norm\d\.weight$/.test(name)) t.data.forEach((_, i) => t.data[i] = rng.uniform(0.5, 1.5));
    else if (!name.endsWith(".weight")) t.data.forEach((_, i) => t.data[i] = rng.normal(0, 0.2));
  }
  loadWeights(net, weights);
  return { net, weights };
}

// ---------------------------------------------------------------------------------------------
// Structure and numbers. Every GPU test runs the same net (tiny(): channels 2, 4, 4) on the same
// odd-ish patch, so they share the kernels' compiled pipelines (seconds each on a CPU adapter).

/** D, H, W of every GPU test's input: multiples of 2, 4, 4; 1×3×5 at the bottleneck. */
const PATCH = [4, 12, 20];
const VOXELS = PATCH[0] * PATCH[1] * PATCH[2];

Deno.test(
  "PlainConvUNet: anisotropic strides give per-axis output shapes at every scale",
  opts,
  async () => {
    await initGpu();
    const net = new PlainConvUNet(tiny(), 1);
    assert.deepEqual(cumulativeStrides(net.config), [[1, 1, 1], [1, 2, 2], [2, 4, 4]]);
    const x = fromArray([2, 2, ...PATCH], randomArray(4 * VOXELS, new Random(2)));
    const outs = scope(() => net.forwardDeep(x, { training: true }));
    // Output 1 is halved in y and x only: stage 1's stride is 1×2×2.
    assert.deepEqual(outs.map((o) => o.shape), [[2, 3, 4, 12, 20], [2, 3, 4, 6, 10]]);
    const main = scope(() => net.forward(x, { training: true }));
    const [a, b] = await readTensors([main, outs[0]]);
    assert.deepEqual(bits(a), bits(b), "forwardDeep's first output is forward's");
    const odd = fromArray([1, 2, 4, 12, 18], new Float32Array(2 * 4 * 12 * 18));
    assert.throws(
      () => net.forward(odd),
      /spatial size 4×12×18 must be divisible by 2×4×4 along z×y×x \(the product of model\.strides per axis\)/,
    );
    for (const t of [x, main, odd, ...outs]) t.dispose();
    net.dispose();
  },
);

Deno.test(
  "PlainConvUNet names and shapes its tensors like a PyTorch state_dict",
  opts,
  async () => {
    await initGpu();
    const net = new PlainConvUNet(tiny({ norm: "batch", maxChannels: 6 }), 0);
    const shape = (n: string) => net.params.get(n)?.tensor.shape;
    // Channels 2, 4, min(8, 6) = 6; conv weights [out, in, kd, kh, kw].
    assert.deepEqual(shape("enc.0.conv1.weight"), [2, 2, 1, 3, 3]);
    assert.deepEqual(shape("enc.0.conv2.weight"), [2, 2, 1, 3, 3]);
    assert.deepEqual(shape("enc.1.conv1.weight"), [4, 2, 3, 3, 3]);
    assert.deepEqual(shape("enc.2.conv1.weight"), [6, 4, 3, 3, 3]);
    assert.deepEqual(shape("enc.2.norm2.running_var"), [6]);
    // Transposed conv weights [in, out, sd, sh, sw] with the stride of the stage below.
    assert.deepEqual(shape("up.1.weight"), [6, 4, 2, 2, 2]);
    assert.deepEqual(shape("up.0.weight"), [4, 2, 1, 2, 2]);
    assert.deepEqual(shape("dec.1.conv1.weight"), [4, 8, 3, 3, 3]);
    assert.deepEqual(shape("dec.0.conv1.weight"), [2, 4, 1, 3, 3]);
    assert.deepEqual(shape("head.weight"), [3, 2, 1, 1, 1]);
    assert.deepEqual(shape("aux.1.weight"), [3, 4, 1, 1, 1]);
    assert.equal(shape("aux.0.weight"), undefined);
    assert.equal(net.params.get("enc.0.norm1.running_mean")!.trainable, false);
    // Per conv 6 tensors (conv weight, bias; norm weight, bias, running mean, var): 3 encoder
    // stages × 2 convs, 2 decoder stages × 2 convs + up weight, bias; head and aux.1, 2 each.
    assert.equal(net.params.size, 3 * 2 * 6 + 2 * (2 * 6 + 2) + 2 + 2);
    // He initialisation: std sqrt(2 / fan-in), fan-in = in · kd · kh · kw.
    const w = await net.params.get("dec.1.conv2.weight")!.tensor.read(); // [4, 4, 3, 3, 3]
    const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    assert.ok(Math.abs(std / Math.sqrt(2 / (4 * 27)) - 1) < 0.15, `std ${std}`);
    net.dispose();
  },
);

Deno.test(
  "PlainConvUNet forward = a float64 CPU reference of the same net within 1e-4",
  opts,
  async () => {
    const { net, weights } = await randomPlainNet(tiny(), 3);
    const shape = [2, 2, ...PATCH];
    const x = randomArray(2 * 2 * VOXELS, new Random(4));
    const y = scope(() => net.forward(fromArray(shape, x), { training: false }));
    assert.deepEqual(y.shape, [2, 3, ...PATCH]);
    const [got] = await readTensors([y]);
    const want = forwardRefBatch(net.config, weights, shape, x);
    let diff = 0, scale = 0;
    want.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(v - got[i]));
      scale = Math.max(scale, Math.abs(v));
    });
    assert.ok(scale > 0.5, `logits too small to say anything (max |y| ${scale})`);
    assert.ok(diff <= 1e-4, `max |Δ| ${diff}`);
    y.dispose();
    net.dispose();
  },
);

Deno.test(
  "PlainConvUNet backward: weight gradients match float64 central differences through the whole net",
  opts,
  async () => {
    const { net, weights } = await randomPlainNet(tiny(), 5);
    const shape = [1, 2, ...PATCH];
    const rng = new Random(6);
    const x = randomArray(2 * VOXELS, rng);
    const r = randomArray(3 * VOXELS, rng); // L = Σ logits · r
    const names = ["enc.0.conv1.weight", "enc.1.conv1.weight", "up.0.weight", "up.1.weight"];
    const tensors = names.map((n) => net.params.get(n)!.tensor);
    const grads = scope(() => {
      const tape = new Tape().watch(...tensors);
      try {
        const xt = fromArray(shape, x), rt = fromArray([1, 3, ...PATCH], r);
        const loss = tape.record(() => F.sum(F.mul(net.forward(xt), rt)));
        const g = tape.backward(loss);
        return tensors.map((t) => g.get(t)!);
      } finally {
        tape.dispose();
      }
    });
    const host = await readTensors(grads);
    const lossRef = (w: RefWeights) =>
      forwardRefBatch(net.config, w, shape, x).reduce((s, v, i) => s + v * r[i], 0);
    for (const [k, name] of names.entries()) {
      const g = host[k];
      const largest = g.reduce((b, v, j) => (Math.abs(v) > Math.abs(g[b]) ? j : b), 0);
      assert.ok(Math.abs(g[largest]) > 1e-2, `${name}: gradient ${g[largest]} too small to test`);
      for (const i of [largest, Math.floor(g.length / 3)]) {
        const probe = (delta: number) => {
          const t = weights.get(name)!;
          const data = Float64Array.from(t.data); // perturbed in float64
          data[i] += delta;
          return lossRef(new Map<string, RefTensor>(weights).set(name, { shape: t.shape, data }));
        };
        const h = 1e-4;
        const numeric = (probe(h) - probe(-h)) / (2 * h);
        assert.ok(
          Math.abs(numeric - g[i]) <= 1e-3 + 1e-3 * Math.abs(numeric),
          `${name}[${i}]: backward ${g[i]} vs central difference ${numeric}`,
        );
      }
    }
    for (const t of grads) t.dispose();
    net.dispose();
  },
);

Deno.test(
  "PlainConvUNet with deep supervision: a few seeded train steps lower the loss",
  opts,
  async () => {
    await initGpu();
    const config = resolveConfig(undefined, {
      "model.arch": "plain",
      "model.inChannels": "2",
      "model.depth": "3",
      "model.strides": "1/1,2,2/2",
      "model.kernels": "1,3,3/3/3",
      "model.baseChannels": "2",
      "model.maxChannels": "4",
      "model.norm": "instance",
      "model.activation": "leaky_relu",
      "model.deepSupervision": "true",
      "data.patchSize": PATCH.join(","),
      "data.batchSize": "1",
    });
    assert.deepEqual(config.model, tiny());
    const net = createModel(config.model, 7);
    assert.ok(net instanceof PlainConvUNet);
    // A bright box (class 1) and a dark one (class 2) on noise, in both channels.
    const rng = new Random(8);
    const img = new Float32Array(2 * VOXELS), lab = new Uint32Array(VOXELS);
    const [, H, W] = PATCH;
    for (let i = 0; i < VOXELS; i++) {
      const [z, y, x] = [Math.floor(i / (H * W)), Math.floor(i / W) % H, i % W];
      lab[i] = y >= 2 && y < 7 && x >= 3 && x < 9 ? 1 : z >= 2 && y >= 8 && x >= 12 ? 2 : 0;
      img[i] = [0, 1, -1][lab[i]] + 0.1 * rng.normal();
      img[VOXELS + i] = -img[i];
    }
    const x = fromArray([1, 2, ...PATCH], img), labels = fromArray([1, ...PATCH], lab, "u32");
    const optimizer = new Optimizer(
      net.trainable().map((p) => ({ name: p.name, tensor: p.tensor })),
      config.optimizer,
    );
    const losses: Tensor[] = [];
    for (let step = 0; step < 10; step++) {
      const { loss, control } = trainStep(net, optimizer, x, labels, config, 0.01);
      control.dispose();
      losses.push(loss);
    }
    const values = (await readTensors(losses)).map((l) => l[0]);
    assert.ok(values.every(Number.isFinite), `${values}`);
    assert.ok(values.at(-1)! < 0.8 * values[0], `loss ${values[0]} → ${values.at(-1)}`);
    for (const t of [...losses, x, labels]) t.dispose();
    optimizer.dispose();
    net.dispose();
  },
);

Deno.test(
  "PlainConvUNet checkpoint round trip: saved, loaded by the inference loader, same output bits",
  opts,
  async () => {
    const { net, weights } = await randomPlainNet(tiny(), 9);
    const dir = await Deno.makeTempDir({ prefix: "voxseg_plain_test_" });
    try {
      const path = join(dir, "plain.safetensors");
      await saveCheckpoint(path, {
        weights,
        meta: {
          model: net.config,
          classNames: ["background", "lung", "infection"],
          normalisation: { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 },
          patchSize: [PATCH[0], PATCH[1], PATCH[2]],
          spacingMm: [3, 0.8, 0.8],
          training: { epoch: 1, step: 2, monitor: "dice", bestMetric: null, metrics: {} },
        },
      });
      const loaded = await loadModel(path);
      assert.ok(loaded.model instanceof PlainConvUNet);
      assert.deepEqual(loaded.meta.model, net.config);
      const shape = [1, 2, ...PATCH];
      const x = randomArray(2 * VOXELS, new Random(10));
      const run = (m: SegmentationNet) =>
        scope(() => m.forward(fromArray(shape, x), { training: false }));
      const [a, b] = await readTensors([run(net), run(loaded.model)]);
      assert.deepEqual(bits(a), bits(b));
      assert.ok(a.some((v) => v !== 0));
      loaded.dispose();
    } finally {
      net.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Config

/** A model config as checkpoints stored it before `arch` existed. */
const OLD = {
  inChannels: 1,
  classes: 2,
  baseChannels: 2,
  depth: 3,
  convsPerLevel: 1,
  activation: "relu",
  norm: "none",
  init: "he",
  deepSupervision: false,
} as const;

Deno.test("createModel: no arch is today's UNet3D, weight for weight", opts, async () => {
  await initGpu();
  const validated = validateModelConfig(OLD);
  assert.deepEqual(validated, OLD, "nothing is added to a unet3d config");
  const a = createModel(validated, 4), b = new UNet3D(OLD, 4);
  assert.ok(a instanceof UNet3D);
  const [wa, wb] = [await readWeights(a), await readWeights(b)];
  assert.deepEqual([...wa.keys()], [...wb.keys()]);
  for (const [name, t] of wa) assert.deepEqual(bits(t.data), bits(wb.get(name)!.data), name);
  a.dispose();
  b.dispose();
});

Deno.test("model config: plain defaults, per-stage syntax and the errors that name the fix", () => {
  const plain = validateModelConfig({ ...OLD, arch: "plain" });
  assert.deepEqual(plain, {
    ...OLD,
    arch: "plain",
    strides: [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    kernels: [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
    maxChannels: 320,
  });
  const flags = (f: Record<string, string>) =>
    resolveConfig(undefined, { "model.depth": "3", "data.patchSize": "8,8,8", ...f }).model;
  assert.deepEqual(
    flags({ "model.arch": "plain", "model.strides": "1,1,1/1,2,2/2,2,2" }),
    { ...flags({}), arch: "plain", strides: STRIDES, kernels: plain.kernels, maxChannels: 320 },
  );
  assert.throws(
    () => flags({ "model.strides": "1,1,1/1,2/2" }),
    new ConfigError(
      'model.strides must be z,y,x triples of 1 or 2, one per stage, joined by "/" (e.g. ' +
        '1,1,1/1,2,2/2,2,2; one number stands for all three axes), got "1,1,1/1,2/2" ' +
        "(from --model.strides)",
    ),
  );
  assert.throws(
    () => flags({ "model.kernels": "1,3,5" }),
    /model\.kernels must be z,y,x triples of 1 or 3/,
  );
  assert.throws(
    () => validateModelConfig({ ...OLD, strides: STRIDES }, "a.safetensors"),
    new ConfigError(
      "model.strides only apply to model.arch plain, but model.arch is unet3d; set " +
        "--model.arch plain, or drop them (a.safetensors)",
    ),
  );
  assert.throws(
    () => validateModelConfig({ ...OLD, arch: "plain", strides: STRIDES.slice(1) }),
    /model\.strides has 2 stage\(s\) but model\.depth is 3: give one z,y,x triple per stage, or set --model\.depth 2/,
  );
  assert.throws(
    () => validateModelConfig({ ...OLD, arch: "plain", strides: [[1, 2, 2], ...STRIDES.slice(1)] }),
    /stage 0 runs at full resolution, so its stride must be 1,1,1, got 1,2,2/,
  );
  assert.throws(
    () => validateModelConfig({ ...OLD, arch: "plain", maxChannels: 1 }),
    /model\.maxChannels must be an integer ≥ model\.baseChannels \(2\), got 1/,
  );
  assert.throws(
    () => validateModelConfig({ ...OLD, arch: "resnet" }),
    /model\.arch must be one of unet3d, plain/,
  );
});

Deno.test("patchMultiple and checkPatchSize: per axis for plain, 2^(depth−1) for unet3d", () => {
  const plain: ModelConfig = { ...OLD, arch: "plain", strides: STRIDES, kernels: KERNELS };
  assert.deepEqual(patchMultiple(plain), [2, 4, 4]);
  assert.deepEqual(patchMultiple(OLD), [4, 4, 4]);
  checkPatchSize(plain, [6, 12, 20]);
  assert.throws(
    () => checkPatchSize(plain, [5, 12, 18]),
    new ConfigError(
      "data.patchSize [5,12,18] must be divisible by 2,4,4 (z,y,x: the product of " +
        "model.strides per axis); e.g. --patch 6,12,20",
    ),
  );
  assert.throws(
    () => checkPatchSize(OLD, [6, 12, 20]),
    /divisible by 2\^\(model\.depth − 1\) = 4 in every dimension \(model\.depth is 3\); e\.g\. --patch 8,12,20/,
  );
});
