/**
 * Reads a case (see ./metadata.ts for the layout) with zarrita, from a folder or over HTTP(S).
 * Reads go chunk by chunk through a {@link ChunkCache}, so a patch read touches only the chunks
 * it overlaps. A case of C > 1 channels (axes c, z, y, x) reads every channel of a box at once,
 * channel-major: C blocks of D·H·W voxels.
 */

import * as zarr from "zarrita";
import FetchStore from "@zarrita/storage/fetch";
import FileSystemStore from "@zarrita/storage/fs";
import { join, resolve } from "node:path";
import { ChunkCache } from "../chunk_cache.ts";
import { useNativeCodecs } from "./codecs.ts";
import type { NiftiGeometry } from "../nifti_geometry.ts";
import { affineFromSpacing, type Shape3, type Volume, type VoxelArray } from "../volume.ts";
import {
  type CaseAttributes,
  type CasePreprocessing,
  checkPreprocessing,
  IMAGE_PATH,
  type ImageDtype,
  LABEL_PATH,
} from "./metadata.ts";

export interface OpenCaseOptions {
  /** Byte budget of the decoded-chunk cache created for this case (default 256 MiB). */
  cacheBytes?: number;
  /** Share an existing cache (e.g. one per loader) instead of creating one. */
  cache?: ChunkCache;
  /**
   * Read a local case's chunk files synchronously (default false): for a loader worker, whose
   * thread has nothing else to do meanwhile, it costs less than an asynchronous read.
   */
  syncReads?: boolean;
}

type ZarrArray = zarr.Array<zarr.DataType, zarr.Readable>;

// Chunks decode through Deno's native zstd and zlib rather than WebAssembly (./codecs.ts).
useNativeCodecs();

/**
 * Opens a case written by `writeCase` (./writer.ts) from a local path or an http(s) URL.
 *
 * @example
 * const c = await openCase("data/a.zarr");
 * const patch = await c.readImage([10, -8, 0], [64, 64, 64], -1024); // padded where outside
 * // c.channels > 1: c.channels·64³ voxels, channel-major; fill may be one value per channel
 */
export async function openCase(location: string, options: OpenCaseOptions = {}) {
  const isUrl = /^https?:\/\//i.test(location);
  const path = location.startsWith("file://") ? new URL(location).pathname : location;
  const store: zarr.Readable = isUrl
    ? new FetchStore(location)
    : new LocalStore(resolve(path), options.syncReads);
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

/**
 * zarrita's file store with whole-file reads done by one `Deno.readFile` rather than Node's
 * open, stat, read and close, each a round trip to the thread pool (a tenth of a loader
 * worker's time went there); with `sync`, by `Deno.readFileSync`, which skips the thread pool
 * too (for a thread that has nothing else to do meanwhile: a loader worker).
 */
class LocalStore extends FileSystemStore {
  constructor(readonly directory: string, readonly sync = false) {
    super(directory);
  }

  override async get(key: string): Promise<Uint8Array | undefined> {
    const path = join(this.directory, key.replace(/^\/+/, ""));
    try {
      return this.sync ? Deno.readFileSync(path) : await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }
}

/** z, y, x spacing from the OME multiscales; a leading channel axis (scale 1) is skipped. */
function multiscaleSpacing(attrs: Record<string, unknown>, location: string): Shape3 {
  const ome = attrs.ome as { multiscales?: unknown[] } | undefined;
  const ms = (ome?.multiscales ?? (attrs.multiscales as unknown[] | undefined))?.[0] as {
    axes?: { type?: string }[];
    datasets?: { coordinateTransformations?: { type: string; scale?: number[] }[] }[];
  } | undefined;
  const all = ms?.datasets?.[0]?.coordinateTransformations?.find((t) => t.type === "scale")
    ?.scale;
  const channelAxis = all?.length === 4 && ms?.axes?.[0]?.type === "channel";
  const scale = channelAxis ? all!.slice(1) : all;
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
  /** D, H, W (of each channel). */
  readonly shape: Shape3;
  /** D, H, W of a chunk. */
  readonly chunks: Shape3;
  /** Image channels: 1 for a z, y, x image; C for a c, z, y, x one. */
  readonly channels: number;
  /** Channel names, when the case records them (multi-channel cases from `convert --raw`). */
  readonly channelNames?: string[];
  /** Channels per chunk along c (1 as voxseg writes). */
  readonly #channelChunk: number;
  readonly affine: number[];
  readonly imageDtype: ImageDtype;
  readonly hasLabel: boolean;
  /** The source NIfTI geometry, when the case came from NIfTI. */
  readonly nifti?: NiftiGeometry;
  readonly classNames?: string[];
  /** On a preprocessed case: how its grid maps back to the original; undefined otherwise. */
  readonly preprocessing?: CasePreprocessing;

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
    if (image.shape.length !== 3 && image.shape.length !== 4) {
      throw new Error(
        `case ${location}: image has ${image.shape.length} axes (expected z,y,x or c,z,y,x)`,
      );
    }
    if (image.dtype !== "int16" && image.dtype !== "float32") {
      throw new Error(`case ${location}: image dtype ${image.dtype} (expected int16 or float32)`);
    }
    const a = image.shape.length - 3;
    this.channels = a ? image.shape[0] : 1;
    this.#channelChunk = a ? image.chunks[0] : 1;
    this.shape = [image.shape[a], image.shape[a + 1], image.shape[a + 2]];
    this.chunks = [image.chunks[a], image.chunks[a + 1], image.chunks[a + 2]];
    const names = voxseg?.channels;
    if (Array.isArray(names) && names.length === this.channels && this.channels > 1) {
      this.channelNames = names.map(String);
    }
    this.imageDtype = image.dtype;
    this.affine = voxseg?.affine ?? affineFromSpacing(spacingMm);
    this.nifti = voxseg?.nifti;
    this.classNames = voxseg?.classNames;
    if (voxseg?.preprocessing !== undefined) {
      checkPreprocessing(voxseg.preprocessing, `case ${location}`);
      const { size } = voxseg.preprocessing.cropBox;
      if (size.some((s, i) => s !== this.shape[i])) {
        throw new Error(
          `case ${location}: preprocessing.cropBox.size [${size}] differs from the image shape ` +
            `[${this.shape}] — preprocess the dataset again`,
        );
      }
      this.preprocessing = voxseg.preprocessing;
    }
    this.hasLabel = label !== undefined;
    if (label && label.shape.some((s, i) => s !== this.shape[i])) {
      throw new Error(
        `case ${location}: label shape [${label.shape}] differs from image shape [${this.shape}]`,
      );
    }
  }

  /**
   * Image voxels of the box `start`..`start+size` (z,y,x) as float32; voxels outside the
   * volume read as `fill`. Only the chunks the box overlaps are read. With C > 1 channels the
   * result holds C boxes one after another (channel-major, C·d·h·w) and `fill` may give one
   * value per channel. `out` (C·d·h·w voxels), when given, receives the voxels and is returned.
   */
  async readImage(
    start: Shape3,
    size: Shape3,
    fill: number | readonly number[] = 0,
    out?: Float32Array,
  ): Promise<Float32Array> {
    const n = count(size), C = this.channels;
    const fills = typeof fill === "number" ? Array(C).fill(fill) : [...fill];
    if (fills.length !== C) {
      throw new RangeError(`fill has ${fills.length} values for the ${C} channels of the image`);
    }
    return await this.#readChannels(start, size, fills, undefined, out ?? new Float32Array(C * n));
  }

  /**
   * The box of {@link readImage} with every stored voxel mapped through a lookup table, into
   * `out` (C·d·h·w voxels; returned): voxel v of channel c becomes `tables[c][v + 32768]`, and
   * voxels outside the volume `fills[c]` (both in output units). For int16 images only; one
   * table lookup replaces the int16 → float32 conversion and a separate pass over the patch
   * (normalisation, as the training loader uses it).
   */
  async readImageMapped(
    start: Shape3,
    size: Shape3,
    tables: readonly Float32Array[],
    fills: readonly number[],
    out: Float32Array,
  ): Promise<Float32Array> {
    const C = this.channels;
    if (this.imageDtype !== "int16") {
      throw new Error(
        `case ${this.location}: lookup tables map int16 images, not ${this.imageDtype}`,
      );
    }
    if (tables.length !== C || fills.length !== C) {
      throw new RangeError(
        `${tables.length} tables and ${fills.length} fills for the ${C} channels of the image`,
      );
    }
    if (tables.some((t) => t.length !== INT16_TABLE)) {
      throw new RangeError(`a lookup table of int16 voxels has ${INT16_TABLE} entries`);
    }
    return await this.#readChannels(start, size, fills, tables, out);
  }

  async #readChannels(
    start: Shape3,
    size: Shape3,
    fills: readonly number[],
    tables: readonly Float32Array[] | undefined,
    out: Float32Array,
  ): Promise<Float32Array> {
    const n = count(size), C = this.channels;
    if (out.length !== C * n) {
      throw new RangeError(`out holds ${out.length} voxels for ${C} channel(s) of ${n}`);
    }
    if (C === 1) {
      await this.#readRegion(this.image, IMAGE_PATH, start, size, out, {
        fill: fills[0],
        table: tables?.[0],
      });
      return out;
    }
    await Promise.all(
      fills.map((f, c) =>
        this.#readRegion(this.image, IMAGE_PATH, start, size, out.subarray(c * n, (c + 1) * n), {
          fill: f,
          channel: c,
          table: tables?.[c],
        })
      ),
    );
    return out;
  }

  /**
   * Label voxels of a box, as {@link readImage} (into `out` when given); throws when the case
   * has no label.
   */
  async readLabel(start: Shape3, size: Shape3, fill = 0, out?: Uint8Array): Promise<Uint8Array> {
    const n = count(size);
    if (out && out.length !== n) {
      throw new RangeError(`out holds ${out.length} voxels for a box of ${n}`);
    }
    return await this.#readRegion(
      this.#label(),
      LABEL_PATH,
      start,
      size,
      out ?? new Uint8Array(n),
      { fill },
    );
  }

  /**
   * The whole image as a volume (int16 or float32 as stored), bypassing the cache. A case of
   * several channels has no one image: read them with {@link readFullChannels}.
   */
  async readFullImage(): Promise<Volume> {
    if (this.channels > 1) {
      throw new Error(
        `the case has ${this.channels} image channels; read them with readFullChannels() ` +
          "(one volume each)",
      );
    }
    return await this.#readFull(this.image);
  }

  /** Every channel of the image as a volume (one for a one-channel case), bypassing the cache. */
  async readFullChannels(): Promise<Volume[]> {
    if (this.channels === 1) return [await this.#readFull(this.image)];
    const out: Volume[] = [];
    for (let c = 0; c < this.channels; c++) out.push(await this.#readFull(this.image, c));
    return out;
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

  async #readFull(array: ZarrArray, channel?: number): Promise<Volume> {
    const chunk = channel === undefined
      ? await zarr.get(array)
      : await zarr.get(array, [channel, null, null, null]);
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
    { fill, channel, table }: { fill: number; channel?: number; table?: Float32Array },
  ): Promise<T> {
    checkBox(start, size);
    const lo = start.map((s) => Math.max(s, 0));
    const hi = start.map((s, i) => Math.min(s + size[i], this.shape[i]));
    // The chunks tile the volume: a box inside it is all copied, so only one reaching out of
    // it needs the fill.
    if (lo.some((l, i) => l !== start[i] || hi[i] !== start[i] + size[i])) out.fill(fill);
    if (lo.some((l, i) => l >= hi[i])) return out;
    const first = lo.map((l, i) => Math.floor(l / this.chunks[i]));
    const last = hi.map((h, i) => Math.floor((h - 1) / this.chunks[i]));
    const jobs: Promise<void>[] = [];
    for (let cz = first[0]; cz <= last[0]; cz++) {
      for (let cy = first[1]; cy <= last[1]; cy++) {
        for (let cx = first[2]; cx <= last[2]; cx++) {
          const coords: Shape3 = [cz, cy, cx];
          jobs.push(
            this.#chunk(array, arrayPath, coords, channel).then((data) =>
              table
                ? copyChunkMapped(
                  data as Int16Array,
                  table,
                  coords,
                  this.chunks,
                  lo,
                  hi,
                  start,
                  size,
                  out as Float32Array,
                )
                : copyChunk(data, coords, this.chunks, lo, hi, start, size, out)
            ),
          );
        }
      }
    }
    await Promise.all(jobs);
    return out;
  }

  /**
   * The z, y, x chunk at `coords` (of `channel` on a multi-channel image), C order. A chunk
   * holding several channels is cached whole; each channel is a view of it.
   */
  async #chunk(
    array: ZarrArray,
    arrayPath: string,
    coords: Shape3,
    channel?: number,
  ): Promise<VoxelArray> {
    const cc = this.#channelChunk;
    const full = channel === undefined ? coords : [Math.floor(channel / cc), ...coords];
    const key = `${this.location}#${arrayPath}#${full.join("/")}`;
    const data = await this.cache.get(key, async () => {
      const chunk = await array.getChunk(full).catch((e) => {
        throw chunkError(this.location, arrayPath, full, e);
      });
      return cOrder(chunk.data as VoxelArray, chunk.shape, chunk.stride);
    });
    if (channel === undefined || cc === 1) return data;
    const n = this.chunks[0] * this.chunks[1] * this.chunks[2];
    return data.subarray((channel % cc) * n, (channel % cc + 1) * n);
  }
}

/** A chunk read failure that names the chunk's file or URL and says what went wrong. */
function chunkError(location: string, arrayPath: string, coords: number[], e: unknown): Error {
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

/** Entries of a lookup table over int16 voxels (index = voxel + 32768). */
export const INT16_TABLE = 65536;

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

/**
 * Calls `row(src, dst, n)` for every row of the part of a chunk (grid position `coords`, chunk
 * shape `chunks`) inside [lo, hi): `n` voxels from index `src` of the chunk go to index `dst` of
 * the region buffer (origin `start`, shape `size`).
 */
function chunkRows(
  coords: Shape3,
  chunks: Shape3,
  lo: number[],
  hi: number[],
  start: Shape3,
  size: Shape3,
  row: (src: number, dst: number, n: number) => void,
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
      row(src, dst, x1 - x0);
    }
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
  // TypedArray.set converts element types (int16 → float32) as it copies.
  chunkRows(coords, chunks, lo, hi, start, size, (src, dst, n) => {
    out.set(chunk.subarray(src, src + n), dst);
  });
}

/**
 * {@link copyChunk} of an int16 chunk through a lookup table: voxel v becomes
 * `table[v + 32768]`.
 */
function copyChunkMapped(
  chunk: Int16Array,
  table: Float32Array,
  coords: Shape3,
  chunks: Shape3,
  lo: number[],
  hi: number[],
  start: Shape3,
  size: Shape3,
  out: Float32Array,
): void {
  chunkRows(coords, chunks, lo, hi, start, size, (src, dst, n) => {
    for (let x = 0; x < n; x++) out[dst + x] = table[chunk[src + x] + 32768];
  });
}

/**
 * The data of a 3- or 4-axis chunk in C order (last axis fastest); zarrita may hand back
 * another order for transposed arrays.
 */
function cOrder(data: VoxelArray, shape: number[], stride: number[]): VoxelArray {
  let expect = 1, contiguous = true;
  for (let a = shape.length - 1; a >= 0; a--) {
    if (stride[a] !== expect && shape[a] > 1) contiguous = false;
    expect *= shape[a];
  }
  if (contiguous) return data;
  // A leading channel axis is handled as that many z, y, x blocks.
  const [c, d, h, w] = shape.length === 4 ? shape : [1, ...shape];
  const [sc, sz, sy, sx] = shape.length === 4 ? stride : [0, ...stride];
  const out = new (data.constructor as new (n: number) => VoxelArray)(c * d * h * w);
  let i = 0;
  for (let k = 0; k < c; k++) {
    for (let z = 0; z < d; z++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) out[i++] = data[k * sc + z * sz + y * sy + x * sx];
      }
    }
  }
  return out;
}
