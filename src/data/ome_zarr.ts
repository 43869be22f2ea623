/**
 * One case = one OME-Zarr 0.5 group (Zarr v3):
 *
 * ```
 * case.zarr/zarr.json              group; attributes.ome = multiscales (axes z,y,x in mm,
 *                                  scale = spacing), attributes.voxseg = affine, NIfTI geometry
 * case.zarr/0/                     image array: int16 (CT HU, any integer image) or float32
 * case.zarr/labels/zarr.json       attributes.ome.labels = ["seg"]
 * case.zarr/labels/seg/zarr.json   attributes.ome["image-label"] + multiscales
 * case.zarr/labels/seg/0/          label array: uint8
 * ```
 *
 * Chunks are written by voxseg (zarrita cannot encode gzip) and read with zarrita, so anything
 * that reads Zarr v3 reads these cases. Chunks that hold only the fill value (0) are not
 * written; Zarr readers treat a missing chunk as fill. Reads go chunk by chunk through a
 * {@link ChunkCache}, so a patch read touches only the chunks it overlaps.
 */

import * as zarr from "zarrita";
import FetchStore from "@zarrita/storage/fetch";
import FileSystemStore from "@zarrita/storage/fs";
import Zstd from "numcodecs/zstd";
import { join, resolve } from "node:path";
import { commitFolder, tempSibling } from "./atomic.ts";
import { ChunkCache } from "./chunk_cache.ts";
import { gzip, type NiftiGeometry, niftiGeometry, type NiftiVolume } from "./nifti.ts";
import {
  affineFromSpacing,
  checkVolume,
  type Shape3,
  type Volume,
  type VoxelArray,
} from "./volume.ts";

/** Chunk compressors voxseg writes. zstd is the default; gzip for readers without zstd. */
export type CaseCodec = "zstd" | "gzip";
export const CASE_CODECS: readonly CaseCodec[] = ["zstd", "gzip"];

/** Image storage type: int16 for integer images (CT HU), float32 otherwise. */
export type ImageDtype = "int16" | "float32";

export const IMAGE_PATH = "0";
export const LABEL_PATH = "labels/seg/0";
const OME_VERSION = "0.5";
const ZSTD_LEVEL = 3;
const GZIP_LEVEL = 6; // CompressionStream's fixed level, recorded in the metadata
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface WriteCaseOptions {
  image: Volume;
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
  /** NIfTI geometry to restore on export; default: the image's header if it came from NIfTI. */
  nifti?: NiftiGeometry;
  /** Extra entries for `attributes.voxseg` (e.g. modality, source file). */
  attributes?: Record<string, unknown>;
}

/** What `attributes.voxseg` of a case group holds. */
export interface CaseAttributes {
  version: 1;
  /** 4×4 row-major NIfTI affine (RAS+ mm from voxel i=x, j=y, k=z). */
  affine: number[];
  imageDtype: ImageDtype;
  /** The source NIfTI's geometry fields, for an export with the same header geometry. */
  nifti?: NiftiGeometry;
  classNames?: string[];
  [key: string]: unknown;
}

/**
 * Writes a case as an OME-Zarr 0.5 group at `dir`, atomically: everything goes to a hidden
 * sibling folder first, which is renamed over `dir` at the end.
 *
 * @example
 * const ct = await readNifti("a.nii.gz");
 * const seg = await readNifti("a_seg.nii.gz");
 * await writeCase("data/a.zarr", { image: ct, label: seg, name: "a" });
 */
export async function writeCase(dir: string, options: WriteCaseOptions): Promise<void> {
  const { image, label, name, codec = "zstd" } = options;
  checkVolume(image, "image");
  checkFiniteImage(image);
  if (!CASE_CODECS.includes(codec)) {
    throw new RangeError(`unknown codec "${codec}" (use ${CASE_CODECS.join(" or ")})`);
  }
  const chunks = chunkShape(options.chunks ?? 64);
  const imageDtype = options.imageDtype ?? chooseImageDtype(image.data);
  const imageData = imageDtype === "int16"
    ? toInt16(image.data)
    : image.data instanceof Float32Array
    ? image.data
    : Float32Array.from(image.data as ArrayLike<number>);
  let labelData: Uint8Array | undefined;
  if (label) {
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
    labelData = labelArray(label);
  }
  const nifti = options.nifti ?? (image as Partial<NiftiVolume>).header;
  const attrs: CaseAttributes = {
    ...options.attributes,
    version: 1,
    affine: [...image.affine],
    imageDtype,
    ...(nifti ? { nifti: niftiGeometry(nifti) } : {}),
    ...(options.classNames ? { classNames: [...options.classNames] } : {}),
  };

  const absDir = resolve(dir);
  const tmp = tempSibling(absDir);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await writeJson(
      join(tmp, "zarr.json"),
      groupMetadata({
        ome: { version: OME_VERSION, multiscales: [multiscale(image.spacingMm, name)] },
        voxseg: attrs,
      }),
    );
    await writeArray(join(tmp, IMAGE_PATH), imageData, image.shape, chunks, codec);
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

function multiscale(spacingMm: Shape3, name?: string) {
  return {
    ...(name ? { name } : {}),
    axes: ["z", "y", "x"].map((axis) => ({ name: axis, type: "space", unit: "millimeter" })),
    datasets: [{
      path: "0",
      coordinateTransformations: [{ type: "scale", scale: [...spacingMm] }],
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

/** Writes a Zarr v3 array: metadata, then every chunk that is not all fill (0). */
async function writeArray(
  dir: string,
  data: ChunkData,
  shape: Shape3,
  chunks: Shape3,
  codec: CaseCodec,
): Promise<void> {
  const compressor = codec === "zstd"
    ? { name: "zstd", configuration: { level: ZSTD_LEVEL, checksum: false } }
    : { name: "gzip", configuration: { level: GZIP_LEVEL } };
  await writeJson(join(dir, "zarr.json"), {
    zarr_format: 3,
    node_type: "array",
    shape,
    data_type: DATA_TYPE[data.constructor.name],
    chunk_grid: { name: "regular", configuration: { chunk_shape: chunks } },
    chunk_key_encoding: { name: "default", configuration: { separator: "/" } },
    fill_value: 0,
    codecs: [{ name: "bytes", configuration: { endian: "little" } }, compressor],
    dimension_names: ["z", "y", "x"],
    attributes: {},
  });
  const encode = chunkEncoder(codec);
  const grid = shape.map((s, i) => Math.ceil(s / chunks[i]));
  const [cd, ch, cw] = chunks;
  const [, H, W] = shape;
  const chunk = new (data.constructor as new (n: number) => ChunkData)(cd * ch * cw);
  for (let cz = 0; cz < grid[0]; cz++) {
    for (let cy = 0; cy < grid[1]; cy++) {
      const folder = join(dir, "c", String(cz), String(cy));
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

// ---------------------------------------------------------------------------------------------
// Reading

export interface OpenCaseOptions {
  /** Byte budget of the decoded-chunk cache created for this case (default 256 MiB). */
  cacheBytes?: number;
  /** Share an existing cache (e.g. one per loader) instead of creating one. */
  cache?: ChunkCache;
}

type ZarrArray = zarr.Array<zarr.DataType, zarr.Readable>;

/**
 * Opens a case written by {@link writeCase} from a local path or an http(s) URL.
 *
 * @example
 * const c = await openCase("data/a.zarr");
 * const patch = await c.readImage([10, -8, 0], [64, 64, 64], -1024); // padded where outside
 */
export async function openCase(location: string, options: OpenCaseOptions = {}) {
  const isUrl = /^https?:\/\//i.test(location);
  const path = location.startsWith("file://") ? new URL(location).pathname : location;
  const store: zarr.Readable = isUrl
    ? new FetchStore(location)
    : new FileSystemStore(resolve(path));
  const root = zarr.root(store);
  let group: zarr.Group<zarr.Readable>;
  try {
    group = await zarr.open.v3(root, { kind: "group" });
  } catch (e) {
    if (!isUrl && !(await Deno.stat(path).then(() => true, () => false))) {
      throw new Error(`case not found: ${location} does not exist`);
    }
    const metadata = `${location.replace(/\/+$/, "")}/zarr.json`;
    if (isUrl && zarr.isZarritaError(e, "NotFoundError")) {
      throw new Error(`case not found: ${metadata} answered HTTP 404`);
    }
    if (isUrl && !zarr.isZarritaError(e) && !(e instanceof SyntaxError)) {
      // The server is unreachable or answered an error status: not a statement about the data.
      throw new Error(`cannot fetch ${metadata}: ${withCause(e as Error)}`);
    }
    throw new Error(
      `not a voxseg case: ${location} has no readable Zarr v3 group (zarr.json): ` +
        `${(e as Error).message} — write cases with \`voxseg convert\``,
    );
  }
  const attrs = group.attrs as Record<string, unknown>;
  const voxseg = attrs.voxseg as CaseAttributes | undefined;
  const spacingMm = multiscaleSpacing(attrs, location);
  const image = await zarr.open.v3(root.resolve(IMAGE_PATH), { kind: "array" }).catch((e) => {
    throw new Error(`case ${location} has no image array "${IMAGE_PATH}": ${e.message}`);
  });
  let label: ZarrArray | undefined;
  try {
    label = await zarr.open.v3(root.resolve(LABEL_PATH), { kind: "array" });
  } catch (e) {
    if (!zarr.isZarritaError(e, "NotFoundError")) throw e;
  }
  const cache = options.cache ?? new ChunkCache(options.cacheBytes ?? 256 * 2 ** 20);
  return new CaseReader(location, image, label, spacingMm, voxseg, attrs, cache);
}

function multiscaleSpacing(attrs: Record<string, unknown>, location: string): Shape3 {
  const ome = attrs.ome as { multiscales?: unknown[] } | undefined;
  const ms = (ome?.multiscales ?? (attrs.multiscales as unknown[] | undefined))?.[0] as {
    datasets?: { coordinateTransformations?: { type: string; scale?: number[] }[] }[];
  } | undefined;
  const scale = ms?.datasets?.[0]?.coordinateTransformations?.find((t) => t.type === "scale")
    ?.scale;
  if (!scale || scale.length !== 3 || scale.some((s) => !(s > 0))) {
    throw new Error(
      `case ${location}: no OME multiscales "scale" with 3 positive spacings in zarr.json ` +
        "attributes — it was not written by voxseg",
    );
  }
  return [scale[0], scale[1], scale[2]];
}

/** Region and full-volume reads of one case; image and label share one chunk cache. */
export class CaseReader {
  /** D, H, W. */
  readonly shape: Shape3;
  readonly chunks: Shape3;
  readonly affine: number[];
  readonly imageDtype: ImageDtype;
  readonly hasLabel: boolean;
  /** The source NIfTI geometry, when the case came from NIfTI. */
  readonly nifti?: NiftiGeometry;
  readonly classNames?: string[];

  constructor(
    readonly location: string,
    readonly image: ZarrArray,
    readonly label: ZarrArray | undefined,
    readonly spacingMm: Shape3,
    voxseg: CaseAttributes | undefined,
    /** The group's attributes (`ome`, `voxseg`). */
    readonly attrs: Record<string, unknown>,
    readonly cache: ChunkCache,
  ) {
    if (image.shape.length !== 3) {
      throw new Error(`case ${location}: image has ${image.shape.length} axes (expected z,y,x)`);
    }
    if (image.dtype !== "int16" && image.dtype !== "float32") {
      throw new Error(`case ${location}: image dtype ${image.dtype} (expected int16 or float32)`);
    }
    this.shape = [image.shape[0], image.shape[1], image.shape[2]];
    this.chunks = [image.chunks[0], image.chunks[1], image.chunks[2]];
    this.imageDtype = image.dtype;
    this.affine = voxseg?.affine ?? affineFromSpacing(spacingMm);
    this.nifti = voxseg?.nifti;
    this.classNames = voxseg?.classNames;
    this.hasLabel = label !== undefined;
    if (label && label.shape.some((s, i) => s !== this.shape[i])) {
      throw new Error(
        `case ${location}: label shape [${label.shape}] differs from image shape [${this.shape}]`,
      );
    }
  }

  /**
   * Image voxels of the box `start`..`start+size` (z,y,x) as float32; voxels outside the
   * volume read as `fill`. Only the chunks the box overlaps are read.
   */
  readImage(start: Shape3, size: Shape3, fill = 0): Promise<Float32Array> {
    return this.#readRegion(
      this.image,
      IMAGE_PATH,
      start,
      size,
      new Float32Array(count(size)),
      fill,
    );
  }

  /** Label voxels of a box, as {@link readImage}; throws when the case has no label. */
  async readLabel(start: Shape3, size: Shape3, fill = 0): Promise<Uint8Array> {
    return await this.#readRegion(
      this.#label(),
      LABEL_PATH,
      start,
      size,
      new Uint8Array(count(size)),
      fill,
    );
  }

  /** The whole image as a volume (int16 or float32 as stored), bypassing the cache. */
  readFullImage(): Promise<Volume> {
    return this.#readFull(this.image);
  }

  /** The whole label map as a uint8 volume, bypassing the cache. */
  async readFullLabel(): Promise<Volume> {
    return await this.#readFull(this.#label());
  }

  #label(): ZarrArray {
    if (!this.label) {
      throw new Error(
        `case ${this.location} has no label array (${LABEL_PATH}); convert it with --label`,
      );
    }
    return this.label;
  }

  async #readFull(array: ZarrArray): Promise<Volume> {
    const chunk = await zarr.get(array);
    return {
      shape: [...this.shape],
      spacingMm: [...this.spacingMm],
      affine: [...this.affine],
      data: cOrder(chunk.data as VoxelArray, chunk.shape, chunk.stride),
    };
  }

  async #readRegion<T extends Float32Array | Uint8Array>(
    array: ZarrArray,
    arrayPath: string,
    start: Shape3,
    size: Shape3,
    out: T,
    fill: number,
  ): Promise<T> {
    checkBox(start, size);
    out.fill(fill);
    const lo = start.map((s) => Math.max(s, 0));
    const hi = start.map((s, i) => Math.min(s + size[i], this.shape[i]));
    if (lo.some((l, i) => l >= hi[i])) return out;
    const first = lo.map((l, i) => Math.floor(l / this.chunks[i]));
    const last = hi.map((h, i) => Math.floor((h - 1) / this.chunks[i]));
    const jobs: Promise<void>[] = [];
    for (let cz = first[0]; cz <= last[0]; cz++) {
      for (let cy = first[1]; cy <= last[1]; cy++) {
        for (let cx = first[2]; cx <= last[2]; cx++) {
          const coords: Shape3 = [cz, cy, cx];
          jobs.push(
            this.#chunk(array, arrayPath, coords).then((data) =>
              copyChunk(data, coords, this.chunks, lo, hi, start, size, out)
            ),
          );
        }
      }
    }
    await Promise.all(jobs);
    return out;
  }

  #chunk(array: ZarrArray, arrayPath: string, coords: Shape3): Promise<VoxelArray> {
    const key = `${this.location}#${arrayPath}#${coords.join("/")}`;
    return this.cache.get(key, async () => {
      const chunk = await array.getChunk(coords).catch((e) => {
        throw chunkError(this.location, arrayPath, coords, e);
      });
      return cOrder(chunk.data as VoxelArray, chunk.shape, chunk.stride);
    });
  }
}

/** A chunk read failure that names the chunk's file or URL and says what went wrong. */
function chunkError(location: string, arrayPath: string, coords: Shape3, e: unknown): Error {
  const file = `${location.replace(/\/+$/, "")}/${arrayPath}/c/${coords.join("/")}`;
  const hint = zarr.isZarritaError(e, "CodecPipelineError")
    ? " — the file is truncated or corrupt; convert the case again"
    : "";
  return new Error(`cannot read chunk ${file}: ${withCause(e as Error)}${hint}`);
}

/** An error's message with its cause's (fetch puts the network reason there). */
function withCause(e: Error): string {
  const cause = e.cause instanceof Error ? e.cause.message : undefined;
  return cause && !e.message.includes(cause) ? `${e.message} (${cause})` : e.message;
}

function count(size: Shape3): number {
  return size[0] * size[1] * size[2];
}

function checkBox(start: Shape3, size: Shape3): void {
  if (start.length !== 3 || start.some((s) => !Number.isInteger(s))) {
    throw new RangeError(`region start must be 3 integers (z,y,x), got [${start}]`);
  }
  if (size.length !== 3 || size.some((s) => !Number.isInteger(s) || s <= 0)) {
    throw new RangeError(`region size must be 3 positive integers (d,h,w), got [${size}]`);
  }
}

/** Copies the part of a chunk inside [lo, hi) into the region buffer `out` (origin `start`). */
function copyChunk(
  chunk: VoxelArray,
  coords: Shape3,
  chunks: Shape3,
  lo: number[],
  hi: number[],
  start: Shape3,
  size: Shape3,
  out: Float32Array | Uint8Array,
): void {
  const [cd, ch, cw] = chunks;
  const origin = coords.map((c, i) => c * chunks[i]);
  const z0 = Math.max(lo[0], origin[0]), z1 = Math.min(hi[0], origin[0] + cd);
  const y0 = Math.max(lo[1], origin[1]), y1 = Math.min(hi[1], origin[1] + ch);
  const x0 = Math.max(lo[2], origin[2]), x1 = Math.min(hi[2], origin[2] + cw);
  for (let z = z0; z < z1; z++) {
    for (let y = y0; y < y1; y++) {
      const src = ((z - origin[0]) * ch + (y - origin[1])) * cw + (x0 - origin[2]);
      const dst = ((z - start[0]) * size[1] + (y - start[1])) * size[2] + (x0 - start[2]);
      // TypedArray.set converts element types (int16 → float32) as it copies.
      out.set(chunk.subarray(src, src + (x1 - x0)), dst);
    }
  }
}

/** The data in C order (x fastest); zarrita may hand back another order for transposed arrays. */
function cOrder(data: VoxelArray, shape: number[], stride: number[]): VoxelArray {
  const [d, h, w] = shape;
  if (stride[0] === h * w && stride[1] === w && stride[2] === 1) return data;
  const out = new (data.constructor as new (n: number) => VoxelArray)(d * h * w);
  let i = 0;
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) out[i++] = data[z * stride[0] + y * stride[1] + x * stride[2]];
    }
  }
  return out;
}
