import assert from "node:assert/strict";
import * as F from "../../src/autograd/functional.ts";
import { Tape } from "../../src/autograd/mod.ts";
import {
  fromArray,
  initGpu,
  readInt,
  readTensors,
  scope,
  type Tensor,
  upload,
} from "../../src/gpu/mod.ts";
import { Random } from "../../src/base/random.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import { PlainConvUNet, type Zyx } from "../../src/nn/plain_unet.ts";
import { readWeights } from "../../src/nn/weights.ts";
import { resolveConfig } from "../../src/train/config.ts";
import {
  deepSupervisionLoss,
  deepSupervisionWeights,
  downsampleLabels,
} from "../../src/train/deep_supervision.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import { lossFor, trainStep } from "../../src/train/trainer.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const S = 8; // input edge: depth 4 pools three times, 8 → 4 → 2 → 1

/**
 * Labels [1, D, H, W] subsampled on the host: every `s`-th voxel from the first (s one stride,
 * or one per axis z, y, x).
 */
function downsampleRef(lab: Uint32Array, [d, h, w]: number[], s: number | Zyx): Uint32Array {
  const [sz, sy, sx] = typeof s === "number" ? [s, s, s] : s;
  const out: number[] = [];
  for (let z = 0; z < d; z += sz) {
    for (let y = 0; y < h; y += sy) {
      for (let x = 0; x < w; x += sx) out.push(lab[(z * h + y) * w + x]);
    }
  }
  return Uint32Array.from(out);
}

/** A depth-4 U-Net with aux heads, an 8³ input and labels in 0..2 (seeded). */
function tinyProblem(seed: number, deepSupervision = true) {
  const net = new UNet3D(
    { baseChannels: 2, depth: 4, convsPerLevel: 1, classes: 3, norm: "instance", deepSupervision },
    seed,
  );
  const rng = new Random(seed + 1);
  const img = Float32Array.from({ length: S ** 3 }, () => rng.normal());
  const lab = Uint32Array.from(
    { length: S ** 3 },
    () => Math.min(2, Math.floor(rng.uniform(0, 3))),
  );
  return {
    net,
    lab,
    x: fromArray([1, 1, S, S, S], img),
    labels: fromArray([1, S, S, S], lab, "u32"),
  };
}

function tinyConfig(deepSupervision: boolean) {
  return resolveConfig(undefined, {
    "model.baseChannels": "2",
    "model.depth": "4",
    "model.convsPerLevel": "1",
    "model.norm": "instance",
    "model.deepSupervision": String(deepSupervision),
    "data.patchSize": `${S},${S},${S}`,
    "data.batchSize": "1",
  });
}

const f32bits = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0];

Deno.test("deepSupervisionWeights: 1/2^k, the lowest scale 0, normalised to sum 1", () => {
  // Four scales (a depth-5 U-Net): [1, 1/2, 1/4, 0] / 1.75.
  assert.deepEqual(deepSupervisionWeights(4), [4 / 7, 2 / 7, 1 / 7, 0]);
  // Three scales (depth 4, nnU-Net's 3 decoder outputs): [1, 1/2, 0] / 1.5.
  assert.deepEqual(deepSupervisionWeights(3), [2 / 3, 1 / 3, 0]);
  assert.deepEqual(deepSupervisionWeights(2), [1, 0]);
  assert.deepEqual(deepSupervisionWeights(1), [1]); // the only scale keeps its weight
  const w6 = deepSupervisionWeights(6);
  assert.ok(Math.abs(w6.reduce((a, b) => a + b, 0) - 1) < 1e-15);
  assert.equal(w6[5], 0);
  assert.equal(w6[0] / w6[4], 16);
  assert.throws(() => deepSupervisionWeights(0), /number of scales must be ≥ 1, got 0/);
});

Deno.test("downsampleLabels: a hand-made label map sampled at the 2^k lattice", opts, async () => {
  await initGpu();
  // [2, 4, 4, 8] with label = 1000n + 100z + 10y + x; level k keeps (2^k z, 2^k y, 2^k x).
  const [N, D, H, W] = [2, 4, 4, 8];
  const lab = new Uint32Array(N * D * H * W);
  for (let n = 0; n < N; n++) {
    for (let z = 0; z < D; z++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          lab[((n * D + z) * H + y) * W + x] = 1000 * n + 100 * z + 10 * y + x;
        }
      }
    }
  }
  const labels = fromArray([N, D, H, W], lab, "u32");
  assert.equal(downsampleLabels(labels, 0), labels);
  const half = downsampleLabels(labels, 1);
  const quarter = downsampleLabels(labels, 2);
  assert.deepEqual(half.shape, [2, 2, 2, 4]);
  assert.deepEqual(quarter.shape, [2, 1, 1, 2]);
  assert.deepEqual(
    [...await readInt(half)],
    [
      ...[0, 2, 4, 6, 20, 22, 24, 26, 200, 202, 204, 206, 220, 222, 224, 226],
      ...[1000, 1002, 1004, 1006, 1020, 1022, 1024, 1026, 1200, 1202, 1204, 1206, 1220, 1222],
      ...[1224, 1226],
    ],
  );
  assert.deepEqual([...await readInt(quarter)], [0, 4, 1000, 1004]);
  assert.throws(() => downsampleLabels(fromArray([4, 4, 4], lab.subarray(0, 64), "u32"), 1), {
    message: "deep supervision: labels must be [N, D, H, W], got [4,4,4]",
  });
  for (const t of [labels, half, quarter]) t.dispose();
});

Deno.test(
  "deepSupervisionLoss equals ⅔·L(full) + ⅓·L(half) + 0·L(quarter) computed one by one",
  opts,
  async () => {
    await initGpu();
    const { net, lab, x, labels } = tinyProblem(3);
    const config = tinyConfig(true);
    const per = (l: Tensor, t: Tensor) => lossFor(l, t, config);
    const [deep, ...separate] = scope(() => {
      const outs = net.forwardDeep(x, { training: true });
      const targets = [1, 2, 4].map((s, k) =>
        fromArray(outs[k].shape.filter((_, i) => i !== 1), downsampleRef(lab, [S, S, S], s), "u32")
      );
      return [deepSupervisionLoss(outs, labels, per), ...outs.map((o, k) => per(o, targets[k]))];
    });
    const values = (await readTensors([deep, ...separate])).map((v) => v[0]);
    const [L0, L1, L2] = values.slice(1);
    assert.ok([L0, L1, L2].every((v) => Number.isFinite(v) && v > 0), `${values}`);
    const want = (2 / 3) * L0 + (1 / 3) * L1 + 0 * L2;
    assert.ok(Math.abs(values[0] - want) < 1e-5, `deep ${values[0]} vs ${want}`);
    assert.ok(Math.abs(values[0] - L0) > 1e-4, "the aux term must change the loss");
    for (const t of [deep, ...separate, x, labels]) t.dispose();
    net.dispose();
  },
);

Deno.test(
  "deepSupervisionLoss: gradients reach aux.1 (⅓ of its own loss's, finite-difference checked), none reach the zero-weight aux.2",
  opts,
  async () => {
    await initGpu();
    const { net, lab, x, labels } = tinyProblem(5);
    const ce = (l: Tensor, t: Tensor) => F.crossEntropy(l, t);
    const params = net.trainable();
    const w1 = net.params.get("aux.1.weight")!.tensor;
    const target1 = fromArray([1, 4, 4, 4], downsampleRef(lab, [S, S, S], 2), "u32");
    const gradsOf = (lossOf: (outs: Tensor[]) => Tensor) =>
      scope(() => {
        const tape = new Tape().watch(...params.map((p) => p.tensor));
        try {
          const loss = tape.record(() => lossOf(net.forwardDeep(x)));
          return tape.backward(loss);
        } finally {
          tape.dispose();
        }
      });
    const deep = gradsOf((outs) => deepSupervisionLoss(outs, labels, ce));
    const alone = gradsOf((outs) => F.crossEntropy(outs[1], target1));
    for (const name of ["aux.2.weight", "aux.2.bias"]) {
      assert.equal(deep.get(net.params.get(name)!.tensor), undefined, name);
    }
    const [gDeep, gAlone, gHead] = await readTensors([
      deep.get(w1)!,
      alone.get(w1)!,
      deep.get(net.params.get("head.weight")!.tensor)!,
    ]);
    assert.ok(gDeep.some((v) => Math.abs(v) > 1e-4), `aux.1 gradient ${gDeep}`);
    assert.ok(gHead.some((v) => Math.abs(v) > 1e-4), `head gradient ${gHead}`);
    gDeep.forEach((g, i) => assert.ok(Math.abs(g - gAlone[i] / 3) < 1e-6 + 1e-4 * Math.abs(g)));

    // Central difference of the deep loss in aux.1.weight[i], the largest gradient entry.
    const i = gDeep.reduce((best, v, j) => (Math.abs(v) > Math.abs(gDeep[best]) ? j : best), 0);
    const host = (await readWeights(net)).get("aux.1.weight")!.data;
    const lossWith = async (delta: number) => {
      const w = host.slice();
      w[i] += delta;
      upload(w1, w);
      const l = scope(() => deepSupervisionLoss(net.forwardDeep(x), labels, ce));
      const [v] = await readTensors([l]);
      l.dispose();
      return v[0];
    };
    const h = 1e-2;
    const numeric = ((await lossWith(h)) - (await lossWith(-h))) / (2 * h);
    assert.ok(
      Math.abs(numeric - gDeep[i]) < 1e-3 + 0.02 * Math.abs(gDeep[i]),
      `finite difference ${numeric} vs backward ${gDeep[i]}`,
    );
    for (const g of [...deep.values(), ...alone.values(), x, labels, target1]) g.dispose();
    net.dispose();
  },
);

Deno.test(
  "trainStep: deepSupervision=false is the plain loss bit for bit; true steps the aux heads it supervises",
  opts,
  async () => {
    await initGpu();
    for (const ds of [false, true]) {
      const { net, x, labels } = tinyProblem(7, ds);
      const config = tinyConfig(ds);
      const ref = scope(() =>
        ds
          ? deepSupervisionLoss(
            net.forwardDeep(x),
            labels,
            (l, t) => lossFor(l, t, config),
          )
          : lossFor(net.forward(x, { training: true }), labels, config)
      );
      const before = await readWeights(net);
      const optimizer = new Optimizer(
        net.trainable().map((p) => ({ name: p.name, tensor: p.tensor })),
        config.optimizer,
      );
      const { loss, control } = trainStep(net, optimizer, x, labels, config, 1e-2);
      const [[want], [got]] = await readTensors([ref, loss]);
      assert.equal(f32bits(got), f32bits(want), `deepSupervision=${ds}: ${got} vs ${want}`);
      const after = await readWeights(net);
      const changed = (name: string) =>
        after.get(name)!.data.some((v, j) => v !== before.get(name)!.data[j]);
      assert.ok(changed("head.weight") && changed("enc.0.conv1.weight"));
      assert.equal([...after.keys()].some((n) => n.startsWith("aux.")), ds);
      if (ds) {
        assert.ok(changed("aux.1.weight"), "aux.1 (weight ⅓) must be trained");
        assert.ok(!changed("aux.2.weight") && !changed("aux.2.bias"), "aux.2 has weight 0");
      }
      for (const t of [ref, loss, control, x, labels]) t.dispose();
      optimizer.dispose();
      net.dispose();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Per-axis strides (a PlainConvUNet on anisotropic data)

Deno.test(
  "downsampleLabels with a per-axis stride keeps the sz×sy×sx block corners",
  opts,
  async () => {
    await initGpu();
    // [2, 4, 4, 8] with label = 1000n + 100z + 10y + x.
    const [N, D, H, W] = [2, 4, 4, 8];
    const lab = new Uint32Array(N * D * H * W);
    for (let i = 0; i < lab.length; i++) {
      const [n, z, y, x] = [
        Math.floor(i / 128),
        Math.floor(i / 32) % 4,
        Math.floor(i / 8) % 4,
        i % 8,
      ];
      lab[i] = 1000 * n + 100 * z + 10 * y + x;
    }
    const labels = fromArray([N, D, H, W], lab, "u32");
    assert.equal(downsampleLabels(labels, 2, [1, 1, 1]), labels);
    const odd = downsampleLabels(labels, 1, [2, 1, 4]);
    assert.deepEqual(odd.shape, [2, 2, 4, 2]);
    assert.deepEqual(
      [...await readInt(odd)],
      [
        ...[0, 4, 10, 14, 20, 24, 30, 34, 200, 204, 210, 214, 220, 224, 230, 234],
        ...[1000, 1004, 1010, 1014, 1020, 1024, 1030, 1034, 1200, 1204, 1210, 1214, 1220, 1224],
        ...[1230, 1234],
      ],
    );
    const inPlane = downsampleLabels(labels, 1, [1, 2, 2]);
    assert.deepEqual(inPlane.shape, [2, 4, 2, 4]);
    const one = lab.subarray(0, D * H * W);
    assert.deepEqual(
      [...(await readInt(inPlane)).subarray(0, 32)],
      [...downsampleRef(one, [D, H, W], [1, 2, 2])],
    );
    for (const t of [labels, odd, inPlane]) t.dispose();
  },
);

Deno.test(
  "deepSupervisionLoss on a PlainConvUNet: strides per axis from the output shapes, ⅔·L(full) + ⅓·L(1×2×2) + 0",
  opts,
  async () => {
    await initGpu();
    // Four stages: in-plane, then isotropic twice → outputs at strides 1×1×1, 1×2×2, 2×4×4.
    const net = new PlainConvUNet({
      arch: "plain",
      inChannels: 1,
      classes: 3,
      baseChannels: 2,
      depth: 4,
      convsPerLevel: 1,
      activation: "leaky_relu",
      norm: "instance",
      init: "he",
      deepSupervision: true,
      strides: [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
      kernels: [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
      maxChannels: 4,
    }, 11);
    const [D, H, W] = [4, 8, 8];
    const rng = new Random(12);
    const img = Float32Array.from({ length: D * H * W }, () => rng.normal());
    const lab = Uint32Array.from({ length: D * H * W }, () => Math.floor(rng.uniform(0, 3)) % 3);
    const x = fromArray([1, 1, D, H, W], img), labels = fromArray([1, D, H, W], lab, "u32");
    const ce = (l: Tensor, t: Tensor) => F.crossEntropy(l, t);
    const strides: Zyx[] = [[1, 1, 1], [1, 2, 2], [2, 4, 4]];
    const [derived, given, L0, L1] = scope(() => {
      const outs = net.forwardDeep(x);
      assert.deepEqual(outs.map((o) => o.shape.slice(2)), [[4, 8, 8], [4, 4, 4], [2, 2, 2]]);
      const half = fromArray([1, 4, 4, 4], downsampleRef(lab, [D, H, W], [1, 2, 2]), "u32");
      return [
        deepSupervisionLoss(outs, labels, ce),
        deepSupervisionLoss(outs, labels, ce, strides),
        ce(outs[0], labels),
        ce(outs[1], half),
      ];
    });
    const [[d], [g], [l0], [l1]] = await readTensors([derived, given, L0, L1]);
    assert.ok(l0 > 0 && l1 > 0 && Math.abs(l0 - l1) > 1e-3, `${l0} ${l1}`);
    assert.ok(Math.abs(d - ((2 / 3) * l0 + (1 / 3) * l1)) < 1e-5, `${d} vs ${l0}, ${l1}`);
    assert.equal(f32bits(g), f32bits(d), "explicit strides = the ones the shapes give");
    assert.throws(
      () =>
        scope(() =>
          deepSupervisionLoss(net.forwardDeep(x), labels, ce, [[1, 1, 1], [2, 2, 2], [2, 4, 4]])
        ),
      /output 1 is \[1,3,4,4,4\] but the labels at stride 2×2×2 are \[1,2,4,4\]/,
    );
    const odd = fromArray([1, 3, 3, 8, 8], new Float32Array(3 * 3 * 64));
    assert.throws(
      () => deepSupervisionLoss([odd], labels, ce),
      /output 0 is \[1,3,3,8,8\] but the labels are \[1,4,8,8\]; each output's D, H, W must divide the labels'/,
    );
    for (const t of [derived, given, L0, L1, x, labels, odd]) t.dispose();
    net.dispose();
  },
);
