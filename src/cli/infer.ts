/**
 * `voxseg infer`: segments a NIfTI file, an OME-Zarr case or a DICOM series (infer_dicom.ts)
 * with a checkpoint (or an ensemble of checkpoints, `--model a,b,c`) and writes the label map —
 * NIfTI with the input's exact geometry, a `labels/pred` label image inside the case, or a DICOM
 * Segmentation — plus a JSON summary of per-class voxels and millilitres. A multi-channel model
 * takes one NIfTI per channel (`--in a_0000.nii.gz,a_0001.nii.gz`), a 4D NIfTI whose 4th
 * dimension is the channel, or a multi-channel case.
 */

import { isPrecision, PRECISIONS } from "../ops/precision.ts";
import { writeFileAtomic } from "../base/atomic.ts";
import { type NiftiVolume, writeNifti } from "../data/nifti.ts";
import { checkChannelGrids, decodeNiftiChannels } from "../data/channels.ts";
import type { NiftiGeometry } from "../data/nifti_geometry.ts";
import { openCase } from "../data/ome_zarr/reader.ts";
import type { Volume } from "../data/volume.ts";
import type { Postprocessing } from "../infer/postprocess.ts";
import {
  DEFAULT_MEMORY_BUDGET,
  type LoadedModel,
  loadModels,
  predictCase,
  type PredictionSummary,
  type PredictOptions,
  predictVolume,
} from "../infer/predict.ts";
import { SPACING_TOLERANCE } from "../infer/resample.ts";
import { numberFlag, parseNamedFlags } from "./args.ts";
import { UsageError } from "./usage_error.ts";
import { Progress } from "./progress.ts";
import {
  isDicomLocation,
  isDicomOutName,
  predictSeries,
  type PulledStudy,
  pullStudy,
  readSeriesInput,
} from "./infer_dicom.ts";

const HELP = `voxseg infer --model M.safetensors[,M2.safetensors,…] --in X [--out Y] [flags]
       voxseg infer --model M --dicomweb URL --study UID [--series UID] [--out Y] [--no-store]

Segments X with the checkpoint M: a sliding window of the training patch size with Gaussian
blending, intensities normalised as in training, and resampling to the training spacing (and
back) when X's spacing differs from it by more than --spacing-tolerance. Several checkpoints
separated by commas (the folds of a cross-validation) are an ensemble: their softmax
probabilities are averaged before the arg-max; they must share classes, normalisation, input
channels, spacing and patch size. A checkpoint with post-processing (keep the largest
connected component, chosen on cross-validation) has it applied to the label map.

  X  a NIfTI file (.nii, .nii.gz; a path or an http(s) URL) or an OME-Zarr case (a folder or
     URL written by \`voxseg convert\`). A model of several input channels takes one NIfTI
     per channel separated by commas, in channel order (a_0000.nii.gz,a_0001.nii.gz), or one
     4D NIfTI whose 4th dimension is the channel, or a multi-channel case; the labels lie on
     the grid of channel 0.
     Or a DICOM series: a folder of DICOM files (any names, any order), a .zip, or DICOM
     files separated by commas; --series UID picks one when there are several.
  Y  a .nii or .nii.gz label map with X's exact geometry (shape, affine, qform/sform); or, for
     a case, a folder for the label image. With a local case and no --out (or --out-group),
     the labels go into the case as labels/pred (--label-name to change). For a DICOM series
     also a .dcm: a DICOM Segmentation (one segment per class, coded) referencing the series.

DICOMweb: --dicomweb URL --study UID pulls the series (--series UID, else the CT series with
the most slices, skipping localizers and derived images, and says which), segments it and
stores the Segmentation back to the same server (STOW-RS; --no-store to skip). Credentials
come from VOXSEG_DICOMWEB_TOKEN (bearer) or VOXSEG_DICOMWEB_USER and VOXSEG_DICOMWEB_PASSWORD.

flags:
  --overlap F            fraction of a window neighbours share, 0 ≤ F < 1 (default 0.5)
  --tta                  test-time flips along z, y and x, averaged (8 passes per window)
  --tta-axes A,B         flip only these axes (z, y, x or 0, 1, 2); implies --tta
  --precision P          f32 (default) or f16: convolution inputs and weights in binary16,
                         sums in f32 (mixed precision; labels agree with f32 on >99.9 %)
  --batch-size N         windows per GPU batch (default 2; 1 on a software adapter)
  --memory-budget MIB    host memory for prediction besides input and output (default ${
  DEFAULT_MEMORY_BUDGET / 2 ** 20
})
  --spacing-tolerance F  relative spacing difference run without resampling (default ${SPACING_TOLERANCE})
  --no-postprocess       skip the checkpoint's post-processing (largest connected component)
  --label-name NAME      label image name inside a case (default pred)
  --out-group            write the label image into the case (the default for a local case)
  --summary FILE         write the JSON summary to FILE
  --json                 machine-readable progress lines; the last one holds the summary`;

/** Flags shared by \`infer\` and \`eval\`: how to run the sliding window. */
export const PREDICT_FLAGS = {
  overlap: { type: "string" },
  tta: { type: "boolean" },
  "tta-axes": { type: "string" },
  "batch-size": { type: "string" },
  precision: { type: "string" },
  "memory-budget": { type: "string" },
  "spacing-tolerance": { type: "string" },
} as const;

/** PredictOptions from {@link PREDICT_FLAGS} values. */
export function predictOptionsFromFlags(
  v: Record<string, string | boolean | string[] | undefined>,
): PredictOptions {
  let tta: PredictOptions["tta"] = Boolean(v.tta);
  if (typeof v["tta-axes"] === "string") {
    const names: Record<string, number> = { z: 0, y: 1, x: 2, "0": 0, "1": 1, "2": 2 };
    tta = v["tta-axes"].split(",").map((a) => {
      const axis = names[a.trim().toLowerCase()];
      if (axis === undefined) {
        throw new UsageError(
          `--tta-axes takes z, y, x (or 0, 1, 2) separated by commas, got "${a}"`,
        );
      }
      return axis;
    });
  }
  const precision = v.precision ?? "f32";
  if (!isPrecision(precision)) {
    throw new UsageError(`--precision takes ${PRECISIONS.join(" or ")}, got "${precision}"`);
  }
  return {
    overlap: numberFlag(v.overlap, "overlap", 0.5, { min: 0, max: 0.99 }),
    tta,
    precision,
    batchSize: v["batch-size"] === undefined
      ? undefined
      : numberFlag(v["batch-size"], "batch-size", 2, { min: 1, max: 64, integer: true }),
    memoryBudgetBytes:
      numberFlag(v["memory-budget"], "memory-budget", DEFAULT_MEMORY_BUDGET / 2 ** 20, {
        min: 1,
      }) * 2 ** 20,
    spacingTolerance: numberFlag(v["spacing-tolerance"], "spacing-tolerance", SPACING_TOLERANCE, {
      min: 0,
    }),
  };
}

const FLAGS = {
  model: { type: "string" },
  in: { type: "string" },
  series: { type: "string" },
  dicomweb: { type: "string" },
  study: { type: "string" },
  "no-store": { type: "boolean" },
  out: { type: "string" },
  "out-group": { type: "boolean" },
  "label-name": { type: "string" },
  summary: { type: "string" },
  json: { type: "boolean" },
  "no-postprocess": { type: "boolean" },
  ...PREDICT_FLAGS,
} as const;

const isUrl = (s: string) => /^https?:\/\//i.test(s);
const isNiftiName = (s: string) => /\.nii(\.gz)?$/i.test(isUrl(s) ? new URL(s).pathname : s);

/**
 * What X is: NIfTI (read: `volume` is channel 0, `channels` every channel, in order), or an
 * OME-Zarr case (left to be streamed).
 */
type Input =
  | { kind: "nifti"; volume: NiftiVolume; channels: NiftiVolume[] }
  | { kind: "case"; location: string };

/**
 * Reads X when it is NIfTI — one file, 3D or 4D (channels), or several separated by commas
 * (one channel each, on one grid); recognises an OME-Zarr case; explains anything else.
 */
export async function readInput(location: string): Promise<Input> {
  const parts = location.split(",").map((p) => p.trim());
  if (parts.length === 1) return await readOneInput(location);
  if (parts.some((p) => p === "")) {
    throw new UsageError(`--in takes files separated by commas, got "${location}" (an empty name)`);
  }
  const channels: NiftiVolume[] = [];
  for (const part of parts) {
    const input = await readOneInput(part);
    if (input.kind !== "nifti") {
      throw new UsageError(
        `--in ${part}: a list of channels must be NIfTI files (a case holds its own channels)`,
      );
    }
    if (input.channels.length > 1) {
      throw new UsageError(`--in ${part}: a list of channels takes 3D files, one per channel`);
    }
    channels.push(input.volume);
  }
  checkChannelGrids(channels, parts);
  return { kind: "nifti", volume: channels[0], channels };
}

async function readOneInput(location: string): Promise<Input> {
  if (isUrl(location)) {
    if (!isNiftiName(location)) return { kind: "case", location };
    const response = await fetch(location).catch((e) => {
      throw new Error(`cannot fetch ${location}: ${(e as Error).message}`);
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`cannot fetch ${location}: HTTP ${response.status} ${response.statusText}`);
    }
    return niftiInput(await decodeInput(location, await response.bytes()));
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(location);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`input not found: ${location}`);
    throw e;
  }
  if (info.isDirectory) return { kind: "case", location };
  if (/(^|\/)zarr\.json$/.test(location)) {
    return { kind: "case", location: location.replace(/\/?zarr\.json$/, "") || "." };
  }
  return niftiInput(await decodeInput(location, await Deno.readFile(location)));
}

function niftiInput(channels: NiftiVolume[]): Input {
  return { kind: "nifti", volume: channels[0], channels };
}

/** The channels of a NIfTI file: one for a 3D file, C for a 4D one. */
async function decodeInput(location: string, bytes: Uint8Array): Promise<NiftiVolume[]> {
  try {
    return await decodeNiftiChannels(bytes);
  } catch (e) {
    throw new Error(
      `${location} is neither a NIfTI file (.nii, .nii.gz) nor an OME-Zarr case (a folder ` +
        `with zarr.json): ${(e as Error).message}`,
    );
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["model"]);
  const out = typeof v.out === "string" ? v.out : undefined;
  if (out && v["out-group"]) throw new UsageError("give either --out or --out-group, not both");
  if (!v.in === !v.dicomweb) {
    throw new UsageError(`give --in X, or --dicomweb URL with --study UID\n\n${HELP}`);
  }
  const options: PredictOptions = {
    ...predictOptionsFromFlags(v),
    postprocess: !v["no-postprocess"],
  };
  const json = Boolean(v.json);
  const progress = new Progress({ json });
  if (v.dicomweb || await isDicomLocation(String(v.in))) {
    return await dicomMain(v, out, options, progress);
  }
  if (out && isDicomOutName(out)) {
    throw new UsageError(
      "--out .dcm writes a DICOM Segmentation, which references its source series: give a " +
        "DICOM series as --in (a folder, a .zip or DICOM files), or --out a .nii.gz",
    );
  }

  const input = await readInput(String(v.in));
  if (input.kind === "nifti" && (!out || !isNiftiName(out))) {
    throw new UsageError(
      out
        ? `--out must end in .nii or .nii.gz for a NIfTI input, got "${out}"`
        : `--out (a .nii or .nii.gz file) is required for a NIfTI input\n\n${HELP}`,
    );
  }
  if (input.kind === "case" && isUrl(input.location) && (!out || v["out-group"])) {
    throw new UsageError(
      `${input.location} is remote and cannot be written to: give --out (a .nii.gz file, or a ` +
        "local folder for the label image)",
    );
  }
  const loaded = await loadModels(modelPaths(String(v.model)), options.postprocess);
  const controller = new AbortController();
  const onSignal = () => {
    progress.log("stopping after the current batch…");
    controller.abort(new Error("interrupted"));
    Deno.removeSignalListener("SIGINT", onSignal);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const m = loaded[0].meta;
    const names = loaded.map((l) => l.name).join(", ");
    progress.log(
      `${loaded.length > 1 ? `ensemble of ${loaded.length} models (${names})` : `model ${names}`}` +
        `: ${m.classNames.join(", ")}; patch ${m.patchSize.join("×")}, ` +
        `trained at ${m.spacingMm.map((s) => +s.toFixed(3)).join("×")} mm`,
    );
    const opts: PredictOptions = {
      ...options,
      signal: controller.signal,
      onProgress: (done, total) => progress.update({ phase: "infer", step: done, total }),
    };
    const { summary, written } = await predict(
      loaded,
      input,
      out,
      String(v["label-name"] ?? "pred"),
      opts,
    );
    if (summary.network) {
      progress.log(
        `resampled ${summary.shape.join("×")} at ${mm(summary.spacingMm)} mm to ` +
          `${summary.network.shape.join("×")} at ${mm(summary.network.spacingMm)} mm and back`,
      );
    }
    logPostprocessing(progress, summary, m.classNames, m.postprocessing);
    const report = { model: String(v.model), input: String(v.in), output: written, ...summary };
    if (typeof v.summary === "string") {
      await writeFileAtomic(v.summary, JSON.stringify(report, null, 2) + "\n");
    }
    if (json) {
      progress.done(report);
    } else {
      progress.done({ windows: summary.windows ?? 0, output: written });
      console.log(summaryTable(summary));
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    for (const l of loaded) l.dispose();
  }
}

type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** `infer` on a DICOM series: from files or a DICOMweb server, to a SEG, NIfTI or the server. */
async function dicomMain(
  v: FlagValues,
  out: string | undefined,
  options: PredictOptions,
  progress: Progress,
): Promise<number> {
  if (v["out-group"]) throw new UsageError("--out-group is for OME-Zarr cases, not DICOM series");
  if (out && !isDicomOutName(out) && !isNiftiName(out)) {
    throw new UsageError(`--out for a DICOM series is a .dcm, .nii or .nii.gz file, got "${out}"`);
  }
  const series = typeof v.series === "string" ? v.series : undefined;
  const log = (line: string) => progress.log(line);
  let pulled: PulledStudy | undefined;
  if (typeof v.dicomweb === "string") {
    if (typeof v.study !== "string") throw new UsageError("--dicomweb needs --study UID");
    pulled = await pullStudy(v.dicomweb, v.study, series, log);
  } else if (!out) {
    throw new UsageError("--out (a .dcm Segmentation or a .nii.gz label map) is required");
  } else if (v.study) {
    throw new UsageError("--study goes with --dicomweb");
  }
  const source = pulled?.series ?? await readSeriesInput(String(v.in), series);
  progress.log(
    `series: ${source.modality} ${source.volume.shape.join("×")} at ` +
      `${mm(source.volume.spacingMm)} mm`,
  );
  const loaded = await loadModels(modelPaths(String(v.model)), options.postprocess);
  try {
    const store = pulled && !v["no-store"] ? pulled.client : undefined;
    const result = await predictSeries(loaded, source, out, {
      ...options,
      onProgress: (done, total) => progress.update({ phase: "infer", step: done, total }),
    }, store);
    if (result.stored) progress.log(`stored the Segmentation ${result.stored} on the server`);
    const report = {
      model: String(v.model),
      output: result.written ?? null,
      ...(result.stored ? { stored: result.stored } : {}),
      ...(pulled?.choice ? { choice: pulled.choice } : {}),
      ...result.summary,
    };
    if (typeof v.summary === "string") {
      await writeFileAtomic(v.summary, JSON.stringify(report, null, 2) + "\n");
    }
    if (v.json) progress.done(report);
    else {
      progress.done({ windows: result.summary.windows ?? 0, output: result.written ?? "" });
      console.log(summaryTable(result.summary));
    }
    return 0;
  } finally {
    for (const l of loaded) l.dispose();
  }
}

/** The checkpoint paths of `--model`: one, or several separated by commas (an ensemble). */
export function modelPaths(flag: string): string[] {
  const paths = flag.split(",").map((p) => p.trim());
  if (paths.some((p) => p === "")) {
    throw new UsageError(
      `--model takes a checkpoint or checkpoints separated by commas, got "${flag}" (an empty name)`,
    );
  }
  return paths;
}

/** Says what post-processing did, when the models have it and it was on. */
function logPostprocessing(
  progress: Progress,
  summary: PredictionSummary,
  classNames: string[],
  pp: Postprocessing | undefined,
): void {
  const report = summary.postprocessing;
  if (!report || !pp) return;
  if (!report.applied) {
    progress.log(`post-processing skipped: ${report.skipped}`);
    return;
  }
  const steps = [
    ...(pp.foregroundLcc ? ["the foreground"] : []),
    ...pp.perClassLcc.map((c) => classNames[c]),
  ];
  progress.log(
    `post-processing: kept the largest ${pp.connectivity}-connected component of ` +
      `${steps.join(", ") || "nothing"}; ${report.removedVoxels} voxels became background`,
  );
}

async function predict(
  loaded: LoadedModel[],
  input: Input,
  out: string | undefined,
  labelName: string,
  opts: PredictOptions,
): Promise<{ summary: PredictionSummary; written: string }> {
  if (input.kind === "nifti") {
    const channels = input.channels.length === 1 ? input.volume : input.channels;
    const { labels, summary } = await predictVolume(loaded, channels, opts);
    await writeNifti(out!, labels, { like: input.volume.header, description: "voxseg labels" });
    return { summary, written: out! };
  }
  if (out && isNiftiName(out)) {
    const reader = await openCase(input.location, { cacheBytes: 0 });
    const channels: Volume[] = await reader.readFullChannels();
    const { labels, summary } = await predictVolume(loaded, channels, opts);
    const like: NiftiGeometry | undefined = reader.nifti;
    await writeNifti(out, labels, { like, description: "voxseg labels" });
    return { summary, written: out };
  }
  const { labelsPath, summary } = await predictCase(loaded, input.location, {
    ...opts,
    labelName,
    out,
  });
  return { summary, written: labelsPath };
}

function mm(spacing: number[]): string {
  return spacing.map((s) => +s.toFixed(3)).join("×");
}

/** Per-class voxels and mL as aligned text. */
export function summaryTable(summary: PredictionSummary): string {
  const width = Math.max(5, ...summary.classes.map((c) => c.name.length));
  const rows = summary.classes.map((c) =>
    `${c.name.padEnd(width)}  ${String(c.voxels).padStart(12)}  ${
      c.volumeMl.toFixed(1).padStart(10)
    }`
  );
  return [`${"class".padEnd(width)}  ${"voxels".padStart(12)}  ${"mL".padStart(10)}`, ...rows].join(
    "\n",
  );
}
