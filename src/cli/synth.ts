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
  synthCase,
  type SynthCohort,
} from "../data/synth.ts";
import type { Shape3 } from "../data/volume.ts";

const HELP =
  `voxseg synth --out DIR [--cases 16] [--shape 48,96,96] [--seed 0] [--val 0.2] [--test 0.1]

Generates synthetic chest CTs in Hounsfield units (body, ribs, spine, heart, two lungs with
vessels, COVID-19-like ground-glass and consolidation lesions) with labels 0 background,
1 lung, 2 infection, and writes DIR/cases/ID.zarr plus DIR/dataset.json (splits, intensity
statistics, sampled foreground coordinates). The same seed gives the same dataset.

flags:
  --out DIR          dataset folder (required)
  --cases N          number of cases (default 16)
  --shape D,H,W      voxels per case (default ${DEFAULT_SYNTH_SHAPE.join(",")})
  --seed N           seed of the whole dataset (default 0)
  --val F            fraction for validation (default 0.2)
  --test F           fraction held out for test (default 0.1)
  --cohort positive|mixed
                     positive (default): every case has 2–8 infection lesions, like a
                     COVID-19-positive cohort; mixed: 15 % of cases without infection and
                     15 % with one small lesion, like a screening population
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
  chunks: { type: "string" },
  codec: { type: "string" },
  force: { type: "boolean" },
  json: { type: "boolean" },
} as const;

export interface SynthDatasetOptions {
  /** Default 16. */
  cases?: number;
  /** Default {@link DEFAULT_SYNTH_SHAPE}. */
  shape?: Shape3;
  /** Default 0. */
  seed?: number;
  /** Split fractions (default 0.2 and 0.1). */
  val?: number;
  test?: number;
  /** Lesion-count distribution (default "positive", see SynthOptions.cohort). */
  cohort?: SynthCohort;
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
}

/**
 * Generates a synthetic dataset into `dir` (cases, then `dataset.json` last, so a folder with a
 * manifest is always complete).
 */
export async function generateSynthDataset(
  dir: string,
  options: SynthDatasetOptions = {},
): Promise<void> {
  const { cases: n = 16, shape = DEFAULT_SYNTH_SHAPE, seed = 0, val = 0.2, test = 0.1 } = options;
  const cohort = options.cohort ?? "positive";
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`cases must be ≥ 1, got ${n}`);
  const width = Math.max(3, String(n - 1).length);
  const ids = Array.from({ length: n }, (_, i) => `synth_${String(i).padStart(width, "0")}`);
  const splits = defaultSplit(ids, { val, test, seed });
  const rng = new Random(seed);
  const entries: ManifestCase[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    const caseSeed = rng.int(0, 2 ** 31);
    const { image, label, lesions } = synthCase(caseSeed, { shape, cohort });
    const stats = caseStats(image, label, [...SYNTH_CLASSES], new Random(caseSeed ^ 0x5eed));
    const path = `cases/${id}.zarr`;
    await writeCase(join(dir, path), {
      image,
      label,
      name: id,
      classNames: [...SYNTH_CLASSES],
      chunks: options.chunks,
      codec: options.codec,
      attributes: { modality: "CT", source: "voxseg synth", seed: caseSeed },
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
    });
  }
  const manifest = buildManifest({
    name: "synth",
    modality: "CT",
    classes: [...SYNTH_CLASSES],
    cases: entries,
    source: synthSource({ cases: n, shape, seed, val, test, cohort }),
  });
  await writeDataset(dir, manifest);
}

/**
 * The generator's stamp in `dataset.json` (`source`): which generator and options made the
 * data. A new generator version changes the voxels a seed gives.
 */
export const SYNTH_GENERATOR = "voxseg synth 2";

function synthSource(o: {
  cases: number;
  shape: Shape3;
  seed: number;
  val: number;
  test: number;
  cohort: SynthCohort;
}): Record<string, unknown> {
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
    const { cases = 16, shape = DEFAULT_SYNTH_SHAPE, seed = 0, val = 0.2, test = 0.1 } = options;
    const want = synthSource({
      cases,
      shape,
      seed,
      val,
      test,
      cohort: options.cohort ?? "positive",
    });
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
  const cases = numberFlag(v.cases, "cases", 16, { min: 1, max: 100_000, integer: true });
  await generateSynthDataset(out, {
    cases,
    shape,
    seed: numberFlag(v.seed, "seed", 0, { integer: true }),
    val,
    test,
    cohort: choiceFlag<SynthCohort>(v.cohort, "cohort", SYNTH_COHORTS, "positive"),
    chunks: shapeFlag(v.chunks, "chunks", [64, 64, 64]),
    codec,
    onCase: (c) => {
      if (v.json) {
        console.log(JSON.stringify(c));
        return;
      }
      const [, lung, infection] = c.voxelsPerClass;
      console.log(
        `${c.id}  ${c.split.padEnd(5)}  ${c.shape.join("×")}  ` +
          `${c.spacingMm.map((s) => s.toFixed(2)).join("×")} mm  lung ${lung}  ` +
          `infection ${infection} (${c.lesions} lesion${c.lesions === 1 ? "" : "s"})  ` +
          `${c.seconds.toFixed(1)} s`,
      );
    },
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
