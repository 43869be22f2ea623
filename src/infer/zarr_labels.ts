/**
 * Writes a predicted label map as an OME-Zarr 0.5 label image, chunk by chunk as planes
 * arrive in z order — only one row of chunks (chunk depth × H × W bytes) is ever held:
 *
 * ```
 * case.zarr/labels/zarr.json        attributes.ome.labels gains "pred"
 * case.zarr/labels/pred/zarr.json   group: ome "image-label" (colours, class names) + multiscales
 * case.zarr/labels/pred/0/          uint8 array, the image's shape and chunking, zstd
 * ```
 *
 * The layout matches what `writeCase` writes for `labels/seg` (bytes + zstd codecs, "/" chunk
 * keys, all-zero chunks omitted), so every Zarr v3 reader — voxseg's included — reads it. The
 * group is assembled in a hidden sibling folder and renamed into place when complete.
 */

import { dirname, join } from "node:path";
import Zstd from "numcodecs/zstd";
import { commitFolder, tempSibling, writeFileAtomic } from "../base/atomic.ts";
import type { Shape3 } from "../data/volume.ts";

const OME_VERSION = "0.5";
const ZSTD_LEVEL = 3;

export interface LabelGroupOptions {
  shape: Shape3;
  /** Chunk shape D, H, W (the image's, so labels and image chunks align). */
  chunks: Shape3;
  spacingMm: Shape3;
  /** Class names by label value, stored as image-label properties. */
  classNames: string[];
  /** The label image's name (the folder name under labels/). */
  name: string;
  /**
   * Add `name` to the parent `labels/zarr.json` list (OME-NGFF labels); true when the group
   * is written inside a case's labels/ folder.
   */
  registerInParent?: boolean;
  /** Extra attributes stored under `attributes.voxseg` (model name, settings). */
  attributes?: Record<string, unknown>;
}

function palette(value: number): number[] {
  const colours = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]];
  return [...colours[(value - 1) % colours.length], 255];
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
}

/** A label image being written; see the module comment. */
export class ZarrLabelWriter {
  readonly dir: string;
  readonly #opts: LabelGroupOptions;
  readonly #tmp: string;
  readonly #row: Uint8Array;
  readonly #chunk: Uint8Array;
  readonly #present = new Set<number>();
  readonly #zstd = Zstd.fromConfig({ id: "zstd", level: ZSTD_LEVEL });
  /** Next plane expected; planes #rowZ0 … #next are buffered in #row. */
  #next = 0;
  #rowZ0 = 0;
  #closed = false;

  private constructor(dir: string, opts: LabelGroupOptions) {
    this.dir = dir;
    this.#opts = opts;
    this.#tmp = tempSibling(dir);
    const [cd, ch, cw] = opts.chunks;
    this.#row = new Uint8Array(cd * opts.shape[1] * opts.shape[2]);
    this.#chunk = new Uint8Array(cd * ch * cw);
  }

  /** Starts a label image at `dir` (replaced atomically on {@link close}). */
  static async create(dir: string, opts: LabelGroupOptions): Promise<ZarrLabelWriter> {
    if (opts.chunks.some((c) => !Number.isInteger(c) || c < 1)) {
      throw new RangeError(`chunks must be 3 positive integers, got [${opts.chunks}]`);
    }
    const w = new ZarrLabelWriter(dir, opts);
    await writeJson(join(w.#tmp, "0", "zarr.json"), {
      zarr_format: 3,
      node_type: "array",
      shape: opts.shape,
      data_type: "uint8",
      chunk_grid: { name: "regular", configuration: { chunk_shape: opts.chunks } },
      chunk_key_encoding: { name: "default", configuration: { separator: "/" } },
      fill_value: 0,
      codecs: [
        { name: "bytes", configuration: { endian: "little" } },
        { name: "zstd", configuration: { level: ZSTD_LEVEL, checksum: false } },
      ],
      dimension_names: ["z", "y", "x"],
      attributes: {},
    });
    return w;
  }

  /** Appends planes z0 … z0 + n (labels: n·H·W, x fastest); planes must arrive in order. */
  async write(z0: number, labels: Uint8Array): Promise<void> {
    const [D, H, W] = this.#opts.shape;
    const plane = H * W;
    if (z0 !== this.#next) {
      throw new Error(`label planes out of order: got z=${z0}, expected ${this.#next}`);
    }
    if (labels.length % plane !== 0 || z0 + labels.length / plane > D) {
      throw new RangeError(
        `${labels.length} label voxels are not whole planes inside ${D}×${H}×${W}`,
      );
    }
    const cd = this.#opts.chunks[0];
    let offset = 0;
    while (offset < labels.length) {
      const inRow = this.#next - this.#rowZ0;
      const take = Math.min(cd - inRow, (labels.length - offset) / plane);
      this.#row.set(labels.subarray(offset, offset + take * plane), inRow * plane);
      offset += take * plane;
      this.#next += take;
      if (this.#next - this.#rowZ0 === cd || this.#next === D) await this.#flushRow();
    }
  }

  /** Encodes the buffered row of chunks; chunks holding only background are not written. */
  async #flushRow(): Promise<void> {
    const [, H, W] = this.#opts.shape;
    const [cd, ch, cw] = this.#opts.chunks;
    const depth = this.#next - this.#rowZ0;
    const cz = this.#rowZ0 / cd;
    for (let cy = 0; cy * ch < H; cy++) {
      for (let cx = 0; cx * cw < W; cx++) {
        // Edge chunks are stored full size, padded with the fill value (Zarr v3).
        this.#chunk.fill(0);
        const y1 = Math.min(ch, H - cy * ch), x1 = Math.min(cw, W - cx * cw);
        let any = false;
        for (let z = 0; z < depth; z++) {
          for (let y = 0; y < y1; y++) {
            const src = (z * H + cy * ch + y) * W + cx * cw;
            const row = this.#row.subarray(src, src + x1);
            this.#chunk.set(row, (z * ch + y) * cw);
            for (let i = 0; i < row.length; i++) {
              if (row[i] !== 0) {
                any = true;
                this.#present.add(row[i]);
              }
            }
          }
        }
        if (!any) continue;
        const folder = join(this.#tmp, "0", "c", String(cz), String(cy));
        await Deno.mkdir(folder, { recursive: true });
        const bytes = new Uint8Array(await this.#zstd.encode(this.#chunk));
        await Deno.writeFile(join(folder, String(cx)), bytes);
      }
    }
    this.#rowZ0 = this.#next;
  }

  /** Writes the group metadata and moves the finished label image into place. */
  async close(): Promise<void> {
    const { shape, classNames, name, spacingMm } = this.#opts;
    if (this.#next !== shape[0]) {
      throw new Error(`label image incomplete: ${this.#next} of ${shape[0]} planes written`);
    }
    const values = new Set(this.#present);
    for (let v = 1; v < classNames.length; v++) values.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    await writeJson(join(this.#tmp, "zarr.json"), {
      zarr_format: 3,
      node_type: "group",
      attributes: {
        ome: {
          version: OME_VERSION,
          "image-label": {
            colors: sorted.map((v) => ({ "label-value": v, rgba: palette(v) })),
            properties: sorted.map((v) => ({
              "label-value": v,
              ...(classNames[v] ? { name: classNames[v] } : {}),
            })),
            ...(this.#opts.registerInParent ? { source: { image: "../../" } } : {}),
          },
          multiscales: [{
            name,
            axes: ["z", "y", "x"].map((a) => ({ name: a, type: "space", unit: "millimeter" })),
            datasets: [{
              path: "0",
              coordinateTransformations: [{ type: "scale", scale: [...spacingMm] }],
            }],
          }],
        },
        voxseg: { classNames, ...this.#opts.attributes },
      },
    });
    await commitFolder(this.#tmp, this.dir);
    this.#closed = true;
    if (this.#opts.registerInParent) await registerLabel(dirname(this.dir), name);
  }

  /** Discards what was written (the previous label image, if any, stays). */
  async abort(): Promise<void> {
    if (this.#closed) return;
    await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
  }
}

/** Adds `name` to `labelsDir/zarr.json`'s OME labels list, creating the group if needed. */
async function registerLabel(labelsDir: string, name: string): Promise<void> {
  const path = join(labelsDir, "zarr.json");
  let meta: { attributes?: { ome?: { labels?: string[] } } } = {};
  try {
    meta = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new Error(`cannot update ${path}: ${(e as Error).message}`);
    }
  }
  const attributes = meta.attributes ?? {};
  const ome = { version: OME_VERSION, ...attributes.ome };
  const labels = ome.labels ?? [];
  if (labels.includes(name)) return;
  const updated = {
    zarr_format: 3,
    node_type: "group",
    ...meta,
    attributes: { ...attributes, ome: { ...ome, labels: [...labels, name] } },
  };
  await writeFileAtomic(path, JSON.stringify(updated, null, 2) + "\n");
}
