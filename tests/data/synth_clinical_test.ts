import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { ensureSynthDataset, SYNTH_CLINICAL_GENERATOR } from "../../src/cli/synth.ts";
import { readDataset } from "../../src/data/dataset.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import {
  CLINICAL_ORIENTATIONS,
  CLINICAL_WINDOWS,
  clinicalAssignments,
  type ClinicalOptions,
  type ClinicalPatient,
  planClinicalCase,
  renderPatient,
  sampleClinicalCase,
  type SynthClinicalCase,
  synthClinicalCase,
} from "../../src/data/synth_clinical.ts";
import { spacingFromAffine, type Volume } from "../../src/data/volume.ts";
import { runCliCaptured } from "./cli_capture.ts";
import { withTempDir } from "./temp_dir.ts";

/** Small, fast settings: 4× the clinical spacings, a coarse patient render. */
const FAST: ClinicalOptions = { spacingScale: 4, renderMm: [4, 2.5, 2.5] };
const WHOLE = { cutTopMm: 0, cutBottomMm: 0 };

/** Lung (label ≥ 1) voxel count and its centroid in world (RAS) millimetres. */
function lungWorld(label: Volume): { voxels: number; centroid: number[] } {
  const [D, H, W] = label.shape;
  let n = 0, si = 0, sj = 0, sk = 0;
  for (let k = 0, i = 0; k < D; k++) {
    for (let j = 0; j < H; j++) {
      for (let x = 0; x < W; x++, i++) {
        if (label.data[i] === 0) continue;
        n++;
        si += x;
        sj += j;
        sk += k;
      }
    }
  }
  const a = label.affine, [ci, cj, ck] = [si / n, sj / n, sk / n];
  const centroid = [0, 1, 2].map((r) =>
    a[4 * r] * ci + a[4 * r + 1] * cj + a[4 * r + 2] * ck + a[4 * r + 3]
  );
  return { voxels: n, centroid };
}

/** Physical lung volume in mL. */
function lungMl(c: SynthClinicalCase): number {
  const [sz, sy, sx] = c.image.spacingMm;
  return (lungWorld(c.label).voxels * sz * sy * sx) / 1000;
}

/** nibabel's aff2axcodes for an axis-aligned affine: the world direction of each column. */
function axisCodes(affine: number[]): string {
  return [0, 1, 2].map((col) => {
    const v = [0, 1, 2].map((r) => affine[4 * r + col]);
    const axis = v.findIndex((x) => Math.abs(x) === Math.max(...v.map(Math.abs)));
    return ["RL", "AP", "SI"][axis][v[axis] > 0 ? 0 : 1];
  }).join("");
}

function distance(a: number[], b: number[]): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/**
 * Share of a case's voxels (every 31st) whose label equals the rendered patient's at the same
 * world point: the box is centred on `patient.center`, x to the left, y posterior, z up.
 */
function agreementWithPatient(c: SynthClinicalCase, p: ClinicalPatient): number {
  const [D, H, W] = c.label.shape, a = c.label.affine;
  const [nz, ny, nx] = p.shape, [rz, ry, rx] = p.spacingMm, [cR, cA, cS] = p.center;
  let same = 0, n = 0;
  for (let f = 0; f < D * H * W; f += 31) {
    const i = f % W, j = Math.floor(f / W) % H, k = Math.floor(f / (W * H));
    const [R, A, S] = [0, 1, 2].map((r) =>
      a[4 * r] * i + a[4 * r + 1] * j + a[4 * r + 2] * k + a[4 * r + 3]
    );
    const x = Math.floor((nx * rx / 2 - (R - cR)) / rx);
    const y = Math.floor((ny * ry / 2 - (A - cA)) / ry);
    const z = Math.floor((nz * rz / 2 + (S - cS)) / rz);
    const inside = x >= 0 && y >= 0 && z >= 0 && x < nx && y < ny && z < nz;
    const want = inside ? p.label[x + nx * (y + ny * z)] : 0;
    if (c.label.data[f] === want) same++;
    n++;
  }
  return same / n;
}

let patientCache: ClinicalPatient | undefined;
/** One patient (seed 5) rendered once for the tests that view it through many grids. */
function patient5(): ClinicalPatient {
  return patientCache ??= renderPatient(5, FAST.renderMm!);
}

Deno.test("planClinicalCase: per-case spacings within the clinical ranges, and varying", () => {
  const plans = Array.from({ length: 60 }, (_, s) => planClinicalCase(1000 + s));
  for (const r of plans) {
    ok(r.inPlaneMm >= 0.6 && r.inPlaneMm <= 0.9, `in-plane ${r.inPlaneMm} mm`);
    ok(r.sliceMm >= 1 && r.sliceMm <= 5, `slices ${r.sliceMm} mm`);
    // The stored spacing is the (slice, in-plane) pair in the stored axis order.
    const want = r.orientation === "LSA"
      ? [r.inPlaneMm, r.sliceMm, r.inPlaneMm]
      : [r.sliceMm, r.inPlaneMm, r.inPlaneMm];
    deepStrictEqual(r.spacingMm, want);
    ok(r.shape.every((n) => Number.isInteger(n) && n >= 4), `shape ${r.shape}`);
  }
  ok(new Set(plans.map((r) => r.inPlaneMm)).size > 50, "in-plane spacings repeat");
  ok(new Set(plans.map((r) => r.sliceMm)).size > 50, "slice spacings repeat");
  ok(
    Math.min(...plans.map((r) => r.sliceMm)) < 1.5 &&
      Math.max(...plans.map((r) => r.sliceMm)) > 4.5,
  );
  // Fields of view: the body fills more or less of the grid; some scans are cut.
  const fill = plans.map((r) => r.fovMm / r.patientWidthMm);
  ok(Math.min(...fill) < 0.95 && Math.max(...fill) > 1.15, `fov / width ${Math.min(...fill)}…`);
  ok(plans.some((r) => r.cutTopMm > 0) && plans.some((r) => r.cutBottomMm > 0), "no cut scans");
  ok(plans.filter((r) => r.cutTopMm === 0 && r.cutBottomMm === 0).length > 30, "too many cut");
  // The scale multiplies both ranges.
  const scaled = planClinicalCase(1000, { spacingScale: 2.5 });
  ok(Math.abs(scaled.inPlaneMm - 2.5 * plans[0].inPlaneMm) < 1e-3, `${scaled.inPlaneMm} mm`);
  ok(Math.abs(scaled.sliceMm - 2.5 * plans[0].sliceMm) < 1e-3, `${scaled.sliceMm} mm`);
});

Deno.test("planClinicalCase: both conventions with their windows, all orientations", () => {
  const plans = Array.from({ length: 60 }, (_, s) => planClinicalCase(2000 + s));
  const byte = plans.filter((r) => r.convention === "byte");
  ok(byte.length > 15 && byte.length < 45, `${byte.length}/60 windowed`);
  for (const r of plans) {
    if (r.convention === "hu") strictEqual(r.window, null);
    else ok(CLINICAL_WINDOWS.some((w) => w[0] === r.window![0] && w[1] === r.window![1]));
  }
  ok(byte.some((r) => r.window![0] === -1250 && r.window![1] === 250), "no −1250..250 window");
  for (const o of CLINICAL_ORIENTATIONS) ok(plans.some((r) => r.orientation === o), `no ${o}`);
  // An override changes that choice alone.
  const base = planClinicalCase(7), flipped = planClinicalCase(7, { orientation: "LPI" });
  strictEqual(flipped.orientation, "LPI");
  deepStrictEqual({ ...flipped, orientation: base.orientation }, base);
});

Deno.test("synthClinicalCase: HU cases reach air; byte cases are the HU windowed to 0..255", () => {
  const opts = {
    ...FAST,
    ...WHOLE,
    orientation: "LPS" as const,
    window: [-1250, 250] as [number, number],
  };
  const p = patient5();
  const hu = sampleClinicalCase(p, planClinicalCase(5, { ...opts, convention: "hu" }));
  const byte = sampleClinicalCase(p, planClinicalCase(5, { ...opts, convention: "byte" }));
  ok(hu.image.data instanceof Int16Array && byte.image.data instanceof Int16Array);
  let min = Infinity;
  for (const v of hu.image.data) min = Math.min(min, v);
  ok(min <= -1000, `HU minimum ${min}`);
  deepStrictEqual(byte.label.data, hu.label.data);
  deepStrictEqual(byte.image.affine, hu.image.affine);
  // Independently: round(clip((HU + 1250) / 1500) · 255) for every voxel.
  let lungSum = 0, lungN = 0;
  for (let i = 0; i < hu.image.data.length; i++) {
    const b: number = byte.image.data[i];
    ok(Number.isInteger(b) && b >= 0 && b <= 255, `byte value ${b}`);
    const want = Math.min(255, Math.max(0, Math.round(((hu.image.data[i] + 1250) / 1500) * 255)));
    if (b !== want) strictEqual(b, want, `voxel ${i}: HU ${hu.image.data[i]}`);
    if (hu.label.data[i] === 1) [lungSum, lungN] = [lungSum + hu.image.data[i], lungN + 1];
  }
  const lungHu = lungSum / lungN;
  ok(lungHu > -900 && lungHu < -700, `mean lung ${lungHu} HU`);
});

Deno.test("synthClinicalCase: one patient has the same lung volume and place at any spacing", () => {
  const p = patient5();
  const corners: [number, number][] = [[0.6, 1], [0.9, 5], [0.6, 5], [0.9, 1]];
  const cases = corners.map(([inPlaneMm, sliceMm]) =>
    sampleClinicalCase(p, planClinicalCase(5, { ...FAST, ...WHOLE, inPlaneMm, sliceMm }))
  );
  const ml = cases.map(lungMl);
  ok(ml.every((v) => v > 2000 && v < 8000), `adult lungs: ${ml} mL`);
  for (const v of ml) ok(Math.abs(v / ml[0] - 1) < 0.05, `lung volumes ${ml.map(Math.round)} mL`);
  // The voxel counts themselves differ about 10-fold between the finest and coarsest grid.
  const voxels = cases.map((c) => lungWorld(c.label).voxels);
  ok(voxels[0] > 8 * voxels[1], `voxels ${voxels}`);
  const centre = lungWorld(cases[0].label).centroid;
  for (const c of cases) {
    ok(distance(lungWorld(c.label).centroid, centre) < 2, "centroid moved");
    const agree = agreementWithPatient(c, p);
    ok(agree > 0.95, `${c.image.spacingMm} mm: ${agree} of the labels match the patient's`);
  }
});

Deno.test("synthClinicalCase: every orientation stores the same world, through its affine", () => {
  const p = patient5();
  const plan = (orientation: (typeof CLINICAL_ORIENTATIONS)[number]) =>
    planClinicalCase(5, { ...FAST, ...WHOLE, orientation, sliceMm: 2 });
  const ref = sampleClinicalCase(p, plan("LPS"));
  const [, H, W] = ref.image.shape;
  const a0 = ref.image.affine, centre = lungWorld(ref.label).centroid;
  for (const o of CLINICAL_ORIENTATIONS) {
    const c = sampleClinicalCase(p, plan(o));
    strictEqual(axisCodes(c.image.affine), o);
    spacingFromAffine(c.image.affine).forEach((s, i) =>
      ok(Math.abs(s - c.image.spacingMm[i]) < 1e-3)
    );
    ok(distance(lungWorld(c.label).centroid, centre) < 0.01, `${o}: lung centroid moved`);
    ok(agreementWithPatient(c, p) > 0.95, `${o}: labels away from the patient's`);
    // Each stored voxel's world position, mapped into the LPS case, finds the same values.
    const [Dc, Hc, Wc] = c.image.shape, a = c.image.affine;
    for (let f = 0; f < Dc * Hc * Wc; f += 97) {
      const i = f % Wc, j = Math.floor(f / Wc) % Hc, k = Math.floor(f / (Wc * Hc));
      const w = [0, 1, 2].map((r) =>
        a[4 * r] * i + a[4 * r + 1] * j + a[4 * r + 2] * k + a[4 * r + 3]
      );
      const [x, y, z] = [0, 1, 2].map((r) => Math.round((w[r] - a0[4 * r + 3]) / a0[5 * r]));
      const g = x + W * (y + H * z);
      strictEqual(c.image.data[f], ref.image.data[g], `${o}: image at stored voxel ${f}`);
      strictEqual(c.label.data[f], ref.label.data[g], `${o}: label at stored voxel ${f}`);
    }
  }
});

Deno.test("synthClinicalCase: the same seed gives the same bytes, another seed others", () => {
  const opts = { ...FAST, renderMm: [6, 4, 4] as [number, number, number] };
  const a = synthClinicalCase(11, opts), b = synthClinicalCase(11, opts);
  deepStrictEqual(a.image.data, b.image.data);
  deepStrictEqual(a.label.data, b.label.data);
  deepStrictEqual(a.image.affine, b.image.affine);
  deepStrictEqual(a.record, b.record);
  const c = synthClinicalCase(12, opts);
  notDeepStrictEqual(a.record, c.record);
  notDeepStrictEqual(a.image.data, c.image.data);
});

Deno.test("clinicalAssignments: half windowed, half canonical, every orientation, seeded", () => {
  const a = clinicalAssignments(12, 3);
  strictEqual(a.filter((c) => c.convention === "byte").length, 6);
  strictEqual(a.filter((c) => c.orientation === "LPS").length, 6);
  for (const o of CLINICAL_ORIENTATIONS) ok(a.some((c) => c.orientation === o), `no ${o}`);
  deepStrictEqual(clinicalAssignments(12, 3), a);
  notDeepStrictEqual(clinicalAssignments(12, 4), a);
});

Deno.test("voxseg synth --cohort clinical writes the per-case truth beside the cases", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "clinical");
    const args = ["synth", "--cohort", "clinical", "--out", out, "--cases", "4", "--seed", "2"];
    const run = await runCliCaptured([...args, "--spacing-scale", "6"]);
    strictEqual(run.code, 0, run.stderr);
    const dataset = await readDataset(out);
    strictEqual(dataset.modality, "CT");
    strictEqual(dataset.cases.length, 4);
    const source = dataset.source as Record<string, unknown>;
    strictEqual(source.generator, SYNTH_CLINICAL_GENERATOR);
    const truth = source.perCase as Record<string, ReturnType<typeof planClinicalCase>>;
    deepStrictEqual(dataset.cases.map((c) => truth[c.id].convention).sort(), [
      "byte",
      "byte",
      "hu",
      "hu",
    ]);
    for (const c of dataset.cases) {
      deepStrictEqual(c.spacingMm, truth[c.id].spacingMm);
      deepStrictEqual(c.shape, truth[c.id].shape);
      ok(truth[c.id].inPlaneMm >= 3.6 && truth[c.id].inPlaneMm <= 5.4);
      const reader = await openCase(join(out, c.path));
      strictEqual(reader.imageDtype, "int16");
      strictEqual(axisCodes(reader.affine), truth[c.id].orientation);
      const image = (await reader.readFullImage()).data;
      let min = Infinity, max = -Infinity;
      for (const v of image) [min, max] = [Math.min(min, v), Math.max(max, v)];
      if (truth[c.id].convention === "byte") ok(min >= 0 && max <= 255, `${c.id}: ${min}..${max}`);
      else ok(min <= -1000, `${c.id}: HU minimum ${min}`);
    }
    strictEqual((await runCliCaptured([...args, "--shape", "8,8,8", "--force"])).code, 2);
    // ensureSynthDataset recognises it as up to date.
    const opts = { cohort: "clinical" as const, cases: 4, seed: 2, spacingScale: 6 };
    strictEqual(await ensureSynthDataset(out, opts), false);
  });
});
