/**
 * The embedded default run's length on a slow adapter (src/cli/default_run.ts): the preset's
 * epochs when they fit in 15 minutes, else the most that do, from an injected step timing.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_RUN_SECONDS, defaultRunLength, fitDefaultRun } from "../../src/cli/default_run.ts";
import { SYNTH_PRESET } from "../../src/cli/train.ts";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { withTempDir } from "../data/temp_dir.ts";

const PRESET = { epochs: 18, itersPerEpoch: 40, valEvery: 1 };

Deno.test("default run: the preset's 18 epochs when they fit (AVX-512 speed)", () => {
  // 0.75 s a step: 18 × 40 × 0.75 + 18 × 4 = 612 s.
  const r = defaultRunLength({
    ...PRESET,
    stepSeconds: 0.75,
    validationSeconds: 4,
    finalSeconds: 3,
    spentSeconds: 80,
  });
  assert.deepEqual([r.epochs, r.valEvery, r.shortened], [18, 1, false]);
  assert.equal(r.estimatedSeconds, 612);
  assert.match(r.reason, /the preset's 18 epochs take about 10 min 12 s/);
});

Deno.test("default run: fewer epochs at AVX2 speed, ending within 15 minutes", () => {
  const input = {
    ...PRESET,
    stepSeconds: 2,
    validationSeconds: 8,
    finalSeconds: 6,
    spentSeconds: 90,
  };
  const r = defaultRunLength(input);
  assert.ok(r.shortened);
  // Left: 900 − 90 − 6 − (10 + 27) = 767 s. Every epoch validated: 88 s each → 8 epochs
  // (704 s); every 2nd: 8 epochs 672 s, 9 epochs 756 s → 9 wins; every 3rd: 9 epochs 744 s,
  // 10 would be 832 s.
  assert.deepEqual([r.epochs, r.valEvery], [9, 2]);
  assert.equal(r.estimatedSeconds, 9 * 80 + 5 * 8);
  const total = input.spentSeconds + r.estimatedSeconds + input.finalSeconds;
  assert.ok(total <= DEFAULT_RUN_SECONDS, `${total} s`);
  assert.match(r.reason, /training 9 epochs, validating every 2 epochs/);
  assert.match(r.reason, /--epochs 18 trains the whole preset/);
});

Deno.test("default run: at least one epoch, however slow the adapter", () => {
  const r = defaultRunLength({
    ...PRESET,
    stepSeconds: 60,
    validationSeconds: 100,
    finalSeconds: 60,
    spentSeconds: 300,
  });
  assert.deepEqual([r.epochs, r.shortened], [1, true]);
});

Deno.test({
  name: "default run: fitDefaultRun shortens the preset from a measured step, keeps the rest",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTempDir(async (dir) => {
      const data = join(dir, "synth");
      await generateSynthDataset(data, { cases: 5, shape: [48, 96, 96], val: 0.2, test: 0.2 });
      const config = resolveConfig(undefined, { ...SYNTH_PRESET, "data.dataset": data });
      const dataset = await readDataset(data);
      const lines: string[] = [];
      const run = (msPerStep: number) =>
        fitDefaultRun(config, dataset, {
          startedAt: performance.now(),
          log: (l) => lines.push(l),
          measure: () => Promise.resolve({ msPerStep, firstStepMs: 1, spentMs: 1 }),
        });
      const fast = await run(500);
      assert.deepEqual([fast.config.epochs, fast.config.valEvery], [18, 1]);
      const slow = await run(2500);
      assert.ok(slow.config.epochs < 18 && slow.config.epochs >= 1, `${slow.config.epochs}`);
      assert.deepEqual(
        { ...slow.config, epochs: 18, valEvery: 1 },
        { ...config, epochs: 18, valEvery: 1 },
      );
      assert.equal(lines.length, 2);
      assert.match(
        lines[1],
        /^default run: 2\.50 s a step on this adapter: .* training \d+ epochs/,
      );
    }),
});
