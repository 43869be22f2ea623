/**
 * `voxseg infer`: segments a NIfTI file or an OME-Zarr case with a checkpoint and writes the
 * label map — NIfTI with the input's exact geometry, or a `labels/pred` label image inside the
 * case — plus a JSON summary of per-class voxels and millilitres.
 */

import { isPrecision, PRECISIONS } from "../ops/precision.ts";
import { writeFileAtomic } from "../base/atomic.ts";
import { decodeNifti, type NiftiVolume, writeNifti } from "../data/nifti.ts";
import type { NiftiGeometry } from "../data/nifti_geometry.ts";
import { openCase } from "../data/ome_zarr/reader.ts";
import type { Volume } from "../data/volume.ts";
import {
  DEFAULT_MEMORY_BUDGET,
  type LoadedModel,
  loadModel,
  predictCase,
  type PredictionSummary,
  type PredictOptions,
  predictVolume,
} from "../infer/predict.ts";
import { SPACING_TOLERANCE } from "../infer/resample.ts";
import { numberFlag, parseNamedFlags } from "./args.ts";
import { UsageError } from "./usage_error.ts";
import { Progress } from "./progress.ts";

const HELP = `voxseg infer --model M.safetensors --in X [--out Y] [flags]

Segments X with the checkpoint M: a sliding window of the training patch size with Gaussian
blending, intensities normalised as in training, and resampling to the training spacing (and
back) when X's spacing differs from it by more than --spacing-tolerance.

  X  a NIfTI file (.nii, .nii.gz; a path or an http(s) URL) or an OME-Zarr case (a folder or
     URL written by \`voxseg convert\`)
  Y  a .nii or .nii.gz label map with X's exact geometry (shape, affine, qform/sform); or, for
     a case, a folder for the label image. With a local case and no --out (or --out-group),
     the labels go into the case as labels/pred (--label-name to change).

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
  out: { type: "string" },
  "out-group": { type: "boolean" },
  "label-name": { type: "string" },
  summary: { type: "string" },
  json: { type: "boolean" },
  ...PREDICT_FLAGS,
} as const;

const isUrl = (s: string) => /^https?:\/\//i.test(s);
const isNiftiName = (s: string) => /\.nii(\.gz)?$/i.test(isUrl(s) ? new URL(s).pathname : s);

/** What X is: a NIfTI volume (read), or an OME-Zarr case (left to be streamed). */
type Input =
  | { kind: "nifti"; volume: NiftiVolume }
  | { kind: "case"; location: string };

/** Reads X when it is NIfTI; recognises an OME-Zarr case; explains anything else. */
export async function readInput(location: string): Promise<Input> {
  if (isUrl(location)) {
    if (!isNiftiName(location)) return { kind: "case", location };
    const response = await fetch(location).catch((e) => {
      throw new Error(`cannot fetch ${location}: ${(e as Error).message}`);
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`cannot fetch ${location}: HTTP ${response.status} ${response.statusText}`);
    }
    return { kind: "nifti", volume: await decodeInput(location, await response.bytes()) };
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
  return { kind: "nifti", volume: await decodeInput(location, await Deno.readFile(location)) };
}

async function decodeInput(location: string, bytes: Uint8Array): Promise<NiftiVolume> {
  try {
    return await decodeNifti(bytes);
  } catch (e) {
    throw new Error(
      `${location} is neither a NIfTI file (.nii, .nii.gz) nor an OME-Zarr case (a folder ` +
        `with zarr.json): ${(e as Error).message}`,
    );
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseNamedFlags(argv, FLAGS, HELP, ["model", "in"]);
  const out = typeof v.out === "string" ? v.out : undefined;
  if (out && v["out-group"]) throw new UsageError("give either --out or --out-group, not both");
  const options = predictOptionsFromFlags(v);
  const json = Boolean(v.json);
  const progress = new Progress({ json });

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
  const loaded = await loadModel(String(v.model));
  const controller = new AbortController();
  const onSignal = () => {
    progress.log("stopping after the current batch…");
    controller.abort(new Error("interrupted"));
    Deno.removeSignalListener("SIGINT", onSignal);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const m = loaded.meta;
    progress.log(
      `model ${loaded.name}: ${m.classNames.join(", ")}; patch ${m.patchSize.join("×")}, ` +
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
    loaded.dispose();
  }
}

async function predict(
  loaded: LoadedModel,
  input: Input,
  out: string | undefined,
  labelName: string,
  opts: PredictOptions,
): Promise<{ summary: PredictionSummary; written: string }> {
  if (input.kind === "nifti") {
    const { labels, summary } = await predictVolume(loaded, input.volume, opts);
    await writeNifti(out!, labels, { like: input.volume.header, description: "voxseg labels" });
    return { summary, written: out! };
  }
  if (out && isNiftiName(out)) {
    const reader = await openCase(input.location, { cacheBytes: 0 });
    const image: Volume = await reader.readFullImage();
    const { labels, summary } = await predictVolume(loaded, image, opts);
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
