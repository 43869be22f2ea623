import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import { generateSynthDataset } from "../../src/cli/synth.ts";
import { readDataset, resolveCase } from "../../src/data/dataset.ts";
import { type Batch, createLoader, type LoaderOptions } from "../../src/data/loader.ts";
import { openCase } from "../../src/data/ome_zarr/reader.ts";
import { readPatch } from "../../src/data/sampler.ts";
import type { Shape3 } from "../../src/data/volume.ts";
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
