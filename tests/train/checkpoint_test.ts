import { join } from "node:path";
import { assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  decodeOptimizerState,
  encodeOptimizerState,
  latestGeneration,
  loadOptimizerState,
  loadTrainingState,
  type OptimizerState,
  optimizerStatePath,
  removeStaleTempFiles,
  saveOptimizerState,
  saveTrainingState,
  type TrainingState,
} from "../../src/train/checkpoint.ts";
import {
  type Checkpoint,
  CHECKPOINT_KEYS,
  CheckpointError,
  type CheckpointMeta,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from "../../src/nn/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../../src/nn/safetensors.ts";
import { defaultTrainConfig } from "../../src/train/config.ts";
import { ReduceLROnPlateau } from "../../src/train/schedules.ts";

function meta(): CheckpointMeta {
  return {
    model: { ...defaultTrainConfig.model, norm: "instance" },
    classNames: ["background", "lung", "infection"],
    normalisation: { kind: "zscore", clipLo: -1024, clipHi: 600.5, mean: -512.25, std: 410 },
    patchSize: [32, 64, 64],
    spacingMm: [2.5, 0.75, 0.75],
    training: {
      epoch: 12,
      step: 1200,
      monitor: "dice",
      bestMetric: 0.8125,
      metrics: { "dice/lung": 0.95, "dice/infection": 0.675, "loss": 0.3 },
    },
  };
}

function weights(): Map<string, { shape: number[]; data: Float32Array }> {
  return new Map([
    ["enc.0.conv1.weight", {
      shape: [2, 1, 3, 3, 3],
      data: Float32Array.from({ length: 54 }, (_, i) => Math.sin(i)),
    }],
    ["enc.0.conv1.bias", { shape: [2], data: new Float32Array([0.25, -0.5]) }],
    ["head.weight", { shape: [3, 2, 1, 1, 1], data: new Float32Array([1, 2, 3, 4, 5, 6]) }],
  ]);
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxseg-ckpt-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const listDir = async (dir: string) =>
  (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();

Deno.test("checkpoint: save → load round-trips weights and metadata; nothing else left", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "runs", "a", "best.safetensors"); // folders created as needed
    await saveCheckpoint(path, { weights: weights(), meta: meta() });
    const loaded = await loadCheckpoint(path);
    assertEquals(loaded.meta, meta());
    assertEquals([...loaded.weights.keys()], [
      "enc.0.conv1.bias",
      "enc.0.conv1.weight",
      "head.weight",
    ]);
    for (const [name, t] of weights()) {
      assertEquals(loaded.weights.get(name)!.shape, t.shape);
      assertEquals(loaded.weights.get(name)!.data, t.data);
    }
    assertEquals(await listDir(join(dir, "runs", "a")), ["best.safetensors"]); // no temp files
  });
});

Deno.test("checkpoint: metadata is JSON strings under the stable voxseg.* keys", () => {
  const { metadata, tensors } = decodeSafetensors(
    encodeCheckpoint({ weights: weights(), meta: meta() }),
  );
  assertEquals(metadata, {
    "format": "pt",
    "voxseg.format": "1",
    "voxseg.kind": "model",
    "voxseg.model": JSON.stringify(meta().model),
    "voxseg.classes": '["background","lung","infection"]',
    "voxseg.normalisation":
      '{"kind":"zscore","clipLo":-1024,"clipHi":600.5,"mean":-512.25,"std":410}',
    "voxseg.patch_size": "[32,64,64]",
    "voxseg.spacing_mm": "[2.5,0.75,0.75]",
    "voxseg.training": JSON.stringify(meta().training),
  });
  assertEquals(tensors.get("head.weight")!.dtype, "F32");
});

Deno.test("checkpoint: a NaN or Infinity weight is refused by name, and nothing is written", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "last.safetensors");
    await saveCheckpoint(path, { weights: weights(), meta: meta() });
    const before = await Deno.readFile(path);
    const bad = weights();
    bad.get("enc.0.conv1.weight")!.data[17] = NaN;
    bad.get("enc.0.conv1.weight")!.data[20] = -Infinity;
    await assertRejects(
      () => saveCheckpoint(path, { weights: bad, meta: meta() }),
      CheckpointError,
      `refusing to save ${path}: tensor "enc.0.conv1.weight" holds 2 non-finite value(s) (first: NaN at index 17 of 54)`,
    );
    assertEquals(await Deno.readFile(path), before); // the previous checkpoint is intact
    assertEquals(await listDir(dir), ["last.safetensors"]);
    const inf = weights();
    inf.get("head.weight")!.data[5] = Infinity;
    assertThrows(
      () => encodeCheckpoint({ weights: inf, meta: meta() }),
      CheckpointError,
      'tensor "head.weight"',
    );
  });
});

Deno.test("checkpoint: undefined metrics (NaN) are stored as null", () => {
  const m = meta();
  m.training.metrics["dice/infection"] = NaN;
  m.training.bestMetric = NaN;
  const back = decodeCheckpoint(encodeCheckpoint({ weights: weights(), meta: m })).meta;
  assertEquals(back.training.metrics["dice/infection"], null);
  assertEquals(back.training.bestMetric, null);
});

Deno.test("checkpoint: invalid metadata is refused before writing", () => {
  const bad = (change: (m: CheckpointMeta) => void, message: string) => {
    const m = meta();
    change(m);
    assertThrows(
      () => encodeCheckpoint({ weights: weights(), meta: m }, "x.safetensors"),
      CheckpointError,
      message,
    );
  };
  bad((m) => m.classNames.pop(), "x.safetensors: classNames has 2 names but model.classes is 3");
  bad(
    (m) => (m.model.norm = "group" as never),
    'model.norm must be one of none, instance, batch, got "group" (x.safetensors)',
  );
  bad((m) => delete (m.model as Partial<CheckpointMeta["model"]>).depth, "model.depth is missing");
  bad(
    (m) => (m.normalisation = { kind: "ct-window", lo: 400, hi: -1000 }),
    "x.safetensors: normalisation is invalid: normalisation ct-window: lo 400 must be below hi -1000",
  );
  bad(
    (m) => (m.normalisation = { kind: "zscore", clipLo: -1, clipHi: 1, mean: 0, std: 0 }),
    "normalisation is invalid: normalisation zscore: std must be > 0",
  );
  bad(
    (m) => (m.normalisation = { kind: "ct" } as never),
    'normalisation is invalid: unknown normalisation kind "ct"',
  );
  bad((m) => (m.patchSize = [32, 64, 0]), "patchSize must be [D, H, W] positive integers");
  bad((m) => (m.spacingMm = [1, 0, 1]), "spacingMm must be [z, y, x] positive millimetres");
  bad((m) => (m.training.step = -1), "training must be");
});

Deno.test("checkpoint: loading says what is wrong with the file", async () => {
  const good = decodeSafetensors(encodeCheckpoint({ weights: weights(), meta: meta() }));
  const rewrite = (change: (md: Record<string, string>) => void) => {
    const md = { ...good.metadata };
    change(md);
    return encodeSafetensors(good.tensors, md);
  };
  const bad = (bytes: Uint8Array, message: string) =>
    assertThrows(() => decodeCheckpoint(bytes, "m.safetensors"), CheckpointError, message);
  bad(
    encodeSafetensors(weights()),
    'm.safetensors is not a voxseg checkpoint: its __metadata__ has no "voxseg.format"',
  );
  bad(
    rewrite((md) => (md["voxseg.format"] = "2")),
    'm.safetensors has checkpoint format "2"; this voxseg reads format 1',
  );
  bad(
    rewrite((md) => delete md["voxseg.training"]),
    'm.safetensors: __metadata__ is missing "voxseg.training"',
  );
  bad(rewrite((md) => (md["voxseg.classes"] = "[oops")), '"voxseg.classes" is not valid JSON');
  bad(rewrite((md) => (md["voxseg.patch_size"] = "[1,2]")), "patchSize must be");
  bad(encodeOptimizerState({ kind: "sgd", step: 1, slots: new Map() }), "this is the .optim file");
  const bytes = encodeCheckpoint({ weights: weights(), meta: meta() });
  bad(bytes.subarray(0, bytes.length - 3), "m.safetensors: truncated file or offsets out of range");

  await inTempDir(async (dir) => {
    const path = join(dir, "cut.safetensors");
    await Deno.writeFile(path, bytes.subarray(0, 100));
    await assertRejects(() => loadCheckpoint(path), CheckpointError, `${path}: truncated file`);
    await assertRejects(
      () => loadCheckpoint(join(dir, "absent.safetensors")),
      Deno.errors.NotFound,
    );
  });
});

function optimizerState(): OptimizerState {
  const schedule = new ReduceLROnPlateau({ lr: 1e-3, mode: "max", patience: 2 });
  for (const m of [0.5, 0.6, 0.6, 0.6]) schedule.step(m);
  return {
    kind: "adam",
    step: 1200,
    slots: new Map([
      ["enc.0.conv1.bias.exp_avg", { shape: [2], data: new Float32Array([1e-3, -2e-3]) }],
      ["enc.0.conv1.bias.exp_avg_sq", { shape: [2], data: new Float32Array([1e-6, 4e-6]) }],
    ]),
    schedule: schedule.state(),
    extra: { epoch: 12, earlyStoppingBad: 1, rng: [1, 2, 3] },
  };
}

Deno.test("optimizer state: saved beside the checkpoint and read back exactly", async () => {
  await inTempDir(async (dir) => {
    const ckpt = join(dir, "last.safetensors");
    const written = await saveOptimizerState(ckpt, optimizerState());
    assertEquals(written, join(dir, "last.optim.safetensors"));
    const back = await loadOptimizerState(ckpt);
    assertEquals(back.kind, "adam");
    assertEquals(back.step, 1200);
    assertEquals(back.schedule, optimizerState().schedule);
    assertEquals(back.extra, optimizerState().extra);
    for (const [name, t] of optimizerState().slots) {
      assertEquals(back.slots.get(name)!.data, t.data);
    }
    // The schedule continues exactly where it stopped.
    const resumed = new ReduceLROnPlateau({ lr: 1 });
    resumed.restore(back.schedule!);
    resumed.step(0.6);
    assertEquals(resumed.lr, 1e-3 * 0.1);
    assertEquals(await listDir(dir), ["last.optim.safetensors"]);
    await assertRejects(
      () => loadOptimizerState(join(dir, "other.safetensors")),
      Deno.errors.NotFound,
    );
  });
});

Deno.test("optimizer state: slot names, kind, step and finiteness are checked", () => {
  const bad = (change: (s: OptimizerState) => void, message: string) => {
    const s = optimizerState();
    change(s);
    assertThrows(() => encodeOptimizerState(s), CheckpointError, message);
  };
  bad(
    (s) => s.slots.set("head.weight.momentum_buffer", { shape: [1], data: new Float32Array(1) }),
    'optimizer slot "head.weight.momentum_buffer" must be named <param>.{exp_avg,exp_avg_sq} for adam',
  );
  bad(
    (s) => s.slots.set("exp_avg", { shape: [1], data: new Float32Array(1) }),
    'optimizer slot "exp_avg"',
  );
  bad((s) => (s.kind = "lion" as never), 'optimizer kind "lion" is not one of adam, adamw, sgd');
  bad((s) => (s.step = 1.5), "optimizer step must be an integer ≥ 0, got 1.5");
  bad(
    (s) => (s.slots.get("enc.0.conv1.bias.exp_avg_sq")!.data[1] = NaN),
    'tensor "enc.0.conv1.bias.exp_avg_sq" holds 1 non-finite value(s)',
  );
  const sgd = encodeOptimizerState({
    kind: "sgd",
    step: 0,
    slots: new Map([["w.momentum_buffer", { shape: [1], data: new Float32Array([3]) }]]),
  });
  const back = decodeOptimizerState(sgd);
  assertEquals([back.kind, back.step, back.schedule, back.extra], ["sgd", 0, undefined, undefined]);
  assertThrows(
    () => decodeOptimizerState(encodeCheckpoint({ weights: weights(), meta: meta() }), "o"),
    CheckpointError,
    'o holds "model" data, expected optimizer',
  );
  const md = decodeSafetensors(sgd).metadata;
  const noStep = encodeSafetensors(new Map(), { ...md, [CHECKPOINT_KEYS.step]: "x" });
  assertThrows(
    () => decodeOptimizerState(noStep),
    CheckpointError,
    '"voxseg.step" must be an integer ≥ 0, got "x"',
  );
});

Deno.test("optimizerStatePath, and checkpoints may not take the optimizer's name", async () => {
  assertEquals(optimizerStatePath("runs/a/best.safetensors"), "runs/a/best.optim.safetensors");
  assertEquals(optimizerStatePath("runs/a/best"), "runs/a/best.optim.safetensors");
  assertEquals(
    optimizerStatePath("runs/a/best.optim.safetensors"),
    "runs/a/best.optim.safetensors",
  );
  const ckpt: Checkpoint = { weights: weights(), meta: meta() };
  await assertRejects(
    () => saveCheckpoint("runs/a/best.optim.safetensors", ckpt),
    CheckpointError,
    "names ending in .optim.safetensors are for optimizer state",
  );
});

/** Training state at `step`: weights and slots that say which step wrote them. */
function stateAt(step: number, generation: number): TrainingState {
  const m = meta();
  m.training.step = step;
  const w = weights();
  w.get("head.weight")!.data[0] = step;
  const o = optimizerState();
  o.step = step;
  o.slots.get("enc.0.conv1.bias.exp_avg")!.data[0] = step;
  return { checkpoint: { weights: w, meta: m }, optimizer: o, generation };
}

/** The step a loaded state's weights and slots were written at; both must agree. */
function stepOf(state: TrainingState): number {
  const w = state.checkpoint.weights.get("head.weight")!.data[0];
  const o = state.optimizer.slots.get("enc.0.conv1.bias.exp_avg")!.data[0];
  assertEquals(o, w, "weights and optimizer state from different steps");
  assertEquals(state.checkpoint.meta.training.step, w);
  assertEquals(state.optimizer.step, w);
  return w;
}

class Crash extends Error {}

Deno.test("training state: a crash after any write or rename leaves a complete matching pair", async () => {
  const commits = ["model", "optim", "rename-optim", "rename-model"];
  for (let k = 0; k <= commits.length; k++) {
    await inTempDir(async (dir) => {
      await saveTrainingState(dir, stateAt(100, 1));
      await saveTrainingState(dir, stateAt(200, 2));
      // Generation 3 is cut off after its k-th durable step (k = 4: it completes).
      const cut = k < commits.length ? commits[k] : undefined;
      await saveTrainingState(dir, stateAt(300, 3), (done) => {
        if (done === cut) throw new Crash(done);
      }).catch((e) => {
        if (!(e instanceof Crash)) throw e;
      });
      const notices: string[] = [];
      const loaded = await loadTrainingState(dir, (line) => notices.push(line));
      // The new generation counts from the moment both of its files exist, under any names.
      const want = k >= 1 ? 300 : 200;
      assertEquals(stepOf(loaded!), want, `crash after ${cut}`);
      assertEquals(loaded!.generation, want / 100);
      for (const line of notices) assertEquals(line.includes(dir), false, line);
      // Only the newest pair and the crash's leftovers are there; generation 1 is gone.
      const names = await listDir(dir);
      assertEquals(names.includes("last.g1.safetensors"), false);
      assertEquals(names.filter((n) => n.includes(".tmp-")), []);
    });
  }
});

Deno.test("training state: a complete write leaves exactly last + last.optim, stamped alike", async () => {
  await inTempDir(async (dir) => {
    await saveTrainingState(dir, stateAt(7, 1));
    await saveTrainingState(dir, stateAt(8, 2));
    assertEquals(await listDir(dir), ["last.optim.safetensors", "last.safetensors"]);
    const model = decodeSafetensors(await Deno.readFile(join(dir, "last.safetensors")));
    const optim = decodeSafetensors(await Deno.readFile(join(dir, "last.optim.safetensors")));
    for (const md of [model.metadata, optim.metadata]) {
      assertEquals(md[CHECKPOINT_KEYS.generation], "2");
      assertEquals(md[CHECKPOINT_KEYS.step], "8");
    }
    // The weights file stays a plain checkpoint for inference.
    assertEquals((await loadCheckpoint(join(dir, "last.safetensors"))).meta.training.step, 8);
    assertEquals(await latestGeneration(dir), 2);
    await assertRejects(
      () => saveTrainingState(dir, { ...stateAt(9, 3), optimizer: stateAt(10, 3).optimizer }),
      CheckpointError,
      "weights are at step 9 but the optimizer state at step 10",
    );
  });
});

Deno.test("training state: torn and unmatched files are passed over with a one-line notice", async () => {
  await inTempDir(async (dir) => {
    await saveTrainingState(dir, stateAt(100, 1));
    await saveTrainingState(dir, stateAt(200, 2), (done) => {
      if (done === "rename-optim") throw new Crash(done);
    }).catch(() => {});
    // Now: last (gen 1), last.optim (gen 2), last.g2 (gen 2). Tear the generation-2 weights.
    const g2 = join(dir, "last.g2.safetensors");
    const bytes = await Deno.readFile(g2);
    await Deno.writeFile(g2, bytes.subarray(0, bytes.length - 5));
    const notices: string[] = [];
    await assertRejects(
      () => loadTrainingState(dir, (line) => notices.push(line)),
      CheckpointError,
      "no weights and optimizer files with matching steps",
    );
    assertEquals(notices.length, 3, notices.join("\n"));
    assertEquals(notices[0].startsWith("ignoring last.g2.safetensors: unreadable or torn"), true);
    // A complete pair beside them wins, and the rest is named.
    await Deno.remove(g2);
    await saveTrainingState(dir, stateAt(300, 3));
    notices.length = 0;
    assertEquals(stepOf((await loadTrainingState(dir, (l) => notices.push(l)))!), 300);
    assertEquals(notices, []);
  });
});

Deno.test("training state: a pair written by the old two-file scheme still loads", async () => {
  await inTempDir(async (dir) => {
    assertEquals(await loadTrainingState(dir), undefined);
    const old = stateAt(50, 1);
    await saveCheckpoint(join(dir, "last.safetensors"), old.checkpoint);
    await saveOptimizerState(join(dir, "last.safetensors"), old.optimizer);
    const loaded = await loadTrainingState(dir);
    assertEquals(stepOf(loaded!), 50);
    assertEquals(loaded!.generation, 0);
    // Its steps disagreeing (a crash between its two writes) is refused, saying what to do.
    await saveOptimizerState(join(dir, "last.safetensors"), stateAt(60, 1).optimizer);
    await assertRejects(() => loadTrainingState(dir), CheckpointError, "start over");
  });
});

Deno.test("training state: a first write cut off before its pair is complete means a fresh start", async () => {
  await inTempDir(async (dir) => {
    await saveTrainingState(dir, stateAt(1, 1), (done) => {
      if (done === "model") throw new Crash(done);
    }).catch(() => {});
    assertEquals(await listDir(dir), ["last.g1.safetensors"]);
    const notices: string[] = [];
    assertEquals(await loadTrainingState(dir, (line) => notices.push(line)), undefined);
    assertEquals(
      notices.at(-1),
      "the first checkpoint was never completed; starting from the beginning",
    );
  });
});

Deno.test("removeStaleTempFiles: only the temp files of interrupted checkpoint writes", async () => {
  await inTempDir(async (dir) => {
    const keep = ["last.safetensors", ".hidden", "notes.tmp-1-a", "metrics.jsonl"];
    const stale = [".last.g3.safetensors.tmp-4242-k2j", ".best.safetensors.tmp-17-zz9"];
    for (const name of [...keep, ...stale]) await Deno.writeTextFile(join(dir, name), "x");
    assertEquals(await removeStaleTempFiles(dir), 2);
    assertEquals(await listDir(dir), keep.sort());
  });
});

Deno.test("checkpoint: class codes round-trip under voxseg.class_codes; a bad one is named", () => {
  const lung = {
    category: { value: "123037004", scheme: "SCT", meaning: "Anatomical Structure" },
    type: { value: "39607008", scheme: "SCT", meaning: "Lung" },
  };
  const withCodes = { ...meta(), classCodes: { lung } };
  const bytes = encodeCheckpoint({ weights: weights(), meta: withCodes });
  assertEquals(decodeSafetensors(bytes).metadata["voxseg.class_codes"], JSON.stringify({ lung }));
  assertEquals(decodeCheckpoint(bytes).meta, withCodes);
  assertThrows(
    () =>
      encodeCheckpoint({ weights: weights(), meta: { ...meta(), classCodes: { liver: lung } } }),
    CheckpointError,
    'classCodes is invalid: classCodes names "liver", which is not a class',
  );
  const noMeaning = { ...lung, type: { value: "39607008", scheme: "SCT", meaning: "" } };
  assertThrows(
    () =>
      encodeCheckpoint({
        weights: weights(),
        meta: { ...meta(), classCodes: { lung: noMeaning } },
      }),
    CheckpointError,
    "classCodes.lung.type.meaning must be a non-empty string",
  );
});
