/**
 * Post-processing: the largest connected component on hand-made volumes (two blobs, 6 against
 * 26 neighbours, per class against the whole foreground) and against a breadth-first reference
 * on random volumes; nnU-Net's choice on cross-validation cases, kept only where it helps; the
 * choice stored in a checkpoint's metadata and read back (old checkpoints still load).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Random } from "../../src/base/random.ts";
import type { Shape3 } from "../../src/data/volume.ts";
import { defaultUNetConfig } from "../../src/nn/unet3d.ts";
import {
  CHECKPOINT_KEYS,
  type CheckpointMeta,
  readCheckpointFile,
  saveCheckpoint,
} from "../../src/nn/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../../src/nn/safetensors.ts";
import {
  applyPostprocessing,
  choosePostprocessing,
  type Connectivity,
  largestComponent,
  postprocessingBytes,
  type PostprocessingCase,
  writePostprocessing,
} from "../../src/infer/postprocess.ts";
import { tempRoot } from "./infer_fixture.ts";

const root = tempRoot("voxseg_postprocess_test_");

/** A zero volume of `shape` with boxes [z0, z1) × [y0, y1) × [x0, x1) set to their class. */
function boxes(shape: Shape3, list: [number, number[], number[], number[]][]): Uint8Array {
  const [, H, W] = shape;
  const out = new Uint8Array(shape[0] * H * W);
  for (const [c, [z0, z1], [y0, y1], [x0, x1]] of list) {
    for (let z = z0; z < z1; z++) {
      for (let y = y0; y < y1; y++) out.fill(c, (z * H + y) * W + x0, (z * H + y) * W + x1);
    }
  }
  return out;
}

const count = (a: Uint8Array, c: number) => a.reduce((n, v) => n + (v === c ? 1 : 0), 0);

Deno.test("largestComponent keeps the larger of two blobs; the smaller becomes background", () => {
  const shape: Shape3 = [8, 9, 10];
  const labels = boxes(shape, [[1, [0, 2], [0, 2], [0, 2]], [1, [4, 7], [5, 8], [6, 9]]]);
  const want = boxes(shape, [[1, [4, 7], [5, 8], [6, 9]]]);
  assert.equal(largestComponent(labels, shape, [1]), 8);
  assert.deepEqual(labels, want);
  assert.equal(largestComponent(labels, shape, [1]), 0, "one component left: nothing to do");
  assert.equal(largestComponent(labels, shape, [2]), 0, "a class absent: nothing to do");
  assert.deepEqual(labels, want);
});

Deno.test("6 against 26 neighbours: a corner contact joins components only with 26", () => {
  const shape: Shape3 = [4, 5, 6];
  const make = () => {
    const l = boxes(shape, [[1, [1, 2], [1, 2], [1, 3]], [1, [3, 4], [4, 5], [3, 5]]]);
    l[(2 * 5 + 2) * 6 + 3] = 1; // (2, 2, 3): touches (1, 1, 2) by a corner only
    return l;
  };
  // 26: {(1,1,1), (1,1,2), (2,2,3)} is the largest (3 voxels); the far pair goes.
  const a = make();
  assert.equal(largestComponent(a, shape, [1], 26), 2);
  assert.deepEqual([...a.keys()].filter((i) => a[i]), [37, 38, 75]);
  // 6: the pair at (1,1,1–2) and the far pair tie at 2 voxels (both kept); the corner voxel goes.
  const b = make();
  assert.equal(largestComponent(b, shape, [1], 6), 1);
  assert.equal(b[75], 0);
  assert.equal(count(b, 1), 4);
  // Edge contacts: (z, y±1, x±1) and (z±1, y, x±1) also join with 26 only.
  for (const [dz, dy] of [[0, 1], [1, 0]]) {
    const l = new Uint8Array(4 * 5 * 6);
    l[(1 * 5 + 1) * 6 + 1] = l[((1 + dz) * 5 + 1 + dy) * 6 + 2] = 2;
    l.fill(2, (3 * 5 + 4) * 6 + 4, (3 * 5 + 4) * 6 + 5); // a lone voxel far away
    const six = l.slice();
    assert.equal(largestComponent(l, shape, [2], 26), 1, `dz ${dz} dy ${dy} with 26`);
    assert.equal(largestComponent(six, shape, [2], 6), 0, `dz ${dz} dy ${dy} with 6: all tie`);
  }
});

Deno.test("per class against the whole foreground", () => {
  const shape: Shape3 = [6, 6, 12];
  const make = () =>
    boxes(shape, [
      [1, [0, 2], [0, 5], [0, 1]], // 10 voxels of class 1 …
      [2, [0, 2], [0, 5], [1, 2]], // … touching 10 of class 2
      [2, [4, 6], [0, 3], [6, 9]], // 18 of class 2 on their own
    ]);
  const fg = make();
  assert.equal(largestComponent(fg, shape, [1, 2]), 18, "foreground: the 20 together win");
  assert.deepEqual(fg, boxes(shape, [[1, [0, 2], [0, 5], [0, 1]], [2, [0, 2], [0, 5], [1, 2]]]));
  const c2 = make();
  assert.equal(largestComponent(c2, shape, [2]), 10, "class 2 alone: its 18 win");
  assert.deepEqual(c2, boxes(shape, [[1, [0, 2], [0, 5], [0, 1]], [2, [4, 6], [0, 3], [6, 9]]]));
  const c1 = make();
  assert.equal(largestComponent(c1, shape, [1]), 0, "class 1 is one component");
  // Both steps in order: the foreground first leaves no separate class-2 component.
  const both = make();
  assert.equal(
    applyPostprocessing(both, shape, { connectivity: 26, foregroundLcc: true, perClassLcc: [2] }),
    18,
  );
  assert.deepEqual(both, fg);
});

/** Breadth-first component labelling with explicit neighbour offsets: the reference. */
function referenceLargest(
  labels: Uint8Array,
  shape: Shape3,
  classes: number[],
  connectivity: Connectivity,
): Uint8Array {
  const [D, H, W] = shape;
  const inMask = (i: number) => classes.includes(labels[i]);
  const offsets: number[][] = [];
  for (const dz of [-1, 0, 1]) {
    for (const dy of [-1, 0, 1]) {
      for (const dx of [-1, 0, 1]) {
        const n = Math.abs(dz) + Math.abs(dy) + Math.abs(dx);
        if (n > 0 && (connectivity === 26 || n === 1)) offsets.push([dz, dy, dx]);
      }
    }
  }
  const comp = new Int32Array(labels.length).fill(-1);
  const sizes: number[] = [];
  for (let s = 0; s < labels.length; s++) {
    if (!inMask(s) || comp[s] >= 0) continue;
    const id = sizes.length, queue = [s];
    comp[s] = id;
    for (let q = 0; q < queue.length; q++) {
      const i = queue[q];
      const z = Math.floor(i / (H * W)), y = Math.floor(i / W) % H, x = i % W;
      for (const [dz, dy, dx] of offsets) {
        const [nz, ny, nx] = [z + dz, y + dy, x + dx];
        if (nz < 0 || ny < 0 || nx < 0 || nz >= D || ny >= H || nx >= W) continue;
        const j = (nz * H + ny) * W + nx;
        if (inMask(j) && comp[j] < 0) {
          comp[j] = id;
          queue.push(j);
        }
      }
    }
    sizes.push(queue.length);
  }
  const max = Math.max(0, ...sizes);
  return labels.map((v, i) => (comp[i] >= 0 && sizes[comp[i]] < max ? 0 : v));
}

Deno.test("largestComponent equals a breadth-first reference on random volumes", () => {
  const rng = new Random(11);
  for (let t = 0; t < 24; t++) {
    const shape: Shape3 = [rng.int(1, 8), rng.int(1, 10), rng.int(1, 12)];
    const density = 0.2 + 0.3 * rng.next();
    const labels = Uint8Array.from(
      { length: shape[0] * shape[1] * shape[2] },
      () => (rng.next() < density ? rng.int(1, 4) : 0),
    );
    for (const connectivity of [6, 26] as const) {
      for (const classes of [[1], [2, 3], [1, 2, 3]]) {
        const got = labels.slice();
        const want = referenceLargest(labels, shape, classes, connectivity);
        const removed = largestComponent(got, shape, classes, connectivity);
        assert.deepEqual(got, want, `${shape.join("×")} ${connectivity} [${classes}]`);
        assert.equal(removed, count(want, 0) - count(labels, 0));
      }
    }
  }
});

Deno.test("postprocessingBytes counts the runs of the largest step: 20 bytes each, 4 a row", () => {
  const shape: Shape3 = [2, 3, 8];
  // Row (0, 0): 1 1 2 2 0 2 0 1 → foreground runs 3; class 1 runs 2; class 2 runs 2.
  const labels = new Uint8Array(48);
  labels.set([1, 1, 2, 2, 0, 2, 0, 1]);
  labels.set([2, 0, 2, 0, 2, 0, 2, 0], 8 * 4); // row (1, 1): class 2 runs 4, foreground 4
  const rows = 4 * 7;
  const pp = (foregroundLcc: boolean, perClassLcc: number[]) =>
    postprocessingBytes(labels, shape, { connectivity: 26, foregroundLcc, perClassLcc });
  assert.equal(pp(false, []), 0);
  assert.equal(pp(true, []), 20 * 7 + rows);
  assert.equal(pp(false, [1]), 20 * 2 + rows);
  assert.equal(pp(false, [2]), 20 * 6 + rows);
});

const fold = (prediction: Uint8Array, truth: Uint8Array, shape: Shape3): PostprocessingCase => ({
  prediction,
  truth,
  shape,
});

Deno.test("choosePostprocessing: the foreground LCC hurts class 2, class 1's LCC helps", () => {
  const shape: Shape3 = [12, 12, 12];
  const A: [number, number[], number[], number[]] = [1, [0, 4], [0, 4], [0, 4]];
  const B: [number, number[], number[], number[]] = [2, [0, 4], [0, 4], [4, 8]];
  const B2: [number, number[], number[], number[]] = [2, [8, 11], [0, 3], [8, 11]];
  const truth = boxes(shape, [A, B, B2]);
  const prediction = boxes(shape, [A, B, B2, [1, [10, 11], [10, 11], [10, 12]]]);
  const before = prediction.slice();
  const choice = choosePostprocessing([fold(prediction, truth, shape)], 3);
  assert.deepEqual(prediction, before, "the predictions are not modified");
  assert.equal(choice.foregroundLcc, false, "it would drop the real class-2 blob");
  assert.deepEqual(choice.perClassLcc, [1]);
  assert.equal(choice.connectivity, 26);
  // Class 1: 2·64 / (66 + 64) before, 1 after; class 2 stays 1.
  assert.ok(Number.isNaN(choice.diceBefore[0]) && Number.isNaN(choice.diceAfter[0]));
  assert.deepEqual(choice.diceBefore.slice(1), [128 / 130, 1]);
  assert.deepEqual(choice.diceAfter.slice(1), [1, 1]);
  assert.equal(choice.meanDiceBefore, (128 / 130 + 1) / 2);
  assert.equal(choice.meanDiceAfter, 1);
});

Deno.test("choosePostprocessing keeps the foreground LCC when it helps or changes nothing", () => {
  const shape: Shape3 = [10, 10, 10];
  const A: [number, number[], number[], number[]] = [1, [0, 4], [0, 4], [0, 4]];
  const B: [number, number[], number[], number[]] = [2, [0, 4], [0, 4], [4, 8]];
  const truth = boxes(shape, [A, B]);
  const spurious = boxes(shape, [A, B, [2, [8, 10], [8, 10], [8, 10]]]);
  const helps = choosePostprocessing([fold(spurious, truth, shape)], 3);
  assert.equal(helps.foregroundLcc, true);
  assert.deepEqual(helps.perClassLcc, [], "nothing left for class 2's own LCC to improve");
  assert.deepEqual(helps.diceBefore.slice(1), [1, 128 / 136]);
  assert.deepEqual(helps.diceAfter.slice(1), [1, 1]);
  const same = choosePostprocessing([fold(truth.slice(), truth, shape)], 3);
  assert.equal(same.foregroundLcc, true, "equal Dice: kept, as nnU-Net");
  assert.deepEqual(same.perClassLcc, [], "a class's LCC is kept only when it improves");
  assert.equal(same.meanDiceAfter, same.meanDiceBefore);
});

Deno.test("choosePostprocessing averages over cases: a class LCC that hurts on the whole is not kept", () => {
  const shape: Shape3 = [10, 10, 10];
  const A: [number, number[], number[], number[]] = [1, [0, 4], [0, 4], [0, 4]];
  const far: [number, number[], number[], number[]] = [1, [7, 10], [7, 10], [7, 10]];
  // Case 1: 1 spurious voxel (LCC: 128/129 → 1). Case 2: a real second blob (LCC: 1 → 128/155).
  const c1 = fold(boxes(shape, [A, [1, [9, 10], [0, 1], [9, 10]]]), boxes(shape, [A]), shape);
  const c2 = fold(boxes(shape, [A, far]), boxes(shape, [A, far]), shape);
  const choice = choosePostprocessing([c1, c2], 2, 6);
  assert.equal(choice.foregroundLcc, false);
  assert.deepEqual(choice.perClassLcc, []);
  assert.equal(choice.connectivity, 6);
  assert.equal(choice.diceBefore[1], (128 / 129 + 1) / 2);
  assert.equal(choice.diceAfter[1], choice.diceBefore[1]);
  // Only case 1: the LCC helps, and is kept.
  assert.equal(choosePostprocessing([c1], 2).foregroundLcc, true);
  assert.throws(() => choosePostprocessing([], 2), /at least one case/);
  assert.throws(
    () => choosePostprocessing([{ ...c1, shape: [10, 10, 9] }], 2),
    /1000 voxels, but shape 10×10×9 needs 900/,
  );
});

const META: CheckpointMeta = {
  model: { ...defaultUNetConfig, classes: 3, baseChannels: 4, depth: 2 },
  classNames: ["background", "lung", "infection"],
  normalisation: { kind: "zscore", clipLo: -5, clipHi: 5, mean: 0, std: 1 },
  patchSize: [16, 16, 16],
  spacingMm: [1, 1, 1],
  training: { epoch: 1, step: 2, monitor: "dice", bestMetric: 0.5, metrics: {} },
};

const WEIGHTS = new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]);

Deno.test("postprocessing metadata: round trip, old checkpoints without it, invalid values", async () => {
  const path = join(root, "meta.safetensors");
  await saveCheckpoint(path, { weights: WEIGHTS, meta: META });
  const old = await readCheckpointFile(path);
  assert.equal("postprocessing" in old.meta, false, "an old checkpoint loads without it");
  // Another entry beside voxseg's (as the trainer stamps them) must survive the rewrite.
  const file = decodeSafetensors(await Deno.readFile(path));
  await Deno.writeFile(path, encodeSafetensors(file.tensors, { ...file.metadata, note: "kept" }));
  const choice = choosePostprocessing([
    fold(new Uint8Array([1, 0, 1]), new Uint8Array([1, 0, 0]), [1, 1, 3]),
  ], 3);
  assert.deepEqual([choice.foregroundLcc, choice.perClassLcc], [true, []]);
  await writePostprocessing(path, { ...choice, perClassLcc: [2] });
  const back = await readCheckpointFile(path);
  assert.deepEqual(back.meta.postprocessing, {
    connectivity: 26,
    foregroundLcc: true,
    perClassLcc: [2],
  });
  assert.deepEqual(back.meta.training, META.training);
  assert.deepEqual(back.weights.get("w")?.data, WEIGHTS.get("w")?.data);
  const md = decodeSafetensors(await Deno.readFile(path)).metadata;
  assert.equal(md.note, "kept");
  assert.equal(
    md[CHECKPOINT_KEYS.postprocessing],
    '{"connectivity":26,"foregroundLcc":true,"perClassLcc":[2]}',
  );
  // A saved checkpoint carries it too; invalid values are refused on write and on read.
  const saved = join(root, "saved.safetensors");
  await saveCheckpoint(saved, { weights: WEIGHTS, meta: back.meta });
  assert.deepEqual((await readCheckpointFile(saved)).meta, back.meta);
  for (
    const bad of [{ connectivity: 8, foregroundLcc: true, perClassLcc: [] }, {
      connectivity: 6,
      foregroundLcc: false,
      perClassLcc: [3],
    }, { connectivity: 6, foregroundLcc: false, perClassLcc: [2, 1] }]
  ) {
    await assert.rejects(
      writePostprocessing(saved, bad as never),
      /postprocessing must be \{connectivity: 6 or 26, .* ascending distinct classes in 1\.\.2\}/,
    );
  }
  const raw = decodeSafetensors(await Deno.readFile(saved));
  const corrupt = join(root, "corrupt.safetensors");
  await Deno.writeFile(
    corrupt,
    encodeSafetensors(raw.tensors, { ...raw.metadata, [CHECKPOINT_KEYS.postprocessing]: "[]" }),
  );
  await assert.rejects(readCheckpointFile(corrupt), /postprocessing must be .* got \[\]/);
});
