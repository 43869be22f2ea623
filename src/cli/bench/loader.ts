/**
 * Loader benchmarks, on a synthetic CT dataset of compressed (zstd, 64³ chunks) local OME-Zarr
 * cases generated once under data/bench-loader: 12 cases of 128×256×256, split 6 train and 6
 * val, 24 MiB decoded each.
 *
 * - throughput: patches per second for 64³ and 96³ patches, batches of 2, with 1 and 2
 *   workers, timed over a fixed number of batches after a warm-up, drawn from all 12 cases.
 *   Each worker's chunk cache gets {@link THROUGHPUT_CACHE_BYTES}, a fraction of the decoded
 *   dataset, so the timed batches decompress chunks as training on a real dataset does
 *   instead of reading a warm cache.
 * - `loader/rss-vs-cache`: streams 64³ patches in a fresh process, samples its resident
 *   memory every 20 ms and reports the peak (and the peak of each quarter of the run, to show
 *   it does not creep up). Three runs: a 16 MiB budget (2 workers × 8 MiB) over the train
 *   split (144 MiB decoded, 9× the budget) and over all cases (288 MiB, 18×) — the same peak
 *   for twice the data — and a budget larger than the train split, to show what the bound
 *   holds back.
 *
 * The memory runs happen in a child process (the same CLI, told what to run by the
 * {@link RSS_ENV} variable) so that generating the dataset and the throughput runs do not
 * inflate what they measure.
 */

import { join } from "node:path";
import { type BenchResult, type BenchSuite, selfArgs } from "./suite.ts";
import { ensureSynthDataset } from "../synth.ts";
import { readDataset, resolveCase, type Split } from "../../data/dataset.ts";
import { createLoader, type Loader } from "../../data/loader.ts";
import { openCase } from "../../data/ome_zarr/reader.ts";
import type { Shape3 } from "../../data/volume.ts";

/** Where the benchmark dataset is generated, from the working directory (git-ignored, kept). */
export const BENCH_DATASET = "data/bench-loader";
const BENCH_CASES = 12;
const BENCH_SHAPE: Shape3 = [128, 256, 256];
const MiB = 2 ** 20;
/** Chunk-cache budget of each worker in the throughput cases. */
export const THROUGHPUT_CACHE_BYTES = 32 * MiB;
const RSS_ENV = "VOXSEG_BENCH_LOADER_RSS";

/** One throughput case: patch size, worker count, batch size. */
export interface LoaderCase {
  name: string;
  patchSize: Shape3;
  workers: number;
  batchSize: number;
}

/** The throughput cases, shared with bench/loader_bench.ts. */
export function loaderCases(): LoaderCase[] {
  const cases: LoaderCase[] = [];
  for (const edge of [64, 96]) {
    for (const workers of [1, 2]) {
      cases.push({
        name: `loader/${edge}³ batch 2, ${workers} worker${workers > 1 ? "s" : ""}`,
        patchSize: [edge, edge, edge],
        workers,
        batchSize: 2,
      });
    }
  }
  return cases;
}

/**
 * Generates the benchmark dataset (12 synthetic CTs of 128×256×256, zstd, 64³ chunks, half
 * train, half val) unless it is already there (~20 s once; a dataset from an older generator is
 * replaced); returns its folder.
 */
export async function ensureBenchDataset(dir = BENCH_DATASET): Promise<string> {
  const options = { cases: BENCH_CASES, shape: BENCH_SHAPE, seed: 0, val: 0.5, test: 0 };
  await ensureSynthDataset(dir, options);
  return dir;
}

/** Opens a loader as a benchmark case says (no augmentation; default: every dataset case). */
export function openLoader(
  dataset: string,
  c: LoaderCase,
  cacheBytes: number,
  split: Split | "all" = "all",
): Promise<Loader> {
  return createLoader({
    dataset,
    patchSize: c.patchSize,
    batchSize: c.batchSize,
    workers: c.workers,
    seed: 1,
    split,
    cacheBytes,
  });
}

/**
 * Takes `batches` batches and returns how many the workers produced meanwhile and how long it
 * took. Batches already waiting when the clock starts are not counted; those finished and
 * waiting when it stops are.
 */
export async function timeBatches(
  loader: Loader,
  batches: number,
): Promise<{ produced: number; seconds: number }> {
  const readyAtStart = loader.ready;
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) {
    const { done } = await loader.next();
    if (done) throw new Error(`the loader ended after ${i} of ${batches} timed batches`);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { produced: batches - readyAtStart + loader.ready, seconds };
}

async function throughput(
  dataset: string,
  c: LoaderCase,
  { warmup, batches }: { warmup: number; batches: number },
): Promise<BenchResult> {
  const loader = await openLoader(dataset, c, THROUGHPUT_CACHE_BYTES);
  try {
    for (let i = 0; i < warmup; i++) await loader.next();
    const { produced, seconds } = await timeBatches(loader, batches);
    return {
      name: c.name,
      patches_per_s: (produced * c.batchSize) / seconds,
      rss_mb: Deno.memoryUsage().rss / MiB,
      cache_mb_per_worker: THROUGHPUT_CACHE_BYTES / MiB,
      patches: produced * c.batchSize,
    };
  } finally {
    loader.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Resident memory against the cache budget

interface RssRun {
  dataset: string;
  split: Split | "all";
  workers: number;
  cacheBytesPerWorker: number;
  patches: number;
}

/**
 * Decoded bytes of every chunk (image and label) of the cases of a split, and their bytes on
 * disk.
 */
async function datasetBytes(
  dir: string,
  split: Split | "all",
): Promise<{ decoded: number; disk: number }> {
  const dataset = await readDataset(dir);
  let decoded = 0, disk = 0;
  for (const entry of dataset.cases.filter((c) => split === "all" || c.split === split)) {
    const location = resolveCase(dataset, entry.id);
    const c = await openCase(location, { cacheBytes: 0 });
    const chunks = c.shape.reduce((n, s, i) => n * Math.ceil(s / c.chunks[i]), 1);
    const voxels = c.chunks[0] * c.chunks[1] * c.chunks[2];
    const imageBytes = c.imageDtype === "int16" ? 2 : 4;
    decoded += chunks * voxels * (imageBytes + (c.hasLabel ? 1 : 0));
    disk += await folderBytes(location);
  }
  return { decoded, disk };
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    total += e.isDirectory ? await folderBytes(path) : (await Deno.stat(path)).size;
  }
  return total;
}

/**
 * Streams `patches` 64³ patches and samples the process's resident memory (main thread and
 * workers alike) every 20 ms. Runs in the child process.
 */
async function measureRss(run: RssRun): Promise<BenchResult> {
  const { decoded, disk } = await datasetBytes(run.dataset, run.split);
  const c: LoaderCase = {
    name: "rss",
    patchSize: [64, 64, 64],
    workers: run.workers,
    batchSize: 2,
  };
  const baseline = Deno.memoryUsage().rss;
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(Deno.memoryUsage().rss), 20);
  const loader = await openLoader(run.dataset, c, run.cacheBytesPerWorker, run.split);
  const t0 = performance.now();
  try {
    for (let i = 0; i < Math.ceil(run.patches / c.batchSize); i++) await loader.next();
  } finally {
    loader.close();
    clearInterval(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  const quarter = Math.ceil(samples.length / 4);
  const peaks = [0, 1, 2, 3].map((q) =>
    Math.max(...samples.slice(q * quarter, (q + 1) * quarter)) / MiB
  );
  const budget = run.workers * run.cacheBytesPerWorker;
  const peak = Math.max(...samples) / MiB;
  const data = (decoded / MiB).toFixed(0);
  return {
    name: `loader/rss-vs-cache budget ${budget / MiB} MiB data ${data} MiB`,
    rss_mb: peak,
    cache_budget_mb: budget / MiB,
    peak_minus_budget_mb: peak - budget / MiB,
    baseline_rss_mb: baseline / MiB,
    dataset_decoded_mb: decoded / MiB,
    dataset_disk_mb: disk / MiB,
    rss_peak_by_quarter_mb: peaks.map((p) => p.toFixed(0)).join("/"),
    patches: run.patches,
    patches_per_s: run.patches / seconds,
    workers: run.workers,
  };
}

/** Runs {@link measureRss} in a fresh process of this CLI and returns its result line. */
async function measureRssInChild(run: RssRun): Promise<BenchResult> {
  const cli = ["bench", "loader", "--json"];
  const args = selfArgs(cli);
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env: { [RSS_ENV]: JSON.stringify(run) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0) {
    throw new Error(
      `the memory benchmark's child process failed (exit ${out.code}): ` +
        new TextDecoder().decode(out.stderr).trim(),
    );
  }
  return JSON.parse(text.split("\n").at(-1)!);
}

export const suite: BenchSuite = {
  summary: "patches/s for 64³ and 96³ patches, 1 and 2 workers; RSS vs chunk-cache budget",
  async *run({ quick }): AsyncIterable<BenchResult> {
    const child = Deno.env.get(RSS_ENV);
    if (child) {
      yield await measureRss(JSON.parse(child));
      return;
    }
    const dataset = await ensureBenchDataset();
    const sizes = quick ? { warmup: 2, batches: 8 } : { warmup: 4, batches: 40 };
    for (const c of loaderCases()) yield await throughput(dataset, c, sizes);
    const patches = quick ? 200 : 400;
    const runs: { split: Split | "all"; cacheBytesPerWorker: number }[] = [
      { split: "train", cacheBytesPerWorker: 8 * MiB }, // 144 MiB of data, 16 MiB budget
      { split: "all", cacheBytesPerWorker: 8 * MiB }, // twice the data, the same budget
      { split: "train", cacheBytesPerWorker: 160 * MiB }, // each worker may cache it all
    ];
    for (const run of runs) yield await measureRssInChild({ dataset, workers: 2, patches, ...run });
  },
};
