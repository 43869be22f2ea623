/**
 * `voxseg train` from the command line: a tiny run on a synthetic dataset with a test split
 * ends with the best checkpoint's validation Dice and its Dice on the held-out test cases,
 * which also land in summary.json.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { runCliCaptured } from "../data/cli_capture.ts";
import { withTempDir } from "../data/temp_dir.ts";

Deno.test({
  name: "voxseg train: prints validation and held-out test Dice; summary.json keeps both",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTempDir(async (dir) => {
      const data = join(dir, "synth");
      await generateSynthDataset(data, { cases: 5, shape: [16, 32, 32], val: 0.2, test: 0.2 });
      const out = join(dir, "run");
      const { code, stdout } = await runCliCaptured([
        "train",
        "--data",
        data,
        "--out",
        out,
        "--model.baseChannels",
        "4",
        "--model.depth",
        "2",
        "--patch",
        "16,16,16",
        "--epochs",
        "1",
        "--itersPerEpoch",
        "3",
        "--data.workers",
        "1",
      ]);
      assert.equal(code, 0);
      assert.match(stdout, /validation Dice \(best epoch\): dice\/background \d\.\d{3}/);
      assert.match(stdout, /test Dice \(1 held-out cases\): lung \d\.\d{3}, infection/);
      const summary = JSON.parse(await Deno.readTextFile(join(out, "summary.json")));
      assert.equal(summary.test.cases, 1);
      const lung = summary.test.mean.lung.dice;
      assert.ok(lung >= 0 && lung <= 1, `lung Dice ${lung}`);
      assert.ok("dice/lung" in summary.bestMetrics);
    }),
});

Deno.test({
  name: "voxseg train --resume: run.json's config is the base; an identity flag that differs fails",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withTempDir(async (dir) => {
      const out = join(dir, "run");
      const config = resolveConfig(undefined, {
        "data.dataset": join(dir, "gone"),
        out,
        "model.baseChannels": "4",
        epochs: "2",
      });
      await Deno.mkdir(out);
      await Deno.writeTextFile(
        join(out, "run.json"),
        JSON.stringify({
          format: "voxseg-run",
          version: 1,
          config,
          normalisation: { kind: "ct-window", lo: -1000, hi: 400 },
          classNames: ["background", "lung", "infection"],
          spacingMm: [1, 1, 1],
        }),
      );
      const lr = await runCliCaptured(["train", "--out", out, "--resume", "--lr", "0.5"]);
      assert.equal(lr.code, 2);
      assert.match(lr.stderr, /--optimizer\.lr 0\.5 conflicts with the run being resumed/);
      // Without flags the stored config passes (base 4, not the synthetic preset's 8) and the
      // run goes on to its dataset, which is gone.
      const bare = await runCliCaptured(["train", "--out", out, "--resume", "--epochs", "3"]);
      assert.notEqual(bare.code, 0);
      assert.doesNotMatch(bare.stderr, /conflicts/);
      assert.match(bare.stderr, /dataset/i);
    }),
});
