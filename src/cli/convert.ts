/**
 * `voxseg convert`: NIfTI → OME-Zarr, one case or a whole nnU-Net raw folder (with the
 * dataset manifest). Cases of several image channels (CASE_0000 … CASE_000N; `--image a,b`)
 * become one case whose image has a channel axis (src/data/ome_zarr/metadata.ts).
 */

import { basename, join, resolve } from "node:path";
import { choiceFlag, numberFlag, parseNamedFlags, shapeFlag } from "./args.ts";
import { UsageError } from "./usage_error.ts";
import {
  buildManifest,
  caseStats,
  type DatasetManifest,
  datasetTargetProblem,
  defaultSplit,
  type ManifestCase,
  writeDataset,
} from "../data/dataset.ts";
import { commitFolder, tempSibling } from "../base/atomic.ts";
import { type NiftiVolume, readNifti } from "../data/nifti.ts";
import type { Volume } from "../data/volume.ts";
import { loadDicomInput, readDicomSeries } from "../data/dicom/series.ts";
import { CASE_CODECS, type CaseCodec } from "../data/ome_zarr/metadata.ts";
import { checkFiniteImage, labelArray, writeCase } from "../data/ome_zarr/writer.ts";
import { Random } from "../base/random.ts";
import { imageStats } from "../data/image_stats.ts";
import {
  channelCaseStats,
  checkChannelGrids,
  type ForegroundSample,
  withChannels,
} from "../data/channels.ts";

const HELP =
  `voxseg convert --image a.nii.gz[,a_0001.nii.gz,…] [--label a_seg.nii.gz] --out DIR/a.zarr
voxseg convert --raw DIR --out DIR [--val 0.2] [--test 0.1] [--seed 0] [--name NAME]
voxseg convert --dicom DIR|ZIP|a.dcm,b.dcm,… --out DIR/a.zarr [--label a_seg.nii.gz]
               [--series UID] [--deidentify]

One case: converts a NIfTI image (and its label map) into an OME-Zarr 0.5 case folder; several
images separated by commas are the channels of one case (e.g. CT and PET, or MRI sequences),
in channel order, on one voxel grid.

DICOM: reads one image series (a folder, searched recursively, a .zip, or a list of files;
--series UID picks one when there are several) into a case in HU, with its geometry (LPS →
RAS+ affine). The case keeps only the modality, spacing and affine: no patient name, ID, dates,
UIDs or series description reach its attributes. --deidentify also keeps the output's file
name out of the case (its multiscales name becomes "case") and the series UID out of what
convert prints; it does not rewrite the DICOM files.

Whole dataset: reads an nnU-Net raw folder — imagesTr/CASE_0000.nii.gz (and CASE_0001… for
more channels; a DICOM series as a CASE_0000 folder or CASE_0000.zip in its place),
labelsTr/CASE.nii.gz, optional imagesTs/ (split "test"; labelsTs/ used when
present) and optional dataset.json whose "labels" name the classes (else classes are inferred
from the label values) and whose "channel_names" name the channels — and
writes OUT/cases/CASE.zarr for each case plus OUT/dataset.json with splits, intensity
statistics, target spacing and sampled foreground coordinates. The dataset is assembled in a
temporary sibling folder and moved to OUT at the end, so a failed conversion leaves nothing
behind; OUT must be new, empty, or a voxseg dataset (which is replaced).

A label map and every channel must lie on the first channel's voxel grid (same shape and
affine); every case must have the same channels; images must not hold NaN or ±Infinity; labels
must be integers 0..255 (0..N-1 when dataset.json names N classes).

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
  dicom: { type: "string" },
  series: { type: "string" },
  deidentify: { type: "boolean" },
} as const;

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["out"]);
  if (v.image && v.raw) throw new UsageError("give either --image (one case) or --raw (a dataset)");
  const chunks = shapeFlag(v.chunks, "chunks", [64, 64, 64]);
  const codec = choiceFlag<CaseCodec>(v.codec, "codec", CASE_CODECS, "zstd");
  if (v.dicom !== undefined) return await convertDicom(v, chunks, codec);
  for (const flag of ["series", "deidentify"] as const) {
    if (v[flag] !== undefined) throw new UsageError(`--${flag} applies to --dicom only`);
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
  const imagePaths = String(v.image).split(",").map((p) => p.trim());
  for (const path of imagePaths) await checkInput(path, "--image");
  if (v.label) await checkInput(String(v.label), "--label");
  const { channels, label } = await readCaseInputs(imagePaths, v.label as string | undefined);
  const image = channels[0];
  const out = String(v.out);
  await writeCase(out, {
    image: channels,
    label,
    chunks,
    codec,
    name: basename(out).replace(/\.zarr$/, ""),
  });
  const c = channels.length > 1 ? `, ${channels.length} channels` : "";
  console.log(
    `wrote ${out}: ${image.shape.join("×")} voxels${c}, ${mm(image.spacingMm)} mm` +
      `${label ? ", with label" : ""}, ${codec} (${seconds(t0)})`,
  );
  return 0;
}

/** `convert --dicom`: one DICOM image series (and an optional NIfTI label map) → a case. */
async function convertDicom(
  v: Record<string, unknown>,
  chunks: [number, number, number],
  codec: CaseCodec,
): Promise<number> {
  if (v.image !== undefined || v.raw !== undefined) {
    throw new UsageError("give one of --dicom, --image or --raw");
  }
  for (const flag of ["val", "test", "seed", "name", "modality"]) {
    if (v[flag] !== undefined) throw new UsageError(`--${flag} applies to --raw only`);
  }
  const t0 = performance.now();
  const input = String(v.dicom);
  if (input.trim() === "") throw new UsageError("--dicom needs a folder, a .zip or files");
  if (v.label) await checkInput(String(v.label), "--label");
  const series = await readDicomSeries(await loadDicomInput(input), {
    seriesUid: v.series as string | undefined,
  });
  const image = series.volume;
  let label: NiftiVolume | undefined;
  if (v.label) {
    const labelPath = String(v.label);
    label = await readNifti(labelPath);
    checkSameGrid(image, label, "the DICOM series", labelPath);
    label.data = inFile(labelPath, () => labelArray(label!));
  }
  const out = String(v.out);
  const deidentify = v.deidentify === true;
  await writeCase(out, {
    image,
    label,
    chunks,
    codec,
    name: deidentify ? "case" : basename(out).replace(/\.zarr$/, ""),
    // Only what places and describes the voxels: nothing from the Patient or Study modules.
    attributes: { modality: series.modality || "OT", source: "dicom" },
  });
  const what = deidentify ? "" : ` from series ${series.seriesInstanceUid}`;
  console.log(
    `wrote ${out}${what}: ${series.modality} ${image.shape.join("×")} voxels, ` +
      `${mm(image.spacingMm)} mm${label ? ", with label" : ""}, ${codec} (${seconds(t0)})`,
  );
  return 0;
}

async function checkInput(path: string, flag: string): Promise<void> {
  if (path === "" || !(await Deno.stat(path).then((s) => s.isFile, () => false))) {
    throw new UsageError(`${flag} ${path}: no such file`);
  }
}

/**
 * Reads the channels of an image (one file each, in channel order) and its label map (if
 * any) and refuses what would make a bad case: a non-finite image, a channel or a label off
 * channel 0's grid, label values that are not class indices. Every error names the file it is
 * about.
 */
async function readCaseInputs(
  imagePaths: readonly string[],
  labelPath?: string,
): Promise<{ channels: Volume[]; label?: NiftiVolume }> {
  const channels: Volume[] = [];
  for (const path of imagePaths) {
    const image = DICOM_IMAGE.test(path) ? await readRawDicom(path) : await readNifti(path);
    inFile(path, () => checkFiniteImage(image));
    channels.push(image);
  }
  checkChannelGrids(channels, imagePaths);
  if (labelPath === undefined) return { channels };
  const label = await readNifti(labelPath);
  checkSameGrid(channels[0], label, imagePaths[0], labelPath);
  label.data = inFile(labelPath, () => labelArray(label));
  return { channels, label };
}

/**
 * A DICOM series given as an nnU-Net image (a CASE_0000 folder or CASE_0000.zip): its volume in
 * HU, with nothing of the Patient or Study modules.
 */
async function readRawDicom(path: string): Promise<Volume> {
  try {
    return (await readDicomSeries(await loadDicomInput(path))).volume;
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** Runs `check`, prefixing any error with the file it is about. */
function inFile<T>(path: string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** Largest difference between image and label affine entries accepted as the same grid. */
const GRID_TOLERANCE_MM = 1e-3;

/** A label map must share the image's voxel grid: the same shape and the same affine. */
function checkSameGrid(
  image: Volume,
  label: Volume,
  imagePath: string,
  labelPath: string,
): void {
  if (label.shape.some((s, i) => s !== image.shape[i])) {
    throw new Error(
      `${labelPath}: label shape ${label.shape.join("×")} differs from image shape ` +
        `${image.shape.join("×")} of ${imagePath} (D×H×W) — resample the label onto the image grid`,
    );
  }
  const diff = Math.max(...image.affine.map((a, i) => Math.abs(a - label.affine[i])));
  if (diff > GRID_TOLERANCE_MM) {
    const origin = (v: Volume) => [3, 7, 11].map((i) => +v.affine[i].toFixed(3)).join(", ");
    throw new Error(
      `${labelPath}: label geometry differs from ${imagePath}: affine entries differ by up to ` +
        `${+diff.toPrecision(3)} (spacing ${mm(label.spacingMm)} vs ${mm(image.spacingMm)} mm, ` +
        `origin (${origin(label)}) vs (${origin(image)}) mm) — the label must lie on the ` +
        "image's voxel grid: resample it, or fix its header if only the header is wrong",
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
  /** The channel files CASE_0000 … in channel order. */
  images: string[];
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
  const channelNames = checkChannelCounts([...train, ...test], meta.channels);
  const clash = test.find((t) => train.some((c) => c.id === t.id));
  if (clash) throw new Error(`case "${clash.id}" is in both imagesTr/ and imagesTs/`);
  const target = resolve(out);
  await checkReplaceable(target, resolve(raw));
  const testFraction = opts.test ?? (test.length ? 0 : 0.1);
  const split = defaultSplit(train.map((c) => c.id), {
    val: opts.val,
    test: testFraction,
    seed: opts.seed,
  });
  const cases = [...train, ...test].sort((a, b) => a.id.localeCompare(b.id));

  // Everything is written under a hidden sibling of OUT and moved into place at the end.
  const stage = tempSibling(target);
  await Deno.mkdir(stage, { recursive: true });
  let manifest: DatasetManifest;
  try {
    const splitOf = (c: RawCase) => (c.fromTest ? "test" : split[c.id]);
    const { entries, foreground } = await writeCases(
      stage,
      cases,
      splitOf,
      meta.classes,
      channelNames,
      opts,
    );
    manifest = withChannels(
      buildManifest({
        name: opts.name ?? meta.name ?? basename(raw.replace(/\/+$/, "")),
        modality: opts.modality ?? meta.modality ?? "CT",
        classes: meta.classes ?? inferClasses(entries),
        cases: entries,
      }),
      channelNames,
      foreground,
    );
    await writeDataset(stage, manifest);
    await commitFolder(stage, target);
  } catch (e) {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
    throw e;
  }
  const { classes } = manifest;
  const count = (s: string) => manifest.cases.filter((c) => c.split === s).length;
  console.log(
    `wrote ${join(out, "dataset.json")}: ${manifest.cases.length} cases ` +
      `(train ${count("train")}, val ${count("val")}, test ${count("test")}), ` +
      `classes ${classes.join(", ")}` +
      (channelNames.length > 1 ? `, channels ${channelNames.join(", ")}` : ""),
  );
  return 0;
}

/**
 * The channel names of a raw dataset, after checking that every case has the same number of
 * channels and that it matches dataset.json's `channel_names` (when given); unnamed channels
 * are called channel_0, channel_1, ….
 */
function checkChannelCounts(cases: RawCase[], named: string[] | undefined): string[] {
  const n = cases[0].images.length;
  const odd = cases.find((c) => c.images.length !== n);
  if (odd) {
    throw new Error(
      `case "${odd.id}" has ${odd.images.length} channel file(s) but case "${cases[0].id}" has ` +
        `${n}; every case needs the same channels (CASE_0000 … CASE_${pad4(n - 1)})`,
    );
  }
  if (named && named.length !== n) {
    throw new Error(
      `dataset.json names ${named.length} channel(s) (channel_names: ${named.join(", ")}) but ` +
        `the cases have ${n}; give every channel its CASE_000N file, or fix channel_names`,
    );
  }
  return named ?? Array.from({ length: n }, (_, i) => `channel_${i}`);
}

const pad4 = (i: number) => String(i).padStart(4, "0");

/**
 * Converts each raw case into `dir/cases/ID.zarr`, one progress line per case. Returns the
 * manifest entries and, for a multi-channel dataset, each labelled case's per-channel
 * foreground samples (for `withChannels`).
 */
async function writeCases(
  dir: string,
  cases: RawCase[],
  splitOf: (c: RawCase) => ManifestCase["split"],
  classes: string[] | undefined,
  channelNames: string[],
  opts: RawOptions,
): Promise<{ entries: ManifestCase[]; foreground: ForegroundSample[][] }> {
  const rng = new Random(opts.seed);
  const entries: ManifestCase[] = [];
  const foreground: ForegroundSample[][] = [];
  const several = channelNames.length > 1;
  for (const [i, c] of cases.entries()) {
    const t0 = performance.now();
    const caseRng = rng.fork();
    const { channels, label } = await readCaseInputs(c.images, c.label);
    const image = channels[0];
    const stats: ManifestCase["stats"] = label
      ? inFile(c.label!, () => caseStats(image, label, classes, caseRng))
      : { shape: image.shape, spacingMm: image.spacingMm, image: imageStats(image.data) };
    if (several) {
      // Drawn after channel 0's statistics, so a one-channel dataset's draws are unchanged.
      const perChannel = channelCaseStats(channels, label, caseRng);
      stats.imageChannels = perChannel.imageChannels;
      if (perChannel.foreground) foreground.push(perChannel.foreground);
    }
    const path = `cases/${c.id}.zarr`;
    const { chunks, codec } = opts;
    await writeCase(join(dir, path), {
      image: channels,
      label,
      chunks,
      codec,
      name: c.id,
      classNames: classes,
      ...(several ? { channelNames } : {}),
    });
    entries.push({ id: c.id, path, split: splitOf(c), stats });
    console.log(
      `[${i + 1}/${cases.length}] ${c.id} ${splitOf(c)} ${image.shape.join("×")} ` +
        `${mm(image.spacingMm)} mm${label ? "" : " (no label)"} ${seconds(t0)}`,
    );
  }
  return { entries, foreground };
}

/**
 * `convert --raw` replaces OUT as a whole, so OUT must be new, empty, or a voxseg dataset —
 * never a folder holding other files (an nnU-Net dataset.json does not count), and never the
 * raw folder or one that contains it.
 */
async function checkReplaceable(out: string, raw: string): Promise<void> {
  const problem = await datasetTargetProblem(out, raw);
  if (problem === "holds-source") {
    throw new UsageError(`--out ${out} holds the raw folder ${raw}; give a folder outside it`);
  }
  if (problem === "not-a-folder") throw new UsageError(`--out ${out} exists and is not a folder`);
  if (problem === "other-files") {
    throw new UsageError(
      `--out ${out} is a folder with other files and no voxseg dataset.json; convert --raw ` +
        "replaces OUT as a whole, so give a new folder (or an existing voxseg dataset's)",
    );
  }
}

/** Classes from the largest label value seen: background, class_1, …, class_N. */
function inferClasses(entries: ManifestCase[]): string[] {
  let n = 2;
  for (const e of entries) {
    if ("voxelsPerClass" in e.stats) n = Math.max(n, e.stats.voxelsPerClass.length);
  }
  return Array.from({ length: n }, (_, i) => (i === 0 ? "background" : `class_${i}`));
}

/** What voxseg uses from an nnU-Net dataset.json (v1 or v2). */
interface NnunetMeta {
  classes?: string[];
  /** Channel 0's name ("CT" for any spelling of CT). */
  modality?: string;
  name?: string;
  /** `channel_names` (v2; `modality` in v1) in channel order, when it names every channel. */
  channels?: string[];
}

/** What voxseg uses from an nnU-Net dataset.json (v1 or v2): classes, channels, name. */
async function readNnunetJson(raw: string): Promise<NnunetMeta> {
  const file = join(raw, "dataset.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const byIndex = (json.channel_names ?? json.modality) as Record<string, string> | undefined;
  const channel = byIndex?.["0"];
  const modality = channel === undefined ? undefined : /^ct$/i.test(channel) ? "CT" : channel;
  return {
    classes: json.labels === undefined ? undefined : nnunetClasses(json.labels, file),
    modality,
    name: typeof json.name === "string" ? json.name : undefined,
    channels: byIndex === undefined ? undefined : channelNames(byIndex, file),
  };
}

/** `channel_names` {"0": "CT", "1": "PET"} as a list; the keys must be 0..C-1. */
function channelNames(byIndex: Record<string, unknown>, file: string): string[] {
  const n = Object.keys(byIndex).length;
  const names = Array.from({ length: n }, (_, i) => byIndex[String(i)]);
  if (names.some((v) => typeof v !== "string" || v === "")) {
    throw new Error(
      `${file}: "channel_names" must map "0".."${n - 1}" to channel names, got ` +
        JSON.stringify(byIndex),
    );
  }
  return (names as string[]).map((v) => (/^ct$/i.test(v) ? "CT" : v));
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

/** An nnU-Net image: NIfTI, or a DICOM series as a folder or a .zip (CASE_0000/, CASE_0000.zip). */
const RAW_IMAGE = /^(.+)_(\d{4})(\.nii(\.gz)?|\.zip|\/)$/;
const DICOM_IMAGE = /(\.zip|\/)$/i;

/**
 * Cases of one nnU-Net images folder: CASE_0000.nii.gz images (or DICOM series: a CASE_0000
 * folder or CASE_0000.zip), CASE.nii.gz labels.
 */
async function listCases(raw: string, images: string, labels: string, needLabels: boolean) {
  const dir = join(raw, images);
  const names = await listFiles(dir, true);
  if (names === undefined) return [];
  const channels = new Map<string, string[]>();
  const candidates = names.filter((n) => /\.nii(\.gz)?$|\.zip$|\/$/.test(n)).sort();
  for (const name of candidates) {
    const m = RAW_IMAGE.exec(name);
    if (!m) {
      throw new Error(
        `${join(dir, name)}: no channel suffix — nnU-Net names images CASE_0000.nii.gz (a DICOM ` +
          "series: a CASE_0000 folder or CASE_0000.zip)",
      );
    }
    channels.set(m[1], [...(channels.get(m[1]) ?? []), name]);
  }
  const labelNames = new Set((await listFiles(join(raw, labels))) ?? []);
  const cases: RawCase[] = [];
  for (const [id, files] of channels) {
    // Channel files must be CASE_0000 … CASE_000N with no gap (sorted by name above).
    const gap = files.findIndex((f, i) => !RAW_IMAGE.test(f) || !f.startsWith(`${id}_${pad4(i)}`));
    if (gap >= 0) {
      throw new Error(
        `case "${id}" in ${dir} has channel files ${files.join(", ")}; channels must be ` +
          `${id}_0000 … ${id}_${pad4(files.length - 1)} without a gap (missing ` +
          `${id}_${pad4(gap)}.nii.gz)`,
      );
    }
    const label = [`${id}.nii.gz`, `${id}.nii`].find((n) => labelNames.has(n));
    if (!label && needLabels) {
      throw new Error(`case "${id}" has no label: expected ${join(raw, labels, id + ".nii.gz")}`);
    }
    cases.push({
      id,
      images: files.map((f) => join(dir, f)),
      label: label ? join(raw, labels, label) : undefined,
      fromTest: !needLabels,
    });
  }
  return cases;
}

/** The files of `dir`; with `folders`, its folders too, named with a trailing "/". */
async function listFiles(dir: string, folders = false): Promise<string[] | undefined> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile) names.push(e.name);
      else if (folders && e.isDirectory) names.push(`${e.name}/`);
    }
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
