/**
 * Proofs for the training loop on a tiny synthetic dataset (6 cases of 16×32×32, 2 of them for
 * validation) and tiny U-Nets (base 4, depth 2): runs are reproducible, a stopped run resumes
 * to the same weights, checkpoints reload to the same predictions, the network learns, and a
 * non-finite loss never reaches the weights or a checkpoint.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { fromArray, initGpu, keep, readTensors } from "../../src/gpu/mod.ts";
import { datasetValidator, type Validator } from "../../src/infer/dataset_validator.ts";
import { argmaxClasses, slidingWindow } from "../../src/infer/sliding_window.ts";
import { UNet3D } from "../../src/nn/unet3d.ts";
import type { SegmentationNet } from "../../src/nn/model.ts";
import { loadOptimizerState } from "../../src/train/checkpoint.ts";
import { decodeCheckpoint, loadCheckpoint } from "../../src/nn/checkpoint.ts";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { readMetricsLog } from "../../src/train/metrics_log.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import type { HostTensor } from "../../src/nn/safetensors.ts";
import { train, type TrainEvent, trainStep } from "../../src/train/trainer.ts";
import { loadWeights, readWeights } from "../../src/nn/weights.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };
const PATCH: [number, number, number] = [16, 16, 16];

const root = Deno.makeTempDirSync({ prefix: "voxseg_trainer_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

let datasetReady: Promise<string> | undefined;
/** The shared dataset: 4 train and 2 val cases of 16×32×32, generated on first use. */
function synthDataset(): Promise<string> {
  datasetReady ??= (async () => {
    const dir = join(root, "synth");
    await generateSynthDataset(dir, { cases: 6, shape: [16, 32, 32], val: 0.34, test: 0 });
    return dir;
  })();
  return datasetReady;
}

/** A tiny run's config in its own folder under the temp root. */
async function tinyConfig(out: string, flags: Record<string, string> = {}): Promise<TrainConfig> {
  return resolveConfig(undefined, {
    "data.dataset": await synthDataset(),
    out: join(root, out),
    "model.baseChannels": "4",
    "model.depth": "2",
    "data.patchSize": PATCH.join(","),
    "data.batchSize": "2",
    "data.workers": "1",
    epochs: "2",
    itersPerEpoch: "5",
    lossReadbackEvery: "3",
    ...flags,
  });
}

/** Trains and returns the losses of the step events, in order. */
async function trainLosses(
  config: TrainConfig,
  extra: { resume?: boolean; validate?: Validator; signal?: AbortSignal } = {},
  onEvent: (e: TrainEvent) => void = () => {},
): Promise<number[]> {
  const losses: number[] = [];
  await train({
    config,
    ...extra,
    onEvent: (e) => {
      if (e.type === "step") losses.push(e.loss);
      onEvent(e);
    },
  });
  return losses;
}

function maxAbsDiff(a: Map<string, HostTensor>, b: Map<string, HostTensor>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let max = 0;
  for (const [name, t] of a) {
    const u = b.get(name)!;
    assert.deepEqual(t.shape, u.shape, name);
    for (let i = 0; i < t.data.length; i++) max = Math.max(max, Math.abs(t.data[i] - u.data[i]));
  }
  return max;
}

/** Weights and optimizer state of `run/last.safetensors`. */
async function lastState(config: TrainConfig) {
  const path = join(config.out, "last.safetensors");
  return { ckpt: await loadCheckpoint(path), optim: await loadOptimizerState(path) };
}

const validate = datasetValidator({ patchSize: PATCH, batchSize: 4 });

Deno.test(
  "trainer: the same seed gives the same loss sequence, another seed another",
  opts,
  async () => {
    await initGpu();
    const a = await trainLosses(await tinyConfig("seed_a", { epochs: "1", itersPerEpoch: "8" }));
    const b = await trainLosses(await tinyConfig("seed_b", { epochs: "1", itersPerEpoch: "8" }));
    const c = await trainLosses(
      await tinyConfig("seed_c", { epochs: "1", itersPerEpoch: "8", seed: "1" }),
    );
    assert.equal(a.length, 8);
    assert.ok(a.every(Number.isFinite), `losses ${a}`);
    a.forEach((l, i) =>
      assert.ok(Math.abs(l - b[i]) <= 1e-6 * Math.abs(l), `step ${i + 1}: ${l} vs ${b[i]}`)
    );
    assert.ok(a.some((l, i) => Math.abs(l - c[i]) > 1e-3), `seed 1 repeated seed 0: ${c}`);
    // metrics.jsonl records the same sequence.
    const logged = (await readMetricsLog(join(root, "seed_a", "metrics.jsonl")))
      .filter((r) => r.event === "train").map((r) => r.loss);
    assert.deepEqual(logged, a);
  },
);

Deno.test(
  "trainer: precision f16 runs binary16 forward convolutions and tracks the f32 losses",
  opts,
  async () => {
    await initGpu();
    // Base 8 and W 16: the 3×3×3 convolutions take the binary16 path (conv3d.ts halfEligible).
    const flags = { epochs: "1", itersPerEpoch: "6", "model.baseChannels": "8" };
    const f32 = await trainLosses(await tinyConfig("prec_f32", flags));
    const f16 = await trainLosses(await tinyConfig("prec_f16", { ...flags, precision: "f16" }));
    assert.equal(f16.length, 6);
    assert.notEqual(f16[0], f32[0], "the first f16 loss is exactly the f32 one");
    assert.ok(Math.abs(f16[0] - f32[0]) < 2e-3 * f32[0], `first losses ${f32[0]} vs ${f16[0]}`);
    f16.forEach((l, i) =>
      assert.ok(Math.abs(l - f32[i]) < 0.05 * f32[i], `step ${i + 1}: ${f32[i]} vs ${l}`)
    );
    const saved = JSON.parse(await Deno.readTextFile(join(root, "prec_f16", "run.json")));
    assert.equal(saved.config.precision, "f16");
  },
);

Deno.test(
  "trainer: 1 epoch, then --resume to 2 epochs, equals 2 epochs straight (plateau schedule, validation)",
  opts,
  async () => {
    await initGpu();
    const flags = {
      "schedule.kind": "plateau",
      "schedule.patience": "0",
      "schedule.factor": "0.5",
    };
    const straight = await tinyConfig("resume_straight", flags);
    const whole = await trainLosses(straight, { validate });
    const first = await trainLosses(await tinyConfig("resume_split", { ...flags, epochs: "1" }), {
      validate,
    });
    const resumed = await trainLosses(await tinyConfig("resume_split", flags), {
      resume: true,
      validate,
    });
    assert.deepEqual([...first, ...resumed], whole);
    const a = await lastState(straight);
    const b = await lastState(await tinyConfig("resume_split", flags));
    const dw = maxAbsDiff(a.ckpt.weights, b.ckpt.weights);
    assert.ok(dw <= 1e-6, `resumed weights differ by up to ${dw}`);
    assert.ok(maxAbsDiff(a.optim.slots, b.optim.slots) <= 1e-6, "Adam moments differ");
    assert.equal(b.optim.step, 10);
    assert.deepEqual(b.optim.schedule, a.optim.schedule);
    assert.deepEqual(b.ckpt.meta.training, a.ckpt.meta.training);
  },
);

Deno.test(
  "trainer: a run aborted mid-epoch resumes to the weights of an uninterrupted run (poly schedule)",
  opts,
  async () => {
    await initGpu();
    const straight = await tinyConfig("abort_straight", { lossReadbackEvery: "1" });
    const whole = await trainLosses(straight);
    const config = await tinyConfig("abort_split", { lossReadbackEvery: "1" });
    const controller = new AbortController();
    const before = await trainLosses(config, { signal: controller.signal }, (e) => {
      if (e.type === "step" && e.step === 7) controller.abort(); // epoch 2, step 2 of 5
    });
    assert.equal(before.length, 7);
    const stopped = await lastState(config);
    assert.equal(stopped.ckpt.meta.training.epoch, 1, "an unfinished epoch is not counted");
    assert.equal(stopped.optim.step, 7);
    const after = await trainLosses(config, { resume: true });
    assert.deepEqual([...before, ...after], whole);
    const a = await lastState(straight), b = await lastState(config);
    const dw = maxAbsDiff(a.ckpt.weights, b.ckpt.weights);
    assert.ok(dw <= 1e-6, `resumed weights differ by up to ${dw}`);
    assert.ok(maxAbsDiff(a.optim.slots, b.optim.slots) <= 1e-6, "Adam moments differ");
    assert.deepEqual(b.optim.schedule, a.optim.schedule);
  },
);

Deno.test(
  "trainer: resume keeps run.json's config; an identity flag that differs is refused by name",
  opts,
  async () => {
    await initGpu();
    const flags = { epochs: "1", itersPerEpoch: "5", checkpointEvery: "2" };
    const steps: number[] = [];
    await trainLosses(await tinyConfig("record", flags), {}, (e) => {
      if (e.type === "checkpoint") steps.push(e.epoch);
    });
    // Mid-epoch states after steps 2 and 4 (epoch 0 not yet complete), then the epoch's end.
    assert.deepEqual(steps, [0, 0, 1]);
    const lr = await tinyConfig("record", { ...flags, "optimizer.lr": "0.5" });
    await assert.rejects(
      () => trainLosses(lr, { resume: true }),
      /--optimizer\.lr 0\.5 conflicts with the run being resumed.*optimizer\.lr 0\.001/,
    );
    const seed = await tinyConfig("record", { ...flags, seed: "3" });
    await assert.rejects(() => trainLosses(seed, { resume: true }), /--seed 3 conflicts/);
    // Operational fields may change: more epochs, another worker count.
    const more = await tinyConfig("record", { ...flags, epochs: "2", "data.workers": "0" });
    assert.equal((await trainLosses(more, { resume: true })).length, 5);
    const saved = JSON.parse(await Deno.readTextFile(join(root, "record", "run.json")));
    assert.equal(saved.config.epochs, 2);
    assert.equal(saved.config.seed, 0);
    assert.deepEqual(saved.classNames, ["background", "lung", "infection"]);
  },
);

Deno.test(
  "trainer: extending a finished poly run with --resume keeps decaying over the new length",
  opts,
  async () => {
    await initGpu();
    const flags = { itersPerEpoch: "4", lossReadbackEvery: "4" };
    await trainLosses(await tinyConfig("extend", { ...flags, epochs: "1" }));
    const lrs: number[] = [];
    await trainLosses(await tinyConfig("extend", flags), { resume: true }, (e) => {
      if (e.type === "step") lrs.push(e.lr);
    });
    // Steps 5..8 of 8: lr0 · (1 − t/8)^0.9 for t = 4..7, not 0 as at the end of the old run.
    const want = [4, 5, 6, 7].map((t) => 1e-3 * (1 - t / 8) ** 0.9);
    assert.equal(lrs.length, 4);
    lrs.forEach((lr, i) => assert.ok(Math.abs(lr - want[i]) < 1e-12, `lr ${lrs} vs ${want}`));
  },
);

Deno.test(
  "trainer: a checkpoint loads into a fresh UNet3D and predicts the same probabilities",
  opts,
  async () => {
    await initGpu();
    const config = await tinyConfig("roundtrip", { epochs: "1" });
    // A fixed input: a smooth volume not divisible into whole windows (exercises padding).
    const shape: [number, number, number] = [20, 24, 18];
    const image = Float32Array.from(
      { length: shape[0] * shape[1] * shape[2] },
      (_, i) => 0.5 + 0.5 * Math.sin(i * 0.37) * Math.cos(i * 0.011),
    );
    const predict = (model: SegmentationNet) =>
      slidingWindow((x) => model.forward(x, { training: false }), image, shape, 3, {
        patchSize: PATCH,
        overlap: 0.5,
        batchSize: 2,
      });
    let trained: Float32Array | undefined;
    await train({
      config,
      // Weights do not change between the epoch's validation and its checkpoint.
      validate: async (model, context) => {
        trained = await predict(model);
        return await validate(model, context);
      },
    });
    const { weights, meta } = await loadCheckpoint(join(config.out, "last.safetensors"));
    assert.deepEqual(meta.model, config.model);
    assert.deepEqual(meta.classNames, ["background", "lung", "infection"]);
    assert.deepEqual(meta.patchSize, PATCH);
    assert.equal(meta.training.step, 5);

    const fresh = new UNet3D(meta.model, 12345);
    const untrained = await predict(fresh);
    loadWeights(fresh, weights);
    const reloaded = await predict(fresh);
    const roundTrip = await readWeights(fresh);
    fresh.dispose();
    assert.equal(maxAbsDiff(roundTrip, weights), 0, "weights changed on upload/readback");
    assert.ok(trained);
    let max = 0, maxUntrained = 0;
    for (let i = 0; i < trained.length; i++) {
      max = Math.max(max, Math.abs(reloaded[i] - trained[i]));
      maxUntrained = Math.max(maxUntrained, Math.abs(untrained[i] - trained[i]));
    }
    assert.ok(max <= 1e-6, `reloaded probabilities differ by up to ${max}`);
    assert.ok(maxUntrained > 1e-3, "a freshly initialised model already predicted the same");
    assert.deepEqual(argmaxClasses(reloaded, 3), argmaxClasses(trained, 3));
  },
);

Deno.test(
  "trainer: loss falls and validation lung Dice rises on synthetic phantoms",
  opts,
  async () => {
    await initGpu();
    const config = await tinyConfig("learn", {
      "data.patchSize": "16,32,32",
      epochs: "4",
      itersPerEpoch: "15",
      lossReadbackEvery: "15",
      "optimizer.lr": "0.01",
      "schedule.kind": "constant",
    });
    const dice: number[] = [], meanFg: number[] = [];
    const losses = await trainLosses(
      config,
      { validate: datasetValidator({ patchSize: config.data.patchSize, batchSize: 4 }) },
      (e) => {
        if (e.type !== "validation") return;
        dice.push(e.metrics["dice/lung"]);
        meanFg.push(e.score);
      },
    );
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const early = mean(losses.slice(0, 5)), late = mean(losses.slice(-10));
    assert.ok(late < 0.7 * early, `loss fell only from ${early} to ${late}`);
    assert.equal(dice.length, 4);
    assert.ok(dice[3] >= 0.6, `lung Dice after 60 steps: ${dice}`);
    assert.ok(dice[3] > dice[0] + 0.3, `lung Dice did not rise: ${dice}`);
    assert.ok(meanFg[3] > meanFg[0], `mean foreground Dice did not rise: ${meanFg}`);
  },
);

Deno.test(
  "trainStep: an infinite loss skips the update, leaving weights and Adam state untouched",
  opts,
  async () => {
    await initGpu();
    const config = await tinyConfig("inf_step");
    const model = new UNet3D(config.model, 0);
    const optimizer = new Optimizer(model.trainable(), config.optimizer);
    const [d, h, w] = PATCH;
    const x = keep(fromArray(
      [2, 1, d, h, w],
      Float32Array.from({ length: 2 * d * h * w }, (_, i) => (i % 7) / 7),
    ));
    const labels = keep(fromArray(
      [2, d, h, w],
      Uint32Array.from({ length: 2 * d * h * w }, (_, i) => (i >> 5) % 3),
      "u32",
    ));
    // One good step first, so Adam's moments are non-zero.
    const good = trainStep(model, optimizer, x, labels, config, 1e-3);
    const [goodLoss, goodControl] = await readTensors([good.loss, good.control]);
    assert.ok(Number.isFinite(goodLoss[0]) && goodControl[1] === 1);
    const before = await readWeights(model);
    const stateBefore = await optimizer.state();

    // A cross-entropy weight past f32 range makes the loss and its gradients infinite.
    const overflow = { ...config, loss: { ...config.loss, ceWeight: 1e39 } };
    const bad = trainStep(model, optimizer, x, labels, overflow, 1e-3);
    const [loss, control] = await readTensors([bad.loss, bad.control]);
    assert.ok(!Number.isFinite(loss[0]), `loss ${loss[0]}`);
    assert.equal(control[1], 0, "the control tensor should mark the gradients non-finite");
    assert.equal(maxAbsDiff(await readWeights(model), before), 0, "weights changed");
    const stateAfter = await optimizer.state();
    assert.equal(maxAbsDiff(stateAfter.slots, stateBefore.slots), 0, "Adam moments changed");
    assert.equal(stateAfter.step, 2, "a skipped step still counts (Adam bias correction)");
    for (const t of [good.loss, good.control, bad.loss, bad.control, x, labels]) t.dispose();
    optimizer.dispose();
    model.dispose();
  },
);

Deno.test(
  "trainer: non-finite losses skip steps, halve the learning rate each time, never reach a checkpoint",
  opts,
  async () => {
    await initGpu();
    // A learning rate of 1e30 takes every weight to ~1e30 in one Adam step; the next forward
    // pass overflows to Inf/NaN, and so does every later one.
    const config = await tinyConfig("nan_run", {
      epochs: "2",
      itersPerEpoch: "3",
      lossReadbackEvery: "1",
      "optimizer.lr": "1e30",
      "schedule.kind": "constant",
    });
    const skipped: { step: number; lr: number }[] = [];
    let afterEpoch1: Map<string, HostTensor> | undefined;
    const losses = await trainLosses(config, {}, (e) => {
      if (e.type === "skipped") skipped.push({ step: e.step, lr: e.lr });
      // Read synchronously, inside the callback, before epoch 2 replaces the file.
      if (e.type === "checkpoint" && e.epoch === 1) {
        afterEpoch1 = decodeCheckpoint(Deno.readFileSync(e.path)).weights;
      }
    });
    assert.equal(losses.length, 1, `only the first step should be finite, got ${losses}`);
    assert.deepEqual(skipped.map((s) => s.step), [2, 3, 4, 5, 6]);
    skipped.forEach((s, k) =>
      assert.ok(Math.abs(s.lr / (1e30 * 0.5 ** (k + 1)) - 1) < 1e-9, `lr ${s.lr} at skip ${k + 1}`)
    );
    const { ckpt, optim } = await lastState(config);
    for (const [name, t] of [...ckpt.weights, ...optim.slots]) {
      assert.ok(t.data.every(Number.isFinite), `${name} holds a non-finite value`);
    }
    assert.equal((optim.extra as { lrScale: number }).lrScale, 0.5 ** 5);
    // Epoch 2 was skipped entirely: its checkpoint holds epoch 1's weights, bit for bit.
    assert.ok(afterEpoch1);
    assert.equal(maxAbsDiff(ckpt.weights, afterEpoch1), 0);
    const logged = (await readMetricsLog(join(config.out, "metrics.jsonl")))
      .filter((r) => r.event === "skipped");
    assert.equal(logged.length, 5);
  },
);
