/**
 * The models the server can predict with: checkpoints in the `--models` folder (`NAME.safetensors`,
 * or a run folder `NAME/` holding `best.safetensors` or `last.safetensors`) and the checkpoints
 * of finished training jobs. The folder is listed on every request, so a model copied in — or
 * produced by a training job — is served without a restart.
 *
 * Loaded networks are cached (a few, least recently used first out); load only while holding
 * the GPU lane, since evicting frees GPU buffers.
 */

import { join } from "node:path";
import { CHECKPOINT_FORMAT, CHECKPOINT_KEYS } from "../nn/checkpoint.ts";
import { MAX_HEADER_BYTES } from "../nn/safetensors.ts";
import { ApiError } from "./errors.ts";
import { type LoadedModel, loadModel } from "./inference.ts";

/** Model and job names: what may appear in a URL segment and a folder name. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A model the server knows of. */
export interface ModelEntry {
  name: string;
  /** Absolute path of the checkpoint. */
  path: string;
  source: "models-dir" | "job";
  /** The training job that produced it (source "job"). */
  jobId?: string;
}

/** What GET /v1/models lists per model. */
export interface ModelSummary {
  name: string;
  source: ModelEntry["source"];
  jobId?: string;
  sizeBytes: number;
  modifiedAt: string;
  /** Class names, background first; absent when the checkpoint cannot be read. */
  classes?: string[];
  /** Why the checkpoint cannot be used, when it cannot. */
  error?: string;
}

/** GET /v1/models/{name}: the summary plus the checkpoint's metadata. */
export interface ModelDetail extends ModelSummary {
  meta?: Record<string, unknown>;
}

export interface ModelRegistryOptions {
  /** The `--models` folder (may not exist yet). */
  dir?: string;
  /** Models produced by finished training jobs. */
  jobModels: () => ModelEntry[];
  /** Networks kept on the GPU at once. Default 2. */
  maxLoaded?: number;
}

interface CachedMeta {
  mtime: number;
  meta?: Record<string, unknown>;
  error?: string;
}

export class ModelRegistry {
  readonly #dir?: string;
  readonly #jobModels: () => ModelEntry[];
  readonly #maxLoaded: number;
  readonly #meta = new Map<string, CachedMeta>();
  /** Loaded networks by `path@mtime`, oldest use first. */
  readonly #loaded = new Map<string, LoadedModel>();

  constructor(options: ModelRegistryOptions) {
    this.#dir = options.dir;
    this.#jobModels = options.jobModels;
    this.#maxLoaded = options.maxLoaded ?? 2;
  }

  /** Every model, folder models first, each name once (a folder model shadows a job's). */
  async entries(): Promise<ModelEntry[]> {
    const found = await this.#scanDir();
    const names = new Set(found.map((m) => m.name));
    for (const m of this.#jobModels()) {
      if (!names.has(m.name)) {
        names.add(m.name);
        found.push(m);
      }
    }
    return found.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The model called `name`; 404 `model_not_found` when there is none. */
  async entry(name: string): Promise<ModelEntry> {
    const m = (await this.entries()).find((e) => e.name === name);
    if (!m) {
      throw new ApiError(404, "model_not_found", `no model named ${JSON.stringify(name)}`);
    }
    return m;
  }

  /** True when a model of that name exists. */
  async has(name: string): Promise<boolean> {
    return (await this.entries()).some((e) => e.name === name);
  }

  /** What the API shows of a model; 404 when its file vanished since it was listed. */
  async summary(entry: ModelEntry): Promise<ModelDetail> {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(entry.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new ApiError(404, "model_not_found", `model ${JSON.stringify(entry.name)} was removed`);
    }
    const mtime = stat.mtime?.getTime() ?? 0;
    let cached = this.#meta.get(entry.path);
    if (!cached || cached.mtime !== mtime) {
      cached = { mtime, ...(await readCheckpointMeta(entry.path)) };
      this.#meta.set(entry.path, cached);
    }
    const classes = cached.meta?.classNames;
    return {
      name: entry.name,
      source: entry.source,
      ...(entry.jobId ? { jobId: entry.jobId } : {}),
      sizeBytes: stat.size,
      modifiedAt: new Date(mtime).toISOString(),
      ...(Array.isArray(classes) ? { classes: classes as string[] } : {}),
      ...(cached.error ? { error: cached.error } : {}),
      ...(cached.meta ? { meta: cached.meta } : {}),
    };
  }

  /**
   * The network of `entry` on the GPU, from the cache when its file has not changed. Call only
   * while holding the GPU lane. Throws a 422 `invalid_model` when the checkpoint is unusable.
   */
  async load(entry: ModelEntry): Promise<LoadedModel> {
    let mtime: number;
    try {
      mtime = (await Deno.stat(entry.path)).mtime?.getTime() ?? 0;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new ApiError(404, "model_not_found", `model ${JSON.stringify(entry.name)} was removed`);
    }
    const key = `${entry.path}@${mtime}`;
    const hit = this.#loaded.get(key);
    if (hit) {
      this.#loaded.delete(key);
      this.#loaded.set(key, hit);
      return hit;
    }
    let loaded: LoadedModel;
    try {
      loaded = await loadModel(entry.path);
    } catch (e) {
      throw new ApiError(
        422,
        "invalid_model",
        `model ${JSON.stringify(entry.name)} cannot be loaded: ` +
          hidePaths((e as Error).message, entry.path),
      );
    }
    loaded.name = entry.name;
    for (const [k, m] of this.#loaded) {
      if (k.startsWith(`${entry.path}@`) || this.#loaded.size >= this.#maxLoaded) {
        this.#loaded.delete(k);
        m.dispose();
      }
    }
    this.#loaded.set(key, loaded);
    return loaded;
  }

  /** Frees every cached network. */
  dispose(): void {
    for (const m of this.#loaded.values()) m.dispose();
    this.#loaded.clear();
  }

  async #scanDir(): Promise<ModelEntry[]> {
    if (!this.#dir) return [];
    const out: ModelEntry[] = [];
    try {
      for await (const e of Deno.readDir(this.#dir)) {
        if (e.name.startsWith(".")) continue;
        const path = join(this.#dir, e.name);
        if (e.isFile || e.isSymlink) {
          const name = e.name.replace(/\.safetensors$/, "");
          if (
            name !== e.name && !e.name.endsWith(".optim.safetensors") && NAME_PATTERN.test(name)
          ) {
            out.push({ name, path, source: "models-dir" });
          }
        }
        if ((e.isDirectory || e.isSymlink) && NAME_PATTERN.test(e.name)) {
          for (const file of ["best.safetensors", "last.safetensors"]) {
            if (await isFile(join(path, file))) {
              out.push({ name: e.name, path: join(path, file), source: "models-dir" });
              break;
            }
          }
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * The voxseg metadata of a checkpoint, from its safetensors header only (the weights are not
 * read): `{ meta }`, or `{ error }` saying why the file is not a usable checkpoint.
 */
export async function readCheckpointMeta(
  path: string,
): Promise<{ meta?: Record<string, unknown>; error?: string }> {
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(path, { read: true });
    const lengthBytes = await readExactly(file, 8);
    const length = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (length > BigInt(MAX_HEADER_BYTES)) {
      return { error: `not a safetensors checkpoint: header length ${length} is too large` };
    }
    const header = JSON.parse(new TextDecoder().decode(await readExactly(file, Number(length))));
    const md = (header?.__metadata__ ?? {}) as Record<string, string>;
    const K = CHECKPOINT_KEYS;
    if (md[K.format] !== CHECKPOINT_FORMAT || md[K.kind] !== "model") {
      return { error: "not a voxseg model checkpoint (no voxseg format/kind metadata)" };
    }
    const json = (key: string) => (md[key] === undefined ? undefined : JSON.parse(md[key]));
    return {
      meta: {
        classNames: json(K.classNames),
        model: json(K.model),
        normalisation: json(K.normalisation),
        patchSize: json(K.patchSize),
        spacingMm: json(K.spacingMm),
        training: json(K.training),
      },
    };
  } catch (e) {
    return { error: `unreadable checkpoint: ${hidePaths((e as Error).message, path)}` };
  } finally {
    file?.close();
  }
}

async function readExactly(file: Deno.FsFile, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await file.read(buf.subarray(got));
    if (r === null) throw new Error(`truncated: wanted ${n} bytes, got ${got}`);
    got += r;
  }
  return buf;
}

/**
 * A checkpoint reader's message fit for a client: the checkpoint's own path becomes "the
 * checkpoint", any other absolute path a placeholder (where files live is not the client's
 * business).
 */
export function hidePaths(message: string, path: string): string {
  return message.split(path).join("the checkpoint")
    .replace(/(^|[\s'"(=:`])\/[^\s'"),`]+/g, "$1<path>");
}
