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
