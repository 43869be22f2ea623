import assert from "node:assert/strict";
import { fromArray, initGpu, readTensors, type Tensor, zeros } from "../../src/gpu/mod.ts";
import {
  type AdamOptions,
  adamStep,
  decodeGradNorm,
  gradNormControl,
  type SgdOptions,
  sgdStep,
} from "../../src/ops/optim.ts";
import { Random } from "../../src/base/random.ts";
import { relError } from "./check_op.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });

function draw(n: number, seed: number, std = 1): Float32Array {
  const r = new Random(seed);
  return Float32Array.from({ length: n }, () => std * r.normal());
}

// ---- float64 references of PyTorch's update formulas ---------------------------------------

type AdamRefOptions = Omit<AdamOptions, "step">;

/** torch.optim.Adam / AdamW (single-tensor path) for one step t (1-based), in place. */
function adamRef(
  p: Float64Array,
  g: ArrayLike<number>,
  m: Float64Array,
  v: Float64Array,
  o: AdamRefOptions,
  t: number,
  scale = 1,
): void {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, decoupled = false } = o;
  const bc1 = 1 - beta1 ** t;
  const bc2 = 1 - beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i] * scale;
    if (decoupled) p[i] *= 1 - lr * weightDecay;
    else gi += weightDecay * p[i];
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
  }
}

type SgdRefOptions = Omit<SgdOptions, "step">;

/** torch.optim.SGD for one step t (1-based), in place. */
function sgdRef(
  p: Float64Array,
  g: ArrayLike<number>,
  buf: Float64Array,
  o: SgdRefOptions,
  t: number,
  scale = 1,
): void {
  const { lr, momentum = 0.99, nesterov = true, weightDecay = 0, dampening = 0 } = o;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i] * scale + weightDecay * p[i];
    if (momentum !== 0) {
      buf[i] = t === 1 ? gi : momentum * buf[i] + (1 - dampening) * gi;
      gi = nesterov ? gi + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * gi;
  }
}

// ---- helpers -------------------------------------------------------------------------------

const N = 1037;
const STEPS = 5;

/** Deltas from the start, so the f32 rounding of the parameter itself does not hide errors. */
function delta(x: ArrayLike<number>, x0: ArrayLike<number>): Float64Array {
  return Float64Array.from(x0, (v, i) => x[i] - v);
}

async function checkAdam(o: AdamRefOptions): Promise<void> {
  await initGpu();
  const p0 = draw(N, 1);
  const grads = Array.from({ length: STEPS }, (_, t) => draw(N, 100 + t, 0.5));
  const param = fromArray([N], p0);
  const m = zeros([N]);
  const v = zeros([N]);
  const pr = Float64Array.from(p0);
  const mr = new Float64Array(N);
  const vr = new Float64Array(N);
  for (let t = 1; t <= STEPS; t++) {
    const g = fromArray([N], grads[t - 1]);
    adamStep(param, g, m, v, { ...o, step: t });
    g.dispose();
    adamRef(pr, grads[t - 1], mr, vr, o, t);
  }
  const [pg, mg, vg] = await readTensors([param, m, v]);
  [param, m, v].forEach((x) => x.dispose());
  const err = relError(delta(pg, p0), delta(pr, p0));
  assert.ok(err < 1e-4, `param update relative error ${err}`);
  assert.ok(relError(mg, mr) < 1e-5, `m error ${relError(mg, mr)}`);
  assert.ok(relError(vg, vr) < 1e-5, `v error ${relError(vg, vr)}`);
}

async function checkSgd(o: SgdRefOptions): Promise<void> {
  await initGpu();
  const p0 = draw(N, 2);
  const grads = Array.from({ length: STEPS }, (_, t) => draw(N, 200 + t, 0.5));
  const param = fromArray([N], p0);
  const buf = zeros([N]);
  const pr = Float64Array.from(p0);
  const br = new Float64Array(N);
  for (let t = 1; t <= STEPS; t++) {
    const g = fromArray([N], grads[t - 1]);
    sgdStep(param, g, buf, { ...o, step: t });
    g.dispose();
    sgdRef(pr, grads[t - 1], br, o, t);
  }
  const [pg, bg] = await readTensors([param, buf]);
  param.dispose();
  buf.dispose();
  const err = relError(delta(pg, p0), delta(pr, p0));
  assert.ok(err < 1e-4, `param update relative error ${err}`);
  if ((o.momentum ?? 0.99) !== 0) assert.ok(relError(bg, br) < 1e-5, `buffer ${relError(bg, br)}`);
}

// ---- optimizer steps -----------------------------------------------------------------------

test("adamStep: Adam with L2 weight decay 0.01, 5 steps of [1037] vs PyTorch formulas", () =>
  checkAdam({ lr: 1e-3, weightDecay: 0.01 }));
test("adamStep: AdamW decoupled wd 0.1, betas (0.8, 0.95), eps 1e-6, 5 steps of [1037]", () =>
  checkAdam({ lr: 1e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, decoupled: true }));
test("sgdStep: Nesterov momentum 0.99, wd 3e-5, 5 steps of [1037] vs PyTorch formulas", () =>
  checkSgd({ lr: 0.01, momentum: 0.99, weightDecay: 3e-5 }));
test("sgdStep: heavy-ball momentum 0.9, dampening 0.1 (step 1 copies the gradient)", () =>
  checkSgd({ lr: 0.05, momentum: 0.9, dampening: 0.1, nesterov: false, weightDecay: 1e-3 }));
test("sgdStep: plain SGD (momentum 0)", () => checkSgd({ lr: 0.1, momentum: 0, nesterov: false }));

// ---- gradient-norm control -----------------------------------------------------------------

test("gradNormControl: global norm of [1037]+[300]+[5], clipping to 0.4·norm scales the steps", async () => {
  await initGpu();
  const data = [draw(N, 3), draw(300, 4), draw(5, 5)];
  const norm = Math.sqrt(data.reduce((a, d) => a + d.reduce((s, x) => s + x * x, 0), 0));
  const maxNorm = 0.4 * norm;
  const grads = data.map((d) => fromArray([d.length], d));
  const control = gradNormControl(grads, maxNorm);
  const noClip = gradNormControl(grads, Infinity);

  const p0 = draw(N, 6);
  const adamP = fromArray([N], p0);
  const m = zeros([N]);
  const v = zeros([N]);
  const sgdP = fromArray([N], p0);
  const buf = zeros([N]);
  const adamO = { lr: 1e-2, weightDecay: 0.01 };
  const sgdO = { lr: 0.01, momentum: 0.9 };
  adamStep(adamP, grads[0], m, v, { ...adamO, step: 1 }, control);
  sgdStep(sgdP, grads[0], buf, { ...sgdO, step: 1 }, control);

  const [c, c2, ap, sp] = await readTensors([control, noClip, adamP, sgdP]);
  const scale = maxNorm / (norm + 1e-6);
  const info = decodeGradNorm(c);
  assert.ok(Math.abs(info.norm - norm) / norm < 1e-6, `norm ${info.norm} vs ${norm}`);
  assert.ok(Math.abs(info.scale - scale) / scale < 1e-6, `scale ${info.scale} vs ${scale}`);
  assert.equal(info.finite, true);
  assert.deepEqual(decodeGradNorm(c2), { scale: 1, finite: true, norm: c[2] });

  const pr = Float64Array.from(p0);
  adamRef(pr, data[0], new Float64Array(N), new Float64Array(N), adamO, 1, scale);
  assert.ok(relError(delta(ap, p0), delta(pr, p0)) < 1e-4, "Adam step with clipped gradient");
  const sr = Float64Array.from(p0);
  sgdRef(sr, data[0], new Float64Array(N), sgdO, 1, scale);
  assert.ok(relError(delta(sp, p0), delta(sr, p0)) < 1e-4, "SGD step with clipped gradient");
  [...grads, control, noClip, adamP, m, v, sgdP, buf].forEach((t) => t.dispose());
});

for (const bad of [NaN, Infinity]) {
  test(`gradNormControl: gradient containing ${bad} skips Adam and SGD steps, state bit-identical`, async () => {
    await initGpu();
    const clean = draw(N, 7);
    const broken = draw(300, 8);
    broken[123] = bad;
    const p0 = draw(N, 9);
    const tensors: Tensor[] = [];
    const t = (d: Float32Array) => {
      const x = fromArray([d.length], d);
      tensors.push(x);
      return x;
    };
    const [g, gBad, adamP, sgdP] = [t(clean), t(broken), t(p0), t(p0)];
    const [m, v, buf] = [t(draw(N, 10)), t(draw(N, 11).map(Math.abs)), t(draw(N, 12))];
    const before = await readTensors([adamP, m, v, sgdP, buf]);
    for (const maxNorm of [1, Infinity]) {
      const control = gradNormControl([g, gBad], maxNorm);
      tensors.push(control);
      adamStep(adamP, g, m, v, { lr: 0.1, weightDecay: 0.1, decoupled: true, step: 3 }, control);
      sgdStep(sgdP, g, buf, { lr: 0.1, weightDecay: 0.1, step: 3 }, control);
      const [c] = await readTensors([control]);
      assert.equal(decodeGradNorm(c).finite, false, `maxNorm ${maxNorm}: control [${c}]`);
    }
    const after = await readTensors([adamP, m, v, sgdP, buf]);
    before.forEach((b, i) =>
      assert.deepEqual(new Uint32Array(after[i].buffer), new Uint32Array(b.buffer))
    );
    tensors.forEach((x) => x.dispose());
  });
}

test("optimizers validate sizes, options and the control tensor", async () => {
  await initGpu();
  const a = zeros([4, 3]);
  const b = zeros([12]);
  const c = zeros([13]);
  const ctl = zeros([2]);
  assert.throws(
    () => adamStep(a, b, c, b, { lr: 1, step: 1 }),
    /adamStep: tensors must be f32 of equal size, got param f32\[4, 3\], grad f32\[12\], m f32\[13\]/,
  );
  assert.throws(
    () => adamStep(a, b, b, b, { lr: 1, step: 0 }),
    /step must be a 1-based integer, got 0/,
  );
  assert.throws(() => adamStep(a, b, b, b, { lr: 1, beta2: 1, step: 1 }), /beta2 must be/);
  assert.throws(() => adamStep(a, b, b, b, { lr: 1, step: 1 }, ctl), /control must be f32 \[3\]/);
  assert.throws(
    () => sgdStep(a, b, b, { lr: 1, momentum: 0, step: 1 }),
    /Nesterov momentum needs momentum > 0 and dampening 0, got momentum 0/,
  );
  assert.throws(() => sgdStep(a, b, b, { lr: -1, step: 1 }), /lr must be a finite number/);
  assert.throws(() => gradNormControl([b], 0), /maxNorm must be > 0/);
  [a, b, c, ctl].forEach((x) => x.dispose());
});
