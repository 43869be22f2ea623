/**
 * Writes a case (see ./metadata.ts for the layout). Chunks are encoded by voxseg (zarrita
 * cannot encode gzip), so anything that reads Zarr v3 reads these cases. Chunks that hold only
 * the fill value (0) are not written; Zarr readers treat a missing chunk as fill.
 */

import Zstd from "numcodecs/zstd";
import { join, resolve } from "node:path";
import { commitFolder, tempSibling } from "../../base/atomic.ts";
import { HOST_LITTLE_ENDIAN } from "../endian.ts";
import { gzip } from "../gzip.ts";
import type { NiftiVolume } from "../nifti.ts";
import { type NiftiGeometry, niftiGeometry } from "../nifti_geometry.ts";
import { checkVolume, type Shape3, type Volume, type VoxelArray } from "../volume.ts";
import {
  CASE_CODECS,
  type CaseAttributes,
  type CaseCodec,
  type CasePreprocessing,
  checkPreprocessing,
  IMAGE_PATH,
  imageAxes,
  type ImageDtype,
  LABEL_PATH,
} from "./metadata.ts";

const OME_VERSION = "0.5";
const ZSTD_LEVEL = 3;
const GZIP_LEVEL = 6; // CompressionStream's fixed level, recorded in the metadata

export interface WriteCaseOptions {
  /**
   * The image: one volume, or one per channel (all on one grid; see ./metadata.ts). A list of
   * one is written exactly as a single volume.
   */
  image: Volume | readonly Volume[];
  /** Label map on the image's grid; integer values 0..255. */
  label?: Volume;
  /** Chunk shape (D,H,W) or one edge for all three; default 64. */
  chunks?: number | Shape3;
  /** Default "zstd". */
  codec?: CaseCodec;
  /** Multiscales name (e.g. the case id). */
  name?: string;
  /** Force the image storage type; default int16 when every value is an int16 integer. */
  imageDtype?: ImageDtype;
  /** Class names by label value, stored as image-label properties. */
  classNames?: string[];
  /** Channel names, one per channel of a multi-channel image (`attributes.voxseg.channels`). */
  channelNames?: string[];
  /** NIfTI geometry to restore on export; default: the image's header if it came from NIfTI. */
  nifti?: NiftiGeometry;
  /** Extra entries for `attributes.voxseg` (e.g. modality, source file). */
  attributes?: Record<string, unknown>;
  /** For a preprocessed case: how its grid maps back to the original (data/preprocess.ts). */
  preprocessing?: CasePreprocessing;
}

/**
 * Writes a case as an OME-Zarr 0.5 group at `dir`, atomically: everything goes to a hidden
 * sibling folder first, which is renamed over `dir` at the end.
 *
 * @example
 * const ct = await readNifti("a.nii.gz");
 * const seg = await readNifti("a_seg.nii.gz");
 * await writeCase("data/a.zarr", { image: ct, label: seg, name: "a" });
 * // two channels (axes c, z, y, x): { image: [ct, pet], channelNames: ["CT", "PET"], … }
 */
export async function writeCase(dir: string, options: WriteCaseOptions): Promise<void> {
  const { label, name, codec = "zstd" } = options;
  const channels = channelList(options.image, options.channelNames);
  const image = channels[0];
  if (!CASE_CODECS.includes(codec)) {
    throw new RangeError(`unknown codec "${codec}" (use ${CASE_CODECS.join(" or ")})`);
  }
  const chunks = chunkShape(options.chunks ?? 64);
  const imageDtype = options.imageDtype ??
    (channels.every((c) => chooseImageDtype(c.data) === "int16") ? "int16" : "float32");
  const imageData = channelMajor(channels, imageDtype);
  const labelData = label ? labelOnGrid(label, image) : undefined;
  const nifti = options.nifti ?? (image as Partial<NiftiVolume>).header;
  const attrs: CaseAttributes = {
    ...options.attributes,
    version: 1,
    affine: [...image.affine],
    imageDtype,
    ...(nifti ? { nifti: niftiGeometry(nifti) } : {}),
    ...(options.classNames ? { classNames: [...options.classNames] } : {}),
    ...(options.preprocessing ? { preprocessing: structuredClone(options.preprocessing) } : {}),
    ...(channels.length > 1 && options.channelNames ? { channels: [...options.channelNames] } : {}),
  };
  if (attrs.preprocessing) {
    checkPreprocessing(attrs.preprocessing, "writeCase");
    if (attrs.preprocessing.cropBox.size.some((s, i) => s !== image.shape[i])) {
      throw new RangeError(
        `preprocessing.cropBox.size [${attrs.preprocessing.cropBox.size}] differs from the ` +
          `image shape [${image.shape}]; the record must describe this image's grid`,
      );
    }
  }
  const C = channels.length > 1 ? channels.length : undefined;

  const absDir = resolve(dir);
  const tmp = tempSibling(absDir);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await writeJson(
      join(tmp, "zarr.json"),
      groupMetadata({
        ome: { version: OME_VERSION, multiscales: [multiscale(image.spacingMm, name, C)] },
        voxseg: attrs,
      }),
    );
    await writeArray(join(tmp, IMAGE_PATH), imageData, image.shape, chunks, codec, C);
    if (labelData) {
      await writeJson(
        join(tmp, "labels", "zarr.json"),
        groupMetadata({ ome: { version: OME_VERSION, labels: ["seg"] } }),
      );
      await writeJson(
        join(tmp, "labels", "seg", "zarr.json"),
        groupMetadata({
          ome: {
            version: OME_VERSION,
            "image-label": imageLabel(labelData, options.classNames),
            multiscales: [multiscale(image.spacingMm, name ? `${name} seg` : "seg")],
          },
        }),
      );
      await writeArray(join(tmp, LABEL_PATH), labelData, image.shape, chunks, codec);
    }
    await commitFolder(tmp, absDir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

function chunkShape(chunks: number | Shape3): Shape3 {
  const shape: Shape3 = typeof chunks === "number" ? [chunks, chunks, chunks] : chunks;
  if (shape.length !== 3 || shape.some((c) => !Number.isInteger(c) || c <= 0)) {
    throw new RangeError(`chunks must be 3 positive integers (D,H,W), got [${shape}]`);
  }
  return shape;
}

/** The label map's class indices, after checking that it lies on the image's grid. */
function labelOnGrid(label: Volume, image: Volume): Uint8Array {
  if (label.shape.length !== 3 || label.shape.some((s, i) => s !== image.shape[i])) {
    throw new RangeError(
      `label shape [${label.shape}] differs from image shape [${image.shape}] (D,H,W); ` +
        "the label map must be on the image's voxel grid",
    );
  }
  if (label.data.length !== image.data.length) {
    throw new RangeError(
      `label has ${label.data.length} voxels, shape [${label.shape}] needs ${image.data.length}`,
    );
  }
  return labelArray(label);
}

/**
 * The image's channels as a checked list: one volume or several on one grid (same shape,
 * spacing and affine), each finite; `names`, when given, one per channel.
 */
function channelList(image: Volume | readonly Volume[], names?: string[]): readonly Volume[] {
  const list = "data" in image ? [image as Volume] : image as readonly Volume[];
  if (list.length === 0) throw new RangeError("image: give at least one channel");
  list.forEach((c, i) => {
    const what = list.length > 1 ? `image channel ${i}` : "image";
    checkVolume(c, what);
    if (i > 0) checkSameChannelGrid(list[0], c, i);
    try {
      checkFiniteImage(c);
    } catch (e) {
      throw list.length > 1 ? new RangeError(`${what}: ${(e as Error).message}`) : e;
    }
  });
  if (names && names.length !== list.length) {
    throw new RangeError(
      `channelNames has ${names.length} names for ${list.length} channels; give one per channel`,
    );
  }
  return list;
}

/** Largest difference of spacing or affine entries (mm) accepted as the same grid. */
const GRID_TOLERANCE_MM = 1e-3;

function checkSameChannelGrid(ref: Volume, c: Volume, i: number): void {
  const differs = (a: number[], b: number[]) =>
    a.some((v, k) => !(Math.abs(v - b[k]) <= GRID_TOLERANCE_MM));
  if (c.shape.some((s, k) => s !== ref.shape[k])) {
    throw new RangeError(
      `image channel ${i}: shape [${c.shape}] differs from channel 0's [${ref.shape}] (D,H,W); ` +
        "every channel must lie on one voxel grid — resample it onto channel 0's",
    );
  }
  if (differs(c.spacingMm, ref.spacingMm) || differs(c.affine, ref.affine)) {
    throw new RangeError(
      `image channel ${i}: spacing or affine differs from channel 0's; every channel must lie ` +
        "on one voxel grid — resample it onto channel 0's",
    );
  }
}

/** The channels' voxels one after another (channel-major, x fastest) in the storage type. */
function channelMajor(channels: readonly Volume[], dtype: ImageDtype): Int16Array | Float32Array {
  const convert = (data: VoxelArray) =>
    dtype === "int16"
      ? toInt16(data)
      : data instanceof Float32Array
      ? data
      : Float32Array.from(data as ArrayLike<number>);
  if (channels.length === 1) return convert(channels[0].data);
  const n = channels[0].data.length;
  const out = dtype === "int16"
    ? new Int16Array(channels.length * n)
    : new Float32Array(channels.length * n);
  channels.forEach((c, i) => out.set(convert(c.data), i * n));
  return out;
}

/** int16 when every value is an integer in int16 range (lossless), else float32. */
function chooseImageDtype(data: VoxelArray): ImageDtype {
  if (data instanceof Int16Array || data instanceof Uint8Array || data instanceof Int8Array) {
    return "int16";
  }
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || v < -32768 || v > 32767) return "float32";
  }
  return "int16";
}

function toInt16(data: VoxelArray): Int16Array {
  if (data instanceof Int16Array) return data;
  const out = Int16Array.from(data as ArrayLike<number>);
  for (let i = 0; i < data.length; i++) {
    if (out[i] !== data[i]) {
      throw new RangeError(
        `image value ${data[i]} at flat index ${i} does not fit int16; use imageDtype "float32"`,
      );
    }
  }
  return out;
}

/**
 * Throws when an image holds NaN or ±Infinity, naming the first such voxel: a non-finite
 * intensity survives normalisation and turns every loss it touches into NaN.
 */
export function checkFiniteImage(image: Pick<Volume, "data" | "shape">): void {
  const { data, shape } = image;
  if (!(data instanceof Float32Array || data instanceof Float64Array)) return; // integers are finite
  let bad = 0, first = -1;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (bad++ === 0) first = i;
    }
  }
  if (bad === 0) return;
  throw new RangeError(
    `image has ${bad} non-finite voxel${bad === 1 ? "" : "s"} (NaN or ±Infinity), the first ` +
      `${data[first]} at ${voxelName(first, shape)}; replace them (e.g. with the background ` +
      "intensity) before converting",
  );
}

/**
 * A label map's values as uint8 class indices; refuses values that are not integers 0..255
 * (NaN included), naming the first bad voxel.
 */
export function labelArray(label: Pick<Volume, "data" | "shape">): Uint8Array {
  const { data, shape } = label;
  if (data instanceof Uint8Array) return data;
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    const r = Math.round(v);
    if (!(Math.abs(v - r) < 1e-3) || r < 0 || r > 255) {
      throw new RangeError(
        `label value ${v} at ${voxelName(i, shape)} is not an integer in 0..255; ` +
          "a label map holds class indices",
      );
    }
    out[i] = r;
  }
  return out;
}

function voxelName(i: number, shape: Shape3): string {
  const x = i % shape[2];
  const y = Math.floor(i / shape[2]) % shape[1];
  const z = Math.floor(i / (shape[2] * shape[1]));
  return `voxel (z=${z}, y=${y}, x=${x})`;
}

function groupMetadata(attributes: Record<string, unknown>) {
  return { zarr_format: 3, node_type: "group", attributes };
}

/** OME multiscales of one level; `channels` (C > 1) adds the leading channel axis. */
function multiscale(spacingMm: Shape3, name?: string, channels?: number) {
  const space = ["z", "y", "x"].map((axis) => ({ name: axis, type: "space", unit: "millimeter" }));
  return {
    ...(name ? { name } : {}),
    axes: channels ? [{ name: "c", type: "channel" }, ...space] : space,
    datasets: [{
      path: "0",
      coordinateTransformations: [{
        type: "scale",
        scale: channels ? [1, ...spacingMm] : [...spacingMm],
      }],
    }],
  };
}

/** OME `image-label` metadata: one property (and colour) per label value present or named. */
function imageLabel(labels: Uint8Array, classNames?: string[]) {
  const present = new Set<number>();
  for (let i = 0; i < labels.length; i++) present.add(labels[i]);
  for (let v = 1; v < (classNames?.length ?? 0); v++) present.add(v);
  present.delete(0);
  const values = [...present].sort((a, b) => a - b);
  return {
    colors: values.map((v) => ({ "label-value": v, rgba: labelColor(v) })),
    properties: values.map((v) => ({
      "label-value": v,
      ...(classNames?.[v] ? { name: classNames[v] } : {}),
    })),
    source: { image: "../../" },
  };
}

function labelColor(value: number): number[] {
  const palette = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]];
  return [...palette[(value - 1) % palette.length], 255];
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
}

type ChunkData = Int16Array | Float32Array | Uint8Array;

const DATA_TYPE: Record<string, string> = {
  Int16Array: "int16",
  Float32Array: "float32",
  Uint8Array: "uint8",
};

/**
 * Writes a Zarr v3 array: metadata, then every chunk that is not all fill (0). With `channels`
 * (C > 1), `data` holds C volumes of `shape` one after another and the array is c, z, y, x
 * with chunks of one channel (1, d, h, w); without, it is z, y, x.
 */
async function writeArray(
  dir: string,
  data: ChunkData,
  shape: Shape3,
  chunks: Shape3,
  codec: CaseCodec,
  channels?: number,
): Promise<void> {
  const compressor = codec === "zstd"
    ? { name: "zstd", configuration: { level: ZSTD_LEVEL, checksum: false } }
    : { name: "gzip", configuration: { level: GZIP_LEVEL } };
  await writeJson(join(dir, "zarr.json"), {
    zarr_format: 3,
    node_type: "array",
    shape: channels ? [channels, ...shape] : shape,
    data_type: DATA_TYPE[data.constructor.name],
    chunk_grid: {
      name: "regular",
      configuration: { chunk_shape: channels ? [1, ...chunks] : chunks },
    },
    chunk_key_encoding: { name: "default", configuration: { separator: "/" } },
    fill_value: 0,
    codecs: [{ name: "bytes", configuration: { endian: "little" } }, compressor],
    dimension_names: imageAxes(channels ?? 1),
    attributes: {},
  });
  const encode = chunkEncoder(codec);
  const n = shape[0] * shape[1] * shape[2];
  for (let c = 0; c < (channels ?? 1); c++) {
    // Chunk keys: c/cz/cy/cx for one channel, c/channel/cz/cy/cx for several.
    const root = channels ? join(dir, "c", String(c)) : join(dir, "c");
    await writeChunks(root, data.subarray(c * n, (c + 1) * n), shape, chunks, encode);
  }
}

/** Writes the chunks of one z, y, x volume under `root` (`root/cz/cy/cx`), skipping fill. */
async function writeChunks(
  root: string,
  data: ChunkData,
  shape: Shape3,
  chunks: Shape3,
  encode: (b: Uint8Array) => Promise<Uint8Array>,
): Promise<void> {
  const grid = shape.map((s, i) => Math.ceil(s / chunks[i]));
  const [cd, ch, cw] = chunks;
  const [, H, W] = shape;
  const chunk = new (data.constructor as new (n: number) => ChunkData)(cd * ch * cw);
  for (let cz = 0; cz < grid[0]; cz++) {
    for (let cy = 0; cy < grid[1]; cy++) {
      const folder = join(root, String(cz), String(cy));
      await Deno.mkdir(folder, { recursive: true });
      for (let cx = 0; cx < grid[2]; cx++) {
        // Edge chunks are stored full size, padded with the fill value (Zarr v3).
        chunk.fill(0);
        const z1 = Math.min(cd, shape[0] - cz * cd);
        const y1 = Math.min(ch, H - cy * ch);
        const x0 = cx * cw;
        const x1 = Math.min(cw, W - x0);
        let empty = true;
        for (let z = 0; z < z1; z++) {
          for (let y = 0; y < y1; y++) {
            const src = x0 + W * (cy * ch + y + H * (cz * cd + z));
            const row = data.subarray(src, src + x1);
            chunk.set(row, (z * ch + y) * cw);
            if (empty) empty = row.every((v) => v === 0);
          }
        }
        if (empty) continue;
        await Deno.writeFile(join(folder, String(cx)), await encode(littleEndianBytes(chunk)));
      }
    }
  }
}

function littleEndianBytes(chunk: ChunkData): Uint8Array {
  const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (HOST_LITTLE_ENDIAN || chunk.BYTES_PER_ELEMENT === 1) return bytes;
  const out = bytes.slice();
  const n = chunk.BYTES_PER_ELEMENT;
  for (let i = 0; i < out.length; i += n) out.subarray(i, i + n).reverse();
  return out;
}

function chunkEncoder(codec: CaseCodec): (b: Uint8Array) => Promise<Uint8Array> {
  if (codec === "gzip") return gzip;
  const zstd = Zstd.fromConfig({ id: "zstd", level: ZSTD_LEVEL });
  return async (bytes) => new Uint8Array(await zstd.encode(bytes));
}
