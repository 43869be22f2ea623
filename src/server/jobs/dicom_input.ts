/**
 * A prediction job's DICOM input under the data root: a folder of a series' files, a zip of
 * them, or one (multi-frame) file. At submit only its form is checked — a folder must hold a
 * DICOM Part 10 file, a file must start as a zip or a DICOM file — reading a few bytes per
 * file; the series is read when the job runs, through {@link DataRoot.openRead} for files and
 * with the folder checked unchanged before and after, like every job path.
 */

import { basename, join } from "node:path";
import { DicomInputError } from "../../data/dicom/errors.ts";
import { isDicomPart10, isZip, loadDicomInput, unzipDicom } from "../../data/dicom/input.ts";
import { readDicomSeries } from "../../data/dicom/series.ts";
import type { DicomSeries } from "../../data/dicom/types.ts";
import { asInvalidDicom } from "../dicom_upload.ts";
import { ApiError } from "../errors.ts";
import type { DataRoot } from "../paths.ts";
import { checkNiftiInput, readVerified } from "./files.ts";
import type { DicomInputForm, Job, PredictJobRequest } from "./job.ts";
import { readHead as firstBytes } from "../../base/bytes.ts";

/** Bytes that tell a zip ("PK\x03\x04") and a DICOM Part 10 file ("DICM" at 128) apart. */
const HEAD_BYTES = 132;
/** Files a folder check looks at before it gives up finding a DICOM file. */
const MAX_FILES_CHECKED = 10_000;

/**
 * Checks at submit what a file prediction reads — a DICOM series (its form recorded for the
 * run) or a NIfTI file — and that the request fits it: a `.dcm` output (a Segmentation, which
 * references its source series) or a `series` for a NIfTI input is a 400. With what to record
 * in the job, the image channels the input holds (a 4D NIfTI's 4th dimension, else 1).
 */
export async function checkPredictInput(
  root: DataRoot,
  resolved: string,
  request: Pick<PredictJobRequest, "output" | "series">,
): Promise<{ checked: Pick<Job, "inputChecked" | "dicomInput">; channels: number }> {
  const form = await dicomInputForm(root, resolved);
  if (form) return { checked: { dicomInput: form }, channels: 1 };
  const channels = await checkNiftiInput(root, resolved);
  const input = JSON.stringify(root.display(resolved));
  if (/\.dcm$/i.test(request.output)) {
    throw new ApiError(
      400,
      "invalid_request",
      `"output" .dcm is a DICOM Segmentation, which references the series it segments, but ` +
        `"input" ${input} is a NIfTI volume: name a DICOM series (a folder or .zip) as "input", ` +
        'or a .nii or .nii.gz "output"',
    );
  }
  if (request.series !== undefined) {
    throw new ApiError(
      400,
      "invalid_request",
      `"series" picks a series of a DICOM input, but "input" ${input} is a NIfTI volume; drop it`,
    );
  }
  return { checked: { inputChecked: true }, channels };
}

/**
 * The DICOM form of `resolved` (the job's input): "folder" for a folder holding a DICOM Part 10
 * file (400 `invalid_dicom` for one that holds none), "zip" or "file" by the first bytes of a
 * file; undefined for any other file (then checked as NIfTI).
 */
export async function dicomInputForm(
  root: DataRoot,
  resolved: string,
): Promise<DicomInputForm | undefined> {
  if ((await Deno.stat(resolved)).isDirectory) {
    if (await holdsDicomFile(resolved)) return "folder";
    throw new ApiError(
      400,
      "invalid_dicom",
      `"input" ${JSON.stringify(root.display(resolved))} is a folder without DICOM Part 10 ` +
        'files ("DICM" at byte 128); name a folder of a series\' DICOM files, a .zip of ' +
        "them, or a NIfTI file",
    );
  }
  const head = await readHead(root, resolved);
  if (isZip(head)) return "zip";
  if (isDicomPart10(head)) return "file";
  return undefined;
}

/** The first bytes of a file under the root, opened through {@link DataRoot.openRead}. */
async function readHead(root: DataRoot, resolved: string): Promise<Uint8Array> {
  const file = await root.openRead(resolved, "input");
  try {
    return await firstBytes(file, HEAD_BYTES);
  } finally {
    file.close();
  }
}

/**
 * True when `dir` (recursively, not through symbolic links, as the reader walks it) holds a
 * DICOM Part 10 file; reads the first bytes of at most {@link MAX_FILES_CHECKED} files, and
 * passes over what it may not read (the reader then reports it).
 */
async function holdsDicomFile(dir: string): Promise<boolean> {
  let checked = 0;
  const walk = async (folder: string): Promise<boolean> => {
    for await (const e of Deno.readDir(folder)) {
      if (checked >= MAX_FILES_CHECKED) return false;
      const path = join(folder, e.name);
      if (e.isDirectory && await walk(path).catch(() => false)) return true;
      if (e.isFile) {
        checked++;
        if (await startsAsDicom(path).catch(() => false)) return true;
      }
    }
    return false;
  };
  return await walk(dir);
}

async function startsAsDicom(path: string): Promise<boolean> {
  const file = await Deno.open(path, { read: true });
  try {
    return isDicomPart10(await firstBytes(file, HEAD_BYTES));
  } finally {
    file.close();
  }
}

/**
 * Reads the job's DICOM input (resolved again at run) into a series; 400 `invalid_dicom` with
 * the reader's message when it cannot be read, `path_changed` when the folder moved meanwhile.
 */
export async function readDicomJobInput(
  root: DataRoot,
  resolved: string,
  form: DicomInputForm,
  seriesUid?: string,
): Promise<DicomSeries> {
  try {
    const files = form === "folder"
      ? await readFolder(root, resolved)
      : await readFileInput(root, resolved, form);
    return await readDicomSeries(files, seriesUid === undefined ? {} : { seriesUid });
  } catch (e) {
    if (!(e instanceof DicomInputError)) throw e;
    const error = asInvalidDicom(e, '"series": "UID"') as ApiError;
    throw new ApiError(400, error.code, root.redact(error.message));
  }
}

async function readFileInput(root: DataRoot, resolved: string, form: "zip" | "file") {
  const bytes = await readVerified(root, resolved, "input");
  const name = basename(resolved);
  return form === "zip" ? unzipDicom(bytes, name) : [{ name, bytes }];
}

/** The folder's DICOM files, refused when the folder became another (a symbolic link) meanwhile. */
async function readFolder(root: DataRoot, resolved: string) {
  const unchanged = async () => {
    const real = await Deno.realPath(resolved).catch(() => undefined);
    if (real !== resolved || !root.contains(real)) {
      throw new ApiError(
        400,
        "path_changed",
        `input ${JSON.stringify(root.display(resolved))} changed since it was checked: it was ` +
          "moved or replaced by a symbolic link; restore it or submit again",
      );
    }
  };
  await unchanged();
  const files = await loadDicomInput(resolved);
  await unchanged();
  return files;
}
