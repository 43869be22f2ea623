/**
 * The dataset manifest, `dataset.json`, at the root of a dataset folder or URL:
 *
 * ```json
 * { "format": "voxseg-dataset", "version": 1, "name": "lungs", "modality": "CT",
 *   "classes": ["background", "lung", "infection"],
 *   "targetSpacingMm": [2.5, 0.8, 0.8],
 *   "intensity": { "mean": …, "std": …, "p0_5": …, "p99_5": …, "min": …, "max": … },
 *   "cases": [{ "id": "a", "path": "cases/a.zarr", "split": "train", "shape": [D,H,W],
 *               "spacingMm": [z,y,x], "hasLabel": true, "voxelsPerClass": [n0, n1, n2],
 *               "foreground": [[], [z,y,x, z,y,x, …], […]] }] }
 * ```
 *
 * `foreground[c]` holds up to 10 000 voxel coordinates of class c (flat z,y,x triples, sorted
 * by flat index), sampled uniformly with a seeded reservoir — nnU-Net's class locations — so
 * the patch sampler can centre patches on foreground without scanning volumes. Background
 * (class 0) is not sampled. Intensity statistics are nnU-Net's: computed on foreground voxel
 * intensities sampled from every labelled case; the target spacing is the per-axis median.
 *
 * A dataset of C > 1 image channels (nnU-Net's CASE_0000 … CASE_000N) lists their names in
 * `channels` and keeps the per-channel statistics beside the one-channel fields, which hold
 * channel 0's (so a reader that knows one channel still reads it): `intensityChannels[c]` the
 * foreground statistics of channel c, each case's `imageChannels[c]` its whole-image ones.
 * Without `channels` the dataset has one channel.
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { writeFileAtomic } from "../base/atomic.ts";
import { Random } from "../base/random.ts";
import { type ClassCodes, parseClassCodes } from "../base/class_codes.ts";
import type { Shape3, Volume } from "./volume.ts";
import { type ImageStats, imageStats } from "./image_stats.ts";
import { parseJson } from "../base/json.ts";

export type Split = "train" | "val" | "test";
export const SPLITS: readonly Split[] = ["train", "val", "test"];
export const DATASET_FILE = "dataset.json";
const FORMAT = "voxseg-dataset";

/** Foreground intensity statistics (nnU-Net's dataset fingerprint). */
export interface IntensityStats {
  mean: number;
  std: number;
  /** 0.5th percentile. */
  p0_5: number;
  /** 99.5th percentile. */
  p99_5: number;
  min: number;
  max: number;
}

export interface CaseEntry {
  id: string;
  /** Case location: relative to the dataset root, or absolute, or an http(s) URL. */
  path: string;
  split: Split;
  /** D, H, W. */
  shape: Shape3;
  /** z, y, x mm. */
  spacingMm: Shape3;
  hasLabel: boolean;
  /** Voxels of each class (index = label value); empty when the case has no label. */
  voxelsPerClass: number[];
  /** Per class: sampled foreground coordinates as flat z,y,x triples; `foreground[0]` = []. */
  foreground: number[][];
  /**
   * Whole-image intensity statistics (for `zscore-case` normalisation); absent in datasets
   * converted before they were recorded. Channel 0's on a multi-channel dataset.
   */
  image?: ImageStats;
  /** Whole-image statistics of each channel, on a dataset of C > 1 channels (length C). */
  imageChannels?: ImageStats[];
}

export interface DatasetManifest {
  format: typeof FORMAT;
  version: 1;
  name: string;
  /** "CT" (intensities are HU) or another modality name. */
  modality: string;
  /** Class names by label value; `classes[0]` is the background. */
  classes: string[];
  /** Median spacing over the cases, z, y, x mm. */
  targetSpacingMm: Shape3;
  /**
   * Foreground intensity statistics (channel 0's on a multi-channel dataset); null when no
   * case has a label.
   */
  intensity: IntensityStats | null;
  /** Image channel names in channel order (e.g. ["T1", "T2"]), when there are C > 1. */
  channels?: string[];
  /** Foreground intensity statistics of each channel, when there are C > 1 (length C). */
  intensityChannels?: (IntensityStats | null)[];
  /**
   * The coded meaning of classes (DICOM SegmentedPropertyCategory and Type), by class name, for
   * the Segmentations a model trained on this dataset writes; classes not listed get a known
   * code (lung, infection…) or a generic one.
   */
  classCodes?: ClassCodes;
  /** Where the data came from (generator name and options, converter, URL…); free-form. */
  source?: Record<string, unknown>;
  cases: CaseEntry[];
}

/** A manifest read from disk or HTTP, with the root its relative case paths resolve against. */
export interface Dataset extends DatasetManifest {
  /** Dataset folder (absolute path) or URL (ending in "/"). */
  root: string;
}

// ---------------------------------------------------------------------------------------------
// Per-case statistics

export interface CaseStatsOptions {
  /** Foreground coordinates kept per class (default 10 000). */
  maxPerClass?: number;
  /** Foreground intensities kept for the dataset statistics (default 10 000). */
  intensitySamples?: number;
}

export interface CaseStats {
  shape: Shape3;
  spacingMm: Shape3;
  /** Voxels of each label value. */
  voxelsPerClass: number[];
  /** Per class: flat z,y,x triples, sorted by flat index; `[0]` = []. */
  foreground: number[][];
  /** Uniform sample of image intensities over all foreground voxels. */
  intensities: Float32Array;
  /** Exact extremes of foreground intensities (±Infinity when there is no foreground). */
  min: number;
  max: number;
  /** Whole-image statistics. */
  image: ImageStats;
}

/**
 * One pass over a case: voxel counts per class, up to `maxPerClass` uniformly sampled
 * coordinates per foreground class and a uniform sample of foreground intensities
 * (reservoir sampling driven by `rng`, so the result is reproducible from its seed).
 *
 * `classes` (names, or their count) bounds the label values; pass undefined to accept any
 * value 0..255 and size the result by the largest value present.
 *
 * @example
 * const stats = caseStats(ct, seg, ["background", "lung"], new Random(0));
 */
export function caseStats(
  image: Volume,
  label: Volume,
  classes: string[] | number | undefined,
  rng: Random,
  options: CaseStatsOptions = {},
): CaseStats {
  const { maxPerClass = 10_000, intensitySamples = 10_000 } = options;
  const n = image.data.length;
  if (label.data.length !== n || label.shape.some((s, i) => s !== image.shape[i])) {
    throw new RangeError(
      `label shape [${label.shape}] differs from image shape [${image.shape}] (D,H,W)`,
    );
  }
  const limit = typeof classes === "number" ? classes : classes?.length ?? 256;
  const counts: number[] = [0];
  const picks: Int32Array[] = [];
  const sample = new Float32Array(intensitySamples);
  let seen = 0;
  let min = Infinity, max = -Infinity;
  const img = image.data, lab = label.data;
  for (let i = 0; i < n; i++) {
    const v = lab[i];
    if (v === 0) {
      counts[0]++;
      continue;
    }
    if (!Number.isInteger(v) || v < 0 || v >= limit) {
      throw new RangeError(badLabel(v, i, image.shape, classes));
    }
    while (counts.length <= v) counts.push(0);
    const k = counts[v]++;
    const pick = picks[v] ??= new Int32Array(maxPerClass);
    if (k < maxPerClass) pick[k] = i;
    else {
      const j = rng.int(0, k + 1);
      if (j < maxPerClass) pick[j] = i;
    }
    const x = img[i];
    if (x < min) min = x;
    if (x > max) max = x;
    if (seen < intensitySamples) sample[seen] = x;
    else {
      const j = rng.int(0, seen + 1);
      if (j < intensitySamples) sample[j] = x;
    }
    seen++;
  }
  const numClasses = typeof classes === "undefined" ? counts.length : limit;
  while (counts.length < numClasses) counts.push(0);
  const [, H, W] = image.shape;
  const foreground = counts.map((c, v) => {
    if (v === 0 || c === 0) return [];
    const flat = Array.from(picks[v].subarray(0, Math.min(c, maxPerClass))).sort((a, b) => a - b);
    const out = new Array<number>(flat.length * 3);
    flat.forEach((f, j) => {
      out[3 * j] = Math.floor(f / (H * W));
      out[3 * j + 1] = Math.floor(f / W) % H;
      out[3 * j + 2] = f % W;
    });
    return out;
  });
  return {
    shape: [...image.shape],
    spacingMm: [...image.spacingMm],
    voxelsPerClass: counts,
    foreground,
    intensities: sample.slice(0, Math.min(seen, intensitySamples)),
    min,
    max,
    image: imageStats(img),
  };
}

function badLabel(v: number, i: number, shape: Shape3, classes: string[] | number | undefined) {
  const x = i % shape[2], y = Math.floor(i / shape[2]) % shape[1];
  const z = Math.floor(i / (shape[1] * shape[2]));
  const where = `at voxel (z=${z}, y=${y}, x=${x})`;
  if (!Number.isInteger(v) || v < 0) return `label value ${v} ${where} is not a class index`;
  const names = Array.isArray(classes) ? ` (${classes.join(", ")})` : "";
  const count = typeof classes === "number" ? classes : classes?.length ?? 256;
  return `label value ${v} ${where}, but the dataset has ${count} classes${names}`;
}

// ---------------------------------------------------------------------------------------------
// Building a manifest

export interface ManifestCase {
  id: string;
  path: string;
  split: Split;
  /**
   * From {@link caseStats}; for an unlabelled case, give shape and spacing (and the image's
   * statistics, when known). `imageChannels`: each channel's, on a multi-channel case.
   */
  stats: (CaseStats | { shape: Shape3; spacingMm: Shape3; image?: ImageStats }) & {
    imageChannels?: ImageStats[];
  };
}

/**
 * Assembles a manifest from per-case statistics: pooled foreground intensity statistics,
 * median target spacing, per-class arrays padded to the class count.
 */
export function buildManifest(input: {
  name: string;
  modality: string;
  classes: string[];
  cases: ManifestCase[];
  source?: Record<string, unknown>;
}): DatasetManifest {
  const { classes } = input;
  const samples: Float32Array[] = [];
  let min = Infinity, max = -Infinity;
  const cases = input.cases.map(({ id, path, split, stats }): CaseEntry => {
    const labelled = "voxelsPerClass" in stats;
    if (labelled) {
      if (stats.voxelsPerClass.length > classes.length) {
        throw new RangeError(
          `case ${id} has label values up to ${stats.voxelsPerClass.length - 1}, ` +
            `but the dataset has ${classes.length} classes (${classes.join(", ")})`,
        );
      }
      samples.push(stats.intensities);
      min = Math.min(min, stats.min);
      max = Math.max(max, stats.max);
    }
    const pad = <T>(a: T[], fill: () => T) =>
      a.concat(Array.from({ length: classes.length - a.length }, fill));
    return {
      id,
      path,
      split,
      shape: [...stats.shape],
      spacingMm: [...stats.spacingMm],
      hasLabel: labelled,
      voxelsPerClass: labelled ? pad(stats.voxelsPerClass, () => 0) : [],
      foreground: labelled ? pad(stats.foreground, () => []) : [],
      ...(stats.image ? { image: { ...stats.image } } : {}),
      ...(stats.imageChannels ? { imageChannels: stats.imageChannels.map((s) => ({ ...s })) } : {}),
    };
  });
  const median = (axis: number) => medianOf(cases.map((c) => c.spacingMm[axis]));
  return {
    format: FORMAT,
    version: 1,
    name: input.name,
    modality: input.modality,
    classes: [...classes],
    targetSpacingMm: cases.length ? [median(0), median(1), median(2)] : [1, 1, 1],
    intensity: intensityStats(samples, min, max),
    ...(input.source ? { source: input.source } : {}),
    cases,
  };
}

/** Mean, std, 0.5/99.5 percentiles of pooled samples; min/max as given (exact). */
export function intensityStats(
  samples: Float32Array[],
  min: number,
  max: number,
): IntensityStats | null {
  const total = samples.reduce((s, a) => s + a.length, 0);
  if (total === 0) return null;
  const all = new Float64Array(total);
  let o = 0;
  for (const s of samples) {
    all.set(s, o);
    o += s.length;
  }
  all.sort();
  let sum = 0;
  for (const v of all) sum += v;
  const mean = sum / total;
  let sq = 0;
  for (const v of all) sq += (v - mean) ** 2;
  return {
    mean,
    std: Math.sqrt(sq / total),
    p0_5: percentileSorted(all, 0.5),
    p99_5: percentileSorted(all, 99.5),
    min,
    max,
  };
}

/** Percentile `p` (0..100) of sorted values, linear interpolation (numpy's default). */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function medianOf(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Splits

/**
 * A reproducible split: case ids sorted, shuffled with `seed`, the first `round(n·test)` go
 * to test, the next `round(n·val)` to val, the rest to train (at least one stays in train).
 */
export function defaultSplit(
  caseIds: string[],
  { val = 0.2, test = 0.1, seed = 0 }: { val?: number; test?: number; seed?: number } = {},
): Record<string, Split> {
  if (!(val >= 0 && test >= 0 && val + test < 1)) {
    throw new RangeError(
      `split fractions must be ≥ 0 with val + test < 1, got val ${val}, test ${test}`,
    );
  }
  const ids = [...new Set(caseIds)].sort();
  if (ids.length !== caseIds.length) throw new RangeError("case ids must be unique");
  const rng = new Random(seed);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  const n = ids.length;
  let nTest = Math.round(n * test), nVal = Math.round(n * val);
  while (n > 0 && n - nTest - nVal < 1) {
    if (nVal > 0) nVal--;
    else nTest--;
  }
  const split: Record<string, Split> = {};
  ids.forEach((id, i) => (split[id] = i < nTest ? "test" : i < nTest + nVal ? "val" : "train"));
  return split;
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

/** Why a folder may not be replaced by a new dataset; see {@link datasetTargetProblem}. */
export type DatasetTargetProblem = "holds-source" | "not-a-folder" | "other-files";

/**
 * Whether `out` may be replaced as a whole by a dataset written from `source` (a local folder,
 * or a URL): it must not hold the source, and must be missing, an empty folder, or a voxseg
 * dataset. Returns the problem, or undefined when it may.
 */
export async function datasetTargetProblem(
  out: string,
  source: string,
): Promise<DatasetTargetProblem | undefined> {
  if (!/^https?:\/\//i.test(source)) {
    const rel = relative(resolve(out), resolve(source));
    if (rel === "" || (!rel.startsWith("..") && !isAbsolute(rel))) return "holds-source";
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  if (!info.isDirectory) return "not-a-folder";
  const manifest = await Deno.readTextFile(join(out, DATASET_FILE))
    .then((text) => JSON.parse(text) as { format?: unknown })
    .catch(() => undefined);
  if (manifest?.format === FORMAT) return undefined;
  for await (const _ of Deno.readDir(out)) return "other-files";
  return undefined;
}

/**
 * Validates a manifest and writes `dir/dataset.json` atomically. Cases go one per line so the
 * file stays readable despite the coordinate lists.
 */
export async function writeDataset(dir: string, manifest: DatasetManifest): Promise<void> {
  const { root: _root, ...clean } = manifest as Partial<Dataset> & DatasetManifest;
  validateManifest(clean, join(dir, DATASET_FILE));
  const { cases, ...head } = clean;
  const headText = JSON.stringify(head, null, 2).replace(/\n}$/, "");
  const caseLines = cases.map((c) => "    " + JSON.stringify(c)).join(",\n");
  const text = `${headText},\n  "cases": [${cases.length ? `\n${caseLines}\n  ` : ""}]\n}\n`;
  await writeFileAtomic(join(dir, DATASET_FILE), text);
}

export interface ReadDatasetOptions {
  /**
   * A folder (symbolic links resolved) that the dataset and every case must stay inside: the
   * manifest must be local and each case path relative, without a URL, an absolute path, a
   * `..` leaving the folder, or a symbolic link resolving outside it. A server sets it to its
   * data root; the CLI reads any dataset its user names.
   */
  confineTo?: string;
}

/**
 * Reads and validates a dataset manifest from a folder, a `dataset.json` path, or an http(s)
 * URL of either.
 *
 * @example
 * const dataset = await readDataset(join(root, "lungs"), { confineTo: root });
 */
export async function readDataset(
  location: string,
  { confineTo }: ReadDatasetOptions = {},
): Promise<Dataset> {
  const isUrl = /^https?:\/\//i.test(location);
  if (isUrl && confineTo !== undefined) {
    throw new Error("the dataset must be a folder inside the data root, not a URL");
  }
  let file: string, root: string, text: string;
  if (isUrl) {
    const url = new URL(location);
    if (!url.pathname.endsWith(".json")) {
      if (!url.pathname.endsWith("/")) url.pathname += "/";
      url.pathname += DATASET_FILE;
    }
    file = url.href;
    root = new URL(".", url).href;
    const response = await fetch(url).catch((e) => {
      // fetch's TypeError says "fetch failed"; the network reason is in its cause.
      const { message, cause } = e as Error;
      const reason = cause instanceof Error ? ` (${cause.message})` : "";
      throw new Error(`cannot fetch ${file}: ${message}${reason}`);
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`cannot fetch ${file}: HTTP ${response.status} ${response.statusText}`);
    }
    text = await response.text();
  } else {
    const isDir = await Deno.stat(location).then((s) => s.isDirectory, () => false);
    file = resolve(isDir ? join(location, DATASET_FILE) : location);
    root = resolve(file, "..");
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Error(
        `no ${DATASET_FILE} at ${file} — create a dataset with \`voxseg convert --raw\` or ` +
          "`voxseg synth`",
      );
    }
  }
  const json = parseJson(
    text,
    (where) =>
      new Error(
        `${file} is not valid JSON${where}; it must hold a dataset manifest ` +
          "(`voxseg convert --raw` or `voxseg synth` write one)",
      ),
  );
  validateManifest(json, file);
  if (confineTo !== undefined) await checkConfined(json, root, confineTo, file);
  return { ...json, root };
}

/** Throws unless every case of the manifest lies inside `folder` (see `confineTo`). */
async function checkConfined(
  manifest: DatasetManifest,
  root: string,
  folder: string,
  file: string,
): Promise<void> {
  const inside = (path: string) => {
    const rel = relative(folder, path);
    return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
  };
  if (!inside(root)) throw new Error(`${file}: the dataset is outside the data root`);
  for (const [i, c] of manifest.cases.entries()) {
    const fail = (why: string): never => {
      throw new Error(
        `${file}: cases[${i}].path ${why}; case paths must be relative to the ` +
          "dataset folder and stay inside the data root",
      );
    };
    if (/^[a-z][a-z0-9+.-]*:/i.test(c.path)) fail("is a URL");
    if (isAbsolute(c.path) || /^[\\/]/.test(c.path)) fail("is an absolute path");
    const lexical = resolve(root, c.path);
    if (!inside(lexical)) fail("leaves the data root");
    let real: string | undefined;
    try {
      real = await Deno.realPath(lexical);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // a missing case fails when opened
    }
    if (real !== undefined && !inside(real)) {
      fail("resolves (through a symbolic link) outside the data root");
    }
  }
}

/**
 * The location of case `id`: its path resolved against the dataset root (a local path or a
 * URL), suitable for `openCase`.
 */
export function resolveCase(dataset: Dataset, id: string): string {
  const entry = dataset.cases.find((c) => c.id === id);
  if (!entry) {
    const ids = dataset.cases.slice(0, 5).map((c) => c.id).join(", ");
    const more = dataset.cases.length > 5 ? ", …" : "";
    throw new Error(
      `no case "${id}" in dataset "${dataset.name}" (${dataset.cases.length} cases: ${ids}${more})`,
    );
  }
  if (/^https?:\/\//i.test(entry.path) || isAbsolute(entry.path)) return entry.path;
  if (/^https?:\/\//i.test(dataset.root)) {
    return new URL(entry.path, dataset.root.endsWith("/") ? dataset.root : dataset.root + "/")
      .href;
  }
  return join(dataset.root, entry.path);
}

/** Throws with the offending field's path when `value` is not a valid manifest. */
export function validateManifest(
  value: unknown,
  where = DATASET_FILE,
): asserts value is DatasetManifest {
  const fail = (path: string, msg: string): never => {
    throw new Error(`${where}: ${path} ${msg}`);
  };
  const obj = (v: unknown, path: string) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "must be an object");
    return v as Record<string, unknown>;
  };
  const str = (v: unknown, path: string) => {
    if (typeof v !== "string" || v === "") fail(path, `must be a non-empty string, got ${show(v)}`);
  };
  const num = (v: unknown, path: string) => {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      fail(path, `must be a number, got ${show(v)}`);
    }
  };
  const triple = (v: unknown, path: string, positiveInt = false) => {
    if (!Array.isArray(v) || v.length !== 3) fail(path, `must be 3 numbers, got ${show(v)}`);
    (v as unknown[]).forEach((x, i) => {
      num(x, `${path}[${i}]`);
      if (!((x as number) > 0)) fail(`${path}[${i}]`, `must be > 0, got ${x}`);
      if (positiveInt && !Number.isInteger(x)) fail(`${path}[${i}]`, `must be an integer`);
    });
  };
  const m = obj(value, "the manifest");
  if (m.format !== FORMAT) fail("format", `must be "${FORMAT}", got ${show(m.format)}`);
  if (m.version !== 1) {
    fail("version", `must be 1 (this voxseg reads version 1), got ${show(m.version)}`);
  }
  str(m.name, "name");
  str(m.modality, "modality");
  if (!Array.isArray(m.classes) || m.classes.length < 2) {
    fail("classes", `must list at least 2 class names (background first), got ${show(m.classes)}`);
  }
  const classes = m.classes as unknown[];
  classes.forEach((c, i) => str(c, `classes[${i}]`));
  if (m.source !== undefined) obj(m.source, "source");
  if (m.classCodes !== undefined) {
    try {
      parseClassCodes(m.classCodes, classes as string[]);
    } catch (e) {
      fail("classCodes", (e as Error).message.replace(/^classCodes /, ""));
    }
  }
  if (classes.length > 256) {
    fail("classes", `has ${classes.length} entries (uint8 labels: at most 256)`);
  }
  triple(m.targetSpacingMm, "targetSpacingMm");
  const intensity = (v: unknown, path: string) => {
    const s = obj(v, path);
    for (const k of ["mean", "std", "p0_5", "p99_5", "min", "max"]) num(s[k], `${path}.${k}`);
  };
  if (m.intensity !== null) intensity(m.intensity, "intensity");
  const perChannel = channelFields(m.channels, fail, str);
  perChannel(m.intensityChannels, "intensityChannels", (x, p) => x !== null && intensity(x, p));
  const wholeImage = (v: unknown, path: string) => {
    const s = obj(v, path);
    for (const k of ["mean", "std", "min", "max"]) num(s[k], `${path}.${k}`);
  };
  if (!Array.isArray(m.cases)) fail("cases", "must be an array");
  const ids = new Set<string>();
  (m.cases as unknown[]).forEach((raw, i) => {
    const c = obj(raw, `cases[${i}]`);
    const at = `cases[${i}]${typeof c.id === "string" ? ` ("${c.id}")` : ""}`;
    str(c.id, `${at}.id`);
    if (ids.has(c.id as string)) fail(`${at}.id`, "is a duplicate");
    ids.add(c.id as string);
    str(c.path, `${at}.path`);
    if (!SPLITS.includes(c.split as Split)) {
      fail(`${at}.split`, `must be one of ${SPLITS.join(", ")}, got ${show(c.split)}`);
    }
    triple(c.shape, `${at}.shape`, true);
    triple(c.spacingMm, `${at}.spacingMm`);
    if (typeof c.hasLabel !== "boolean") fail(`${at}.hasLabel`, "must be true or false");
    const perClass = c.hasLabel ? classes.length : 0;
    for (const key of ["voxelsPerClass", "foreground"]) {
      const a = c[key];
      if (!Array.isArray(a) || a.length !== perClass) {
        fail(`${at}.${key}`, `must have ${perClass} entries (one per class), got ${show(a)}`);
      }
    }
    (c.voxelsPerClass as unknown[]).forEach((v, k) => num(v, `${at}.voxelsPerClass[${k}]`));
    if (c.image !== undefined) wholeImage(c.image, `${at}.image`);
    perChannel(c.imageChannels, `${at}.imageChannels`, wholeImage);
    const shape = c.shape as number[];
    (c.foreground as unknown[]).forEach((f, k) => {
      const path = `${at}.foreground[${k}]`;
      if (!Array.isArray(f) || f.length % 3 !== 0) {
        fail(path, "must be a flat list of z,y,x triples");
      }
      for (let j = 0; j < (f as unknown[]).length; j++) {
        const v = (f as unknown[])[j];
        if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= shape[j % 3]) {
          fail(
            `${path}[${j}]`,
            `must be a voxel coordinate inside shape [${shape}], got ${show(v)}`,
          );
        }
      }
    });
  });
}

/**
 * Checks a manifest's `channels` (absent, or at least 2 names) and returns a checker for the
 * per-channel fields: absent, or one entry per channel (only when there are channels).
 */
function channelFields(
  names: unknown,
  fail: (path: string, msg: string) => never,
  str: (v: unknown, path: string) => void,
) {
  if (names !== undefined) {
    if (!Array.isArray(names) || names.length < 2) {
      fail("channels", `must list at least 2 channel names (absent: one), got ${show(names)}`);
    }
    (names as unknown[]).forEach((c, i) => str(c, `channels[${i}]`));
  }
  const channels = names === undefined ? 1 : (names as unknown[]).length;
  return (v: unknown, path: string, check: (x: unknown, p: string) => void) => {
    if (v === undefined) return;
    if (channels === 1) fail(path, "is only for a dataset of several channels (`channels`)");
    if (!Array.isArray(v) || v.length !== channels) {
      fail(path, `must have ${channels} entries (one per channel), got ${show(v)}`);
    }
    (v as unknown[]).forEach((x, i) => check(x, `${path}[${i}]`));
  };
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "…" : s;
}
