/**
 * `voxseg synth`: a synthetic chest-CT dataset (lung + infection phantoms) as OME-Zarr cases
 * with a ready `dataset.json`. {@link ensureSynthDataset} is the same generator for callers
 * (the trainer's default dataset) that want it created only once.
 */

import { join } from "node:path";
import { choiceFlag, numberFlag, parseNamedFlags, shapeFlag } from "./args.ts";
import { UsageError } from "./usage_error.ts";
import {
  buildManifest,
  caseStats,
  DATASET_FILE,
  defaultSplit,
  type ManifestCase,
  writeDataset,
} from "../data/dataset.ts";
import { CASE_CODECS, type CaseCodec } from "../data/ome_zarr/metadata.ts";
import { writeCase } from "../data/ome_zarr/writer.ts";
import { Random } from "../base/random.ts";
import {
  DEFAULT_SYNTH_SHAPE,
  SYNTH_CLASSES,
  SYNTH_COHORTS,
  type SynthCase,
  synthCase,
  type SynthCohort,
} from "../data/synth.ts";
import {
  clinicalAssignments,
  type ClinicalOptions,
  type ClinicalRecord,
  planClinicalCase,
  synthClinicalCase,
} from "../data/synth_clinical.ts";
import type { Shape3, Volume } from "../data/volume.ts";

const HELP =
  `voxseg synth --out DIR [--cases 16] [--shape 48,96,96] [--seed 0] [--val 0.2] [--test 0.1]
voxseg synth --cohort clinical --out DIR [--cases 12] [--seed 0] [--spacing-scale 2.5]

Generates synthetic chest CTs in Hounsfield units (body, ribs, spine, heart, two lungs with
vessels, COVID-19-like ground-glass and consolidation lesions) with labels 0 background,
1 lung, 2 infection, and writes DIR/cases/ID.zarr plus DIR/dataset.json (splits, intensity
statistics, sampled foreground coordinates). The same seed gives the same dataset.

flags:
  --out DIR          dataset folder (required)
  --cases N          number of cases (default 16; 12 for --cohort clinical)
  --shape D,H,W      voxels per case (default ${DEFAULT_SYNTH_SHAPE.join(",")})
  --seed N           seed of the whole dataset (default 0)
  --val F            fraction for validation (default 0.2)
  --test F           fraction held out for test (default 0.1)
  --cohort positive|mixed|clinical
                     positive (default): every case has 2–8 infection lesions, like a
                     COVID-19-positive cohort; mixed: 15 % of cases without infection and
                     15 % with one small lesion, like a screening population; clinical:
                     positive patients scanned as heterogeneously as a public COVID-19 CT
                     set: per-case spacing (in-plane 0.6–0.9 mm, slices 1–5 mm, times
                     --spacing-scale), field of view (some scans cut at the top or bottom),
                     orientation (flipped or permuted axes, in the affine) and intensities
                     (half in HU, half windowed to 0..255); what was drawn per case is in
                     dataset.json source.perCase. --shape does not apply
  --spacing-scale F  clinical only: multiplies the spacing ranges (default 2.5: ~2 M voxels
                     a case, for a CPU; 1: clinical spacings, ~30 M voxels a case)
  --chunks N|D,H,W   chunk shape (default 64)
  --codec zstd|gzip  chunk compression (default zstd)
  --force            replace an existing dataset.json in DIR
  --json             one JSON object per case instead of text lines`;

const FLAGS = {
  out: { type: "string" },
  cases: { type: "string" },
  shape: { type: "string" },
  seed: { type: "string" },
  val: { type: "string" },
  test: { type: "string" },
  cohort: { type: "string" },
  "spacing-scale": { type: "string" },
  chunks: { type: "string" },
  codec: { type: "string" },
  force: { type: "boolean" },
  json: { type: "boolean" },
} as const;

export interface SynthDatasetOptions {
  /** Default 16 (12 for the clinical cohort). */
  cases?: number;
  /** Default {@link DEFAULT_SYNTH_SHAPE}; not used by the clinical cohort (per-case grids). */
  shape?: Shape3;
  /** Default 0. */
  seed?: number;
  /** Split fractions (default 0.2 and 0.1). */
  val?: number;
  test?: number;
  /**
   * Lesion-count distribution on the fixed grid (default "positive", see
   * SynthOptions.cohort), or "clinical" (see ../data/synth_clinical.ts).
   */
  cohort?: SynthCohort;
  /** Clinical cohort: multiplies its spacing ranges (default 2.5, CPU-sized). */
  spacingScale?: number;
  chunks?: number | Shape3;
  codec?: CaseCodec;
  /** Called with each finished case. */
  onCase?: (info: SynthCaseInfo) => void;
}

/** What one generated case looks like, as reported per line. */
export interface SynthCaseInfo {
  id: string;
  split: string;
  shape: Shape3;
  spacingMm: Shape3;
  /** Voxels of background, lung, infection. */
  voxelsPerClass: number[];
  lesions: number;
  seconds: number;
  /** Clinical cohort: what was drawn for the case. */
  clinical?: ClinicalRecord;
}

/** Default spacing scale of a clinical dataset: ~2 M voxels a case, so a CPU trains on it. */
export const CLINICAL_DATASET_SPACING_SCALE = 2.5;

/** {@link SynthDatasetOptions} with the defaults filled in. */
interface ResolvedOptions {
  cases: number;
  shape: Shape3;
  seed: number;
  val: number;
  test: number;
  cohort: SynthCohort;
  spacingScale: number;
}

function resolveOptions(options: SynthDatasetOptions): ResolvedOptions {
  const cohort = options.cohort ?? "positive";
  const {
    cases = cohort === "clinical" ? 12 : 16,
    shape = DEFAULT_SYNTH_SHAPE,
    seed = 0,
    val = 0.2,
    test = 0.1,
    spacingScale = CLINICAL_DATASET_SPACING_SCALE,
  } = options;
  if (!Number.isInteger(cases) || cases < 1) {
    throw new RangeError(`cases must be ≥ 1, got ${cases}`);
  }
  return { cases, shape, seed, val, test, cohort, spacingScale };
}

/** Case ids and seeds of a dataset: the seeds drawn in order from the dataset seed. */
function caseSeeds(o: ResolvedOptions): { id: string; seed: number }[] {
  const width = Math.max(3, String(o.cases - 1).length);
  const rng = new Random(o.seed);
  return Array.from({ length: o.cases }, (_, i) => ({
    id: `synth_${String(i).padStart(width, "0")}`,
    seed: rng.int(0, 2 ** 31),
  }));
}

/** Clinical cohort: each case's options (balanced conventions and orientations). */
function clinicalOptions(o: ResolvedOptions): ClinicalOptions[] {
  return clinicalAssignments(o.cases, o.seed).map((a) => ({ ...a, spacingScale: o.spacingScale }));
}

/** One case of the dataset, of either kind. */
function makeCase(
  o: ResolvedOptions,
  seed: number,
  clinical: ClinicalOptions | undefined,
): { image: Volume; label: Volume; lesions: SynthCase["lesions"]; record?: ClinicalRecord } {
  if (o.cohort === "clinical") return synthClinicalCase(seed, clinical);
  return synthCase(seed, { shape: o.shape, cohort: o.cohort });
}

/**
 * Generates a synthetic dataset into `dir` (cases, then `dataset.json` last, so a folder with a
 * manifest is always complete).
 */
export async function generateSynthDataset(
  dir: string,
  options: SynthDatasetOptions = {},
): Promise<void> {
  const o = resolveOptions(options);
  const planned = caseSeeds(o);
  const ids = planned.map((c) => c.id);
  const splits = defaultSplit(ids, { val: o.val, test: o.test, seed: o.seed });
  const clinical = o.cohort === "clinical" ? clinicalOptions(o) : undefined;
  const entries: ManifestCase[] = [];
  for (const [k, { id, seed: caseSeed }] of planned.entries()) {
    const t0 = performance.now();
    const { image, label, lesions, record } = makeCase(o, caseSeed, clinical?.[k]);
    const stats = caseStats(image, label, [...SYNTH_CLASSES], new Random(caseSeed ^ 0x5eed));
    const path = `cases/${id}.zarr`;
    await writeCase(join(dir, path), {
      image,
      label,
      name: id,
      classNames: [...SYNTH_CLASSES],
      chunks: options.chunks,
      codec: options.codec,
      attributes: {
        modality: "CT",
        source: "voxseg synth",
        seed: caseSeed,
        ...(record ? { clinical: record } : {}),
      },
    });
    entries.push({ id, path, split: splits[id], stats });
    options.onCase?.({
      id,
      split: splits[id],
      shape: image.shape,
      spacingMm: image.spacingMm,
      voxelsPerClass: stats.voxelsPerClass,
      lesions: lesions.length,
      seconds: (performance.now() - t0) / 1000,
      ...(record ? { clinical: record } : {}),
    });
  }
  const manifest = buildManifest({
    name: "synth",
    modality: "CT",
    classes: [...SYNTH_CLASSES],
    cases: entries,
    source: datasetSource(o),
  });
  await writeDataset(dir, manifest);
}

/**
 * The generator's stamp in `dataset.json` (`source`): which generator and options made the
 * data. A new generator version changes the voxels a seed gives.
 */
export const SYNTH_GENERATOR = "voxseg synth 2";

/** Stamp of clinical datasets (their cases also depend on {@link SYNTH_GENERATOR}'s phantom). */
export const SYNTH_CLINICAL_GENERATOR = "voxseg synth clinical 1";

/** `dataset.json` source of a dataset: generator and options, and per clinical case its record. */
function datasetSource(o: ResolvedOptions): Record<string, unknown> {
  const { cases, shape, seed, val, test, cohort, spacingScale } = o;
  if (cohort !== "clinical") return synthSource({ cases, shape, seed, val, test, cohort });
  const options = clinicalOptions(o);
  const perCase = Object.fromEntries(
    caseSeeds(o).map((c, k) => [c.id, planClinicalCase(c.seed, options[k])]),
  );
  return {
    generator: SYNTH_CLINICAL_GENERATOR,
    phantom: SYNTH_GENERATOR,
    cohort,
    cases,
    seed,
    val,
    test,
    spacingScale,
    perCase,
  };
}

function synthSource(o: Omit<ResolvedOptions, "spacingScale">): Record<string, unknown> {
  return { generator: SYNTH_GENERATOR, ...o, shape: [...o.shape] };
}

/**
 * Creates the synthetic dataset in `dir` unless `dir/dataset.json` already holds one made by
 * this generator with the same options; returns whether it generated one. A synthetic dataset
 * from an older generator (or other options) is replaced; a folder holding any other dataset
 * is never touched (that is an error).
 *
 * @example
 * await ensureSynthDataset("data/synth"); // first run: generates; later runs: no-op
 */
export async function ensureSynthDataset(
  dir: string,
  options: SynthDatasetOptions = {},
): Promise<boolean> {
  const path = join(dir, DATASET_FILE);
  if (await exists(path)) {
    const want = datasetSource(resolveOptions(options));
    const manifest = JSON.parse(await Deno.readTextFile(path));
    if (JSON.stringify(manifest.source) === JSON.stringify(want)) return false;
    if (manifest.name !== "synth") {
      throw new Error(
        `${path} holds dataset "${manifest.name}", not the synthetic one; ` +
          `move it or pass --data ${dir} to train on it`,
      );
    }
    // An older synthetic dataset: the manifest goes first, so an interrupted regeneration
    // leaves no manifest pointing at half-written cases.
    await Deno.remove(path);
    await Deno.remove(join(dir, "cases"), { recursive: true }).catch(() => {});
  }
  await generateSynthDataset(dir, options);
  return true;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** One generated case as a text line. */
function caseLine(c: SynthCaseInfo): string {
  const [, lung, infection] = c.voxelsPerClass;
  const r = c.clinical;
  const clinical = r ? `  ${r.orientation} ${r.convention === "byte" ? "0..255" : "HU"}` : "";
  return `${c.id}  ${c.split.padEnd(5)}  ${c.shape.join("×")}  ` +
    `${c.spacingMm.map((s) => s.toFixed(2)).join("×")} mm${clinical}  lung ${lung}  ` +
    `infection ${infection} (${c.lesions} lesion${c.lesions === 1 ? "" : "s"})  ` +
    `${c.seconds.toFixed(1)} s`;
}

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["out"]);
  const out = String(v.out);
  const codec = choiceFlag<CaseCodec>(v.codec, "codec", CASE_CODECS, "zstd");
  const val = numberFlag(v.val, "val", 0.2, { min: 0, max: 0.99 });
  const test = numberFlag(v.test, "test", 0.1, { min: 0, max: 0.99 });
  if (val + test >= 1) throw new UsageError(`--val + --test must be below 1, got ${val + test}`);
  const shape = shapeFlag(v.shape, "shape", DEFAULT_SYNTH_SHAPE);
  if (shape.some((s) => s < 4)) throw new UsageError(`--shape needs every size ≥ 4, got ${shape}`);
  if (!v.force && await exists(join(out, DATASET_FILE))) {
    throw new UsageError(`${join(out, DATASET_FILE)} exists; pass --force to replace it`);
  }
  const started = performance.now();
  const cohort = choiceFlag<SynthCohort>(v.cohort, "cohort", SYNTH_COHORTS, "positive");
  const clinical = cohort === "clinical";
  if (clinical && v.shape !== undefined) {
    throw new UsageError(
      "--shape does not apply to --cohort clinical (each case has its own grid); " +
        "use --spacing-scale to make its cases smaller or larger",
    );
  }
  if (!clinical && v["spacing-scale"] !== undefined) {
    throw new UsageError("--spacing-scale applies to --cohort clinical only");
  }
  const cases = numberFlag(v.cases, "cases", clinical ? 12 : 16, {
    min: 1,
    max: 100_000,
    integer: true,
  });
  await generateSynthDataset(out, {
    cases,
    shape,
    seed: numberFlag(v.seed, "seed", 0, { integer: true }),
    val,
    test,
    cohort,
    spacingScale: numberFlag(v["spacing-scale"], "spacing-scale", CLINICAL_DATASET_SPACING_SCALE, {
      min: 0.5,
      max: 10,
    }),
    chunks: shapeFlag(v.chunks, "chunks", [64, 64, 64]),
    codec,
    onCase: (c) => console.log(v.json ? JSON.stringify(c) : caseLine(c)),
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const summary = { dataset: join(out, DATASET_FILE), cases, seconds: Number(seconds) };
  console.log(
    v.json
      ? JSON.stringify(summary)
      : `wrote ${cases} cases and ${summary.dataset} in ${seconds} s`,
  );
  return 0;
}
