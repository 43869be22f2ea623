/**
 * The training data loader: a pool of Web Workers that read, normalise and augment patches
 * ahead of the trainer.
 *
 * Determinism: the main thread draws every batch's patch requests, in batch order, from one
 * {@link patchSampler} stream, and each request carries its own augmentation seed; workers only
 * execute requests. So batch i holds the same bytes whatever the worker count or timing, and
 * batches are delivered in order.
 *
 * Memory: a batch's buffers are allocated on the consumer's thread, lent to a worker with the
 * request and transferred back filled — moved both ways, never copied. Allocating them on the
 * thread that drops them matters: batches allocated in the workers and received by transfer
 * were left uncollected on the consumer's thread for hundreds of MB before V8 collected them
 * (tests/data/loader_memory_test.ts); allocated there, they are collected as they go.
 *
 * Channels: a dataset of C > 1 image channels (`channels` in its manifest) gives batches of
 * [B, C, D, H, W], each channel normalised by its own scheme (`channelNorms`).
 */

import { type Dataset, readDataset, resolveCase, type Split } from "./dataset.ts";
import { withSplits } from "./folds.ts";
import { type Normalization, normalizationFromDataset } from "./normalize.ts";
import {
  caseChannelNormalizations,
  channelCount,
  resolveChannelNormalizations,
} from "./channels.ts";
import { ChunkCache } from "./chunk_cache.ts";
import { type CaseReader, openCase } from "./ome_zarr/reader.ts";
import { type Augmentation, type PatchRequest, patchSampler, readPatch } from "./sampler.ts";
import type { Shape3 } from "./volume.ts";

export interface LoaderOptions {
  /** Dataset folder, `dataset.json` path or URL. */
  dataset: string;
  patchSize: Shape3;
  batchSize: number;
  /** Worker count (default 2); 0 reads on the calling thread. */
  workers?: number;
  /** Batches requested ahead of the consumer (default 4). */
  prefetch?: number;
  seed: number;
  /** Share of foreground-centred patches (default 1/3). */
  foregroundFraction?: number;
  /** Default: ct-window for a CT dataset, zscore otherwise. One-channel datasets only. */
  norm?: Normalization;
  /**
   * One normalisation per channel (length C) for a dataset of C > 1 channels; default: by
   * channel (`resolveChannelNormalizations` with `auto`: the CT window for a CT channel, each
   * case's own z-score for the others).
   */
  channelNorms?: Normalization[];
  /** Off by default. */
  augment?: Augmentation;
  /** Cases to sample (default "train"). */
  split?: Split | "all";
  /** Each case's split, replacing the manifest's (a cross-validation fold, src/data/folds.ts). */
  caseSplits?: Record<string, Split>;
  /** Decoded-chunk cache budget of each worker, shared by the cases it opens (default 256 MiB). */
  cacheBytes?: number;
  /**
   * Index of the first batch (default 0): a resumed run continues the same stream, batch
   * `startBatch` holding what it would have held without the restart.
   */
  startBatch?: number;
  /**
   * A folder the dataset and its cases must stay inside (readDataset's `confineTo`): a server
   * sets it to its data root, so a manifest rewritten after the server checked it is refused.
   */
  confineTo?: string;
}

/** One batch, channels-first, ready for upload. */
export interface Batch {
  /** Position in the loader's stream, from 0. */
  index: number;
  /**
   * [B, C, D, H, W] normalised intensities (C = 1 for a one-channel dataset): each patch's C
   * channels one after another, each normalised by its own scheme.
   */
  image: Float32Array;
  /** [B, D, H, W] class indices. */
  label: Uint8Array;
  /** The same labels widened to u32, the element type the loss kernels read. */
  labelU32: Uint32Array;
  /** Case id of each patch. */
  cases: string[];
  requests: PatchRequest[];
}

export interface Loader extends AsyncIterableIterator<Batch> {
  readonly dataset: Dataset;
  /** Channel 0's normalisation (the only one for a one-channel dataset). */
  readonly norm: Normalization;
  /** Image channels of each patch: the C of [B, C, D, H, W]. */
  readonly channels: number;
  /** One normalisation per channel (length C). */
  readonly channelNorms: Normalization[];
  /** Batches finished and waiting for the consumer. */
  readonly ready: number;
  /** Stops the workers; pending and later `next()` calls end the iteration. */
  close(): void;
}

/** What the main thread sends a worker. */
export type WorkerRequest =
  | {
    type: "init";
    locations: Record<string, string>;
    patchSize: Shape3;
    /** Channel 0's normalisation. */
    norm: Normalization;
    /** Image channels (default 1). */
    channels?: number;
    /** One normalisation per channel, when there are C > 1. */
    channelNorms?: Normalization[];
    /**
     * Per case, one normalisation per channel, where a per-case kind (`zscore-case`) takes the
     * case's own statistics.
     */
    caseNorms?: Record<string, Normalization[]>;
    augment?: Augmentation;
    cacheBytes: number;
  }
  | ({ type: "batch"; index: number; requests: PatchRequest[] } & BatchBuffers);

/** A batch's arrays, sized for its requests; lent to a worker and returned filled. */
export interface BatchBuffers {
  image: Float32Array<ArrayBuffer>;
  label: Uint8Array<ArrayBuffer>;
  labelU32: Uint32Array<ArrayBuffer>;
}

/** What a worker answers. */
export type WorkerReply =
  | ({ type: "batch"; index: number } & BatchBuffers)
  | { type: "error"; index: number; message: string };

/**
 * Reads batches of patch requests: opens each case once, on first use, through one chunk cache.
 * Runs inside each worker (and on the calling thread when `workers` is 0).
 */
export class BatchReader {
  #readers = new Map<string, Promise<CaseReader>>();
  #cache: ChunkCache;

  /** @param options.syncReads read local chunk files synchronously (in a loader worker). */
  constructor(
    readonly init: Extract<WorkerRequest, { type: "init" }>,
    readonly options: { syncReads?: boolean } = {},
  ) {
    this.#cache = new ChunkCache(init.cacheBytes);
  }

  #open(caseId: string): Promise<CaseReader> {
    let reader = this.#readers.get(caseId);
    if (!reader) {
      const location = this.init.locations[caseId];
      if (!location) {
        throw new Error(`batch names case "${caseId}", which the loader does not know`);
      }
      reader = openCase(location, { cache: this.#cache, syncReads: this.options.syncReads });
      // A failed open is not cached, so a transient error (HTTP) can be retried.
      reader.catch(() => this.#readers.delete(caseId));
      this.#readers.set(caseId, reader);
    }
    return reader;
  }

  /** Reads the patches of `requests` into `buffers` (see {@link batchBuffers}). */
  async read(
    index: number,
    requests: PatchRequest[],
    buffers: BatchBuffers,
  ): Promise<Extract<WorkerReply, { type: "batch" }>> {
    const { patchSize, norm, augment, channels = 1 } = this.init;
    const voxels = patchSize[0] * patchSize[1] * patchSize[2];
    const { image, label, labelU32 } = buffers;
    if (
      image.length !== requests.length * channels * voxels ||
      label.length * channels !== image.length
    ) {
      throw new RangeError(
        `batch ${index}: buffers of ${image.length} voxels for ${requests.length} patches of ` +
          `${channels > 1 ? `${channels}×` : ""}${voxels}`,
      );
    }
    const norms = this.init.channelNorms ?? [norm];
    // Each patch is read straight into its place in the batch: no per-patch arrays to copy.
    await Promise.all(requests.map(async (request, b) => {
      await readPatch(
        await this.#open(request.caseId),
        request,
        patchSize,
        this.init.caseNorms?.[request.caseId] ?? norms,
        augment,
        {
          image: image.subarray(b * channels * voxels, (b + 1) * channels * voxels),
          label: label.subarray(b * voxels, (b + 1) * voxels),
        },
      );
    }));
    labelU32.set(label);
    return { type: "batch", index, image, label, labelU32 };
  }
}

/** Fresh arrays for a batch of `patches` patches of `patchSize` with `channels` channels. */
export function batchBuffers(patches: number, patchSize: Shape3, channels = 1): BatchBuffers {
  const n = patches * patchSize[0] * patchSize[1] * patchSize[2];
  return {
    image: new Float32Array(channels * n),
    label: new Uint8Array(n),
    labelU32: new Uint32Array(n),
  };
}

/**
 * Batches a worker is given at once: the one it reads and the next, so that it starts the next
 * as soon as it posts one back instead of idling until the main thread answers (a worker reads
 * its batches one after another, in the order given).
 */
const WORKER_DEPTH = 2;

interface Slot {
  requests: PatchRequest[];
  result?: Extract<WorkerReply, { type: "batch" }>;
  error?: Error;
  waiter?: { resolve: () => void };
}

/**
 * Opens a dataset and starts loading batches.
 *
 * @example
 * const loader = await createLoader({ dataset: "data/synth", patchSize: [32, 64, 64],
 *   batchSize: 2, seed: 0 });
 * for await (const batch of loader) { ...; if (done) break; } // break closes the loader
 */
export async function createLoader(options: LoaderOptions): Promise<Loader> {
  const { patchSize, batchSize, seed, workers = 2, prefetch = 4 } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  if (!Number.isInteger(workers) || workers < 0) {
    throw new RangeError(`workers must be an integer ≥ 0, got ${workers}`);
  }
  if (!Number.isInteger(prefetch) || prefetch < 1) {
    throw new RangeError(`prefetch must be an integer ≥ 1, got ${prefetch}`);
  }
  const startBatch = options.startBatch ?? 0;
  if (!Number.isInteger(startBatch) || startBatch < 0) {
    throw new RangeError(`startBatch must be an integer ≥ 0, got ${startBatch}`);
  }
  const read = await readDataset(options.dataset, { confineTo: options.confineTo });
  const dataset = options.caseSplits ? withSplits(read, options.caseSplits) : read;
  const { norm, channelNorms } = loaderNorms(dataset, options);
  const sampler = patchSampler(dataset, {
    patchSize,
    seed,
    split: options.split,
    foregroundFraction: options.foregroundFraction,
  });
  // Requests are pure draws of the seeded stream: skipping batches reads nothing.
  for (let i = 0; i < startBatch * batchSize; i++) sampler.next();
  const locations: Record<string, string> = {};
  for (const c of dataset.cases) locations[c.id] = resolveCase(dataset, c.id);
  const norms = channelNorms ?? [norm];
  const init: WorkerRequest = {
    type: "init",
    locations,
    patchSize,
    norm,
    ...(channelNorms ? { channels: channelNorms.length, channelNorms } : {}),
    ...(norms.some((n) => n.kind === "zscore-case")
      ? { caseNorms: caseNormalizations(dataset, norms) }
      : {}),
    augment: options.augment,
    cacheBytes: options.cacheBytes ?? 256 * 2 ** 20,
  };
  return new WorkerLoader(dataset, norms, init, sampler, batchSize, workers, prefetch, startBatch);
}

/**
 * The loader's normalisations: for one channel `norm` (default ct-window for CT, else
 * zscore); for C > 1 channels one per channel (`channelNorms`, default chosen by channel).
 */
function loaderNorms(
  dataset: Dataset,
  options: LoaderOptions,
): { norm: Normalization; channelNorms?: Normalization[] } {
  const channels = channelCount(dataset);
  if (channels === 1) {
    if (options.channelNorms && options.channelNorms.length !== 1) {
      throw new RangeError(
        `channelNorms has ${options.channelNorms.length} entries but dataset ` +
          `"${dataset.name}" has one image channel`,
      );
    }
    const norm = options.channelNorms?.[0] ?? options.norm ??
      normalizationFromDataset(dataset, dataset.modality === "CT" ? "ct-window" : "zscore");
    return { norm };
  }
  if (options.norm && !options.channelNorms) {
    throw new RangeError(
      `dataset "${dataset.name}" has ${channels} image channels (${
        dataset.channels!.join(", ")
      }): ` +
        "give one normalisation per channel (channelNorms), not one norm",
    );
  }
  const channelNorms = options.channelNorms ??
    resolveChannelNormalizations(dataset, { kind: "auto" });
  if (channelNorms.length !== channels) {
    throw new RangeError(
      `channelNorms has ${channelNorms.length} entries but dataset "${dataset.name}" has ` +
        `${channels} image channels (${dataset.channels!.join(", ")}); give one per channel`,
    );
  }
  return { norm: channelNorms[0], channelNorms };
}

/**
 * Each case's own normalisations (one per channel) for a per-case kind, resolved before the
 * first batch so that a case without statistics stops the run before training starts.
 */
function caseNormalizations(
  dataset: Dataset,
  norms: Normalization[],
): Record<string, Normalization[]> {
  const out: Record<string, Normalization[]> = {};
  for (const c of dataset.cases) {
    try {
      out[c.id] = caseChannelNormalizations(c, norms);
    } catch (e) {
      throw new Error(`dataset "${dataset.name}", ${(e as Error).message}`);
    }
  }
  return out;
}

class WorkerLoader implements Loader {
  #slots = new Map<number, Slot>();
  #queue: number[] = [];
  /** Batches each worker holds (reading or queued). */
  #inFlight = new Map<Worker, number>();
  #pool: Worker[] = [];
  #local?: BatchReader;
  /** Batches whose requests were drawn, handed out by next(), and delivered. */
  #scheduled: number;
  #claimed: number;
  #delivered: number;
  #closed = false;
  #failure?: Error;

  readonly norm: Normalization;
  readonly channels: number;

  constructor(
    readonly dataset: Dataset,
    readonly channelNorms: Normalization[],
    readonly init: Extract<WorkerRequest, { type: "init" }>,
    readonly sampler: Generator<PatchRequest, never>,
    readonly batchSize: number,
    workers: number,
    readonly prefetch: number,
    startBatch: number,
  ) {
    this.norm = channelNorms[0];
    this.channels = channelNorms.length;
    this.#scheduled = this.#claimed = this.#delivered = startBatch;
    if (workers === 0) this.#local = new BatchReader(init);
    for (let w = 0; w < workers; w++) {
      const worker = new Worker(new URL("./loader_worker.ts", import.meta.url).href, {
        type: "module",
      });
      worker.onmessage = (e: MessageEvent<WorkerReply>) => this.#onReply(worker, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fail(new Error(`loader worker failed: ${e.message}`));
      };
      worker.onmessageerror = () =>
        this.#fail(new Error("loader worker sent an unreadable message"));
      worker.postMessage(init);
      this.#pool.push(worker);
      this.#inFlight.set(worker, 0);
    }
    this.#fill();
  }

  get ready(): number {
    let n = 0;
    for (const slot of this.#slots.values()) if (slot.result) n++;
    return n;
  }

  /**
   * Keeps `prefetch` batches requested beyond the ones delivered, and at least up to
   * `through` (concurrent next() calls may claim more than `prefetch` at once).
   */
  #fill(through = 0) {
    while (
      !this.#closed &&
      (this.#scheduled - this.#delivered < this.prefetch || this.#scheduled <= through)
    ) {
      const index = this.#scheduled++;
      const requests = Array.from({ length: this.batchSize }, () => this.sampler.next().value);
      this.#slots.set(index, { requests });
      this.#queue.push(index);
    }
    this.#dispatch();
  }

  #buffers(): BatchBuffers {
    return batchBuffers(this.batchSize, this.init.patchSize, this.channels);
  }

  #dispatch() {
    if (this.#local) {
      for (const index of this.#queue.splice(0)) {
        this.#local.read(index, this.#slots.get(index)!.requests, this.#buffers()).then(
          (reply) => this.#settle(index, reply),
          (e) => this.#fail(new Error(`loading batch ${index}: ${(e as Error).message}`)),
        );
      }
      return;
    }
    while (this.#queue.length > 0) {
      const worker = this.#leastBusy();
      if (!worker) return;
      const index = this.#queue.shift()!;
      this.#inFlight.set(worker, this.#inFlight.get(worker)! + 1);
      const message: WorkerRequest = {
        type: "batch",
        index,
        requests: this.#slots.get(index)!.requests,
        ...this.#buffers(),
      };
      worker.postMessage(message, [
        message.image.buffer,
        message.label.buffer,
        message.labelU32.buffer,
      ]);
    }
  }

  /** The worker holding the fewest batches, if one holds fewer than {@link WORKER_DEPTH}. */
  #leastBusy(): Worker | undefined {
    let best: Worker | undefined, fewest = WORKER_DEPTH;
    for (const worker of this.#pool) {
      const n = this.#inFlight.get(worker)!;
      if (n < fewest) [best, fewest] = [worker, n];
    }
    return best;
  }

  #onReply(worker: Worker, reply: WorkerReply) {
    this.#inFlight.set(worker, Math.max(0, (this.#inFlight.get(worker) ?? 1) - 1));
    if (reply.type === "error") {
      this.#fail(new Error(`loading batch ${reply.index}: ${reply.message}`));
      return;
    }
    this.#settle(reply.index, reply);
    this.#dispatch();
  }

  #settle(index: number, reply: Extract<WorkerReply, { type: "batch" }>) {
    const slot = this.#slots.get(index);
    if (!slot) return; // closed meanwhile
    slot.result = reply;
    slot.waiter?.resolve();
  }

  #fail(error: Error) {
    if (this.#failure || this.#closed) return;
    this.#failure = error;
    for (const slot of this.#slots.values()) slot.waiter?.resolve();
    this.#terminate();
  }

  #terminate() {
    for (const worker of this.#pool) worker.terminate();
    this.#pool = [];
    this.#inFlight.clear();
    this.#queue = [];
  }

  async next(): Promise<IteratorResult<Batch>> {
    if (this.#failure) throw this.#failure;
    if (this.#closed) return { done: true, value: undefined };
    // Claim the index now, so overlapping next() calls get consecutive batches.
    const index = this.#claimed++;
    this.#fill(index);
    const slot = this.#slots.get(index)!;
    if (!slot.result) {
      await new Promise<void>((resolve) => (slot.waiter = { resolve }));
    }
    if (this.#failure) throw this.#failure;
    if (this.#closed || !slot.result) return { done: true, value: undefined };
    this.#slots.delete(index);
    this.#delivered++;
    this.#fill();
    const { image, label, labelU32 } = slot.result;
    return {
      done: false,
      value: {
        index,
        image,
        label,
        labelU32,
        cases: slot.requests.map((r) => r.caseId),
        requests: slot.requests,
      },
    };
  }

  return(): Promise<IteratorResult<Batch>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#terminate();
    for (const slot of this.#slots.values()) slot.waiter?.resolve();
    this.#slots.clear();
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
