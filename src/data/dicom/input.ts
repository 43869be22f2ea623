/**
 * DICOM input as named bytes: a folder (recursive, any file names), a `.zip`, or a
 * comma-separated list of files. Reading a folder or zip keeps only DICOM Part 10 files
 * ("DICM" at byte 128), so a README, a thumbnail or a DICOMDIR beside the images does no harm;
 * a file named explicitly must be DICOM. Names are relative to the input (a folder's relative
 * path, a zip entry's name, a listed file's base name): scans are patient data, and an error
 * that reaches a client must not show where they are stored.
 */

import { basename, join, relative } from "node:path";
import { unzipSync } from "fflate";
import { DicomInputError } from "./errors.ts";

/** A file's bytes and its name relative to the input (for messages and grouping). */
export interface NamedBytes {
  name: string;
  bytes: Uint8Array;
}

/** Limits on what a zip may expand to; a zip bomb stops at the first entry over them. */
export interface ZipLimits {
  /** Total uncompressed bytes of the entries read (declared sizes); default 4 GiB. */
  maxBytes?: number;
  /** Number of entries; default 100 000. */
  maxEntries?: number;
}

export const DEFAULT_ZIP_MAX_BYTES = 4 * 2 ** 30;
export const DEFAULT_ZIP_MAX_ENTRIES = 100_000;

/** True for a DICOM Part 10 file: a 128-byte preamble, then "DICM". */
export function isDicomPart10(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 &&
    bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** True for a zip archive (local file header "PK\x03\x04", or an empty zip's "PK\x05\x06"). */
export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b &&
    (bytes[2] === 3 && bytes[3] === 4 || bytes[2] === 5 && bytes[3] === 6);
}

/**
 * The DICOM files of a folder (recursive), a zip, or a comma-separated list of files.
 *
 * @example
 * const files = await loadDicomInput("scans/ct_series");   // or "ct.zip", "a.dcm,b.dcm"
 * const series = await readDicomSeries(files);
 */
export async function loadDicomInput(path: string, limits: ZipLimits = {}): Promise<NamedBytes[]> {
  const paths = path.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (paths.length === 0) throw new DicomInputError("no DICOM input given");
  if (paths.length === 1) {
    const info = await Deno.stat(paths[0]).catch(() => undefined);
    if (info === undefined) {
      throw new DicomInputError("DICOM input: no such file or folder");
    }
    if (info.isDirectory) return await readFolder(paths[0]);
  }
  const files: NamedBytes[] = [];
  for (const p of paths) {
    const name = basename(p);
    const bytes = await Deno.readFile(p).catch(() => {
      throw new DicomInputError(`${name}: no such file (or not readable)`);
    });
    if (isZip(bytes)) files.push(...unzipDicom(bytes, name, limits));
    else if (isDicomPart10(bytes)) files.push({ name, bytes });
    else {
      throw new DicomInputError(
        `${name}: not a DICOM file (no "DICM" marker at byte 128) — give DICOM Part 10 files, a ` +
          "folder of them, or a .zip",
      );
    }
  }
  if (files.length === 0) throw new DicomInputError(noDicomMessage("the zip"));
  return files;
}

/** Every DICOM Part 10 file under `dir`, named by its path relative to `dir`. */
async function readFolder(dir: string): Promise<NamedBytes[]> {
  const files: NamedBytes[] = [];
  const walk = async (folder: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(folder)) entries.push(e);
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const path = join(folder, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.isFile && !isDicomDir(e.name)) {
        const bytes = await Deno.readFile(path);
        if (isDicomPart10(bytes)) files.push({ name: relative(dir, path), bytes });
      }
    }
  };
  await walk(dir);
  if (files.length === 0) throw new DicomInputError(noDicomMessage("the folder"));
  return files;
}

/** DICOMDIR indexes a media set; it holds no pixels (voxseg reads the files it lists anyway). */
function isDicomDir(name: string): boolean {
  return name.toUpperCase() === "DICOMDIR";
}

function noDicomMessage(where: string): string {
  return `no DICOM file in ${where}: DICOM Part 10 files have "DICM" at byte 128 (files ` +
    "without it, such as raw data sets or old ACR-NEMA files, are not read) — export the " +
    "series from the PACS or viewer as DICOM files";
}

/**
 * The DICOM entries of a zip, with the archive's declared sizes checked against the limits
 * before anything is inflated. fflate inflates an entry into a buffer of its declared size and
 * no further, so an entry that lies about its size cannot expand past the limit either.
 */
export function unzipDicom(zip: Uint8Array, zipName: string, limits: ZipLimits = {}): NamedBytes[] {
  const maxBytes = limits.maxBytes ?? DEFAULT_ZIP_MAX_BYTES;
  const maxEntries = limits.maxEntries ?? DEFAULT_ZIP_MAX_ENTRIES;
  let bytes = 0;
  let entries = 0;
  let inflated: Record<string, Uint8Array>;
  try {
    inflated = unzipSync(zip, {
      filter: (file) => {
        if (file.name.endsWith("/") || /(^|\/)__MACOSX\//.test(file.name)) return false;
        if (isDicomDir(basename(file.name))) return false;
        if (++entries > maxEntries) {
          throw new DicomInputError(
            `${zipName}: more than ${maxEntries} entries — split the archive or give a folder`,
          );
        }
        bytes += entryBytes(file);
        if (bytes > maxBytes) {
          throw new DicomInputError(
            `${zipName}: entries expand to more than ${gib(maxBytes)} — too large for one ` +
              "series (or a zip bomb); unpack it and give the folder",
          );
        }
        return true;
      },
    });
  } catch (e) {
    if (e instanceof DicomInputError) throw e;
    throw new DicomInputError(
      `${zipName}: not a readable zip (${(e as Error).message}) — re-create the archive`,
    );
  }
  return Object.entries(inflated)
    .filter(([, data]) => isDicomPart10(data))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, data]) => ({ name, bytes: data }));
}

/**
 * What an entry costs once read: a stored entry is copied at its compressed size whatever it
 * declares, a deflated one inflated up to its declared size, so the larger of the two — entries
 * that overlap in the archive (a zip bomb's trick) then count each time.
 */
function entryBytes(file: { size: number; originalSize: number }): number {
  return Math.max(file.size, file.originalSize);
}

/**
 * The bytes a zip's entries take once read, from the sizes its directory declares, without
 * inflating any (fflate's filter sees each entry first): an upper bound for {@link unzipDicom}.
 * Throws {@link DicomInputError} past `maxEntries` entries (so a forged directory cannot make
 * this long) or when the bytes are not a zip.
 */
export function declaredZipBytes(
  zip: Uint8Array,
  zipName: string,
  maxEntries = DEFAULT_ZIP_MAX_ENTRIES,
): number {
  let total = 0;
  let entries = 0;
  try {
    unzipSync(zip, {
      filter: (file) => {
        if (++entries > maxEntries) {
          throw new DicomInputError(
            `${zipName}: more than ${maxEntries} entries — split the archive or give a folder`,
          );
        }
        total += entryBytes(file);
        return false;
      },
    });
  } catch (e) {
    if (e instanceof DicomInputError) throw e;
    throw new DicomInputError(
      `${zipName}: not a readable zip (${(e as Error).message}) — re-create the archive`,
    );
  }
  return total;
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(2)} GiB` : `${bytes} bytes`;
}
