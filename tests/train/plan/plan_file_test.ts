import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { join } from "node:path";
import type { Fingerprint } from "../../../src/data/fingerprint.ts";
import { PLAN_FILE, readPlan, validatePlan, writePlan } from "../../../src/train/plan/plan_file.ts";
import { plan, planOverrides } from "../../../src/train/plan/planner.ts";
import { planChannelNormalizations, planNormalization } from "../../../src/train/plan/run_plan.ts";
import type { Plan } from "../../../src/train/plan/types.ts";
import { twoChannelCase, twoChannelFingerprint } from "./fingerprint_fixture.ts";

const IMAGE = {
  min: -1024,
  max: 1500,
  mean: -400,
  std: 450,
  airFraction: 0.3,
  integerValued: true,
  p0_5: -1024,
  p50: -500,
  p99_5: 900,
  samples: 100,
};
const FG = {
  samples: 100,
  mean: -600,
  std: 200,
  min: -1000,
  max: 100,
  p0_5: -990,
  p5: -900,
  p50: -650,
  p95: -250,
  p99_5: 60,
};

function fingerprint(): Fingerprint {
  const cases = ["a", "b", "c"].map((id, i) => ({
    id,
    split: "train" as const,
    shape: [40, 96, 96] as [number, number, number],
    spacingMm: [3 + i, 0.8, 0.8] as [number, number, number],
    hasLabel: true,
    voxelsPerClass: [1e5, 1e4],
    image: i === 2 ? { ...IMAGE, min: 0, max: 255, airFraction: 0 } : IMAGE,
    foreground: i === 2 ? { ...FG, p5: 20, p95: 110 } : FG,
  }));
  return {
    name: "rt",
    modality: "CT",
    classes: ["background", "lesion"],
    intensity: { mean: -600, std: 200, p0_5: -990, p99_5: 60, min: -1000, max: 100 },
    samplesPerCase: 100,
    seed: 0,
    cases,
  };
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "voxseg_plan_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writePlan/readPlan: a JSON round trip, atomic, from the file or its folder", async () => {
  await withDir(async (dir) => {
    const p = plan(fingerprint(), { timeBudgetSeconds: 600, msPerStep: () => 200 });
    ok(p.budget !== null && Object.keys(p.normalisation.huMaps).length === 1);
    const path = await writePlan(dir, p);
    strictEqual(path, join(dir, PLAN_FILE));
    deepStrictEqual(await readPlan(path), p);
    deepStrictEqual(await readPlan(dir), p);
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), [PLAN_FILE]); // no temp left
  });
});

Deno.test("readPlan: a bad file's error names the field", async () => {
  await withDir(async (dir) => {
    const good = plan(fingerprint());
    const bad = async (edit: (p: Record<string, unknown> & Plan) => void, re: RegExp) => {
      const p = structuredClone(good) as Record<string, unknown> & Plan;
      edit(p);
      await Deno.writeTextFile(join(dir, PLAN_FILE), JSON.stringify(p));
      await rejects(() => readPlan(dir), re);
    };
    await bad((p) => (p.format = "nnunet" as never), /format must be "voxseg-plan"/);
    await bad((p) => (p.version = 2 as never), /version must be 1/);
    await bad(
      (p) => ((p.topology.levels[1].kernel as unknown[])[1] = "x"),
      /topology\.levels\[1\]\.kernel\[1\] must be an integer/,
    );
    await bad((p) => (p.unet3d.patchSize = [30, 64, 64]), /unet3d\.patchSize must be divisible/);
    await bad(
      (p) => (p.normalisation.scheme = "minmax" as never),
      /normalisation\.scheme must be one of ct-window, ct-zscore, zscore-per-case/,
    );
    await bad(
      (p) => (p.normalisation.huMaps.c.scale = null as never),
      /normalisation\.huMaps\["c"\]\.scale must be a number/,
    );
    await bad((p) => delete (p as Partial<Plan>).limits, /limits must be an object/);
    await Deno.writeTextFile(join(dir, PLAN_FILE), '{"format": "voxseg-plan",');
    await rejects(() => readPlan(dir), /is not valid JSON/);
    await rejects(() => readPlan(join(dir, "nope")), /no plans\.json at .*voxseg plan/);
  });
});

Deno.test("writePlan refuses an invalid plan and leaves no file", async () => {
  await withDir(async (dir) => {
    const p = structuredClone(plan(fingerprint()));
    p.batchSize = 0;
    await rejects(() => writePlan(dir, p), /batchSize must be an integer ≥ 1/);
    deepStrictEqual([...Deno.readDirSync(dir)], []);
    throws(() => validatePlan([], "x.json"), /x\.json: the plan must be an object/);
  });
});

// ---------------------------------------------------------------------------------------------
// Several channels, and plans written before channels were planned

const TWO_CHANNELS = twoChannelFingerprint([
  twoChannelCase("a"),
  twoChannelCase("b"),
  twoChannelCase("c", undefined, undefined, { split: "val" }),
], ["CT", "T2"]);

Deno.test("writePlan/readPlan: a two-channel plan keeps each channel's normalisation", async () => {
  await withDir(async (dir) => {
    const p = plan(TWO_CHANNELS, { timeBudgetSeconds: 600, msPerStep: () => 200 });
    strictEqual(p.unet3d.inChannels, 2);
    deepStrictEqual(p.channels!.map((c) => [c.name, c.decidedBy, c.normalisation.scheme]), [
      ["CT", "channel_names", "ct-window"],
      ["T2", "channel_names", "zscore-per-case"],
    ]);
    await writePlan(dir, p);
    const back = await readPlan(dir);
    deepStrictEqual(back, p);
    deepStrictEqual(planChannelNormalizations(back), [
      { kind: "ct-window", lo: p.normalisation.window![0], hi: p.normalisation.window![1] },
      { kind: "zscore-case" },
    ]);
  });
});

Deno.test("readPlan: a one-channel plans.json written before channels were planned still reads", async () => {
  // Written by the planner as it was before multi-channel planning (git b0cf768).
  const old = await readPlan(
    new URL("../../fixtures/plans_one_channel_v1.json", import.meta.url).pathname,
  );
  strictEqual(old.channels, undefined);
  strictEqual(old.unet3d.inChannels, 1);
  strictEqual(planChannelNormalizations(old), undefined);
  deepStrictEqual(planNormalization(old), {
    kind: "ct-window",
    lo: old.normalisation.window![0],
    hi: old.normalisation.window![1],
  });
  strictEqual(planOverrides(old)["model.inChannels"], "1");
  strictEqual(planOverrides(old)["data.normalisation"], "ct-window");
  // And a one-channel plan made today is the same shape: no channels field.
  strictEqual("channels" in plan(fingerprint()), false);
});

Deno.test("readPlan: a bad channel entry's error names the field", async () => {
  await withDir(async (dir) => {
    const good = plan(TWO_CHANNELS);
    const bad = async (edit: (p: Plan) => void, re: RegExp) => {
      const p = structuredClone(good);
      edit(p);
      await Deno.writeTextFile(join(dir, PLAN_FILE), JSON.stringify(p));
      await rejects(() => readPlan(dir), re);
    };
    await bad(
      (p) => delete p.channels,
      /channels must list the normalisation of each of the 2 input channels.*voxseg plan/,
    );
    await bad((p) => p.channels!.pop(), /channels must list one entry per input channel/);
    await bad(
      (p) => (p.channels![1].normalisation.scheme = "minmax" as never),
      /channels\[1\]\.normalisation\.scheme must be one of/,
    );
    await bad(
      (p) => (p.channels![0].decidedBy = "guess" as never),
      /channels\[0\]\.decidedBy must be/,
    );
    await bad(
      (p) => (p.channels![1].modality.isCT = "no" as never),
      /channels\[1\]\.modality\.isCT must be true or false/,
    );
  });
});
