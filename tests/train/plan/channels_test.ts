/**
 * Planning a dataset of several input channels (nnU-Net's CASE_0000 … CASE_000N) from hand-made
 * fingerprints: each channel normalised by its own scheme — decided by its name in
 * `channel_names` when it has one (CT → the CT scheme, anything else → z-score per case), by
 * its intensities when it has none — the channel count in the network and its memory, the
 * flags and exact normalisations the trainer gets, the table, and a time budget's timings.
 */

import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { resolveConfig, type TrainConfig } from "../../../src/train/config.ts";
import {
  budgetCandidates,
  candidateFlops,
  formatPlanTable,
  plan,
  planOverrides,
} from "../../../src/train/plan/planner.ts";
import {
  planChannelNormalizations,
  planIntensityMaps,
  planNormalization,
  sizeToBudget,
} from "../../../src/train/plan/run_plan.ts";
import {
  FG,
  fingerprint,
  fpCase,
  HU_IMAGE,
  MR_FG,
  MR_IMAGE,
  twoChannelCase,
  twoChannelFingerprint,
} from "./fingerprint_fixture.ts";

const BIG = {
  gpuMemoryBytes: 16 * 2 ** 30,
  maxBufferSize: 2 ** 31,
  maxStorageBufferBindingSize: 2 ** 31,
};

const CASES = [
  twoChannelCase("a"),
  twoChannelCase("b"),
  twoChannelCase("c", undefined, undefined, { split: "val" }),
];

Deno.test("plan: two unnamed channels, CT in HU and MR-like, each by its intensities", () => {
  const p = plan(twoChannelFingerprint(CASES), BIG);
  strictEqual(p.channels?.length, 2);
  strictEqual(p.unet3d.inChannels, 2);
  const [ct, mr] = p.channels!;
  strictEqual(ct.decidedBy, "intensities");
  strictEqual(ct.modality.isCT, true);
  strictEqual(ct.normalisation.scheme, "ct-window");
  deepStrictEqual(ct.normalisation.window, [FG.p0_5, FG.p99_5]);
  deepStrictEqual(Object.values(ct.normalisation.conventions), ["hu", "hu", "hu"]);
  strictEqual(mr.decidedBy, "intensities");
  strictEqual(mr.modality.isCT, false);
  strictEqual(mr.normalisation.scheme, "zscore-per-case");
  deepStrictEqual(Object.values(mr.normalisation.conventions), ["other", "other", "other"]);
  // The one-channel fields are channel 0's.
  deepStrictEqual(p.normalisation, ct.normalisation);
  deepStrictEqual(p.modality, ct.modality);
  ok(p.reasons.normalisation.includes("channel 1 (channel_1)"), p.reasons.normalisation);

  // What the trainer gets: two input channels, each normalised exactly as planned.
  const flags = planOverrides(p);
  strictEqual(flags["model.inChannels"], "2");
  strictEqual(flags["data.normalisation"], "auto");
  strictEqual(flags["data.window"], `${FG.p0_5},${FG.p99_5}`);
  strictEqual(resolveConfig(undefined, flags).model.inChannels, 2);
  deepStrictEqual(planChannelNormalizations(p), [
    { kind: "ct-window", lo: FG.p0_5, hi: FG.p99_5 },
    { kind: "zscore-case" },
  ]);
  deepStrictEqual(planNormalization(p), { kind: "ct-window", lo: FG.p0_5, hi: FG.p99_5 });
  deepStrictEqual(planIntensityMaps(p), {});

  // The table shows each channel's choice and why.
  const table = formatPlanTable(p);
  for (
    const s of [
      "channels",
      "channel 0",
      "channel 1",
      "ct-window",
      "zscore-per-case",
      "by intensities",
    ]
  ) {
    ok(table.includes(s), `table lacks "${s}":\n${table}`);
  }
});

Deno.test("plan: the network's memory and FLOPs count the input channels", () => {
  const fixed = { ...BIG, patchSize: [64, 128, 128] as [number, number, number], batchSize: 2 };
  const one = plan(fingerprint([fpCase("a"), fpCase("b")]), fixed);
  const two = plan(twoChannelFingerprint(CASES.slice(0, 2)), fixed);
  strictEqual(one.unet3d.inChannels, 1);
  deepStrictEqual(two.unet3d.patchSize, one.unet3d.patchSize);
  // One more input volume (and its first-convolution weights) per patch.
  const extra = two.unet3d.memory.totalBytes - one.unet3d.memory.totalBytes;
  ok(extra >= 2 * 4 * 64 * 128 * 128, `${extra} bytes more`);
  ok(two.topology.memory.totalBytes > one.topology.memory.totalBytes);
  const { baseChannels, depth, patchSize } = two.unet3d;
  const c = { baseChannels, depth, patchSize, batchSize: 2 };
  ok(candidateFlops(two, c) > candidateFlops(one, c));
  throws(
    () => plan(twoChannelFingerprint(CASES), { inChannels: 1 }),
    /inChannels 1 differs from the dataset's 2/,
  );
});

Deno.test("plan: channel_names decide over the intensities, as nnU-Net reads them", () => {
  // Channel 1 holds HU-like values but is named T2: z-scored per case, by its name.
  const huTwice = CASES.map((c) =>
    twoChannelCase(c.id, undefined, [HU_IMAGE, FG], { split: c.split })
  );
  const unnamed = plan(twoChannelFingerprint(huTwice), BIG);
  strictEqual(unnamed.channels![1].normalisation.scheme, "ct-window", "inferred: CT");
  const named = plan(twoChannelFingerprint(huTwice, ["CT", "T2"]), BIG);
  const [ct, t2] = named.channels!;
  strictEqual(ct.decidedBy, "channel_names");
  strictEqual(ct.normalisation.scheme, "ct-window");
  strictEqual(t2.decidedBy, "channel_names");
  strictEqual(t2.modality.modality, "T2");
  strictEqual(t2.normalisation.scheme, "zscore-per-case");
  ok(t2.modality.reason.includes('channel_names says "T2"'), t2.modality.reason);
  ok(t2.modality.reason.includes("look like HU"), t2.modality.reason);

  // Named the other way round: PET over HU values is z-scored; a CT channel without HU values
  // is windowed on its own scale (its foreground percentiles), with a note.
  const swapped = plan(twoChannelFingerprint(CASES, ["PET", "CT"]), BIG);
  const [pet, mrCt] = swapped.channels!;
  strictEqual(pet.normalisation.scheme, "zscore-per-case");
  strictEqual(swapped.modality.isCT, false, "the plan's modality is channel 0's");
  strictEqual(mrCt.modality.isCT, true);
  strictEqual(mrCt.normalisation.scheme, "ct-window");
  deepStrictEqual(mrCt.normalisation.window, [MR_FG.p0_5, MR_FG.p99_5]);
  deepStrictEqual(mrCt.normalisation.huMaps, {});
  deepStrictEqual(Object.values(mrCt.normalisation.conventions), ["other", "other", "other"]);
  ok(
    swapped.notes.some((n) => n.includes("channel 1 (CT): named CT but no case")),
    swapped.notes.join("\n"),
  );
  strictEqual(planOverrides(swapped)["data.window"], `${MR_FG.p0_5},${MR_FG.p99_5}`);
  ok(MR_IMAGE.min > -900);
});

Deno.test("plan: a chosen CT scheme applies to the CT channels, zscore-per-case to all", () => {
  const fp = twoChannelFingerprint(CASES, ["CT", "PET"]);
  const z = plan(fp, { ...BIG, normalisation: "ct-zscore" });
  deepStrictEqual(z.channels!.map((c) => c.normalisation.scheme), ["ct-zscore", "zscore-per-case"]);
  strictEqual(planOverrides(z)["data.normalisation"], "auto");
  const all = plan(fp, { ...BIG, normalisation: "zscore-per-case" });
  deepStrictEqual(all.channels!.map((c) => c.normalisation.scheme), [
    "zscore-per-case",
    "zscore-per-case",
  ]);
  strictEqual(planOverrides(all)["data.normalisation"], "zscore-case");
  const windowed = plan(fp, { ...BIG, window: [-1000, 400] });
  deepStrictEqual(windowed.channels![0].normalisation.window, [-1000, 400]);
  strictEqual(windowed.channels![1].normalisation.window, null);
});

Deno.test("sizeToBudget: a two-channel plan's candidates are timed with two input channels", async () => {
  const p = plan(twoChannelFingerprint(CASES), BIG);
  const timed: TrainConfig[] = [];
  const sized = await sizeToBudget(p, {
    timeBudgetSeconds: 900,
    startedAt: performance.now(),
    measure: (config) => {
      timed.push(config);
      const c = {
        baseChannels: config.model.baseChannels,
        depth: config.model.depth,
        patchSize: config.data.patchSize,
        batchSize: config.data.batchSize,
      };
      return Promise.resolve({
        msPerStep: candidateFlops(p, c) / 1e10,
        firstStepMs: 0,
        spentMs: 0,
      });
    },
  });
  ok(timed.length >= 1);
  for (const config of timed) strictEqual(config.model.inChannels, 2);
  ok(budgetCandidates(p).length > 1);
  strictEqual(sized.unet3d.inChannels, 2);
  deepStrictEqual(sized.channels, p.channels);
  ok(sized.budget!.estimatedSeconds <= 900);
});
