import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { isDeepStrictEqual as deepEqual } from "node:util";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { Random } from "../../src/base/random.ts";
import { channelCaseStats, withChannels } from "../../src/data/channels.ts";
import {
  buildManifest,
  caseStats,
  readDataset,
  resolveCase,
  writeDataset,
} from "../../src/data/dataset.ts";
import { type Batch, createLoader, type LoaderOptions } from "../../src/data/loader.ts";
import type { Normalization } from "../../src/data/normalize.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { writeCase } from "../../src/data/ome_zarr/writer.ts";
import { augmentationFromFlags, flipAxis, readPatch } from "../../src/data/sampler.ts";
import { affineFromSpacing, type Shape3 } from "../../src/data/volume.ts";
import { withTempDir } from "./temp_dir.ts";

const PATCH: Shape3 = [8, 24, 24];
const VOXELS = 8 * 24 * 24;
const AUGMENT = { flipAxes: [0, 1, 2], rotate90: true, intensityScale: 0.1, intensityShift: 0.1 };

/** A 5-case synthetic dataset in a temp folder (chunks of 8, so patches span several). */
async function withDataset(fn: (dir: string) => Promise<void>) {
  await withTempDir(async (dir) => {
    await generateSynthDataset(dir, { cases: 5, shape: [16, 32, 32], seed: 1, chunks: 8 });
    await fn(dir);
  });
}

function options(dataset: string, more: Partial<LoaderOptions> = {}): LoaderOptions {
  return { dataset, patchSize: PATCH, batchSize: 3, seed: 7, augment: AUGMENT, ...more };
}

async function takeBatches(opts: LoaderOptions, n: number): Promise<Batch[]> {
  const loader = await createLoader(opts);
  try {
    const out: Batch[] = [];
    for (let i = 0; i < n; i++) {
      const { value, done } = await loader.next();
      ok(!done);
      out.push(value);
    }
    return out;
  } finally {
    loader.close();
  }
}

async function until(condition: () => boolean, timeoutMs: number) {
  const end = performance.now() + timeoutMs;
  while (!condition() && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
}

Deno.test("loader: the same batches for 0, 1, 2 workers and after a restart, in order, [B,1,D,H,W]", async () => {
  await withDataset(async (dir) => {
    const [inline, one, two] = await Promise.all(
      [0, 1, 2].map((workers) => takeBatches(options(dir, { workers, prefetch: 3 }), 6)),
    );
    deepStrictEqual(two.map((b) => b.index), [0, 1, 2, 3, 4, 5]);
    for (let i = 0; i < 6; i++) {
      for (const other of [one[i], two[i]]) {
        deepStrictEqual(other.image, inline[i].image, `batch ${i} image`);
        deepStrictEqual(other.label, inline[i].label, `batch ${i} label`);
        deepStrictEqual(other.requests, inline[i].requests);
      }
      const b = two[i];
      strictEqual(b.image.length, 3 * VOXELS);
      // Each batch owns its (transferred) buffer.
      strictEqual(b.image.buffer.byteLength, 3 * VOXELS * 4);
      strictEqual(b.label.length, 3 * VOXELS);
      deepStrictEqual(b.labelU32, Uint32Array.from(b.label));
      deepStrictEqual(b.cases, b.requests.map((r) => r.caseId));
    }
    // The stream is not degenerate: lungs appear and batches differ.
    ok(two.some((b) => b.label.includes(1)));
    ok(two[0].image.some((v, k) => v !== two[1].image[k]));
    // Overlapping next() calls get consecutive batches.
    const loader = await createLoader(options(dir, { workers: 2, prefetch: 1 }));
    const overlapping = await Promise.all([loader.next(), loader.next(), loader.next()]);
    loader.close();
    deepStrictEqual(overlapping.map((r) => r.value.index), [0, 1, 2]);
    overlapping.forEach((r, i) => deepStrictEqual(r.value.image, inline[i].image));
    // A resumed stream continues where batch 4 would have been.
    const resumed = await takeBatches(options(dir, { workers: 1, startBatch: 4 }), 2);
    deepStrictEqual(resumed.map((b) => b.index), [4, 5]);
    deepStrictEqual(resumed[0].image, inline[4].image);
    deepStrictEqual(resumed[1].label, inline[5].label);
  });
});

Deno.test("loader: a batch holds exactly what readPatch reads for its requests", async () => {
  await withDataset(async (dir) => {
    const [batch] = await takeBatches(options(dir, { workers: 1, foregroundFraction: 1 }), 1);
    const dataset = await readDataset(dir);
    const norm = { kind: "ct-window", lo: -1000, hi: 400 } as const;
    for (let b = 0; b < 3; b++) {
      const request = batch.requests[b];
      ok(request.centeredOn > 0);
      const reader = await openCase(resolveCase(dataset, request.caseId));
      const patch = await readPatch(reader, request, PATCH, norm, AUGMENT);
      deepStrictEqual(batch.image.subarray(b * VOXELS, (b + 1) * VOXELS), patch.image);
      deepStrictEqual(batch.label.subarray(b * VOXELS, (b + 1) * VOXELS), patch.label);
    }
  });
});

Deno.test("loader: prefetch fills ahead of a slow consumer, up to its depth", async () => {
  await withDataset(async (dir) => {
    const loader = await createLoader(options(dir, { workers: 1, prefetch: 3 }));
    try {
      await loader.next();
      // The consumer is busy; the worker keeps loading until 3 batches wait.
      await until(() => loader.ready === 3, 10_000);
      strictEqual(loader.ready, 3);
      await new Promise((r) => setTimeout(r, 100));
      strictEqual(loader.ready, 3, "prefetch must not run further ahead than its depth");
      const { value } = await loader.next();
      strictEqual(value.index, 1);
      ok(loader.ready >= 2);
    } finally {
      loader.close();
    }
  });
});

Deno.test("loader: close() ends the iteration", async () => {
  await withDataset(async (dir) => {
    const loader = await createLoader(options(dir, { workers: 2, prefetch: 4 }));
    const pending = loader.next(); // in flight while closing
    loader.close();
    deepStrictEqual(await pending, { done: true, value: undefined });
    deepStrictEqual(await loader.next(), { done: true, value: undefined });
    // `for await` with break closes it too.
    let n = 0;
    for await (const batch of await createLoader(options(dir, { workers: 2 }))) {
      strictEqual(batch.index, n++);
      if (n === 2) break;
    }
    strictEqual(n, 2);
  });
});

Deno.test("loader: close() terminates the worker threads", async () => {
  // Counted in a separate process: test files share this one's threads.
  await withDataset(async (dir) => {
    const script = join(dir, "threads.ts");
    await Deno.writeTextFile(
      script,
      `import { createLoader } from ${
        JSON.stringify(import.meta.resolve("../../src/data/loader.ts"))
      };
const threads = () => [...Deno.readDirSync("/proc/self/task")].length;
const before = threads();
const loader = await createLoader({ dataset: ${JSON.stringify(dir)}, patchSize: [8, 16, 16],
  batchSize: 1, seed: 1, workers: 3 });
await loader.next();
const running = threads();
loader.close();
// Threads end asynchronously after terminate(): wait for them (a loaded machine is slow), up
// to 10 s; leaked workers never end.
for (let t = 0; t < 200 && threads() > before + 1; t++) {
  await new Promise((r) => setTimeout(r, 50));
}
console.log(JSON.stringify({ before, running, after: threads() }));`,
    );
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--config", config, script],
      stdout: "piped",
      stderr: "piped",
      // Workers left running keep the child alive: kill it rather than hang.
      signal: AbortSignal.timeout(60_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    const { before, running, after } = JSON.parse(text);
    ok(running >= before + 3, `3 workers: ${before} → ${running} threads`);
    ok(after <= before + 1, `after close(): ${after} threads, ${before} before the loader`);
  });
});

Deno.test("loader: a worker's error rejects next() with its message", async () => {
  await withDataset(async (dir) => {
    await Deno.remove(join(dir, "cases"), { recursive: true });
    for (const workers of [2, 0]) {
      const loader = await createLoader(options(dir, { workers }));
      await rejects(loader.next(), (e: Error) => {
        ok(
          /loading batch \d+: case not found: .*synth_\d+\.zarr does not exist/.test(e.message),
          e.message,
        );
        return true;
      });
      // The loader stays failed.
      await rejects(loader.next(), /case not found/);
      loader.close();
    }
  });
});

Deno.test("loader: rejects bad options before starting workers", async () => {
  await withDataset(async (dir) => {
    await rejects(createLoader(options(dir, { batchSize: 0 })), /batchSize/);
    await rejects(createLoader(options(dir, { prefetch: 0 })), /prefetch/);
    await rejects(createLoader(options(dir, { startBatch: -1 })), /startBatch/);
    await rejects(createLoader(options(join(dir, "missing"))), /no dataset\.json/);
  });
});

// ---------------------------------------------------------------------------------------------
// Two channels

const SHAPE2: Shape3 = [8, 12, 12];
const PATCH2: Shape3 = [4, 8, 8];
const V2 = 4 * 8 * 8;

/**
 * A two-case, two-channel dataset ("CT", "T2") with chunks of 4: channel 0 HU-like int16,
 * channel 1 `twice` ? exactly 2 × channel 0 : an MRI-like float image. Returns the raw arrays.
 */
async function twoChannelDataset(dir: string, twice = false) {
  const [D, H, W] = SHAPE2;
  const geometry = {
    shape: SHAPE2,
    spacingMm: [1, 1, 1] as Shape3,
    affine: affineFromSpacing([1, 1, 1]),
  };
  const raw: { ct: Int16Array; mr: Float32Array; label: Uint8Array }[] = [];
  const entries = [], foreground = [];
  for (let k = 0; k < 2; k++) {
    const rng = new Random(k);
    const ct = new Int16Array(D * H * W), label = new Uint8Array(D * H * W);
    for (let z = 0, i = 0; z < D; z++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++, i++) {
          label[i] = Math.hypot(z - 4, y - 6, x - 6) < 3 ? 1 : 0;
          ct[i] = label[i] ? -700 + rng.int(0, 200) : rng.int(-1200, 600);
        }
      }
    }
    const mr = twice
      ? Float32Array.from(ct, (v) => 2 * v)
      : Float32Array.from(ct, (v, i) => 300 + 0.1 * v + 5 * Math.sin(i));
    raw.push({ ct, mr, label });
    const channels = [{ ...geometry, data: ct }, { ...geometry, data: mr }];
    const labelVolume = { ...geometry, data: label };
    const caseRng = new Random(10 + k);
    const stats = { ...caseStats(channels[0], labelVolume, 2, caseRng) };
    const perChannel = channelCaseStats(channels, labelVolume, caseRng);
    foreground.push(perChannel.foreground!);
    const path = `cases/c${k}.zarr`;
    await writeCase(join(dir, path), {
      image: channels,
      label: labelVolume,
      chunks: 4,
      channelNames: ["CT", "T2"],
    });
    entries.push({
      id: `c${k}`,
      path,
      split: "train" as const,
      stats: { ...stats, imageChannels: perChannel.imageChannels },
    });
  }
  const manifest = buildManifest({
    name: "two",
    modality: "CT",
    classes: ["background", "lung"],
    cases: entries,
  });
  await writeDataset(dir, withChannels(manifest, ["CT", "T2"], foreground));
  return raw;
}

/** The raw voxels of a patch box (z, y, x), `fill` outside the volume. */
function rawBox(src: ArrayLike<number>, start: Shape3, fill: number): number[] {
  const [D, H, W] = SHAPE2, out: number[] = [];
  for (let z = start[0]; z < start[0] + PATCH2[0]; z++) {
    for (let y = start[1]; y < start[1] + PATCH2[1]; y++) {
      for (let x = start[2]; x < start[2] + PATCH2[2]; x++) {
        const inside = z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W;
        out.push(inside ? src[x + W * (y + H * z)] : fill);
      }
    }
  }
  return out;
}

Deno.test("loader, two channels: batches [B,2,D,H,W], CT window on channel 0, the case's own z-score on channel 1", async () => {
  await withTempDir(async (dir) => {
    const raw = await twoChannelDataset(dir);
    const loader = await createLoader({
      dataset: dir,
      patchSize: PATCH2,
      batchSize: 3,
      seed: 5,
      workers: 1,
    });
    try {
      strictEqual(loader.channels, 2);
      deepStrictEqual(loader.channelNorms, [{ kind: "ct-window", lo: -1000, hi: 400 }, {
        kind: "zscore-case",
      }]);
      const { value: batch } = await loader.next();
      strictEqual(batch.image.length, 3 * 2 * V2);
      strictEqual(batch.label.length, 3 * V2);
      for (let b = 0; b < 3; b++) {
        const { caseId, start } = batch.requests[b];
        const { ct, mr, label } = raw[Number(caseId.slice(1))];
        // Hand computation: ct-window clip to −1000…400 and scale; z-score with the case's
        // whole-image mean and (population) std of channel 1, clipped to its min…max.
        let sum = 0, sq = 0, min = Infinity, max = -Infinity;
        for (const v of mr) {
          sum += v;
          min = Math.min(min, v);
          max = Math.max(max, v);
        }
        const mean = sum / mr.length;
        for (const v of mr) sq += (v - mean) ** 2;
        const std = Math.sqrt(sq / mr.length);
        const want0 = rawBox(ct, start, -1000).map((v) =>
          Math.min(1, Math.max(0, (v + 1000) / 1400))
        );
        const want1 = rawBox(mr, start, min).map((v) =>
          (Math.min(max, Math.max(min, v)) - mean) / std
        );
        const got = batch.image.subarray(b * 2 * V2, (b + 1) * 2 * V2);
        want0.forEach((w, i) => ok(Math.abs(got[i] - w) < 1e-5, `patch ${b} channel 0 voxel ${i}`));
        want1.forEach((w, i) =>
          ok(Math.abs(got[V2 + i] - w) < 1e-4, `patch ${b} channel 1 voxel ${i}`)
        );
        deepStrictEqual(
          Array.from(batch.label.subarray(b * V2, (b + 1) * V2)),
          rawBox(label, start, 0),
        );
      }
    } finally {
      loader.close();
    }
    await rejects(
      createLoader({
        dataset: dir,
        patchSize: PATCH2,
        batchSize: 1,
        seed: 0,
        norm: { kind: "none" },
      }),
      /has 2 image channels \(CT, T2\): give one normalisation per channel/,
    );
    await rejects(
      createLoader({
        dataset: dir,
        patchSize: PATCH2,
        batchSize: 1,
        seed: 0,
        channelNorms: [{ kind: "none" }],
      }),
      /channelNorms has 1 entries but dataset "two" has 2 image channels/,
    );
  });
});

Deno.test("loader, two channels: one spatial transform and mirroring for both channels, intensity drawn per channel", async () => {
  await withTempDir(async (dir) => {
    const raw = await twoChannelDataset(dir, true); // channel 1 = 2 × channel 0
    const none: Normalization[] = [{ kind: "none" }, { kind: "none" }];
    const base = {
      dataset: dir,
      patchSize: PATCH2,
      batchSize: 4,
      seed: 3,
      workers: 0,
      channelNorms: none,
    };
    const [plain] = await takeBatches(base, 1);
    const [mirrored] = await takeBatches({ ...base, augment: { flipAxes: [2] } }, 1);
    deepStrictEqual(mirrored.requests, plain.requests);
    let flipped = 0;
    for (let b = 0; b < 4; b++) {
      const img = (x: Batch, c: number) => x.image.slice((2 * b + c) * V2, (2 * b + c + 1) * V2);
      const lab = (x: Batch) => x.label.slice(b * V2, (b + 1) * V2);
      const mirror = <T extends Float32Array | Uint8Array>(a: T) => {
        const out = a.slice() as T;
        flipAxis(out, PATCH2, 2);
        return out;
      };
      const was = deepEqual(img(mirrored, 0), img(plain, 0));
      if (!was) {
        flipped++;
        deepStrictEqual(img(mirrored, 0), mirror(img(plain, 0)));
        deepStrictEqual(img(mirrored, 1), mirror(img(plain, 1)));
        deepStrictEqual(lab(mirrored), mirror(lab(plain)));
      } else {
        deepStrictEqual(img(mirrored, 1), img(plain, 1));
        deepStrictEqual(lab(mirrored), lab(plain));
      }
    }
    ok(flipped > 0 && flipped < 4, `${flipped} of 4 patches mirrored`);
    // Rotation, scaling, elastic deformation, flips and 90° turns: channel 1 stays 2 × channel 0.
    const spatial = augmentationFromFlags({
      spatial: true,
      elastic: true,
      flip: true,
      rotate90: true,
    });
    spatial.spatial = { ...spatial.spatial!, pRotation: 1, pScaling: 1, pElastic: 1 };
    const [warped] = await takeBatches({ ...base, augment: spatial }, 1);
    for (let b = 0; b < 4; b++) {
      const c0 = warped.image.subarray(2 * b * V2, (2 * b + 1) * V2);
      const c1 = warped.image.subarray((2 * b + 1) * V2, (2 * b + 2) * V2);
      c0.forEach((v, i) => strictEqual(c1[i], 2 * v));
      ok(
        !deepEqual(c0, plain.image.subarray(2 * b * V2, (2 * b + 1) * V2)),
        "the patch was transformed",
      );
    }
    // Intensity scale: one factor per channel, drawn separately.
    const [scaled] = await takeBatches({ ...base, augment: { intensityScale: 0.25 } }, 1);
    const ratio = (c: number) => {
      const i = plain.image.subarray(c * V2, (c + 1) * V2).findIndex((v) => Math.abs(v) > 50);
      return scaled.image[c * V2 + i] / plain.image[c * V2 + i];
    };
    ok(Math.abs(ratio(0) - ratio(1)) > 1e-4, `factors ${ratio(0)}, ${ratio(1)}`);
    strictEqual(raw.length, 2);
  });
});
