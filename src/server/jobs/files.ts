/**
 * The files a prediction job reads and writes under the data root: its input is checked to be
 * NIfTI before the job is accepted (and again before the dashboard shows it), its output never
 * replaces a file, and both are reopened at use through {@link DataRoot.openRead} and
 * {@link DataRoot.writeNew}, so a folder swapped for a symbolic link meanwhile is refused.
 */

import { constants, gunzipSync } from "node:zlib";
import { isGzip } from "../../data/gzip.ts";
import { type NiftiHeader, parseNiftiHeader } from "../../data/nifti.ts";
import { ApiError } from "../errors.ts";
import type { DataRoot } from "../paths.ts";
import { readHead } from "../../base/bytes.ts";

/** Compressed bytes read to find the header of a .nii.gz: far more than its 348 or 540 bytes need. */
const GZIP_HEAD_BYTES = 4096;
const RAW_HEAD_BYTES = 540;

/**
 * Throws unless the open file starts with a NIfTI-1 or NIfTI-2 header (gzipped or not) of a 3D
 * volume, or of a 4D one whose 4th dimension is the image channels; reads only its first bytes
 * and leaves it positioned at the start. Returns the header (one channel's, for a 4D file) and
 * the number of channels.
 */
export async function checkNiftiHead(
  file: Deno.FsFile,
): Promise<{ header: NiftiHeader; channels: number }> {
  let bytes = await readHead(file, GZIP_HEAD_BYTES);
  await file.seek(0, Deno.SeekMode.Start);
  if (isGzip(bytes)) {
    try {
      // The rest of the stream is not here: a sync flush returns what these bytes hold.
      bytes = gunzipSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH });
    } catch {
      throw new Error("not a NIfTI file: corrupt gzip data");
    }
  }
  const head = bytes.slice(0, RAW_HEAD_BYTES);
  const channels = fourDChannels(head);
  return { header: parseNiftiHeader(head), channels };
}

/**
 * The channels of a 4D header (dim[4], nothing beyond), whose dims `head` is rewritten to one
 * 3D channel's, as `decodeNiftiChannels` reads such a file; 1 for any other header.
 */
function fourDChannels(head: Uint8Array): number {
  if (head.length < 348) return 1;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const le = [348, 540].includes(view.getInt32(0, true));
  const v2 = view.getInt32(0, le) === 540;
  if (v2 && head.length < 540) return 1;
  const dim = (i: number) =>
    v2 ? Number(view.getBigInt64(16 + 8 * i, le)) : view.getInt16(40 + 2 * i, le);
  const setDim = (i: number, v: number) =>
    v2 ? view.setBigInt64(16 + 8 * i, BigInt(v), le) : view.setInt16(40 + 2 * i, v, le);
  const ndim = dim(0);
  if (!(ndim >= 4 && ndim <= 7 && dim(4) > 1)) return 1;
  for (let i = 5; i <= ndim; i++) if (dim(i) > 1) return 1; // refused by the parser, naming it
  const channels = dim(4);
  setDim(0, 3);
  setDim(4, 1);
  return channels;
}

/**
 * Checks at submit that `resolved` (the job's input) is a NIfTI file (3D, or 4D of channels);
 * 400 `invalid_nifti` naming the field otherwise. Returns its channels.
 */
export async function checkNiftiInput(root: DataRoot, resolved: string): Promise<number> {
  const file = await root.openRead(resolved, "input");
  try {
    return (await checkNiftiHead(file)).channels;
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(
      400,
      "invalid_nifti",
      `"input" ${JSON.stringify(root.display(resolved))} is not a NIfTI volume ` +
        `(${(e as Error).message}); name a .nii or .nii.gz file, or a DICOM series (a folder ` +
        "of its files or a .zip)",
    );
  } finally {
    file.close();
  }
}

/** The whole file at `resolved`, read through {@link DataRoot.openRead}. */
export async function readVerified(
  root: DataRoot,
  resolved: string,
  what: string,
): Promise<Uint8Array> {
  const file = await root.openRead(resolved, what);
  try {
    return new Uint8Array(await new Response(file.readable).arrayBuffer());
  } catch (e) {
    try {
      file.close(); // the stream may have closed it already
    } catch {
      // closed
    }
    throw e;
  }
}

/** True when `path` names something (a file, folder or link, even a dangling one). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** `output` with `_2`, `_3`, … before its extension: the first that is free, for messages. */
export async function freeName(root: DataRoot, output: string): Promise<string | undefined> {
  const m = /^(.*?)(\.nii(?:\.gz)?|\.dcm)$/i.exec(output);
  if (!m) return undefined;
  for (let i = 2; i < 100; i++) {
    const name = `${m[1]}_${i}${m[2]}`;
    const path = await root.resolve(name, { what: "output" }).catch(() => undefined);
    if (path && !(await pathExists(path))) return name;
  }
  return undefined;
}
