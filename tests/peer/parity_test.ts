/**
 * The accuracy-parity peer's own arithmetic (bench/peer/parity.ts): pooled Dice per foreground
 * class, the one-ulp weight perturbation that sets the noise yardstick, and the fixed data.
 */

import assert from "node:assert/strict";
import { parityConfig, parityData, perturbWeights, pooledDice } from "../../bench/peer/parity.ts";

Deno.test("pooledDice: 2|P∩G| / (|P| + |G|) per foreground class over all voxels", () => {
  const truth = Uint8Array.from([0, 1, 1, 1, 2, 2, 0, 0]);
  const pred = Uint8Array.from([0, 1, 1, 2, 2, 0, 1, 0]);
  // lung: P = {1, 2, 6}, G = {1, 2, 3}, P∩G = {1, 2} → 4/6; infection: P = {3, 4}, G = {4, 5} → 2/4.
  const [lung, infection] = pooledDice(pred, truth, 3);
  assert.ok(Math.abs(lung - 4 / 6) < 1e-12, `lung ${lung}`);
  assert.ok(Math.abs(infection - 0.5) < 1e-12, `infection ${infection}`);
  assert.deepEqual(pooledDice(truth, truth, 3), [1, 1]);
  assert.ok(Number.isNaN(pooledDice(new Uint8Array(4), new Uint8Array(4), 3)[0]));
});

Deno.test("perturbWeights scales weights by 1 ± 2⁻²³ (one or two float32 ulps)", () => {
  const data = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i + 1));
  const out = perturbWeights(new Map([["w", { shape: [10, 100], data }]])).get("w")!;
  assert.deepEqual(out.shape, [10, 100]);
  let moved = 0;
  for (let i = 0; i < data.length; i++) {
    const rel = Math.abs(out.data[i] - data[i]) / Math.abs(data[i]);
    // v·2⁻²³ rounded to float32: up to two ulps of v, i.e. at most 2⁻²² relative.
    assert.ok(rel <= 2 ** -22, `weight ${i} moved by ${rel}`);
    if (out.data[i] !== data[i]) moved++;
  }
  assert.ok(moved > 500, `${moved} of 1000 weights moved`);
});

Deno.test("parityData: deterministic batches with every class present", () => {
  const config = parityConfig();
  const a = parityData(3, 2, config), b = parityData(3, 2, config);
  const pv = 32 * 32 * 32;
  assert.equal(a.trainImage.length, 3 * 2 * pv);
  assert.equal(a.valLabels.length, 2 * pv);
  assert.deepEqual(a.trainImage, b.trainImage);
  assert.deepEqual(a.valLabels, b.valLabels);
  for (const c of [0, 1, 2]) assert.ok(a.trainLabels.includes(c), `class ${c} in training`);
  assert.ok(a.trainImage.every((v) => v >= 0 && v <= 1), "CT windowed to 0…1");
});
