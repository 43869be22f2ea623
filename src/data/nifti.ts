/**
 * NIfTI-1 (`.nii`, `.nii.gz`) read and write, NIfTI-2 read.
 *
 * Reading accepts either byte order and detects gzip by its magic bytes, not the extension.
 * Voxel values are returned raw (keeping the file's integer type) unless `scl_slope` /
 * `scl_inter` apply a non-trivial scaling, in which case they come back as float32. The affine
 * is chosen like nibabel's `get_best_affine`: sform if `sform_code > 0`, else qform if
 * `qform_code > 0`, else the Analyze-style base affine from pixdim (x flipped, centred).
 *
 * Writing always produces single-file little-endian NIfTI-1 (vox_offset 352, no extensions),
 * gzipped when the path ends in `.gz`. A label map written `like` a source header keeps the
 * source's geometry fields bit for bit (qform, sform, their codes, pixdim, xyzt_units).
 */

import { writeFileAtomic } from "../base/atomic.ts";
import { gzip, isGzip } from "./gzip.ts";
import { geometryFromAffine, type NiftiGeometry, qformAffine } from "./nifti_geometry.ts";
import { HOST_LITTLE_ENDIAN } from "./endian.ts";
import {
  checkVolume,
  dtypeOf,
  type Shape3,
  type Volume,
  voxelArrayOver,
  type VoxelDtype,
} from "./volume.ts";

/** A parsed NIfTI-1 or NIfTI-2 header. */
export interface NiftiHeader extends NiftiGeometry {
  version: 1 | 2;
  littleEndian: boolean;
  /** dim[0..7]: dim[0] is the number of dimensions, dim[1..3] = x, y, z sizes. */
  dim: number[];
  datatype: number;
  bitpix: number;
  /** Byte offset of the voxel data; > 352 when header extensions are present. */
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  calMin: number;
  calMax: number;
  intentCode: number;
  intentName: string;
  descrip: string;
  auxFile: string;
  dimInfo: number;
  sliceCode: number;
  sliceStart: number;
  sliceEnd: number;
  sliceDuration: number;
  toffset: number;
}

/** A volume read from NIfTI, with the header it came from. */
export interface NiftiVolume extends Volume {
  header: NiftiHeader;
}

export interface WriteNiftiOptions {
  /** Copy geometry (qform, sform, codes, pixdim, xyzt_units) from this header. */
  like?: NiftiGeometry & { dim?: number[] };
  /** gzip the file; default: when the path ends in `.gz`. */
  gzip?: boolean;
  /** Header `descrip` (at most 79 characters). */
  description?: string;
}

const DATATYPES: Record<number, VoxelDtype> = {
  2: "uint8",
  4: "int16",
  8: "int32",
  16: "float32",
  64: "float64",
  256: "int8",
  512: "uint16",
};
const DATATYPE_CODE: Record<VoxelDtype, number> = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
};
const UNSUPPORTED_DATATYPES: Record<number, string> = {
  1: "binary (1 bit)",
  32: "complex64",
  128: "rgb24",
  768: "uint32",
  1024: "int64",
  1280: "uint64",
  1536: "float128",
  1792: "complex128",
  2048: "complex256",
  2304: "rgba32",
};
const BYTES: Record<VoxelDtype, number> = {
  uint8: 1,
  int8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  float32: 4,
  float64: 8,
};
const NIFTI1_HEADER = 348;
const NIFTI2_HEADER = 540;

/** Reads a `.nii` or `.nii.gz` file (NIfTI-1 or NIfTI-2). */
export async function readNifti(path: string): Promise<NiftiVolume> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`NIfTI file not found: ${path}`);
    throw e;
  }
  try {
    return await decodeNifti(bytes);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** Decodes NIfTI bytes (gzipped or not) into a volume and its header. */
export async function decodeNifti(bytes: Uint8Array): Promise<NiftiVolume> {
  if (isGzip(bytes)) {
    // Inflated straight into one voxel buffer sized from the header: no whole-file copy.
    return (await readNiftiStream(bytesStream(bytes), { trailing: "ignore" })).volume;
  }
  const raw = bytes;
  const header = parseNiftiHeader(raw);
  const shape = niftiShape(header);
  const dtype = DATATYPES[header.datatype];
  const count = shape[0] * shape[1] * shape[2];
  const need = header.voxOffset + count * BYTES[dtype];
  if (raw.length < need) {
    throw new Error(
      `truncated NIfTI: ${count} ${dtype} voxels need ${need} bytes from vox_offset ` +
        `${header.voxOffset}, but the file has ${raw.length} (is the download complete?)`,
    );
  }
  const data = voxelData(raw, header.voxOffset, dtype, count, header.littleEndian);
  return {
    shape,
    spacingMm: niftiSpacing(header),
    affine: niftiAffine(header),
    data: applyScaling(data, header.sclSlope, header.sclInter),
    header,
  };
}

/** A NIfTI body that cannot be read as one 3D volume; the message says why and what to do. */
export class InvalidNiftiError extends Error {
  override name = "InvalidNiftiError";
}

/** What a header asks for, in voxels and bytes. */
export interface NiftiSizes {
  /** Voxels of the 3D volume (x·y·z). */
  voxels: number;
  /** Bytes of the voxel data as stored (voxels × bytes per voxel). */
  voxelBytes: number;
  /** Bytes of the whole uncompressed file: vox_offset + voxelBytes. */
  fileBytes: number;
  /** Host bytes the decoded volume takes: the voxel data, plus a float32 copy when scaled. */
  decodedBytes: number;
}

/** Largest file a header may describe (1 TiB): anything above is a corrupt or hostile header. */
export const MAX_NIFTI_FILE_BYTES = 2 ** 40;

/**
 * The sizes a (checked) header describes, without trusting it: each product is checked so a
 * hostile header (dims of 32767, a vox_offset of 1e30) is refused naming the field, instead of
 * overflowing or allocating. Throws {@link InvalidNiftiError}.
 */
export function niftiSizes(h: NiftiHeader): NiftiSizes {
  const dtype = DATATYPES[h.datatype];
  if (!dtype) throw new InvalidNiftiError(`unsupported NIfTI datatype ${h.datatype}`);
  const [nz, ny, nx] = niftiShape(h);
  const voxels = nx * ny * nz;
  const voxelBytes = voxels * BYTES[dtype];
  const fileBytes = h.voxOffset + voxelBytes;
  const tib = (n: number) => `${(n / 2 ** 40).toPrecision(3)} TiB`;
  if (!Number.isSafeInteger(voxelBytes) || voxelBytes > MAX_NIFTI_FILE_BYTES) {
    throw new InvalidNiftiError(
      `corrupt NIfTI header: dim[1..3] = ${nx}×${ny}×${nz} ${dtype} voxels would take ` +
        `${tib(voxelBytes)}, over the 1 TiB any volume may take`,
    );
  }
  if (!Number.isSafeInteger(fileBytes) || fileBytes > MAX_NIFTI_FILE_BYTES) {
    throw new InvalidNiftiError(
      `corrupt NIfTI header: vox_offset ${h.voxOffset} puts the voxel data past 1 TiB`,
    );
  }
  const scaled = Number.isFinite(h.sclSlope) && h.sclSlope !== 0 &&
    !(h.sclSlope === 1 && (!Number.isFinite(h.sclInter) || h.sclInter === 0));
  const copy = scaled && dtype !== "float32" ? 4 * voxels : 0;
  return { voxels, voxelBytes, fileBytes, decodedBytes: voxelBytes + copy };
}

export interface NiftiStreamOptions {
  /**
   * Called once the header is read, before the voxel buffer is allocated or more of the body
   * is read (or inflated): throw to refuse a volume too large for the caller's memory.
   */
  onHeader?: (header: NiftiHeader, sizes: NiftiSizes, gzipped: boolean) => void | Promise<void>;
  /**
   * Bytes after the voxel data: "error" (default) stops with {@link InvalidNiftiError} at the
   * first one, so a gzip bomb behind a small header is inflated no further; "ignore" reads on
   * (checking a gzip stream's integrity) and drops them.
   */
  trailing?: "error" | "ignore";
  /** Cancels the read; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A volume decoded from a stream, and whether the stream was gzipped. */
export interface NiftiStreamResult {
  volume: NiftiVolume;
  gzipped: boolean;
}

/**
 * Compressed bytes handed to the inflater at a time. Deno's DecompressionStream inflates a
 * whole written chunk at once, and deflate expands up to 1032:1, so a 64 KiB chunk of a gzip
 * bomb would come out as one 64 MiB chunk; 4 KiB bounds each output chunk to about 4 MiB.
 */
export const GZIP_SLICE_BYTES = 4096;

/**
 * Decodes a `.nii` or `.nii.gz` byte stream (gzip detected by its magic bytes) into one volume,
 * holding at most one copy of the voxels: the header is read first, sized with
 * {@link niftiSizes}, offered to `onHeader`, and the voxels are then read (or inflated) straight
 * into one buffer of exactly that size. A stream shorter than the header says is refused, and
 * by default one longer too. Format problems throw {@link InvalidNiftiError}; errors of the
 * source stream and of `onHeader` pass through unchanged.
 *
 * @example
 * const { volume } = await readNiftiStream((await Deno.open("ct.nii.gz")).readable, {
 *   onHeader: (_h, sizes) => { if (sizes.decodedBytes > 2 ** 30) throw new Error("too big"); },
 * });
 */
export async function readNiftiStream(
  stream: ReadableStream<Uint8Array>,
  options: NiftiStreamOptions = {},
): Promise<NiftiStreamResult> {
  const { signal } = options;
  const source = new ChunkReader(stream.getReader());
  let input = source;
  let sourceError: { error: unknown } | undefined;
  const onAbort = () => {
    source.cancel(signal!.reason);
    input.cancel(signal!.reason);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    const gzipped = isGzip(await source.peek(2));
    if (gzipped) {
      const sliced = new ReadableStream<Uint8Array<ArrayBuffer>>({
        async pull(controller) {
          let piece: Uint8Array | null;
          try {
            piece = await source.next(GZIP_SLICE_BYTES);
          } catch (error) {
            sourceError = { error };
            throw error;
          }
          // Views of the source's own chunks, which are ArrayBuffer-backed.
          if (piece) controller.enqueue(piece as Uint8Array<ArrayBuffer>);
          else controller.close();
        },
        cancel: (reason) => source.cancel(reason),
      }, { highWaterMark: 0 });
      input = new ChunkReader(sliced.pipeThrough(new DecompressionStream("gzip")).getReader());
    }
    const read = async (dst: Uint8Array) => {
      try {
        const n = await input.fill(dst);
        signal?.throwIfAborted(); // an abort cancels the reader, which then looks ended
        return n;
      } catch (error) {
        signal?.throwIfAborted();
        if (sourceError) throw sourceError.error;
        if (!gzipped) throw error;
        throw new InvalidNiftiError(
          `corrupt gzip data: ${(error as Error).message} (re-download or re-compress it)`,
        );
      }
    };
    const volume = await readVolume(read, gzipped, options);
    signal?.throwIfAborted();
    return { volume, gzipped };
  } catch (e) {
    source.cancel(e);
    input.cancel(e);
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Header, then skipped extensions, then the voxels into one buffer, then the end check. */
async function readVolume(
  read: (dst: Uint8Array) => Promise<number>,
  gzipped: boolean,
  options: NiftiStreamOptions,
): Promise<NiftiVolume> {
  const first = new Uint8Array(4);
  const got = await read(first);
  if (got === 0) throw new InvalidNiftiError("the body is empty; send a .nii or .nii.gz volume");
  if (got < 4) throw new InvalidNiftiError(`not a NIfTI file: only ${got} bytes`);
  const view = new DataView(first.buffer);
  const le = view.getInt32(0, true);
  const size = [NIFTI1_HEADER, NIFTI2_HEADER].includes(le) ? le : view.getInt32(0, false);
  if (size !== NIFTI1_HEADER && size !== NIFTI2_HEADER) {
    throw new InvalidNiftiError(`not a NIfTI file: header size ${le} (expected 348 or 540)`);
  }
  const headerBytes = new Uint8Array(size);
  headerBytes.set(first);
  const headerGot = 4 + await read(headerBytes.subarray(4));
  if (headerGot < size) {
    throw new InvalidNiftiError(
      `truncated NIfTI: header needs ${size} bytes, the ${gzipped ? "inflated " : ""}file has ` +
        headerGot,
    );
  }
  let header: NiftiHeader;
  try {
    header = parseNiftiHeader(headerBytes);
  } catch (e) {
    throw new InvalidNiftiError((e as Error).message);
  }
  const sizes = niftiSizes(header);
  await options.onHeader?.(header, sizes, gzipped);
  const dtype = DATATYPES[header.datatype];
  const truncated = (have: number) =>
    new InvalidNiftiError(
      `truncated NIfTI: ${sizes.voxels} ${dtype} voxels need ${sizes.fileBytes} bytes from ` +
        `vox_offset ${header.voxOffset}, but the file has ${have} (is the download complete?)`,
    );
  // Extensions between the header and vox_offset: read through a small scratch buffer.
  let skip = header.voxOffset - size;
  const scratch = new Uint8Array(Math.min(skip, 65536));
  while (skip > 0) {
    const n = await read(scratch.subarray(0, Math.min(skip, scratch.length)));
    if (n === 0) throw truncated(header.voxOffset - skip);
    skip -= n;
  }
  const voxels = new Uint8Array(sizes.voxelBytes);
  const n = await read(voxels);
  if (n < voxels.length) throw truncated(header.voxOffset + n);
  const extra = new Uint8Array(options.trailing === "ignore" ? 65536 : 1);
  while (await read(extra) > 0) {
    if (options.trailing !== "ignore") {
      throw new InvalidNiftiError(
        `the ${gzipped ? "inflated " : ""}body continues past the ${sizes.fileBytes} bytes its ` +
          `header describes (vox_offset ${header.voxOffset} + ${sizes.voxels} ${dtype} voxels); ` +
          "send one complete .nii or .nii.gz file",
      );
    }
  }
  if (header.littleEndian !== HOST_LITTLE_ENDIAN) swapBytes(voxels, BYTES[dtype]);
  const data = voxelArrayOver(dtype, voxels.buffer, sizes.voxels);
  return {
    shape: niftiShape(header),
    spacingMm: niftiSpacing(header),
    affine: niftiAffine(header),
    data: applyScaling(data, header.sclSlope, header.sclInter, true),
    header,
  };
}

/**
 * Reads a byte stream in pieces of the caller's choosing, holding only the chunk in hand.
 * `cancel` is idempotent and never throws.
 */
class ChunkReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #rest: Uint8Array = new Uint8Array(0);
  #cancelled = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#reader = reader;
  }

  /** At least `n` bytes from the front without consuming them (fewer at the end). */
  async peek(n: number): Promise<Uint8Array> {
    while (this.#rest.length < n) {
      const { done, value } = await this.#reader.read();
      if (done) break;
      if (this.#rest.length === 0) {
        this.#rest = value;
      } else {
        const joined = new Uint8Array(this.#rest.length + value.length);
        joined.set(this.#rest);
        joined.set(value, this.#rest.length);
        this.#rest = joined;
      }
    }
    return this.#rest.subarray(0, n);
  }

  /** The next at most `max` bytes (a view of the chunk in hand); null at the end. */
  async next(max: number): Promise<Uint8Array | null> {
    while (this.#rest.length === 0) {
      const { done, value } = await this.#reader.read();
      if (done) return null;
      this.#rest = value;
    }
    const out = this.#rest.subarray(0, max);
    this.#rest = this.#rest.subarray(out.length);
    return out;
  }

  /** Fills `dst` from the stream; returns the bytes written (fewer than its length at the end). */
  async fill(dst: Uint8Array): Promise<number> {
    let at = 0;
    while (at < dst.length) {
      const piece = await this.next(dst.length - at);
      if (!piece) break;
      dst.set(piece, at);
      at += piece.length;
    }
    return at;
  }

  cancel(reason?: unknown): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#rest = new Uint8Array(0);
    this.#reader.cancel(reason).catch(() => {});
  }
}

/** A stream over bytes already in memory, in views (no copy). */
function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(at, at + 65536));
      at += 65536;
    },
  }, { highWaterMark: 0 });
}

/** Parses a NIfTI-1 or NIfTI-2 header of uncompressed bytes, detecting the byte order. */
export function parseNiftiHeader(bytes: Uint8Array): NiftiHeader {
  if (bytes.length < 4) throw new Error(`not a NIfTI file: only ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = view.getInt32(0, true);
  const be = view.getInt32(0, false);
  const size = [NIFTI1_HEADER, NIFTI2_HEADER].includes(le) ? le : be;
  if (size !== NIFTI1_HEADER && size !== NIFTI2_HEADER) {
    throw new Error(`not a NIfTI file: header size ${le} (expected 348 or 540)`);
  }
  if (bytes.length < size) {
    throw new Error(`truncated NIfTI: header needs ${size} bytes, the file has ${bytes.length}`);
  }
  const header = size === NIFTI1_HEADER
    ? parseNifti1(view, bytes, size === le)
    : parseNifti2(view, bytes, size === le);
  checkHeader(header);
  return header;
}

function parseNifti1(view: DataView, bytes: Uint8Array, le: boolean): NiftiHeader {
  const magic = ascii(bytes, 344, 4);
  if (magic === "ni1") {
    throw new Error(
      "this is the header of a NIfTI pair (.hdr/.img); voxseg reads single-file NIfTI — " +
        "convert it to .nii.gz first (e.g. nibabel or `fslchfiletype NIFTI_GZ`)",
    );
  }
  if (magic !== "n+1") {
    throw new Error(
      `not a NIfTI-1 file: magic "${magic}" (expected "n+1"); an Analyze 7.5 image has no ` +
        "geometry voxseg can trust — convert it to NIfTI first",
    );
  }
  const i16 = (o: number) => view.getInt16(o, le);
  const f32 = (o: number) => view.getFloat32(o, le);
  return {
    version: 1,
    littleEndian: le,
    dimInfo: bytes[39],
    dim: Array.from({ length: 8 }, (_, i) => i16(40 + 2 * i)),
    intentCode: i16(68),
    datatype: i16(70),
    bitpix: i16(72),
    sliceStart: i16(74),
    pixdim: Array.from({ length: 8 }, (_, i) => f32(76 + 4 * i)),
    voxOffset: f32(108),
    sclSlope: f32(112),
    sclInter: f32(116),
    sliceEnd: i16(120),
    sliceCode: bytes[122],
    xyztUnits: bytes[123],
    calMax: f32(124),
    calMin: f32(128),
    sliceDuration: f32(132),
    toffset: f32(136),
    descrip: ascii(bytes, 148, 80),
    auxFile: ascii(bytes, 228, 24),
    qformCode: i16(252),
    sformCode: i16(254),
    quatern: [f32(256), f32(260), f32(264)],
    qoffset: [f32(268), f32(272), f32(276)],
    srow: Array.from({ length: 12 }, (_, i) => f32(280 + 4 * i)),
    intentName: ascii(bytes, 328, 16),
  };
}

function parseNifti2(view: DataView, bytes: Uint8Array, le: boolean): NiftiHeader {
  const magic = ascii(bytes, 4, 4);
  if (magic !== "n+2") {
    throw new Error(
      magic === "ni2"
        ? "this is the header of a NIfTI-2 pair (.hdr/.img); convert it to a single .nii first"
        : `not a NIfTI-2 file: magic "${magic}" (expected "n+2")`,
    );
  }
  const i16 = (o: number) => view.getInt16(o, le);
  const i32 = (o: number) => view.getInt32(o, le);
  const i64 = (o: number) => Number(view.getBigInt64(o, le));
  const f64 = (o: number) => view.getFloat64(o, le);
  return {
    version: 2,
    littleEndian: le,
    datatype: i16(12),
    bitpix: i16(14),
    dim: Array.from({ length: 8 }, (_, i) => i64(16 + 8 * i)),
    pixdim: Array.from({ length: 8 }, (_, i) => f64(104 + 8 * i)),
    voxOffset: i64(168),
    sclSlope: f64(176),
    sclInter: f64(184),
    calMax: f64(192),
    calMin: f64(200),
    sliceDuration: f64(208),
    toffset: f64(216),
    sliceStart: i64(224),
    sliceEnd: i64(232),
    descrip: ascii(bytes, 240, 80),
    auxFile: ascii(bytes, 320, 24),
    qformCode: i32(344),
    sformCode: i32(348),
    quatern: [f64(352), f64(360), f64(368)],
    qoffset: [f64(376), f64(384), f64(392)],
    srow: Array.from({ length: 12 }, (_, i) => f64(400 + 8 * i)),
    sliceCode: i32(496),
    xyztUnits: i32(500),
    intentCode: i32(504),
    intentName: ascii(bytes, 508, 16),
    dimInfo: bytes[524],
  };
}

/** Refuses headers voxseg cannot turn into one 3D volume, saying why and what to do. */
function checkHeader(h: NiftiHeader): void {
  const ndim = h.dim[0];
  if (ndim < 1 || ndim > 7) {
    throw new Error(`corrupt NIfTI header: dim[0] = ${ndim} (expected 1..7)`);
  }
  for (let i = 1; i <= ndim; i++) {
    if (!Number.isInteger(h.dim[i]) || h.dim[i] < 1) {
      throw new Error(`corrupt NIfTI header: dim[${i}] = ${h.dim[i]} (expected a positive size)`);
    }
  }
  if (ndim >= 4 && h.dim[4] > 1) {
    throw new Error(
      `4D NIfTI with ${h.dim[4]} volumes (dim[4] = ${h.dim[4]}); voxseg reads one 3D volume ` +
        "per file — split it first (e.g. `fslsplit` or nibabel) and pass channels as separate " +
        "_0000, _0001 files",
    );
  }
  for (let i = 5; i <= ndim; i++) {
    if (h.dim[i] > 1) {
      throw new Error(
        `${ndim}D NIfTI (dim[${i}] = ${h.dim[i]}); voxseg reads 3D volumes only — ` +
          "extract the 3D volume first",
      );
    }
  }
  if (!(h.datatype in DATATYPES)) {
    const name = UNSUPPORTED_DATATYPES[h.datatype] ?? "unknown";
    throw new Error(
      `unsupported NIfTI datatype ${h.datatype} (${name}); voxseg reads uint8, int8, int16, ` +
        "uint16, int32, float32 and float64 — convert the image to one of these",
    );
  }
  const minOffset = h.version === 1 ? NIFTI1_HEADER : NIFTI2_HEADER;
  if (!Number.isInteger(h.voxOffset) || h.voxOffset < minOffset) {
    throw new Error(
      `corrupt NIfTI header: vox_offset ${h.voxOffset} (expected an integer ≥ ${minOffset})`,
    );
  }
}

/** D, H, W (z, y, x) of the 3D volume a header describes; missing dims count as 1. */
export function niftiShape(h: NiftiHeader): Shape3 {
  const size = (i: number) => (i <= h.dim[0] ? h.dim[i] : 1);
  return [size(3), size(2), size(1)];
}

/** Voxel size in mm, z, y, x, from pixdim (absolute; 0 or missing counts as 1). */
export function niftiSpacing(h: NiftiHeader): Shape3 {
  const d = (i: number) => Math.abs(h.pixdim[i]) || 1;
  return [d(3), d(2), d(1)];
}

/** The affine nibabel would use: sform, else qform, else the pixdim base affine. */
export function niftiAffine(h: NiftiHeader): number[] {
  if (h.sformCode > 0) return [...h.srow, 0, 0, 0, 1];
  if (h.qformCode > 0) return qformAffine(h);
  return baseAffine(h);
}

/** nibabel's `shape_zoom_affine`: x flipped, voxel centre of the grid at the origin. */
function baseAffine(h: NiftiHeader): number[] {
  const [nz, ny, nx] = niftiShape(h);
  const [dz, dy, dx] = niftiSpacing(h);
  // deno-fmt-ignore
  return [
    -dx, 0, 0, ((nx - 1) / 2) * dx,
    0, dy, 0, -((ny - 1) / 2) * dy,
    0, 0, dz, -((nz - 1) / 2) * dz,
    0, 0, 0, 1,
  ];
}

/** Copies the voxel bytes out (aligned), swapping byte order when file and host differ. */
function voxelData(
  raw: Uint8Array,
  offset: number,
  dtype: VoxelDtype,
  count: number,
  littleEndian: boolean,
) {
  const size = BYTES[dtype];
  const bytes = raw.slice(offset, offset + count * size);
  if (littleEndian !== HOST_LITTLE_ENDIAN) swapBytes(bytes, size);
  return voxelArrayOver(dtype, bytes.buffer, count);
}

/** Reverses each `size`-byte word in place. */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/**
 * Applies `value·slope + inter` when it changes anything; float32 out in that case (in place
 * when the data is float32 already and `owned`).
 */
function applyScaling(
  data: Volume["data"],
  slope: number,
  inter: number,
  owned = false,
): Volume["data"] {
  if (!Number.isFinite(slope) || slope === 0) return data; // NIfTI: slope 0 means "no scaling"
  const b = Number.isFinite(inter) ? inter : 0;
  if (slope === 1 && b === 0) return data;
  const out = owned && data instanceof Float32Array ? data : new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] * slope + b;
  return out;
}

/** Encodes a volume as single-file little-endian NIfTI-1 bytes (uncompressed). */
export function encodeNifti(volume: Volume, options: Omit<WriteNiftiOptions, "gzip"> = {}) {
  checkVolume(volume);
  const dtype = dtypeOf(volume.data);
  const [nz, ny, nx] = volume.shape;
  const like = options.like ?? ownHeader(volume);
  if (like?.dim) {
    const likeShape = niftiShape({ dim: like.dim } as NiftiHeader);
    if (likeShape.some((s, i) => s !== volume.shape[i])) {
      throw new Error(
        `volume shape [${volume.shape}] differs from the \`like\` header's [${likeShape}] ` +
          "(D,H,W); its geometry would not fit — resample the volume or drop `like`",
      );
    }
  }
  const geometry = like ?? geometryFromAffine(volume.affine, volume.spacingMm);
  const voxOffset = NIFTI1_HEADER + 4; // 4 zero bytes: "no extensions"
  const out = new Uint8Array(voxOffset + volume.data.byteLength);
  const view = new DataView(out.buffer);
  const i16 = (o: number, v: number) => view.setInt16(o, v, true);
  const f32 = (o: number, v: number) => view.setFloat32(o, v, true);
  view.setInt32(0, NIFTI1_HEADER, true);
  out[38] = "r".charCodeAt(0); // "regular", as nibabel writes
  [3, nx, ny, nz, 1, 1, 1, 1].forEach((v, i) => i16(40 + 2 * i, v));
  i16(70, DATATYPE_CODE[dtype]);
  i16(72, BYTES[dtype] * 8);
  geometry.pixdim.forEach((v, i) => f32(76 + 4 * i, v));
  f32(108, voxOffset);
  f32(112, 1); // scl_slope: values are stored unscaled
  f32(116, 0);
  out[123] = geometry.xyztUnits;
  writeAscii(out, 148, 80, options.description ?? "voxseg");
  i16(252, geometry.qformCode);
  i16(254, geometry.sformCode);
  geometry.quatern.forEach((v, i) => f32(256 + 4 * i, v));
  geometry.qoffset.forEach((v, i) => f32(268 + 4 * i, v));
  geometry.srow.forEach((v, i) => f32(280 + 4 * i, v));
  writeAscii(out, 344, 4, "n+1");
  const data = new Uint8Array(volume.data.buffer, volume.data.byteOffset, volume.data.byteLength);
  out.set(data, voxOffset);
  if (!HOST_LITTLE_ENDIAN) swapBytes(out.subarray(voxOffset), BYTES[dtype]);
  return out;
}

/**
 * Writes a volume as NIfTI-1, atomically; gzipped when the path ends in `.gz`.
 *
 * @example
 * const ct = await readNifti("case.nii.gz");
 * await writeNifti("case_seg.nii.gz", { ...ct, data: labels }, { like: ct.header });
 */
export async function writeNifti(
  path: string,
  volume: Volume,
  options: WriteNiftiOptions = {},
): Promise<void> {
  const bytes = encodeNifti(volume, options);
  const compress = options.gzip ?? path.toLowerCase().endsWith(".gz");
  await writeFileAtomic(path, compress ? await gzip(bytes) : bytes);
}

/** The volume's own header when it came from readNifti and its affine is still that header's. */
function ownHeader(volume: Volume): NiftiHeader | undefined {
  const header = (volume as Partial<NiftiVolume>).header;
  if (!header) return undefined;
  const affine = niftiAffine(header);
  return affine.every((v, i) => Math.abs(v - volume.affine[i]) < 1e-6) ? header : undefined;
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  let s = "";
  for (let i = offset; i < offset + length && bytes[i] !== 0; i++) {
    s += String.fromCharCode(bytes[i]);
  }
  return s;
}

function writeAscii(bytes: Uint8Array, offset: number, length: number, text: string): void {
  for (let i = 0; i < Math.min(text.length, length - 1); i++) {
    bytes[offset + i] = text.charCodeAt(i) & 0x7f;
  }
}
