/**
 * `voxseg convert`: NIfTI → OME-Zarr, one case or a whole nnU-Net raw folder (with the
 * dataset manifest).
 */

import { basename, join } from "node:path";
import { numberFlag, parseFlags, shapeFlag } from "./args.ts";
import { UsageError } from "./main.ts";
import {
  buildManifest,
  caseStats,
  defaultSplit,
  type ManifestCase,
  writeDataset,
} from "../data/dataset.ts";
import { type NiftiVolume, readNifti } from "../data/nifti.ts";
import { CASE_CODECS, type CaseCodec, writeCase } from "../data/ome_zarr.ts";
import { Random } from "../data/random.ts";

const HELP = `voxseg convert --image a.nii.gz [--label a_seg.nii.gz] --out DIR/a.zarr
voxseg convert --raw DIR --out DIR [--val 0.2] [--test 0.1] [--seed 0] [--name NAME]

One case: converts a NIfTI image (and its label map) into an OME-Zarr 0.5 case folder.

Whole dataset: reads an nnU-Net raw folder — imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz,
optional imagesTs/ (split "test"; labelsTs/ used when present) and optional dataset.json
whose "labels" name the classes (else classes are inferred from the label values) — and
writes OUT/cases/CASE.zarr for each case plus OUT/dataset.json with splits, intensity
statistics, target spacing and sampled foreground coordinates.

flags:
  --chunks N|D,H,W   chunk shape (default 64)
  --codec zstd|gzip  chunk compression (default zstd)
  --val F            fraction of training cases for validation (default 0.2)
  --test F           fraction held out for test (default 0.1; 0 when imagesTs/ exists)
  --seed N           seed for the split and foreground sampling (default 0)
  --name NAME        dataset name (default: nnU-Net "name", else the raw folder's name)
  --modality M       modality (default: nnU-Net channel 0 name, else CT)`;

const FLAGS = {
  image: { type: "string" },
  label: { type: "string" },
  raw: { type: "string" },
  out: { type: "string" },
  chunks: { type: "string" },
  codec: { type: "string" },
  val: { type: "string" },
  test: { type: "string" },
  seed: { type: "string" },
  name: { type: "string" },
  modality: { type: "string" },
} as const;

export async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, FLAGS, HELP);
  if (positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP}`);
  }
  if (!v.out) throw new UsageError(`--out is required\n\n${HELP}`);
  if (v.image && v.raw) throw new UsageError("give either --image (one case) or --raw (a dataset)");
  const chunks = shapeFlag(v.chunks, "chunks", [64, 64, 64]);
  const codec = (v.codec ?? "zstd") as CaseCodec;
  if (!CASE_CODECS.includes(codec)) {
    throw new UsageError(`--codec must be ${CASE_CODECS.join(" or ")}, got "${v.codec}"`);
  }
  if (v.raw) {
    return await convertRaw(String(v.raw), String(v.out), {
      chunks,
      codec,
      val: numberFlag(v.val, "val", 0.2, { min: 0, max: 0.99 }),
      test: v.test === undefined
        ? undefined
        : numberFlag(v.test, "test", 0.1, { min: 0, max: 0.99 }),
      seed: numberFlag(v.seed, "seed", 0, { integer: true }),
      name: v.name as string | undefined,
      modality: v.modality as string | undefined,
    });
  }
  if (!v.image) {
    throw new UsageError(`give --image FILE (one case) or --raw DIR (a dataset)\n\n${HELP}`);
  }
  for (const flag of ["val", "test", "seed", "name", "modality"] as const) {
    if (v[flag] !== undefined) throw new UsageError(`--${flag} applies to --raw only`);
  }
  const t0 = performance.now();
  const image = await readInput(String(v.image), "--image");
  const label = v.label ? await readInput(String(v.label), "--label") : undefined;
  if (label) checkSameGrid(image, label, String(v.label));
  const out = String(v.out);
  await writeCase(out, { image, label, chunks, codec, name: basename(out).replace(/\.zarr$/, "") });
  console.log(
    `wrote ${out}: ${image.shape.join("×")} voxels, ${mm(image.spacingMm)} mm` +
      `${label ? ", with label" : ""}, ${codec} (${seconds(t0)})`,
  );
  return 0;
}

async function readInput(path: string, flag: string): Promise<NiftiVolume> {
  if (!(await Deno.stat(path).then((s) => s.isFile, () => false))) {
    throw new UsageError(`${flag} ${path}: no such file`);
  }
  return await readNifti(path);
}

/** A label map must share the image's grid: same shape; a different affine is only warned of. */
function checkSameGrid(image: NiftiVolume, label: NiftiVolume, labelPath: string): void {
  if (label.shape.some((s, i) => s !== image.shape[i])) {
    throw new Error(
      `${labelPath}: label shape ${label.shape.join("×")} differs from image shape ` +
        `${image.shape.join("×")} (D×H×W) — resample the label onto the image grid`,
    );
  }
  const diff = Math.max(...image.affine.map((a, i) => Math.abs(a - label.affine[i])));
  if (diff > 1e-3) {
    console.error(
      `warning: ${labelPath}: affine differs from the image's by up to ${diff.toFixed(4)} mm; ` +
        "keeping the image's geometry",
    );
  }
}

interface RawOptions {
  chunks: [number, number, number];
  codec: CaseCodec;
  val: number;
  test: number | undefined;
  seed: number;
  name?: string;
  modality?: string;
}

interface RawCase {
  id: string;
  image: string;
  label?: string;
  fromTest: boolean;
}

/** Converts an nnU-Net raw folder into OUT/cases/*.zarr and OUT/dataset.json. */
async function convertRaw(raw: string, out: string, opts: RawOptions): Promise<number> {
  if (!(await Deno.stat(raw).then((s) => s.isDirectory, () => false))) {
    throw new UsageError(`--raw ${raw}: no such folder`);
  }
  const meta = await readNnunetJson(raw);
  const train = await listCases(raw, "imagesTr", "labelsTr", true);
  const test = await listCases(raw, "imagesTs", "labelsTs", false);
  if (train.length === 0) {
    throw new Error(
      `${join(raw, "imagesTr")}: no CASE_0000.nii.gz images — is this an nnU-Net raw folder?`,
    );
  }
  const clash = test.find((t) => train.some((c) => c.id === t.id));
  if (clash) throw new Error(`case "${clash.id}" is in both imagesTr/ and imagesTs/`);
  const testFraction = opts.test ?? (test.length ? 0 : 0.1);
  const split = defaultSplit(train.map((c) => c.id), {
    val: opts.val,
    test: testFraction,
    seed: opts.seed,
  });
  const cases = [...train, ...test].sort((a, b) => a.id.localeCompare(b.id));

  const rng = new Random(opts.seed);
  const entries: ManifestCase[] = [];
  for (const [i, c] of cases.entries()) {
    const t0 = performance.now();
    const caseRng = rng.fork();
    const image = await readNifti(c.image);
    const label = c.label ? await readNifti(c.label) : undefined;
    if (label) checkSameGrid(image, label, c.label!);
    const path = `cases/${c.id}.zarr`;
    await writeCase(join(out, path), {
      image,
      label,
      chunks: opts.chunks,
      codec: opts.codec,
      name: c.id,
      classNames: meta.classes,
    });
    const stats = label
      ? caseStats(image, label, meta.classes, caseRng)
      : { shape: image.shape, spacingMm: image.spacingMm };
    const s: ManifestCase["split"] = c.fromTest ? "test" : split[c.id];
    entries.push({ id: c.id, path, split: s, stats });
    console.log(
      `[${i + 1}/${cases.length}] ${c.id} ${s} ${image.shape.join("×")} ` +
        `${mm(image.spacingMm)} mm${label ? "" : " (no label)"} ${seconds(t0)}`,
    );
  }
  const classes = meta.classes ?? inferClasses(entries);
  const manifest = buildManifest({
    name: opts.name ?? meta.name ?? basename(raw.replace(/\/+$/, "")),
    modality: opts.modality ?? meta.modality ?? "CT",
    classes,
    cases: entries,
  });
  await writeDataset(out, manifest);
  const count = (s: string) => manifest.cases.filter((c) => c.split === s).length;
  console.log(
    `wrote ${join(out, "dataset.json")}: ${manifest.cases.length} cases ` +
      `(train ${count("train")}, val ${count("val")}, test ${count("test")}), ` +
      `classes ${classes.join(", ")}`,
  );
  return 0;
}

/** Classes from the largest label value seen: background, class_1, …, class_N. */
function inferClasses(entries: ManifestCase[]): string[] {
  let n = 2;
  for (const e of entries) {
    if ("voxelsPerClass" in e.stats) n = Math.max(n, e.stats.voxelsPerClass.length);
  }
  return Array.from({ length: n }, (_, i) => (i === 0 ? "background" : `class_${i}`));
}

/** What voxseg uses from an nnU-Net dataset.json (v1 or v2): classes, modality, name. */
async function readNnunetJson(raw: string) {
  const file = join(raw, "dataset.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return {} as { classes?: string[]; modality?: string; name?: string };
    }
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const channels = (json.channel_names ?? json.modality) as Record<string, string> | undefined;
  const channel = channels?.["0"];
  const modality = channel === undefined ? undefined : /^ct$/i.test(channel) ? "CT" : channel;
  return {
    classes: json.labels === undefined ? undefined : nnunetClasses(json.labels, file),
    modality,
    name: typeof json.name === "string" ? json.name : undefined,
  };
}

/** nnU-Net v2 labels map name → value; v1 maps "value" → name. Values must be 0..N-1. */
function nnunetClasses(labels: unknown, file: string): string[] {
  if (typeof labels !== "object" || labels === null) {
    throw new Error(`${file}: "labels" must be an object of class names and values`);
  }
  const byValue = new Map<number, string>();
  for (const [k, val] of Object.entries(labels)) {
    const v1 = /^\d+$/.test(k) && typeof val === "string";
    const value = v1 ? Number(k) : val;
    const name = v1 ? val as string : k;
    if (!Number.isInteger(value)) {
      throw new Error(
        `${file}: label "${k}" maps to ${JSON.stringify(val)}; voxseg supports one integer ` +
          "value per class (no nnU-Net region labels)",
      );
    }
    byValue.set(value as number, name);
  }
  const n = byValue.size;
  const classes = Array.from({ length: n }, (_, i) => byValue.get(i));
  if (classes.some((c) => c === undefined) || n < 2) {
    throw new Error(`${file}: "labels" values must be 0..N-1 with background 0 (N ≥ 2)`);
  }
  return classes as string[];
}

const NIFTI = /\.nii(\.gz)?$/;

/** Cases of one nnU-Net images folder: CASE_0000.nii.gz images, CASE.nii.gz labels. */
async function listCases(raw: string, images: string, labels: string, needLabels: boolean) {
  const dir = join(raw, images);
  const names = await listFiles(dir);
  if (names === undefined) return [];
  const channels = new Map<string, string[]>();
  for (const name of names.filter((n) => NIFTI.test(n)).sort()) {
    const m = /^(.+)_(\d{4})\.nii(\.gz)?$/.exec(name);
    if (!m) {
      throw new Error(
        `${join(dir, name)}: no channel suffix — nnU-Net names images CASE_0000.nii.gz`,
      );
    }
    channels.set(m[1], [...(channels.get(m[1]) ?? []), name]);
  }
  const labelNames = new Set((await listFiles(join(raw, labels))) ?? []);
  const cases: RawCase[] = [];
  for (const [id, files] of channels) {
    if (files.length > 1 || !/_0000\.nii/.test(files[0])) {
      throw new Error(
        `case "${id}" in ${dir} has channel files ${files.join(", ")}; voxseg trains on one ` +
          "channel (CASE_0000) — keep only that one",
      );
    }
    const label = [`${id}.nii.gz`, `${id}.nii`].find((n) => labelNames.has(n));
    if (!label && needLabels) {
      throw new Error(`case "${id}" has no label: expected ${join(raw, labels, id + ".nii.gz")}`);
    }
    cases.push({
      id,
      image: join(dir, files[0]),
      label: label ? join(raw, labels, label) : undefined,
      fromTest: !needLabels,
    });
  }
  return cases;
}

async function listFiles(dir: string): Promise<string[] | undefined> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
    return names;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function mm(spacing: number[]): string {
  return spacing.map((s) => +s.toFixed(2)).join("×");
}

function seconds(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)} s`;
}
